"""Probability back-propagation (excitation backprop) from the last conv layer to the pixels.

Section 3.1 of the paper, Eq. 1-3: for a layer ``B = f(A)`` with weights ``W``, the winning
probability of an input neuron is

    P(A) = A ⊙ W⁺ᵀ (P(B) ⊘ (W⁺ A)),                 (0 where W⁺A = 0)

with only the positive weights ``W⁺``, biases ignored.  Every layer is such a linear map:

* ``Conv2D`` followed by ``BatchNormalization``: the BN scale is folded into the kernel
  first (``W' = W·γ/σ``), so the sign test applies to the weights the network really uses.
* ``MaxPooling2D`` and ``AveragePooling2D``: an all-ones window per channel (the paper's
  choice for max pooling, which avoids the blanks that argmax routing leaves).
* A convolution whose kernel is smaller than its stride (ResNet-50 v1 downsamples with
  1x1 stride-2 convolutions) skips 3 of every 4 input cells, which prints a checkerboard into
  every map below it.  Its subsampling is treated like pooling: an all-ones ``stride x stride``
  window followed by the 1x1 convolution (``strided_conv="window"``, default); the literal
  rule is ``strided_conv="exact"``.
* ``ReLU`` / ``Activation("relu")`` and a Conv2D's own ReLU pass P through; ``ZeroPadding2D``
  crops it; a BN that follows no conv passes P where its scale is positive.
* Residual ``Add``: P(B) is split between the branches in proportion to their positive
  contributions ``a_i⁺ / Σ_j a_j⁺``, so the probability mass is conserved (``add_rule=
  "positive-share"``, default).  ``"input-share"`` splits by the signed shares ``a_i / Σ_j a_j``
  (TorchRay's excitation backprop for ResNets); ``"copy"`` copies P(B) into both branches, as
  the authors' released code, which doubles the mass at each block and weights the shortcut
  path as much as the residual one.
* Max pooling is an all-ones window (the paper; ``maxpool_rule="window"``, default) or
  winner-take-all (``"winner"``: each output's P goes to its window's maximum).

The last step reaches the pixels through the first convolution, whose input is the
mean-subtracted image (negative values).  ``input_rule`` chooses what plays ``A`` there:

* ``"raw"`` (default): the non-negative 0..255 image (the network input plus the
  preprocessing mean), the forward pass unchanged.  A mean-subtracted A gives negative
  relevance and single-pixel maxima (README, "Method decisions");
* ``"shift"``: the network input shifted by its minimum (as PRM does).

``stop_stride`` > 1 stops the backprop early, at the lowest tensor of that stride through
which all probability flows (for ResNet-50: 2 = conv1's output, 4 = pool1's output,
8 = conv3_block1_out, 16 = conv4_block1_out): the maps are then coarser (one value per
``stop_stride`` pixels) and cheaper.  1 (default) is the paper's method, down to the pixels.

``contrastive=True`` (beyond the paper) subtracts the map obtained through the negated top linear map:
Zhang et al.'s contrastive excitation backprop, defined for DASR's seeds in :mod:`dasr.model.contrast`.

``rule="authors"`` replaces Eq. 2-3 by what the authors' released code runs (PRM's peak
backprop): only the convolutions are changed, to ``P(A) = (A - min A) ⊙ W⁺ᵀ(P(B) ⊘ W⁺(A - min A))``
with the raw (unfolded) kernel's positive part and the layer input shifted by its own minimum
(a zero-padded input is shifted before the padding, like a padded torch convolution), while
BatchNormalization (its signed scale), ReLU (its mask), max pooling (to the window's maximum),
average pooling and the residual Add (the full signal into both branches) keep their ordinary
gradients.  Its seed is 1/C on every channel at the peak cell (:func:`seed_probabilities`) and its
map is the channel sum clamped at 0.  Its strided convolutions default to ``exact`` (the
ordinary gradient, as their code); ``window`` is there to measure the difference.

Everything runs batched: one forward pass per image (or per batch of images of one input
shape), the normalisers ``W⁺A`` (and the Add split fractions) computed once per image, and the
seeds on the batch axis of the transposed convolutions, in chunks.  With a batch of images each
seed row names its image, and the compiled step gathers that image's normalisers, so one chunk
holds seeds of several images (:mod:`dasr.model.chunks`).

The code is backend-neutral (``keras.ops``): it runs on the Keras backend chosen the Keras way
(``KERAS_BACKEND=tensorflow``, the default, or ``jax``).  The transposed maps and the
compilation come from :mod:`dasr.model.transpose`; every backend and kernel set gives the
float64 reference's maps to float32 round-off (tests/model/test_backprop_fixture.py).
"""

from __future__ import annotations

import functools

import keras
import numpy as np

from dasr.model import contrast, transpose
from dasr.model.moments import device_ellipses
from dasr.model.device import resolve_dtype
from dasr.model.graph import Op, bn_scale, stop_point, trace_graph
from dasr.regions.config import ADD_RULES, INPUT_RULES, MAXPOOL_RULES, RULE_DEFAULTS

# The authors' code (PRM's PostHook): 1 / (|Z| + eps), and 0 where Z < eps.
AUTHORS_EPS = 1e-10




class ProbabilityBackprop:
    """Batched probability backprop for one network.

    Usage::

        bp = ProbabilityBackprop(backbone.model, backbone.top_layer, extra_outputs=["conv5_block1_out"])
        acts = bp.forward(x[None])             # one forward pass
        state = bp.prepare(acts)               # normalisers, once per image
        maps = bp.backprop(state, top_probs)   # (S, H, W) pixel maps, S seeds at once

    A batch of B images of one shape: ``forward`` on (B, H, W, 3), ``prepare`` as above, and
    ``backprop(state, top_probs, image)`` with ``image`` (S,) the batch row of each seed.

    Args:
      model: a functional Keras CNN (see :func:`trace_graph` for supported layers).
      top: name of the layer the seeds live on.
      input_offset: per-channel values that turn the network input back into non-negative
        pixel intensities (the caffe mean for ResNet-50/VGG-16); used by ``input_rule="raw"``;
        None: the input is already non-negative.
      input_rule: ``raw`` or ``shift`` (see module docstring).
      stop_stride: stop at the lowest cut tensor of this stride (1: the pixels).
      strided_conv: ``window`` or ``exact`` (None: the rule's, ``window`` for the paper rule, ``exact`` for the authors').
      extra_outputs: further layers to return from the forward pass (feature maps).
      dtype: compute dtype of the backprop (``float32``; ``bfloat16`` trades accuracy for speed;
        ``auto``: :func:`~dasr.model.device.resolve_dtype`).
      rule: ``paper`` (Eq. 2-3) or ``authors`` (the released code's; ``input_offset`` and
        ``input_rule`` do not apply: every convolution shifts its own input).
      contrastive: subtract the dual's map (:mod:`dasr.model.contrast`; the paper's rule only).
      add_rule, maxpool_rule: the paper rule's residual Add (``positive-share``, ``input-share``,
        ``copy``) and max pooling (``window``, ``winner``), see
        :data:`dasr.regions.config.ADD_RULES`; the authors' rule always copies and takes the winner.

    Raises:
      ValueError: an unknown rule; ``contrastive`` where :func:`~dasr.model.contrast.find_dual` refuses it.
    """

    def __init__(self, model: keras.Model, top: str, *, input_offset=None,
                 input_rule: str = "raw", strided_conv: str | None = None, stop_stride: int = 1,
                 extra_outputs: tuple[str, ...] = (), dtype: str = "float32", rule: str = "paper",
                 contrastive: bool = False, add_rule: str = "positive-share", maxpool_rule: str = "window"):
        if input_rule not in INPUT_RULES:
            raise ValueError(f"input_rule must be one of {INPUT_RULES}, got {input_rule!r}")
        strided_conv = strided_conv or RULE_DEFAULTS[rule]["strided_conv"]
        if add_rule not in ADD_RULES or maxpool_rule not in MAXPOOL_RULES:
            raise ValueError(f"add_rule must be one of {ADD_RULES} and maxpool_rule one of {MAXPOOL_RULES}")
        self.ops, self.input_id = trace_graph(model, top, strided_conv, rule, maxpool_rule)
        self.rule = rule
        self.add_rule = "copy" if rule == "authors" else add_rule
        self.strided_conv = strided_conv
        self.top = top
        self.input_rule = input_rule
        self.dtype = resolve_dtype(dtype)
        self.input_offset = keras.ops.convert_to_tensor(np.asarray(0.0 if input_offset is None else input_offset,
                                                             np.float32).reshape(1, 1, 1, -1))
        self.stop_id, self.map_stride, self.ops_down = stop_point(self.ops, self.input_id, top, stop_stride)
        needed = {self.input_id}
        self._producer = {op.output: op for op in self.ops}
        for op in self.ops_down:
            if op.kind in ("conv", "pool", "add", "maxpool", "avgpool"):
                needed.update(op.inputs)
            if rule == "authors" and (op.kind == "relu" or op.relu):
                needed.add(op.output)  # the ReLU's mask
            if rule == "authors" and op.kind == "conv" and self._padded_input(op) is not None:
                needed.add(self._padded_input(op).inputs[0])
        self.needed = sorted(needed - {self.input_id})
        self.extra_outputs = tuple(extra_outputs)
        layer_out = lambda n: model.get_layer(n).output  # noqa: E731
        self._fwd_names = [top, *self.extra_outputs, *self.needed]
        self.forward_model = keras.Model(model.input, [layer_out(n) for n in self._fwd_names])
        # Weights are arguments of the compiled functions, never constants baked into them.
        self._kernels = {op.name: keras.ops.convert_to_tensor(op.kernel, self.dtype)
                         for op in self.ops if op.kind == "conv"}
        self.dual = contrast.find_dual(self.ops, self.ops_down, top, rule) if contrastive else None
        if self.dual is not None:  # the negated kernels travel with the others (arguments, not constants)
            self._kernels.update({k: keras.ops.convert_to_tensor(v, self.dtype)
                                  for k, v in contrast.negated_kernels(model, self.dual, bn_scale).items()})
        self._forward_fn = transpose.jit(self._forward)
        self._prepare_fn = transpose.jit(self._prepare)
        self._backprop_fn = transpose.jit(self._backprop)
        self._ellipse_fns: dict = {}  # keep rule -> compiled backprop + moments step

    # ------------------------------------------------------------------ forward
    def _forward(self, trainable, non_trainable, x):
        outs, _ = self.forward_model.stateless_call(trainable, non_trainable, x, training=False)
        return outs

    def forward(self, x) -> dict:
        """One forward pass; returns the top, the extra outputs and every tensor the backprop needs.

        Args:
          x: (B, H, W, 3) network input (float32 array or backend tensor), usually B = 1.

        Returns:
          {tensor id: backend tensor}, the network input included.
        """
        x = keras.ops.convert_to_tensor(x, "float32")
        outs = self._forward_fn([v.value for v in self.forward_model.trainable_variables],
                                [v.value for v in self.forward_model.non_trainable_variables], x)
        if len(self._fwd_names) == 1:  # a one-output Keras model returns a tensor, not a list
            outs = [outs]
        acts = dict(zip(self._fwd_names, outs))
        acts[self.input_id] = x
        return acts

    def _padded_input(self, op: Op) -> Op | None:
        """The ``pad`` op that produces ``op``'s input, if any (the authors' rule shifts before padding)."""
        src = self._producer.get(op.inputs[0])
        return src if src is not None and src.kind == "pad" else None

    def _image_activation(self, x):
        if self.input_rule == "raw":
            return x + self.input_offset
        if self.input_rule == "shift":
            return x - transpose.image_min(x)
        return x

    # ------------------------------------------------------------------ normalisers
    def _prepare_authors(self, kernels: dict, acts: dict) -> dict:
        """Per image, the authors' rule: each conv's shifted input and 1/Z, the ReLU masks, the pools' inputs."""
        values = {k: keras.ops.cast(v, self.dtype) for k, v in acts.items()}
        state: dict = {}
        for op in self.ops_down:
            if op.kind == "conv":
                pad = self._padded_input(op)
                if pad is None:
                    a = values[op.inputs[0]]
                    a = a - transpose.image_min(a)
                else:  # shifted by the unpadded input's minimum, then zero-padded (torch's padded conv)
                    (t, b), (l, r) = pad.crop
                    x = values[pad.inputs[0]]
                    a = keras.ops.pad(x - transpose.image_min(x), [[0, 0], [t, b], [l, r], [0, 0]])
                z = transpose.conv(a, kernels[op.name], op.strides, op.padding, op.window)
                state[f"{op.name}/A"] = a
                state[f"{op.name}/invZ"] = keras.ops.where(z < AUTHORS_EPS, keras.ops.zeros_like(z),
                                                      1.0 / (keras.ops.abs(z) + AUTHORS_EPS))
            elif op.kind in ("maxpool", "avgpool"):
                state[f"{op.name}/A"] = values[op.inputs[0]]
            if op.kind == "relu" or op.relu:
                state[f"{op.name}/mask"] = keras.ops.cast(values[op.output] > 0, self.dtype)
        return state

    def _prepare(self, kernels: dict, acts: dict) -> dict:
        """Per image: the activations A (input rule applied) and 1/(W⁺A), or the Add fractions."""
        if self.rule == "authors":
            return self._prepare_authors(kernels, acts)
        values = {k: keras.ops.cast(v, self.dtype) for k, v in acts.items() if k in self.needed or k == self.input_id}
        values[self.input_id] = keras.ops.cast(self._image_activation(acts[self.input_id]), self.dtype)
        for op in self.ops:  # padding of the image must see the rule's A, not the raw input
            if op.kind == "pad" and op.inputs[0] in values and op.output in self.needed:
                (t, b), (l, r) = op.crop
                values[op.output] = keras.ops.pad(values[op.inputs[0]], [[0, 0], [t, b], [l, r], [0, 0]])
        state: dict = {}
        for op in self.ops_down:
            if op.kind == "conv":
                a = values[op.inputs[0]]
                state[f"{op.name}/A"] = a
                state[f"{op.name}/invZ"] = transpose.safe_inverse(
                    transpose.conv(a, kernels[op.name], op.strides, op.padding, op.window))
            elif op.kind == "pool":
                a = values[op.inputs[0]]
                state[f"{op.name}/A"] = a
                state[f"{op.name}/invZ"] = transpose.safe_inverse(
                    transpose.window_pool(a, op.pool_size, op.strides, op.padding))
            elif op.kind == "maxpool":  # winner-take-all: the window's maximum gets the signal
                state[f"{op.name}/A"] = values[op.inputs[0]]
            elif op.kind == "add" and self.add_rule != "copy":
                # positive-share: each branch's positive part over their sum; input-share: each
                # branch's signed value over the output (where the output is not positive, the
                # ReLU above it passed no signal down).
                parts = [values[i] if self.add_rule == "input-share" else keras.ops.relu(values[i])
                         for i in op.inputs]
                inv = transpose.safe_inverse(functools.reduce(keras.ops.add, parts))
                for k, p in enumerate(parts):
                    state[f"{op.name}/frac{k}"] = p * inv
        if self.dual is not None:
            state["dual/invZ"] = contrast.dual_inverse_normaliser(self.dual, kernels, state)
        return state

    def prepare(self, acts: dict) -> dict:
        """The per-image state of the backprop (:meth:`forward`'s output in, backend tensors out).

        Every tensor keeps the batch axis of :meth:`forward`'s input: row b is image b's state.
        """
        needed = {k: v for k, v in acts.items() if k in self.needed or k == self.input_id}
        return self._prepare_fn(self._kernels, needed)

    # ------------------------------------------------------------------ backward
    def _backprop(self, kernels: dict, state: dict, top_probs, image=None):
        probs: dict = {self.top: keras.ops.cast(top_probs, self.dtype)}

        def own(key, p):
            """``state[key]`` for the seed rows of ``p``: a batch's state gathered per seed, in the step."""
            return state[key] if image is None else transpose.take_rows(state[key], image, after=p)

        def give(tensor_id, p):
            probs[tensor_id] = probs[tensor_id] + p if tensor_id in probs else p

        for op in reversed(self.ops_down):
            if op.output not in probs:
                continue
            p = probs.pop(op.output)
            if self.dual is not None and op.output == self.dual.output:  # the contrast: minus the dual's P̄
                for src, q in contrast.dual_probabilities(self.dual, kernels, lambda key: own(key, p), p):
                    give(src, -q)
            if op.kind == "relu" or op.relu:
                p = p * own(f"{op.name}/mask", p)
            if op.kind in ("pass", "relu"):
                give(op.inputs[0], p)
            elif op.kind in ("posscale", "scale"):
                give(op.inputs[0], p * keras.ops.cast(op.scale_positive, self.dtype))
            elif op.kind == "maxpool":
                give(op.inputs[0], transpose.max_pool_transpose(p, own(f"{op.name}/A", p), op.pool_size,
                                                                op.strides, op.padding))
            elif op.kind == "avgpool":  # the average's own gradient
                give(op.inputs[0], transpose.window_pool_transpose(p, own(f"{op.name}/A", p), op.pool_size,
                                                                   op.strides, op.padding))
            elif op.kind == "pad":
                (t, b), (l, r) = op.crop
                h, w = keras.ops.shape(p)[1], keras.ops.shape(p)[2]
                give(op.inputs[0], p[:, t:h - b, l:w - r, :])
            elif op.kind == "add":
                for k, src in enumerate(op.inputs):
                    give(src, p if self.add_rule == "copy" else p * own(f"{op.name}/frac{k}", p))
            elif op.kind in ("conv", "pool"):
                a = own(f"{op.name}/A", p)
                y = p * own(f"{op.name}/invZ", p)
                if op.kind == "pool":
                    back = transpose.window_pool_transpose(y, a, op.pool_size, op.strides, op.padding)
                else:
                    back = transpose.conv_transpose(y, kernels[op.name], a, op.strides, op.padding, op.window)
                give(op.inputs[0], a * back)
        total = keras.ops.sum(probs[self.stop_id], axis=-1)
        if self.rule == "authors" or self.dual is not None:  # signed: the channel sum clamped at 0
            total = keras.ops.relu(total)
        return keras.ops.cast(total, "float32")

    def backprop(self, state: dict, top_probs, image=None):
        """Pixel maps for a batch of seeds.

        Args:
          state: :meth:`prepare`'s output for the image (or the batch of images).
          top_probs: (S, h, w, C) P at the top layer, one seed per batch row.
          image: None (the state is one image's) or (S,) int32, each seed's row in the batch.

        Returns:
          (S, H, W) float32 maps (a backend tensor), one value per ``map_stride`` input pixels.
        """
        if image is None:
            return self._backprop_fn(self._kernels, state, keras.ops.convert_to_tensor(top_probs))
        return self._backprop_fn(self._kernels, state, keras.ops.convert_to_tensor(top_probs),
                                 keras.ops.convert_to_tensor(image, "int32"))

    def backprop_ellipses(self, state: dict, top_probs, image=None, *, tau: float, weighted: bool,
                          percentile: float | None):
        """Eq. 4's ellipses and boxes of a batch of seeds, computed where the maps are.

        The backprop and :func:`dasr.model.moments.device_ellipses` run as one compiled step, so
        only S x (box, ellipse, kept fraction) leaves the device, never the S x H x W maps.

        Args:
          state: :meth:`prepare`'s output for the image (or the batch of images).
          top_probs: (S, h, w, C) P at the top layer, one seed per batch row.
          image: as in :meth:`backprop`.
          tau, weighted, percentile: the keep rule (see :func:`~dasr.model.moments.device_ellipses`).

        Returns:
          (boxes (S, 4), ellipses (S, 5), kept (S,)) as NumPy float32, in network-input pixels.
        """
        key = (float(tau), bool(weighted), percentile)
        if key not in self._ellipse_fns:
            def step(kernels, state, top_probs, image=None):
                maps = self._backprop(kernels, state, top_probs, image)
                return device_ellipses(maps, tau=key[0], weighted=key[1], cell=float(self.map_stride),
                                       percentile=key[2])

            self._ellipse_fns[key] = transpose.jit(step)
        args = (self._kernels, state, keras.ops.convert_to_tensor(top_probs))
        if image is not None:
            args += (keras.ops.convert_to_tensor(image, "int32"),)
        out = self._ellipse_fns[key](*args)
        return tuple(np.asarray(t, np.float32) for t in out)
