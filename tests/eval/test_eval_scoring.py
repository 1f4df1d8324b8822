"""THE AP dispatch (dasr.eval.scoring.score_query) on hand-made benchmarks, one per protocol."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dasr.eval.datasets import Benchmark, Query
from dasr.eval.metrics import AP_VARIANT_DESCRIPTIONS
from dasr.eval.scoring import DEFAULT_KS, ap_definition, protocol_notes, score_query


def test_instance_metrics_and_localization():
    q = Query("q", "q.jpg", (0, 0, 10, 10), positives=(1, 3, 4),
              positive_boxes={1: (0, 0, 10, 10), 3: (0, 0, 10, 10), 4: (50, 50, 60, 60)})
    bench = Benchmark("toy", Path("."), tuple(f"{i}.jpg" for i in range(5)), (q,), "instance")
    boxes = np.asarray([[0, 0, 10, 10], [0, 0, 1, 1], [0, 0, 10, 5], [0, 0, 10, 10], [0, 0, 1, 1]], np.float32)
    res = score_query(bench, 0, [1, 0, 3, 2, 4], boxes, ks=(2, 4))
    # relevance [1,0,1,0,1], |R| = 3
    assert res.ap["ap@2/truncated"] == pytest.approx(1 / 3)
    assert res.ap["ap@2/min"] == pytest.approx(1 / 2)
    assert res.ap["ap@4/truncated"] == pytest.approx((1 + 2 / 3) / 3)
    assert res.ap["ap"] == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    # IoU of the returned box for each relevant image: 1 -> 1.0, 3 -> 0.5, 4 -> 0
    assert sorted(res.ious) == pytest.approx([0.0, 0.5, 1.0])
    assert res.name == "q"
    # the metrics in a fixed order: every variant for every k, then the whole list
    assert list(res.ap) == ["ap@2/truncated", "ap@4/truncated", "ap@2/min", "ap@4/min", "ap"]
    # no boxes: nothing to localize
    assert score_query(bench, 0, [1, 0, 3, 2, 4], None, ks=(2, 4)).ious == []


def test_oxford_and_holidays_protocols():
    q = Query("q", "0.jpg", None, positives=(2,), junk=(1,))
    bench = Benchmark("ox", Path("."), ("0.jpg", "1.jpg", "2.jpg"), (q,), "oxford")
    assert score_query(bench, 0, [1, 2, 0]).ap == {"ap": pytest.approx(1.0)}  # junk skipped
    hq = Query("h", "0.jpg", None, positives=(2,))
    hol = Benchmark("hol", Path("."), ("0.jpg", "1.jpg", "2.jpg"), (hq,), "holidays", query_in_database=True)
    assert score_query(hol, 0, [0, 2, 1]).ap == {"ap": pytest.approx(1.0)}  # the query is skipped
    # the same ranking scored as an instance benchmark: no junk, so the positive is second
    inst = Benchmark("in", Path("."), ("0.jpg", "1.jpg", "2.jpg"), (q,), "instance")
    assert score_query(inst, 0, [1, 2, 0], ks=(1,)).ap["ap"] == pytest.approx(0.5)


def test_oxford_trapezoid_by_hand():
    # positives 0 and 3 at ranks 1 and 3 (0-based) once junk 5 is removed from [5, 9, 0, 8, 3]
    q = Query("q", "q.jpg", None, positives=(0, 3), junk=(5,))
    bench = Benchmark("ox", Path("."), tuple(f"{i}.jpg" for i in range(10)), (q,), "oxford")
    # j=0, r=1: (0/1 + 1/2)/2 = 1/4;  j=1, r=3: (1/3 + 2/4)/2 = 5/12;  AP = (1/4 + 5/12)/2 = 1/3
    assert score_query(bench, 0, [5, 9, 0, 8, 3, 1, 2, 4, 6, 7]).ap["ap"] == pytest.approx(1 / 3)


def test_truncated_ranking_counts_missing_positives_as_not_retrieved():
    q = Query("q", "q.jpg", None, positives=(0, 4), positive_boxes={0: (0, 0, 10, 10), 4: (0, 0, 10, 10)})
    bench = Benchmark("toy", Path("."), tuple(f"{i}.jpg" for i in range(6)), (q,), "instance")
    # top 2 of an approximate search: positive 0 first, positive 4 not in the list
    res = score_query(bench, 0, [0, 1], np.asarray([[0, 0, 10, 10], [0, 0, 1, 1]], np.float32), ks=(2,))
    assert res.ap["ap@2/truncated"] == pytest.approx(1 / 2)  # |R| = 2 although only one is listed
    assert res.ap["ap@2/min"] == pytest.approx(1 / 2)
    assert res.ious == [1.0, 0.0]  # 4 was not returned: IoU 0
    ox = Benchmark("ox", Path("."), bench.database, (q,), "oxford")
    assert score_query(ox, 0, [0, 1]).ap["ap"] == pytest.approx(1 / 2)  # (1 + 1)/2 * 1/2


def test_nan_box_is_a_missed_localization_and_boxes_must_match_the_order():
    q = Query("q", "q.jpg", None, positives=(0,), positive_boxes={0: (0, 0, 10, 10)})
    bench = Benchmark("toy", Path("."), ("0.jpg", "1.jpg"), (q,), "instance")
    assert score_query(bench, 0, [0, 1], np.full((2, 4), np.nan, np.float32)).ious == [0.0]
    with pytest.raises(ValueError, match="boxes of shape"):
        score_query(bench, 0, [0, 1], np.zeros((1, 4), np.float32))


def test_default_ks_and_ap_definition():
    q = Query("q", "q.jpg", None, positives=(0,))
    inst = Benchmark("toy", Path("."), ("0.jpg",), (q,), "instance")
    assert DEFAULT_KS == (10, 20, 50, 100)
    assert set(score_query(inst, 0, [0]).ap) == {f"ap@{k}/{v}" for k in DEFAULT_KS for v in ("truncated", "min")} | {"ap"}
    assert ap_definition(inst) == AP_VARIANT_DESCRIPTIONS
    assert ap_definition(Benchmark("ox", Path("."), ("0.jpg",), (q,), "oxford")) == "oxford"
    assert protocol_notes(inst) == []
    rox = Benchmark("roxford5k", Path("."), ("0.jpg",), (q,), "oxford", protocol="hard")
    assert protocol_notes(rox) == ["revisited protocol hard: positives = hard, junk = junk + easy"]
