"""Region search at the paper's scale, simulated: real DASR* regions and queries, synthetic distractors.

The queries and their true neighbours are REAL (finished DASR* stores of the shared
collections, :func:`load_real`); the database is those real regions plus N synthetic distractor
regions drawn from a diagonal Gaussian mixture fitted to ALL the real regions in a PCA-reduced
space (:func:`fit_space`, :func:`fit_mixture`), written chunk by chunk to disk as float16
(:func:`write_database`, read back by :class:`RowFile`).  Distractor regions are grouped into
images of :data:`REGIONS_PER_DISTRACTOR_IMAGE` regions and are never relevant (:func:`map_at`).

``benchmarks/search_scale.py`` composes these with the compressed region index
(:mod:`dasr.search.region_index`) and measures it; the real-image scalability experiment
(Fig. 8 with real distractor images) is :mod:`dasr.experiments.scalability`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from sklearn.mixture import GaussianMixture

from dasr.errors import InputError
from dasr.eval.datasets import load_benchmark
from dasr.eval.datasets.common import Benchmark
from dasr.eval.instance import subsample_database
from dasr.eval.scoring import score_query
from dasr.features.whitening import l2_normalize
from dasr.store import RegionStore

__all__ = ["CHUNK", "REGIONS_PER_DISTRACTOR_IMAGE", "RealSet", "RowFile", "database_offsets", "find_store",
           "fit_mixture", "fit_space", "load_real", "map_at", "prefix_offsets", "sample_chunk", "write_database"]

# The instance-track DASR* store's mean is 18.8 regions per image.
REGIONS_PER_DISTRACTOR_IMAGE = 19
CHUNK = 1 << 16

@dataclass
class RealSet:
    """One collection's real DASR* data: its store, raw query features and benchmark.

    Attributes:
      bench: the subsampled benchmark.
      store: its DASR* database store.
      queries: (q, C) raw query features (the evaluation's ``queries.npz``).
      to_bench: store image -> benchmark database index.
      first_image: index of the store's first image among all real images of the run.
    """

    bench: Benchmark
    store: RegionStore
    queries: np.ndarray
    to_bench: np.ndarray
    first_image: int = 0


def find_store(stores: Path, bench: Benchmark, given: str) -> Path:
    """The DASR* store folder of ``bench``'s database: ``given``, or the one under ``stores/<bench>/``.

    Raises:
      InputError: none or several stores hold exactly these images (names them and how to make one).
    """
    if given:
        return Path(given)
    found = []
    for db in sorted((stores / bench.name).glob("dasr-star-*/database.h5")):
        store = RegionStore.open(db)
        if store.config["method"] == "dasr-star" and sorted(store.images) == sorted(bench.database):
            found.append(db.parent)
    if len(found) != 1:
        raise InputError(f"{stores / bench.name}: {len(found)} DASR* stores of the {len(bench.database)}-image "
                         f"database ({', '.join(map(str, found)) or 'none'}); make one with `dasr evaluate "
                         f"--benchmark {bench.name} --method dasr-star --pca none --subsample N`, or name it")
    return found[0]


def load_real(name: str, data: str, subsample: int, stores: Path, given: str,
              log: Callable[[str], None] = print) -> RealSet:
    """One collection's real data: the 1-in-``subsample`` benchmark, its DASR* store and raw query features.

    Args:
      name, data: registry name and folder ("" for the default) of the collection.
      subsample: keep every ``subsample``-th database image (as the store was made).
      stores, given: where to look for the store (:func:`find_store`).
      log: where the one line saying what was loaded goes.

    Raises:
      InputError: no such store, or one that does not hold the benchmark's images and queries.
    """
    bench = subsample_database(load_benchmark(name, data or None), subsample)
    store_dir = find_store(stores, bench, given)
    store = RegionStore.open(store_dir / "database.h5")
    q = np.load(store_dir / "queries.npz", allow_pickle=False)
    if list(q["names"]) != [x.name for x in bench.queries]:
        raise InputError(f"{store_dir}/queries.npz does not hold the benchmark's queries in order")
    position = {image: i for i, image in enumerate(bench.database)}
    to_bench = np.array([position.get(n, -1) for n in store.images], np.int64)
    if (to_bench < 0).any() or len(set(to_bench.tolist())) != len(bench.database):
        raise InputError(f"{store.path}: its images are not the benchmark's {len(bench.database)} database images")
    log(f"{name}: {store.path} ({len(store)} images, {len(store.region_image)} regions, {len(bench.queries)} queries)")
    return RealSet(bench, store, q["features"].astype(np.float32), to_bench)


def map_at(real: RealSet, rankings_orders, k: int = 50) -> float:
    """mAP@k (truncated, the table-1 definition) of ``real``'s queries, whose rankings come first in
    ``rankings_orders``: the run's image indices -> ``real``'s benchmark indices; images of the other
    collection and distractors are never relevant."""
    aps = []
    n_db, lo, hi = len(real.bench.database), real.first_image, real.first_image + len(real.to_bench)
    for qi, order in enumerate(rankings_orders[:len(real.bench.queries)]):
        order = np.asarray(order, np.int64)
        own = (order >= lo) & (order < hi)
        mapped = np.where(own, real.to_bench[np.clip(order - lo, 0, len(real.to_bench) - 1)], n_db + order)
        aps.append(score_query(real.bench, qi, mapped, None, ks=(k,)).ap[f"ap@{k}/truncated"])
    return float(np.mean(aps))


def fit_space(x: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The search space: centre, project on the first ``dim`` principal directions of ``x``.

    Returns:
      (mean (d,), projection (d, dim) float32, share of the variance kept).
    """
    mean = x.mean(0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    var = s**2
    return mean, vt[:dim].T.astype(np.float32), float(var[:dim].sum() / var.sum())


def fit_mixture(y: np.ndarray, owner: np.ndarray, k: int, seed: int) -> tuple[GaussianMixture, dict]:
    """Diagonal GMM on the PCA coordinates; fit quality on an image-wise 80/20 split against K=1."""
    rng = np.random.default_rng(seed)
    images = np.unique(owner)
    held = np.isin(owner, rng.choice(images, size=max(1, len(images) // 5), replace=False))
    quality = {"held_out_regions": int(held.sum()), "train_regions": int((~held).sum())}
    for name, comps in (("gmm", k), ("one_gaussian", 1)):
        g = GaussianMixture(comps, covariance_type="diag", reg_covar=1e-4, random_state=seed, max_iter=200)
        g.fit(y[~held])
        quality[f"{name}_train_loglik_per_dim"] = float(g.score(y[~held]) / y.shape[1])
        quality[f"{name}_held_out_loglik_per_dim"] = float(g.score(y[held]) / y.shape[1])
    g = GaussianMixture(k, covariance_type="diag", reg_covar=1e-4, random_state=seed, max_iter=200).fit(y)
    quality["converged"] = bool(g.converged_)
    quality["all_regions_loglik_per_dim"] = float(g.score(y) / y.shape[1])
    return g, quality


def sample_chunk(g: GaussianMixture, n: int, seed: int, chunk_no: int) -> np.ndarray:
    """Chunk ``chunk_no`` of the distractor stream (deterministic: a file's whole chunks are the
    first chunks of a larger file's; a last, partial chunk is drawn anew)."""
    rng = np.random.default_rng([seed, chunk_no])
    comp = rng.choice(len(g.weights_), size=n, p=g.weights_ / g.weights_.sum())
    x = g.means_[comp] + np.sqrt(g.covariances_[comp]) * rng.standard_normal((n, g.means_.shape[1]))
    return l2_normalize(x.astype(np.float32), axis=1)


def write_database(path: Path, real: np.ndarray, g: GaussianMixture, n: int, seed: int,
                   log: Callable[[str], None] = print) -> None:
    """``(len(real) + n, d)`` float16 .npy: the real rows, then the distractors, chunk by chunk (no mapping)."""
    d = real.shape[1]
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f2", "fortran_order": False, "shape": (len(real) + n, d)})
        f.write(real.astype(np.float16).tobytes())
        for c, lo in enumerate(range(0, n, CHUNK)):
            f.write(sample_chunk(g, min(CHUNK, n - lo), seed, c).astype(np.float16).tobytes())
            if c % 16 == 0:
                log(f"  distractors {min(n, lo + CHUNK):,}/{n:,}")
    tmp.rename(path)


class RowFile:
    """A float16 ``.npy`` database file read by range (plain reads: build memory is not inflated by a mapping) and by row."""

    def __init__(self, path: Path):
        self.path = path
        mm = np.load(path, mmap_mode="r")
        self.shape, self.header = mm.shape, mm.offset
        self.mm = mm

    def range(self, lo: int, hi: int) -> np.ndarray:
        d = self.shape[1]
        with open(self.path, "rb") as f:
            f.seek(self.header + lo * d * 2)
            return np.fromfile(f, np.float16, (hi - lo) * d).reshape(hi - lo, d).astype(np.float32)

    def rows(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.mm[np.asarray(rows, np.int64)], np.float32)

    def sample(self, rows: np.ndarray) -> np.ndarray:
        """Rows by plain reads: through the mapping, the kernel's fault-around would map 64 KiB per
        sampled row and count it as resident (a 131k-row sample of the 7M file showed 8 GB RSS)."""
        d = self.shape[1]
        out = np.empty((len(rows), d), np.float32)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for i, r in enumerate(np.asarray(rows, np.int64)):
                out[i] = np.frombuffer(os.pread(fd, 2 * d, self.header + int(r) * 2 * d), np.float16)
        finally:
            os.close(fd)
        return out


def database_offsets(real_offsets: np.ndarray, n: int) -> np.ndarray:
    """Image offsets of the database: the real images', then one image per
    :data:`REGIONS_PER_DISTRACTOR_IMAGE` distractor regions (the last one shorter)."""
    r = int(real_offsets[-1])
    cuts = np.arange(REGIONS_PER_DISTRACTOR_IMAGE, n, REGIONS_PER_DISTRACTOR_IMAGE)
    return np.r_[real_offsets, r + cuts, r + n] if n else real_offsets.copy()


def prefix_offsets(offsets: np.ndarray, rows: int) -> np.ndarray:
    """The offsets of the database's first ``rows`` rows (its last image cut there)."""
    keep = offsets[offsets < rows]
    return np.r_[keep, rows]
