"""Eq. 4 on the device: thresholded second moments of probability maps -> ellipses and boxes.

The same computation as :func:`dasr.regions.ellipse.ellipses_from_maps` (NumPy, float64), written
in ``keras.ops`` so that it runs where the maps are computed (TensorFlow or JAX, CPU or GPU) and
only S x (box, ellipse, kept fraction) leaves the device, never the S x H x W maps.

Precision: the device computes in float32.  Raw moments ``E[y²] - E[y]²`` would lose the
small variances of small regions to cancellation at 512-pixel coordinates, so the moments are
central (centroid first, then squared offsets), and the axis-aligned ones come from the maps'
row and column sums (reductions over one side, not over H x W pixels).  The boxes then agree
with the float64 NumPy ones to well under 1e-4 pixel (tests/model/test_model_moments.py).

Two keep rules, as the NumPy function:

* ``percentile=None`` (the paper): keep ``M / max(M) >= tau``, moments unweighted (Eq. 4) or
  weighted by ``M``, each kept pixel a unit square (``cell²/12`` added to the variances);
* ``percentile=q`` (the authors' code): keep the non-zero pixels at or above the map's q-th
  percentile (linear interpolation, NumPy's default), unweighted, pixel centres only.
"""

from __future__ import annotations

import keras

ops = keras.ops


def device_ellipses(maps, tau: float = 0.1, weighted: bool = False, cell: float = 1.0,
                    percentile: float | None = None):
    """Moment ellipses, boxes and kept fractions of a batch of maps, as backend tensors.

    Args:
      maps: (S, H, W) non-negative maps (a backend tensor or array).
      tau: the paper rule's threshold, relative to each map's maximum.
      weighted: the paper rule's moments weighted by the map (default: unweighted, Eq. 4).
      cell: pixels per map cell.
      percentile: None for the paper rule; q in (0, 100) for the authors' rule.

    Returns:
      (boxes (S, 4), ellipses (S, 5) as cx, cy, semi-axes a >= b, angle, kept fraction (S,)),
      float32 tensors, boxes clipped to the maps' extent; an all-zero map gives zeros.
    """
    maps = ops.cast(maps, "float32")
    s, h, w = ops.shape(maps)
    # Sizes as float32 tensors: TensorFlow's compiled step may see the sizes as int32 tensors
    # (a tf.function retraced with relaxed shapes after a second image size).
    hf, wf = ops.cast(h, "float32"), ops.cast(w, "float32")
    flat = ops.reshape(maps, (s, h * w))
    if percentile is None:
        peak = ops.max(flat, axis=1)
        norm = maps / ops.where(peak > 0, peak, 1.0)[:, None, None]
        keep = ops.logical_and(norm >= tau, (peak > 0)[:, None, None])
        weights = ops.where(keep, norm if weighted else 1.0, 0.0)
        square = cell * cell / 12.0
    else:
        threshold = ops.quantile(flat, percentile / 100.0, axis=1)
        keep = ops.logical_and(maps >= threshold[:, None, None], maps > 0)
        weights = ops.cast(keep, "float32")
        square = 0.0
    wy = ops.sum(weights, axis=2)  # (S, H)
    wx = ops.sum(weights, axis=1)  # (S, W)
    mass = ops.sum(wy, axis=1)
    safe = ops.where(mass > 0, mass, 1.0)
    ys = (ops.arange(h, dtype="float32") + 0.5) * cell
    xs = (ops.arange(w, dtype="float32") + 0.5) * cell
    cy = ops.sum(wy * ys[None], axis=1) / safe
    cx = ops.sum(wx * xs[None], axis=1) / safe
    dy = ys[None] - cy[:, None]  # (S, H)
    dx = xs[None] - cx[:, None]  # (S, W)
    vyy = ops.sum(wy * dy * dy, axis=1) / safe + square
    vxx = ops.sum(wx * dx * dx, axis=1) / safe + square
    vxy = ops.sum(ops.sum(weights * dx[:, None, :], axis=2) * dy, axis=1) / safe
    half_w, half_h = 2.0 * ops.sqrt(vxx), 2.0 * ops.sqrt(vyy)
    limits = ops.stack([wf * cell, hf * cell, wf * cell, hf * cell])
    boxes = ops.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)
    boxes = ops.minimum(ops.maximum(boxes, 0.0), limits[None])
    mean_v, diff = (vxx + vyy) / 2.0, (vxx - vyy) / 2.0
    root = ops.sqrt(diff * diff + vxy * vxy)
    major, minor = mean_v + root, ops.maximum(mean_v - root, 0.0)
    angle = 0.5 * ops.arctan2(2.0 * vxy, vxx - vyy)
    ellipses = ops.stack([cx, cy, 2.0 * ops.sqrt(major), 2.0 * ops.sqrt(minor), angle], axis=1)
    found = (mass > 0)[:, None]
    boxes = ops.where(found, boxes, 0.0)
    ellipses = ops.where(found, ellipses, 0.0)
    kept = ops.sum(ops.cast(ops.reshape(keep, (s, h * w)), "float32"), axis=1) / (hf * wf)
    return boxes, ellipses, kept
