"""Tests for dasr.search.ann (faiss indexes for the scalability experiment)."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from dasr.search.ann import (
    build_index,
    index_bytes_per_vector,
    plan_index,
    recall_at_k,
    search_index,
)

import faiss

from dasr.search import ann

D = 32


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    # Test machines are shared: OpenMP threads spin-wait on busy CPUs, which
    # makes faiss training 10-20x slower than single-threaded. Results do not
    # depend on the thread count.
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(previous)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _clustered(n: int, n_queries: int, d: int = D, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    # 100 random cluster centres, each with its own 4-d subspace of variation
    # plus a little isotropic noise: like region features of 100 objects.
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(100, d))
    basis = rng.normal(size=(100, 4, d)) / 2.0
    lab = rng.integers(0, 100, size=n + n_queries)
    z = rng.normal(size=(n + n_queries, 4))
    x = centres[lab] + 0.5 * np.einsum("ni,nid->nd", z, basis[lab])
    x = _unit(x + 0.05 * rng.normal(size=x.shape))
    return x[:n], x[n:]


@pytest.fixture(scope="module")
def small() -> tuple[np.ndarray, np.ndarray]:
    # 3000 vectors: enough for 6-bit PQ codebooks (39 * 64 = 2496 points).
    return _clustered(3000, 100)


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


def test_ivfpq_recall_and_memory():
    # Default parameters (8-bit PQ needs >= 9984 vectors): d=64 -> m=8.
    d = 64
    db, q = _clustered(10000, 100, d=d)
    _, exact_ids = search_index(build_index(db, "exact"), q, k=10)
    plan = plan_index(len(db), d, "ivfpq")
    assert plan.factory == "IVF256,PQ8x8np" and plan.note is None  # 4*sqrt(1e4) > 1e4 // 39
    index = build_index(db, "ivfpq")
    assert index.ntotal == len(db)
    _, ids = search_index(index, q, k=10)
    recall = recall_at_k(ids, exact_ids, 10)
    assert recall > 0.5, recall
    bpv = index_bytes_per_vector(index)
    assert plan.code_bytes == 8 + 8 <= bpv < 4 * d, bpv
    # Visiting every list leaves only the PQ error: recall cannot drop.
    _, ids_all = search_index(index, q, k=10, nprobe=plan.nlist)
    assert recall_at_k(ids_all, exact_ids, 10) >= recall - 0.02


@pytest.mark.parametrize(
    ("kind", "params", "factory"),
    [
        ("pq", {}, "PQ4x6np"),
        ("ivfpq", {}, "IVF76,PQ4x6np"),
        ("opq-ivfpq", {"opq_niter": 3}, "OPQ4,IVF76,PQ4x6np"),
    ],
)
def test_small_codebook_kinds(small, kind, params, factory):
    db, q = small
    _, exact_ids = search_index(build_index(db), q, k=10)
    assert plan_index(len(db), D, kind, nbits=6, **params).factory == factory
    index = build_index(db, kind, nbits=6, **params)
    _, ids = search_index(index, q, k=10)
    assert recall_at_k(ids, exact_ids, 10) > 0.4
    assert index_bytes_per_vector(index) < 4 * D
    assert index_bytes_per_vector(build_index(db)) == pytest.approx(4 * D, rel=0.01)


def test_small_collections_fall_back_to_exact(caplog):
    rng = np.random.default_rng(2)
    db = _unit(rng.normal(size=(1000, D)))
    plan = plan_index(1000, D, "ivfpq")
    assert plan.kind == "exact" and plan.requested_kind == "ivfpq"
    assert "9984" in plan.note and plan.code_bytes == 4 * D
    assert plan_index(1000, D, "ivfpq", nbits=4).kind == "ivfpq"  # 39 * 16 <= 1000
    with caplog.at_level(logging.WARNING, logger="dasr.search.ann"):
        index = build_index(db, "opq-ivfpq")
    assert any("exact search" in r.getMessage() for r in caplog.records)
    _, ids = search_index(index, db[:5], k=1)
    np.testing.assert_array_equal(ids[:, 0], np.arange(5))


def test_plan_rules_and_errors():
    p = plan_index(1_000_000, 2048, "opq-ivfpq")
    assert p.factory == "OPQ64,IVF4000,PQ64x8np" and p.code_bytes == 64 + 8
    assert p.nprobe == 32 and p.train_size == 1_000_000 and p.opq_niter == 50
    p = plan_index(12000, D, "ivfpq", train_size=12000, nlist=16, nprobe=4, m=2)
    assert p.factory == "IVF16,PQ2x8np" and p.nprobe == 4 and p.train_size == 12000
    assert plan_index(12000, D, "pq").train_size == 12000
    assert plan_index(100_000, D, "pq").train_size == 256 * 256
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


def test_threads_follow_cpu_affinity():
    assert ann._available_cpus() == len(os.sched_getaffinity(0))
