"""Pooling of convolutional feature maps into global and regional descriptors.

All functions work on a single feature map of shape ``(H, W, C)`` (TensorFlow's
NHWC layout without the batch axis), as plain numpy, so they can be tested on
tiny hand-made arrays and reused regardless of how the map was produced.

Regions are expressed as half-open *cell* ranges ``(r0, r1, c0, c1)`` on the
feature map: rows ``r0 <= r < r1`` and columns ``c0 <= c < c1``.
:func:`boxes_to_cells` converts boxes given in pixels of the network input
image into such ranges.

Global descriptors:

* :func:`gap` - global average pooling (SPoC without centre prior),
* :func:`mac` - global max pooling (Tolias et al. 2016),
* :func:`rmac` - regional MAC over the R-MAC grid of :func:`rmac_regions`
  (Tolias et al., "Particular object retrieval with integral max-pooling of
  CNN activations", ICLR 2016), each region optionally PCA-whitened as theirs
  (:func:`rmac_region_vectors` are what that whitening is learned on),
* :func:`crow` - cross-dimensional weighting (Kalantidis et al., "Cross-
  dimensional weighting for aggregated deep convolutional features", ECCVW 2016),
* :func:`gem` - generalized mean pooling with p = 3 (Radenović et al., "Fine-tuning
  CNN image retrieval with no human annotation", TPAMI 2018: their fixed-p default).

Region pooling (:func:`pool_regions`): ``avg`` (the paper), ``max``, or ``gem`` (p = 3, as the
authors' evaluation code pools its regions).

None of the global descriptors is normalised here: the caller applies the
l2 -> PCA-whitening -> l2 post-processing (:func:`dasr.features.whitening.postprocess`).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from dasr.features.whitening import apply_pca_whitening, l2_normalize

__all__ = [
    "boxes_to_cells",
    "pool_regions",
    "pool_boxes",
    "valid_part",
    "gap",
    "mac",
    "rmac_regions",
    "rmac_region_vectors",
    "rmac",
    "crow",
    "gem",
    "GEM_P",
    "POOLINGS",
]

# The region poolings (:func:`pool_regions`'s modes).
POOLINGS = ("avg", "max", "gem")
# GeM's exponent (Radenović et al.'s fixed p) and the floor it raises (their eps: x >= 1e-6).
GEM_P = 3.0
GEM_EPS = 1e-6

# Tolerance (in cell units) when converting pixel coordinates to cells, so that
# a coordinate that should sit exactly on a cell border but arrives as
# 63.99999999 / 16 after rescaling does not spill into the neighbouring cell.
# 1e-4 cells (0.003 px at stride 32) covers a box stored as float32 in original-image pixels
# and scaled back (dasr.store.derive re-pools stored boxes), and is far below any real box change.
_CELL_TOL = 1e-4


def _check_fmap(fmap: np.ndarray) -> np.ndarray:
    """Validate a single ``(H, W, C)`` feature map and return it as an array."""
    fmap = np.asarray(fmap)
    if fmap.ndim != 3:
        raise ValueError(f"feature map must have shape (H, W, C), got {fmap.shape}")
    if min(fmap.shape) < 1:
        raise ValueError(f"feature map must be non-empty, got {fmap.shape}")
    if not np.issubdtype(fmap.dtype, np.floating):
        fmap = fmap.astype(np.float32)
    return fmap


def boxes_to_cells(
    boxes: np.ndarray,
    stride: float,
    fmap_shape: tuple[int, int],
) -> np.ndarray:
    """Map boxes in input-image pixels to half-open cell ranges of a feature map.

    A cell ``(r, c)`` of a map with stride ``s`` is taken to cover the pixels
    ``[c*s, (c+1)*s) x [r*s, (r+1)*s)`` of the network input image (the
    receptive-field *centres* convention used by R-MAC style pooling; the
    actual receptive field is much larger). A box therefore covers the cells

    * ``c0 = floor(x1 / s)``, ``c1 = ceil(x2 / s)`` (columns, half-open),
    * ``r0 = floor(y1 / s)``, ``r1 = ceil(y2 / s)`` (rows, half-open),

    i.e. every cell it touches. The ranges are then clipped to the map
    (``0..W`` and ``0..H``). A box must always pool at least one cell, so if a
    range is empty after clipping (a degenerate box lying on a cell border, or
    a box outside the map) it is replaced by the single cell containing the
    box centre, itself clipped to the map. A tolerance of ``1e-4`` cells is
    applied before ``floor``/``ceil`` so that round-off from rescaling does
    not add a spurious extra row or column.

    Args:
        boxes: ``(n, 4)`` array of ``x1, y1, x2, y2`` in pixels of the network
            input image (x to the right, y downwards), ``x2 >= x1``,
            ``y2 >= y1``.
        stride: total stride of the feature map in input pixels (e.g. 32 for
            ResNet-50 ``conv5``); may be fractional when the map size is not
            an exact divisor of the image size.
        fmap_shape: ``(H, W)`` of the feature map.

    Returns:
        ``(n, 4)`` int64 array of ``(r0, r1, c0, c1)`` with
        ``0 <= r0 < r1 <= H`` and ``0 <= c0 < c1 <= W``.

    Raises:
        ValueError: on a bad shape, a non-positive stride or map size, a
            non-finite coordinate, or a box with ``x2 < x1`` or ``y2 < y1``.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim == 1 and boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape (n, 4), got {boxes.shape}")
    if not stride > 0:
        raise ValueError(f"stride must be positive, got {stride}")
    H, W = (int(v) for v in fmap_shape)
    if H < 1 or W < 1:
        raise ValueError(f"fmap_shape must be positive, got {fmap_shape}")
    if not np.all(np.isfinite(boxes)):
        raise ValueError("boxes contain non-finite coordinates")
    x1, y1, x2, y2 = boxes.T
    if np.any(x2 < x1) or np.any(y2 < y1):
        raise ValueError("boxes must satisfy x2 >= x1 and y2 >= y1")

    def _span(lo: np.ndarray, hi: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        a = np.floor(lo / stride + _CELL_TOL).astype(np.int64)
        b = np.ceil(hi / stride - _CELL_TOL).astype(np.int64)
        a = np.clip(a, 0, size)
        b = np.clip(b, 0, size)
        empty = b <= a
        if np.any(empty):
            centre = np.floor((lo + hi) / (2.0 * stride)).astype(np.int64)
            centre = np.clip(centre, 0, size - 1)
            a = np.where(empty, centre, a)
            b = np.where(empty, centre + 1, b)
        return a, b

    c0, c1 = _span(x1, x2, W)
    r0, r1 = _span(y1, y2, H)
    return np.stack([r0, r1, c0, c1], axis=1).astype(np.int64)


def _check_cells(cells: np.ndarray, H: int, W: int) -> np.ndarray:
    """Validate ``(n, 4)`` half-open cell ranges against an ``H x W`` map."""
    cells = np.asarray(cells)
    if cells.ndim == 1 and cells.size == 0:
        cells = cells.reshape(0, 4)
    if cells.ndim != 2 or cells.shape[1] != 4:
        raise ValueError(f"cells must have shape (n, 4), got {cells.shape}")
    if cells.size and not np.issubdtype(cells.dtype, np.integer):
        if not np.all(cells == np.round(cells)):
            raise ValueError("cells must be integers")
    cells = cells.astype(np.int64)
    r0, r1, c0, c1 = cells.T
    bad = (r0 < 0) | (c0 < 0) | (r1 > H) | (c1 > W) | (r1 <= r0) | (c1 <= c0)
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"cell range {cells[i].tolist()} is empty or outside a {H}x{W} map"
        )
    return cells


def pool_regions(
    fmap: np.ndarray,
    cells: np.ndarray,
    mode: Literal["avg", "max", "gem"] = "avg",
) -> np.ndarray:
    """Pool a feature map inside many rectangular cell ranges.

    Average pooling uses a summed-area table (integral image) accumulated in
    float64, so after the ``O(H*W*C)`` table every region costs ``O(C)``
    regardless of its area: DASR describes hundreds of boxes per image, and
    float64 keeps the four-corner differences exact enough for large maps.
    Max pooling has no such decomposition and loops over the boxes.

    Args:
        fmap: ``(H, W, C)`` feature map.
        cells: ``(n, 4)`` integer half-open ranges ``(r0, r1, c0, c1)``, e.g.
            from :func:`boxes_to_cells`; every range must be non-empty and
            inside the map.
        mode: ``"avg"`` (DASR's region descriptor), ``"max"`` or ``"gem"`` (the mean of
            ``max(x, 1e-6) ** 3`` to the power 1/3, through the same integral image).

    Returns:
        ``(n, C)`` array of the map's floating dtype (float32 for float32
        maps); ``(0, C)`` when ``cells`` is empty.

    Raises:
        ValueError: on a bad shape, an empty or out-of-map range, or an
            unknown ``mode``.
    """
    fmap = _check_fmap(fmap)
    H, W, C = fmap.shape
    cells = _check_cells(cells, H, W)
    n = cells.shape[0]
    if mode not in ("avg", "max", "gem"):
        raise ValueError(f"mode must be 'avg', 'max' or 'gem', got {mode!r}")
    if n == 0:
        return np.zeros((0, C), dtype=fmap.dtype)
    r0, r1, c0, c1 = cells.T

    if mode == "gem":
        # Region by region, not through the integral image: its differences of large running sums
        # cancel to below zero where a region's cubes are tiny beside the map's (a dead channel
        # next to a strong one), and a negative mean has no real cube root.
        powered = np.maximum(fmap.astype(np.float64), GEM_EPS) ** GEM_P
        means = np.stack([powered[a:b, c:d].mean(axis=(0, 1)) for a, b, c, d in zip(r0, r1, c0, c1)])
        return (means ** (1.0 / GEM_P)).astype(fmap.dtype)
    if mode == "avg":
        # Zero-padded first row/column so that the sum over [r0, r1) x [c0, c1)
        # is I[r1, c1] - I[r0, c1] - I[r1, c0] + I[r0, c0] without special cases.
        integral = np.zeros((H + 1, W + 1, C), dtype=np.float64)
        np.cumsum(fmap, axis=0, dtype=np.float64, out=integral[1:, 1:])
        np.cumsum(integral[1:, 1:], axis=1, out=integral[1:, 1:])
        sums = integral[r1, c1] - integral[r0, c1] - integral[r1, c0] + integral[r0, c0]
        area = ((r1 - r0) * (c1 - c0)).astype(np.float64)
        return (sums / area[:, None]).astype(fmap.dtype)

    out = np.empty((n, C), dtype=fmap.dtype)
    for i in range(n):
        out[i] = fmap[r0[i] : r1[i], c0[i] : c1[i]].max(axis=(0, 1))
    return out


def gap(fmap: np.ndarray) -> np.ndarray:
    """Global average pooling.

    Args:
        fmap: ``(H, W, C)`` feature map.

    Returns:
        ``(C,)`` mean over all spatial positions (not normalised).

    Raises:
        ValueError: if ``fmap`` is not a non-empty 3-D array.
    """
    fmap = _check_fmap(fmap)
    # float64 accumulation: a 2048-channel map of a large image has ~10^4 cells.
    return fmap.mean(axis=(0, 1), dtype=np.float64).astype(fmap.dtype)


def mac(fmap: np.ndarray) -> np.ndarray:
    """Global max pooling (MAC, Tolias et al. 2016).

    Args:
        fmap: ``(H, W, C)`` feature map.

    Returns:
        ``(C,)`` maximum over all spatial positions (not normalised).

    Raises:
        ValueError: if ``fmap`` is not a non-empty 3-D array.
    """
    fmap = _check_fmap(fmap)
    return fmap.max(axis=(0, 1))


def rmac_regions(H: int, W: int, L: int = 3) -> np.ndarray:
    """R-MAC region grid of Tolias et al. (2016), as half-open cell ranges.

    Reproduces the authors' ``rmac_regions`` (also used by cirtorch): at scale
    ``l = 1..L`` the regions are squares of side
    ``wl = floor(2 * min(H, W) / (l + 1))``. Along the short side there are
    ``l`` regions and along the long side ``l + d`` regions, where the extra
    count ``d`` (from 1..6) is chosen once so that consecutive regions at
    ``l = 1`` overlap by as close to 40% as possible; ``d = 0`` for a square
    map. Regions are spread uniformly with the integer positions
    ``floor(wl2 + k * b) - wl2``, ``wl2 = floor(wl / 2 - 1)``,
    ``b = (side - wl) / (count - 1)`` exactly as in the reference code
    (including its rounding), so results can be compared with published
    R-MAC numbers. Scales whose side rounds to zero are skipped.

    Args:
        H: feature-map height (cells).
        W: feature-map width (cells).
        L: number of scales.

    Returns:
        ``(k, 4)`` int64 array of ``(r0, r1, c0, c1)``, ordered by scale,
        then row, then column.

    Raises:
        ValueError: if ``H``, ``W`` or ``L`` is smaller than 1.
    """
    H, W, L = int(H), int(W), int(L)
    if H < 1 or W < 1 or L < 1:
        raise ValueError(f"need H, W, L >= 1, got H={H}, W={W}, L={L}")
    ovr = 0.4  # desired overlap of neighbouring regions at the coarsest scale
    steps = np.array([2, 3, 4, 5, 6, 7], dtype=np.float64)  # regions on the long side
    w = min(H, W)
    b = (max(H, W) - w) / (steps - 1)
    # Overlap of two neighbouring w x w squares spaced b apart is (w^2 - w*b) / w^2.
    idx = int(np.argmin(np.abs((w**2 - w * b) / w**2 - ovr)))
    Wd = idx + 1 if H < W else 0
    Hd = idx + 1 if H > W else 0

    def _starts(side: int, count: int, wl: int, wl2: int) -> list[int]:
        step = 0.0 if count == 1 else (side - wl) / (count - 1)
        return [int(math.floor(wl2 + k * step) - wl2) for k in range(count)]

    regions: list[tuple[int, int, int, int]] = []
    for l in range(1, L + 1):
        wl = int(math.floor(2 * w / (l + 1)))
        if wl == 0:
            continue
        wl2 = int(math.floor(wl / 2 - 1))
        rows = _starts(H, l + Hd, wl, wl2)
        cols = _starts(W, l + Wd, wl, wl2)
        for r in rows:
            for c in cols:
                regions.append((r, r + wl, c, c + wl))
    return np.asarray(regions, dtype=np.int64).reshape(-1, 4)


def rmac_region_vectors(fmap: np.ndarray, L: int = 3, include_global: bool = False,
                        eps: float = 1e-12) -> np.ndarray:
    """The l2-normalised MAC vector of each region of :func:`rmac_regions` (float64).

    What R-MAC sums, and what its regional PCA-whitening is learned on (Tolias et al. learn it on
    the region vectors of another collection).

    Args:
        fmap: ``(H, W, C)`` feature map.
        L: number of scales of the region grid.
        include_global: also the whole map's MAC, first (cirtorch's variant; the authors' grid
            does not include it separately, although for a square map its ``l = 1`` region is
            the whole map anyway).
        eps: guards the division for all-zero regions (they stay 0).

    Returns:
        ``(R, C)`` float64.

    Raises:
        ValueError: on a bad feature map or ``L < 1``.
    """
    fmap = _check_fmap(fmap)
    H, W, _ = fmap.shape
    cells = rmac_regions(H, W, L)
    if include_global:
        cells = np.concatenate([np.array([[0, H, 0, W]], dtype=np.int64), cells])
    v = pool_regions(fmap, cells, mode="max").astype(np.float64)
    return v / (np.linalg.norm(v, axis=1, keepdims=True) + eps)


def rmac(
    fmap: np.ndarray,
    L: int = 3,
    include_global: bool = False,
    region_whitening: dict[str, np.ndarray] | None = None,
    eps: float = 1e-12,
) -> np.ndarray:
    """Regional maximum activation of convolutions (R-MAC).

    The sum of the region vectors of :func:`rmac_region_vectors`. With ``region_whitening``
    (Tolias et al.'s R-MAC), each region vector is PCA-whitened and l2-normalised again before
    the sum; without it the regions are summed as they are, and DASR's post-processing
    (:func:`dasr.features.whitening.postprocess`) whitens only the aggregated vector.

    Args:
        fmap: ``(H, W, C)`` feature map.
        L: number of scales of the region grid.
        include_global: see :func:`rmac_region_vectors`.
        region_whitening: PCA-whitening parameters learned on region vectors
            (:func:`dasr.features.whitening.learn_pca_whitening`), or None.
        eps: guards the divisions for all-zero regions (they contribute 0).

    Returns:
        ``(C,)`` un-normalised R-MAC vector (``(D,)``, the whitening's dimension, with one).

    Raises:
        ValueError: on a bad feature map, ``L < 1``, or a whitening of another dimension.
    """
    v = rmac_region_vectors(fmap, L, include_global, eps)
    if region_whitening is not None:
        v = l2_normalize(apply_pca_whitening(v, region_whitening), eps=eps)
    return v.sum(axis=0).astype(np.asarray(fmap).dtype)


def crow(
    fmap: np.ndarray,
    a: float = 2.0,
    b: float = 2.0,
    eps: float = 1e-12,
) -> np.ndarray:
    """Cross-dimensional weighted sum pooling (CroW, Kalantidis et al. 2016).

    * Spatial weight: ``S' = sum_k X[..., k]``, ``S = (S' / ||S'||_a)^(1/b)``.
    * Channel weight (an idf-like term): ``Q_k`` is the fraction of non-zero
      positions of channel ``k`` and ``w_k = log(sum_h Q_h / (eps + Q_k))``.
    * Descriptor: ``f_k = w_k * sum_{i,j} S[i, j] * X[i, j, k]``.

    The map is expected to be non-negative (post-ReLU), as in the paper:
    ``S'`` is then non-negative, so the fractional power is defined. Negative
    sums are clamped to 0 to keep the result finite for other inputs. A
    channel that is never active contributes 0 whatever its weight, since
    its activations are all zero; an all-zero map gives the zero vector.

    Args:
        fmap: ``(H, W, C)`` feature map.
        a: norm used to normalise the spatial weight (2 in the paper).
        b: root applied to the spatial weight (2 in the paper).
        eps: guards the divisions for empty maps / channels.

    Returns:
        ``(C,)`` un-normalised CroW vector.

    Raises:
        ValueError: on a bad feature map or non-positive ``a`` or ``b``.
    """
    fmap = _check_fmap(fmap)
    if not (a > 0 and b > 0):
        raise ValueError(f"a and b must be positive, got a={a}, b={b}")
    x = fmap.astype(np.float64)
    s = np.maximum(x.sum(axis=2), 0.0)
    z = np.sum(s**a) ** (1.0 / a)
    spatial = (s / (z + eps)) ** (1.0 / b)
    q = np.count_nonzero(x, axis=(0, 1)) / float(x.shape[0] * x.shape[1])
    total = q.sum()
    channel = np.log(total / (eps + q)) if total > 0 else np.zeros_like(q)
    f = np.einsum("ij,ijk->k", spatial, x) * channel
    return f.astype(fmap.dtype)


def gem(fmap: np.ndarray) -> np.ndarray:
    """Global GeM pooling, p = :data:`GEM_P` (Radenović et al.).

    Args:
        fmap: ``(H, W, C)`` feature map (non-negative: post-ReLU).

    Returns:
        ``(C,)`` ``(mean over positions of max(x, 1e-6)^p)^(1/p)`` (not normalised).
    """
    fmap = _check_fmap(fmap)
    powered = np.maximum(fmap.astype(np.float64), GEM_EPS) ** GEM_P
    return (powered.mean(axis=(0, 1)) ** (1.0 / GEM_P)).astype(fmap.dtype)


def global_descriptor(fmap: np.ndarray, method: str,
                      region_whitening: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """One vector for a (H, W, C) map: ``gap`` (SPoC), ``mac``, ``rmac`` (L=3; ``region_whitening``
    whitens its regions, see :func:`rmac`), ``crow``, ``gem`` (p=3)."""
    if region_whitening is not None and method != "rmac":
        raise ValueError(f"a region whitening applies to rmac only, not {method!r}")
    if method == "gap":
        return gap(fmap)
    if method == "mac":
        return mac(fmap)
    if method == "rmac":
        return rmac(fmap, L=3, region_whitening=region_whitening)
    if method == "crow":
        return crow(fmap)
    if method == "gem":
        return gem(fmap)
    raise ValueError(f"unknown global method {method!r}")


def pool_boxes(fmap: np.ndarray, boxes: np.ndarray, stride: int, how: Literal["avg", "max", "gem"] = "avg"
               ) -> np.ndarray:
    """Pools ``fmap`` inside boxes given in network-input pixels (:func:`boxes_to_cells`, :func:`pool_regions`).

    Args:
      fmap: (H, W, C) feature map of stride ``stride``.
      boxes: (n, 4) x1, y1, x2, y2 in network-input pixels.
      stride: pixels per cell.
      how: ``avg`` (the paper), ``max`` or ``gem``.

    Returns:
      (n, C) float32; (0, C) for no boxes.
    """
    if len(boxes) == 0:
        return np.zeros((0, fmap.shape[-1]), np.float32)
    cells = boxes_to_cells(np.asarray(boxes, np.float64).reshape(-1, 4), stride, fmap.shape[:2])
    return pool_regions(fmap, cells, how).astype(np.float32)


def valid_part(fmap: np.ndarray, size: tuple[int, int], stride: int) -> np.ndarray:
    """The cells of ``fmap`` that see the image, not the padding of a thin one.

    Args:
      fmap: (H, W, C) map of a network input padded at the bottom and right.
      size: (width, height) of the image inside that input, in pixels.
      stride: pixels per cell.
    """
    w, h = size
    return fmap[: -(-h // stride), : -(-w // stride)]
