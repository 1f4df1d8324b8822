"""SearchIndex over a tiny hand-made store: best region per image, boxes, whitening files."""

from __future__ import annotations

import numpy as np

import pytest

from dasr.search import SearchIndex
from dasr.features.whitening import choose_whitening, learn_whitening, whitening_files, whitening_path
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
    path = whitening_path(tmp_path / "db.h5", "other", None)
    assert path.name == "db.h5.whitening-other-all.npz"
    params = learn_whitening(other, path)
    auto, choice = SearchIndex.open(tmp_path / "db.h5")
    assert choice.path == path and "only one" in choice.describe()
    np.testing.assert_allclose(auto.whitening["projection"], params["projection"])
    raw, choice = SearchIndex.open(tmp_path / "db.h5", pca="none")
    assert raw.whitening is None and choice.path is None
    np.testing.assert_allclose(np.linalg.norm(auto.features, axis=1), 1, rtol=1e-5)
    assert not np.allclose(auto.features, raw.features)
    assert len(db) == 3


def test_whitening_files_are_keyed_by_source_and_dimension(tmp_path):
    """Two runs with another source or dimension keep both files; auto then refuses to guess."""
    rng = np.random.default_rng(1)
    other = make_store(tmp_path / "other.h5", [rng.normal(size=(5, 2)) for _ in range(4)])
    db = tmp_path / "db.h5"
    make_store(db, [rng.normal(size=(3, 2)) for _ in range(2)])
    a = whitening_path(db, "paris-landmarks", 1)
    b = whitening_path(db, "paris-landmarks", None)
    c = whitening_path(db, "../evil/name", 1)
    assert len({a, b, c}) == 3 and c.parent == db.parent and "/" not in c.name
    learn_whitening(other, a, dim=1)
    learn_whitening(other, b)
    assert whitening_files(db) == sorted([a, b])
    with pytest.raises(ValueError, match="2 whitening files"):
        choose_whitening(db, "auto")
    assert choose_whitening(db, a).path == a
    index, _ = SearchIndex.open(db, pca=a)
    assert index.whitening["projection"].shape == (2, 1)
    with pytest.raises(ValueError, match="no such whitening file"):
        choose_whitening(db, tmp_path / "missing.npz")


def test_whitening_files_of_another_index_are_not_picked(tmp_path):
    """``db.h5`` must not take ``db.h5x``'s or ``[db].h5``'s files for its own."""
    rng = np.random.default_rng(2)
    other = make_store(tmp_path / "other.h5", [rng.normal(size=(5, 2)) for _ in range(4)])
    learn_whitening(other, whitening_path(tmp_path / "db.h5x", "other", None))
    assert whitening_files(tmp_path / "db.h5") == []
    assert choose_whitening(tmp_path / "db.h5", "auto").path is None
    odd = tmp_path / "[db].h5"
    learn_whitening(other, whitening_path(odd, "other", None))
    assert len(whitening_files(odd)) == 1
