"""SearchIndex over a tiny hand-made store: best region per image, boxes, whitening files."""

from __future__ import annotations

import numpy as np

import pytest

from dasr.search import SearchIndex
from dasr.errors import InputError, InputWarning
from dasr.features.whitening import (check_whitening, choose_whitening, learn_whitening, load_whitening,
                                     save_whitening, whitening_files, whitening_path)
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


def test_a_whitening_learned_on_other_features_is_refused_naming_the_keys(tmp_path):
    """Layer, weights, pooling, scale or descriptor kind differ: refused; rule or dtype: used."""
    rng = np.random.default_rng(3)
    db = make_store(tmp_path / "db.h5", [rng.normal(size=(3, 2)) for _ in range(3)])
    learned = {**CFG, "feature_layer": "conv5_block1_out", "weights": "aa", "max_side": 512, "pooling": "avg"}
    params = {"mean": np.zeros(2), "projection": np.eye(2), "eigenvalues": np.ones(2)}
    db_cfg = {**learned, "rule": "authors", "backprop_dtype": "bfloat16", "tau": 0.2}
    good = tmp_path / "good.npz"
    save_whitening(good, params, {"config": learned})
    check_whitening(good, load_whitening(good)[1], db_cfg)       # changes which regions, not their meaning
    for key, value, shown in [("feature_layer", "conv4_block6_out", '"conv4_block6_out"'),
                              ("weights", "bb", '"bb"'), ("max_side", 1024, "1024"), ("pooling", "max", '"max"')]:
        with pytest.raises(InputError, match=rf"bad\.npz: learned on other features .*{key}: whitening=.* "
                                             rf"store={shown}"):
            save_whitening(tmp_path / "bad.npz", params, {"config": learned})
            check_whitening(tmp_path / "bad.npz", load_whitening(tmp_path / "bad.npz")[1], {**db_cfg, key: value})
    with pytest.raises(InputError, match='descriptor: whitening="region" store="rmac"'):
        check_whitening(good, {"config": learned}, {**db_cfg, "method": "rmac"})
    # A global method's whitening does not whiten regions, nor another global method's.
    with pytest.raises(InputError, match='descriptor: whitening="gem" store="mac"'):
        check_whitening(good, {"config": {**learned, "method": "gem"}}, {**learned, "method": "mac"})
    # SearchIndex.open applies it: the store's own configuration (CFG) lacks the learned keys.
    save_whitening(whitening_path(tmp_path / "db.h5", "other", None), params, {"config": learned})
    with pytest.raises(InputError, match="feature_layer: whitening=\"conv5_block1_out\" store=<missing>"):
        SearchIndex.open(tmp_path / "db.h5")
    assert len(db) == 3


def test_a_whitening_without_its_record_is_used_with_a_warning(tmp_path):
    rng = np.random.default_rng(4)
    make_store(tmp_path / "db.h5", [rng.normal(size=(3, 2)) for _ in range(3)])
    path = whitening_path(tmp_path / "db.h5", "old", None)
    save_whitening(path, {"mean": np.zeros(2), "projection": 2 * np.eye(2), "eigenvalues": np.ones(2)}, {})
    with pytest.warns(InputWarning, match=r"db\.h5\.whitening-old-all\.npz: records no configuration"):
        index, choice = SearchIndex.open(tmp_path / "db.h5")
    assert choice.path == path and index.whitening["projection"][0, 0] == 2
