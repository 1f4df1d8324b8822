"""The typed result records: one JSON form each, strict reading, THE mean over queries."""

from __future__ import annotations

import json

import pytest

from dasr.eval.records import (RESULT_JSON_KEYS, QueryScore, ScalabilityInfo, SearchResult, WhiteningInfo,
                               mean_scores)


def _result(**changes) -> SearchResult:
    fields = dict(
        task="scalability", benchmark="instance-track", method="dasr-star", config={"method": "dasr-star", "beta": 0.3},
        subsample=2, database_images=17, queries=2,
        pca=WhiteningInfo(mode="other", source="paris-landmarks", dim=64, learning_vectors=2619,
                          path="/w/db.h5.whitening-paris-landmarks-64.npz", note="capped"),
        ap_definition={"truncated": "AP@k = ..."}, mean={"ap@10/truncated": 0.5, "ap": 0.25},
        per_query=[QueryScore("a", {"ap@10/truncated": 1.0, "ap": 0.5}, [0.5, 0.0]),
                   QueryScore("b", {"ap@10/truncated": 0.0, "ap": 0.0}, [])],
        localization_recall={"0.5": 0.5}, regions_per_image=3.5, images_in_store=20,
        seconds={"search_per_query": 0.01}, store="/w/db.h5", notes=["a note"],
        scalability=ScalabilityInfo(distractors=5, distractor_regions=20, regions=61, search="ann:ivfpq",
                                    recall_vs_exact_k=10, recall_vs_exact=0.9, index={"kind": "ivfpq"},
                                    build_seconds=0.2),
        vlad=None, missing_images=1)
    fields.update(changes)
    return SearchResult(**fields)


def test_search_result_round_trips_through_json_text():
    r = _result()
    d = r.to_json()
    assert SearchResult.from_json(json.loads(json.dumps(d))) == r
    plain = _result(scalability=None, vlad={"k": 4, "codebook_source": "instance-track"}, task="image-search")
    assert SearchResult.from_json(json.loads(json.dumps(plain.to_json()))) == plain


def test_json_keys_order_and_flat_query_scores():
    d = _result().to_json()
    # the order results.json has always had, the new keys after
    assert list(d) == ["task", "benchmark", "subsample", "database_images", "method", "config", "pca",
                       "ap_definition", "mean", "localization_recall", "regions_per_image", "images_in_store",
                       "queries", "per_query", "seconds", "store", "notes", "missing_images", "scalability", "vlad"]
    assert set(RESULT_JSON_KEYS) == {f for f in SearchResult.__dataclass_fields__}
    assert d["per_query"][0] == {"name": "a", "ap@10/truncated": 1.0, "ap": 0.5, "ious": [0.5, 0.0]}
    assert list(d["per_query"][0]) == ["name", "ap@10/truncated", "ap", "ious"]
    assert d["pca"] == {"mode": "other", "source": "paris-landmarks", "dim": 64, "learning_vectors": 2619,
                        "path": "/w/db.h5.whitening-paris-landmarks-64.npz", "note": "capped"}
    assert d["scalability"]["recall_vs_exact"] == 0.9 and d["database_images"] == 17


def test_reading_is_strict():
    d = _result().to_json()
    with pytest.raises(ValueError, match=r"unknown \['images'\]"):  # the key a report once guessed
        SearchResult.from_json({**d, "images": 17})
    without = {k: v for k, v in d.items() if k != "database_images"}
    with pytest.raises(ValueError, match=r"missing \['database_images'\]"):
        SearchResult.from_json(without)
    with pytest.raises(ValueError, match="WhiteningInfo"):
        SearchResult.from_json({**d, "pca": {**d["pca"], "regions": 3}})
    with pytest.raises(ValueError, match="ScalabilityInfo"):
        SearchResult.from_json({**d, "scalability": {"distractors": 5}})
    with pytest.raises(ValueError, match="needs 'name' and 'ious'"):
        QueryScore.from_json({"name": "a", "ap": 1.0})
    # a WhiteningInfo written without its note reads back with the empty note
    assert WhiteningInfo.from_json({k: v for k, v in d["pca"].items() if k != "note"}).note == ""


def test_checked_values():
    with pytest.raises(ValueError, match="task"):
        _result(task="retrieval")
    with pytest.raises(ValueError, match="whitening mode"):
        WhiteningInfo(mode="same", source=None, dim=None, learning_vectors=None, path=None)
    with pytest.raises(ValueError, match="may not be called"):
        QueryScore("a", {"name": 1.0}).to_json()


def test_mean_scores():
    per_query = [QueryScore("a", {"ap@1/min": 1.0, "ap": 0.5}), QueryScore("b", {"ap@1/min": 0.0, "ap": 0.25}),
                 QueryScore("c", {"ap@1/min": 0.5, "ap": 0.0})]
    mean = mean_scores(per_query)
    assert mean == {"ap@1/min": pytest.approx(0.5), "ap": pytest.approx(0.25)}
    assert list(mean) == ["ap@1/min", "ap"] and all(type(v) is float for v in mean.values())
    assert mean_scores([]) == {}
    with pytest.raises(KeyError):
        mean_scores([QueryScore("a", {"ap": 1.0, "ap@1/min": 1.0}), QueryScore("b", {"ap": 0.0})])
