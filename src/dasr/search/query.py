"""Checks of a query box before it is described (the CLI and the search page share them)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING
from dataclasses import dataclass

import numpy as np

from dasr.errors import UserError
from dasr.search.index import Hit, SearchIndex

if TYPE_CHECKING:
    from dasr.features.extractor import Extractor

Box = tuple[float, float, float, float]


class QueryBoxError(UserError, ValueError):
    """A query box that cannot describe anything; the message names the image and the box."""


def parse_box(text: str, name: str = "box") -> Box:
    """``"x1,y1,x2,y2"`` -> four finite floats.

    Args:
      text: the box as typed.
      name: what the messages call it (``--box`` on the command line).

    Raises:
      QueryBoxError: not four finite numbers (NaN or infinity is no coordinate).
    """
    try:
        values = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        raise QueryBoxError(f"{name} {text!r}: expected four numbers x1,y1,x2,y2") from None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise QueryBoxError(f"{name} {text!r}: expected four numbers x1,y1,x2,y2, all finite")
    return values  # type: ignore[return-value]


def check_query_box(box: Box, width: int, height: int, stride: int, scale: float, image: str,
                    allow_small: bool = False) -> Box:
    """The box clipped to the image, or an error for a box that cannot describe anything.

    A box smaller than one feature cell in both directions would be described by the single
    cell holding its centre, i.e. mostly by its surroundings: refused unless ``allow_small``.

    Args:
      box: x1, y1, x2, y2 in the image's pixels.
      width, height: the image's size.
      stride: input pixels per cell of the feature layer.
      scale: network-input pixels per image pixel.
      image: the image's name, for the messages.
      allow_small: accept a box below one feature cell.

    Returns:
      The box clipped to the image (the caller tells the user when it differs from ``box``).

    Raises:
      QueryBoxError: non-finite, empty, outside the image, below one input pixel, or (without
        ``allow_small``) below one feature cell.
    """
    if len(box) != 4 or not all(math.isfinite(float(v)) for v in box):
        raise QueryBoxError(f"{image}: query box {tuple(box)} must be four finite numbers")
    x1, y1, x2, y2 = (float(v) for v in box)
    if x2 <= x1 or y2 <= y1:
        raise QueryBoxError(f"{image}: query box {box} has zero or negative area")
    if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
        raise QueryBoxError(f"{image}: query box {box} lies outside the {width}x{height} image")
    clipped = (max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2))
    w, h = (clipped[2] - clipped[0]) * scale, (clipped[3] - clipped[1]) * scale
    if max(w, h) < 1.0:
        raise QueryBoxError(f"{image}: query box {box} is smaller than one pixel of the network input "
                            f"(scale {scale:.3f}); a feature cell is {stride} px")
    if max(w, h) < stride and not allow_small:
        raise QueryBoxError(f"{image}: query box {box} is {w:.0f}x{h:.0f} px in the network input, smaller "
                            f"than one {stride}x{stride} feature cell (--small-box pools the cell at its centre)")
    return clipped


@dataclass(frozen=True)
class BoxQuery:
    """A query box searched in an index.

    Attributes:
      box: the box as searched (clipped to the image).
      clipped: whether the given box had to be clipped.
      hits: the returned images, best first (never an image without regions).
    """

    box: Box
    clipped: bool
    hits: list[Hit]


def search_box(index: SearchIndex, extractor: Extractor, image_rgb: np.ndarray, box: Box | None,
               top: int | None, image_name: str, allow_small: bool = False) -> BoxQuery:
    """Checks a query box, describes it like the index's regions and searches the index.

    Args:
      index: the index (its store's configuration built ``extractor``).
      extractor: :func:`dasr.features.spec.extractor_for_store` of the index.
      image_rgb: the query image.
      box: x1, y1, x2, y2 in its pixels; None = the whole image.
      top: the number of images to return (None: all that have regions).
      image_name: for the messages.
      allow_small: accept a box below one feature cell.

    Raises:
      QueryBoxError: see :func:`check_query_box`.
    """
    h, w = image_rgb.shape[:2]
    wanted = (0.0, 0.0, float(w), float(h)) if box is None else tuple(float(v) for v in box)
    scale = extractor.region.max_side / max(h, w)
    clipped = check_query_box(wanted, w, h, extractor.stride, scale, image_name, allow_small)
    # Images without regions rank last (-inf), so the first ``top`` holds every hit of the top.
    ranking = index.search(index.describe(extractor.describe_box(image_rgb, clipped)), top)
    return BoxQuery(clipped, clipped != wanted, index.hits(ranking))
