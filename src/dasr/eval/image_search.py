"""Image search with DASR (the paper's Table 3): one VLAD vector per image from its region features.

Per image, the region features of the store (``l2``-normalised) are aggregated with VLAD
(:mod:`dasr.features.vlad`: ``k`` words, VLAD* residual normalisation, power law); the codebook AND the
PCA-whitening of the VLAD vectors are learned on an INDEPENDENT collection (the store of another
benchmark, as for the region whitening of :mod:`dasr.eval.instance`). Images are ranked by the dot
product of their post-processed vectors (``VLAD -> PCA-whitening -> l2``) and scored with the
benchmark's own AP (:func:`dasr.eval.scoring.score_query`: Oxford / Holidays trapezoid, or AP@k
for instance benchmarks). The run is a :class:`dasr.eval.records.SearchResult` (``task="image-search"``).

The PCA of VLAD vectors keeps at most ``n - 1`` components for ``n`` learning images, so the
paper's 8,192-d output needs more than 8,192 learning images; fewer cap the dimension (stated in
the result's ``pca.note``).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dasr.errors import InputError
from dasr.features import vlad
from dasr.io.atomic import atomic_write_bytes
from dasr.eval.datasets import Benchmark, load_benchmark
from dasr.eval.instance import benchmark_store, learning_store, subsample_database
from dasr.eval.pca_source import pca_source
from dasr.eval.records import SearchResult, WhiteningInfo, mean_scores
from dasr.eval.scoring import DEFAULT_KS, ap_definition, protocol_notes, score_query
from dasr.features.extractor import Extractor
from dasr.store import RegionStore
from dasr.features.whitening import apply_pca_whitening, l2_normalize

__all__ = ["VladSettings", "learn_vlad_model", "encode_images", "image_search_from_stores",
           "evaluate_image_search", "ensure_query_store"]


@dataclass(frozen=True)
class VladSettings:
    """How images become VLAD vectors (defaults: the paper's Section 4.4).

    Attributes:
      k: visual words.
      power: power-law exponent.
      residual_normalization: VLAD* l2-normalisation of each residual.
      intra: intra-normalisation of each word's block.
      pca: ``other`` (PCA of the VLAD vectors learned on the independent collection) or ``none``.
      whiten: whiten as well as rotate.
      pca_dim: output dimension (None: every usable component); capped at what the learning
        collection supports.
      query: ``image`` (every region of the query image) or ``box`` (only the regions whose
        centre falls in the query box; every region when none does or the query has no box).
      max_points: k-means learning sample.
      seed: k-means seed.
    """

    k: int = 4
    power: float = 0.5
    residual_normalization: bool = True
    intra: bool = False
    pca: str = "other"
    whiten: bool = True
    pca_dim: int | None = 8192
    query: str = "image"
    max_points: int | None = 200000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.pca not in ("other", "none"):
            raise InputError(f"pca must be 'other' or 'none', got {self.pca!r}")
        if self.query not in ("image", "box"):
            raise InputError(f"vlad query must be 'image' or 'box', got {self.query!r}")
        if self.k < 1:
            raise InputError(f"vlad k must be >= 1, got {self.k}")


def _features(store: RegionStore, i: int) -> np.ndarray:
    lo, hi = int(store.offsets[i]), int(store.offsets[i + 1])
    return l2_normalize(store.features[lo:hi].astype(np.float32))


def _vlad(features: list[np.ndarray], codebook: np.ndarray, s: VladSettings) -> np.ndarray:
    return vlad.vlad_encode_many(features, codebook, power=s.power,
                                 residual_normalization=s.residual_normalization, intra=s.intra)


def learn_vlad_model(source: RegionStore, settings: VladSettings = VladSettings()) -> dict:
    """Codebook and VLAD PCA-whitening, both learned on ``source`` (an independent collection).

    Returns:
      ``{"codebook", "whitening" (None with pca='none'), "dim", "note", "images", "regions"}``.

    Raises:
      ValueError: too few regions / images to learn from.
    """
    feats = source.features
    if len(feats) < settings.k:
        raise InputError(f"{source.path}: {len(feats)} regions, fewer than the k={settings.k} visual words")
    codebook = vlad.learn_codebook(l2_normalize(feats.astype(np.float32)), k=settings.k, seed=settings.seed,
                                   max_points=settings.max_points, progress=True)
    whitening, note = None, ""
    dim = codebook.size
    if settings.pca == "other":
        vecs = _vlad([_features(source, i) for i in range(len(source))], codebook, settings)
        usable = int(np.any(vecs != 0, axis=1).sum())
        if usable < 2:
            raise InputError(f"{source.path}: {usable} image(s) with regions; the VLAD PCA needs at least 2")
        most = min(usable - 1, vecs.shape[1])
        want = settings.pca_dim
        if want is not None and want > most:
            note = (f"PCA of VLAD vectors capped at {most} components (asked {want}): {usable} learning "
                    f"images give at most n-1 = {usable - 1}")
            want = most
        whitening = vlad.learn_vlad_pca(vecs, dim=want, whiten=settings.whiten)
        dim = int(whitening["projection"].shape[1])
    return {"codebook": codebook, "whitening": whitening, "dim": dim, "note": note,
            "images": len(source), "regions": int(len(feats))}


def encode_images(features: list[np.ndarray], model: dict, settings: VladSettings = VladSettings()) -> np.ndarray:
    """Post-processed image vectors: VLAD -> PCA-whitening -> l2 (images without regions: zeros)."""
    vecs = _vlad(features, model["codebook"], settings)
    empty = ~np.any(vecs != 0, axis=1)
    if model["whitening"] is not None:
        vecs = l2_normalize(apply_pca_whitening(vecs, model["whitening"]))
    vecs = np.asarray(vecs, np.float32)
    vecs[empty] = 0.0
    return vecs


def _query_regions(bench: Benchmark, qi: int, stores: list[RegionStore], settings: VladSettings) -> np.ndarray:
    q = bench.queries[qi]
    for store in stores:
        try:
            i = store.index(q.image)
        except KeyError:
            continue
        feats = _features(store, i)
        if settings.query == "box" and q.box is not None and len(feats):
            lo, hi = int(store.offsets[i]), int(store.offsets[i + 1])
            boxes = store.arrays["boxes"][lo:hi]
            cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
            x1, y1, x2, y2 = q.box
            inside = (cx >= x1) & (cx <= x2) & (cy >= y1) & (cy <= y2)
            if inside.any():
                feats = feats[inside]
        return feats
    raise KeyError(f"{bench.name}: query image {q.image} is in no store (was it skipped at extraction?)")


def image_search_from_stores(bench: Benchmark, database: RegionStore, source: RegionStore,
                             queries: RegionStore | None = None, settings: VladSettings = VladSettings(),
                             ks=DEFAULT_KS, *, source_name: str | None = None) -> SearchResult:
    """Scores every query of ``bench`` by VLAD image search over ``database``.

    Args:
      bench: the benchmark (its database order is the ranking's index space).
      database: store of ``bench``'s database images (its configuration names the method).
      source: store of the independent learning collection (codebook + PCA).
      queries: store of the query images that are not database images (None: there are none).
      settings: the VLAD settings.
      ks: the k of AP@k (instance benchmarks only).
      source_name: the learning collection's name, for the record (None: unnamed).

    Returns:
      The :class:`~dasr.eval.records.SearchResult` (``task="image-search"``; ``pca.dim`` is the
      dimension of the image vectors, ``vlad`` the settings and the codebook's source).
    """
    t0 = time.time()
    model = learn_vlad_model(source, settings)
    t_learn = time.time() - t0
    d = int(model["codebook"].shape[1])
    db_feats = []
    missing = 0
    for image in bench.database:
        try:
            db_feats.append(_features(database, database.index(image)))
        except KeyError:  # skipped at extraction: never retrieved before a scored image
            missing += 1
            db_feats.append(np.zeros((0, d), np.float32))
    db_vecs = encode_images(db_feats, model, settings)
    stores = [database] + ([queries] if queries is not None else [])
    q_vecs = encode_images([_query_regions(bench, i, stores, settings) for i in range(len(bench.queries))],
                           model, settings)
    t1 = time.time()
    sims = q_vecs @ db_vecs.T
    # One vector per image: nothing to localize, so the scorer gets no boxes.
    per_query = [score_query(bench, qi, np.argsort(-row, kind="stable"), None, ks) for qi, row in enumerate(sims)]
    t_search = (time.time() - t1) / max(1, len(per_query))
    in_bench = set(bench.database)  # the store may hold more (queries, or the whole benchmark when subsampled)
    counts = np.diff(database.offsets)[[name in in_bench for name in database.images]]
    whitened = settings.pca == "other"
    return SearchResult(
        task="image-search",
        benchmark=bench.name,
        method=str(database.config["method"]),
        config=dict(database.config),
        subsample=1,
        database_images=len(bench.database),
        queries=len(per_query),
        pca=WhiteningInfo(mode=settings.pca, source=source_name if whitened else None, dim=int(model["dim"]),
                          learning_vectors=int(model["images"]) if whitened else None, path=None,
                          note=model["note"]),
        ap_definition=ap_definition(bench),
        mean=mean_scores(per_query),
        per_query=per_query,
        localization_recall=None,
        regions_per_image=float(counts.mean()) if len(counts) else 0.0,
        images_in_store=int(len(database)),
        seconds={"learn": t_learn, "search_per_query": t_search},
        store=str(database.path),
        notes=protocol_notes(bench),
        vlad={**asdict(settings), "codebook_source": source_name, "learning_images": int(model["images"]),
              "learning_regions": int(model["regions"])},
        missing_images=missing,
    )


def ensure_query_store(extractor: Extractor, bench: Benchmark, work: Path, progress: bool = True) -> Path | None:
    """Extracts the query images that are not database images (``<store folder>/queries.h5``)."""
    in_db = set(bench.database)
    extra = list(dict.fromkeys(q.image for q in bench.queries if q.image not in in_db))
    if not extra:
        return None
    only = Benchmark(name=bench.name, root=bench.root, database=tuple(extra), queries=(), ap=bench.ap)
    return benchmark_store(extractor, only, work, "queries", progress)


def evaluate_image_search(extractor: Extractor, benchmark: str, root: str | os.PathLike | None = None, *,
                          work: str | os.PathLike = "results/stores", pca_benchmark: str | None = None,
                          pca_root: str | os.PathLike | None = None, settings: VladSettings = VladSettings(),
                          ks=DEFAULT_KS, out: str | os.PathLike | None = None, progress: bool = True,
                          protocol: str | None = None, subsample: int = 1, pca_subsample: int = 1) -> SearchResult:
    """Extracts (or reuses) the stores, then :func:`image_search_from_stores`.

    Args:
      extractor: the region method (DASR* in the paper).
      benchmark: registry name; root: its folder (None: default).
      work: where stores are kept and reused (shared with :func:`dasr.eval.instance.evaluate`).
      pca_benchmark: the independent learning collection (None: :func:`~dasr.eval.pca_source.pca_source`'s default).
      settings: VLAD settings; ks: AP@k cut-offs; out: folder for ``results.json``.
      protocol: the revisited protocol of ``roxford5k`` / ``rparis6k`` (None: ``medium``).
      subsample: keep every n-th database image (quick runs; 1 = the whole benchmark).
      pca_subsample: learn the codebook and the whitening on every n-th database image of the
        learning collection (and its queries; :func:`~dasr.eval.instance.learning_store`).

    Returns:
      The :class:`~dasr.eval.records.SearchResult` (``seconds["extract"]`` added).

    Raises:
      ValueError: the learning collection is the searched benchmark, or a ``protocol`` for a
        benchmark without one.
    """
    src_name = pca_source(benchmark, pca_benchmark)
    work = Path(work)
    bench = subsample_database(load_benchmark(benchmark, root, protocol=protocol), subsample)
    t0 = time.time()
    db_path = benchmark_store(extractor, bench, work, "database", progress)
    q_path = ensure_query_store(extractor, bench, work, progress)
    src_store, src_label = learning_store(extractor, src_name, pca_root, work, pca_subsample, progress)
    t_extract = time.time() - t0
    result = image_search_from_stores(bench, RegionStore.open(db_path), src_store,
                                      RegionStore.open(q_path) if q_path else None, settings, ks,
                                      source_name=src_label)
    result.seconds["extract"] = t_extract
    result.subsample = subsample
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out / "results.json", json.dumps(result.to_json(), indent=1).encode())
    return result
