"""What one cell does on one benchmark, per task: instance search, VLAD image search, scalability.

A runner is ``runner(cfg, spec, cell, extractor, out, quiet) -> [(group, SearchResult), ...]``:
instance and image search give one result (group ``""``); the scalability runner one per
distractor step and search (:mod:`dasr.experiments.scalability`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from dasr.errors import InputError
from dasr.eval import image_search, instance
from dasr.eval.image_search import VladSettings
from dasr.eval.records import SearchResult
from dasr.experiments.benchmarks import BenchSpec
from dasr.experiments.cells import Cell
from dasr.experiments.config import pca_dim
from dasr.experiments.scalability import run_scalability
from dasr.features.extractor import Extractor

__all__ = ["Runner", "RUNNERS", "run_instance_cell", "run_image_search_cell", "vlad_settings"]

Runner = Callable[[dict, BenchSpec, Cell, Extractor, Path, bool], list[tuple[str, SearchResult]]]


def run_instance_cell(cfg: dict, spec: BenchSpec, cell: Cell, extractor: Extractor, out: Path,
                      quiet: bool) -> list[tuple[str, SearchResult]]:
    """Instance search (Tables 1/2, Figs. 4/5/7): :func:`dasr.eval.instance.evaluate` of the cell."""
    result = instance.evaluate(
        extractor, spec.name, spec.root, work=cfg["work"], pca=cfg["pca"], pca_benchmark=spec.pca_benchmark,
        pca_root=spec.pca_root, pca_dim=pca_dim(cfg), ks=tuple(cfg["ks"]), out=out, progress=not quiet,
        subsample=cfg["subsample"], pca_subsample=cfg["pca_subsample"], query=cfg["query"])
    return [("", result)]


def vlad_settings(cfg: dict) -> VladSettings:
    """The config's ``vlad`` table (and ``pca``, ``pca_dim``) as :class:`~dasr.eval.image_search.VladSettings`.

    Raises:
      ValueError: an unknown VLAD option.
    """
    v = dict(cfg["vlad"])
    known = set(VladSettings.__dataclass_fields__) - {"pca", "pca_dim"}
    unknown = set(v) - known
    if unknown:
        raise InputError(f"unknown vlad option(s) {sorted(unknown)}; known: {sorted(known)}")
    return VladSettings(pca=cfg["pca"], pca_dim=pca_dim(cfg), **v)


def run_image_search_cell(cfg: dict, spec: BenchSpec, cell: Cell, extractor: Extractor, out: Path,
                          quiet: bool) -> list[tuple[str, SearchResult]]:
    """Whole-image search (Table 3): :func:`dasr.eval.image_search.evaluate_image_search` of the cell."""
    result = image_search.evaluate_image_search(
        extractor, spec.name, spec.root, work=cfg["work"], pca_benchmark=spec.pca_benchmark, pca_root=spec.pca_root,
        settings=vlad_settings(cfg), ks=tuple(cfg["ks"]), out=out, progress=not quiet,
        subsample=cfg["subsample"], pca_subsample=cfg["pca_subsample"])
    return [("", result)]


RUNNERS: dict[str, Runner] = {"instance": run_instance_cell, "image-search": run_image_search_cell,
                              "scalability": run_scalability}
