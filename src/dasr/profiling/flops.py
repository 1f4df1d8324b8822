"""Multiply-accumulate (MAC) counts of the forward pass and of one seed's probability backprop.

Counting rules (one MAC = one multiply and one add; GFLOP = 2 · MACs / 10⁹):

* **Forward** (:func:`forward_macs`): every ``Conv2D`` costs ``out_h · out_w · kh · kw ·
  (cin / groups) · cout``; every ``Dense`` costs ``rows · cin · units`` (``rows``: the product of
  its output's leading dimensions).  Biases, batch norm, activations, additions and pooling are
  element-wise and not counted.
* **Backprop, one seed** (:func:`backprop_macs`), over the ops
  (:class:`dasr.model.graph.Op`) that the backprop runs, i.e. those above its stop tensor
  (the lowest tensor of the stop stride through which all probability flows):

  - a ``conv`` op's transposed convolution costs what its forward convolution costs (the same
    formula on its output shape and positive kernel);
  - a ``pool`` op, and the all-ones window that replaces the subsampling of a 1x1 strided
    convolution (``Op.window``), cost one add per window cell per output value:
    ``out_h · out_w · ph · pw · c``;
  - element-wise products (``P/Z`` and ``A · back`` of each conv/pool, the ``add`` split and the
    ``posscale`` masks) are counted apart as ``elementwise`` (one product each), not as MACs.

  The per-image normalisers (``prepare``: ``W⁺A`` in the forward direction) cost the same MACs
  once per image.

Shapes come from :func:`layer_shapes`: every layer's ``compute_output_shape`` for one input size,
batch 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import keras
import numpy as np

from dasr.model.graph import Op


@dataclass(frozen=True)
class BackpropWork:
    """The work of one seed's backprop.

    Attributes:
      conv_macs: MACs of the transposed convolutions.
      pool_macs: adds of the transposed pooling windows (pool ops and strided-conv windows).
      elementwise: element-wise products (not MACs).
    """

    conv_macs: int
    pool_macs: int
    elementwise: int

    @property
    def macs(self) -> int:
        """conv + pool MACs: what the GFLOP of a seed are computed from."""
        return self.conv_macs + self.pool_macs


def inbound_layers(layer: keras.layers.Layer) -> list[str]:
    """Names of the layers whose outputs feed ``layer`` (its first call in the functional graph)."""
    node = layer._inbound_nodes[0]
    return [t._keras_history.operation.name for t in node.input_tensors]


def layer_shapes(model: keras.Model, height: int, width: int) -> dict[str, tuple[int, ...]]:
    """Output shape of every layer of a functional model for a batch-1 ``height x width`` input.

    Args:
      model: a functional Keras model with one image input (N, H, W, C), C known.
      height, width: input size in pixels.

    Returns:
      {layer name: output shape}, e.g. ``(1, h, w, c)`` for a conv layer.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in model.layers:  # Keras keeps functional layers in topological order
        if isinstance(layer, keras.layers.InputLayer):
            shapes[layer.name] = (1, int(height), int(width), int(layer.batch_shape[-1]))
            continue
        ins = [shapes[name] for name in inbound_layers(layer)]
        out = layer.compute_output_shape(ins[0] if len(ins) == 1 else ins)
        shapes[layer.name] = tuple(int(d) for d in out)
    return shapes


def forward_macs(model: keras.Model, shapes: dict[str, tuple[int, ...]]) -> int:
    """MACs of one forward pass (Conv2D and Dense layers; see the module docstring).

    Args:
      model: the model ``shapes`` was computed for.
      shapes: :func:`layer_shapes` of that model.
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, oh, ow, cout = shapes[layer.name]
            kh, kw = layer.kernel_size
            cin = shapes[inbound_layers(layer)[0]][-1] // layer.groups
            total += oh * ow * kh * kw * cin * cout
        elif isinstance(layer, keras.layers.Dense):
            rows = int(np.prod(shapes[layer.name][:-1]))
            total += rows * shapes[inbound_layers(layer)[0]][-1] * layer.units
    return int(total)


def ops_above_stop(ops: Sequence[Op], stop_stride: int) -> list[Op]:
    """The ops a backprop stopped at ``stop_stride`` runs (forward order).

    The stop tensor is the lowest tensor of stride ``stop_stride`` through which every path
    from the top (the last op's output) to the input passes (the rule of
    :class:`dasr.model.backprop.ProbabilityBackprop`); the ops run are those after it.

    Args:
      ops: all the backprop's ops in forward order (``ProbabilityBackprop.ops``).
      stop_stride: the backprop's ``map_stride``.

    Raises:
      ValueError: no such tensor (the message lists the strides there are).
    """
    produced = {op.output for op in ops}
    inputs = {i for op in ops for i in op.inputs} - produced
    stride = {i: 1 for i in inputs}
    for op in ops:
        factor = op.strides[0] if op.kind in ("conv", "pool") else 1
        stride[op.output] = max(stride[i] for i in op.inputs) * factor
    top = ops[-1].output
    cuts = {stride[top]: len(ops)}
    live = {top}
    for k in range(len(ops) - 1, -1, -1):
        if ops[k].output in live:
            live.discard(ops[k].output)
            live.update(ops[k].inputs)
        if len(live) == 1:
            cuts[stride[next(iter(live))]] = k  # lower cuts of a stride replace higher ones
    if stop_stride not in cuts:
        raise ValueError(f"no tensor of stride {stop_stride} carries all the probability; "
                         f"strides there are: {sorted(cuts)}")
    return list(ops[cuts[stop_stride]:])


def backprop_macs(ops: Sequence[Op], shapes: dict[str, tuple[int, ...]], stop_stride: int = 1) -> BackpropWork:
    """The work of ONE seed's backprop (see the module docstring for the rule).

    Args:
      ops: the backprop's ops (``ProbabilityBackprop.ops``, forward order).
      shapes: :func:`layer_shapes` of the network for the input size.
      stop_stride: the backprop's ``map_stride`` (1: down to the pixels).

    Returns:
      The :class:`BackpropWork`.
    """
    conv = pool = elementwise = 0
    for op in ops_above_stop(ops, stop_stride):
        if op.kind == "conv":
            _, oh, ow, cout = shapes[op.name]
            kh, kw, cin, _ = op.kernel.shape
            conv += oh * ow * kh * kw * cin * cout
            if op.window:
                pool += oh * ow * op.strides[0] * op.strides[1] * cin
            elementwise += oh * ow * cout + int(np.prod(shapes[op.inputs[0]][1:]))
        elif op.kind == "pool":
            _, oh, ow, c = shapes[op.name]
            pool += oh * ow * op.pool_size[0] * op.pool_size[1] * c
            elementwise += oh * ow * c + int(np.prod(shapes[op.inputs[0]][1:]))
        elif op.kind == "add":
            elementwise += int(np.prod(shapes[op.output][1:])) * len(op.inputs)
        elif op.kind == "posscale":
            elementwise += int(np.prod(shapes[op.output][1:]))
    return BackpropWork(int(conv), int(pool), int(elementwise))
