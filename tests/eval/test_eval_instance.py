"""Instance-search evaluation: subsampling, ranking alignment, evaluate() on tiny stores, the table."""

from __future__ import annotations

import dataclasses

import json
import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import dasr.eval.instance as instance
from dasr.eval.datasets import Benchmark, Query
from dasr.eval.instance import align_rankings, evaluate, format_table, subsample_database
from dasr.eval.records import QueryScore, SearchResult, WhiteningInfo
from dasr.search import Ranking
from dasr.store import RegionStore, StoreWriter
from eval_helpers import touch, write_store


def ranking(order, boxes=None):
    order = np.asarray(order)
    boxes = np.zeros((len(order), 4), np.float32) if boxes is None else np.asarray(boxes, np.float32)
    return Ranking(order, np.linspace(1, 0, len(order)), np.arange(len(order)), boxes)


def _result(method: str, pca: WhiteningInfo, mean: dict, loc, regions: float) -> SearchResult:
    return SearchResult(task="instance", benchmark="toy", method=method, config={}, subsample=1, database_images=3,
                        queries=1, pca=pca, ap_definition="oxford", mean=mean, per_query=[QueryScore("q", mean)],
                        localization_recall=loc, regions_per_image=regions, images_in_store=3, seconds={},
                        store=None)


def test_table():
    whitened = WhiteningInfo(mode="other", source="paris-landmarks", dim=512, learning_vectors=9000, path=None)
    result = _result("dasr-star", whitened, {"ap@10/truncated": 0.2, "ap": 0.7}, {"0.5": 0.25}, 11.04)
    table = format_table([result], ks=(10,))
    assert "| dasr-star | 512 | 0.200 | 0.700 | 0.250 | - | 11.0 |" in table  # no mIoU keys: -
    assert "mIoU (enclosing-box denominator, authors' MSAR)" in table.splitlines()[0]
    plain = _result("gap", WhiteningInfo("none", None, None, None, None), {"ap": 0.5}, None, 1.0)
    assert "| gap | none | - | - | 0.500 | - | - | 1.0 |" in format_table([plain], ks=(10, 20))
    with_miou = _result("dasr", whitened, {"ap": 0.5, "miou/enclosing": 0.4, "miou/images": 2.0}, {"0.5": 0.1}, 3.0)
    assert "| dasr | 512 | 0.500 | 0.100 | 0.400 | 3.0 |" in format_table([with_miou], ks=())
    with_miou.config = {"rule": "authors"}
    assert "| dasr (authors' rule) | 512 |" in format_table([with_miou], ks=())
    with_miou.config = {"contrastive": True}
    assert "| dasr (contrastive) | 512 |" in format_table([with_miou], ks=())


def test_subsample_and_alignment_with_a_store(tmp_path):
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


# ----------------------------------------------------------------------------- evaluate() end to end
CONFIG = {"method": "dasr-star", "max_side": 64}


def _toy_run(tmp_path: Path, monkeypatch):
    """4 database images with one region each along the axes; 2 queries whose rankings are known.

    Database features e0, e1, e2, e3 (one region each, boxes 0-10 except image 2: 0-5 high);
    query a = e0 + 0.5 e2 ranks 0, 2, then 1 and 3 (equal, store order); query b = e3 + 0.9 e1
    ranks 3, 1, 0, 2.
    """
    eye = np.eye(4, dtype=np.float32)
    boxes = [np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 5]]),
             np.array([[0, 0, 10, 10]])]
    db = write_store(tmp_path / "db.h5", ["0.jpg", "1.jpg", "2.jpg", "3.jpg"], [eye[i:i + 1] for i in range(4)],
                     CONFIG, boxes)
    qa = Query("a", "qa.jpg", None, positives=(2, 1), positive_boxes={2: (0, 0, 10, 10)})
    qb = Query("b", "qb.jpg", None, positives=(0,))
    bench = Benchmark("toy", tmp_path, ("0.jpg", "1.jpg", "2.jpg", "3.jpg"), (qa, qb), "instance")
    rng = np.random.default_rng(0)
    source = write_store(tmp_path / "src.h5", [f"s{i}.jpg" for i in range(20)],
                         [rng.normal(size=(3, 4)).astype(np.float32) for _ in range(20)], CONFIG)
    stores = {"toy": db, "paris-landmarks": source}
    monkeypatch.setattr(instance, "load_benchmark",
                        lambda name, root=None, protocol=None: bench if name == "toy" else
                        Benchmark(name, tmp_path, tuple(f"s{i}.jpg" for i in range(20)), (), "oxford"))
    roles = []
    monkeypatch.setattr(instance, "benchmark_store",
                        lambda ex, b, work, role, progress=True: roles.append((role, b.database)) or stores[b.name])
    monkeypatch.setattr(instance, "query_features", lambda ex, b, cache, progress=True:
                        np.stack([eye[0] + 0.5 * eye[2], eye[3] + 0.9 * eye[1]]))
    extractor = SimpleNamespace(method="dasr-star", config=lambda: dict(CONFIG), roles=roles)
    return extractor, db


def test_evaluate_returns_a_search_result_and_writes_its_json(tmp_path, monkeypatch):
    extractor, db = _toy_run(tmp_path, monkeypatch)
    r = evaluate(extractor, "toy", work=tmp_path, pca="none", ks=(1, 2), out=tmp_path / "out", progress=False)
    assert isinstance(r, SearchResult) and (r.task, r.benchmark, r.method) == ("instance", "toy", "dasr-star")
    assert (r.database_images, r.queries, r.images_in_store, r.subsample) == (4, 2, 4, 1)
    assert r.pca == WhiteningInfo("none", None, None, None, None)
    a, b = r.per_query
    # a: ranking 0, 2, 1, 3 -> relevance 0, 1, 1, 0, |R| = 2
    assert a.ap["ap@1/truncated"] == 0.0 and a.ap["ap@2/truncated"] == pytest.approx(1 / 4)
    assert a.ap["ap@2/min"] == pytest.approx(1 / 4) and a.ap["ap"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    # b: ranking 3, 1, 0, 2 -> its positive 0 third
    assert b.ap["ap"] == pytest.approx(1 / 3) and b.ap["ap@2/truncated"] == 0.0
    assert r.mean["ap"] == pytest.approx(((1 / 2 + 2 / 3) / 2 + 1 / 3) / 2)
    assert a.ious == [0.5] and b.ious == []  # image 2's region is half its ground-truth box
    assert r.localization_recall["0.5"] == 1.0 and r.localization_recall["0.6"] == 0.0
    assert r.regions_per_image == 1.0 and r.store == str(db)
    assert isinstance(r.ap_definition, dict) and set(r.ap_definition) == {"truncated", "min"}
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert SearchResult.from_json(saved) == r
    assert list(saved)[:4] == ["task", "benchmark", "subsample", "database_images"]
    assert saved["per_query"][0]["ap"] == a.ap["ap"]  # flat per-query scores (benchmarks/compare_modes.py)
    tsv = (tmp_path / "out" / "rankings.tsv").read_text().splitlines()
    assert tsv[1].split("\t")[:3] == ["a", "1", "0.jpg"] and tsv[1].endswith("\t0")


def test_evaluate_whitening_record_and_source_rule(tmp_path, monkeypatch):
    extractor, _ = _toy_run(tmp_path, monkeypatch)
    r = evaluate(extractor, "toy", work=tmp_path, pca="other", pca_dim=3, progress=False)
    assert (r.pca.mode, r.pca.source, r.pca.dim, r.pca.learning_vectors) == ("other", "paris-landmarks", 3, 60)
    assert Path(r.pca.path).is_file() and "paris-landmarks" in Path(r.pca.path).name
    with pytest.raises(ValueError, match="another collection"):
        evaluate(extractor, "toy", work=tmp_path, pca="other", pca_benchmark="toy", progress=False)
    with pytest.raises(ValueError, match="pca must be"):
        evaluate(extractor, "toy", work=tmp_path, pca="same", progress=False)


def test_whole_image_search_drops_the_query_boxes_and_keeps_its_own_cache(tmp_path, monkeypatch):
    extractor, _ = _toy_run(tmp_path, monkeypatch)
    seen = []
    feats = instance.query_features(None, None, None)  # the toy's fixed query features
    monkeypatch.setattr(instance, "query_features", lambda ex, b, cache, progress=True:
                        seen.append(([q.box for q in b.queries], cache.name)) or feats)
    monkeypatch.setattr(instance, "load_benchmark", _with_query_boxes(instance.load_benchmark))
    boxed = evaluate(extractor, "toy", work=tmp_path, pca="none", progress=False)
    whole = evaluate(extractor, "toy", work=tmp_path, pca="none", query="image", progress=False)
    assert seen == [([(1, 1, 5, 5), (2, 2, 6, 6)], "queries.npz"), ([None, None], "queries-image.npz")]
    assert instance.WHOLE_IMAGE_NOTE in whole.notes and instance.WHOLE_IMAGE_NOTE not in boxed.notes
    with pytest.raises(ValueError, match="query must be one of box, image"):
        evaluate(extractor, "toy", work=tmp_path, pca="none", query="crop", progress=False)


def _with_query_boxes(load):
    def loader(name, root=None, protocol=None):
        bench = load(name, root, protocol)
        if name != "toy":
            return bench
        boxes = [(1, 1, 5, 5), (2, 2, 6, 6)]
        return dataclasses.replace(bench, queries=tuple(dataclasses.replace(q, box=b)
                                                        for q, b in zip(bench.queries, boxes)))
    return loader


def test_the_whitening_learns_on_exactly_its_sample_of_the_learning_collection(tmp_path, monkeypatch):
    """pca_subsample=4: images s0, s4, ..., s16 (3 regions each) of the 20 that the reused store holds."""
    extractor, _ = _toy_run(tmp_path, monkeypatch)
    r = evaluate(extractor, "toy", work=tmp_path, pca="other", pca_subsample=4, progress=False)
    assert (r.pca.source, r.pca.learning_vectors) == ("paris-landmarks, 1 in 4 database images", 15)
    role, images = extractor.roles[-1]
    assert role == "pca-source-1in4" and images == ("s0.jpg", "s4.jpg", "s8.jpg", "s12.jpg", "s16.jpg")
    assert "1in4" in Path(r.pca.path).name  # never the whole collection's whitening file
    whole = evaluate(extractor, "toy", work=tmp_path, pca="other", progress=False)
    assert whole.pca.learning_vectors == 60 and whole.pca.path != r.pca.path
    with pytest.raises(ValueError, match="positive integer"):
        evaluate(extractor, "toy", work=tmp_path, pca="other", pca_subsample=0, progress=False)


def test_evaluate_selects_the_revisited_protocol(tmp_path, monkeypatch):
    """roxford5k through the real loader: the protocol picks the positives and junk the AP uses."""
    root = tmp_path / "roxford5k"
    root.mkdir()
    gnd = [{"bbx": [0, 0, 1, 1], "easy": [0], "hard": [1], "junk": [2]},
           {"bbx": [0, 0, 1, 1], "easy": [], "hard": [3], "junk": []}]
    (root / "gnd_roxford5k.pkl").write_bytes(pickle.dumps({"imlist": ["a", "b", "c", "d"], "qimlist": ["q1", "q2"],
                                                          "gnd": gnd}))
    touch(root, *(f"jpg/{n}.jpg" for n in ("a", "b", "c", "d", "q1", "q2")))
    eye = np.eye(4, dtype=np.float32)
    db = write_store(tmp_path / "db.h5", [f"jpg/{n}.jpg" for n in "abcd"], [eye[i:i + 1] for i in range(4)], CONFIG)
    monkeypatch.setattr(instance, "benchmark_store", lambda ex, b, work, role, progress=True: db)
    # q1 ranks c, b, d, a (scores 0.9 c, 0.6 b, 0.3 d, 0 a); q2 ranks d first
    feats = {"q1": 0.9 * eye[2] + 0.6 * eye[1] + 0.3 * eye[3], "q2": eye[3]}
    monkeypatch.setattr(instance, "query_features",
                        lambda ex, b, cache, progress=True: np.stack([feats[q.name] for q in b.queries]))
    extractor = SimpleNamespace(method="dasr-star", config=lambda: dict(CONFIG))
    runs = {p: evaluate(extractor, "roxford5k", root, work=tmp_path, pca="none", protocol=p, progress=False)
            for p in ("easy", "medium", "hard")}
    # easy: q1 only (q2 has no easy image); junk c, b -> [d, a]: a at rank 1 -> (0 + 1/2)/2
    assert [p.name for p in runs["easy"].per_query] == ["q1"] and runs["easy"].mean["ap"] == pytest.approx(0.25)
    # medium: q1 junk c -> [b, d, a]: ranks 0, 2 -> (1 + (1/2 + 2/3)/2)/2 = 1/2 + 7/24; q2: d first -> 1
    assert runs["medium"].per_query[0].ap["ap"] == pytest.approx(0.5 + 7 / 24)
    assert runs["medium"].mean["ap"] == pytest.approx((0.5 + 7 / 24 + 1.0) / 2)
    # hard: q1 junk c, a -> [b, d]: b first -> 1
    assert runs["hard"].mean["ap"] == pytest.approx(1.0)
    assert runs["hard"].notes == ["revisited protocol hard: positives = hard, junk = junk + easy"]
    assert runs["medium"].ap_definition == "oxford"
    with pytest.raises(ValueError, match="oxford5k has no protocol"):
        evaluate(extractor, "oxford5k", tmp_path, work=tmp_path, pca="none", protocol="hard", progress=False)


def test_add_authors_miou_uses_every_stored_region_of_each_reference_image():
    import numpy as np

    from dasr.eval.datasets import Benchmark, Query
    from dasr.eval.instance import add_authors_miou
    from dasr.eval.metrics import MIOU_IMAGES_KEY, MIOU_KEY
    from dasr.eval.records import QueryScore

    class Store:  # the two things add_authors_miou reads of a RegionStore
        images = ["b.jpg", "a.jpg"]
        boxes = {0: np.array([[0, 0, 4, 4], [2, 2, 6, 6]], np.float32), 1: np.array([[0, 0, 2, 4]], np.float32)}

        def regions_of(self, i):
            return {"boxes": self.boxes[i]}

    bench = Benchmark(name="t", root=Path("."), database=("a.jpg", "b.jpg", "c.jpg"), ap="instance", queries=(
        Query("q1", "x.jpg", None, positives=(0, 1, 2),
              positive_boxes={0: (0, 0, 4, 4), 1: (2, 2, 6, 6), 2: (0, 0, 1, 1)}),
        Query("q2", "y.jpg", None, positives=(1,))))
    scores = [QueryScore("q1", {"ap": 1.0}), QueryScore("q2", {"ap": 0.5})]
    add_authors_miou(scores, bench, Store())
    # a.jpg (store row 1): [0,0,2,4] vs [0,0,4,4] -> 8/16; b.jpg: exact match -> 1; c.jpg: not stored -> 0
    assert scores[0].ap[MIOU_KEY] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert scores[0].ap[MIOU_IMAGES_KEY] == 3
    assert scores[1].ap == {"ap": 0.5, MIOU_KEY: 0.0, MIOU_IMAGES_KEY: 0.0}  # no boxes: weight 0
