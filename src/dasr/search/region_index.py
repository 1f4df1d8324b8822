"""A compressed faiss index over a store's region features, for collections of millions of regions.

The index holds the store's features AFTER the search's post-processing (l2, the whitening of
:func:`dasr.features.whitening.choose_whitening`, l2), so that inner products are the exact search's
cosine similarities up to the compression.  A search is two steps:

1. the index returns ``candidates`` regions per query (approximate, from the PQ codes);
2. those regions are re-scored EXACTLY on the stored features (read by row from the store, the
   same post-processing) and reduced to the best region per image by THE ranking,
   :func:`dasr.search.ranking.rank_images` (:func:`rank_candidates`): no second ranking.

An image none of whose regions is a candidate is not retrieved (it ranks last, at ``-inf``, like
an image without regions in the exact search).  With ``candidates`` at least the number of
regions the result equals exact search.

The index is persisted as one ``.npz`` (the serialized faiss index plus a JSON description) next
to its store, ``<store>.index-<kind>.npz`` (:func:`region_index_path`).  The description carries
the store's identity (configuration hash, images, regions, a digest of the image names and
offsets) and the whitening's identity (a digest of its parameters); opening it against another
store or another whitening is refused (:class:`RegionIndexError`, one line).
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from dasr.errors import InputError
from dasr.features.whitening import postprocess, whitening_identity
from dasr.io.atomic import atomic_path
from dasr.search.ann import IndexPlan, plan_index
from dasr.search.ranking import Ranking, rank_images
from dasr.store.cache import config_hash
from dasr.store.format import FEATURE_KEY, H5Source

__all__ = ["INDEX_KINDS", "FORMAT", "RegionIndex", "RegionIndexError", "build_from_rows", "build_region_index",
           "m_for_bytes", "open_region_index", "region_index_path", "rank_candidates", "rerank", "candidate_rows",
           "store_identity"]

# The compressed kinds (exact search needs no index: it is `dasr search`'s default).
INDEX_KINDS = ("ivfpq", "opq-ivfpq", "pq")
FORMAT = "dasr-region-index/1"
# faiss IVF lists store an int64 id per entry.
ID_BYTES = 8
# Rows read and post-processed per step while filling an index.
ADD_CHUNK = 1 << 16
DEFAULT_CANDIDATES = 1000

RowReader = Callable[[np.ndarray], np.ndarray]


class RegionIndexError(InputError):
    """An index file that is missing, unreadable, or built for another store or whitening."""


def region_index_path(store: str | os.PathLike, kind: str) -> Path:
    """``<store>.index-<kind>.npz``: where ``dasr index build`` keeps a store's index of ``kind``."""
    return Path(f"{os.fspath(store)}.index-{kind}.npz")


def store_identity(config: dict, images: list[str], offsets: np.ndarray) -> dict:
    """What an index must match in its store: configuration hash, sizes, a digest of names and offsets."""
    h = hashlib.sha256()
    for name in images:
        h.update(name.encode("utf-8", "surrogateescape") + b"\0")
    h.update(np.ascontiguousarray(offsets, np.int64).tobytes())
    return {"config": config_hash(config), "images": len(images), "regions": int(offsets[-1]),
            "content": h.hexdigest()[:16]}


def m_for_bytes(d: int, kind: str, bytes_per_region: int, nbits: int = 8) -> int:
    """The most PQ sub-quantisers whose code (plus an IVF kind's 8-byte id) fits ``bytes_per_region``.

    Args:
      d: descriptor dimension (``m`` must divide it).
      kind: one of :data:`INDEX_KINDS`.
      bytes_per_region: the budget per region (codes and ids; shared codebooks not counted).
      nbits: bits per sub-quantiser code.

    Raises:
      InputError: no divisor of ``d`` fits the budget.
    """
    ids = 0 if kind == "pq" else ID_BYTES
    fits = [m for m in range(1, d + 1) if d % m == 0 and -(-m * nbits // 8) + ids <= bytes_per_region]
    if not fits:
        raise InputError(f"--bytes-per-region {bytes_per_region}: too small for a {kind} code of {d} dimensions "
                         f"({ids} bytes of id + at least {-(-nbits // 8)} of code)")
    return max(fits)


def _train_rows(n: int, size: int, seed: int) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False)) if size < n else np.arange(n)


def build_from_rows(read: Callable[[int, int], np.ndarray], sample: RowReader, n: int, d: int, plan: IndexPlan,
                    seed: int = 0, progress: Callable[[int], None] | None = None) -> faiss.Index:
    """Trains and fills a faiss index chunk by chunk (memory: one chunk plus the training sample).

    Args:
      read: ``read(lo, hi)`` -> ``(hi - lo, d)`` float32 post-processed rows.
      sample: ``sample(rows)`` -> those rows (sorted indices), post-processed, for training.
      n: number of rows; d: their dimension.
      plan: from :func:`dasr.search.ann.plan_index` (an ``exact`` plan builds a flat index).
      seed: seed of the training subsample.
      progress: called with the number of rows added so far.

    Returns:
      The filled index, ids ``0..n-1`` in row order, ``nprobe`` set for IVF kinds.
    """
    index = faiss.index_factory(d, plan.factory, faiss.METRIC_INNER_PRODUCT)
    if plan.opq_niter:
        opq = faiss.downcast_VectorTransform(faiss.downcast_index(index).chain.at(0))
        opq.niter = plan.opq_niter
    if plan.kind != "exact":
        index.train(np.ascontiguousarray(sample(_train_rows(n, plan.train_size, seed)), np.float32))
    if plan.nlist:
        faiss.extract_index_ivf(index).nprobe = plan.nprobe
    for lo in range(0, n, ADD_CHUNK):
        index.add(np.ascontiguousarray(read(lo, min(n, lo + ADD_CHUNK)), np.float32))
        if progress is not None:
            progress(min(n, lo + ADD_CHUNK))
    return index


def candidate_rows(index: faiss.Index, queries: np.ndarray, k: int) -> np.ndarray:
    """The compressed index's ``k`` best rows per query, its threads spread as the batch needs.

    faiss runs a batch in parallel over its queries, so ONE query (``dasr search``, the search
    page) would scan its inverted lists on one thread; for a single query an IVF index splits its
    lists over the threads instead (``parallel_mode`` 1: half the latency on 2 cores,
    ``reports/search-scale/results.md``).

    Args:
      index: a faiss index (IVF kinds get the parallel mode; others search as they are).
      queries: (q, D) post-processed queries.
      k: rows per query.

    Returns:
      (q, k) int64 rows, best first by the compressed score, ``-1`` padded.
    """
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.parallel_mode = 1 if len(queries) == 1 else 0
    return index.search(np.ascontiguousarray(queries, np.float32), k)[1].astype(np.int64)


class _StoreRows:
    """A store's post-processed features, offsets and boxes, read by row from its HDF5 file."""

    def __init__(self, path: Path, whitening: dict | None):
        self.source = H5Source(Path(path))
        self.whitening = whitening
        self.features = self.source.rows(FEATURE_KEY)
        self.offsets = self.source.offsets

    def range(self, lo: int, hi: int) -> np.ndarray:
        return postprocess(np.asarray(self.features[lo:hi], np.float32), self.whitening).astype(np.float32)

    def rows(self, rows: np.ndarray) -> np.ndarray:
        """Sorted unique ``rows`` (h5py reads increasing indices)."""
        if len(rows) == 0:
            return np.zeros((0, self.features.shape[1]), np.float32)
        return postprocess(np.asarray(self.features[np.asarray(rows)], np.float32), self.whitening).astype(np.float32)

    def boxes(self, rows: np.ndarray) -> np.ndarray:
        boxes = self.source.rows("boxes")
        return np.asarray(boxes[np.asarray(rows)], np.float32) if len(rows) else np.zeros((0, 4), np.float32)

    def close(self) -> None:
        self.source.close()


def rerank(queries: np.ndarray, candidates: np.ndarray, read_rows: RowReader, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The exact top-``k`` regions among each query's candidates.

    Args:
      queries: (q, D) post-processed queries.
      candidates: (q, c) candidate rows, ``-1`` = none.
      read_rows: sorted unique rows -> their (n, D) post-processed features.
      k: regions kept per query.

    Returns:
      (ids (q, k) int64, ``-1`` padded; scores (q, k) float32, ``-inf`` padded), best first, ties by row.
    """
    queries = np.asarray(queries, np.float32)
    ids = np.full((len(queries), k), -1, np.int64)
    scores = np.full((len(queries), k), -np.inf, np.float32)
    for qi, (q, cand) in enumerate(zip(queries, np.asarray(candidates, np.int64))):
        rows = np.unique(cand[cand >= 0])
        sims = read_rows(rows) @ q
        best = np.lexsort((rows, -sims))[:k]
        ids[qi, :len(best)], scores[qi, :len(best)] = rows[best], sims[best]
    return ids, scores


def rank_candidates(queries: np.ndarray, candidates: np.ndarray, read_rows: RowReader, offsets: np.ndarray,
                    read_boxes: RowReader | None = None, top: int | None = None) -> list[Ranking]:
    """Each query's candidate regions, re-scored exactly, ranked by THE ranking (best region per image).

    The candidates become a sub-collection (every image keeps only its candidate regions) that
    :func:`dasr.search.ranking.rank_images` ranks; its region rows are mapped back to the store's.

    Args:
      queries: (q, D) post-processed queries.
      candidates: (q, c) candidate rows (any order, duplicates allowed), ``-1`` = none.
      read_rows: sorted unique rows -> their (n, D) post-processed features.
      offsets: (N+1,) the store's row offsets of each image's regions.
      read_boxes: sorted unique rows -> their (n, 4) boxes (None: every box is NaN).
      top: images kept per query (None: all N; those without a candidate rank last at ``-inf``).

    Returns:
      One :class:`~dasr.search.ranking.Ranking` per query, over the store's image indices and rows.

    Raises:
      ValueError: a candidate row outside the offsets.
    """
    offsets = np.asarray(offsets, np.int64)
    out = []
    for q, cand in zip(np.asarray(queries, np.float32), np.asarray(candidates, np.int64)):
        rows = np.unique(cand[cand >= 0])
        if len(rows) and rows[-1] >= offsets[-1]:
            raise ValueError(f"candidate region {int(rows[-1])} outside the {int(offsets[-1])} regions")
        images = np.searchsorted(offsets, rows, side="right") - 1
        sub = np.r_[0, np.cumsum(np.bincount(images, minlength=len(offsets) - 1))]
        boxes = read_boxes(rows) if read_boxes is not None else None
        r = rank_images(q[None], read_rows(rows), sub, boxes, top)[0]
        regions = np.where(r.regions >= 0, rows[np.maximum(r.regions, 0)] if len(rows) else -1, -1)
        out.append(Ranking(r.order, r.scores, regions, r.boxes))
    return out


@dataclass
class RegionIndex:
    """A persisted index opened against its store: candidates, then exact re-ranking.

    Attributes:
      index: the faiss index.
      meta: its description (kind, plan, store and whitening identities).
      rows: the store's rows reader (post-processed with the index's whitening).
      candidates: candidates re-ranked per query.
    """

    index: faiss.Index
    meta: dict
    rows: _StoreRows
    candidates: int = DEFAULT_CANDIDATES

    def search_candidates(self, queries: np.ndarray, k: int | None = None) -> np.ndarray:
        """The compressed index's candidates.

        Args:
          queries: (q, D) post-processed queries.
          k: candidates per query (None: :attr:`candidates`; at most the regions indexed).

        Returns:
          (q, k) int64 store rows, best first by the compressed score, ``-1`` padded.
        """
        return candidate_rows(self.index, queries, min(int(k or self.candidates), max(1, self.index.ntotal)))

    def rank_images(self, queries: np.ndarray, top: int | None = None) -> list[Ranking]:
        """:meth:`dasr.search.SearchIndex.search_many` through the index (:func:`rank_candidates`).

        Args:
          queries: (q, D) post-processed queries.
          top: images kept per query (None: all).

        Returns:
          One :class:`~dasr.search.ranking.Ranking` per query.
        """
        cand = self.search_candidates(queries)
        return rank_candidates(queries, cand, self.rows.rows, self.rows.offsets, self.rows.boxes, top)

    def close(self) -> None:
        """Closes the store file the rows are read from."""
        self.rows.close()


def build_region_index(store: str | os.PathLike, whitening: dict | None, kind: str = "ivfpq",
                       out: str | os.PathLike | None = None, bytes_per_region: int = 64, nbits: int = 8,
                       nlist: int | None = None, nprobe: int | None = None, opq_niter: int | None = None,
                       seed: int = 0, whitening_path: str | os.PathLike | None = None) -> tuple[Path, dict]:
    """Builds a store's region index (chunk by chunk from its file) and saves it.

    Args:
      store: the store path.
      whitening: the search's whitening parameters (None: l2-normalised raw features).
      kind: one of :data:`INDEX_KINDS`.
      out: the index file (default :func:`region_index_path`).
      bytes_per_region: budget of code + id per region (:func:`m_for_bytes`).
      nbits, nlist, nprobe, opq_niter: see :func:`dasr.search.ann.plan_index`.
      seed: the training subsample's seed.
      whitening_path: recorded in the description (for messages only).

    Returns:
      (the index file, its description).

    Raises:
      InputError: an unknown kind, a budget too small, or a store too small for the kind.
    """
    if kind not in INDEX_KINDS:
        raise InputError(f"index kind must be one of {', '.join(INDEX_KINDS)}, got {kind!r}")
    rows = _StoreRows(Path(store), whitening)
    try:
        n, d = int(rows.offsets[-1]), int(rows.range(0, 1).shape[1]) if int(rows.offsets[-1]) else 0
        if n == 0:
            raise InputError(f"{store}: no regions to index")
        try:
            plan = plan_index(n, d, kind, m=m_for_bytes(d, kind, bytes_per_region, nbits), nbits=nbits,
                              nlist=nlist, nprobe=nprobe, opq_niter=opq_niter if kind == "opq-ivfpq" else None)
        except ValueError as e:
            raise InputError(f"{store}: {e}") from None
        if plan.note:
            raise InputError(f"{store}: {plan.note.split(';')[0]}; search it exactly (no index needed)")
        index = build_from_rows(rows.range, rows.rows, n, d, plan, seed)
        meta = {"format": FORMAT, "kind": kind, "factory": plan.factory, "d": d, "n": n, "m": plan.m,
                "nbits": plan.nbits, "nlist": plan.nlist, "nprobe": plan.nprobe, "code_bytes": plan.code_bytes,
                "store": store_identity(rows.source.config, rows.source.images, rows.offsets),
                "whitening": whitening_identity(whitening),
                "whitening_path": os.fspath(whitening_path) if whitening_path else None}
    finally:
        rows.close()
    out = Path(out) if out is not None else region_index_path(store, kind)
    with atomic_path(out, suffix=".npz") as tmp:
        np.savez(tmp, faiss=faiss.serialize_index(index), meta=np.array(json.dumps(meta, sort_keys=True)))
    return out, meta


def _read_index_file(path: Path) -> tuple[faiss.Index, dict]:
    if not path.is_file():
        raise RegionIndexError(f"{path}: no such region index (build it with: dasr index build STORE --kind KIND)")
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            blob = np.asarray(data["faiss"], np.uint8)
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
        raise RegionIndexError(f"{path}: not a region index file") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise RegionIndexError(f"{path}: not a region index file (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    try:
        return faiss.deserialize_index(blob), meta
    except RuntimeError:
        raise RegionIndexError(f"{path}: not a region index file (unreadable faiss index)") from None


def open_region_index(path: str | os.PathLike, store: str | os.PathLike, whitening: dict | None,
                      candidates: int = DEFAULT_CANDIDATES, nprobe: int | None = None) -> RegionIndex:
    """Opens an index file against the store and whitening a search uses.

    Args:
      path: the index file.
      store: the store path.
      whitening: the search's whitening parameters (None: none).
      candidates: regions re-ranked per query.
      nprobe: lists visited per query (IVF kinds; None: the built one).

    Raises:
      RegionIndexError: a missing or foreign file, or one built for another store or whitening.
    """
    path = Path(path)
    index, meta = _read_index_file(path)
    rows = _StoreRows(Path(store), whitening)
    ident = store_identity(rows.source.config, rows.source.images, rows.offsets)
    problem = None
    if meta.get("store") != ident:
        theirs = meta.get("store") or {}
        what = "configuration" if theirs.get("config") != ident["config"] else "images or regions"
        problem = (f"built for another store ({what} differ: {theirs.get('images')} images, "
                   f"{theirs.get('regions')} regions vs {ident['images']}, {ident['regions']} in {store})")
    elif meta.get("whitening") != whitening_identity(whitening):
        problem = (f"built with another whitening ({meta.get('whitening_path') or meta.get('whitening')}) "
                   f"than this search's ({whitening_identity(whitening)})")
    if problem:
        rows.close()
        raise RegionIndexError(f"{path}: {problem}; rebuild it with dasr index build")
    if nprobe is not None and meta.get("nlist"):
        faiss.extract_index_ivf(index).nprobe = min(int(nprobe), int(meta["nlist"]))
    return RegionIndex(index, meta, rows, int(candidates))
