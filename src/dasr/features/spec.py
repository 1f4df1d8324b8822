"""The one description of an extractor: what the CLI, the experiments, the benchmarks and the
tests build extractors from, and what a store's recorded configuration turns back into.

An :class:`ExtractorSpec` is plain data (hashable, comparable); :meth:`ExtractorSpec.build` makes
the network and the :class:`~dasr.features.extractor.Extractor`.  Options are flat
(:meth:`ExtractorSpec.from_options`): the spec's own fields plus every
:class:`~dasr.regions.RegionConfig` field, the names a store's configuration uses.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from dasr.errors import InputError
from dasr.features.methods import REGION_METHODS, seed_rule
from dasr.features.options import DEFAULT_FIXED_BOX_SIDE, check_options
from dasr.regions import METHOD_DEFAULT, RegionConfig

if TYPE_CHECKING:  # the network is imported when a spec is built, not when options are parsed
    from dasr.features.extractor import Extractor

BACKBONES = ("resnet50", "vgg16")
REGION_FIELDS = tuple(f.name for f in dataclasses.fields(RegionConfig) if f.name != "method")
# Store-config keys that are not options: where and with what a store was made.
RECORD_ONLY_KEYS = ("dasr_version", "shard", "created", "backend", "rmac_whitening_digest")


@dataclass(frozen=True)
class ExtractorSpec:
    """Method and configuration of an extractor.

    Attributes:
      method: see :mod:`dasr.features.methods`.
      backbone: ``resnet50`` or ``vgg16``.
      weights: ``imagenet``, ``random`` (an untrained, seeded network) or a ``.weights.h5`` path.
      feature_layer: the layer pooled inside each box (None: the backbone's default,
        ``conv5_block1_out``, the paper's Block4_unit1).
      pooling: ``avg`` (the paper), ``max`` or ``gem`` (p = 3, as the authors' evaluation code).
      fixed_box_side: box side, in network-input pixels, of the ``fixed-box`` control.
      region: the region settings; their seed rule follows ``method``
        (:func:`~dasr.features.methods.seed_rule`), and so does β when left out.
      rmac_whitening: ``rmac`` only: the path of a whitening learned on R-MAC region vectors
        (each region whitened before the sum, as Tolias et al.), or None.
    """

    method: str = "dasr-star"
    backbone: str = "resnet50"
    weights: str = "imagenet"
    feature_layer: str | None = None
    pooling: str = "avg"
    fixed_box_side: float = DEFAULT_FIXED_BOX_SIDE
    region: RegionConfig = field(default=None)  # type: ignore[assignment]
    rmac_whitening: str | None = None

    def __post_init__(self) -> None:
        region = check_options(self.method, self.pooling, self.region, self.rmac_whitening, self.fixed_box_side)
        object.__setattr__(self, "region", region)
        if self.backbone not in BACKBONES:
            raise InputError(f"backbone must be one of {', '.join(BACKBONES)}, got {self.backbone!r}")
        if not isinstance(self.weights, str) or not self.weights:
            raise InputError(f"weights must be 'imagenet', 'random' or a path, got {self.weights!r}")

    @classmethod
    def from_options(cls, **options: Any) -> ExtractorSpec:
        """A spec from flat options: the spec's fields and :class:`RegionConfig`'s.

        A region option left out takes the method's default (``nms_iou``: β of the method).

        Raises:
          ValueError: an unknown option or an invalid value (the message names it).
        """
        own = {f.name for f in dataclasses.fields(cls)} - {"region"}
        unknown = sorted(set(options) - own - set(REGION_FIELDS))
        if unknown:
            raise InputError(f"unknown extractor option(s) {', '.join(unknown)}; known: "
                             f"{', '.join(sorted(own | set(REGION_FIELDS)))}")
        method = options.get("method", cls.method)
        region = RegionConfig(method=seed_rule(method),
                              **{k: options[k] for k in REGION_FIELDS if k in options})
        return cls(region=region, **{k: options[k] for k in own if k in options})

    @classmethod
    def from_store_config(cls, config: Mapping[str, Any], weights: str | None = None) -> ExtractorSpec:
        """The spec a store was extracted with, from its recorded configuration.

        Args:
          config: a store's configuration (:meth:`Extractor.config`).
          weights: the weights to build it with (default: ``random`` for a store of random
            weights, else ``imagenet``); :meth:`build` refuses weights whose fingerprint is
            not the recorded one.

        Raises:
          ValueError: the configuration lacks a key or holds an unknown one.
        """
        missing = [k for k in ("method", "backbone", "weights", "feature_layer", "pooling") if k not in config]
        if missing:
            raise InputError(f"the store's configuration lacks {', '.join(missing)}")
        recorded = "random" if config["weights"] == "random" else "imagenet"
        options = {k: v for k, v in config.items() if k not in RECORD_ONLY_KEYS and k != "weights"}
        if config["method"] not in REGION_METHODS:
            # A global method records no region settings but its input size.
            options = {k: v for k, v in options.items() if k not in REGION_FIELDS or k == "max_side"}
        return cls.from_options(**options, weights=weights or recorded)

    def replace(self, **options: Any) -> ExtractorSpec:
        """This spec with some flat options changed (a changed method re-derives the defaults
        of the region options not given)."""
        current = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "region"}
        region = {k: getattr(self.region, k) for k in REGION_FIELDS}
        if "method" in options and seed_rule(options["method"]) != self.region.method and "nms_iou" not in options:
            region["nms_iou"] = METHOD_DEFAULT
        return ExtractorSpec.from_options(**{**current, **region, **options})

    def build(self) -> Extractor:
        """The network and the extractor (loads the weights; seconds for ResNet-50).

        Raises:
          dasr.model.weights.WeightsError: the weights cannot be found or read.
        """
        from dasr.features.extractor import Extractor
        from dasr.model.backbone import build_backbone

        network = build_backbone(self.backbone, self.weights)
        return Extractor(network, self.method, self.region, self.feature_layer, self.pooling,
                         self.fixed_box_side, rmac_whitening=self.rmac_whitening)


def extractor_for_store(config: Mapping[str, Any], weights: str | None = None) -> Extractor:
    """Rebuilds the extractor a store was made with, to describe queries the same way.

    Args:
      config: the store's configuration.
      weights: as in :meth:`ExtractorSpec.from_store_config`.

    Raises:
      ValueError: the weights found are not the ones the store records (names both), or the
        R-MAC region whitening file changed since.
    """
    extractor = ExtractorSpec.from_store_config(config, weights).build()
    if extractor.backbone.weights_id != config["weights"]:
        raise InputError(f"the index was extracted with weights {config['weights']}, "
                         f"these are {extractor.backbone.weights_id}")
    made = extractor.config().get("rmac_whitening_digest")
    if made != config.get("rmac_whitening_digest"):
        raise InputError(f"{config.get('rmac_whitening')}: the R-MAC region whitening differs from the one the "
                         f"index was extracted with (digest {made}, recorded {config.get('rmac_whitening_digest')})")
    return extractor
