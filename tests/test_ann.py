"""Tests for dasr.ann (faiss indexes for the scalability experiment)."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from dasr.ann import (
    build_index,
    index_bytes_per_vector,
    load_index,
    plan_index,
    recall_at_k,
    save_index,
    search_index,
)

D = 32


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _clustered(n: int, n_queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    # 50 well-separated directions with noise: like region features of objects.
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, D))
    lab = rng.integers(0, 50, size=n + n_queries)
    x = _unit(centres[lab] + 0.35 * rng.normal(size=(n + n_queries, D)))
    return x[:n], x[n:]


@pytest.fixture(scope="module")
def clustered() -> tuple[np.ndarray, np.ndarray]:
    return _clustered(20000, 200)


def test_exact_index_matches_numpy_topk():
    rng = np.random.default_rng(1)
    db = _unit(rng.normal(size=(500, D)))
    q = _unit(rng.normal(size=(20, D)))
    index = build_index(db, "exact")
    scores, ids = search_index(index, q, k=10)
    sim = q.astype(np.float64) @ db.T.astype(np.float64)
    want_ids = np.argsort(-sim, axis=1)[:, :10]
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, np.take_along_axis(sim, want_ids, axis=1), atol=1e-5)
    assert ids.dtype == np.int64 and scores.dtype == np.float32
    # A single (d,) query works too.
    s1, i1 = search_index(index, q[0], k=3)
    np.testing.assert_array_equal(i1[0], want_ids[0, :3])


def test_exact_pads_when_k_exceeds_database():
    db = _unit(np.eye(4, D) + 0.1)
    scores, ids = search_index(build_index(db), db[:1], k=6)
    assert ids.shape == (1, 6)
    np.testing.assert_array_equal(ids[0, 4:], [-1, -1])
    assert np.all(np.isneginf(scores[0, 4:])) and np.all(np.isfinite(scores[0, :4]))


def test_ivfpq_recall_and_memory(clustered):
    db, q = clustered
    exact = build_index(db, "exact")
    _, exact_ids = search_index(exact, q, k=10)
    plan = plan_index(len(db), D, "ivfpq")
    assert plan.factory == "IVF512,PQ16x8" and plan.note is None  # 4*sqrt(2e4)=566 > 20000//39
    index = build_index(db, "ivfpq")
    assert index.ntotal == len(db)
    _, ids = search_index(index, q, k=10)
    recall = recall_at_k(ids, exact_ids, 10)
    assert recall > 0.5, recall
    bpv = index_bytes_per_vector(index)
    assert bpv < 4 * D, bpv
    assert bpv >= plan.code_bytes == 16 + 8
    assert index_bytes_per_vector(exact) == pytest.approx(4 * D, rel=0.01)
    # More probes cannot hurt much and usually help.
    _, ids_all = search_index(index, q, k=10, nprobe=plan.nlist)
    assert recall_at_k(ids_all, exact_ids, 10) >= recall - 0.02


def test_opq_ivfpq_and_pq(clustered):
    db, q = clustered
    db, q = db[:12000], q[:50]
    _, exact_ids = search_index(build_index(db), q, k=10)
    for kind in ("pq", "opq-ivfpq"):
        index = build_index(db, kind, m=8, nlist=64)  if kind != "pq" else build_index(db, kind, m=8)
        _, ids = search_index(index, q, k=10)
        assert recall_at_k(ids, exact_ids, 10) > 0.4, kind
        assert index_bytes_per_vector(index) < 4 * D


def test_small_collections_fall_back_to_exact(caplog):
    rng = np.random.default_rng(2)
    db = _unit(rng.normal(size=(1000, D)))
    plan = plan_index(1000, D, "ivfpq")
    assert plan.kind == "exact" and plan.requested_kind == "ivfpq"
    assert "9984" in plan.note
    with caplog.at_level(logging.WARNING, logger="dasr.ann"):
        index = build_index(db, "opq-ivfpq")
    assert any("exact search" in r.getMessage() for r in caplog.records)
    _, ids = search_index(index, db[:5], k=1)
    np.testing.assert_array_equal(ids[:, 0], np.arange(5))


def test_plan_rules_and_errors():
    p = plan_index(1_000_000, 2048, "opq-ivfpq")
    assert p.factory == "OPQ64,IVF4000,PQ64x8" and p.code_bytes == 64 + 8
    assert p.nprobe == 32 and p.train_size == 256 * 4000
    p = plan_index(12000, D, "ivfpq", train_size=12000, nlist=16, nprobe=4, m=4)
    assert p.factory == "IVF16,PQ4x8" and p.nprobe == 4
    assert plan_index(10, D, "exact").code_bytes == 4 * D
    with pytest.raises(ValueError):
        plan_index(20000, D, "hnsw")
    with pytest.raises(ValueError):
        plan_index(20000, D, "pq", m=5)  # does not divide 32
    with pytest.raises(ValueError):
        plan_index(20000, D, "ivfpq", nlist=1000)  # > 20000 // 39
    with pytest.raises(ValueError):
        plan_index(20000, D, "ivfpq", train_size=5000)  # < 39 * 256
    with pytest.raises(ValueError):
        build_index(np.zeros((10, D), np.float32), "exact", nlists=3)
    with pytest.raises(ValueError):
        search_index(build_index(np.eye(2, D, dtype=np.float32)), np.zeros((1, D)), k=1, nprobe=2)


def test_recall_at_k_hand_values():
    exact = np.array([[1, 2, 3], [4, 5, 6]])
    approx = np.array([[3, 9, 1], [-1, -1, 4]])
    assert recall_at_k(approx, exact, 3) == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert recall_at_k(approx, exact, 1) == pytest.approx(0.0)
    assert recall_at_k(exact, exact, 2) == 1.0
    with pytest.raises(ValueError):
        recall_at_k(approx, exact, 4)


def test_save_load_round_trip(tmp_path, clustered):
    db, q = clustered
    index = build_index(db, "ivfpq", nprobe=7)
    path = tmp_path / "deep" / "regions.faiss"
    save_index(index, path)
    save_index(index, path)  # atomic overwrite
    assert os.listdir(path.parent) == ["regions.faiss"]
    loaded = load_index(path)
    assert loaded.ntotal == index.ntotal
    a = search_index(index, q, k=5)
    b = search_index(loaded, q, k=5)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0], b[0])
    with pytest.raises(FileNotFoundError):
        load_index(tmp_path / "missing.faiss")
