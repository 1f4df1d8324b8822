"""Contrastive excitation backprop (Zhang et al., ECCV 2016) for DASR's seeds: an option beyond the paper.

Zhang et al. contrast a class unit ``o`` with its *dual* ``ō``, a unit whose input weights are
the negation of ``o``'s, and keep the positive part of ``MWP(o) - MWP(ō)``: what supports ``o``
more than it supports its opposite.  DASR has no classifier; its seeds live on the last
convolution block's output.  For those seeds (``ProbabilityBackprop(contrastive=True)``):

* **The top linear map** is the first linear op below the seed tensor, reached through the ReLUs
  and poolings above it (those are shared by the seed and its dual): for ResNet-50 the residual
  Add of conv5_block3 as ONE linear map of its two inputs, ``B = W·A + I·S`` with ``W`` the
  conv5_block3_3 kernel with its BatchNormalization folded in, ``A`` = conv5_block3_2_relu and
  ``S`` = conv5_block2_out (the identity shortcut); for VGG-16 block5_conv3, below block5_pool.
* **The dual** negates that whole map, as Zhang et al. negate every input weight of ``o``:
  ``-W`` has the positive weights ``W⁻ = max(-W, 0)``, and the negated identity ``-I`` has none,
  so the dual sends nothing into the shortcut.  Its step is the paper's Eq. 2-3 through the
  negated map taken as one layer: ``P̄(A_k) = A_k ⊙ W⁻_kᵀ(P ⊘ Σ_j W⁻_j A_j)``, with ``P`` the
  probability at the map's output, the same for the seed and its dual.  (The seed's own step
  keeps the paper's rules, the Add split by positive contributions included.)  Negating the conv
  branch alone would leave the dual an identity path, i.e. the seed's shortcut share.
* **The contrast is formed at the map's inputs**, one layer below it, as Zhang et al.'s code and
  TorchRay form it at the classifier's input: ``D = P(inputs) - P̄(inputs)`` (for ResNet-50,
  primal minus dual at conv5_block3_2_relu and the primal's shortcut share at conv5_block2_out).
  ``D`` goes down ONE signed backprop of the ordinary rules, to the pixels or to the
  ``stop_stride`` tensor; the map is its channel sum clamped at 0.
* **Why signed, not clamped at the contrast layer**: every step below is linear in ``P`` (its
  normalisers come from the forward activations), so the single pass is exactly the seed's map
  minus the map obtained through the negated weights, each taken to the pixels, with no
  approximation, for one extra convolution at the top's stride (about 1x the cost).  Clamping
  ``D`` first (TorchRay's ``non_negative_contrast``, off by default there) would not be that
  difference.  Both maps carry the seed's mass (where their normalisers are not zero), so the
  positive part marks where the seed's evidence is denser than its dual's.
* Only the paper's rule: the authors' rule routes signed gradients from a 1/C seed, and no dual
  of it is defined here (:class:`~dasr.regions.RegionConfig` refuses the combination).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import keras
import numpy as np

from dasr.model import transpose

# The ops the contrast looks through above the top linear map (ReLUs, poolings): shared by seed and dual.
SHARED_KINDS = ("pass", "pool")


@dataclass
class DualTop:
    """Where the contrast is formed.

    Attributes:
      output: tensor id of the top linear map's output (P there is the dual's input).
      convs: the ``conv`` ops (:class:`dasr.model.graph.Op`) whose kernels the dual negates;
        their inputs receive ``-P̄``.
    """

    output: str
    convs: list


def find_dual(ops: list, ops_down: list, top: str, rule: str = "paper") -> DualTop:
    """The top linear map below ``top`` and its negated convolutions.

    Args:
      ops: every backprop op of the network, forward order (:func:`dasr.model.graph.trace_graph`, paper rule).
      ops_down: the ops the backprop runs (after ``stop_stride``).
      top: the tensor the seeds live on.
      rule: the backprop's rule; only ``paper`` has a dual here.

    Returns:
      The :class:`DualTop`.

    Raises:
      ValueError: the authors' rule; no convolution, or Add of convolutions, below the ReLUs and poolings of the
        top; or the backprop stops above it (``stop_stride`` as coarse as the top).
    """
    if rule != "paper":
        raise ValueError("contrastive excitation backprop is defined for the paper's rule only")
    producer = {op.output: op for op in ops}
    op = producer.get(top)
    while op is not None and op.kind in SHARED_KINDS:
        op = producer.get(op.inputs[0])
    if op is None or op.kind not in ("conv", "add"):
        raise ValueError(f"contrastive: no convolution or residual Add below {top!r} (through ReLUs and "
                         f"poolings) to negate; found {op.kind if op else 'the input'}")
    convs = [op] if op.kind == "conv" else [producer[i] for i in op.inputs
                                             if i in producer and producer[i].kind == "conv"]
    if not convs:
        raise ValueError(f"contrastive: the Add {op.name!r} below {top!r} has no convolution branch to negate")
    running = {id(o) for o in ops_down}
    if id(op) not in running or not all(id(c) in running for c in convs):
        raise ValueError(f"contrastive: the backprop stops above {op.name!r}, where the contrast is formed; "
                         "use a finer stop_stride")
    return DualTop(op.output, convs)


def negated_kernels(model: keras.Model, dual: DualTop, bn_scale: Callable[[Any], np.ndarray]) -> dict[str, np.ndarray]:
    """The positive weights of each negated convolution: ``max(-W, 0)``, its BatchNormalization folded in.

    Args:
      model: the network the ops were traced from.
      dual: :func:`find_dual`'s answer.
      bn_scale: a BatchNormalization layer's per-channel multiplier (the one the trace folded).

    Returns:
      {:func:`dual_key` of the conv layer: (kh, kw, C_in, C_out) float32 kernel}.
    """
    out = {}
    for op in dual.convs:
        kernel = np.asarray(model.get_layer(op.name).kernel.numpy(), np.float64)
        if op.output != op.name:  # the trace folded the following BatchNormalization into this conv
            kernel = kernel * bn_scale(model.get_layer(op.output))[None, None, None, :]
        out[dual_key(op.name)] = np.maximum(-kernel, 0).astype(np.float32)
    return out


def dual_key(name: str) -> str:
    """The key of a negated kernel among the backprop's kernels (next to the positive ones)."""
    return f"{name}/dual"


def dual_inverse_normaliser(dual: DualTop, kernels: dict, state: dict):
    """Per image: ``1 / Σ_k W⁻_k A_k`` (0 where the sum is 0), from the convs' inputs in ``state``."""
    z = None
    for op in dual.convs:
        zk = transpose.conv(state[f"{op.name}/A"], kernels[dual_key(op.name)], op.strides, op.padding, op.window)
        z = zk if z is None else z + zk
    return transpose.safe_inverse(z)


def dual_probabilities(dual: DualTop, kernels: dict, state_rows: Callable[[str], Any], p):
    """The dual's probabilities at the inputs of the top linear map.

    Args:
      dual: :func:`find_dual`'s answer.
      kernels: the backprop's kernels.
      state_rows: a state key -> that state for ``p``'s seed rows (each conv's input ``A``, and
        ``dual/invZ``, :func:`dual_inverse_normaliser`'s answer): one image's state, or a batch's
        gathered per seed.
      p: (S, h, w, C) the probability at ``dual.output``, one seed per row.

    Returns:
      [(tensor id, (S, ...) P̄ there)], one per negated convolution.
    """
    y = p * state_rows("dual/invZ")
    out = []
    for op in dual.convs:
        a = state_rows(f"{op.name}/A")
        out.append((op.inputs[0], a * transpose.conv_transpose(y, kernels[dual_key(op.name)], a, op.strides,
                                                                 op.padding, op.window)))
    return out
