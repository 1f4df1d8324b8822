"""Cells of an experiment: the grid, labels, β, and each cell's ExtractorSpec."""

from __future__ import annotations

import pytest

from dasr.experiments.cells import Cell, build_cells, cell_spec, check_beta, display_label
from dasr.experiments.config import DEFAULTS, apply_overrides, load_config

from experiments_helpers import EXPERIMENTS


def _cfg(**values) -> dict:
    return {**DEFAULTS, "name": "t", **values}


def test_cell_spec_from_config_and_cell():
    cfg = apply_overrides(load_config(EXPERIMENTS / "ablation_nms.toml"), ["extractor.stop_stride=8"])
    cells = {c.label: c for c in build_cells(cfg)}
    a = cell_spec(cfg, cells["β=0.4"])
    assert (a.method, a.region.nms_iou, a.feature_layer, a.region.stop_stride, a.region.max_side, a.pooling) == \
        ("dasr-star", 0.4, "conv5_block1_out", 8, 512, "avg")
    assert a.region.tau == 0.1 and a.weights == "imagenet"
    b = cell_spec(cfg, cells["no NMS"])
    assert b.method == "dasr-star" and b.region.nms_iou is None
    c = cell_spec(cfg, cells["DASR, no NMS"])
    assert c.method == "dasr" and c.region.method == "dasr" and c.region.nms_iou is None
    default = cell_spec(_cfg(), Cell("dasr-star", "resnet50", None, "default"))
    assert default.region.nms_iou == 0.3 and default.feature_layer is None  # the method's β
    with pytest.raises(ValueError, match="unknown extractor option"):
        cell_spec(apply_overrides(cfg, ["extractor.bogus=1"]), cells["β=0.4"])


def test_labels_name_only_what_varies_and_globals_take_no_beta():
    cells = build_cells(_cfg(methods=["dasr-star", "gap"], betas=[0.2, "none"]))
    assert [(c.method, c.beta, c.label) for c in cells] == [
        ("dasr-star", 0.2, "dasr-star β=0.2"), ("dasr-star", "none", "dasr-star no NMS"),
        ("gap", "default", "gap default β")]
    layered = build_cells(_cfg(methods=["dasr"], layers={"resnet50": ["a", "b"], "vgg16": ["c"]}))
    assert [c.label for c in layered] == ["resnet50 a", "resnet50 b", "vgg16 c"]
    extra = build_cells(_cfg(extra_cells=[{"method": "dasr", "beta": "none"}]))
    assert extra[-1] == Cell("dasr", "resnet50", None, "none", "dasr no NMS")
    with pytest.raises(ValueError, match="share a label"):
        build_cells(_cfg(extra_cells=[{"method": "dasr-star", "label": "dasr-star"}]))
    with pytest.raises(ValueError, match="unknown method 'sift'"):
        build_cells(_cfg(methods=["sift"]))


def test_beta_values():
    assert check_beta("none") == "none" and check_beta(1) == 1.0
    for bad in (0, 1.5, True, "0.3"):
        with pytest.raises(ValueError, match="expected 'default', 'none' or a number"):
            check_beta(bad)
    assert Cell("dasr", "resnet50", None, "default").effective_beta() is None  # DASR runs without NMS
    assert Cell("gap", "resnet50", None, "default").effective_beta() is None
    assert Cell("fixed-box", "resnet50", None, 0.5).effective_beta() == 0.5


def test_cell_json_round_trip_and_display_label():
    cell = Cell("dasr-star", "resnet50", "conv4_block6_out", 0.4, "resnet50 conv4_block6_out")
    d = cell.to_json()
    assert d["effective_beta"] == 0.4 and Cell.from_json(d) == cell
    cfg = _cfg(plot={"labels": {"conv4_block6_out": "Block3_unit6"}})
    assert display_label(cfg, cell.label) == "resnet50 Block3_unit6"


def test_rules_apply_to_dasr_and_dasr_star_only():
    cfg = load_config(EXPERIMENTS / "fidelity.toml")
    cells = build_cells(cfg)
    assert [(c.label, c.rule) for c in cells] == [
        ("dasr-star", "paper"), ("dasr-star contrastive", "paper"), ("dasr-star stop16", "paper"),
        ("dasr-star authors", "authors"), ("dasr", "paper"), ("dasr authors", "authors"),
        ("fixed-box", "paper"), ("gap", "paper"), ("mac", "paper"), ("rmac", "paper"), ("crow", "paper")]
    by_label = {c.label: c for c in cells}
    assert cell_spec(cfg, by_label["dasr authors"]).region.rule == "authors"
    assert cell_spec(cfg, by_label["dasr"]).region.rule == "paper"
    assert cell_spec(cfg, by_label["fixed-box"]).region.rule == "paper"
    # a config without `rules` is the paper's, labels unchanged
    assert [c.label for c in build_cells(_cfg(methods=["dasr", "gap"]))] == ["dasr", "gap"]
    extra = build_cells(_cfg(extra_cells=[{"method": "dasr", "rule": "authors", "label": "theirs"}]))
    assert extra[-1].rule == "authors"
    assert Cell.from_json(by_label["dasr authors"].to_json()) == by_label["dasr authors"]
    old = by_label["dasr"].to_json()
    del old["rule"]  # results.json written before the option
    assert Cell.from_json(old).rule == "paper"
    with pytest.raises(ValueError, match="rule 'guess'"):
        build_cells(_cfg(rules=["guess"]))
    with pytest.raises(ValueError, match="rules must be"):
        apply_overrides(cfg, ["rules=3"])


def test_variants_sit_beside_their_paper_rule_cells_and_keep_the_others_unchanged():
    cfg = load_config(EXPERIMENTS / "fidelity.toml")
    cells = build_cells(cfg)
    labels = [c.label for c in cells]
    assert labels[:4] == ["dasr-star", "dasr-star contrastive", "dasr-star stop16", "dasr-star authors"]
    assert not any(c.options for c in cells if c.method != "dasr-star" or c.rule != "paper")
    by = {c.label: c for c in cells}
    contrastive, stop16 = cell_spec(cfg, by["dasr-star contrastive"]), cell_spec(cfg, by["dasr-star stop16"])
    assert (contrastive.region.contrastive, contrastive.region.stop_stride) == (True, 1)
    assert (stop16.region.contrastive, stop16.region.stop_stride) == (False, 16)
    # the paper-rule cell builds the extractor it built before variants existed (its store is reused)
    plain = apply_overrides(cfg, ["variants=[]"])
    assert cell_spec(cfg, by["dasr-star"]) == cell_spec(plain, {c.label: c for c in build_cells(plain)}["dasr-star"])
    assert cell_spec(cfg, by["dasr-star"]) == cell_spec(cfg, Cell("dasr-star", "resnet50", "conv5_block1_out", "default"))
    assert Cell.from_json(by["dasr-star contrastive"].to_json()) == by["dasr-star contrastive"]
    assert "options" not in by["dasr-star"].to_json()


@pytest.mark.parametrize("variant, message", [
    ('[{label = "x", bogus = 1}]', "unknown extractor option"),
    ('[{label = "x", contrastive = "yes"}]', "contrastive must be"),
    ('[{label = "x", method = "dasr"}]', "which each cell decides"),
    ('[{label = "x", methods = ["sift"], contrastive = true}]', "unknown method"),
    ('[{contrastive = true}]', "variants must be"),
])
def test_a_bad_variant_stops_the_run_before_any_work(variant, message):
    with pytest.raises(ValueError, match=message):
        build_cells(apply_overrides(load_config(EXPERIMENTS / "fidelity.toml"), [f"variants={variant}"]))


def test_silent_choices_change_one_choice_each_beside_the_default():
    cfg = load_config(EXPERIMENTS / "silent_choices.toml")
    by = {c.label: cell_spec(cfg, c).region for c in build_cells(cfg)}
    assert set(by) == {"dasr-star", "dasr-star strided-exact", "dasr-star add-input-share", "dasr-star add-copy",
                       "dasr-star maxpool-winner", "fixed-box"}
    default = by["dasr-star"]
    assert (default.strided_conv, default.add_rule, default.maxpool_rule) == ("window", "positive-share", "window")
    changed = {label: {k for k, v in r.as_dict().items() if v != default.as_dict()[k]}
               for label, r in by.items() if label.startswith("dasr-star ")}
    assert changed == {"dasr-star strided-exact": {"strided_conv"}, "dasr-star add-input-share": {"add_rule"},
                       "dasr-star add-copy": {"add_rule"}, "dasr-star maxpool-winner": {"maxpool_rule"}}


def test_baselines_add_the_region_whitened_rmac_and_the_gem_pooled_dasr_star():
    cfg = load_config(EXPERIMENTS / "baselines.toml")
    by = {c.label: cell_spec(cfg, c) for c in build_cells(cfg)}
    assert set(by) == {"dasr-star", "dasr-star gem-pooled", "fixed-box", "gap", "mac", "rmac",
                       "rmac region-whitened", "crow", "gem"}
    assert by["rmac region-whitened"].rmac_whitening == "results/rmac-whitening/paris-landmarks.npz"
    assert by["rmac"] == by["rmac region-whitened"].__class__.from_options(
        method="rmac", weights="imagenet", feature_layer="conv5_block1_out", tau=0.1, max_side=512,
        backprop_dtype="float32")
    # The gem-pooled cell differs from DASR* in its pooling only: its store derives from DASR*'s boxes.
    assert by["dasr-star gem-pooled"] == by["dasr-star"].replace(pooling="gem")
