"""The fidelity section: box areas, object-size terciles, the paired intervals and the verdict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dasr.eval.datasets import Benchmark, Query
from dasr.eval.metrics import MIOU_IMAGES_KEY, MIOU_KEY
from dasr.eval.records import QueryScore, SearchResult, WhiteningInfo, mean_scores
from dasr.experiments.cells import build_cells
from dasr.experiments.config import apply_overrides, load_config
from dasr.experiments.entries import Entry
from dasr.experiments.fidelity import fidelity_section, median_box_area, size_terciles
from dasr.store import RegionStore, StoreWriter
from experiments_helpers import EXPERIMENTS, fake_instance_track


def _store(path: Path, boxes: dict[str, list], size=(100, 50)) -> RegionStore:
    with StoreWriter(path, {"m": 1}, "/fake") as w:
        for i, (name, b) in enumerate(boxes.items()):
            b = np.asarray(b, np.float32).reshape(-1, 4)
            w.add(name, i, size, {"boxes": b, "scores": np.ones(len(b), np.float32),
                                  "features": np.ones((len(b), 2), np.float32)})
    return RegionStore.open(path)


def test_median_box_area_is_a_fraction_of_the_image(tmp_path):
    store = _store(tmp_path / "s.h5", {"a": [[0, 0, 10, 10], [0, 0, 50, 50]], "b": [[0, 0, 100, 50]], "c": [[0, 0, 1, 1]]})
    # image 100 x 50 = 5000 px: a -> 0.02, 0.5; b -> 1.0; c (not asked for) ignored
    assert median_box_area(store, {"a", "b"}) == pytest.approx(0.5)
    assert median_box_area(store, {"a"}) == pytest.approx((0.02 + 0.5) / 2)
    assert median_box_area(store, {"zzz"}) is None


def test_size_terciles_by_median_reference_box(tmp_path):
    store = _store(tmp_path / "s.h5", {n: [[0, 0, 1, 1]] for n in "abcdef"})
    box = {1: (0, 0, 10, 10), 5: (0, 0, 20, 20), 30: (0, 0, 60, 50)}  # areas 100, 400, 3000 px
    queries = tuple(Query(f"q{k}", "x.jpg", None, positives=(2 * k, 2 * k + 1),
                          positive_boxes={2 * k: box[s], 2 * k + 1: box[s]}) for k, s in enumerate((30, 1, 5)))
    bench = Benchmark("t", Path("."), tuple("abcdef"), queries, "instance")
    assert size_terciles(bench, store) == {"q0": 2, "q1": 0, "q2": 1}
    plain = Benchmark("t", Path("."), tuple("abcdef"), (Query("q", "x", None, (0,)),), "instance")
    assert size_terciles(plain, store) is None


def _result(method: str, aps: list[float], mious: list[float], regions: float) -> SearchResult:
    per_query = [QueryScore(name, {"ap": ap, "ap@10/truncated": ap / 2, "ap@10/min": ap, MIOU_KEY: m,
                                   MIOU_IMAGES_KEY: 3.0}, [m, m, 0.0])
                 for name, ap, m in zip("abc", aps, mious)]
    return SearchResult(task="instance", benchmark="instance-track", method=method, config={}, subsample=1,
                        database_images=9, queries=3, pca=WhiteningInfo("none", None, None, None, None),
                        ap_definition="instance", mean=mean_scores(per_query), per_query=per_query,
                        localization_recall={"0.5": 0.0}, regions_per_image=regions, images_in_store=9, seconds={},
                        store=None)


def _fidelity_config(tmp_path: Path, *more: str) -> dict:
    """experiments/fidelity.toml on a fake instance-track: DASR* and the fixed-box control, k = 10."""
    root = fake_instance_track(tmp_path / "it")
    return apply_overrides(load_config(EXPERIMENTS / "fidelity.toml"),
                           [f"bench_root={root}", "bench=instance-track", "subsample=1", "ks=[10]",
                            "bootstrap.n_boot=200", "methods=[dasr-star, fixed-box]", *more])


def test_section_states_the_closer_rule_with_its_numbers(tmp_path):
    cfg = _fidelity_config(tmp_path)
    cells = {c.label: c for c in build_cells(cfg)}
    entries = [Entry("instance-track", False, cells["dasr-star"], result=_result("dasr-star", [0.5, 0.6, 0.7], [0.2, 0.2, 0.3], 20.0)),
               Entry("instance-track", False, cells["dasr-star authors"],
                     result=_result("dasr-star", [0.6, 0.7, 0.8], [0.6, 0.5, 0.7], 9.5)),
               Entry("instance-track", False, cells["fixed-box"], result=_result("fixed-box", [0.5, 0.5, 0.5], [0.1, 0.1, 0.1], 22.0))]
    rows: list[dict] = []
    md = "\n".join(fidelity_section(cfg, entries, rows))
    assert "| dasr-star authors | 0.350 | 0.700 | 0.700 | 9.5 | - | 0.667 | 0.600 |" in md
    assert "| dasr-star authors - dasr-star | AP | +0.100 * | [+0.100, +0.100] | 3 |" in md
    assert "dasr-star authors - fixed-box | mIoU" in md
    assert "the **authors** rule is closer (1.5 away vs 9.0, i.e. 14% vs 82% of the paper's number)" in md
    assert "The two AP@k definitions coincide here" in md and "|R| = 3..3" in md
    assert "the **authors** rule localizes better on both measures" in md
    assert "9 database images, 3 queries" in md
    assert {r["metric"] for r in rows} >= {"miou_enclosing", "loc_recall@0.5", "map@10/truncated", "map@10/min"}
    assert all(r["note"].startswith("rule=") for r in rows)
    alone = "\n".join(fidelity_section(cfg, entries[2:], []))  # fixed-box only: no pair, no empty table
    assert "Paired 95% bootstrap" not in alone and "| fixed-box |" in alone


def test_variant_cells_are_compared_with_the_fixed_box_control(tmp_path):
    cfg = _fidelity_config(tmp_path, "rules=[paper]")
    cells = {c.label: c for c in build_cells(cfg)}
    entries = [Entry("instance-track", False, cells[label], result=_result(method, aps, [0.2, 0.2, 0.3], 12.0))
               for label, method, aps in [("dasr-star", "dasr-star", [0.5, 0.6, 0.7]),
                                          ("dasr-star contrastive", "dasr-star", [0.7, 0.8, 0.9]),
                                          ("dasr-star stop16", "dasr-star", [0.5, 0.5, 0.5]),
                                          ("fixed-box", "fixed-box", [0.5, 0.5, 0.5])]]
    rows: list[dict] = []
    md = "\n".join(fidelity_section(cfg, entries, rows))
    assert "| dasr-star contrastive - fixed-box | AP | +0.300 * | [+0.200, +0.400] | 3 |" in md
    assert "| dasr-star contrastive - dasr-star | AP | +0.200 * |" in md
    assert "| dasr-star stop16 - fixed-box | AP | +0.000 |" in md
    assert "- dasr-star contrastive (beyond the paper) **beats** the fixed-box control: mean Δ AP +0.300" in md
    assert "- dasr-star stop16 (beyond the paper) does **not** separate from the fixed-box control" in md
    assert any(r["cell"] == "dasr-star contrastive" and r["note"] == "rule=paper contrastive=True" for r in rows)
