"""Approximate nearest-neighbour search over millions of region descriptors.

Used by the scalability experiment and, through :mod:`dasr.search.region_index`
(candidates from a persisted index, then exact re-ranking), by ``dasr index
build`` / ``dasr search --index-kind``: every database region descriptor
(l2-normalised, so inner product = cosine similarity) is stored in a faiss
index, and query regions retrieve their top-k database regions.

Index kinds and their faiss factory strings (``d`` = descriptor dimension,
``m`` = PQ sub-quantisers, ``b`` = bits per sub-quantiser code, ``nlist`` =
inverted lists); bytes per vector are for the per-vector storage, excluding
the shared codebooks / coarse centroids / rotation, which
:func:`index_bytes_per_vector` amortises as well:

==============  ====================================  ==========================
kind            factory string                        bytes per vector
==============  ====================================  ==========================
``exact``       ``Flat``                              ``4 d`` (float32)
``pq``          ``PQ{m}x{b}np``                       ``ceil(m b / 8)`` (ids implicit)
``ivfpq``       ``IVF{nlist},PQ{m}x{b}np``            ``ceil(m b / 8) + 8`` (int64 id)
``opq-ivfpq``   ``OPQ{m},IVF{nlist},PQ{m}x{b}np``     ``ceil(m b / 8) + 8``
==============  ====================================  ==========================

(``np`` disables faiss' polysemous code training, which is only useful for
Hamming pre-filtering and costs far more than the PQ training itself.)

IVF kinds encode the residual to the coarse centroid (faiss' default), and
OPQ learns a ``d x d`` rotation that balances the variance across the
sub-quantisers before the coarse quantiser.

Training limits: faiss' k-means wants at least 39 points per centroid. The
PQ codebooks have ``2^b`` centroids each, so a PQ kind needs
``39 * 2^b`` training vectors (9984 for ``b = 8``); with fewer vectors
:func:`plan_index` falls back to the exact index (which is cheap at that size
anyway) and says so in its ``note``, which :func:`build_index` logs as a
warning. ``nlist`` defaults to ``clamp(round(4 * sqrt(R)), 1, R // 39)``.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, replace

import faiss
import numpy as np


__all__ = [
    "KINDS",
    "IndexPlan",
    "plan_index",
    "build_index",
    "search_index",
    "recall_at_k",
    "index_bytes_per_vector",
]

logger = logging.getLogger(__name__)

KINDS = ("exact", "pq", "ivfpq", "opq-ivfpq")

# faiss' k-means warns below this many training points per centroid.
MIN_POINTS_PER_CENTROID = 39
# ...and subsamples above this many, so training on more is wasted time.
MAX_POINTS_PER_CENTROID = 256
# Vectors added per call, bounding the temporary copies (OPQ rotation, residuals).
_ADD_CHUNK = 262144


def _available_cpus() -> int:
    # The affinity mask is what this process may actually use (containers,
    # taskset); os.cpu_count() reports the whole machine.
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


# faiss' OpenMP default may be 1 or the machine size depending on the build;
# use every CPU we are allowed to.
faiss.omp_set_num_threads(_available_cpus())


@dataclass(frozen=True)
class IndexPlan:
    """What :func:`build_index` will build for a given collection.

    Attributes:
        kind: the kind actually built (``"exact"`` after a fallback).
        requested_kind: the kind asked for.
        factory: faiss ``index_factory`` string.
        d: descriptor dimension.
        n: number of database vectors.
        m: PQ sub-quantisers (0 for exact).
        nbits: bits per sub-quantiser code (0 for exact).
        nlist: inverted lists (0 without IVF).
        nprobe: lists visited per query (0 without IVF).
        train_size: vectors used for training (0 for exact).
        opq_niter: OPQ alternating-optimisation iterations (0 without OPQ).
        code_bytes: per-vector storage in bytes (code + id), see module doc.
        note: why the plan differs from the request, else ``None``.
    """

    kind: str
    requested_kind: str
    factory: str
    d: int
    n: int
    m: int = 0
    nbits: int = 0
    nlist: int = 0
    nprobe: int = 0
    train_size: int = 0
    opq_niter: int = 0
    code_bytes: int = 0
    note: str | None = None


def _default_m(d: int) -> int:
    # Largest divisor of d with at least 8 dimensions per sub-quantiser and at
    # most 64 bytes per code: 4 for d=32, 16 for d=128, 64 for d=512/2048.
    # faiss' k-means takes no SIMD fast path below 8 dimensions (PQ training
    # on 2-4-d sub-vectors is 10-50x slower), and 8 dims per sub-quantiser is
    # the usual operating point of the PQ literature.
    cap = max(1, min(64, d // 8))
    return max(m for m in range(1, cap + 1) if d % m == 0)


def plan_index(
    n: int,
    d: int,
    kind: str = "ivfpq",
    m: int | None = None,
    nbits: int = 8,
    nlist: int | None = None,
    nprobe: int | None = None,
    train_size: int | None = None,
    opq_niter: int | None = None,
) -> IndexPlan:
    """Choose the index parameters for ``n`` vectors of dimension ``d``.

    Args:
        n: number of database vectors ``R``.
        d: descriptor dimension.
        kind: one of :data:`KINDS`.
        m: PQ sub-quantisers; must divide ``d``. Default: the largest divisor
            of ``d`` not above ``min(64, d // 8)``.
        nbits: bits per sub-quantiser (codebooks of ``2^nbits`` centroids).
        nlist: inverted lists; default ``clamp(round(4 sqrt(n)), 1, n // 39)``.
        nprobe: lists visited per query; default ``min(nlist, 32)``.
        train_size: training vectors (a random subsample); default
            ``min(n, 256 * max(nlist, 2^nbits))``, faiss' own k-means cap.
        opq_niter: iterations of the OPQ rotation learning (faiss default
            50; each one re-trains the PQ codebooks, so it dominates the
            ``opq-ivfpq`` training time).

    Returns:
        the :class:`IndexPlan`.

    Raises:
        ValueError: on an unknown kind, ``m`` not dividing ``d``, or explicit
            ``nlist`` / ``train_size`` / ``nprobe`` values that cannot work.
    """
    n, d = int(n), int(d)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if n < 0 or d < 1:
        raise ValueError(f"need n >= 0 and d >= 1, got n={n}, d={d}")
    exact = IndexPlan(
        kind="exact", requested_kind=kind, factory="Flat", d=d, n=n, code_bytes=4 * d
    )
    if kind == "exact":
        return exact

    m = _default_m(d) if m is None else int(m)
    if m < 1 or d % m:
        raise ValueError(f"m={m} must be a positive divisor of d={d}")
    if not 1 <= int(nbits) <= 16:
        raise ValueError(f"nbits must be in 1..16, got {nbits}")
    nbits = int(nbits)
    n_pq = MIN_POINTS_PER_CENTROID * 2**nbits
    if n < n_pq:
        note = (
            f"{kind}: only {n} vectors, but PQ codebooks of 2^{nbits} centroids "
            f"need >= {n_pq} training vectors ({MIN_POINTS_PER_CENTROID} per "
            f"centroid); using exact search instead"
        )
        return replace(exact, note=note)

    code_bytes = math.ceil(m * nbits / 8)
    # "np": skip faiss' polysemous training (a code re-ordering for Hamming
    # pre-filtering, which we never use) - it dominates the training time.
    pq = f"PQ{m}x{nbits}np"
    if kind == "pq":
        ts = min(n, MAX_POINTS_PER_CENTROID * 2**nbits) if train_size is None else int(train_size)
        if not n_pq <= ts <= n:
            raise ValueError(f"train_size must be in {n_pq}..{n}, got {ts}")
        return IndexPlan(
            kind=kind, requested_kind=kind, factory=pq, d=d, n=n, m=m, nbits=nbits,
            train_size=ts, code_bytes=code_bytes,
        )

    max_nlist = n // MIN_POINTS_PER_CENTROID
    if nlist is None:
        nlist = min(max(1, round(4 * math.sqrt(n))), max_nlist)
    nlist = int(nlist)
    if not 1 <= nlist <= max_nlist:
        raise ValueError(
            f"nlist must be in 1..{max_nlist} for {n} vectors "
            f"({MIN_POINTS_PER_CENTROID} training points per list), got {nlist}"
        )
    nprobe = min(nlist, 32) if nprobe is None else int(nprobe)
    if not 1 <= nprobe <= nlist:
        raise ValueError(f"nprobe must be in 1..{nlist}, got {nprobe}")
    need = MIN_POINTS_PER_CENTROID * max(nlist, 2**nbits)
    cap = MAX_POINTS_PER_CENTROID * max(nlist, 2**nbits)
    ts = min(n, cap) if train_size is None else int(train_size)
    if not need <= ts <= n:
        raise ValueError(f"train_size must be in {need}..{n}, got {ts}")
    if kind == "ivfpq":
        factory, opq_niter = f"IVF{nlist},{pq}", 0
    else:
        factory = f"OPQ{m},IVF{nlist},{pq}"
        opq_niter = 50 if opq_niter is None else int(opq_niter)
        if opq_niter < 1:
            raise ValueError(f"opq_niter must be >= 1, got {opq_niter}")
        if ts < d:
            # faiss' OPQ training crashes (a segmentation fault, faiss-cpu 1.15.1) on fewer
            # training vectors than dimensions, e.g. 1219 regions of 2048 dimensions.
            raise ValueError(f"{kind} needs at least d={d} training vectors, got {ts}; use ivfpq")
    return IndexPlan(
        kind=kind, requested_kind=kind, factory=factory, d=d, n=n, m=m, nbits=nbits,
        nlist=nlist, nprobe=nprobe, train_size=ts, opq_niter=opq_niter,
        code_bytes=code_bytes + 8,
    )


def _as_float32_matrix(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (n, d), got {x.shape}")
    # faiss reads raw float32 C-ordered memory.
    return np.ascontiguousarray(x, dtype=np.float32)


def _set_nprobe(index: faiss.Index, nprobe: int) -> None:
    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError as err:
        raise ValueError("nprobe is only meaningful for IVF indexes") from err
    ivf.nprobe = int(nprobe)


def build_index(
    features: np.ndarray,
    kind: str = "exact",
    seed: int = 0,
    **params: int | None,
) -> faiss.Index:
    """Build an inner-product faiss index over database descriptors.

    The plan (and any fallback note, logged as a warning) comes from
    :func:`plan_index`; call it first to inspect what will be built. Vectors
    get the ids ``0..R-1`` in row order.

    Args:
        features: ``(R, d)`` float32 l2-normalised descriptors.
        kind: one of :data:`KINDS`.
        seed: seed of the training subsample.
        **params: ``m``, ``nbits``, ``nlist``, ``nprobe``, ``train_size``,
            ``opq_niter``; see :func:`plan_index`.

    Returns:
        the trained and filled faiss index (IVF kinds have ``nprobe`` set).

    Raises:
        ValueError: as :func:`plan_index`, or on a bad ``features`` shape or
            an unknown parameter.
    """
    unknown = set(params) - {"m", "nbits", "nlist", "nprobe", "train_size", "opq_niter"}
    if unknown:
        raise ValueError(f"unknown index parameters {sorted(unknown)}")
    x = _as_float32_matrix(features, "features")
    n, d = x.shape
    plan = plan_index(n, d, kind, **params)
    if plan.note:
        logger.warning(plan.note)
    index = faiss.index_factory(d, plan.factory, faiss.METRIC_INNER_PRODUCT)
    if plan.opq_niter:
        opq = faiss.downcast_VectorTransform(faiss.downcast_index(index).chain.at(0))
        opq.niter = plan.opq_niter
    if plan.kind != "exact":
        rng = np.random.default_rng(seed)
        if plan.train_size < n:
            train = x[np.sort(rng.choice(n, size=plan.train_size, replace=False))]
        else:
            train = x
        index.train(train)
        if plan.nlist:
            _set_nprobe(index, plan.nprobe)
    for start in range(0, n, _ADD_CHUNK):
        index.add(x[start : start + _ADD_CHUNK])
    logger.info(
        "built %s index (%s) over %d vectors, %d bytes/vector",
        plan.kind, plan.factory, n, plan.code_bytes,
    )
    return index


def search_index(
    index: faiss.Index,
    queries: np.ndarray,
    k: int,
    nprobe: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k inner-product search.

    Args:
        index: index from :func:`build_index`.
        queries: ``(q, d)`` (or ``(d,)``) l2-normalised query descriptors.
        k: neighbours per query.
        nprobe: for IVF kinds, override the lists visited per query (this
            sets it on the index, so it persists for later searches).

    Returns:
        ``(scores, ids)``, both ``(q, k)``: float32 similarities in
        decreasing order and int64 database ids. When fewer than ``k``
        vectors are reachable (small database, or few vectors in the probed
        lists) the tail is padded with id ``-1`` and score ``-inf``.

    Raises:
        ValueError: on ``k < 1``, a dimension mismatch, or ``nprobe`` on a
            non-IVF index.
    """
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    q = _as_float32_matrix(queries, "queries")
    if q.shape[1] != index.d:
        raise ValueError(f"queries have {q.shape[1]} dimensions, index has {index.d}")
    if nprobe is not None:
        _set_nprobe(index, nprobe)
    scores, ids = index.search(q, int(k))
    scores = np.where(ids < 0, -np.inf, scores).astype(np.float32)
    return scores, ids.astype(np.int64)


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray, k: int) -> float:
    """Mean fraction of the exact top-k found in the approximate top-k.

    ``mean_q |A_q[:k] & E_q[:k]| / k`` (the "k-recall@k" of the ANN
    literature; order inside the top-k does not matter). Padding ids ``-1``
    never count as found.

    Args:
        approx_ids: ``(q, >= k)`` ids from the approximate index.
        exact_ids: ``(q, >= k)`` ids from exact search.
        k: cut-off.

    Returns:
        recall in ``[0, 1]``.

    Raises:
        ValueError: on mismatched shapes, ``k < 1`` or too few columns.
    """
    a = np.asarray(approx_ids)
    e = np.asarray(exact_ids)
    if a.ndim != 2 or e.ndim != 2 or a.shape[0] != e.shape[0]:
        raise ValueError(f"id arrays must be (q, k) with the same q, got {a.shape} and {e.shape}")
    k = int(k)
    if k < 1 or a.shape[1] < k or e.shape[1] < k:
        raise ValueError(f"k={k} must be in 1..{min(a.shape[1], e.shape[1])}")
    if a.shape[0] == 0:
        raise ValueError("no queries")
    hits = [
        len(set(row_a[row_a >= 0].tolist()) & set(row_e[row_e >= 0].tolist()))
        for row_a, row_e in zip(a[:, :k], e[:, :k])
    ]
    return float(np.mean(hits) / k)


def index_bytes_per_vector(index: faiss.Index, n: int | None = None) -> float:
    """Serialized index size divided by the number of vectors.

    Includes the shared parts (codebooks, coarse centroids, OPQ rotation)
    amortised over ``n``, so it approaches :attr:`IndexPlan.code_bytes` for
    large collections.

    Args:
        index: a faiss index.
        n: number of vectors to divide by; default ``index.ntotal``.

    Returns:
        bytes per vector.

    Raises:
        ValueError: if ``n`` is not positive.
    """
    n = index.ntotal if n is None else int(n)
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    return float(faiss.serialize_index(index).size) / n
