"""The region index (dasr.search.region_index): candidates re-ranked exactly through THE ranking,
refusal against another store or whitening, the persisted file, and `dasr index build`."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from dasr.search import SearchIndex, rank_images
from dasr.features.whitening import learn_whitening
from dasr.search.region_index import (RegionIndexError, build_region_index, m_for_bytes, open_region_index,
                                      rank_candidates, region_index_path, rerank, candidate_rows)
from dasr.search.ranking import top_regions
from dasr.store import RegionStore, StoreWriter
from dasr.errors import InputError

CFG = {"method": "dasr-star", "backbone": "test"}
D = 16
# 4-bit codebooks train on 39 * 16 = 624 vectors: a real IVF-PQ on a store of ~1000 regions.
SMALL = {"nbits": 4, "nlist": 8, "nprobe": 8}


@pytest.fixture(autouse=True)
def _one_thread():
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def make_store(path, n_images=60, seed=0, empty=(3,)):
    """Clustered random regions (1-30 per image; the images in ``empty`` have none)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, D))
    with StoreWriter(path, CFG, "/root") as w:
        for i in range(n_images):
            n = 0 if i in empty else int(rng.integers(1, 31))
            feats = centres[rng.integers(0, 12, n)] + 0.4 * rng.normal(size=(n, D))
            w.add(f"img{i:03d}.jpg", i, (100, 80), {
                "boxes": np.c_[np.full(n, i), np.arange(n), np.full(n, i + 10), np.arange(n) + 5].astype(np.float32),
                "scores": np.ones(n, np.float32), "features": feats.astype(np.float32)})
    return path


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    folder = tmp_path_factory.mktemp("region-index")
    return {"db": make_store(folder / "db.h5"), "other": make_store(folder / "other.h5", 40, seed=1),
            "third": make_store(folder / "third.h5", 40, seed=2)}


def queries_for(index: SearchIndex, n=5, seed=3):
    return np.stack([index.describe(v) for v in np.random.default_rng(seed).normal(size=(n, D))])


def test_all_candidates_give_exactly_the_exact_search(stores, tmp_path):
    exact = SearchIndex(RegionStore.open(stores["db"]))
    path, meta = build_region_index(stores["db"], None, "ivfpq", tmp_path / "i.npz", **SMALL)
    assert meta["factory"].startswith("IVF8,PQ") and meta["n"] == len(exact.features)
    ri = open_region_index(path, stores["db"], None, candidates=len(exact.features))
    q = queries_for(exact)
    for got, want in zip(ri.rank_images(q), exact.search_many(q)):
        assert got.order.tolist() == want.order.tolist()
        np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5, atol=1e-6)
        assert got.regions.tolist() == want.regions.tolist()
        np.testing.assert_array_equal(got.boxes, want.boxes)
    ids, scores = rerank(q, ri.search_candidates(q), ri.rows.rows, 50)
    want_ids, want_scores = top_regions(q, exact.features, 50)
    assert (ids == want_ids).mean() > 0.99  # float ties aside, the same regions in the same order
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-6)


def test_few_candidates_are_rescored_exactly_and_reduced_per_image(stores, tmp_path):
    exact = SearchIndex(RegionStore.open(stores["db"]))
    path, _ = build_region_index(stores["db"], None, "ivfpq", tmp_path / "i.npz", **SMALL)
    ri = open_region_index(path, stores["db"], None, candidates=40)
    q = queries_for(exact)
    offsets = exact.store.offsets
    for qi, r in enumerate(ri.rank_images(q, top=10)):
        found = np.isfinite(r.scores)
        assert found.sum() >= 2 and np.all(np.diff(r.scores[found]) <= 0)
        for img, s, reg in zip(r.order[found], r.scores[found], r.regions[found]):
            assert offsets[img] <= reg < offsets[img + 1]  # the region belongs to the image
            assert s == pytest.approx(float(exact.features[reg] @ q[qi]), abs=1e-5)  # exact, not PQ, score
        assert len(set(r.order.tolist())) == len(r.order)  # one entry per image
    # the recall of a compressed index with 40 candidates is high on clustered data
    cand = ri.search_candidates(q)
    ids, _ = rerank(q, cand, ri.rows.rows, 10)
    want, _ = top_regions(q, exact.features, 10)
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids.tolist(), want.tolist())]) >= 0.8


def test_rank_candidates_is_the_one_ranking_on_the_candidates():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(20, 4)).astype(np.float32)
    offsets = np.array([0, 5, 5, 12, 20])
    q = rng.normal(size=(1, 4)).astype(np.float32)
    cand = np.array([[13, 2, 2, 7, -1, 0]])  # duplicates and padding are allowed
    r = rank_candidates(q, cand, lambda rows: feats[rows], offsets)[0]
    rows = np.array([0, 2, 7, 13])
    sub = rank_images(q, feats[rows], np.array([0, 2, 2, 3, 4]))[0]
    assert r.order.tolist() == sub.order.tolist() and r.order.tolist()[-1] == 1
    assert r.regions.tolist() == [rows[i] if i >= 0 else -1 for i in sub.regions]
    with pytest.raises(ValueError, match="outside"):
        rank_candidates(q, np.array([[20]]), lambda rows: feats[rows], offsets)


def test_refused_against_another_store_or_whitening(stores, tmp_path):
    w1 = learn_whitening(RegionStore.open(stores["other"]), tmp_path / "w1.npz")
    w2 = learn_whitening(RegionStore.open(stores["third"]), tmp_path / "w2.npz")
    path, meta = build_region_index(stores["db"], w1, "ivfpq", tmp_path / "i.npz", whitening_path="w1.npz", **SMALL)
    open_region_index(path, stores["db"], w1)  # the same store and whitening: accepted
    with pytest.raises(RegionIndexError, match="another store") as e:
        open_region_index(path, stores["other"], w1)
    assert "\n" not in str(e.value) and isinstance(e.value, InputError)
    with pytest.raises(RegionIndexError, match="another whitening.*w1.npz"):
        open_region_index(path, stores["db"], w2)
    with pytest.raises(RegionIndexError, match="another whitening"):
        open_region_index(path, stores["db"], None)
    # the whitened index searches the whitened features
    exact = SearchIndex(RegionStore.open(stores["db"]), w1)
    ri = open_region_index(path, stores["db"], w1, candidates=len(exact.features))
    q = queries_for(exact, 2)
    assert [r.order.tolist() for r in ri.rank_images(q)] == [r.order.tolist() for r in exact.search_many(q)]


def test_persisted_index_round_trips(stores, tmp_path):
    path, meta = build_region_index(stores["db"], None, "opq-ivfpq", tmp_path / "i.npz", opq_niter=3, **SMALL)
    a = open_region_index(path, stores["db"], None, candidates=30)
    b = open_region_index(path, stores["db"], None, candidates=30, nprobe=2)
    assert a.meta == meta and a.meta["kind"] == "opq-ivfpq" and a.index.ntotal == meta["n"]
    assert faiss.extract_index_ivf(b.index).nprobe == 2 and faiss.extract_index_ivf(a.index).nprobe == 8
    q = queries_for(SearchIndex(RegionStore.open(stores["db"])))
    again = open_region_index(path, stores["db"], None, candidates=30)
    np.testing.assert_array_equal(a.search_candidates(q), again.search_candidates(q))
    # The ids are the store's rows: a candidate's PQ score is the query's inner product with the
    # candidate's reconstruction (to float32 round-off of a D-term sum of unit vectors), and that
    # reconstruction is nearer its own row of the store than any other row (an id shifted by one
    # row scores 0.5 to 1.0 off here, the quantisation itself at most 0.04).
    faiss.extract_index_ivf(a.index).make_direct_map()
    d, ids = a.index.search(q, 5)
    rows = a.rows.rows(np.arange(a.index.ntotal))
    for scores, found, query in zip(d, ids, q):
        rebuilt = np.stack([a.index.reconstruct(int(i)) for i in found])
        np.testing.assert_allclose(scores, rebuilt @ query, atol=1e-5)
        assert (((rebuilt[:, None, :] - rows[None]) ** 2).sum(-1).argmin(1) == found).all()
    (tmp_path / "bad.npz").write_bytes(b"not an index")
    with pytest.raises(RegionIndexError, match="not a region index"):
        open_region_index(tmp_path / "bad.npz", stores["db"], None)
    with pytest.raises(RegionIndexError, match="no such region index"):
        open_region_index(tmp_path / "missing.npz", stores["db"], None)


def test_opq_refuses_fewer_training_vectors_than_dimensions(tmp_path):
    """faiss' OPQ training segfaults on n < d (1219 regions of 2048 dims): refused in one line instead."""
    rng = np.random.default_rng(0)
    with StoreWriter(tmp_path / "wide.h5", CFG, "/root") as w:
        for i in range(10):
            w.add(f"i{i}.jpg", i, (10, 10), {"boxes": np.zeros((70, 4), np.float32), "scores": np.ones(70, np.float32),
                                             "features": rng.normal(size=(70, 1024)).astype(np.float32)})
    with pytest.raises(InputError, match="at least d=1024 training vectors"):
        build_region_index(tmp_path / "wide.h5", None, "opq-ivfpq", nbits=4, nlist=8)


def test_bytes_per_region_budget():
    assert m_for_bytes(512, "ivfpq", 64) == 32  # 32 code bytes + 8 id bytes (48 does not divide 512)
    assert m_for_bytes(384, "ivfpq", 64) == 48
    assert m_for_bytes(512, "pq", 64) == 64  # no ids stored
    assert m_for_bytes(16, "ivfpq", 12, nbits=4) == 8
    with pytest.raises(InputError, match="too small"):
        m_for_bytes(512, "ivfpq", 8)


def test_search_index_uses_an_attached_region_index(stores, tmp_path):
    index = SearchIndex(RegionStore.open(stores["db"]))
    exact = index.search(queries_for(index, 1)[0], top=5)
    path, _ = build_region_index(stores["db"], None, "ivfpq", tmp_path / "i.npz", **SMALL)
    index.region_index = open_region_index(path, stores["db"], None, candidates=1)
    one = index.search(queries_for(index, 1)[0], top=5)
    hits = index.hits(one)
    assert len(hits) == 1 and hits[0].region == one.regions[0]  # one candidate: one image found
    assert exact.order[0] == one.order[0] or exact.scores[0] >= one.scores[0]


def test_cli_index_build_and_its_errors(stores, tmp_path, dasr_cli):
    store = tmp_path / "s.h5"
    store.write_bytes(stores["db"].read_bytes())
    rc, out, err = dasr_cli("index", "build", str(store), "--kind", "ivfpq", "--nbits", "4", "--nlist", "8",
                            "--pca", "none")
    assert rc == 0, err
    assert str(region_index_path(store, "ivfpq")) in out and "whitening: none" in out
    assert region_index_path(store, "ivfpq").is_file()
    for args, message in [
        (("index", "build", str(tmp_path / "missing.h5")), "no such region store"),
        (("index", "build", str(store), "--bytes-per-region", "8", "--pca", "none"), "too small"),
        (("index", "build", str(store), "--pca", "none"), "need >= 9984 training vectors"),  # 8-bit codebooks
        (("index", "build", str(store), "--nbits", "4", "--nlist", "500", "--pca", "none"), "nlist must be"),
    ]:
        rc, out, err = dasr_cli(*args)
        assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, (args, err)
    rc, _, err = dasr_cli("index", "build", str(store), "--kind", "hnsw")
    assert rc == 2 and "invalid choice" in err
    # search through an index that was never built, or one of another store: refused in one line
    rc, _, err = dasr_cli("search", "--index", str(store), "--query", "q.jpg", "--index-kind", "opq-ivfpq",
                          "--pca", "none")
    assert rc == 2 and "no such region index" in err and len(err.strip().splitlines()) == 1
    other = tmp_path / "o.h5"
    other.write_bytes(stores["other"].read_bytes())
    region_index_path(other, "ivfpq").write_bytes(region_index_path(store, "ivfpq").read_bytes())
    rc, _, err = dasr_cli("search", "--index", str(other), "--query", "q.jpg", "--index-kind", "ivfpq",
                          "--pca", "none")
    assert rc == 2 and "built for another store" in err and len(err.strip().splitlines()) == 1


def test_evaluate_through_the_index(stores, tmp_path, monkeypatch):
    """`evaluate(index_kind=...)`: refused without a built index; with every region as a candidate, the
    exact evaluation's numbers; with few candidates, other numbers (the index was used)."""
    from types import SimpleNamespace

    import dasr.eval.instance as instance
    from dasr.eval.datasets import Benchmark, Query

    store = tmp_path / "db.h5"
    store.write_bytes(stores["db"].read_bytes())
    names = RegionStore.open(store).images
    rng = np.random.default_rng(7)
    queries = tuple(Query(f"q{i}", f"q{i}.jpg", None, positives=tuple(int(p) for p in rng.choice(60, 5, replace=False)))
                    for i in range(4))
    bench = Benchmark("toy", tmp_path, tuple(names), queries, "instance")
    monkeypatch.setattr(instance, "load_benchmark", lambda name, root=None, protocol=None: bench)
    monkeypatch.setattr(instance, "benchmark_store", lambda ex, b, work, role, progress=True: store)
    raw = rng.normal(size=(4, D))
    monkeypatch.setattr(instance, "query_features", lambda ex, b, cache, progress=True: raw)
    extractor = SimpleNamespace(method="dasr-star", config=lambda: dict(CFG))
    run = lambda **kw: instance.evaluate(extractor, "toy", work=tmp_path, pca="none", ks=(5,), progress=False, **kw)
    with pytest.raises(RegionIndexError, match="no such region index"):
        run(index_kind="ivfpq")
    build_region_index(store, None, "ivfpq", **SMALL)
    exact = run()
    full = run(index_kind="ivfpq", candidates=10_000)
    assert [q.ap for q in full.per_query] == [q.ap for q in exact.per_query]
    few = run(index_kind="ivfpq", candidates=3)
    # 3 candidates: at most 3 images are scored, the others rank last: the search went through the index
    assert 0 <= few.mean["ap"] <= 1 and [q.ap for q in few.per_query] != [q.ap for q in exact.per_query]


def test_one_query_spreads_its_lists_over_the_threads_a_batch_its_queries():
    """candidate_rows: one query -> IVF parallel_mode 1 (lists over threads), a batch -> 0; same rows as faiss's own."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4000, 16)).astype(np.float32)
    index = faiss.index_factory(16, "IVF16,Flat", faiss.METRIC_INNER_PRODUCT)
    index.train(x)
    index.add(x)
    ivf = faiss.extract_index_ivf(index)
    ivf.nprobe = 8
    queries = x[:5] + 0.01
    reference = index.search(queries, 50)[1]
    assert ivf.parallel_mode == 0
    one = candidate_rows(index, queries[:1], 50)
    assert ivf.parallel_mode == 1
    np.testing.assert_array_equal(one, reference[:1])
    np.testing.assert_array_equal(candidate_rows(index, queries, 50), reference)
    assert ivf.parallel_mode == 0
