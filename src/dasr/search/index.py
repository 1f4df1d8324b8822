"""A searchable index: a region store's post-processed features, ready for queries.

Region features are post-processed as in the paper (l2 -> PCA-whitening -> l2); the whitening
and its files next to the store live in :mod:`dasr.features.whitening`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dasr.features.whitening import WhiteningChoice, choose_whitening, load_whitening_for, postprocess
from dasr.search.ranking import Ranking, rank_images
from dasr.store import RegionStore

@dataclass(frozen=True)
class Hit:
    """One returned image: where the instance is (its best region's box, original pixels)."""

    rank: int
    image: str
    score: float
    box: tuple[float, float, float, float]
    region: int

    def to_json(self) -> dict:
        return {"rank": self.rank, "image": self.image, "score": self.score,
                "box": [round(v, 1) for v in self.box]}


class SearchIndex:
    """Post-processed region features of one store, ready for queries.

    Args:
      store: the database's region store.
      whitening: parameters from :func:`learn_whitening` / :func:`load_whitening`, or None for
        l2-normalised raw features.
    """

    def __init__(self, store: RegionStore, whitening: dict | None = None):
        self.store = store
        self.whitening = whitening
        self.features = postprocess(store.features.astype(np.float32), whitening).astype(np.float32)
        # A compressed index (:mod:`dasr.search.region_index`): candidates, then exact re-ranking.
        self.region_index = None

    @classmethod
    def open(cls, index: str | os.PathLike, pca: str | os.PathLike | None = "auto",
             expected_config: dict | None = None) -> tuple["SearchIndex", WhiteningChoice]:
        """Opens a store and the whitening ``pca`` chooses (:func:`choose_whitening`).

        Args:
          index: the store path.
          pca: see :func:`choose_whitening`.
          expected_config: refuse a store extracted with another configuration.

        Returns:
          (the index, which whitening it uses and why).

        Raises:
          InputError: a whitening learned on features that mean something else than the store's
            (:func:`~dasr.features.whitening.check_whitening`), and the errors of the two opens.
        """
        store = RegionStore.open(index, expected_config=expected_config)
        choice = choose_whitening(index, pca)
        params = load_whitening_for(choice.path, store.config) if choice.path else None
        return cls(store, params), choice

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

    def hits(self, ranking: Ranking) -> list[Hit]:
        """The images of a ranking that have a region, with their names and boxes.

        An image without any region (nothing salient was found in it) has no box to show and
        no score (-inf): it is never returned.
        """
        found = np.isfinite(ranking.scores) & (ranking.regions >= 0)
        return [Hit(rank, self.store.images[int(i)], float(s), tuple(float(v) for v in b), int(r))
                for rank, (i, s, b, r) in enumerate(zip(ranking.order[found], ranking.scores[found],
                                                        ranking.boxes[found], ranking.regions[found]), 1)]

    def search_many(self, queries: np.ndarray, top: int | None = None) -> list[Ranking]:
        """:meth:`search` for (q, D) queries (:func:`dasr.search.ranking.rank_images`; through
        :attr:`region_index`'s candidates when one is attached, else exactly)."""
        if self.region_index is not None:
            return self.region_index.rank_images(queries, top)
        return rank_images(queries, self.features, self.store.offsets, self.store.arrays["boxes"], top)
