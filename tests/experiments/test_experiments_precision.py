"""The precision section: matched-box IoU between two stores, the paired intervals and the rule for `auto`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from dasr.experiments.cells import build_cells
from dasr.experiments.config import apply_overrides, load_config
from dasr.experiments.entries import Entry
from dasr.experiments.precision import matched_box_ious, precision_section
from experiments_helpers import EXPERIMENTS, fake_instance_track
from test_experiments_fidelity import _result, _store


def test_matched_box_ious_match_each_reference_box_within_its_own_image(tmp_path):
    reference = _store(tmp_path / "r.h5", {"a": [[0, 0, 10, 10], [20, 20, 30, 30]], "b": [[0, 0, 5, 5]],
                                           "c": [[0, 0, 10, 10]]})
    # "a"'s second box has its twin only in image "c" of the other store: it scores 0, not 1.
    other = _store(tmp_path / "o.h5", {"c": [[0, 0, 10, 5], [20, 20, 30, 30]], "a": [[0, 0, 10, 10], [0, 0, 5, 10]]})
    np.testing.assert_allclose(matched_box_ious(reference, other), [1.0, 0.0, 0.5])  # "b" is in one store only
    # The other direction matches the other store's boxes.
    np.testing.assert_allclose(matched_box_ious(other, reference), [0.5, 0.0, 1.0, 0.5])
    np.testing.assert_allclose(matched_box_ious(reference, other, ["c"]), [0.5])


def _entries(tmp_path: Path, variant_aps: list[float], variant_boxes: list) -> tuple[dict, list[Entry]]:
    root = fake_instance_track(tmp_path / "it")
    cfg = apply_overrides(load_config(EXPERIMENTS / "bfloat16.toml"),
                          [f"bench_root={root}", "subsample=1", "ks=[10]", "bootstrap.n_boot=200",
                           "methods=[dasr-star]", 'variants=[{label = "bfloat16", methods = ["dasr-star"], '
                                                  'backprop_dtype = "bfloat16"}]'])
    cells = {c.label: c for c in build_cells(cfg)}
    own = _store(tmp_path / "f32.h5", {n: [[0, 0, 10, 10], [10, 10, 30, 30]] for n in "abc"})
    variant = _store(tmp_path / "bf16.h5", {n: variant_boxes for n in "abc"})
    entries = [Entry("instance-track", False, cells["dasr-star"],
                     result=dataclasses.replace(_result("dasr-star", [0.5, 0.6, 0.7], [0.2, 0.2, 0.3], 2.0),
                                                store=str(own.path))),
               Entry("instance-track", False, cells["dasr-star bfloat16"],
                     result=dataclasses.replace(_result("dasr-star", variant_aps, [0.2, 0.2, 0.3], 2.0),
                                                store=str(variant.path)))]
    return cfg, entries


def test_a_variant_with_the_same_boxes_and_aps_passes_the_rule(tmp_path):
    cfg, entries = _entries(tmp_path, [0.5, 0.6, 0.7], [[0, 0, 10, 10], [10, 10, 30, 30]])
    md = "\n".join(precision_section(cfg, entries, []))
    assert "| dasr-star bfloat16 - dasr-star | AP | +0.000 | [+0.000, +0.000] | 3 |" in md
    assert "| dasr-star bfloat16 - dasr-star | 3 | 6 | 1.0000 | 1.0000 | 1.000 |" in md
    assert "the variant **passes** the rule here" in md


def test_a_variant_whose_boxes_move_fails_the_rule_even_with_equal_aps(tmp_path):
    # The second box shifted by 2 px in x and y: IoU 18 * 18 / (2 * 400 - 324) = 0.6807 < 0.98.
    cfg, entries = _entries(tmp_path, [0.5, 0.6, 0.7], [[0, 0, 10, 10], [12, 12, 32, 32]])
    md = "\n".join(precision_section(cfg, entries, []))
    median = float(np.median([1.0, 324 / 476] * 3))
    assert f"| 3 | 6 | {median:.4f} |" in md
    assert "every median matched-box IoU is at least 0.98: **no**" in md and "**fails** the rule" in md


def test_a_variant_with_a_lower_map_fails_the_rule_even_with_the_same_boxes(tmp_path):
    cfg, entries = _entries(tmp_path, [0.4, 0.5, 0.6], [[0, 0, 10, 10], [10, 10, 30, 30]])
    md = "\n".join(precision_section(cfg, entries, []))
    assert "| dasr-star bfloat16 - dasr-star | AP | -0.100 * |" in md
    assert "Every mAP interval includes 0: **no**" in md and "**fails** the rule" in md


def test_no_verdict_without_the_variant_store(tmp_path):
    cfg, entries = _entries(tmp_path, [0.5, 0.6, 0.7], [[0, 0, 10, 10]])
    Path(entries[1].result.store).unlink()
    md = "\n".join(precision_section(cfg, entries, []))
    assert "store missing" in md and "no verdict" in md


def test_the_config_compares_float32_cells_with_bfloat16_ones():
    cfg = load_config(EXPERIMENTS / "bfloat16.toml")
    cells = build_cells(cfg)
    assert [c.label for c in cells] == ["dasr-star", "dasr-star bfloat16", "dasr", "dasr bfloat16"]
    assert cfg["extractor"]["backprop_dtype"] == "float32"  # not auto: the run decides auto
    assert [dict(c.options) for c in cells] == [{}, {"backprop_dtype": "bfloat16"}] * 2
