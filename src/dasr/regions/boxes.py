"""Boxes: the one IoU, greedy NMS, the fixed-box control's squares, and the regions of an image.

Boxes are ``x1, y1, x2, y2`` in continuous pixel coordinates; a box's area is
``(x2 - x1) * (y2 - y1)`` (no ``+1``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


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

    def to_json(self) -> list[dict]:
        """One dict per region: box, score, seed, ellipse (centre, semi-axes, angle), rounded."""
        return [{"box": [round(float(v), 1) for v in self.boxes[k]], "score": float(self.scores[k]),
                 "seed": [int(v) for v in self.seeds[k]],
                 "ellipse": {"center": [round(float(v), 1) for v in self.ellipses[k, :2]],
                             "axes": [round(float(v), 1) for v in self.ellipses[k, 2:4]],
                             "angle": round(float(self.ellipses[k, 4]), 4)}} for k in range(len(self))]


def box_area(boxes: np.ndarray) -> np.ndarray:
    """(n,) areas of (n, 4) boxes; a degenerate box has area 0."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection-over-union of axis-aligned boxes.

    Degenerate boxes have area 0 and an IoU of 0 with everything, including themselves,
    instead of a division by zero.

    Args:
      a: (n, 4) boxes x1, y1, x2, y2.
      b: (m, 4) boxes.

    Returns:
      (n, m) float64 IoUs.
    """
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def best_iou(reference: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """(n,) the best IoU of each reference box with any candidate box (0 without candidates).

    How well one set of regions reproduces another (a fast mode against the faithful run,
    bfloat16 against float32, a method's regions against ground-truth boxes).
    """
    reference = np.asarray(reference, np.float64).reshape(-1, 4)
    if len(reference) == 0 or np.size(candidates) == 0:
        return np.zeros(len(reference), np.float64)
    return box_iou(reference, candidates).max(axis=1)


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
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    keep: list[int] = []
    while order.size:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        order = rest[box_iou(boxes[i], boxes[rest])[0] <= iou_threshold]
    return np.asarray(keep, np.int64)


def fixed_boxes(seeds: np.ndarray, seed_stride: int, side: float) -> tuple[np.ndarray, np.ndarray]:
    """The fixed-box control's regions: a ``side`` x ``side`` square centred on each seed's cell.

    What DASR*'s backprop adds to its seeds is DASR* minus this control (same seeds, same NMS,
    same pooling; only the box shapes differ).

    Args:
      seeds: (S, 2) int (row, col) cells of the seed layer.
      seed_stride: that layer's stride in network-input pixels (a cell's centre is
        ``(index + 0.5) * seed_stride``).
      side: the square's side in network-input pixels.

    Returns:
      (boxes (S, 4) float64 x1, y1, x2, y2, not clipped; ellipses (S, 5): the centre, both
      semi-axes ``side / 2``, angle 0).
    """
    seeds = np.asarray(seeds).reshape(-1, 2)
    cy = (seeds[:, 0] + 0.5) * seed_stride
    cx = (seeds[:, 1] + 0.5) * seed_stride
    half = side / 2
    boxes = np.stack([cx - half, cy - half, cx + half, cy + half], 1).astype(np.float64)
    ellipses = np.stack([cx, cy, np.full_like(cx, half), np.full_like(cx, half), 0 * cx], 1).astype(np.float64)
    return boxes, ellipses


def authors_integer_boxes(ellipses: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Each ellipse's box cut to whole pixels as the authors' ``estimate_ellipse`` does.

    Their box is the ellipse's circumscribed rectangle in pixel indices: the centre's index
    truncated, each half extent truncated towards zero, clipped to ``[0, side - 1]`` (so ``x2``
    is the last column inside, not an edge).  This project's pixel ``i`` spans ``[i, i + 1)``,
    its centre at ``i + 0.5``, hence the half-pixel shift of the centre.

    Args:
      ellipses: (S, 5) centre x, centre y (network-input pixels), semi-axes a >= b, angle of a.
      size: (width, height) of the resized image.

    Returns:
      (S, 4) float64 x1, y1, x2, y2, whole numbers in network-input pixels.
    """
    e = np.asarray(ellipses, np.float64).reshape(-1, 5)
    cx, cy, a, b, angle = e.T
    half_w = np.sqrt((a * np.cos(angle)) ** 2 + (b * np.sin(angle)) ** 2)
    half_h = np.sqrt((a * np.sin(angle)) ** 2 + (b * np.cos(angle)) ** 2)
    col, row = np.floor(cx - 0.5), np.floor(cy - 0.5)
    w, h = size
    return np.stack([np.clip(np.trunc(-half_w) + col, 0, w - 1), np.clip(np.trunc(-half_h) + row, 0, h - 1),
                     np.clip(np.trunc(half_w) + col, 0, w - 1), np.clip(np.trunc(half_h) + row, 0, h - 1)], 1)
