"""Search over a tiny hand-made store: best region per image, boxes, whitening file."""

from __future__ import annotations

import numpy as np

from dasr.search import SearchIndex, learn_whitening, whitening_path
from dasr.store import RegionStore, StoreWriter

CFG = {"method": "dasr-star", "backbone": "test"}


def make_store(path, per_image):
    with StoreWriter(path, CFG, "/root") as w:
        for i, feats in enumerate(per_image):
            feats = np.asarray(feats, np.float32).reshape(-1, 2)
            n = len(feats)
            w.add(f"img{i}.jpg", i, (100, 50), {
                "boxes": np.tile(np.array([[i, 0, i + 10, 10]], np.float32), (n, 1)) + np.arange(n)[:, None],
                "scores": np.ones(n, np.float32), "features": feats})
    return RegionStore.open(path)


def test_image_scores_as_its_best_region(tmp_path):
    store = make_store(tmp_path / "s.h5", [[[1, 0], [0, 1]], [], [[0.6, 0.8]], [[-1, 0]]])
    index = SearchIndex(store, None)
    r = index.search(index.describe(np.array([0.0, 2.0])))
    assert r.order.tolist() == [0, 2, 3, 1]  # image 1 has no region: last
    np.testing.assert_allclose(r.scores[:3], [1.0, 0.8, 0.0], atol=1e-6)
    np.testing.assert_allclose(r.boxes[0], [1, 1, 11, 11])  # image 0's second region won
    assert r.regions[-1] == -1 and np.isnan(r.boxes[-1]).all()
    top = index.search(index.describe(np.array([1.0, 0.0])), top=2)
    assert top.order.tolist() == [0, 2] and len(top.boxes) == 2


def test_whitening_learned_elsewhere_and_found_automatically(tmp_path):
    rng = np.random.default_rng(0)
    other = make_store(tmp_path / "other.h5", [rng.normal(size=(5, 2)) for _ in range(4)])
    db = make_store(tmp_path / "db.h5", [rng.normal(size=(3, 2)) for _ in range(3)])
    params = learn_whitening(other, whitening_path(tmp_path / "db.h5"))
    auto = SearchIndex.open(tmp_path / "db.h5")
    assert auto.whitening is not None
    np.testing.assert_allclose(auto.whitening["projection"], params["projection"])
    raw = SearchIndex.open(tmp_path / "db.h5", pca="none")
    assert raw.whitening is None
    np.testing.assert_allclose(np.linalg.norm(auto.features, axis=1), 1, rtol=1e-5)
    assert not np.allclose(auto.features, raw.features)
    assert len(db) == 3
