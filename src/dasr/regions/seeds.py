"""Seeds on the activation map (Section 3.1 of the paper).

* Activation map: ``X̄`` = channel mean of the top conv layer.
* ``dasr`` takes the 3x3 local maxima of ``X̄``: a cell is a seed when it is >= each of its
  (up to 8) neighbours inside the map (borders compare with the neighbours that exist) and
  > 0; on a plateau every tied cell is a seed (NMS, when on, merges their regions).
* ``dasr-star`` takes every cell with ``X̄ > mean(X̄)``.  A seed's score is its ``X̄`` value.
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


def find_seeds(amap: np.ndarray, method: str, max_seeds: int | None = None):
    """Seeds of ``method`` (``dasr`` or ``dasr-star``), highest first, at most ``max_seeds``."""
    seeds, scores = (local_maxima_seeds if method == "dasr" else above_mean_seeds)(amap)
    if max_seeds is not None:
        seeds, scores = seeds[:max_seeds], scores[:max_seeds]
    return seeds, scores
