"""Benchmark runs: extract (or reuse) the stores, learn the whitening elsewhere, score queries.

The PCA-whitening is always learned on ANOTHER collection than the one searched (as the paper
and the authors' code do): by default instance-track <-> paris-landmarks, and
paris-landmarks for every other benchmark (:func:`dasr.eval.pca_source.pca_source`).  Stores live
under ``<work>/<benchmark>/<method>-<config hash>/`` and are reused when the configuration matches.
Queries are scored by :func:`dasr.eval.scoring.score_query` (the benchmark's own AP) and the run
is returned as a :class:`dasr.eval.records.SearchResult`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from dasr.errors import InputError
from dasr.eval import metrics
from dasr.io.atomic import atomic_path, atomic_write_bytes
from dasr.eval.datasets import Benchmark, load_benchmark
from dasr.eval.datasets.common import QUERY_KINDS
from dasr.eval.pca_source import pca_source
from dasr.eval.records import SearchResult, WhiteningInfo, mean_scores
from dasr.eval.scoring import DEFAULT_KS, ap_definition, protocol_notes, score_query
from dasr.io.images import load_image
from dasr.search import Ranking, SearchIndex
from dasr.features.whitening import check_whitening, learn_whitening, whitening_path
from dasr.search.region_index import DEFAULT_CANDIDATES, open_region_index, region_index_path
from dasr.store import RegionStore
from dasr.store.cache import ensure_store

if TYPE_CHECKING:  # the network's frameworks only where a caller builds one
    from dasr.features.extractor import Extractor

__all__ = ["IOU_THRESHOLDS", "WHOLE_IMAGE_NOTE", "add_authors_miou", "align_rankings", "benchmark_images",
           "benchmark_store", "evaluate", "format_table", "learning_store", "query_features",
           "subsample_database", "write_results"]

IOU_THRESHOLDS = metrics.DEFAULT_IOU_THRESHOLDS
WHOLE_IMAGE_NOTE = "whole-image search: each query is its whole image (its box is not used)"


def benchmark_images(bench: Benchmark, with_queries: bool = False) -> list[str]:
    """The database images, plus (for a PCA source) the query images not in it."""
    images = list(bench.database)
    if with_queries:
        seen = set(images)
        images += [q.image for q in bench.queries if q.image not in seen and not seen.add(q.image)]
    return images


def benchmark_store(extractor: Extractor, bench: Benchmark, work: Path, role: str, progress: bool = True) -> Path:
    """The finished store of ``bench``'s images for ``role`` (:func:`dasr.store.cache.ensure_store`).

    Args:
      role: ``database`` (the searched images) or ``pca-source...`` (database + queries, when the
        benchmark serves as another one's whitening source); any other role stores the database.

    Returns:
      ``<work>/<bench>/<method>-<hash>/<role>.h5``, or a finished store holding the same images.
    """
    images = benchmark_images(bench, with_queries=role.startswith("pca-source"))
    return ensure_store(extractor, bench.name, bench.root, images, work, role, progress)


def learning_store(extractor: Extractor, name: str, root: str | os.PathLike | None, work: Path,
                   every: int = 1, progress: bool = True) -> tuple[RegionStore, str]:
    """The store a whitening (or a VLAD codebook) is learned from: another collection's images.

    The learning images are the collection's database images and its query images; with
    ``every`` > 1 only every ``every``-th database image (the queries stay), for runs where the
    whole collection costs too much to extract. The store is kept under the role ``pca-source``
    (``pca-source-1in<every>`` for a sample) and is restricted to exactly those images, so that a
    reused store holding more never changes what is learned.

    Args:
      extractor: the configured extractor (the same as the searched collection's).
      name: the learning collection (a registry name).
      root: its folder (None: the loader's default).
      work: where stores are kept and reused.
      every: keep every n-th database image (1: all of them).
      progress: show progress bars.

    Returns:
      ``(store, label)``: the restricted store and the collection's name as reports print it
      (``"<name>, 1 in <every> database images"`` for a sample).

    Raises:
      InputError: ``every`` is not a positive integer.
    """
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise InputError(f"the learning collection's subsample must be a positive integer, got {every!r}")
    bench = load_benchmark(name, root)
    role, label = "pca-source" + _sample_tag(every), name
    if every > 1:
        label = f"{name}, 1 in {every} database images"
        bench = dataclasses.replace(bench, database=bench.database[::every], queries=tuple(
            dataclasses.replace(q, positives=(), junk=(), positive_boxes=None) for q in bench.queries))
    images = benchmark_images(bench, with_queries=True)
    return RegionStore.open(benchmark_store(extractor, bench, work, role, progress)).restricted(images), label


def _sample_tag(every: int) -> str:
    """What names a learning sample's files (store role, whitening): ``""`` or ``-1in<every>``."""
    return "" if every == 1 else f"-1in{every}"


def subsample_database(bench: Benchmark, every: int) -> Benchmark:
    """Keeps every ``every``-th database image (for quick runs); queries keep their remaining positives.

    Raises:
      ValueError: a query would be left without any positive.
    """
    if every <= 1:
        return bench
    keep = list(range(0, len(bench.database), every))
    new_index = {old: new for new, old in enumerate(keep)}
    queries = []
    for q in bench.queries:
        pos = tuple(new_index[i] for i in q.positives if i in new_index)
        if not pos:
            raise InputError(f"{bench.name}: subsampling by {every} leaves query {q.name} without positives")
        boxes = {new_index[i]: b for i, b in (q.positive_boxes or {}).items() if i in new_index} or None
        queries.append(dataclasses.replace(q, positives=pos, junk=tuple(new_index[i] for i in q.junk if i in new_index),
                                           positive_boxes=boxes))
    return dataclasses.replace(bench, database=tuple(bench.database[i] for i in keep), queries=tuple(queries))


def align_rankings(rankings: list[Ranking], store: RegionStore, bench: Benchmark) -> list[Ranking]:
    """Store image indices -> benchmark database indices.

    Store images outside the benchmark are dropped; benchmark images missing from the store
    (skipped as unreadable) are ranked last with no box, so they count as misses.
    """
    position = {name: i for i, name in enumerate(bench.database)}
    to_bench = np.array([position.get(name, -1) for name in store.images], np.int64)
    missing = np.setdiff1d(np.arange(len(bench.database)), to_bench[to_bench >= 0])
    out = []
    for r in rankings:
        mapped = to_bench[r.order]
        keep = mapped >= 0
        out.append(Ranking(np.concatenate([mapped[keep], missing]),
                           np.concatenate([r.scores[keep], np.full(len(missing), -np.inf, np.float32)]),
                           np.concatenate([r.regions[keep], np.full(len(missing), -1, np.int64)]),
                           np.concatenate([r.boxes[keep], np.full((len(missing), 4), np.nan, np.float32)])))
    return out


def query_features(extractor: Extractor, bench: Benchmark, cache: Path, progress: bool = True) -> np.ndarray:
    """Raw query features (pooled in the query box), cached in ``cache`` (npz)."""
    if cache.is_file():
        data = np.load(cache, allow_pickle=False)
        if list(data["names"]) == [q.name for q in bench.queries]:
            return data["features"]
    feats = []
    for q in tqdm(bench.queries, desc="queries", disable=not progress, unit="q"):
        image = load_image(bench.root / q.image)
        box = q.box or (0.0, 0.0, float(image.shape[1]), float(image.shape[0]))
        feats.append(extractor.describe_box(image, box))
    feats = np.stack(feats).astype(np.float32)
    with atomic_path(cache, suffix=".npz") as tmp:
        np.savez(tmp, features=feats, names=np.array([q.name for q in bench.queries]))
    return feats


def add_authors_miou(per_query: list, bench: Benchmark, store: RegionStore) -> None:
    """Adds the authors' mIoU keys (:data:`dasr.eval.metrics.MIOU_KEY`, ``MIOU_IMAGES_KEY``) to
    each query's scores: over the query's reference images with a ground-truth box, the best
    enclosing-box IoU of ANY stored region of the image (detection, whatever the ranking; an image
    missing from the store scores 0).  Nothing is added on a benchmark without boxes."""
    if not any(q.positive_boxes for q in bench.queries):
        return
    position = {name: i for i, name in enumerate(store.images)}
    for score, q in zip(per_query, bench.queries):
        truths = q.positive_boxes or {}
        regions = [store.regions_of(position[bench.database[i]])["boxes"] if bench.database[i] in position
                   else np.zeros((0, 4)) for i in truths]
        best = metrics.best_enclosing_ious(regions, [np.asarray(b, np.float64).reshape(-1, 4) for b in truths.values()])
        score.ap[metrics.MIOU_KEY] = float(best.mean()) if best.size else 0.0
        score.ap[metrics.MIOU_IMAGES_KEY] = float(best.size)


def evaluate(extractor: Extractor, benchmark: str, root: str | os.PathLike | None = None, *,
             work: str | os.PathLike = "results/stores", pca: str = "other", pca_benchmark: str | None = None,
             pca_root: str | os.PathLike | None = None, pca_dim: int | None = None, ks=DEFAULT_KS,
             out: str | os.PathLike | None = None, progress: bool = True, subsample: int = 1,
             protocol: str | None = None, index_kind: str = "exact",
             candidates: int = DEFAULT_CANDIDATES, pca_subsample: int = 1, query: str = "box") -> SearchResult:
    """Runs one method on one benchmark and returns (and optionally writes) the results.

    Args:
      extractor: method + configuration.
      benchmark: registry name (see :mod:`dasr.eval.datasets`).
      root: dataset folder (None: the loader's default).
      work: where stores are kept and reused.
      pca: ``other`` (learn on ``pca_benchmark``) or ``none``.
      pca_benchmark: the whitening's collection (None: :func:`~dasr.eval.pca_source.pca_source`'s default).
      pca_dim: whitening output dimension (None: all usable components).
      ks: the k of AP@k.
      out: folder for ``results.json`` and ``rankings.tsv`` (None: nothing written).
      subsample: keep every n-th database image (quick runs; 1 = the whole benchmark).
      protocol: the revisited protocol (``easy``, ``medium``, ``hard``) of ``roxford5k`` /
        ``rparis6k`` (None: the loader's default, ``medium``).
      index_kind: ``exact`` (the reference) or the kind of the database store's region index
        (built beforehand by ``dasr index build``; :mod:`dasr.search.region_index`).
      candidates: regions re-ranked exactly per query through that index.
      pca_subsample: learn the whitening on every n-th database image of its collection (and
        its queries; :func:`learning_store`); 1 = all of them.
      query: ``box`` (instance search: each query is pooled in its box) or ``image`` (whole-image
        search: each query is its whole image, pooled over the whole map; a note says so).

    Returns:
      The run's :class:`~dasr.eval.records.SearchResult` (``task="instance"``).

    Raises:
      ValueError: an unknown ``pca``, a whitening source that is the searched benchmark, or a
        ``protocol`` for a benchmark without one.
    """
    if pca not in ("other", "none"):
        raise InputError(f"pca must be 'other' or 'none', got {pca!r}")
    if query not in QUERY_KINDS:
        raise InputError(f"query must be one of {', '.join(QUERY_KINDS)}, got {query!r}")
    src_name = pca_source(benchmark, pca_benchmark) if pca == "other" else None
    work = Path(work)
    bench = subsample_database(load_benchmark(benchmark, root, protocol=protocol), subsample)
    if query == "image":
        bench = dataclasses.replace(bench, queries=tuple(dataclasses.replace(q, box=None) for q in bench.queries))
    t0 = time.time()
    db_store = benchmark_store(extractor, bench, work, "database", progress)
    t_extract = time.time() - t0
    whitening = None
    whitening_info = WhiteningInfo(mode="none", source=None, dim=None, learning_vectors=None, path=None)
    if src_name is not None:
        src_store, src_label = learning_store(extractor, src_name, pca_root, work, pca_subsample, progress)
        wpath = whitening_path(db_store, src_name + _sample_tag(pca_subsample), pca_dim)
        whitening = learn_whitening(src_store, wpath, dim=pca_dim)
        whitening_info = WhiteningInfo(mode="other", source=src_label, dim=int(whitening["projection"].shape[1]),
                                       learning_vectors=int(len(src_store.features)), path=os.fspath(wpath))
    db = RegionStore.open(db_store)
    if whitening is not None:
        check_whitening(wpath, {"config": src_store.config}, db.config)
    index = SearchIndex(db, whitening)
    if index_kind != "exact":
        index.region_index = open_region_index(region_index_path(db_store, index_kind), db_store, whitening,
                                               candidates)
    folder = Path(db_store).parent
    raw_q = query_features(extractor, bench, folder / ("queries.npz" if query == "box" else "queries-image.npz"),
                           progress)
    qvecs = np.stack([index.describe(f) for f in raw_q])
    t1 = time.time()
    rankings = align_rankings(index.search_many(qvecs), index.store, bench)
    t_search = (time.time() - t1) / max(1, len(qvecs))
    per_query = [score_query(bench, i, r.order, r.boxes, ks) for i, r in enumerate(rankings)]
    add_authors_miou(per_query, bench, index.store)
    all_ious = [v for p in per_query for v in p.ious]
    loc = metrics.localization_recall(all_ious, IOU_THRESHOLDS) if all_ious else None
    in_bench = set(bench.database)  # the store may hold more (a subsampled run reuses the whole one's)
    counts = np.diff(index.store.offsets)[[name in in_bench for name in index.store.images]]
    result = SearchResult(
        task="instance",
        benchmark=benchmark,
        method=extractor.method,
        config=extractor.config(),
        subsample=subsample,
        database_images=len(bench.database),
        queries=len(per_query),
        pca=whitening_info,
        ap_definition=ap_definition(bench),
        mean=mean_scores(per_query),
        per_query=per_query,
        localization_recall=dict(zip([f"{t:.1f}" for t in IOU_THRESHOLDS], loc.tolist())) if loc is not None else None,
        regions_per_image=float(counts.mean()) if len(counts) else 0.0,
        images_in_store=int(len(index.store)),
        seconds={"extract_database": t_extract, "search_per_query": t_search},
        store=os.fspath(db_store),
        notes=protocol_notes(bench) + ([WHOLE_IMAGE_NOTE] if query == "image" else []),
    )
    if out is not None:
        write_results(result, rankings, bench, Path(out))
    return result


def write_results(result: SearchResult, rankings: list[Ranking], bench: Benchmark, out: Path,
                  top: int = 100) -> None:
    """``results.json`` (``result.to_json()``) and ``rankings.tsv`` (top ``top`` per query: rank, image, score, box)."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "results.json", json.dumps(result.to_json(), indent=1).encode())
    lines = ["query\trank\timage\tscore\tx1\ty1\tx2\ty2\trelevant"]
    for q, r in zip(bench.queries, rankings):
        pos = set(q.positives)
        for rank, (img, s, box) in enumerate(zip(r.order[:top], r.scores[:top], r.boxes[:top]), 1):
            lines.append("\t".join([q.name, str(rank), bench.database[img], f"{s:.5f}",
                                    *(f"{v:.1f}" for v in box), str(int(img in pos))]))
    atomic_write_bytes(out / "rankings.tsv", ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape"))


def format_table(results: list[SearchResult], ks=DEFAULT_KS, variant: str = "truncated") -> str:
    """A Markdown table of mAP@k / mAP / localization recall@0.5 (true IoU) / the authors' mIoU
    (enclosing-box denominator, :func:`dasr.eval.metrics.pooled_authors_miou`), one row per result.

    The ``pca`` column is the whitened dimension (``none`` without whitening); a metric the
    result lacks is ``-``.
    """
    head = ["method", "pca", *[f"mAP@{k}" for k in ks], "mAP", "loc@0.5", metrics.MIOU_ENCLOSING_NAME,
            "regions/img"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        m = r.mean
        method = r.method + (" (authors' rule)" if r.config.get("rule") == "authors" else "")
        method += " (contrastive)" if r.config.get("contrastive") else ""  # beyond the paper: named
        cells = [method, str(r.pca.dim) if r.pca.mode == "other" and r.pca.dim is not None else "none"]
        cells += [f"{m[f'ap@{k}/{variant}']:.3f}" if f"ap@{k}/{variant}" in m else "-" for k in ks]
        cells.append(f"{m['ap']:.3f}" if "ap" in m else "-")
        loc = r.localization_recall
        cells.append(f"{loc['0.5']:.3f}" if loc else "-")
        miou = metrics.pooled_authors_miou([p.ap for p in r.per_query])
        cells.append(f"{miou:.3f}" if miou is not None else "-")
        cells.append(f"{r.regions_per_image:.1f}")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)
