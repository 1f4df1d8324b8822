"""Scoring one query from its ranking, on a hand-made benchmark."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dasr.datasets import Benchmark, Query
from dasr.evaluate import config_hash, format_table, score_query
from dasr.search import Ranking


def ranking(order, boxes=None):
    order = np.asarray(order)
    boxes = np.zeros((len(order), 4), np.float32) if boxes is None else np.asarray(boxes, np.float32)
    return Ranking(order, np.linspace(1, 0, len(order)), np.arange(len(order)), boxes)


def test_instance_metrics_and_localization():
    q = Query("q", "q.jpg", (0, 0, 10, 10), positives=(1, 3, 4),
              positive_boxes={1: (0, 0, 10, 10), 3: (0, 0, 10, 10), 4: (50, 50, 60, 60)})
    bench = Benchmark("toy", Path("."), tuple(f"{i}.jpg" for i in range(5)), (q,), "instance")
    boxes = [[0, 0, 10, 10], [0, 0, 1, 1], [0, 0, 10, 5], [0, 0, 10, 10], [0, 0, 1, 1]]
    res = score_query(bench, 0, ranking([1, 0, 3, 2, 4], boxes), ks=(2, 4))
    # relevance [1,0,1,0,1], |R| = 3
    assert res.ap["ap@2/truncated"] == pytest.approx(1 / 3)
    assert res.ap["ap@2/min"] == pytest.approx(1 / 2)
    assert res.ap["ap@4/truncated"] == pytest.approx((1 + 2 / 3) / 3)
    assert res.ap["ap"] == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    # IoU of the returned box for each relevant image: 1 -> 1.0, 3 -> 0.5, 4 -> 0
    assert sorted(res.ious) == pytest.approx([0.0, 0.5, 1.0])


def test_oxford_and_holidays_protocols():
    q = Query("q", "0.jpg", None, positives=(2,), junk=(1,))
    bench = Benchmark("ox", Path("."), ("0.jpg", "1.jpg", "2.jpg"), (q,), "oxford")
    assert score_query(bench, 0, ranking([1, 2, 0])).ap["ap"] == pytest.approx(1.0)  # junk skipped
    hq = Query("h", "0.jpg", None, positives=(2,))
    hol = Benchmark("hol", Path("."), ("0.jpg", "1.jpg", "2.jpg"), (hq,), "holidays", query_in_database=True)
    assert score_query(hol, 0, ranking([0, 2, 1])).ap["ap"] == pytest.approx(1.0)  # the query is skipped


def test_table_and_hash():
    result = {"method": "dasr-star", "pca": {"pca": "other", "dim": 512}, "regions_per_image": 11.04,
              "mean": {"ap@10/truncated": 0.2, "ap": 0.7}, "localization_recall": {"0.5": 0.25}}
    table = format_table([result], ks=(10,))
    assert "| dasr-star | 512 | 0.200 | 0.700 | 0.250 | 11.0 |" in table
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1}) != config_hash({"a": 2, "b": 2})


def test_subsample_and_alignment_with_a_store(tmp_path):
    from dasr.evaluate import align_rankings, subsample_database
    from dasr.store import RegionStore, StoreWriter

    q = Query("q", "q.jpg", None, positives=(0, 3), positive_boxes={0: (0, 0, 1, 1), 3: (0, 0, 1, 1)})
    bench = Benchmark("toy", Path("."), ("a", "b", "c", "d"), (q,), "instance")
    sub = subsample_database(bench, 3)  # keeps a, d
    assert sub.database == ("a", "d") and sub.queries[0].positives == (0, 1)
    assert set(sub.queries[0].positive_boxes) == {0, 1}
    with pytest.raises(ValueError, match="without positives"):
        subsample_database(Benchmark("t", Path("."), ("a", "b"), (Query("q", "q", None, (1,)),), "instance"), 2)
    # a store holding d, x (not in the benchmark) and c, in that order; a and b are missing
    with StoreWriter(tmp_path / "s.h5", {"m": 1}, ".") as w:
        for order, name in enumerate(["d", "x", "c"]):
            w.add(name, order, (4, 4), {"boxes": np.zeros((1, 4), np.float32), "features": np.ones((1, 2), np.float32)})
    store = RegionStore.open(tmp_path / "s.h5")
    r = align_rankings([ranking([1, 0, 2])], store, bench)[0]  # x, d, c by score
    assert r.order.tolist() == [3, 2, 0, 1]  # x dropped; a and b (missing) last
    assert np.isneginf(r.scores[-2:]).all() and np.isnan(r.boxes[-1]).all()
