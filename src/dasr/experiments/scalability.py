"""Fig. 8: the mAP of one method as distractor images are added; approximate (faiss) vs exact search.

The database of step ``n`` is the benchmark's images followed by the first ``n`` distractor
images.  Regions are post-processed as for instance search (whitening learned on the
benchmark's PCA source); the exact search is THE ranking (:func:`dasr.search.ranking.rank_images`:
an image scores as its best region), and the approximate one reduces the index's candidate
regions to images the same way (:func:`dasr.search.ranking.images_from_regions`).  Both are
scored by the benchmark's own protocol (:func:`dasr.eval.scoring.score_query`).
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import numpy as np

from dasr.eval.datasets import BENCHMARKS, Benchmark, load_benchmark
from dasr.eval.instance import benchmark_store, query_features, subsample_database
from dasr.eval.records import ScalabilityInfo, SearchResult, WhiteningInfo, mean_scores
from dasr.eval.scoring import ap_definition, score_query
from dasr.experiments.benchmarks import BenchSpec, distractor_items
from dasr.experiments.cells import Cell
from dasr.experiments.config import INDEX_DEFAULTS, first_k, pca_dim
from dasr.features.extractor import Extractor
from dasr.features.whitening import postprocess
from dasr.search import ann
from dasr.features.whitening import learn_whitening, whitening_path
from dasr.search.ranking import images_from_regions, rank_images, top_regions
from dasr.store import RegionStore
from dasr.store.cache import ensure_store
from dasr.store.extract import read_image_list

__all__ = ["run_scalability", "distractor_stores", "database_rows", "concat_stores"]

# Images ranked per query (and scored): at least the 100 of the paper's figures.
MIN_RANKED_IMAGES = 100


def concat_stores(stores: list[RegionStore]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features (R, D), per-image region counts and image names of several stores, in order."""
    feats = [s.features for s in stores]
    counts = [np.diff(s.offsets) for s in stores]
    names = [n for s in stores for n in s.images]
    d = feats[0].shape[1] if feats and feats[0].ndim == 2 else 0
    return (np.concatenate(feats) if feats else np.zeros((0, d), np.float32),
            np.concatenate(counts) if counts else np.zeros(0, np.int64), names)


def database_rows(store: RegionStore, bench: Benchmark) -> tuple[np.ndarray, np.ndarray]:
    """Features and region counts of ``bench``'s database images, in its order.

    The store may hold more images (a subsampled benchmark reuses the whole one's store); an
    image it lacks (skipped at extraction) has no regions.
    """
    rows, counts = [], []
    for name in bench.database:
        try:
            i = store.index(name)
        except KeyError:
            counts.append(0)
            continue
        lo, hi = int(store.offsets[i]), int(store.offsets[i + 1])
        rows.append(np.arange(lo, hi))
        counts.append(hi - lo)
    picked = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    return store.features[picked].astype(np.float32), np.asarray(counts, np.int64)


def distractor_stores(cfg: dict, spec: BenchSpec, extractor: Extractor, limit: int, progress: bool) -> list[RegionStore]:
    """Region stores of the distractor images (the first ``limit`` of each folder / list).

    A folder or list is stored under ``<work>/distractors/<name>-<hash of its path>/`` (like a
    benchmark, :func:`dasr.store.cache.ensure_store`); a benchmark name reuses that benchmark's
    ``pca-source`` store.
    """
    work = Path(cfg["work"])
    root = cfg["distractors_root"] or None
    stores = []
    for item in distractor_items(cfg, spec):
        if item in BENCHMARKS:
            stores.append(RegionStore.open(benchmark_store(extractor, load_benchmark(item, root), work,
                                                           "pca-source", progress)))
            continue
        base, rel = read_image_list(item, root)
        collection = f"distractors/{Path(item).name}-{hashlib.sha1(os.fsencode(Path(item).resolve())).hexdigest()[:8]}"
        stores.append(RegionStore.open(ensure_store(extractor, collection, base, rel[:limit], work, "database",
                                                    progress)))
    return stores


def _whitening(cfg: dict, spec: BenchSpec, extractor: Extractor, db_path: Path,
               progress: bool) -> tuple[dict | None, WhiteningInfo]:
    if cfg["pca"] != "other":
        return None, WhiteningInfo(mode="none", source=None, dim=None, learning_vectors=None, path=None)
    source = load_benchmark(spec.pca_benchmark, spec.pca_root)
    src_store = RegionStore.open(benchmark_store(extractor, source, Path(cfg["work"]), "pca-source", progress))
    path = whitening_path(db_path, spec.pca_benchmark, pca_dim(cfg))
    whitening = learn_whitening(src_store, path, dim=pca_dim(cfg))
    return whitening, WhiteningInfo(mode="other", source=spec.pca_benchmark, dim=int(whitening["projection"].shape[1]),
                                    learning_vectors=int(len(src_store.features)), path=os.fspath(path))


def run_scalability(cfg: dict, spec: BenchSpec, cell: Cell, extractor: Extractor, out: Path,
                    quiet: bool) -> list[tuple[str, SearchResult]]:
    """Every distractor step of one cell, searched exactly (``index.exact``) and by the faiss index.

    Returns:
      ``(group, result)`` per step and search, group ``"<n> distractors, <search>"``.
    """
    progress = not quiet
    idx_cfg = {**INDEX_DEFAULTS, **cfg["index"]}
    k = first_k(cfg)
    ranked = max(k, MIN_RANKED_IMAGES)
    bench = subsample_database(load_benchmark(spec.name, spec.root), cfg["subsample"])
    db_path = benchmark_store(extractor, bench, Path(cfg["work"]), "database", progress)
    db = RegionStore.open(db_path)
    whitening, info = _whitening(cfg, spec, extractor, db_path, progress)
    notes = []
    if whitening is not None and spec.pca_benchmark in distractor_items(cfg, spec):
        notes.append(f"the whitening is learned on {spec.pca_benchmark}, which also serves as distractors")
    q = np.ascontiguousarray(postprocess(query_features(extractor, bench, Path(db_path).parent / "queries.npz",
                                                        progress), whitening), np.float32)
    cap = cfg["baseline_max_distractors"]
    wanted = sorted(set(cfg["steps"]))
    if cap and cell.method != "dasr-star":
        wanted = [s for s in wanted if s <= cap] or [0]
    dstores = distractor_stores(cfg, spec, extractor, max(wanted), progress) if max(wanted) > 0 else []
    d_feats, d_counts, _ = concat_stores(dstores) if dstores else (np.zeros((0, q.shape[1]), np.float32),
                                                                    np.zeros(0, np.int64), [])
    steps = sorted({min(s, len(d_counts)) for s in wanted})
    db_raw, db_counts = database_rows(db, bench)
    db_feats = postprocess(db_raw, whitening).astype(np.float32)
    d_feats = postprocess(d_feats.astype(np.float32), whitening).astype(np.float32) if len(d_feats) else \
        np.zeros((0, db_feats.shape[1]), np.float32)
    d_offsets = np.r_[0, np.cumsum(d_counts)].astype(np.int64)
    found = []
    for n in steps:
        r_d = int(d_offsets[n])
        feats = np.concatenate([db_feats, d_feats[:r_d]])
        counts = np.concatenate([db_counts, d_counts[:n]])
        offsets = np.r_[0, np.cumsum(counts)].astype(np.int64)
        n_images = len(counts)
        recall_k = max(1, min(int(idx_cfg["recall_k"]), len(feats)))
        k_regions = max(recall_k, min(int(idx_cfg["k_regions"]), len(feats)))
        t0 = time.time()
        exact_orders = [r.order for r in rank_images(q, feats, offsets, top=ranked)]
        t_exact = (time.time() - t0) / max(1, len(q))
        exact_ids, _ = top_regions(q, feats, recall_k)
        kind = idx_cfg["kind"]
        params = {p: int(idx_cfg[p]) for p in ("m", "nlist", "nprobe") if int(idx_cfg.get(p) or 0) > 0}
        params["nbits"] = int(idx_cfg["nbits"])
        plan = ann.plan_index(len(feats), feats.shape[1], kind, **params)
        t0 = time.time()
        index = ann.build_index(feats, kind, **params)
        t_build = time.time() - t0
        t0 = time.time()
        _, ids = ann.search_index(index, q, k_regions)
        t_ann = (time.time() - t0) / max(1, len(q))
        approx_orders = images_from_regions(ids, offsets, ranked)
        recall = ann.recall_at_k(ids, exact_ids, recall_k)
        bpr = ann.index_bytes_per_vector(index, len(feats))
        searches = [("exact", exact_orders, t_exact, 1.0)] if idx_cfg["exact"] else []
        searches.append((f"ann:{plan.kind}", approx_orders, t_ann, recall))
        for name, orders, latency, rec in searches:
            per_query = [score_query(bench, qi, order, None, (k,)) for qi, order in enumerate(orders)]
            exact = name == "exact"
            index_info = {"requested": kind, "kind": plan.kind, "factory": plan.factory, "code_bytes": plan.code_bytes,
                          "note": plan.note, "bytes_per_region": float(4 * feats.shape[1]) if exact else float(bpr)}
            result = SearchResult(
                task="scalability", benchmark=spec.name, method=cell.method, config=extractor.config(),
                subsample=cfg["subsample"], database_images=n_images, queries=len(bench.queries),
                pca=info, ap_definition=ap_definition(bench), mean=mean_scores(per_query), per_query=per_query,
                localization_recall=None, regions_per_image=float(len(feats) / max(1, n_images)),
                images_in_store=int(len(db)), seconds={"search_per_query": latency, **({} if exact else {"build": t_build})},
                store=os.fspath(db_path), notes=list(notes),
                scalability=ScalabilityInfo(distractors=n, distractor_regions=r_d, regions=int(len(feats)), search=name,
                                            recall_vs_exact_k=recall_k, recall_vs_exact=float(rec), index=index_info,
                                            build_seconds=None if exact else t_build))
            found.append((f"{n} distractors, {name}", result))
        if not quiet:
            print(f"  {n} distractors: {n_images} images, {len(feats)} regions, recall@{recall_k} {recall:.3f}, "
                  f"{bpr:.1f} bytes/region")
        del index, feats
    return found
