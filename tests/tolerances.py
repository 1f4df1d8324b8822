"""Tolerances of the tests that compare results computed by different kernels, per dtype.

Bit-for-bit equality is promised only where one process on one machine recomputes the same
thing (a resumed store, Ray against the local engine, a store read back).  Results computed by
another kernel set (oneDNN or Eigen, AVX2 or AVX-512), another batch shape (a kernel picks its
blocking by shape), another backend or another dtype differ by round-off; the tests compare them
at the bounds below, derived from the unit round-off ``u`` of the dtype and the length of the
computation, never tuned to what one CPU happens to give.

* The backprop sums nonnegative terms only (positive weights times nonnegative activations and
  probabilities), so nothing cancels and Higham's worst-case bound holds value by value: a chain
  of ``n`` roundings is off by at most ``gamma_n ~ n u`` relative to the exact result
  (:func:`worst_case_bound`).  ``tests/model/backprop_reference.py`` is that exact result, in
  float64 with dense matrices; each kernel set lies within the bound of it, so two kernel sets lie
  within twice the bound of each other (:func:`between_kernel_sets`).
* bfloat16 keeps 8 bits: ``n u`` exceeds 1 for any real chain, so bfloat16 is held to the
  probabilistic bound ``sqrt(n) u`` (Higham & Mary 2019: rounding errors of independent sign
  add like a random walk), relative to the map's maximum.
* The forward pass sums signed terms (conv kernels of both signs), so its error is relative to
  the magnitude of the terms, not to the result: features and activation values are compared as
  vectors, relative to the largest value, at ``depth sqrt(terms) u`` (:func:`forward_bound`).
* Boxes come from thresholding a map at tau of its maximum: a value within round-off of the
  threshold is kept by one kernel set and dropped by another, which moves the ellipse's moments
  by a fraction of a pixel.  Boxes are compared in pixels of the network input
  (:data:`BOX_PIXELS`), converted to the image's own pixels by the image's scale.
"""

from __future__ import annotations

import math

import numpy as np

UNIT_ROUNDOFF = {"float32": 2.0 ** -24, "bfloat16": 2.0 ** -8, "float64": 2.0 ** -53}

# The tiny test network's longest chain of roundings in the backprop (tests/model/backprop_reference.py):
# per stage, the terms summed forward into the normaliser Z = L⁺A and back through L⁺ᵀ, plus the
# division, the product with A and the stage's own product: the Add's split (2), cb3 1x1 over 6
# channels (6 + 6 + 3), the 2x2 average pool (4 + 4 + 3), cb1 3x3 over 4 channels into 5
# (36 + 45 + 3), the 2x2 max pool as a window (4 + 4 + 3), c1 3x3 over 3 channels into 4 (27 + 36 + 3).
TINY_NET_ROUNDINGS = 2 + 15 + 11 + 84 + 11 + 66

# ResNet-50 up to conv5_block1_out (the pooled feature layer) and conv5_block3_out (the seeds'
# layer): 43 and 49 convolutions in the deepest path; the widest sums 3x3x512 terms.
RESNET50_FEATURE_DEPTH = 43
RESNET50_TOP_DEPTH = 49
RESNET50_WIDEST_SUM = 3 * 3 * 512

# One pixel of the network input: the most a threshold flip moves a box edge by on these maps.
BOX_PIXELS = 1.0


def worst_case_bound(dtype: str, roundings: int) -> float:
    """Higham's gamma_n = n u / (1 - n u): the relative error of ``roundings`` chained roundings
    of nonnegative terms in ``dtype``."""
    nu = roundings * UNIT_ROUNDOFF[dtype]
    if nu >= 1:
        raise ValueError(f"{roundings} roundings in {dtype}: the worst-case bound exceeds 1; "
                         "use probabilistic_bound")
    return nu / (1 - nu)


def probabilistic_bound(dtype: str, roundings: int) -> float:
    """sqrt(n) u: the size of ``roundings`` rounding errors of independent sign, added up."""
    return math.sqrt(roundings) * UNIT_ROUNDOFF[dtype]


def backprop_bound(dtype: str, roundings: int = TINY_NET_ROUNDINGS) -> float:
    """The bound of a backprop map against the float64 reference, relative to the map's maximum:
    worst case in float32, probabilistic in bfloat16."""
    if dtype == "bfloat16":
        return probabilistic_bound(dtype, roundings)
    return worst_case_bound(dtype, roundings)


def between_kernel_sets(bound: float) -> float:
    """Two results each within ``bound`` of the exact one are within twice it of each other."""
    return 2.0 * bound


def forward_bound(dtype: str = "float32", depth: int = RESNET50_FEATURE_DEPTH,
                  terms: int = RESNET50_WIDEST_SUM) -> float:
    """The relative error (to the largest value) of a forward pass of ``depth`` layers whose sums
    have at most ``terms`` signed terms: depth sqrt(terms) u."""
    return depth * probabilistic_bound(dtype, terms)


def assert_close_to_max(got: np.ndarray, want: np.ndarray, bound: float, axis=None, what: str = "") -> None:
    """|got - want| <= bound * max |want| (along ``axis``: per row, e.g. per feature vector)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shapes {got.shape} and {want.shape}"
    scale = np.abs(want).max(axis=axis, keepdims=axis is not None)
    excess = np.abs(got - want) - bound * scale
    assert excess.max(initial=-np.inf) <= 0, (
        f"{what}: off by {np.abs(got - want).max():.3g}, more than {bound:.3g} of the largest value "
        f"{np.abs(want).max():.3g}")


def assert_boxes_close(got: np.ndarray, want: np.ndarray, scale: float = 1.0, what: str = "boxes") -> None:
    """Boxes (x1, y1, x2, y2) in image pixels agree to :data:`BOX_PIXELS` network-input pixels;
    ``scale`` is the network input's size over the image's (the Extractor's ``scale``)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shapes {got.shape} and {want.shape}"
    limit = BOX_PIXELS / scale
    worst = np.abs(got - want).max(initial=0.0)
    assert worst <= limit, f"{what}: an edge moved {worst:.3g} px, more than {limit:.3g} px (one input pixel)"
