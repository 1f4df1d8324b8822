"""Table 3's flow: VLAD image search over stores, run by the experiment (fake stores, no network)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from dasr.eval.datasets import Benchmark, Query
from dasr.experiments import run_experiment
from dasr.features.spec import ExtractorSpec

from experiments_helpers import (fake_extractor_factory, fake_instance_track, fake_paris_landmarks,
                                 shipped_config_text, write_config, write_store)


def _landmark_regions(rng, centers, lm: int, n: int = 4) -> np.ndarray:
    return np.abs(centers[lm] + 0.15 * rng.normal(size=(n, centers.shape[1]))).astype(np.float32)


def _synthetic_search(tmp_path: Path, d: int = 16, n_lm: int = 4, per: int = 5):
    rng = np.random.default_rng(0)
    centers = np.abs(rng.normal(size=(n_lm, d))) * (rng.random((n_lm, d)) > 0.5)
    db_images = [f"db/{lm}/{i}.jpg" for lm in range(n_lm) for i in range(per)]
    db_feats = [_landmark_regions(rng, centers, lm) for lm in range(n_lm) for _ in range(per)]
    db_feats[3] = np.zeros((0, d), np.float32)  # an image without any region
    q_images = [f"q/{lm}.jpg" for lm in range(n_lm)]
    q_feats = [_landmark_regions(rng, centers, lm) for lm in range(n_lm)]
    src_images = [f"src/{i}.jpg" for i in range(30)]
    src_feats = [np.abs(rng.normal(size=(5, d))).astype(np.float32) for _ in src_images]
    cfg = {"method": "dasr-star", "d": d}
    stores = {
        "database": write_store(tmp_path / "db.h5", db_images, db_feats, cfg),
        "queries": write_store(tmp_path / "q.h5", q_images, q_feats, cfg),
        "source": write_store(tmp_path / "src.h5", src_images, src_feats, cfg),
    }
    queries = tuple(Query(name=q, image=q, box=None, positives=tuple(range(lm * per, (lm + 1) * per)))
                    for lm, q in enumerate(q_images))
    bench = Benchmark(name="paris-landmarks", root=tmp_path, database=tuple(db_images), queries=queries, ap="oxford")
    return bench, stores


def test_vlad_image_search_from_stores(tmp_path):
    from dasr.eval.image_search import VladSettings, image_search_from_stores, learn_vlad_model
    from dasr.store import RegionStore

    bench, stores = _synthetic_search(tmp_path)
    db, src, qs = (RegionStore.open(stores[k]) for k in ("database", "source", "queries"))
    settings = VladSettings(k=4, power=0.5, pca_dim=8192)
    model = learn_vlad_model(src, settings)
    assert model["codebook"].shape == (4, 16)
    assert model["dim"] == 29 and "capped at 29" in model["note"]  # 30 learning images: n - 1 components
    r = image_search_from_stores(bench, db, src, qs, settings)
    assert r.pca.dim == 29 and r.queries == 4 and r.database_images == 20
    assert r.mean["ap"] > 0.9, r.mean
    assert all(0.0 <= p.ap["ap"] <= 1.0 for p in r.per_query)
    plain = image_search_from_stores(bench, db, src, qs, VladSettings(pca="none"))
    assert plain.pca.dim == 64 and plain.mean["ap"] > 0.9
    with pytest.raises(KeyError, match="in no store"):
        image_search_from_stores(bench, db, src, None, settings)


def _table3_run(tmp_path, monkeypatch):
    import dasr.eval.image_search
    import dasr.eval.instance

    bench, stores = _synthetic_search(tmp_path)
    landmarks = fake_paris_landmarks(tmp_path / "pl")
    track = fake_instance_track(tmp_path / "track")
    # The learning collection: the 30 images of the fake source store.
    source = Benchmark(name="instance-track", root=tmp_path, database=tuple(f"src/{i}.jpg" for i in range(30)),
                       queries=(), ap="instance")
    monkeypatch.setattr(ExtractorSpec, "build", fake_extractor_factory([]))
    monkeypatch.setattr(dasr.eval.image_search, "load_benchmark",
                        lambda name, root=None, protocol=None: bench if name == "paris-landmarks" else source)
    monkeypatch.setattr(dasr.eval.instance, "load_benchmark", lambda name, root=None, protocol=None: source)
    roles = []

    def ensure(extractor, b, work, role, progress=True):
        roles.append((b.name, role, len(b.database) if role == "database" else None))
        return stores["source" if role.startswith("pca-source") else role]

    monkeypatch.setattr(dasr.eval.image_search, "benchmark_store", ensure)
    monkeypatch.setattr(dasr.eval.instance, "benchmark_store", ensure)
    cfg = write_config(tmp_path, shipped_config_text("table3"))
    bench_set = (f'benchmarks=[{{ name = "paris-landmarks", root = "{landmarks}", '
                 f'pca_benchmark = "instance-track", pca_root = "{track}" }}]')
    return cfg, bench_set, roles


def test_table3_flow_on_shipped_layout(tmp_path, monkeypatch):
    """run_experiment with task image-search: stores come from benchmark_store (patched to the fakes)."""
    cfg, bench_set, roles = _table3_run(tmp_path, monkeypatch)
    out = run_experiment(cfg, [bench_set], quiet=True)
    assert ("instance-track", "pca-source", None) in roles and ("paris-landmarks", "database", 20) in roles
    assert ("paris-landmarks", "queries", None) in roles
    md = (out / "results.md").read_text()
    assert "n/a (different data)" in md and "capped at 29" in md and "VLAD" in md
    assert "learned on instance-track" in md and "VLAD codebook learned on instance-track" in md
    assert "codebook and PCA-whitening learned on the independent collection" in md
    assert "- 20 database images, 4 queries" in md
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert float(next(r for r in rows if r["metric"] == "mAP")["ours"]) > 0.9
    assert (out / "paris-landmarks-ap.png").is_file()


def test_table3_honours_subsample(tmp_path, monkeypatch):
    cfg, bench_set, roles = _table3_run(tmp_path, monkeypatch)
    out = run_experiment(cfg, [bench_set, "subsample=2"], quiet=True)
    assert ("paris-landmarks", "database", 10) in roles  # every 2nd of the 20 database images
    r = json.loads((out / "results.json").read_text())["entries"][0]["result"]
    assert r["subsample"] == 2 and r["database_images"] == 10
    assert "- 10 database images (subsampled: 1 in 2), 4 queries" in (out / "results.md").read_text()


def test_table3_without_whitening_says_only_the_codebook_is_learned(tmp_path, monkeypatch):
    cfg, bench_set, _ = _table3_run(tmp_path, monkeypatch)
    md = (run_experiment(cfg, [bench_set, "pca=none"], quiet=True) / "results.md").read_text()
    assert "codebook learned on the independent collection" in md and "PCA-whitening" not in md
