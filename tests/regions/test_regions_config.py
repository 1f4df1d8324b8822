"""RegionConfig: validation, and each method's defaults."""

from __future__ import annotations

import pytest

from dasr.regions import RegionConfig, default_nms


def test_region_config_validation():
    with pytest.raises(ValueError, match="method"):
        RegionConfig(method="dasr**")
    with pytest.raises(ValueError, match="tau"):
        RegionConfig(tau=1.5)
    with pytest.raises(ValueError, match="nms_iou"):
        RegionConfig(nms_iou=0.0)
    assert RegionConfig().as_dict()["tau"] == 0.1


def test_each_method_takes_its_own_nms_default():
    """DASR runs without NMS and DASR* at β = 0.3 unless β is given (the paper's defaults)."""
    assert default_nms("dasr") is None and default_nms("dasr-star") == 0.3
    assert RegionConfig(method="dasr").nms_iou is None
    assert RegionConfig(method="dasr-star").nms_iou == 0.3 and RegionConfig().nms_iou == 0.3
    assert RegionConfig(method="dasr", nms_iou=0.5).nms_iou == 0.5
    assert RegionConfig(method="dasr-star", nms_iou=None).nms_iou is None
    assert RegionConfig(method="dasr") == RegionConfig(method="dasr", nms_iou=None)


@pytest.mark.parametrize("field, value", [("max_side", "big"), ("tau", "0.1"), ("seed_chunk", 2.5),
                                          ("max_seeds", True), ("weighted_moments", 1), ("nms_iou", "x"),
                                          ("contrastive", "yes"), ("contrastive", 1)])
def test_a_value_of_the_wrong_type_is_refused_naming_the_field(field, value):
    from dasr.errors import InputError
    from dasr.regions import RegionConfig

    with pytest.raises(InputError, match=rf"^{field} must be"):
        RegionConfig(**{field: value})


def test_numpy_numbers_are_accepted():
    import numpy as np

    from dasr.regions import RegionConfig

    config = RegionConfig(max_side=np.int64(64), tau=np.float32(0.2), seed_chunk=np.int32(4))
    assert config.max_side == 64


def test_a_store_records_an_option_added_later_only_when_it_is_on():
    """Stores made before cascade_stride, rule and contrastive existed keep their configuration."""
    from dasr.regions.config import RECORDED_ONLY_WHEN_ON

    plain = RegionConfig().recorded()
    assert not set(RECORDED_ONLY_WHEN_ON) & set(plain)
    assert not {"max_side", "method", "seed_chunk"} & set(plain) and plain["tau"] == 0.1
    on = RegionConfig(cascade_stride=16, contrastive=True).recorded()
    assert (on["cascade_stride"], on["contrastive"]) == (16, True)
    assert RegionConfig(rule="authors").recorded()["rule"] == "authors"


def test_strided_conv_and_resize_follow_the_rule_unless_given():
    paper, authors = RegionConfig(), RegionConfig(rule="authors")
    assert (paper.strided_conv, paper.resize) == ("window", "round-area")
    assert (authors.strided_conv, authors.resize) == ("exact", "truncate-bilinear")
    given = RegionConfig(rule="authors", strided_conv="window", resize="round-area")
    assert (given.strided_conv, given.resize) == ("window", "round-area")
    assert RegionConfig(strided_conv="exact").strided_conv == "exact"
    # A paper-rule store records what it did before these options followed the rule.
    assert RegionConfig().recorded()["strided_conv"] == "window" and "resize" not in RegionConfig().recorded()
    assert RegionConfig(rule="authors").recorded()["resize"] == "truncate-bilinear"
    assert RegionConfig(integer_boxes=True).recorded()["integer_boxes"] is True
    for bad in ({"strided_conv": "diagonal"}, {"resize": "nearest"}, {"integer_boxes": "yes"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            RegionConfig(**bad)


def test_add_and_maxpool_rules_are_the_paper_rules_and_recorded_only_when_changed():
    assert "add_rule" not in RegionConfig().recorded() and "maxpool_rule" not in RegionConfig().recorded()
    changed = RegionConfig(add_rule="input-share", maxpool_rule="winner").recorded()
    assert (changed["add_rule"], changed["maxpool_rule"]) == ("input-share", "winner")
    with pytest.raises(ValueError, match="authors' rule copies"):
        RegionConfig(rule="authors", add_rule="copy")
    with pytest.raises(ValueError, match="contrastive"):
        RegionConfig(maxpool_rule="winner", contrastive=True)
    with pytest.raises(ValueError, match="add_rule must be one of"):
        RegionConfig(add_rule="sum")
