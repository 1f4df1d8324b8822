"""Typed result records of the evaluations, each with ONE JSON form.

Every evaluation (instance search :func:`dasr.eval.instance.evaluate`, VLAD image search
:mod:`dasr.eval.image_search`, the scalability runs of :mod:`dasr.experiments`) returns a
:class:`SearchResult`; ``results.json`` is its :meth:`SearchResult.to_json` and reports read its
fields, never dict keys guessed with ``.get()``.  ``from_json`` is strict: a missing or unknown key
raises, so a writer and a reader cannot drift apart silently.

The JSON form of a :class:`QueryScore` is flat (``{"name", <metric>: value, ..., "ious"}``), the
layout ``results.json`` has always had (``benchmarks/compare_modes.py`` reads ``per_query[i][metric]``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dasr.errors import InputError

__all__ = ["RESULT_JSON_KEYS", "TASKS", "WHITENING_MODES", "QueryScore", "ScalabilityInfo", "SearchResult",
           "WhiteningInfo", "mean_scores"]

TASKS = ("instance", "image-search", "scalability")
WHITENING_MODES = ("other", "none")


def _check_keys(cls: type, d: dict, required: set[str], optional: set[str] = frozenset()) -> None:
    """Raises ValueError naming the missing and unknown keys of ``d`` for record ``cls``."""
    missing = required - set(d)
    unknown = set(d) - required - set(optional)
    if missing or unknown:
        parts = ([f"missing {sorted(missing)}"] if missing else []) + ([f"unknown {sorted(unknown)}"] if unknown else [])
        raise InputError(f"{cls.__name__}.from_json: {'; '.join(parts)}")


@dataclass(frozen=True)
class QueryScore:
    """The scores of one query.

    Attributes:
      name: the query's name.
      ap: metric name (``"ap"``, ``"ap@10/truncated"``, ``"ap@10/min"``, ...) -> value.
      ious: IoU of the returned box of each relevant image with its ground-truth box (empty when
        the benchmark has no boxes or the search returns none).
    """

    name: str
    ap: dict[str, float]
    ious: list[float] = field(default_factory=list)

    def to_json(self) -> dict:
        """``{"name": ..., <metric>: value, ..., "ious": [...]}`` (metrics in their order)."""
        if "name" in self.ap or "ious" in self.ap:
            raise InputError(f"query {self.name}: a metric may not be called 'name' or 'ious'")
        return {"name": self.name, **{k: float(v) for k, v in self.ap.items()}, "ious": [float(v) for v in self.ious]}

    @classmethod
    def from_json(cls, d: dict) -> QueryScore:
        """The inverse of :meth:`to_json`.

        Raises:
          ValueError: ``name`` or ``ious`` is missing.
        """
        if "name" not in d or "ious" not in d:
            raise InputError(f"QueryScore.from_json: needs 'name' and 'ious', got keys {sorted(d)}")
        ap = {k: float(v) for k, v in d.items() if k not in ("name", "ious")}
        return cls(str(d["name"]), ap, [float(v) for v in d["ious"]])


def mean_scores(per_query: list[QueryScore]) -> dict[str, float]:
    """THE mean over queries of each metric (the metrics of the first query, in its order).

    Args:
      per_query: the scored queries (every one must have the first one's metrics).

    Returns:
      metric -> mean value; empty when there are no queries.

    Raises:
      KeyError: a query lacks one of the first query's metrics.
    """
    keys = per_query[0].ap.keys() if per_query else []
    return {k: float(np.mean([p.ap[k] for p in per_query])) for k in keys}


@dataclass(frozen=True)
class WhiteningInfo:
    """How the descriptors were PCA-whitened.

    Attributes:
      mode: ``other`` (learned on another collection than the searched one) or ``none``.
      source: the learning collection (benchmark name; None with ``mode == "none"``).
      dim: the output dimension of the whitened descriptors (None: not whitened).
      learning_vectors: how many vectors it was learned from (regions for instance search, images
        for VLAD image search).
      path: the file the whitening was saved to (None: not saved).
      note: anything the reader must know (e.g. a dimension cap).
    """

    mode: str
    source: str | None
    dim: int | None
    learning_vectors: int | None
    path: str | None
    note: str = ""

    def __post_init__(self) -> None:
        if self.mode not in WHITENING_MODES:
            raise InputError(f"whitening mode must be one of {WHITENING_MODES}, got {self.mode!r}")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> WhiteningInfo:
        """The inverse of :meth:`to_json`.

        Raises:
          ValueError: a missing or unknown key, or an unknown mode.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        _check_keys(cls, d, names - {"note"}, {"note"})
        return cls(**d)


@dataclass(frozen=True)
class ScalabilityInfo:
    """One step of a scalability run: the database grown by distractors, searched one way.

    Attributes:
      distractors: distractor images added to the benchmark's database.
      distractor_regions: their regions.
      regions: every region searched (database + distractors).
      search: ``exact`` or ``ann:<index kind>``.
      recall_vs_exact_k: the k of the region recall against the exact search.
      recall_vs_exact: that recall (1.0 for the exact search itself).
      index: the index description (requested / actual kind, factory, bytes per region, ...).
      build_seconds: time to build the index (None for the exact search).
    """

    distractors: int
    distractor_regions: int
    regions: int
    search: str
    recall_vs_exact_k: int
    recall_vs_exact: float
    index: dict
    build_seconds: float | None

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> ScalabilityInfo:
        """The inverse of :meth:`to_json`.

        Raises:
          ValueError: a missing or unknown key.
        """
        _check_keys(cls, d, {f.name for f in dataclasses.fields(cls)})
        return cls(**d)


# The keys of ``results.json`` in their order (the order it has always had, the new keys after).
RESULT_JSON_KEYS: tuple[str, ...] = (
    "task", "benchmark", "subsample", "database_images", "method", "config", "pca", "ap_definition", "mean",
    "localization_recall", "regions_per_image", "images_in_store", "queries", "per_query", "seconds", "store",
    "notes", "missing_images", "scalability", "vlad")


@dataclass
class SearchResult:
    """The result of one method on one benchmark (one line of a results table).

    Attributes:
      task: ``instance``, ``image-search`` or ``scalability``.
      benchmark: the registry name of the searched benchmark.
      method: the region method (e.g. ``dasr-star``).
      config: the extractor's configuration (what the store folder is hashed from).
      subsample: every n-th database image was kept (1: the whole benchmark).
      database_images: images searched (benchmark database, plus distractors for scalability).
      queries: queries scored.
      pca: the whitening.
      ap_definition: the AP protocol (``oxford``, ``holidays``, ...) or, for instance benchmarks,
        AP@k variant -> its definition (printed with each result).
      mean: metric -> mean over queries (:func:`mean_scores` of ``per_query``).
      per_query: each query's scores, in the benchmark's query order.
      localization_recall: IoU threshold (``"0.5"``) -> fraction of relevant images whose returned
        box reaches it (None: nothing to localize).
      regions_per_image: mean regions per database image.
      images_in_store: images in the database store (it may hold more than ``database_images``:
        a subsampled run reuses the whole benchmark's store).
      seconds: timing name -> seconds.
      store: the database store's path (None: no single store).
      notes: anything the reader must know about this result.
      missing_images: database images absent from the store (skipped at extraction).
      scalability: the distractor step and search (scalability runs only).
      vlad: the VLAD settings and codebook source (image search only).
    """

    task: str
    benchmark: str
    method: str
    config: dict
    subsample: int
    database_images: int
    queries: int
    pca: WhiteningInfo
    ap_definition: dict[str, str] | str
    mean: dict[str, float]
    per_query: list[QueryScore]
    localization_recall: dict[str, float] | None
    regions_per_image: float
    images_in_store: int
    seconds: dict[str, float]
    store: str | None
    notes: list[str] = field(default_factory=list)
    scalability: ScalabilityInfo | None = None
    vlad: dict | None = None
    missing_images: int = 0

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise InputError(f"task must be one of {TASKS}, got {self.task!r}")

    def to_json(self) -> dict:
        """The ``results.json`` form (keys in :data:`RESULT_JSON_KEYS`)."""
        d: dict[str, Any] = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["pca"] = self.pca.to_json()
        d["per_query"] = [p.to_json() for p in self.per_query]
        d["scalability"] = self.scalability.to_json() if self.scalability is not None else None
        return {k: d[k] for k in RESULT_JSON_KEYS}

    @classmethod
    def from_json(cls, d: dict) -> SearchResult:
        """The inverse of :meth:`to_json`.

        Raises:
          ValueError: a missing or unknown key (in this record or a nested one).
        """
        names = {f.name for f in dataclasses.fields(cls)}
        _check_keys(cls, d, names)
        kw = dict(d)
        kw["pca"] = WhiteningInfo.from_json(d["pca"])
        kw["per_query"] = [QueryScore.from_json(p) for p in d["per_query"]]
        kw["scalability"] = ScalabilityInfo.from_json(d["scalability"]) if d["scalability"] is not None else None
        return cls(**kw)
