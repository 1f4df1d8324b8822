"""The benchmarks of an experiment, their whitening sources and distractors, checked before any work."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dasr.errors import InputError
from dasr.eval.datasets import BENCHMARKS, DatasetMissingError, load_benchmark
from dasr.eval.datasets.copy_paste import BENCHMARK_OF_MODE, SCENE_COLLECTIONS
from dasr.eval.pca_source import pca_source

__all__ = ["BenchSpec", "DistractorsMissingError", "resolve_benchmarks", "distractor_items", "check_datasets"]


@dataclass(frozen=True)
class BenchSpec:
    """One searched benchmark of a run.

    Attributes:
      name: registry name (:data:`dasr.eval.datasets.BENCHMARKS`).
      root: its folder (None: the loader's default).
      pca_benchmark: the collection its whitening (and VLAD codebook) is learned on.
      pca_root: that collection's folder (None: the loader's default).
    """

    name: str
    root: str | None = None
    pca_benchmark: str | None = None
    pca_root: str | None = None


class DistractorsMissingError(DatasetMissingError):
    """The scalability test's distractor folder / list is missing."""

    def __init__(self, path: str | os.PathLike, detail: str = "no such folder or image list") -> None:
        self.dataset = "distractors"
        self.path = Path(path)
        FileNotFoundError.__init__(
            self, f"distractors not found: {detail}: {path}\n"
                  "expected: a folder of images (searched recursively), a text file with one image "
                  "path per line, or a benchmark name (e.g. paris-landmarks); set it with "
                  "--set distractors=PATH")


def resolve_benchmarks(cfg: dict) -> list[BenchSpec]:
    """The benchmarks of the run (``bench`` replaces the list) with their whitening source.

    A requested source equal to the benchmark itself (e.g. the config-wide ``pca_benchmark``
    applied to that very collection) falls back to the benchmark's default source
    (:func:`dasr.eval.pca_source.pca_source`): the searched collection never learns its own whitening.

    Raises:
      ValueError: no benchmark, an unknown benchmark or whitening source, or an entry that is
        not a name or a table with a ``name``.
    """
    if cfg["bench"]:
        entries: list = [{"name": cfg["bench"], "root": cfg["bench_root"] or None}]
    else:
        entries = list(cfg["benchmarks"])
    if not entries:
        raise InputError(f"{cfg['name']}: no benchmark (set `benchmarks` or --set bench=NAME)")
    specs = []
    for e in entries:
        e = {"name": e} if isinstance(e, str) else dict(e)
        name = e.get("name", "")
        if name not in BENCHMARKS:
            raise InputError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
        requested = e.get("pca_benchmark") or cfg["pca_benchmark"] or None
        source = pca_source(name, None if requested == name else requested)
        specs.append(BenchSpec(name, e.get("root") or None, source, e.get("pca_root") or None))
    return specs


def distractor_items(cfg: dict, spec: BenchSpec) -> list[str]:
    """The distractor sources of a scalability run on ``spec`` (instance-track: paris-landmarks by default).

    Raises:
      ValueError: none configured for a benchmark without a default.
    """
    d = cfg["distractors"]
    items = [str(x) for x in (d if isinstance(d, list) else [d]) if str(x)]
    if not items:
        if spec.name == "instance-track":
            return ["paris-landmarks"]
        raise InputError(f"scalability on {spec.name}: no distractors; --set distractors=FOLDER (or a list "
                         "file, or a benchmark name)")
    return items


def check_datasets(cfg: dict, specs: list[BenchSpec]) -> None:
    """Loads every benchmark the run needs (and checks the distractors) before any work.

    Raises:
      DatasetMissingError: the first missing dataset (its message names path, layout, source).
      ValueError: a benchmark used as its own distractors, or a copy-paste set's distractors drawn
        from the collections its images come from (instance-track, paris-landmarks, paris6k-subset).
    """
    needs_source = cfg["pca"] == "other" or cfg["task"] == "image-search"
    for spec in specs:
        load_benchmark(spec.name, spec.root)
        if needs_source:
            load_benchmark(spec.pca_benchmark, spec.pca_root)
        if cfg["task"] == "scalability":
            for item in distractor_items(cfg, spec):
                if item in BENCHMARKS:
                    if item == spec.name:
                        raise InputError(f"the distractors of {spec.name} cannot be {item} itself")
                    if spec.name in BENCHMARK_OF_MODE.values() and item in ("instance-track", *SCENE_COLLECTIONS):
                        raise InputError(f"the distractors of {spec.name} cannot be {item}: its queries, crops and "
                                         "scenes come from instance-track and paris-landmarks")
                    load_benchmark(item, cfg["distractors_root"] or None)
                elif not Path(item).exists():
                    raise DistractorsMissingError(item)
