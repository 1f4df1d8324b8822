"""Seeds on the activation map (Section 3.1 of the paper).

* Activation map: ``X̄`` = channel mean of the top conv layer.
* ``dasr`` takes the 3x3 local maxima of ``X̄``: a cell is a seed when it is >= each of its
  (up to 8) neighbours inside the map (borders compare with the neighbours that exist) and
  > 0; on a plateau every tied cell is a seed (NMS, when on, merges their regions).
* ``dasr-star`` takes every cell with ``X̄ > mean(X̄)``.  A seed's score is its ``X̄`` value.
* The authors' released code (``rule="authors"``) differs: :func:`authors_peaks`.
"""

from __future__ import annotations

import numpy as np


def activation_map(top: np.ndarray) -> np.ndarray:
    """X̄: the channel mean of the top layer's (h, w, C) or (1, h, w, C) activations."""
    top = np.asarray(top)
    if top.ndim == 4:
        top = top[0]
    return top.mean(axis=-1)


def local_maxima_seeds(amap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DASR seeds: cells >= all their 3x3 neighbours (borders: existing neighbours) and > 0.

    Returns:
      (seeds (S, 2) int32 row/col, scores (S,) float32), by decreasing score.
    """
    h, w = amap.shape
    padded = np.pad(amap.astype(np.float64), 1, constant_values=-np.inf)
    is_max = amap > 0
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                is_max &= amap >= padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
    return _sorted_seeds(amap, is_max)


def above_mean_seeds(amap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DASR* seeds: every cell whose activation is above the map's mean."""
    return _sorted_seeds(amap, amap > amap.mean())


def _sorted_seeds(amap, mask):
    rows, cols = np.nonzero(mask)
    scores = amap[rows, cols].astype(np.float32)
    order = np.argsort(-scores, kind="stable")
    return np.stack([rows, cols], 1)[order].astype(np.int32), scores[order]


def authors_peaks(amap: np.ndarray, mean_filter: bool) -> tuple[np.ndarray, np.ndarray]:
    """The authors' peaks (PRM's peak stimulation): 3x3 local maxima, border rows/cols dropped.

    A cell is a peak when a 3x3 max pooling (padded with -inf) returns it as its window's
    maximum: it is >= its 8 neighbours and > those that come before it in row-major order (the
    first maximum wins a tie).  Peaks on the first or last row or column are dropped; with
    ``mean_filter`` (their DASR) only peaks >= the map's mean are kept; their backprop then skips
    peaks that are not > 0.

    Args:
      amap: (h, w) activation map.
      mean_filter: keep only peaks >= mean(amap) (DASR; DASR* keeps every peak).

    Returns:
      (seeds (S, 2) int32 row/col, scores (S,) float32 peak values), by decreasing score.
    """
    h, w = amap.shape
    values = amap.astype(np.float64)
    padded = np.pad(values, 1, constant_values=-np.inf)
    is_peak = values > 0
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                neighbour = padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
                earlier = dy < 0 or (dy == 0 and dx < 0)
                is_peak &= values > neighbour if earlier else values >= neighbour
    is_peak[[0, -1], :] = False
    is_peak[:, [0, -1]] = False
    if mean_filter:
        is_peak &= values >= values.mean()
    return _sorted_seeds(amap, is_peak)


def find_seeds(amap: np.ndarray, method: str, max_seeds: int | None = None, rule: str = "paper"):
    """Seeds of ``method`` (``dasr`` or ``dasr-star``) under ``rule`` (``paper``: the paper's
    local maxima / cells above the mean; ``authors``: :func:`authors_peaks`), highest first, at
    most ``max_seeds``."""
    if rule == "authors":
        seeds, scores = authors_peaks(amap, mean_filter=method == "dasr")
    else:
        seeds, scores = (local_maxima_seeds if method == "dasr" else above_mean_seeds)(amap)
    if max_seeds is not None:
        seeds, scores = seeds[:max_seeds], scores[:max_seeds]
    return seeds, scores
