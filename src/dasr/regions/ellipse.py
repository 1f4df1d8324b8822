"""Probability map -> moment ellipse -> box (Section 3.2, Eq. 4 of the paper).

Each seed's pixel map ``M`` is divided by its maximum and thresholded at ``τ`` (pixels with
``M >= τ`` are kept).  The kept pixels' centroid and second-moment matrix (centred; unweighted
as in Eq. 4, or weighted by ``M``) define an ellipse with the same moments (semi-axes
``2·sqrt(eigenvalue)``; each pixel is counted as a unit square, i.e. 1/12 is added to the
variances, so a one-pixel region has a one-pixel box).  The region is the ellipse's
circumscribed axis-aligned rectangle, ``centre ± 2·sqrt(diag(C))``, clipped to the image.
"""

from __future__ import annotations

import numpy as np


# The authors' code keeps the pixels at or above this percentile of each map.
AUTHORS_PERCENTILE = 95.0


def ellipses_from_maps(maps: np.ndarray, tau: float = 0.1, weighted: bool = False, cell: float = 1.0,
                       rule: str = "paper"):
    """Moment ellipses and their boxes for a batch of maps (Eq. 4).

    Args:
      maps: (S, H, W) non-negative maps.
      tau: keep pixels with ``M / max(M) >= tau``.
      weighted: weight the moments by ``M`` (default: unweighted, as Eq. 4).
      cell: pixels per map cell (maps coarser than the image).
      rule: ``paper``; or ``authors``: keep the non-zero pixels at or above the map's 95th
        percentile (τ and ``weighted`` unused), unweighted moments of the pixel centres, no
        unit-square term (a one-pixel region gives an empty box), as the authors' code.

    Returns:
      (boxes (S, 4) in pixels of the image the maps cover, ellipses (S, 5), kept fraction (S,)).
      A map that is all zero gives a zero box at the origin and kept fraction 0.
    """
    maps = np.asarray(maps, np.float32)
    s, h, w = maps.shape
    if rule == "authors":
        # reshape(s, h * w), not (s, -1): an image without seeds has s = 0, where -1 is ambiguous.
        threshold = np.percentile(maps.reshape(s, h * w), AUTHORS_PERCENTILE, axis=1)
        keep = (maps >= threshold[:, None, None]) & (maps > 0)
        return _moment_boxes(keep.astype(np.float64), keep, cell, unit_square=False)
    peak = maps.reshape(s, h * w).max(axis=1)
    norm = maps / np.where(peak > 0, peak, 1.0)[:, None, None]
    keep = (norm >= tau) & (peak[:, None, None] > 0)
    wts = np.where(keep, norm if weighted else 1.0, 0.0).astype(np.float64)
    return _moment_boxes(wts, keep, cell, unit_square=True)


def _moment_boxes(wts: np.ndarray, keep: np.ndarray, cell: float, unit_square: bool):
    """Boxes, ellipses and kept fractions from (S, H, W) pixel weights (0 = not kept)."""
    s, h, w = wts.shape
    mass = wts.sum(axis=(1, 2))
    safe = np.where(mass > 0, mass, 1.0)
    ys = (np.arange(h) + 0.5) * cell
    xs = (np.arange(w) + 0.5) * cell
    wy = wts.sum(axis=2)  # (S, H)
    wx = wts.sum(axis=1)  # (S, W)
    cy = wy @ ys / safe
    cx = wx @ xs / safe
    vyy = wy @ ys**2 / safe - cy**2
    vxx = wx @ xs**2 / safe - cx**2
    vxy = np.einsum("shw,h,w->s", wts, ys, xs) / safe - cx * cy
    # Each kept pixel is a unit square (variance cell²/12 along each axis), not a point.
    square = cell**2 / 12.0 if unit_square else 0.0
    vxx = np.maximum(vxx, 0) + square
    vyy = np.maximum(vyy, 0) + square
    half_w, half_h = 2.0 * np.sqrt(vxx), 2.0 * np.sqrt(vyy)
    boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], 1)
    boxes = np.clip(boxes, 0, [w * cell, h * cell, w * cell, h * cell])
    # Eigen-decomposition of [[vxx, vxy], [vxy, vyy]] in closed form.
    mean_v, diff = (vxx + vyy) / 2, (vxx - vyy) / 2
    root = np.sqrt(diff**2 + vxy**2)
    l1, l2 = mean_v + root, np.maximum(mean_v - root, 0)
    angle = 0.5 * np.arctan2(2 * vxy, vxx - vyy)
    ellipses = np.stack([cx, cy, 2 * np.sqrt(l1), 2 * np.sqrt(l2), angle], 1)
    empty = mass <= 0
    boxes[empty] = 0
    ellipses[empty] = 0
    return boxes.astype(np.float32), ellipses.astype(np.float32), (keep.sum(axis=(1, 2)) / (h * w)).astype(np.float32)
