"""The Keras graph below the top layer as a list of linear backprop ops (:func:`trace_graph`).

Which layer becomes which op, and why, is the method's business: :mod:`dasr.model.backprop`'s
docstring (Section 3.1 of the paper).  Here: the op record (:class:`Op`), the tracing, and where
a backprop stopped at a coarser stride ends (:func:`stop_point`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras
import numpy as np

from dasr.regions.config import RULES, STRIDED_CONV_RULES

__all__ = ["Op", "UnsupportedLayerError", "bn_scale", "stop_point", "trace_graph"]


class UnsupportedLayerError(ValueError):
    """The network has a layer type the probability backprop does not know."""


@dataclass
class Op:
    """One linear step of the backprop, in the forward direction ``inputs -> output``.

    Attributes:
      kind: ``conv``, ``pool``, ``pass``, ``posscale``, ``pad``, ``add``; the authors' rule also
        ``scale`` (signed BN scale), ``relu`` (mask), ``maxpool`` and ``avgpool`` (ordinary gradients).
      name: the Keras layer whose output is ``output``.
      inputs: tensor ids (producing layer names) of the inputs.
      output: tensor id of the output.
      kernel: conv kernel (HWIO) with BN folded in, positive part taken (conv only).
      strides, padding: conv/pool geometry; ``window``: subsample as an all-ones window.
      pool_size: pooling window.
      crop: ((top, bottom), (left, right)) for ``pad``.
      scale_positive: per-channel mask for ``posscale``, the signed scale for ``scale``.
      relu: (authors' rule) the conv has its own ReLU, whose mask applies first.
    """

    kind: str
    name: str
    inputs: list[str]
    output: str
    kernel: np.ndarray | None = None
    strides: tuple[int, int] = (1, 1)
    padding: str = "VALID"
    window: bool = False
    pool_size: tuple[int, int] = (1, 1)
    crop: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))
    scale_positive: np.ndarray | None = None
    relu: bool = False
    extra: dict = field(default_factory=dict)


def _inbound(layer) -> list[str]:
    node = layer._inbound_nodes[0]
    return [t._keras_history.operation.name for t in node.input_tensors]


def bn_scale(bn) -> np.ndarray:
    """Per-channel multiplier γ/sqrt(σ²+ε) of an inference-mode BatchNormalization."""
    variables = {v.path.rsplit("/", 1)[-1]: np.asarray(v.numpy(), np.float64) for v in bn.weights}
    gamma = variables.get("gamma", np.ones_like(variables["moving_variance"]))
    return gamma / np.sqrt(variables["moving_variance"] + bn.epsilon)


def _activation_name(fn) -> str:
    """``linear``, ``relu`` or the function's own name.

    By identity, not ``keras.activations.serialize``: that imports TensorFlow wherever it is
    installed, even on JAX (over 1 GB of a JAX process for nothing).
    """
    return {keras.activations.linear: "linear", keras.activations.relu: "relu"}.get(
        fn, getattr(fn, "__name__", repr(fn)))


def trace_graph(model: keras.Model, top: str, strided_conv: str = "window",
                rule: str = "paper", maxpool_rule: str = "window") -> tuple[list[Op], str]:
    """Turns the Keras graph below ``top`` into backprop ops (forward topological order).

    Args:
      model: a functional Keras CNN.
      top: the layer whose output the seeds live on.
      strided_conv: ``window`` or ``exact`` (see module docstring).
      rule: ``paper`` (BN folded into the kernels) or ``authors`` (BN, ReLU, pooling kept as
        their own ops with ordinary gradients).
      maxpool_rule: the paper rule's max pooling: ``window`` (an all-ones window, ``pool``) or
        ``winner`` (winner-take-all, ``maxpool``: the signal goes to each window's maximum).

    Returns:
      (ops, input_id): ops in forward order, and the tensor id of the network input.

    Raises:
      UnsupportedLayerError: naming the first layer of an unsupported type.
    """
    if strided_conv not in STRIDED_CONV_RULES:
        raise ValueError(f"strided_conv must be one of {STRIDED_CONV_RULES}")
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    authors = rule == "authors"
    layers = {layer.name: layer for layer in model.layers}
    # Only the ancestors of `top` matter.
    needed, stack = set(), [top]
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        if not isinstance(layers[name], keras.layers.InputLayer):
            stack.extend(_inbound(layers[name]))
    consumers: dict[str, list[str]] = {}
    for name in needed:
        if not isinstance(layers[name], keras.layers.InputLayer):
            for src in _inbound(layers[name]):
                consumers.setdefault(src, []).append(name)

    ops: list[Op] = []
    input_id = None
    folded: set[str] = set()
    for layer in model.layers:  # Keras keeps functional layers in topological order
        name = layer.name
        if name not in needed:
            continue
        if isinstance(layer, keras.layers.InputLayer):
            input_id = name
            continue
        src = _inbound(layer)
        if isinstance(layer, keras.layers.Conv2D) and type(layer) is keras.layers.Conv2D:
            if layer.dilation_rate != (1, 1) or layer.groups != 1:
                raise UnsupportedLayerError(f"layer {name}: dilated or grouped Conv2D is not supported")
            act = _activation_name(layer.activation)
            if act not in ("linear", "relu"):
                raise UnsupportedLayerError(f"layer {name}: Conv2D activation {act!r} is not supported")
            kernel = np.asarray(layer.kernel.numpy(), np.float64)
            out_id = name
            nxt = consumers.get(name, [])
            if (not authors and act == "linear" and len(nxt) == 1
                    and isinstance(layers[nxt[0]], keras.layers.BatchNormalization)):
                kernel = kernel * bn_scale(layers[nxt[0]])[None, None, None, :]
                out_id = nxt[0]
                folded.add(nxt[0])
            window = any(k < s for k, s in zip(layer.kernel_size, layer.strides))
            if window and strided_conv == "window" and any(k != 1 for k in layer.kernel_size):
                raise UnsupportedLayerError(
                    f"layer {name}: kernel {layer.kernel_size} smaller than stride {layer.strides} "
                    "is only handled for 1x1 kernels; use strided_conv='exact'")
            ops.append(Op("conv", name, src, out_id, kernel=np.maximum(kernel, 0).astype(np.float32),
                          strides=tuple(layer.strides), padding=layer.padding.upper(),
                          window=window and strided_conv == "window", relu=authors and act == "relu"))
        elif isinstance(layer, keras.layers.BatchNormalization):
            if name in folded:
                continue
            if authors:
                ops.append(Op("scale", name, src, name, scale_positive=bn_scale(layer).astype(np.float32)))
            else:
                ops.append(Op("posscale", name, src, name,
                              scale_positive=(bn_scale(layer) > 0).astype(np.float32)))
        elif isinstance(layer, (keras.layers.ReLU, keras.layers.Activation)):
            if isinstance(layer, keras.layers.Activation):
                act = _activation_name(layer.activation)
                if act not in ("relu", "linear"):
                    raise UnsupportedLayerError(f"layer {name}: activation {act!r} is not supported")
                relu = act == "relu"
            else:
                relu = True
            ops.append(Op("relu" if authors and relu else "pass", name, src, name))
        elif isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)):
            kind = "pool"
            is_max = isinstance(layer, keras.layers.MaxPooling2D)
            if authors:
                kind = "maxpool" if is_max else "avgpool"
            elif is_max and maxpool_rule == "winner":
                kind = "maxpool"
            ops.append(Op(kind, name, src, name, pool_size=tuple(layer.pool_size),
                          strides=tuple(layer.strides), padding=layer.padding.upper()))
        elif isinstance(layer, keras.layers.ZeroPadding2D):
            ops.append(Op("pad", name, src, name, crop=tuple(tuple(p) for p in layer.padding)))
        elif isinstance(layer, keras.layers.Add):
            ops.append(Op("add", name, src, name))
        else:
            raise UnsupportedLayerError(
                f"layer {name}: type {type(layer).__name__} is not supported by the probability "
                "backprop (supported: Conv2D, BatchNormalization, ReLU/Activation('relu'), Add, "
                "ZeroPadding2D, MaxPooling2D, AveragePooling2D)")
    if input_id is None:
        raise UnsupportedLayerError("the model has no InputLayer below the top layer")
    return ops, input_id


def stop_point(ops: list[Op], input_id: str, top: str, stop_stride: int) -> tuple[str, int, list[Op]]:
    """Where the backprop stops: the lowest 'cut' tensor of stride ``stop_stride``.

    A cut is a tensor through which every path from the top to the input passes (ResNet's
    block outputs, VGG's pooling outputs), so stopping there keeps all the probability mass.

    Returns:
      (tensor id, its stride, the ops to run, in forward order).

    Raises:
      ValueError: no cut of that stride; the message lists the strides there are.
    """
    stride = {input_id: 1}
    for op in ops:
        factor = op.strides[0] if op.kind in ("conv", "pool", "maxpool", "avgpool") else 1
        stride[op.output] = max(stride[i] for i in op.inputs) * factor
    live, cuts = {top}, {stride[top]: (top, len(ops))}
    for k in range(len(ops) - 1, -1, -1):
        op = ops[k]
        if op.output in live:
            live.discard(op.output)
            live.update(op.inputs)
        if len(live) == 1:
            (tensor,) = live
            cuts[stride[tensor]] = (tensor, k)  # later (lower) cuts overwrite earlier ones
    if stop_stride not in cuts:
        raise ValueError(f"no tensor of stride {stop_stride} carries all the probability; "
                         f"possible stop strides: {sorted(cuts)}")
    tensor, k = cuts[stop_stride]
    return tensor, stop_stride, ops[k:]
