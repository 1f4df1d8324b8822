"""Seeds -> probability maps -> ellipses -> boxes -> NMS (Sections 3.1 and 3.2 of the paper).

* Activation map: ``X̄`` = channel mean of the top conv layer.
* Seeds: ``dasr`` takes the 3x3 local maxima of ``X̄``: a cell is a seed when it is >= each of
  its (up to 8) neighbours inside the map (borders compare with the neighbours that exist)
  and > 0; on a plateau every tied cell is a seed (NMS, when on, merges their regions).
  ``dasr-star`` takes every cell with ``X̄ > mean(X̄)``.  A seed's score is its ``X̄`` value.
* Each seed's pixel map ``M`` is divided by its maximum and thresholded at ``τ`` (pixels with
  ``M >= τ`` are kept).  The kept pixels' centroid and second-moment matrix (Eq. 4, centred;
  unweighted by default as in Eq. 4, or weighted by ``M``) define an ellipse with the same
  moments (semi-axes ``2·sqrt(eigenvalue)``; each pixel is counted as a unit square, i.e. 1/12
  is added to the variances, so a one-pixel region has a one-pixel box).  The region is the
  ellipse's circumscribed axis-aligned rectangle, ``centre ± 2·sqrt(diag(C))``, clipped to the
  image and mapped back to the original image's coordinates.
* ``dasr-star`` then keeps regions by greedy NMS on the seed score at IoU ``β``; ``dasr`` does
  not (the paper's "without NMS"), unless asked.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

METHODS = ("dasr", "dasr-star")


@dataclass(frozen=True)
class RegionConfig:
    """Everything that decides which regions an image gets (stored with every index).

    Attributes:
      method: ``dasr`` (3x3 local maxima) or ``dasr-star`` (every cell above the mean).
      tau: threshold on the max-normalised map.
      nms_iou: IoU of the greedy NMS (β); None = no NMS.  Defaults: 0.3 for dasr-star,
        None for dasr (see :func:`default_nms`).
      weighted_moments: weight the second moments by the map values.
      max_side: long side of the network input in pixels.
      input_rule, strided_conv, stop_stride: see :mod:`dasr.backprop` (``stop_stride`` > 1 is
        the fast mode: coarser maps, not the paper's method).
      cascade_stride: > 1: the cascade fast mode. Every seed first gets a cheap map stopped at
        this stride; NMS on those coarse boxes picks the seeds that get the full map to the pixels
        (then the usual NMS).  Each kept region is exactly the paper's region of its seed; only
        which seeds survive NMS can differ.  Needs NMS; 1 (default) = off.
      backprop_dtype: ``float32``, ``bfloat16`` or ``auto`` (see :func:`dasr.backprop.resolve_dtype`).
      seed_chunk: seeds back-propagated together (bounds memory).
      max_seeds: keep at most this many seeds, the highest first (None = all).
    """

    method: str = "dasr-star"
    tau: float = 0.1
    nms_iou: float | None = 0.3
    weighted_moments: bool = False
    max_side: int = 512
    input_rule: str = "raw"
    strided_conv: str = "window"
    stop_stride: int = 1
    cascade_stride: int = 1
    backprop_dtype: str = "auto"
    seed_chunk: int = 16
    max_seeds: int | None = None

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if not 0.0 <= self.tau < 1.0:
            raise ValueError(f"tau must be in [0, 1), got {self.tau}")
        if self.nms_iou is not None and not 0.0 < self.nms_iou <= 1.0:
            raise ValueError(f"nms_iou must be in (0, 1] or None, got {self.nms_iou}")
        if self.cascade_stride > 1 and (self.nms_iou is None or self.stop_stride > 1):
            raise ValueError("cascade_stride needs NMS (its coarse boxes only choose which seeds survive "
                             "NMS) and full maps (stop_stride 1)")
        if self.max_side < 32:
            raise ValueError(f"max_side must be at least 32, got {self.max_side}")

    def as_dict(self) -> dict:
        return asdict(self)


def default_nms(method: str) -> float | None:
    """β of the paper: 0.3 for DASR*, no NMS for DASR."""
    return 0.3 if method == "dasr-star" else None


@dataclass
class Regions:
    """Regions of one image, in ORIGINAL image coordinates.

    Attributes:
      boxes: (n, 4) float32 x1, y1, x2, y2.
      scores: (n,) float32 seed activation X̄.
      seeds: (n, 2) int32 (row, col) on the activation map.
      ellipses: (n, 5) float32 centre x, centre y, semi-axis a >= b, angle of a (radians).
      kept_fraction: (n,) float32 fraction of pixels with M >= τ.
    """

    boxes: np.ndarray
    scores: np.ndarray
    seeds: np.ndarray
    ellipses: np.ndarray
    kept_fraction: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def __len__(self) -> int:
        return len(self.boxes)

    def select(self, idx: np.ndarray) -> "Regions":
        return Regions(self.boxes[idx], self.scores[idx], self.seeds[idx], self.ellipses[idx],
                       self.kept_fraction[idx])

    @staticmethod
    def empty() -> "Regions":
        return Regions(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 2), np.int32),
                       np.zeros((0, 5), np.float32), np.zeros(0, np.float32))


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


def ellipses_from_maps(maps: np.ndarray, tau: float = 0.1, weighted: bool = False, cell: float = 1.0):
    """Moment ellipses and their boxes for a batch of maps (Eq. 4).

    Args:
      maps: (S, H, W) non-negative maps.
      tau: keep pixels with ``M / max(M) >= tau``.
      weighted: weight the moments by ``M`` (default: unweighted, as Eq. 4).
      cell: pixels per map cell (maps coarser than the image).

    Returns:
      (boxes (S, 4) in pixels of the image the maps cover, ellipses (S, 5), kept fraction (S,)).
      A map that is all zero gives a zero box at the origin and kept fraction 0.
    """
    maps = np.asarray(maps, np.float32)
    s, h, w = maps.shape
    peak = maps.reshape(s, -1).max(axis=1)
    norm = maps / np.where(peak > 0, peak, 1.0)[:, None, None]
    keep = (norm >= tau) & (peak[:, None, None] > 0)
    wts = np.where(keep, norm if weighted else 1.0, 0.0).astype(np.float64)
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
    vxx = np.maximum(vxx, 0) + cell**2 / 12.0
    vyy = np.maximum(vyy, 0) + cell**2 / 12.0
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


def box_area(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression.

    Args:
      boxes: (n, 4) x1, y1, x2, y2.
      scores: (n,) higher is better; ties keep the earlier box.
      iou_threshold: a box is dropped when its IoU with a kept box is > this.

    Returns:
      Indices of the kept boxes, by decreasing score.
    """
    order = np.argsort(-np.asarray(scores), kind="stable")
    boxes = np.asarray(boxes, np.float64)
    areas = box_area(boxes)
    keep: list[int] = []
    while order.size:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        xx1 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy1 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx2 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy2 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
        union = areas[i] + areas[rest] - inter
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, np.int64)
