"""Fig. 8 runs on fake stores: distractor steps, caps, the exact ranking, the ANN recall and its ranking."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dasr.eval.datasets import Benchmark, load_benchmark
from dasr.eval.instance import subsample_database
from dasr.experiments import run_experiment
from dasr.experiments import scalability as S
from dasr.features.spec import ExtractorSpec
from dasr.search import ann
from dasr.store import RegionStore

from experiments_helpers import (fake_extractor_factory, fake_instance_track, fake_paris_landmarks,
                                 shipped_config_text, write_config, write_store)


def _fake_run(tmp_path, monkeypatch, planted: bool = False):
    """instance-track (4 instances x 3 images x 3 regions around 4 centres) and 15 distractor images.

    ``planted``: the first distractor image's first region is query 0 itself.
    """
    track = fake_instance_track(tmp_path / "track", instances=("a", "b", "c", "d"))
    landmarks = fake_paris_landmarks(tmp_path / "pl", landmarks=("x", "y", "z"), db=4)
    bench = load_benchmark("instance-track", track)
    rng = np.random.default_rng(1)
    d = 8
    centers = rng.normal(size=(4, d))
    db_feats = [centers[i // 3] + 0.1 * rng.normal(size=(3, d)) for i in range(len(bench.database))]
    distractor_images = [f"dist/{i}.jpg" for i in range(15)]
    dist_feats = [rng.normal(size=(4, d)) for _ in distractor_images]
    cfgd = {"method": "dasr-star"}
    queries = (centers + 0.05 * rng.normal(size=(4, d))).astype(np.float32)
    if planted:
        dist_feats[0][0] = queries[0]
    stores = {"instance-track": write_store(tmp_path / "db.h5", list(bench.database), db_feats, cfgd),
              "paris-landmarks": write_store(tmp_path / "dist.h5", distractor_images, dist_feats, cfgd)}
    monkeypatch.setattr(ExtractorSpec, "build", fake_extractor_factory([]))
    monkeypatch.setattr(S, "benchmark_store", lambda ex, b, work, role, progress=True: stores[b.name])
    monkeypatch.setattr(S, "query_features", lambda ex, b, cache, progress=True: queries)
    cfg = write_config(tmp_path, shipped_config_text("scalability"))
    bench_set = f'benchmarks=[{{ name = "instance-track", root = "{track}", pca_root = "{landmarks}" }}]'
    return cfg, [bench_set, f"distractors_root={landmarks}", "bootstrap.n_boot=200"]


def test_scalability_flow_with_distractors(tmp_path, monkeypatch):
    cfg, sets = _fake_run(tmp_path, monkeypatch)
    out = run_experiment(cfg, sets + ["steps=[0, 5, 1000]", 'methods=["dasr-star", "gap"]', "baseline_max_distractors=5",
                                      "index.recall_k=10", "index.k_regions=50"], quiet=True)
    saved = json.loads((out / "results.json").read_text())
    results = [e["result"] for e in saved["entries"]]
    info = [r["scalability"] for r in results]
    dstar = [r for r in results if r["method"] == "dasr-star"]
    assert sorted({r["scalability"]["distractors"] for r in dstar}) == [0, 5, 15]  # 1000 clipped to the 15 available
    assert sorted({r["scalability"]["distractors"] for r in results if r["method"] == "gap"}) == [0, 5]  # capped
    # ivfpq falls back on so few vectors: the search says so
    assert {r["scalability"]["search"] for r in dstar} == {"exact", "ann:exact"}
    assert all(r["scalability"]["recall_vs_exact"] == pytest.approx(1.0) for r in dstar)
    assert all(r["database_images"] == 12 + s["distractors"] for r, s in zip(results, info))
    top = max(dstar, key=lambda r: r["scalability"]["distractors"])["scalability"]
    assert top["distractor_regions"] == 60 and top["regions"] == 36 + 60
    assert dstar[0]["mean"]["ap@50/truncated"] > 0.9
    md = (out / "results.md").read_text()
    assert "7,014,819" in md and "60 DASR* regions for 15 distractor images" in md
    assert "paris-landmarks, which also serves as distractors" in md
    assert "- 12 database images plus the distractors, 4 queries" in md
    assert (out / "map-vs-database-size.png").is_file() and (out / "recall-vs-database-size.png").is_file()
    assert "0 distractors, exact" in (out / "bootstrap.csv").read_text()


def test_a_distractor_that_copies_a_query_costs_that_query_exactly_one_rank(tmp_path, monkeypatch):
    # Query 0's 3 relevant images first (AP 1) without distractors; with the planted copy ranked
    # first, AP@50 = (1/2 + 2/3 + 3/4) / 3; the random distractors outrank no relevant image.
    cfg, sets = _fake_run(tmp_path, monkeypatch, planted=True)
    out = run_experiment(cfg, sets + ["steps=[0, 5]", 'methods=["dasr-star"]', "index.recall_k=10",
                                      "index.k_regions=50"], quiet=True)
    results = [e["result"] for e in json.loads((out / "results.json").read_text())["entries"]]
    exact = {r["scalability"]["distractors"]: r["mean"]["ap@50/truncated"] for r in results
             if r["scalability"]["search"] == "exact"}
    assert exact[0] == pytest.approx(1.0)
    assert exact[5] == pytest.approx((3 + (1 / 2 + 2 / 3 + 3 / 4) / 3) / 4)


def test_the_ann_recall_and_ranking_come_from_the_index(tmp_path, monkeypatch):
    """A fake index returns the exact top-10 regions for queries 0 and 1 and the 10 WORST for 2 and 3."""
    cfg, sets = _fake_run(tmp_path, monkeypatch)

    def search(index, q, k):
        sims = q @ index.T
        order = np.argsort(-sims, axis=1, kind="stable")
        ids = np.concatenate([order[:2, :k], order[2:, ::-1][:, :k]])
        return np.take_along_axis(sims, ids, 1), ids

    monkeypatch.setattr(ann, "build_index", lambda feats, kind, **params: np.array(feats))
    monkeypatch.setattr(ann, "search_index", search)
    monkeypatch.setattr(ann, "index_bytes_per_vector", lambda index, n=None: 8.0)
    out = run_experiment(cfg, sets + ["steps=[0]", 'methods=["dasr-star"]', "index.recall_k=10", "index.k_regions=10"],
                         quiet=True)
    saved = json.loads((out / "results.json").read_text())
    by_search = {e["result"]["scalability"]["search"]: e["result"] for e in saved["entries"]}
    exact, approx = by_search["exact"], by_search["ann:exact"]
    assert exact["scalability"]["recall_vs_exact"] == 1.0
    assert approx["scalability"]["recall_vs_exact"] == pytest.approx(0.5)  # 2 of 4 queries found all 10
    assert approx["scalability"]["index"]["bytes_per_region"] == 8.0 and approx["scalability"]["build_seconds"] >= 0
    ap = {r["search"]: [p["ap@50/truncated"] for p in res["per_query"]]
          for r, res in ((res["scalability"], res) for res in by_search.values())}
    assert min(ap["exact"]) > 0.9
    # queries 2 and 3 got only regions of the other instances: nothing relevant is ranked
    assert ap["ann:exact"][2:] == [0.0, 0.0] and min(ap["ann:exact"][:2]) > 0.9
    md = (out / "results.md").read_text()
    assert "| dasr-star | ann:exact | 0 | 12 | 36 |" in md and "0.500 @10 | 8.0 |" in md


def test_scalability_database_rows_follow_the_subsampled_benchmark(tmp_path):
    names = ["d", "a", "c", "b"]  # a whole-benchmark store, in another order
    feats = [np.full((i + 1, 2), i, np.float32) for i in range(4)]  # d: 1 row of 0, a: 2 rows of 1, ...
    store = RegionStore.open(write_store(tmp_path / "s.h5", names, feats, {"method": "dasr"}))
    bench = subsample_database(Benchmark("t", tmp_path, ("a", "b", "c", "d", "e"), (), "instance"), 2)  # a, c, e
    rows, counts = S.database_rows(store, bench)
    assert counts.tolist() == [2, 3, 0]  # e was never extracted: no regions
    assert rows[:, 0].tolist() == [1, 1, 2, 2, 2]


def test_concat_stores_keeps_the_order(tmp_path):
    a = RegionStore.open(write_store(tmp_path / "a.h5", ["x", "y"], [np.zeros((2, 3)), np.ones((1, 3))], {"m": 1}))
    b = RegionStore.open(write_store(tmp_path / "b.h5", ["z"], [np.full((3, 3), 2.0)], {"m": 1}))
    feats, counts, names = S.concat_stores([a, b])
    assert names == ["x", "y", "z"] and counts.tolist() == [2, 1, 3] and feats[:, 0].tolist() == [0, 0, 1, 2, 2, 2]
