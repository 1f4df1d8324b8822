"""A searchable index: a region store's post-processed features, and its whitening files.

Region features are post-processed as in the paper (l2 -> PCA-whitening -> l2); the whitening
is learned on a DIFFERENT collection (:func:`learn_whitening`) and saved next to the index,
one file per source collection and dimension (:func:`whitening_path`), so that runs with
another source or dimension never overwrite each other's whitening.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dasr.errors import InputError
from dasr.features.whitening import learn_pca_whitening, load_whitening, postprocess, save_whitening
from dasr.search.ranking import Ranking, rank_images
from dasr.store import RegionStore

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def whitening_path(index: str | os.PathLike, source: str, dim: int | None) -> Path:
    """Where an index keeps the whitening learned on ``source`` with ``dim`` output dimensions.

    ``<index>.whitening-<source>-<dim>.npz`` (``all`` for every usable component).
    """
    name = _UNSAFE.sub("_", source).strip("_") or "source"
    return Path(f"{os.fspath(index)}.whitening-{name}-{'all' if dim is None else int(dim)}.npz")


def whitening_files(index: str | os.PathLike) -> list[Path]:
    """The whitening files kept next to ``index``, sorted."""
    index = Path(index)
    return sorted(index.parent.glob(f"{glob.escape(index.name)}.whitening-*.npz"))


def learn_whitening(source: RegionStore, out: str | os.PathLike, dim: int | None = None,
                    progress: bool = True) -> dict:
    """Learns PCA-whitening on ``source``'s (l2-normalised) region features and saves it.

    Args:
      source: a store of ANOTHER collection, extracted with the same configuration.
      out: destination ``.npz`` (atomic).
      dim: output dimension (None: all components with non-negligible variance).
      progress: show a bar while learning.

    Returns:
      The whitening parameters.

    Raises:
      ValueError: fewer than two regions in ``source``, or more dimensions than it can give.
    """
    feats = source.features
    if len(feats) < 2:
        raise InputError(f"{source.path}: needs at least 2 regions to learn a whitening, has {len(feats)}")
    x = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    if dim is not None and dim > min(len(x) - 1, x.shape[1]):
        raise InputError(f"{source.path}: a {dim}-d whitening needs more than {dim} regions "
                         f"and dimensions; it has {len(x)} regions of {x.shape[1]} dimensions")
    params = learn_pca_whitening(x, dim=dim, progress=progress)
    save_whitening(out, params, {"learned_from": os.fspath(source.path), "regions": int(len(feats)),
                                 "config": source.config})
    return params


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


@dataclass(frozen=True)
class WhiteningChoice:
    """Which whitening a search uses: ``path`` None = none (l2-normalised raw features)."""

    path: Path | None
    reason: str

    def describe(self) -> str:
        return f"whitening: {self.path} ({self.reason})" if self.path else f"whitening: none ({self.reason})"


def choose_whitening(index: str | os.PathLike, pca: str | os.PathLike | None) -> WhiteningChoice:
    """The whitening ``pca`` asks for.

    Args:
      index: the store path.
      pca: ``"auto"`` (the one whitening file next to the index, none if there is none),
        ``None``/``"none"``, or a whitening file's path.

    Raises:
      ValueError: ``auto`` with several whitening files next to the index (they are listed),
        or a path that is not a file.
    """
    if pca in (None, "none"):
        return WhiteningChoice(None, "asked for none")
    if pca == "auto":
        found = whitening_files(index)
        if not found:
            return WhiteningChoice(None, f"no whitening file next to {index}")
        if len(found) > 1:
            raise InputError(f"{index}: {len(found)} whitening files ({', '.join(p.name for p in found)}); "
                             "choose one with --pca PATH (or --pca none)")
        return WhiteningChoice(found[0], "the only one next to the index")
    path = Path(pca)
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a whitening file")
    if not path.is_file():
        raise InputError(f"{path}: no such whitening file")
    return WhiteningChoice(path, "given")


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
        """
        store = RegionStore.open(index, expected_config=expected_config)
        choice = choose_whitening(index, pca)
        params = load_whitening(choice.path)[0] if choice.path else None
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
