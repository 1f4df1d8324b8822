"""VLAD image search returns a SearchResult scored by the benchmark's own AP."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import dasr.eval.image_search as image_search
import dasr.eval.instance as instance
from dasr.eval.datasets import Benchmark, Query
from dasr.eval.image_search import VladSettings, evaluate_image_search, image_search_from_stores
from dasr.eval.records import SearchResult, mean_scores
from dasr.store import RegionStore
from eval_helpers import write_store

CONFIG = {"method": "dasr-star", "max_side": 64}


def _landmarks(tmp_path: Path, d: int = 16, n_lm: int = 4, per: int = 5):
    """4 landmarks x 5 database images (regions near the landmark's centre), one query per landmark.

    The database store lacks image 3 (skipped at extraction); 30 unrelated source images.
    """
    rng = np.random.default_rng(0)
    centers = np.abs(rng.normal(size=(n_lm, d))) * (rng.random((n_lm, d)) > 0.5)

    def regions(lm: int, n: int = 4) -> np.ndarray:
        return np.abs(centers[lm] + 0.15 * rng.normal(size=(n, d))).astype(np.float32)

    db_images = [f"db/{lm}/{i}.jpg" for lm in range(n_lm) for i in range(per)]
    db_feats = [regions(lm) for lm in range(n_lm) for _ in range(per)]
    q_images = [f"q/{lm}.jpg" for lm in range(n_lm)]
    q_feats = [regions(lm) for lm in range(n_lm)]
    src_feats = [np.abs(rng.normal(size=(5, d))).astype(np.float32) for _ in range(30)]
    kept = [i for i in range(len(db_images)) if i != 3]
    stores = {
        "database": write_store(tmp_path / "db.h5", [db_images[i] for i in kept], [db_feats[i] for i in kept], CONFIG),
        "queries": write_store(tmp_path / "q.h5", q_images, q_feats, CONFIG),
        "pca-source": write_store(tmp_path / "src.h5", [f"src/{i}.jpg" for i in range(30)], src_feats, CONFIG),
    }
    queries = tuple(Query(name=q, image=q, box=None, positives=tuple(range(lm * per, (lm + 1) * per)))
                    for lm, q in enumerate(q_images))
    bench = Benchmark(name="paris-landmarks", root=tmp_path, database=tuple(db_images), queries=queries, ap="oxford")
    return bench, stores


def test_image_search_from_stores_record(tmp_path):
    bench, stores = _landmarks(tmp_path)
    db, qs, src = (RegionStore.open(stores[k]) for k in ("database", "queries", "pca-source"))
    r = image_search_from_stores(bench, db, src, qs, VladSettings(k=4, pca_dim=8192), source_name="instance-track")
    assert isinstance(r, SearchResult) and (r.task, r.method, r.config) == ("image-search", "dasr-star", CONFIG)
    assert (r.database_images, r.missing_images, r.queries, r.images_in_store) == (20, 1, 4, 19)
    # 30 learning images: at most n - 1 = 29 components
    assert (r.pca.mode, r.pca.source, r.pca.dim, r.pca.learning_vectors) == ("other", "instance-track", 29, 30)
    assert "capped at 29" in r.pca.note
    assert r.vlad["codebook_source"] == "instance-track" and r.vlad["k"] == 4 and r.vlad["learning_regions"] == 150
    assert r.ap_definition == "oxford" and r.localization_recall is None
    assert all(set(p.ap) == {"ap"} and p.ious == [] for p in r.per_query)
    assert r.mean == mean_scores(r.per_query) and r.mean["ap"] > 0.9
    assert r.regions_per_image == 4.0 and r.store == str(stores["database"])
    plain = image_search_from_stores(bench, db, src, qs, VladSettings(k=4, pca="none"))
    assert (plain.pca.mode, plain.pca.source, plain.pca.dim, plain.pca.learning_vectors) == ("none", None, 64, None)
    with pytest.raises(KeyError, match="in no store"):
        image_search_from_stores(bench, db, src, None, VladSettings(k=4))


def test_evaluate_image_search_writes_the_record(tmp_path, monkeypatch):
    bench, stores = _landmarks(tmp_path)
    source = Benchmark("instance-track", tmp_path, tuple(f"src/{i}.jpg" for i in range(30)), (), "instance")
    monkeypatch.setattr(image_search, "load_benchmark", lambda name, root=None, protocol=None:
                        bench if name == "paris-landmarks" else source)
    monkeypatch.setattr(instance, "load_benchmark", lambda name, root=None, protocol=None: source)
    for module in (image_search, instance):
        monkeypatch.setattr(module, "benchmark_store",
                            lambda ex, b, work, role, progress=True: stores[role.split("-1in")[0]])
    extractor = SimpleNamespace(method="dasr-star", config=lambda: dict(CONFIG))
    r = evaluate_image_search(extractor, "paris-landmarks", work=tmp_path, settings=VladSettings(k=4, pca_dim=7),
                              out=tmp_path / "out", progress=False)
    assert r.pca.source == r.vlad["codebook_source"] == "instance-track" and r.pca.dim == 7
    assert set(r.seconds) == {"learn", "search_per_query", "extract"}
    assert SearchResult.from_json(json.loads((tmp_path / "out" / "results.json").read_text())) == r
    with pytest.raises(ValueError, match="another collection"):
        evaluate_image_search(extractor, "paris-landmarks", work=tmp_path, pca_benchmark="paris-landmarks")
    # The codebook of a sample: every 10th of the 30 learning images, whatever the reused store holds.
    part = evaluate_image_search(extractor, "paris-landmarks", work=tmp_path, settings=VladSettings(k=4, pca="none"),
                                 pca_subsample=10, progress=False)
    assert part.vlad["codebook_source"] == "instance-track, 1 in 10 database images"
    assert (part.vlad["learning_images"], part.vlad["learning_regions"]) == (3, 15)
