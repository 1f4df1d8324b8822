"""The one ranking: every database image scores as its best region's similarity to the query.

Every search of the project goes through :func:`rank_images`: the ``search`` command, the
instance evaluation, the scalability runs, whole-image (VLAD) search (one "region" per image),
the search page and the benchmark.  Similarities are inner products of post-processed
(l2-normalised) vectors, i.e. cosine similarities.  The region matrix is read in chunks of
``chunk`` rows, so memory stays bounded by ``queries x chunk`` similarities plus
``queries x images`` scores whatever the number of regions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Regions per matrix product: 2^18 x 2048 float32 features = 2 GiB would be too much at once for
# many queries; 2^18 similarities per query (1 MiB) are cheap.  A collection below this size is
# ranked by ONE product, exactly as before chunking existed.
DEFAULT_CHUNK = 1 << 18


@dataclass
class Ranking:
    """One query's result.

    Attributes:
      order: (N,) image indices, best first.
      scores: (N,) image scores in that order (the best region's similarity; -inf for an image
        without regions).
      regions: (N,) row of each ranked image's best region (-1: an image without regions).
      boxes: (N, 4) that region's box in the image's original pixels (NaN without regions).
    """

    order: np.ndarray
    scores: np.ndarray
    regions: np.ndarray
    boxes: np.ndarray

    def top(self, k: int) -> "Ranking":
        return Ranking(self.order[:k], self.scores[:k], self.regions[:k], self.boxes[:k])


def best_region_scores(queries: np.ndarray, features: np.ndarray, offsets: np.ndarray,
                       chunk: int = DEFAULT_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """Each image's best region for each query.

    Args:
      queries: (q, D) float32 query vectors.
      features: (R, D) float32 region vectors, the regions of image i being rows
        ``offsets[i]:offsets[i+1]``.
      offsets: (N+1,) non-decreasing row offsets, ``offsets[0] == 0``, ``offsets[-1] == R``.
      chunk: regions per matrix product.

    Returns:
      (scores (q, N) float32, -inf for an image without regions; best (q, N) int64 row of the
      first region reaching that score, -1 without regions).

    Raises:
      ValueError: inconsistent shapes or offsets.
    """
    queries = np.asarray(queries, np.float32)
    offsets = np.asarray(offsets, np.int64)
    n_images, n_regions = len(offsets) - 1, len(features)
    if queries.ndim != 2 or np.ndim(features) != 2 or queries.shape[1] != features.shape[1]:
        raise ValueError(f"queries {queries.shape} and features {np.shape(features)} must be (q, D) and (R, D)")
    if n_images < 0 or offsets[0] != 0 or offsets[-1] != n_regions or np.any(np.diff(offsets) < 0):
        raise ValueError(f"offsets must rise from 0 to the {n_regions} regions")
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    owner = np.repeat(np.arange(n_images), np.diff(offsets))
    scores = np.full((len(queries), n_images), -np.inf, np.float32)
    best = np.full((len(queries), n_images), -1, np.int64)
    for lo in range(0, n_regions, chunk):
        hi = min(lo + chunk, n_regions)
        sims = queries @ np.asarray(features[lo:hi], np.float32).T  # (q, hi - lo)
        imgs = owner[lo:hi]
        # Runs of one image inside this chunk (an image may straddle two chunks).
        starts = np.r_[0, np.flatnonzero(np.diff(imgs)) + 1]
        run_img = imgs[starts]
        run_max = np.maximum.reduceat(sims, starts, axis=1)
        # First row of each run reaching the run's maximum.
        is_max = sims == np.repeat(run_max, np.diff(np.r_[starts, hi - lo]), axis=1)
        for qi in range(len(queries)):
            rows = np.flatnonzero(is_max[qi])
            runs = np.searchsorted(starts, rows, side="right") - 1
            first_rows = rows[np.unique(runs, return_index=True)[1]]
            better = run_max[qi] > scores[qi, run_img]  # strictly: an earlier chunk's tie wins
            scores[qi, run_img[better]] = run_max[qi, better]
            best[qi, run_img[better]] = lo + first_rows[better]
    return scores, best


def order_images(scores: np.ndarray, top: int | None = None) -> np.ndarray:
    """Image indices by decreasing score, ties by index (a stable sort), the first ``top``.

    With ``top`` the full sort is avoided (millions of images): the result equals the first
    ``top`` of the stable full sort.
    """
    n = len(scores)
    if top is None or top >= n:
        return np.argsort(-scores, kind="stable")
    if top <= 0:
        return np.zeros(0, np.int64)
    kth = np.partition(-scores, top - 1)[top - 1]
    candidates = np.flatnonzero(-scores <= kth)  # ascending index: ties stay in index order
    return candidates[np.argsort(-scores[candidates], kind="stable")][:top]


def rank_images(queries: np.ndarray, features: np.ndarray, offsets: np.ndarray,
                boxes: np.ndarray | None = None, top: int | None = None,
                chunk: int = DEFAULT_CHUNK) -> list[Ranking]:
    """Ranks every image for every query by its best region.

    Args:
      queries: (q, D) post-processed query vectors.
      features: (R, D) post-processed region vectors (an array or an HDF5 dataset: read by chunk).
      offsets: (N+1,) row offsets of each image's regions.
      boxes: (R, 4) region boxes, or None (then every returned box is NaN).
      top: keep the first ``top`` images of each ranking (None: all).
      chunk: regions per matrix product.

    Returns:
      One :class:`Ranking` per query.
    """
    scores, best = best_region_scores(queries, features, offsets, chunk)
    out = []
    for qi in range(len(scores)):
        order = order_images(scores[qi], top)
        regions = best[qi, order]
        found = np.full((len(order), 4), np.nan, np.float32)
        has = regions >= 0
        if boxes is not None and has.any():
            found[has] = np.asarray(boxes)[regions[has]]
        out.append(Ranking(order, scores[qi, order], regions, found))
    return out


def top_regions(queries: np.ndarray, features: np.ndarray, k: int,
                chunk: int = DEFAULT_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most similar regions of each query, exactly (the reference of an ANN index).

    Returns:
      (ids (q, k') int64, scores (q, k') float32), best first, ``k' = min(k, R)``; ties by row.
    """
    queries = np.asarray(queries, np.float32)
    n = len(features)
    k = min(int(k), n)
    ids = np.zeros((len(queries), 0), np.int64)
    sc = np.zeros((len(queries), 0), np.float32)
    for lo in range(0, n, chunk):
        sims = queries @ np.asarray(features[lo:lo + chunk], np.float32).T
        ids = np.concatenate([ids, np.broadcast_to(np.arange(lo, lo + sims.shape[1]), sims.shape)], 1)
        sc = np.concatenate([sc, sims], 1)
        if sc.shape[1] > k:
            keep = np.sort(np.argpartition(-sc, k - 1, axis=1)[:, :k], axis=1)
            ids, sc = np.take_along_axis(ids, keep, 1), np.take_along_axis(sc, keep, 1)
    order = np.argsort(-sc, axis=1, kind="stable")
    return np.take_along_axis(ids, order, 1), np.take_along_axis(sc, order, 1)


def images_from_regions(region_ids: np.ndarray, offsets: np.ndarray, top: int | None = None) -> list[np.ndarray]:
    """Candidate regions (e.g. an ANN index's, best first) -> each query's image ranking.

    The same reduction as :func:`rank_images`: an image ranks at its best (first) candidate
    region; images without a candidate are not ranked.

    Args:
      region_ids: (q, c) region rows per query, best first; ``-1`` pads (no candidate).
      offsets: (N+1,) row offsets of each image's regions.
      top: keep the first ``top`` images of each ranking (None: all).

    Returns:
      One (<= c,) int64 array of image indices per query, best first.

    Raises:
      ValueError: a region row outside the offsets.
    """
    region_ids = np.asarray(region_ids, np.int64)
    offsets = np.asarray(offsets, np.int64)
    out = []
    for row in region_ids:
        row = row[row >= 0]
        if len(row) and row.max() >= offsets[-1]:
            raise ValueError(f"region {int(row.max())} outside the {int(offsets[-1])} regions")
        # An empty image has offsets[i] == offsets[i + 1]: side="right" skips it.
        images = np.searchsorted(offsets, row, side="right") - 1
        _, first = np.unique(images, return_index=True)
        out.append(images[np.sort(first)][:top])
    return out
