"""Instance search over a region store: one matrix product, an image scores as its best region.

Region features are post-processed as in the paper (l2 -> PCA-whitening -> l2); the whitening
is learned on a DIFFERENT collection (:func:`learn_whitening`) and saved next to the index as
``<index>.whitening.npz`` (:func:`whitening_path`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dasr.store import RegionStore
from dasr.whitening import learn_pca_whitening, load_whitening, postprocess, save_whitening


def whitening_path(index: str | os.PathLike) -> Path:
    """Where an index's whitening lives: ``<index>.whitening.npz``."""
    return Path(f"{os.fspath(index)}.whitening.npz")


def learn_whitening(source: RegionStore, out: str | os.PathLike, dim: int | None = None) -> dict:
    """Learns PCA-whitening on ``source``'s (l2-normalised) region features and saves it.

    Args:
      source: a store of ANOTHER collection, extracted with the same configuration.
      out: destination ``.npz`` (atomic).
      dim: output dimension (None: all components with non-negligible variance).

    Returns:
      The whitening parameters.

    Raises:
      ValueError: fewer than two regions in ``source``.
    """
    feats = source.arrays["features"]
    if len(feats) < 2:
        raise ValueError(f"{source.path}: needs at least 2 regions to learn a whitening, has {len(feats)}")
    x = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    if dim is not None and dim > min(len(x) - 1, x.shape[1]):
        raise ValueError(f"{source.path}: a {dim}-d whitening needs more than {dim} regions "
                         f"and dimensions; it has {len(x)} regions of {x.shape[1]} dimensions")
    params = learn_pca_whitening(x, dim=dim)
    save_whitening(out, params, {"learned_from": os.fspath(source.path), "regions": int(len(feats)),
                                 "config": source.config})
    return params


@dataclass
class Ranking:
    """One query's result over the whole database.

    Attributes:
      order: (N,) image indices, best first.
      scores: (N,) image scores in that order (the best region's cosine similarity).
      regions: (N,) row of the best region of each ranked image (-1: image without regions).
      boxes: (N, 4) that region's box in the image's original pixels (NaN without regions).
    """

    order: np.ndarray
    scores: np.ndarray
    regions: np.ndarray
    boxes: np.ndarray

    def top(self, k: int) -> "Ranking":
        return Ranking(self.order[:k], self.scores[:k], self.regions[:k], self.boxes[:k])


class SearchIndex:
    """Post-processed region features of one store, ready for queries.

    Args:
      store: the database's region store.
      whitening: parameters from :func:`learn_whitening` / :func:`load_whitening`, or None for
        l2-normalised raw features (``--pca none``).
    """

    def __init__(self, store: RegionStore, whitening: dict | None = None):
        self.store = store
        self.whitening = whitening
        self.features = postprocess(store.arrays["features"].astype(np.float32), whitening).astype(np.float32)
        counts = np.diff(store.offsets)
        self._nonempty = np.flatnonzero(counts > 0)
        self._starts = store.offsets[:-1][self._nonempty]

    @classmethod
    def open(cls, index: str | os.PathLike, pca: str | os.PathLike | None = "auto",
             expected_config: dict | None = None) -> "SearchIndex":
        """Opens a store and its whitening.

        Args:
          index: the store path.
          pca: ``"auto"`` (``<index>.whitening.npz`` if it exists, else none), ``None``/``"none"``
            (no whitening), or a path to a whitening file.
          expected_config: refuse a store extracted with another configuration.
        """
        store = RegionStore.open(index, expected_config=expected_config)
        params = None
        if pca == "auto":
            p = whitening_path(index)
            params = load_whitening(p)[0] if p.is_file() else None
        elif pca not in (None, "none"):
            params = load_whitening(pca)[0]
        return cls(store, params)

    def describe(self, raw_feature: np.ndarray) -> np.ndarray:
        """Post-processes a raw query feature like the database's."""
        return postprocess(np.asarray(raw_feature, np.float32)[None], self.whitening)[0].astype(np.float32)

    def search(self, query: np.ndarray, top: int | None = None) -> Ranking:
        """Ranks every database image by its best region's similarity to ``query``.

        Args:
          query: a post-processed query vector (see :meth:`describe`).
          top: keep only the first ``top`` images (None: all).
        """
        return self.search_many(query[None], top)[0]

    def search_many(self, queries: np.ndarray, top: int | None = None) -> list[Ranking]:
        """:meth:`search` for (q, D) queries with one matrix product."""
        n_images = len(self.store)
        sims = queries.astype(np.float32) @ self.features.T  # (q, R)
        results = []
        for row in sims:
            image_scores = np.full(n_images, -np.inf, np.float32)
            best_region = np.full(n_images, -1, np.int64)
            if len(self._nonempty):
                image_scores[self._nonempty] = np.maximum.reduceat(row, self._starts)
                # The best region of each image: the first row reaching the image's maximum.
                is_best = row == np.repeat(image_scores, np.diff(self.store.offsets))
                rows = np.flatnonzero(is_best)
                owners = self.store.region_image[rows]
                first = np.unique(owners, return_index=True)
                best_region[first[0]] = rows[first[1]]
            order = np.argsort(-image_scores, kind="stable")
            if top is not None:
                order = order[:top]
            regions = best_region[order]
            boxes = np.full((len(order), 4), np.nan, np.float32)
            has = regions >= 0
            boxes[has] = self.store.arrays["boxes"][regions[has]]
            results.append(Ranking(order, image_scores[order], regions, boxes))
        return results
