"""Benchmark runs: extract (or reuse) the stores, learn the whitening elsewhere, score queries.

The PCA-whitening is always learned on ANOTHER collection than the one searched (as the paper
and the authors' code do): by default instance-track <-> paris-landmarks, and
paris-landmarks for every other benchmark (:data:`DEFAULT_PCA_SOURCE`).  Stores live under
``<work>/<benchmark>/<method>-<config hash>/`` and are reused when the configuration matches.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dasr import derive, metrics
from dasr.atomic import atomic_path, atomic_write_bytes
from dasr.datasets import Benchmark, load_benchmark
from dasr.extract import extract_collection
from dasr.extractor import Extractor
from dasr.images import load_image
from dasr.search import Ranking, SearchIndex, learn_whitening, whitening_path
from dasr.store import RegionStore, StoreConfigError, diff_configs, read_skipped, store_contents

DEFAULT_KS = (10, 20, 50, 100)
DEFAULT_PCA_SOURCE = {"instance-track": "paris-landmarks", "paris-landmarks": "instance-track"}
IOU_THRESHOLDS = metrics.DEFAULT_IOU_THRESHOLDS


def config_hash(config: dict) -> str:
    """Short stable hash of an extraction configuration (names the store folder)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]


def write_list(path: Path, items: list[str]) -> Path:
    atomic_write_bytes(path, ("\n".join(items) + "\n").encode("utf-8", "surrogateescape"))
    return path


def benchmark_images(bench: Benchmark, with_queries: bool = False) -> list[str]:
    """The database images, plus (for a PCA source) the query images not in it."""
    images = list(bench.database)
    if with_queries:
        seen = set(images)
        images += [q.image for q in bench.queries if q.image not in seen and not seen.add(q.image)]
    return images


def ensure_store(extractor: Extractor, bench: Benchmark, work: Path, role: str, progress: bool = True) -> Path:
    """Extracts ``bench``'s images into ``<work>/<bench>/<method>-<hash>/<role>.h5`` unless done.

    Work already done is reused: a finished store of the same configuration that holds every
    image is returned as it is (whatever its role); one that holds some of them gives their rows;
    a store of the same regions with no NMS, or with another feature layer or pooling, gives the
    store without the backprop (:mod:`dasr.derive`).

    Returns:
      The path of a finished store holding every image (or its recorded skip).

    Args:
      role: ``database`` (the searched images) or ``pca-source`` (database + queries, when the
        benchmark serves as another one's whitening source).
    """
    cfg = extractor.config()
    folder = work / bench.name / f"{extractor.method}-{config_hash(cfg)}"
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{role}.h5"
    images = benchmark_images(bench, with_queries=(role == "pca-source"))
    if out.is_file() and not Path(f"{out}.parts").exists():
        stored_config, stored_images = store_contents(out)
        lines = diff_configs(stored_config, cfg)
        if lines:
            raise StoreConfigError(f"{out}: configuration differs from the stored one ({'; '.join(lines)})")
        if set(images) <= set(stored_images) | set(read_skipped(out)):
            return out
    # Another role's finished store of this configuration may hold every image (a benchmark's
    # pca-source holds its database) or some of them (its database, for the pca-source).
    siblings = [p for p in sorted(folder.glob("*.h5")) if p != out and not Path(f"{p}.parts").exists()]
    for other in siblings:
        stored_config, stored_images = store_contents(other)
        if not diff_configs(stored_config, cfg) and set(images) <= set(stored_images) | set(read_skipped(other)):
            return other
    listing = write_list(folder / f"{role}.txt", images)
    # Another β, layer or pooling of regions already found: no backprop (see dasr.derive).
    source = derive.find_source(work / bench.name, cfg, images)
    if source is not None and source.kind == "nms":
        derive.derive_nms_store(source.path, out, cfg, images, progress=progress)
        return out
    for other in siblings:
        if not diff_configs(store_contents(other)[0], cfg):
            derive.copy_rows(other, out, cfg, images, progress=progress)
    regions_from = RegionStore.open(source.path) if source is not None else None
    if regions_from is not None:
        print(f"{bench.name} {role}: pooling the regions of {source.path} on {extractor.feature_layer}")
    summary = extract_collection(extractor, listing, out, root=bench.root, progress=progress,
                                 regions_from=regions_from)
    print(f"{bench.name} {role}: {summary.line()}")
    return out


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
            raise ValueError(f"{bench.name}: subsampling by {every} leaves query {q.name} without positives")
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


@dataclass
class QueryResult:
    name: str
    ap: dict  # metric name -> value
    ious: list  # IoU of the returned box for each relevant image with a GT box


def score_query(bench: Benchmark, qi: int, ranking: Ranking, ks=DEFAULT_KS) -> QueryResult:
    """Every metric of one query from its full ranking."""
    q = bench.queries[qi]
    positives = np.asarray(q.positives, np.int64)
    ap: dict[str, float] = {}
    if bench.ap == "instance":
        rel = np.isin(ranking.order, positives)
        for variant in metrics.AP_VARIANTS:
            for k in ks:
                ap[f"ap@{k}/{variant}"] = metrics.average_precision_at_k(rel, len(positives), k, variant)
        ap["ap"] = metrics.average_precision_at_k(rel, len(positives), None)
    elif bench.ap == "oxford":
        ranks = metrics.ranks_without_junk(ranking.order, positives, q.junk)
        ap["ap"] = metrics.oxford_average_precision(ranks, len(positives))
    else:
        qid = bench.database.index(q.image)
        ap["ap"] = metrics.holidays_average_precision(ranking.order, qid, positives)
    ious = []
    if q.positive_boxes:
        where = {int(img): i for i, img in enumerate(ranking.order)}
        for img, gt in q.positive_boxes.items():
            box = ranking.boxes[where[int(img)]]
            ious.append(0.0 if np.isnan(box).any() else float(metrics.box_iou(box[None], np.asarray(gt)[None])[0, 0]))
    return QueryResult(q.name, ap, ious)


def evaluate(extractor: Extractor, benchmark: str, root: str | os.PathLike | None = None, *,
             work: str | os.PathLike = "results/stores", pca: str = "other", pca_benchmark: str | None = None,
             pca_root: str | os.PathLike | None = None, pca_dim: int | None = None, ks=DEFAULT_KS,
             out: str | os.PathLike | None = None, progress: bool = True, subsample: int = 1) -> dict:
    """Runs one method on one benchmark and returns (and optionally writes) the results.

    Args:
      extractor: method + configuration.
      benchmark: registry name (see :mod:`dasr.datasets`).
      root: dataset folder (None: the loader's default).
      work: where stores are kept and reused.
      pca: ``other`` (learn on ``pca_benchmark``) or ``none``.
      pca_benchmark: the whitening's collection (default :data:`DEFAULT_PCA_SOURCE`).
      pca_dim: whitening output dimension (None: all usable components).
      ks: the k of AP@k.
      out: folder for ``results.json`` and ``rankings.tsv`` (None: nothing written).
      subsample: keep every n-th database image (quick runs; 1 = the whole benchmark).

    Returns:
      A dict with the configuration, the mean metrics, per-query APs and timings.
    """
    work = Path(work)
    bench = subsample_database(load_benchmark(benchmark, root), subsample)
    t0 = time.time()
    db_store = ensure_store(extractor, bench, work, "database", progress)
    t_extract = time.time() - t0
    whitening = None
    pca_info: dict = {"pca": pca}
    if pca == "other":
        src_name = pca_benchmark or DEFAULT_PCA_SOURCE.get(benchmark, "paris-landmarks")
        if src_name == benchmark:
            raise ValueError("the whitening must be learned on another collection than the one searched")
        src = load_benchmark(src_name, pca_root)
        src_store = RegionStore.open(ensure_store(extractor, src, work, "pca-source", progress))
        wpath = whitening_path(db_store)
        whitening = learn_whitening(src_store, wpath, dim=pca_dim)
        pca_info.update(source=src_name, regions=int(len(src_store.arrays["features"])),
                        dim=int(whitening["projection"].shape[1]))
    elif pca != "none":
        raise ValueError(f"pca must be 'other' or 'none', got {pca!r}")
    index = SearchIndex(RegionStore.open(db_store), whitening)
    folder = Path(db_store).parent
    raw_q = query_features(extractor, bench, folder / "queries.npz", progress)
    qvecs = np.stack([index.describe(f) for f in raw_q])
    t1 = time.time()
    rankings = align_rankings(index.search_many(qvecs), index.store, bench)
    t_search = (time.time() - t1) / max(1, len(qvecs))
    per_query = [score_query(bench, i, r, ks) for i, r in enumerate(rankings)]
    keys = per_query[0].ap.keys() if per_query else []
    mean = {k: float(np.mean([p.ap[k] for p in per_query])) for k in keys}
    all_ious = [v for p in per_query for v in p.ious]
    loc = metrics.localization_recall(all_ious, IOU_THRESHOLDS) if all_ious else None
    in_bench = set(bench.database)  # the store may hold more (a subsampled run reuses the whole one's)
    counts = np.diff(index.store.offsets)[[name in in_bench for name in index.store.images]]
    result = {
        "benchmark": benchmark,
        "subsample": subsample,
        "database_images": len(bench.database),
        "method": extractor.method,
        "config": extractor.config(),
        "pca": pca_info,
        "ap_definition": {v: metrics.AP_VARIANT_DESCRIPTIONS[v] for v in metrics.AP_VARIANTS}
        if bench.ap == "instance" else bench.ap,
        "mean": mean,
        "localization_recall": dict(zip([f"{t:.1f}" for t in IOU_THRESHOLDS], loc.tolist())) if loc is not None else None,
        "regions_per_image": float(counts.mean()) if len(counts) else 0.0,
        "images_in_store": int(len(index.store)),
        "queries": len(per_query),
        "per_query": [{"name": p.name, **p.ap, "ious": p.ious} for p in per_query],
        "seconds": {"extract_database": t_extract, "search_per_query": t_search},
        "store": os.fspath(db_store),
    }
    if out is not None:
        write_results(result, rankings, bench, Path(out))
    return result


def write_results(result: dict, rankings: list[Ranking], bench: Benchmark, out: Path,
                  top: int = 100) -> None:
    """``results.json`` and ``rankings.tsv`` (top ``top`` per query: rank, image, score, box)."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "results.json", json.dumps(result, indent=1).encode())
    lines = ["query\trank\timage\tscore\tx1\ty1\tx2\ty2\trelevant"]
    for q, r in zip(bench.queries, rankings):
        pos = set(q.positives)
        for rank, (img, s, box) in enumerate(zip(r.order[:top], r.scores[:top], r.boxes[:top]), 1):
            lines.append("\t".join([q.name, str(rank), bench.database[img], f"{s:.5f}",
                                    *(f"{v:.1f}" for v in box), str(int(img in pos))]))
    atomic_write_bytes(out / "rankings.tsv", ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape"))


def format_table(results: list[dict], ks=DEFAULT_KS, variant: str = "truncated") -> str:
    """A Markdown table of mAP@k / mAP / localization recall@0.5, one row per result."""
    head = ["method", "pca", *[f"mAP@{k}" for k in ks], "mAP", "loc@0.5", "regions/img"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        m = r["mean"]
        cells = [r["method"], str(r["pca"].get("dim", "none") if r["pca"]["pca"] == "other" else "none")]
        cells += [f"{m[f'ap@{k}/{variant}']:.3f}" if f"ap@{k}/{variant}" in m else "-" for k in ks]
        cells.append(f"{m['ap']:.3f}")
        loc = r.get("localization_recall")
        cells.append(f"{loc['0.5']:.3f}" if loc else "-")
        cells.append(f"{r['regions_per_image']:.1f}")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)
