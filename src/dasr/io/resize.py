"""The image resized to the network's input size, by the project's rule or the authors'.

* ``round-area`` (:func:`dasr.io.images.resize_long_side`): the long side becomes ``max_side``,
  the short side is rounded; OpenCV's area filter when shrinking, bilinear when enlarging.
* ``truncate-bilinear`` (:func:`resize_truncate_bilinear`): what the authors' code does
  (``calculate_resized_w_h``, then torchvision's ``Resize`` on a PIL image): the short side is
  truncated (``int(short / rate)`` with ``rate = long / max_side``) and Pillow's bilinear
  filter, which widens its support when shrinking, resamples.  The image is decoded by Pillow
  in both codes, so the network sees the same pixels.

Either way ``scale = max_side / long`` maps a resized coordinate back (``original = resized / scale``;
the authors multiply by ``rate``).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from dasr.io.images import resize_long_side

__all__ = ["authors_size", "resize_for_network", "resize_truncate_bilinear"]


def authors_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(height, width) after the authors' ``calculate_resized_w_h`` (short side truncated, at least 1)."""
    if width > height:
        rate = width / max_side
        return max(1, int(height / rate)), int(max_side)
    rate = height / max_side
    return int(max_side), max(1, int(width / rate))


def resize_truncate_bilinear(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """The authors' resize of an (H, W, 3) uint8 image; the long side always becomes ``max_side``.

    Returns:
      (resized (h, w, 3) uint8, scale = max_side / long side).
    """
    height, width = image.shape[:2]
    new_h, new_w = authors_size(height, width, max_side)
    resized = np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((new_w, new_h), Image.BILINEAR))
    return resized, max_side / max(height, width)


def resize_for_network(image: np.ndarray, max_side: int, rule: str = "round-area") -> tuple[np.ndarray, float]:
    """``image`` resized by ``rule`` (:data:`dasr.regions.config.RESIZE_RULES`): (resized, scale).

    Raises:
      ValueError: an unknown rule.
    """
    if rule == "round-area":
        return resize_long_side(image, max_side)
    if rule == "truncate-bilinear":
        return resize_truncate_bilinear(image, max_side)
    raise ValueError(f"unknown resize rule {rule!r}")
