"""Salient regions: seeds on the activation map -> probability maps -> ellipses -> boxes -> NMS.

Sections 3.1 and 3.2 of the paper; one module per step:

* :mod:`~dasr.regions.config`: :class:`RegionConfig` (τ, β, ...) and each method's defaults;
* :mod:`~dasr.regions.seeds`: the activation map ``X̄`` and the seeds of DASR / DASR*;
* :mod:`~dasr.regions.ellipse`: a map's moment ellipse and its circumscribed box (Eq. 4);
* :mod:`~dasr.regions.boxes`: :class:`Regions`, the one box IoU, NMS, the fixed-box control's squares.

The probability maps themselves come from :mod:`dasr.model.backprop`.
"""

from dasr.regions.boxes import Regions, authors_integer_boxes, best_iou, box_area, box_iou, fixed_boxes, nms
from dasr.regions.config import METHOD_DEFAULT, METHODS, RegionConfig, default_nms
from dasr.regions.ellipse import ellipses_from_maps
from dasr.regions.seeds import above_mean_seeds, activation_map, find_seeds, local_maxima_seeds

__all__ = ["METHODS", "METHOD_DEFAULT", "RegionConfig", "Regions", "above_mean_seeds", "activation_map",
           "authors_integer_boxes",
           "best_iou", "box_area", "box_iou", "default_nms", "ellipses_from_maps", "find_seeds", "fixed_boxes",
           "local_maxima_seeds", "nms"]
