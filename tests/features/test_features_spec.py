"""ExtractorSpec: the one description of an extractor, and its round trip through a store config."""

from __future__ import annotations

import pytest

from dasr.features.spec import ExtractorSpec, extractor_for_store
from dasr.regions import RegionConfig


def test_region_defaults_follow_the_method():
    assert ExtractorSpec(method="dasr").region == RegionConfig(method="dasr", nms_iou=None)
    assert ExtractorSpec(method="dasr-star").region.nms_iou == 0.3
    assert ExtractorSpec(method="fixed-box").region.method == "dasr-star"
    assert ExtractorSpec.from_options(method="dasr", tau=0.2).region == RegionConfig(method="dasr", tau=0.2)
    assert ExtractorSpec.from_options(method="dasr", nms_iou=0.4).region.nms_iou == 0.4


def test_replace_rederives_the_defaults_of_a_new_method():
    star = ExtractorSpec.from_options(method="dasr-star", tau=0.2, max_side=64)
    dasr = star.replace(method="dasr")
    assert dasr.region == RegionConfig(method="dasr", tau=0.2, max_side=64)  # β: DASR's (none)
    assert star.replace(method="dasr", nms_iou=0.5).region.nms_iou == 0.5
    assert star.replace(tau=0.3).region.nms_iou == 0.3


@pytest.mark.parametrize("options, message", [
    ({"method": "dasr**"}, "method must be"),
    ({"backbone": "vgg19"}, "backbone must be"),
    ({"pooling": "sum"}, "pooling must be"),
    ({"fixed_box_side": float("nan")}, "fixed_box_side"),
    ({"fixed_box_side": 0}, "fixed_box_side"),
    ({"tau": 1.5}, "tau"),
    ({"colour": "red"}, "unknown extractor option"),
])
def test_invalid_options_are_refused_with_their_name(options, message):
    with pytest.raises(ValueError, match=message):
        ExtractorSpec.from_options(**options)


def test_a_region_config_of_another_seed_rule_is_refused():
    with pytest.raises(ValueError, match="seed rule"):
        ExtractorSpec(method="dasr", region=RegionConfig(method="dasr-star"))


@pytest.mark.parametrize("method", ["dasr", "dasr-star", "fixed-box", "gap", "rmac"])
def test_a_store_config_turns_back_into_the_same_extractor(method, _cached_extractors):
    spec = ExtractorSpec.from_options(method=method, weights="random", max_side=64, tau=0.2,
                                      backprop_dtype="float32", fixed_box_side=48.0)
    extractor = spec.build()
    again = extractor_for_store(extractor.config())
    assert again.config() == extractor.config()
    assert ExtractorSpec.from_store_config(extractor.config()).build().config() == extractor.config()


def test_a_store_of_other_weights_is_refused(_cached_extractors):
    config = ExtractorSpec.from_options(method="gap", weights="random", max_side=64).build().config()
    with pytest.raises(ValueError, match="lacks"):
        ExtractorSpec.from_store_config({k: v for k, v in config.items() if k != "pooling"})
    config["weights"] = "0123456789abcdef"  # not the random network's fingerprint
    with pytest.raises(ValueError, match="extracted with weights 0123456789abcdef"):
        extractor_for_store(config, weights="random")


def test_rule_round_trips_through_options_and_store_config():
    from dasr.features.spec import ExtractorSpec

    spec = ExtractorSpec.from_options(method="dasr", rule="authors", weights="random")
    assert spec.region.rule == "authors"
    config = {"method": "dasr", "backbone": "resnet50", "weights": "random", "feature_layer": "conv5_block1_out",
              "pooling": "avg", "rule": "authors"}
    assert ExtractorSpec.from_store_config(config).region.rule == "authors"
    del config["rule"]  # a store made before the option: the paper's rule
    assert ExtractorSpec.from_store_config(config).region.rule == "paper"
    assert spec.replace(method="dasr-star").region.rule == "authors"


def test_contrastive_round_trips_through_options_and_store_config():
    from dasr.features.spec import ExtractorSpec

    spec = ExtractorSpec.from_options(method="dasr-star", contrastive=True, weights="random")
    assert spec.region.contrastive is True
    config = {"method": "dasr-star", "backbone": "resnet50", "weights": "random", "feature_layer": "conv5_block1_out",
              "pooling": "avg", "contrastive": True}
    assert ExtractorSpec.from_store_config(config).region == spec.region
    del config["contrastive"]  # a store made before the option: the paper's maps
    assert ExtractorSpec.from_store_config(config).region.contrastive is False
    assert spec.replace(stop_stride=16).region.contrastive is True


@pytest.mark.parametrize("method, pooling, region, rmac_whitening, side, message", [
    ("dasr**", "avg", None, None, 96.0, "method must be"),
    ("dasr", "sum", None, None, 96.0, "pooling must be"),
    ("gap", "avg", RegionConfig(method="dasr"), None, 96.0, "seed rule"),
    ("dasr-star", "avg", None, "w.npz", 96.0, "only with method rmac"),
    ("rmac", "avg", None, "", 96.0, "whitening file's path"),
    ("fixed-box", "avg", None, None, -8.0, "fixed_box_side"),
    ("fixed-box", "avg", None, None, float("inf"), "fixed_box_side"),
])
def test_the_spec_and_the_extractor_refuse_the_same_options(method, pooling, region, rmac_whitening, side, message,
                                                            _cached_extractors):
    """One check behind both: a library user building an Extractor directly meets the CLI's errors."""
    from dasr.features.extractor import Extractor
    from dasr.model.backbone import build_backbone

    with pytest.raises(ValueError, match=message):
        ExtractorSpec(method=method, pooling=pooling, region=region, rmac_whitening=rmac_whitening,
                      fixed_box_side=side)
    with pytest.raises(ValueError, match=message):
        Extractor(build_backbone("resnet50", "random"), method, region, pooling=pooling, rmac_whitening=rmac_whitening,
                  fixed_box_side=side)
