"""What decides an image's regions: :class:`RegionConfig`, and each method's defaults.

The methods differ in their seeds (:mod:`dasr.regions.seeds`) and in NMS: the paper runs DASR
"without NMS" and DASR* with NMS at β = 0.3 (:func:`default_nms`).  A configuration built
without an explicit ``nms_iou`` takes its method's β.
"""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from dasr.errors import InputError

METHODS = ("dasr", "dasr-star")
# ``paper``: Sections 3.1-3.2 as written; ``authors``: what the authors' released code runs.
RULES = ("paper", "authors")
# How the backprop treats the network input (``raw`` pixels or shifted to be nonnegative) and
# strided 1x1 convolutions (their 2x2 ``window`` or the ``exact`` sampled cell).
INPUT_RULES = ("raw", "shift")
STRIDED_CONV_RULES = ("window", "exact")
# How an image is resized to ``max_side``: the project's (short side rounded; area filter when
# shrinking) or the authors' (short side truncated; Pillow's bilinear, as torchvision's Resize),
# see :mod:`dasr.io.resize`.
RESIZE_RULES = ("round-area", "truncate-bilinear")
# The paper rule's residual Add: split P by the branches' positive parts (default), by their
# signed shares of the output (TorchRay's excitation backprop), or copy it into both (the
# authors' code); its max pooling: an all-ones window (the paper) or winner-take-all.
ADD_RULES = ("positive-share", "input-share", "copy")
MAXPOOL_RULES = ("window", "winner")
# ``nms_iou`` left at this value takes the method's β (:func:`default_nms`).
METHOD_DEFAULT = "method-default"
# ``strided_conv`` and ``resize`` left at this value take the rule's (:data:`RULE_DEFAULTS`).
RULE_DEFAULT = "rule-default"
# The paper is silent on strided 1x1 convolutions and the resize: the paper rule takes the
# project's choices (README, "Method decisions"); the authors' rule takes their code's: the
# ordinary gradient through a strided convolution is the exact sampled cell, and their resize.
RULE_DEFAULTS = {"paper": {"strided_conv": "window", "resize": "round-area"},
                 "authors": {"strided_conv": "exact", "resize": "truncate-bilinear"}}


def default_nms(method: str) -> float | None:
    """β of the paper: 0.3 for DASR*, no NMS for DASR."""
    return 0.3 if method == "dasr-star" else None


# Options added after stores existed, with their "off" value, which a store does not record.
RECORDED_ONLY_WHEN_ON = {"cascade_stride": 1, "rule": "paper", "contrastive": False, "resize": "round-area",
                        "integer_boxes": False, "add_rule": "positive-share", "maxpool_rule": "window"}


@dataclass(frozen=True)
class RegionConfig:
    """Everything that decides which regions an image gets (stored with every index).

    Attributes:
      method: ``dasr`` (3x3 local maxima) or ``dasr-star`` (every cell above the mean).
      tau: threshold on the max-normalised map.
      nms_iou: IoU of the greedy NMS (β); None = no NMS.  Left out, the method's: 0.3 for
        dasr-star, None for dasr (:func:`default_nms`).
      weighted_moments: weight the second moments by the map values.
      max_side: long side of the network input in pixels.
      input_rule, strided_conv, stop_stride: see :mod:`dasr.model.backprop` (``stop_stride`` > 1 is
        the fast mode: coarser maps, not the paper's method).  ``strided_conv`` left out takes the
        rule's (:data:`RULE_DEFAULTS`: ``window`` for the paper rule, ``exact`` for the authors').
      resize: how the image is resized to ``max_side`` (:data:`RESIZE_RULES`); left out, the rule's.
      add_rule, maxpool_rule: the paper rule's residual Add and max pooling (:data:`ADD_RULES`,
        :data:`MAXPOOL_RULES`, :mod:`dasr.model.backprop`); the authors' rule has its code's
        (copy, winner-take-all) and refuses others.
      integer_boxes: cut the stored boxes to integers as the authors' code does (each ellipse's
        box in whole resized pixels, then truncated in original pixels); False (default):
        continuous boxes.
      cascade_stride: > 1: the cascade fast mode. Every seed first gets a cheap map stopped at
        this stride; NMS on those coarse boxes picks the seeds that get the full map to the pixels
        (then the usual NMS).  Each kept region is exactly the paper's region of its seed; only
        which seeds survive NMS can differ.  Needs NMS; 1 (default) = off.
      backprop_dtype: ``float32``, ``bfloat16`` or ``auto`` (see :func:`dasr.model.device.resolve_dtype`).
      seed_chunk: seeds back-propagated together (bounds memory).
      max_seeds: keep at most this many seeds, the highest first (None = all).
      rule: ``paper`` (default) or ``authors``: the released code's backprop
        (:mod:`dasr.model.backprop`), seeds (:func:`dasr.regions.seeds.authors_peaks`) and
        threshold (the 95th percentile of each map, :func:`dasr.regions.ellipse.ellipses_from_maps`;
        ``tau`` and ``input_rule`` are then unused, ``weighted_moments`` is refused).  NMS stays β
        of the method, which is also the authors' (0.3 for DASR*, none for DASR).
      contrastive: beyond the paper: subtract the map obtained through the negated top linear map
        (Zhang et al.'s contrastive excitation backprop, :mod:`dasr.model.contrast`); the paper's
        rule only.  False (default) = the paper's maps.
    """

    method: str = "dasr-star"
    tau: float = 0.1
    nms_iou: Any = METHOD_DEFAULT
    weighted_moments: bool = False
    max_side: int = 512
    input_rule: str = "raw"
    strided_conv: str = RULE_DEFAULT
    stop_stride: int = 1
    cascade_stride: int = 1
    backprop_dtype: str = "auto"
    seed_chunk: int = 16
    max_seeds: int | None = None
    rule: str = "paper"
    contrastive: bool = False
    resize: str = RULE_DEFAULT
    integer_boxes: bool = False
    add_rule: str = "positive-share"
    maxpool_rule: str = "window"

    def __post_init__(self):
        # Values can come from a file (a store's configuration, an experiment config): a wrong type
        # is the user's input, refused naming the field, not a TypeError deep in a comparison.
        kinds = {"tau": (numbers.Real,), "max_side": (numbers.Integral,), "stop_stride": (numbers.Integral,),
                 "cascade_stride": (numbers.Integral,), "seed_chunk": (numbers.Integral,),
                 "max_seeds": (numbers.Integral, type(None)), "weighted_moments": (bool, np.bool_),
                 "method": (str,), "input_rule": (str,), "strided_conv": (str,), "backprop_dtype": (str,),
                 "rule": (str,), "contrastive": (bool, np.bool_), "resize": (str,),
                 "integer_boxes": (bool, np.bool_), "add_rule": (str,), "maxpool_rule": (str,)}
        for name, allowed in kinds.items():
            value = getattr(self, name)
            if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
                words = {numbers.Integral: "an integer", numbers.Real: "a number", type(None): "none",
                         bool: "true or false", np.bool_: "true or false", str: "a string"}
                want = " or ".join(dict.fromkeys(words[t] for t in allowed))
                raise InputError(f"{name} must be {want}, got {value!r}")
        if self.nms_iou is not None and self.nms_iou != METHOD_DEFAULT and (
                isinstance(self.nms_iou, bool) or not isinstance(self.nms_iou, numbers.Real)):
            raise InputError(f"nms_iou must be a number or None, got {self.nms_iou!r}")
        if self.method not in METHODS:
            raise InputError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.rule not in RULES:
            raise InputError(f"rule must be one of {RULES}, got {self.rule!r}")
        if self.rule == "authors" and self.weighted_moments:
            raise InputError("the authors' rule takes unweighted moments; drop weighted_moments")
        if self.rule == "authors" and self.contrastive:
            raise InputError("contrastive excitation backprop is defined for the paper's rule only; drop contrastive")
        if self.nms_iou == METHOD_DEFAULT:
            object.__setattr__(self, "nms_iou", default_nms(self.method))
        for name, value in RULE_DEFAULTS[self.rule].items():
            if getattr(self, name) == RULE_DEFAULT:
                object.__setattr__(self, name, value)
        if self.add_rule not in ADD_RULES:
            raise InputError(f"add_rule must be one of {', '.join(ADD_RULES)}, got {self.add_rule!r}")
        if self.maxpool_rule not in MAXPOOL_RULES:
            raise InputError(f"maxpool_rule must be one of {', '.join(MAXPOOL_RULES)}, got {self.maxpool_rule!r}")
        if (self.add_rule, self.maxpool_rule) != ("positive-share", "window"):
            if self.rule == "authors":
                raise InputError("the authors' rule copies P at the Add and routes max pooling to the maximum, "
                                 "as their code; add_rule and maxpool_rule are the paper rule's")
            if self.contrastive:
                raise InputError("contrastive excitation backprop is defined with the default add_rule and "
                                 "maxpool_rule; drop one")
        if self.strided_conv not in STRIDED_CONV_RULES:
            raise InputError(f"strided_conv must be one of {', '.join(STRIDED_CONV_RULES)}, got {self.strided_conv!r}")
        if self.resize not in RESIZE_RULES:
            raise InputError(f"resize must be one of {', '.join(RESIZE_RULES)}, got {self.resize!r}")
        if not 0.0 <= self.tau < 1.0:
            raise InputError(f"tau must be in [0, 1), got {self.tau}")
        if self.nms_iou is not None and not 0.0 < self.nms_iou <= 1.0:
            raise InputError(f"nms_iou must be in (0, 1] or None, got {self.nms_iou}")
        if self.cascade_stride > 1 and (self.nms_iou is None or self.stop_stride > 1):
            raise InputError("cascade_stride needs NMS (its coarse boxes only choose which seeds survive "
                             "NMS) and full maps (stop_stride 1)")
        if self.max_side < 32:
            raise InputError(f"max_side must be at least 32, got {self.max_side}")

    def as_dict(self) -> dict:
        return asdict(self)

    def recorded(self) -> dict:
        """The options a region store records: all but the input size, the seed rule (the store's
        ``method`` says it) and the chunk size (speed only), and without the options that are at
        the value they had before they existed (:data:`RECORDED_ONLY_WHEN_ON`), so that stores made
        before keep their configuration."""
        return {k: v for k, v in self.as_dict().items() if k not in ("max_side", "method", "seed_chunk")
                and RECORDED_ONLY_WHEN_ON.get(k, object()) != v}
