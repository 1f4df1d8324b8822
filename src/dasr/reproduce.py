"""Reproduce one of the paper's experiments from a config file (``experiments/*.toml``).

``dasr reproduce experiments/table1.toml [--set KEY=VALUE ...]`` (or :func:`run_experiment`):

1. loads the config (TOML) and applies the overrides (``a.b=value``, the value read as a TOML
   scalar or list, else as a plain string: ``--set bench=instance-track``);
2. checks that every dataset the run needs exists, BEFORE any extraction (a missing one stops
   the run with its :class:`~dasr.datasets.DatasetMissingError` message);
3. runs every cell (benchmark x method x backbone/layer x beta): instance search with
   :func:`dasr.evaluate.evaluate`, VLAD image search with :mod:`dasr.image_search`, or the
   distractor scalability test (:func:`run_scalability`); region stores are reused;
4. writes ``results/<experiment>/``: ``results.md`` and ``results.csv`` (our number, the paper's,
   the difference; ``n/a (different data)`` on data that is not the paper's), ``bootstrap.csv``
   (95% paired bootstrap CI of the reference method minus every other cell over queries),
   ``results.json`` (everything, for ``--set replot=true``) and PNG plots.

Config keys: see :data:`DEFAULTS` and ``experiments/README.md``.
"""

from __future__ import annotations

import argparse
import copy
import csv
import gc
import hashlib
import io
import json
import os
import sys
import time
import tomllib
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from dasr import metrics
from dasr.datasets import BENCHMARKS, DatasetMissingError, load_benchmark

# ----------------------------------------------------------------------------- config
DEFAULTS: dict[str, Any] = {
    "name": "",                       # experiment name: results/<name>/
    "title": "",
    "task": "instance",               # instance | image-search | scalability
    "compare": "",                    # section of the paper numbers (table1, table2, table3, fig4, ...)
    "paper_numbers": "paper_numbers.toml",  # relative to the config file
    "paper_methods": {},              # our method -> paper row (default: paper's [method_names])
    "benchmarks": [],                 # names or {name, root, pca_benchmark, pca_root}
    "bench": "",                      # replaces `benchmarks` by this one (e.g. the shipped data)
    "bench_root": "",
    "backbone": "resnet50",
    "weights": "imagenet",
    "layers": [],                     # list (for `backbone`) or {backbone: [layers]}; [] = default layer
    "methods": ["dasr-star"],
    "tau": 0.1,
    "betas": ["default"],             # "default" | "none" | number
    "extra_cells": [],                # [{method, backbone, layer, beta, label}]
    "extractor": {},                  # further `dasr evaluate` options (argparse dest names)
    "pca": "other",                   # other | none
    "pca_benchmark": "",              # "" = per benchmark / dasr.evaluate.DEFAULT_PCA_SOURCE
    "pca_dim": 0,                     # 0 = every usable component
    "ks": [10, 20, 50, 100],
    "subsample": 1,                   # keep every n-th database image (quick runs; reported)
    "ap_variant": "truncated",        # truncated | min
    "iou_thresholds": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
    "work": "results/stores",
    "out": "",                        # default results/<name>
    "keep_going": True,
    "replot": False,                  # only rewrite results.md/csv/png from results.json
    "bootstrap": {"reference": {"method": "dasr-star"}, "n_boot": 10000, "seed": 0, "alpha": 0.05, "metric": ""},
    "plot": {},
    "vlad": {},                       # image-search: k, power, residual_normalization, intra, whiten, query, max_points, seed
    "distractors": "",                # scalability: folder | list file | benchmark name | list of those
    "distractors_root": "",
    "steps": [0, 10000, 100000, 1000000],
    "baseline_max_distractors": 0,    # 0 = no cap for methods other than dasr-star
    "index": {},                      # scalability: kind, nbits, m, nlist, nprobe, k_regions, recall_k, exact
    "experiments": [],                # figures: the configs (names next to this file) to redraw
    "gallery": {"method": "dasr-star", "queries": 3, "top": 10, "pictures_benchmark": "", "pictures": 3},
}
TASKS = ("instance", "image-search", "scalability", "figures")
INDEX_DEFAULTS = {"kind": "ivfpq", "nbits": 8, "m": 0, "nlist": 0, "nprobe": 0, "k_regions": 1000,
                  "recall_k": 100, "exact": True}


class ExperimentError(ValueError):
    """Some cells failed (their errors are listed in results.md)."""


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


def load_config(path: str | os.PathLike) -> dict:
    """Reads a config file and fills in :data:`DEFAULTS` (tables are merged one level deep).

    Raises:
      FileNotFoundError: no such file. ValueError: not TOML, or an unknown key.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: {e}") from None
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"{path}: unknown config key(s) {', '.join(unknown)}; known: {', '.join(DEFAULTS)}")
    cfg = copy.deepcopy(DEFAULTS)
    for key, value in raw.items():
        if isinstance(cfg[key], dict) and isinstance(value, dict):
            cfg[key].update(value)
        else:
            cfg[key] = value
    cfg["name"] = cfg["name"] or path.stem
    cfg["_path"] = os.fspath(path)
    cfg["_overrides"] = []
    return cfg


def parse_value(text: str) -> Any:
    """A TOML scalar or list (``0.4``, ``true``, ``[0.1, "none"]``, ``"x"``), else the plain string."""
    text = text.strip()
    if text == "":
        return ""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        pass
    if text.startswith("[") and text.endswith("]"):
        # A list whose quotes the shell (or make) removed: [dasr, gap] -> ["dasr", "gap"].
        inner = text[1:-1].strip()
        return [parse_value(item) for item in inner.split(",")] if inner else []
    if text.startswith("{"):
        raise ValueError(f"{text!r}: not a valid TOML inline table")
    return text


def parse_override(text: str) -> tuple[list[str], Any]:
    """``'a.b=value'`` -> ``(['a', 'b'], value)``.

    Raises:
      ValueError: no ``=`` or an empty key part.
    """
    if "=" not in text:
        raise ValueError(f"--set {text!r}: expected KEY=VALUE")
    key, value = text.split("=", 1)
    parts = [p.strip() for p in key.strip().split(".")]
    if not all(parts):
        raise ValueError(f"--set {text!r}: empty key part in {key!r}")
    return parts, parse_value(value)


def apply_overrides(cfg: dict, overrides: Iterable[str]) -> dict:
    """Returns a copy of ``cfg`` with every ``a.b=value`` applied (top-level keys are checked)."""
    cfg = copy.deepcopy(cfg)
    for text in overrides or ():
        parts, value = parse_override(text)
        if parts[0] not in DEFAULTS:
            raise ValueError(f"--set {text!r}: unknown config key {parts[0]!r}; known: {', '.join(DEFAULTS)}")
        node = cfg
        for p in parts[:-1]:
            if not isinstance(node.get(p, {}), dict):
                raise ValueError(f"--set {text!r}: {p!r} is not a table")
            node = node.setdefault(p, {})
        node[parts[-1]] = value
        cfg.setdefault("_overrides", []).append(text)
    return cfg


def load_paper_numbers(cfg: dict) -> dict:
    """The paper numbers file named by the config (relative to the config's folder)."""
    p = Path(cfg["paper_numbers"])
    if not p.is_absolute():
        p = Path(cfg.get("_path", ".")).parent / p
    if not p.is_file():
        return {}
    with open(p, "rb") as f:
        return tomllib.load(f)


def paper_benchmarks(paper: dict, compare: str) -> set[str]:
    """The benchmarks the paper reports for ``compare`` (a table's data or a figure's)."""
    sec = paper.get(compare) or {}
    names = set(sec.get("datasets", []))
    if "dataset" in sec:
        names.add(sec["dataset"])
    names |= {k for k, v in sec.items() if k in BENCHMARKS and isinstance(v, dict)}
    if "methods" in sec:
        names |= {c for c in sec.get("columns", []) if c in BENCHMARKS}
    return names


# ----------------------------------------------------------------------------- benchmarks & cells
@dataclass(frozen=True)
class BenchSpec:
    name: str
    root: str | None = None
    pca_benchmark: str | None = None
    pca_root: str | None = None


def resolve_benchmarks(cfg: dict) -> list[BenchSpec]:
    """The benchmarks of the run (``bench`` replaces the list) with their whitening source."""
    from dasr.evaluate import DEFAULT_PCA_SOURCE

    if cfg["bench"]:
        entries: list = [{"name": cfg["bench"], "root": cfg["bench_root"] or None}]
    else:
        entries = list(cfg["benchmarks"])
    if not entries:
        raise ValueError(f"{cfg['name']}: no benchmark (set `benchmarks` or --set bench=NAME)")
    specs = []
    for e in entries:
        e = {"name": e} if isinstance(e, str) else dict(e)
        name = e.get("name", "")
        if name not in BENCHMARKS:
            raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
        src = e.get("pca_benchmark") or cfg["pca_benchmark"] or DEFAULT_PCA_SOURCE.get(name, "paris-landmarks")
        if src == name:  # never learn on the searched collection
            src = DEFAULT_PCA_SOURCE.get(name, "paris-landmarks")
        if src not in BENCHMARKS:
            raise ValueError(f"unknown pca_benchmark {src!r}; known: {', '.join(BENCHMARKS)}")
        specs.append(BenchSpec(name, e.get("root") or None, src, e.get("pca_root") or None))
    return specs


def _distractor_items(cfg: dict, spec: BenchSpec) -> list[str]:
    d = cfg["distractors"]
    items = [str(x) for x in (d if isinstance(d, list) else [d]) if str(x)]
    if not items:
        if spec.name == "instance-track":
            return ["paris-landmarks"]
        raise ValueError(f"scalability on {spec.name}: no distractors; --set distractors=FOLDER (or a list "
                         "file, or a benchmark name)")
    return items


def check_datasets(cfg: dict, specs: list[BenchSpec]) -> None:
    """Loads every benchmark the run needs (and checks the distractors) before any work.

    Raises:
      DatasetMissingError: the first missing dataset (its message names path, layout, source).
    """
    needs_source = cfg["pca"] == "other" or cfg["task"] == "image-search"
    for spec in specs:
        load_benchmark(spec.name, spec.root)
        if needs_source:
            load_benchmark(spec.pca_benchmark, spec.pca_root)
        if cfg["task"] == "scalability":
            for item in _distractor_items(cfg, spec):
                if item in BENCHMARKS:
                    if item == spec.name:
                        raise ValueError(f"the distractors of {spec.name} cannot be {item} itself")
                    load_benchmark(item, cfg["distractors_root"] or None)
                elif not Path(item).exists():
                    raise DistractorsMissingError(item)


@dataclass(frozen=True)
class Cell:
    """One configuration of the extractor."""

    method: str
    backbone: str
    layer: str | None
    beta: Any  # "default" | "none" | float
    label: str = ""

    def effective_beta(self) -> float | None:
        from dasr.regions import default_nms

        if self.beta == "none":
            return None
        if self.beta == "default":
            return default_nms("dasr" if self.method == "dasr" else "dasr-star") if self.method in (
                "dasr", "dasr-star", "fixed-box") else None
        return float(self.beta)


def _beta_text(beta: Any) -> str:
    return "no NMS" if beta == "none" else ("default β" if beta == "default" else f"β={float(beta):g}")


def _check_beta(beta: Any) -> Any:
    if beta in ("default", "none"):
        return beta
    if isinstance(beta, (int, float)) and not isinstance(beta, bool) and 0 < float(beta) <= 1:
        return float(beta)
    raise ValueError(f"beta {beta!r}: expected 'default', 'none' or a number in (0, 1]")


def build_cells(cfg: dict) -> list[Cell]:
    """methods x (backbone, layer) x betas (global methods take no beta), then ``extra_cells``."""
    from dasr.extractor import ALL_METHODS, GLOBAL_METHODS

    layers = cfg["layers"]
    if isinstance(layers, dict):
        pairs = [(bb, layer) for bb, ls in layers.items() for layer in ls]
    else:
        pairs = [(cfg["backbone"], layer) for layer in layers] or [(cfg["backbone"], None)]
    betas = [_check_beta(b) for b in (cfg["betas"] or ["default"])]
    raw = []
    for method in cfg["methods"]:
        if method not in ALL_METHODS:
            raise ValueError(f"unknown method {method!r}; known: {', '.join(ALL_METHODS)}")
        for bb, layer in pairs:
            for beta in (["default"] if method in GLOBAL_METHODS else betas):
                c = (method, bb, layer, beta)
                if c not in raw:
                    raw.append(c)
    vary = [len({c[i] for c in raw}) > 1 for i in range(4)]
    cells = []
    for method, bb, layer, beta in raw:
        parts = [p for p, v in zip((method, bb, layer or "default layer", _beta_text(beta)), vary) if v]
        cells.append(Cell(method, bb, layer, beta, " ".join(parts) or method))
    for extra in cfg["extra_cells"]:
        method = extra.get("method", "dasr-star")
        if method not in ALL_METHODS:
            raise ValueError(f"extra_cells: unknown method {method!r}")
        beta = _check_beta(extra.get("beta", "default"))
        bb = extra.get("backbone", cfg["backbone"])
        layer = extra.get("layer", pairs[0][1] if pairs[0][0] == bb else None)
        cells.append(Cell(method, bb, layer, beta, extra.get("label") or f"{method} {_beta_text(beta)}"))
    labels = [c.label for c in cells]
    if len(set(labels)) != len(labels):
        raise ValueError(f"two cells share a label: {labels}")
    return cells


def extractor_args(cfg: dict, cell: Cell) -> argparse.Namespace:
    """``dasr evaluate``'s defaults, with the config's and the cell's values."""
    from dasr import cli

    ns = cli.build_parser().parse_args(["evaluate", "--benchmark", "x"])
    for key, value in (cfg.get("extractor") or {}).items():
        dest = key.replace("-", "_")
        if not hasattr(ns, dest):
            raise ValueError(f"extractor option {key!r} is not a `dasr evaluate` option")
        setattr(ns, dest, value)
    ns.backbone, ns.weights, ns.method, ns.layer, ns.tau = cell.backbone, cfg["weights"], cell.method, cell.layer, float(cfg["tau"])
    ns.beta, ns.no_nms = None, False
    if cell.beta == "none":
        ns.no_nms = True
    elif cell.beta != "default":
        ns.beta = float(cell.beta)
    return ns


def make_extractor(cfg: dict, cell: Cell):
    from dasr import cli

    return cli.build_extractor(extractor_args(cfg, cell))


# ----------------------------------------------------------------------------- runners
def _pca_dim(cfg: dict) -> int | None:
    """``pca_dim`` 0 / "" / "all" -> None (every usable component)."""
    v = cfg["pca_dim"]
    if v in (None, "", "all", 0):
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"pca_dim must be a positive integer, 0 or 'all', got {v!r}")
    return v


def run_instance_cell(cfg: dict, spec: BenchSpec, cell: Cell, extractor, out: Path, quiet: bool) -> list[dict]:
    from dasr import evaluate as evaluate_mod

    result = evaluate_mod.evaluate(
        extractor, spec.name, spec.root, work=cfg["work"], pca=cfg["pca"], pca_benchmark=spec.pca_benchmark,
        pca_root=spec.pca_root, pca_dim=_pca_dim(cfg), ks=tuple(cfg["ks"]), out=out, progress=not quiet,
        subsample=int(cfg["subsample"]))
    return [{"group": "", "result": result}]


def vlad_settings(cfg: dict):
    from dasr.image_search import VladSettings

    v = dict(cfg.get("vlad") or {})
    known = set(VladSettings.__dataclass_fields__) - {"pca", "pca_dim"}
    unknown = set(v) - known
    if unknown:
        raise ValueError(f"unknown vlad option(s) {sorted(unknown)}; known: {sorted(known)}")
    return VladSettings(pca=cfg["pca"], pca_dim=_pca_dim(cfg), **v)


def run_image_search_cell(cfg: dict, spec: BenchSpec, cell: Cell, extractor, out: Path, quiet: bool) -> list[dict]:
    from dasr import image_search

    result = image_search.evaluate_image_search(
        extractor, spec.name, spec.root, work=cfg["work"], pca_benchmark=spec.pca_benchmark, pca_root=spec.pca_root,
        settings=vlad_settings(cfg), ks=tuple(cfg["ks"]), out=out, progress=not quiet)
    return [{"group": "", "result": result}]


def _concat_stores(stores) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features (R, D) and per-image region counts of several stores, in order."""
    feats = [s.arrays["features"] for s in stores]
    counts = [np.diff(s.offsets) for s in stores]
    names = [n for s in stores for n in s.images]
    d = feats[0].shape[1] if feats and feats[0].ndim == 2 else 0
    return (np.concatenate(feats) if feats else np.zeros((0, d), np.float32),
            np.concatenate(counts) if counts else np.zeros(0, np.int64), names)


def _database_rows(store, bench) -> tuple[np.ndarray, np.ndarray]:
    """Features and region counts of ``bench``'s database images, in its order.

    The store may hold more images (a subsampled benchmark reuses the whole one's store); an
    image it lacks (skipped at extraction) has no regions.
    """
    rows, counts = [], []
    for name in bench.database:
        try:
            i = store.index(name)
        except KeyError:
            counts.append(0)
            continue
        lo, hi = int(store.offsets[i]), int(store.offsets[i + 1])
        rows.append(np.arange(lo, hi))
        counts.append(hi - lo)
    picked = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    return store.arrays["features"][picked].astype(np.float32), np.asarray(counts, np.int64)


def distractor_stores(cfg: dict, spec: BenchSpec, extractor, limit: int, progress: bool) -> list:
    """Region stores of the distractor images (the first ``limit`` of each folder / list)."""
    from dasr.evaluate import config_hash, ensure_store, write_list
    from dasr.extract import extract_collection, read_image_list
    from dasr.store import RegionStore

    work = Path(cfg["work"])
    stores = []
    for item in _distractor_items(cfg, spec):
        if item in BENCHMARKS:
            b = load_benchmark(item, cfg["distractors_root"] or None)
            stores.append(RegionStore.open(ensure_store(extractor, b, work, "pca-source", progress)))
            continue
        base, rel = read_image_list(item, cfg["distractors_root"] or None)
        rel = rel[:limit]
        slug = f"{Path(item).name}-{hashlib.sha1(os.fsencode(Path(item).resolve())).hexdigest()[:8]}"
        folder = work / "distractors" / slug / f"{extractor.method}-{config_hash(extractor.config())}"
        folder.mkdir(parents=True, exist_ok=True)
        out = folder / "database.h5"
        done = False
        if out.is_file() and not Path(f"{out}.parts").exists():
            skipped = Path(f"{out}.skipped.tsv")
            n_skipped = sum(1 for _ in open(skipped, encoding="utf-8", errors="replace")) if skipped.is_file() else 0
            done = len(RegionStore.open(out, expected_config=extractor.config())) + n_skipped >= len(rel)
        if not done:
            listing = write_list(folder / "list.txt", rel)
            summary = extract_collection(extractor, listing, out, root=base, progress=progress)
            print(f"distractors {item}: {summary.line()}")
        stores.append(RegionStore.open(out))
    return stores


def _exact_search(q: np.ndarray, feats: np.ndarray, region_image: np.ndarray, n_images: int, top_images: int,
                  top_regions: int, chunk: int = 262144) -> tuple[np.ndarray, np.ndarray]:
    """Brute force: (q, top_images) image ranking (best region) and (q, top_regions) region ids."""
    nq = len(q)
    image_scores = np.full((nq, n_images), -np.inf, np.float32)
    best_ids = np.full((nq, 0), -1, np.int64)
    best_sc = np.full((nq, 0), -np.inf, np.float32)
    for start in range(0, len(feats), chunk):
        sims = q @ feats[start:start + chunk].T
        imgs = region_image[start:start + chunk]
        idx = np.r_[0, np.flatnonzero(np.diff(imgs)) + 1]
        m = np.maximum.reduceat(sims, idx, axis=1)
        image_scores[:, imgs[idx]] = np.maximum(image_scores[:, imgs[idx]], m)
        ids = np.concatenate([best_ids, np.broadcast_to(np.arange(start, start + sims.shape[1]), sims.shape)], 1)
        sc = np.concatenate([best_sc, sims], 1)
        keep = min(top_regions, sc.shape[1])
        part = np.argpartition(-sc, keep - 1, axis=1)[:, :keep]
        best_ids, best_sc = np.take_along_axis(ids, part, 1), np.take_along_axis(sc, part, 1)
    order = np.argsort(-best_sc, axis=1, kind="stable")
    best_ids = np.take_along_axis(best_ids, order, 1)
    t = min(top_images, n_images)
    top = np.argpartition(-image_scores, t - 1, axis=1)[:, :t] if t < n_images else np.tile(np.arange(n_images), (nq, 1))
    top_sc = np.take_along_axis(image_scores, top, 1)
    ranked = np.take_along_axis(top, np.argsort(-top_sc, axis=1, kind="stable"), 1)
    return ranked, best_ids


def _images_from_regions(ids: np.ndarray, region_image: np.ndarray, top_images: int) -> list[np.ndarray]:
    out = []
    for row in ids:
        row = row[row >= 0]
        imgs = region_image[row]
        _, first = np.unique(imgs, return_index=True)
        out.append(imgs[np.sort(first)][:top_images])
    return out


def _ap_at_k(bench, orders, k: int, variant: str) -> list[dict]:
    rows = []
    for q, order in zip(bench.queries, orders):
        rel = np.isin(np.asarray(order)[:k], np.asarray(q.positives, np.int64))
        rows.append({"name": q.name, f"ap@{k}/{variant}": metrics.average_precision_at_k(rel, len(q.positives), k, variant),
                     "ious": []})
    return rows


def run_scalability(cfg: dict, spec: BenchSpec, cell: Cell, extractor, out: Path, quiet: bool) -> list[dict]:
    """mAP@k of one method as distractors are added; approximate (faiss) vs exact search.

    The database is the benchmark's images followed by the first ``n`` distractor images for
    every step ``n``; regions are post-processed as for instance search (whitening learned on
    the benchmark's PCA source) and an image scores as its best region.
    """
    from dasr import ann
    from dasr.evaluate import ensure_store, query_features, subsample_database
    from dasr.search import learn_whitening, whitening_path
    from dasr.store import RegionStore
    from dasr.whitening import postprocess

    progress = not quiet
    work = Path(cfg["work"])
    idx_cfg = {**INDEX_DEFAULTS, **(cfg.get("index") or {})}
    k = int(cfg["ks"][0]) if cfg["ks"] else 50
    variant = cfg["ap_variant"]
    bench = subsample_database(load_benchmark(spec.name, spec.root), int(cfg["subsample"]))
    db_path = ensure_store(extractor, bench, work, "database", progress)
    db = RegionStore.open(db_path)
    whitening, notes = None, []
    if cfg["pca"] == "other":
        src_store = RegionStore.open(ensure_store(extractor, load_benchmark(spec.pca_benchmark, spec.pca_root), work,
                                                  "pca-source", progress))
        whitening = learn_whitening(src_store, whitening_path(db_path), dim=_pca_dim(cfg))
        if spec.pca_benchmark in _distractor_items(cfg, spec):
            notes.append(f"the whitening is learned on {spec.pca_benchmark}, which also serves as distractors")
    q = np.ascontiguousarray(postprocess(query_features(extractor, bench, Path(db_path).parent / "queries.npz", progress),
                                         whitening), np.float32)
    cap = int(cfg["baseline_max_distractors"] or 0)
    wanted = sorted({int(s) for s in cfg["steps"]})
    if cap and cell.method != "dasr-star":
        wanted = [s for s in wanted if s <= cap] or [0]
    dstores = distractor_stores(cfg, spec, extractor, max(wanted), progress) if max(wanted) > 0 else []
    d_feats, d_counts, _ = _concat_stores(dstores) if dstores else (np.zeros((0, q.shape[1]), np.float32),
                                                                     np.zeros(0, np.int64), [])
    available = len(d_counts)
    steps = sorted({min(s, available) for s in wanted})
    db_raw, db_counts = _database_rows(db, bench)
    db_feats = postprocess(db_raw, whitening).astype(np.float32)
    d_feats = postprocess(d_feats.astype(np.float32), whitening).astype(np.float32) if len(d_feats) else \
        np.zeros((0, db_feats.shape[1]), np.float32)
    d_offsets = np.r_[0, np.cumsum(d_counts)].astype(np.int64)
    entries = []
    for n in steps:
        r_d = int(d_offsets[n])
        feats = np.concatenate([db_feats, d_feats[:r_d]])
        counts = np.concatenate([db_counts, d_counts[:n]])
        region_image = np.repeat(np.arange(len(counts)), counts)
        n_images = len(counts)
        recall_k = max(1, min(int(idx_cfg["recall_k"]), len(feats)))
        k_regions = max(recall_k, min(int(idx_cfg["k_regions"]), len(feats)))
        base = {"benchmark": spec.name, "method": cell.method, "task": "scalability", "config": extractor.config(),
                "distractors": n, "database_images": n_images, "regions": int(len(feats)), "distractor_regions": r_d,
                "regions_per_image": float(len(feats) / max(1, n_images)), "localization_recall": None,
                "queries": len(bench.queries), "notes": notes,
                "pca": {"pca": cfg["pca"], "source": spec.pca_benchmark,
                        "dim": int(whitening["projection"].shape[1]) if whitening else int(feats.shape[1])}}
        t0 = time.time()
        exact_order, exact_ids = _exact_search(q, feats, region_image, n_images, max(k, 100), recall_k)
        t_exact = (time.time() - t0) / max(1, len(q))
        kind = idx_cfg["kind"]
        params = {p: int(idx_cfg[p]) for p in ("m", "nlist", "nprobe") if int(idx_cfg.get(p) or 0) > 0}
        params["nbits"] = int(idx_cfg["nbits"])
        plan = ann.plan_index(len(feats), feats.shape[1], kind, **params)
        t0 = time.time()
        index = ann.build_index(feats, kind, **params)
        t_build = time.time() - t0
        t0 = time.time()
        _, ids = ann.search_index(index, q, k_regions)
        t_ann = (time.time() - t0) / max(1, len(q))
        approx_order = _images_from_regions(ids, region_image, max(k, 100))
        recall = ann.recall_at_k(ids, exact_ids, recall_k)
        bpr = ann.index_bytes_per_vector(index, len(feats))
        searches = [("exact", list(exact_order), t_exact, 1.0)] if idx_cfg["exact"] else []
        searches.append((f"ann:{plan.kind}", approx_order, t_ann, recall))
        for name, orders, latency, rec in searches:
            per_query = _ap_at_k(bench, orders, k, variant)
            key = f"ap@{k}/{variant}"
            result = {**base, "search": name, "mean": {key: float(np.mean([p[key] for p in per_query]))},
                      "per_query": per_query,
                      "seconds": {"search_per_query": latency, **({"build": t_build} if name != "exact" else {})},
                      "recall_vs_exact": {"k": recall_k, "value": rec},
                      "index": {"requested": kind, "kind": plan.kind, "factory": plan.factory,
                                "code_bytes": plan.code_bytes, "note": plan.note,
                                "bytes_per_region": float(bpr) if name != "exact" else float(4 * feats.shape[1])}}
            entries.append({"group": f"{n} distractors, {name}", "result": result})
        if not quiet:
            print(f"  {n} distractors: {n_images} images, {len(feats)} regions, recall@{recall_k} {recall:.3f}, "
                  f"{bpr:.1f} bytes/region")
        del index, feats
    return entries


RUNNERS = {"instance": run_instance_cell, "image-search": run_image_search_cell, "scalability": run_scalability}


# ----------------------------------------------------------------------------- report
def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "-"
    if isinstance(v, str):
        return v
    return f"{v:.{digits}f}"


def _diff(v: float | None) -> str:
    return "-" if v is None else f"{v:+.3f}"


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text).strip("-") or "x"


def metric_columns(cfg: dict, bench: str) -> list[tuple[str, str, str | None]]:
    """(key in result['mean'], column title, the paper's column) for one benchmark."""
    v = cfg["ap_variant"]
    if cfg["task"] == "scalability":
        k = int(cfg["ks"][0]) if cfg["ks"] else 50
        return [(f"ap@{k}/{v}", f"mAP@{k}", None)]
    if cfg["task"] == "image-search":
        return [("ap", "mAP", bench)]
    return [(f"ap@{k}/{v}", f"Top-{k}", f"top{k}") for k in cfg["ks"]] + [("ap", "All", "all")]


def paper_names(cfg: dict, paper: dict) -> dict:
    return {**(paper.get("method_names") or {}), **(cfg.get("paper_methods") or {})}


def paper_row(cfg: dict, paper: dict, bench: str, cell: dict) -> tuple[str | None, dict | None]:
    """The paper's row for a cell (only the paper's standard configuration has one)."""
    sec = paper.get(cfg["compare"]) or {}
    name = paper_names(cfg, paper).get(cell["method"])
    if name is None:
        return None, None
    if cell.get("layer") not in (None, "conv5_block1_out") or cell.get("backbone", "resnet50") != "resnet50":
        return None, None
    if cell.get("beta") not in ("default",):
        return None, None
    if isinstance(sec.get(bench), dict):
        return name, sec[bench].get(name)
    if isinstance(sec.get("methods"), dict):
        row = sec["methods"].get(name)
        return name, row
    return name, None


def _paper_value(row: dict | None, col: str | None, bench: str, sec: dict) -> float | None:
    if row is None or col is None:
        return None
    if "methods" in sec:
        return row.get(bench)
    return row.get(col)


def bootstrap_rows(cfg: dict, entries: list[dict]) -> list[dict]:
    """95% paired bootstrap CI of (reference cell - each other cell) over queries, per group."""
    b = {**DEFAULTS["bootstrap"], **(cfg.get("bootstrap") or {})}
    ref = b.get("reference") or {}
    metric = b.get("metric") or (f"ap@{int(cfg['ks'][0]) if cfg['ks'] else 50}/{cfg['ap_variant']}"
                                 if cfg["task"] == "scalability" else "ap")
    rows = []
    groups: dict[tuple, list[dict]] = {}
    for e in entries:
        if e.get("result") is not None:
            groups.setdefault((e["benchmark"], e.get("group", "")), []).append(e)
    for (bench, group), members in groups.items():
        def matches(e: dict) -> bool:
            c = e["cell"]
            for key, want in ref.items():
                have = c.get(key)
                if key == "beta":
                    eff = c.get("effective_beta")
                    if want == "none":
                        ok = eff is None and have in ("none", "default")
                    elif want == "default":
                        ok = have == "default"
                    else:
                        ok = eff is not None and abs(float(eff) - float(want)) < 1e-9
                    if not ok:
                        return False
                elif key == "layer" and have is None:
                    from dasr.backbone import DEFAULT_FEATURE_LAYER

                    if DEFAULT_FEATURE_LAYER.get(c.get("backbone"), None) != want:
                        return False
                elif have != want:
                    return False
            return True

        refs = [e for e in members if matches(e)]
        if len(refs) != 1:
            continue
        r = refs[0]
        ra = {p["name"]: p[metric] for p in r["result"]["per_query"] if metric in p}
        for e in members:
            if e is r:
                continue
            ob = {p["name"]: p[metric] for p in e["result"]["per_query"] if metric in p}
            names = [n for n in ra if n in ob]
            if not names:
                continue
            mean, lo, hi = metrics.bootstrap_difference_ci([ra[n] for n in names], [ob[n] for n in names],
                                                           n_boot=int(b["n_boot"]), alpha=float(b["alpha"]),
                                                           seed=int(b["seed"]))
            rows.append({"benchmark": bench, "group": group, "reference": r["cell"]["label"],
                         "other": e["cell"]["label"], "metric": metric, "queries": len(names),
                         "mean_difference": mean, "ci_low": lo, "ci_high": hi,
                         "excludes_zero": bool(lo > 0 or hi < 0)})
    return rows


def _display(cfg: dict, label: str) -> str:
    labels = (cfg.get("plot") or {}).get("labels") or {}
    return " ".join(labels.get(tok, tok) for tok in label.split(" "))


def _plots(cfg: dict, entries: list[dict], paper: dict, out: Path) -> list[Path]:
    from dasr import figures

    plot = cfg.get("plot") or {}
    kind = plot.get("kind", "bars")
    ok = [e for e in entries if e.get("result") is not None]
    files: list[Path] = []
    benches = list(dict.fromkeys(e["benchmark"] for e in ok))
    if kind == "bars":
        metric = plot.get("metric", "ap")
        sec = paper.get(cfg["compare"]) or {}
        for bench in benches:
            values, ref = {}, {}
            for e in ok:
                if e["benchmark"] != bench or metric not in e["result"]["mean"]:
                    continue
                name = _display(cfg, e["cell"]["label"])
                values[name] = e["result"]["mean"][metric]
                if e.get("paper_data"):
                    _, row = paper_row(cfg, paper, bench, e["cell"])
                    col = dict((m, p) for m, _, p in metric_columns(cfg, bench)).get(metric)
                    pv = _paper_value(row, col, bench, sec)
                    if pv is not None:
                        ref[name] = pv
            if values:
                files.append(figures.bar_plot(values, f"mAP ({metric})", out / f"{_slug(bench)}-{metric.replace('/', '-')}.png",
                                              title=f"{cfg['title']} - {bench}", reference=ref or None))
    elif kind == "beta":
        for what, ylabel, fname in (("ap", "mAP", "map-vs-beta.png"), ("regions_per_image", "regions / image",
                                                                      "regions-vs-beta.png")):
            series = {}
            for bench in benches:
                pts = [(e["cell"]["effective_beta"], e) for e in ok if e["benchmark"] == bench
                       and e["cell"]["beta"] not in ("none",) and e["cell"]["effective_beta"] is not None]
                pts.sort(key=lambda t: t[0])
                xs = [p for p, _ in pts]
                get = (lambda e: e["result"]["mean"].get("ap")) if what == "ap" else (lambda e: e["result"]["regions_per_image"])
                if xs:
                    series[bench] = (xs, [get(e) for _, e in pts])
                for e in ok:
                    if e["benchmark"] == bench and e["cell"]["effective_beta"] is None and xs:
                        series[f"{bench} {e['cell']['label']}"] = ([xs[0], xs[-1]], [get(e)] * 2)
            if series:
                files.append(figures.line_plot(series, "NMS IoU threshold β", ylabel, out / fname, title=cfg["title"]))
    elif kind == "recall-iou":
        th = [float(t) for t in cfg["iou_thresholds"]]
        series = {}
        for e in ok:
            ious = [v for p in e["result"]["per_query"] for v in p.get("ious", [])]
            if ious:
                series[f"{e['benchmark']} {e['cell']['label']}"] = (th, metrics.localization_recall(ious, th).tolist())
        if series:
            files.append(figures.line_plot(series, "IoU threshold", "recall", out / "recall-vs-iou.png", title=cfg["title"]))
    elif kind == "scalability":
        k = int(cfg["ks"][0]) if cfg["ks"] else 50
        key = f"ap@{k}/{cfg['ap_variant']}"
        series: dict = {}
        recall: dict = {}
        for e in ok:
            r = e["result"]
            name = f"{e['benchmark']} {e['cell']['label']} {r['search']}"
            series.setdefault(name, ([], []))
            series[name][0].append(r["database_images"])
            series[name][1].append(r["mean"][key])
            if r["search"] != "exact":
                recall.setdefault(name, ([], []))
                recall[name][0].append(r["database_images"])
                recall[name][1].append(r["recall_vs_exact"]["value"])
        if series:
            files.append(figures.line_plot(series, "database images", f"mAP@{k}", out / "map-vs-database-size.png",
                                           title=cfg["title"]))
        if recall:
            files.append(figures.line_plot(recall, "database images", "recall of the exact top regions",
                                           out / "recall-vs-database-size.png", title=cfg["title"]))
    return files


def _statements(cfg: dict, entries: list[dict], paper: dict) -> list[str]:
    """The paper's claims for the figure, next to what we measured."""
    compare = cfg["compare"]
    sec = paper.get(compare) or {}
    ok = [e for e in entries if e.get("result") is not None]
    benches = list(dict.fromkeys(e["benchmark"] for e in ok))
    lines = [f"- Paper: {c}" for c in sec.get("claims", [])]
    if compare == "table3" and sec.get("text"):
        lines.append(f"- Paper: {sec['text']}")
    if compare == "fig4":
        for bench in benches:
            es = [e for e in ok if e["benchmark"] == bench]
            best = max(es, key=lambda e: e["result"]["mean"].get("ap", -1))
            layer = best["cell"]["layer"]
            verdict = "agrees" if layer == sec.get("best_layer_ours") else "differs"
            lines.append(f"- Ours on {bench}: best layer {_display(cfg, best['cell']['label'])} "
                         f"(mAP {best['result']['mean']['ap']:.3f}); paper: {sec.get('best_layer')} "
                         f"({sec.get('best_layer_ours')}) -> {verdict}")
            per_bb: dict = {}
            for e in es:
                bb = e["cell"]["backbone"]
                per_bb[bb] = max(per_bb.get(bb, -1), e["result"]["mean"].get("ap", -1))
            if len(per_bb) > 1:
                lines.append(f"- Ours on {bench}: best mAP per backbone: "
                             + ", ".join(f"{bb} {v:.3f}" for bb, v in per_bb.items()))
    if compare == "fig5":
        for bench in benches:
            es = [e for e in ok if e["benchmark"] == bench]
            numeric = [e for e in es if e["cell"]["beta"] not in ("none", "default") or
                       (e["cell"]["beta"] == "default" and e["cell"]["effective_beta"] is not None)]
            if numeric:
                best = max(numeric, key=lambda e: e["result"]["mean"].get("ap", -1))
                b = best["cell"]["effective_beta"]
                lines.append(f"- Ours on {bench}: best β = {b:g} (mAP {best['result']['mean']['ap']:.3f}); paper: "
                             f"β = {sec.get('best_beta')} -> {'agrees' if abs(b - sec.get('best_beta', -1)) < 1e-9 else 'differs'}")
            at = {e["cell"]["effective_beta"]: e for e in numeric}
            d = sec.get("default_beta", 0.3)
            if d in at:
                lines.append(f"- Ours on {bench}: {at[d]['result']['regions_per_image']:.1f} regions/image at β = {d:g}; "
                             f"paper: about {sec.get('regions_per_image_at_default')}")
            bb = sec.get("best_beta", 0.4)
            for e in es:
                if e["cell"]["effective_beta"] is None and bb in at and e["result"]["regions_per_image"] > 0:
                    ratio = at[bb]["result"]["regions_per_image"] / e["result"]["regions_per_image"]
                    lines.append(f"- Ours on {bench}: regions(β = {bb:g}) / regions({e['cell']['label']}) = {ratio:.2f}; "
                                 f"paper: roughly {sec.get('regions_ratio_best_to_no_nms')} (β = {bb:g} doubles the "
                                 f"regions of no NMS)")
    if compare == "fig7":
        for e in ok:
            loc = e["result"].get("localization_recall")
            if loc:
                lines.append(f"- Ours on {e['benchmark']} ({e['cell']['label']}): recall at IoU 0.5 = {loc.get('0.5', 0):.3f}")
            else:
                lines.append(f"- Ours on {e['benchmark']} ({e['cell']['label']}): no ground-truth boxes of the "
                             "relevant images, no localization recall")
    if compare == "fig8":
        k = int(cfg["ks"][0]) if cfg["ks"] else 50
        key = f"ap@{k}/{cfg['ap_variant']}"
        for bench in benches:
            es = [e for e in ok if e["benchmark"] == bench]
            dstar = [e for e in es if e["cell"]["method"] == "dasr-star"]
            if dstar:
                top = max(dstar, key=lambda e: e["result"]["distractors"])["result"]
                lines.append(f"- Ours on {bench}: {top['distractor_regions']:,} DASR* regions for {top['distractors']:,} "
                             f"distractor images ({top['distractor_regions'] / max(1, top['distractors']):.2f}/image); "
                             f"paper: {sec.get('regions_total', 0):,} for {sec.get('distractors', 0):,} "
                             f"({sec.get('regions_total', 0) / max(1, sec.get('distractors', 1)):.2f}/image)")
            by_step: dict = {}
            for e in es:
                by_step.setdefault((e["result"]["distractors"], e["result"]["search"]), []).append(e)
            verdicts = []
            for (n, search), group in sorted(by_step.items()):
                if len({g["cell"]["method"] for g in group}) < 2:
                    continue
                top = max(g["result"]["mean"][key] for g in group)
                best = [g["cell"]["label"] for g in group if g["result"]["mean"][key] == top]
                verdicts.append(f"{n} ({search}): {' = '.join(best)}{' (tie)' if len(best) > 1 else ''}")
            if verdicts:
                lines.append(f"- Ours on {bench}: best method per step: " + "; ".join(verdicts))
    return lines


def write_report(cfg: dict, entries: list[dict], paper: dict, out: Path) -> dict[str, Path]:
    """results.md, results.csv, bootstrap.csv and the PNG plots from the run's entries."""
    from dasr.metrics import AP_VARIANT_DESCRIPTIONS

    out.mkdir(parents=True, exist_ok=True)
    sec = paper.get(cfg["compare"]) or {}
    variant = cfg["ap_variant"]
    md = [f"# {cfg['title'] or cfg['name']}", ""]
    md.append(f"- config: `{cfg.get('_path', '')}`" + (f", overrides: `{' '.join(cfg.get('_overrides') or [])}`"
                                                         if cfg.get("_overrides") else ""))
    md.append(f"- compared with: {sec.get('caption', cfg['compare'] or 'nothing')}")
    md.append(f"- AP@k definition: **{variant}**: {AP_VARIANT_DESCRIPTIONS.get(variant, variant)}"
              + (" (used for the instance benchmarks; Oxford/Paris/INSTRE/Holidays-style benchmarks use their own "
                 "full-list AP, column 'All' / 'mAP')" if cfg["task"] != "scalability" else ""))
    md.append("- APs are fractions; Δ = ours - paper. The paper's number is only shown where the benchmark "
              "is the paper's; on other data it is `n/a (different data)`.")
    if cfg["task"] == "image-search":
        md.append(f"- image search: VLAD of each image's region features ({', '.join(cfg['methods'])}); codebook and PCA-whitening "
                  "learned on the independent collection named below; the AP is the benchmark's own "
                  "(Oxford / Holidays trapezoid).")
    md.append("")
    rows_csv = []
    benches = list(dict.fromkeys(e["benchmark"] for e in entries))
    for bench in benches:
        es = [e for e in entries if e["benchmark"] == bench]
        paper_data = any(e.get("paper_data") for e in es)
        present = {k for e in es if e.get("result") for k in e["result"].get("mean", {})}
        cols = [c for c in metric_columns(cfg, bench) if c[0] in present] or metric_columns(cfg, bench)
        numbers = isinstance(sec.get(bench), dict) or isinstance(sec.get("methods"), dict)
        first = next((e["result"] for e in es if e.get("result")), {}) or {}
        pca = first.get("pca") or {}
        md.append(f"## {bench}" + ("" if paper_data else " (not the paper's data: paper numbers n/a)"))
        md.append("")
        if pca:
            md.append(f"- whitening: {pca.get('pca')}" + (f", learned on {pca['source']}" if pca.get("source") else "")
                      + (f", {pca['dim']} dims" if pca.get("dim") else "") + (f" ({pca['note']})" if pca.get("note") else "")
                      + (f"; VLAD codebook learned on {pca['codebook_source']}" if pca.get("codebook_source") else ""))
        if first.get("images"):
            md.append(f"- {first['images']} database images, {first.get('queries', '?')} queries")
        for note in first.get("notes") or []:
            md.append(f"- note: {note}")
        md.append("")
        if cfg["task"] == "scalability":
            head = ["cell", "search", "distractors", "images", "regions", cols[0][1], "recall vs exact",
                    "bytes/region", "ms/query"]
            md.append("| " + " | ".join(head) + " |")
            md.append("|" + "---|" * len(head))
        else:
            head = ["cell", "dim"]
            for _, title, _ in cols:
                head += [f"{title} ours", f"{title} paper", "Δ"] if numbers else [title]
            head += ["regions/img", "loc@0.5"]
            md.append("| " + " | ".join(head) + " |")
            md.append("|" + "---|" * len(head))
        for e in es:
            cell, r = e["cell"], e.get("result")
            base_csv = {"experiment": cfg["name"], "benchmark": bench, "data": "paper" if paper_data else "other",
                        "group": e.get("group", ""), "cell": cell["label"], "method": cell["method"],
                        "backbone": cell["backbone"], "layer": cell.get("layer") or "default",
                        "beta": cell["beta"]}
            if r is None:
                md.append(f"| {cell['label']} | error: {e.get('error', '?').splitlines()[0]} |")
                rows_csv.append({**base_csv, "metric": "error", "ours": "", "paper": "", "difference": "",
                                 "note": e.get("error", "").splitlines()[0]})
                continue
            if cfg["task"] == "scalability":
                key = cols[0][0]
                md.append("| " + " | ".join([cell["label"], r["search"], f"{r['distractors']:,}", f"{r['database_images']:,}",
                                             f"{r['regions']:,}", _fmt(r["mean"].get(key)),
                                             f"{r['recall_vs_exact']['value']:.3f} @{r['recall_vs_exact']['k']}",
                                             f"{r['index']['bytes_per_region']:.1f}",
                                             f"{1000 * r['seconds']['search_per_query']:.2f}"]) + " |")
                for metric, value in ((key, r["mean"].get(key)), ("recall_vs_exact", r["recall_vs_exact"]["value"]),
                                      ("bytes_per_region", r["index"]["bytes_per_region"]),
                                      ("ms_per_query", 1000 * r["seconds"]["search_per_query"]),
                                      ("regions", r["regions"]), ("database_images", r["database_images"])):
                    rows_csv.append({**base_csv, "metric": metric, "ours": value, "paper": "",
                                     "difference": "", "note": "no number in the paper" if paper_data else "n/a (different data)"})
                continue
            name, row = paper_row(cfg, paper, bench, cell) if paper_data else (None, None)
            dim = (r.get("pca") or {}).get("dim") or r.get("dim")
            shown = _display(cfg, cell["label"])
            cells_md = [cell["label"] + (f" ({shown})" if shown != cell["label"] else "") + (f" ({name})" if name else ""),
                        f"{dim or '-'}" + (f" / {row['dim']}" if row and "dim" in row else "")]
            for key, title, pcol in cols:
                ours = r["mean"].get(key)
                if not paper_data:
                    pv, ptxt, note = None, "n/a (different data)", "n/a (different data)"
                elif not numbers:
                    pv, ptxt, note = None, "", "no number in the paper (see its statements)"
                else:
                    pv = _paper_value(row, pcol, bench, sec)
                    ptxt = _fmt(pv)
                    note = "" if pv is not None else ("not in the paper" if row is None else "- in the paper")
                diff = None if (pv is None or ours is None) else ours - pv
                cells_md += [_fmt(ours), ptxt, _diff(diff)] if numbers else [_fmt(ours)]
                rows_csv.append({**base_csv, "metric": title, "ours": ours,
                                 "paper": pv if pv is not None else ("" if paper_data else ptxt),
                                 "difference": diff if diff is not None else "", "note": note})
            loc = r.get("localization_recall")
            cells_md += [f"{r.get('regions_per_image', 0):.1f}", _fmt(loc.get("0.5")) if loc else "-"]
            md.append("| " + " | ".join(cells_md) + " |")
            rows_csv.append({**base_csv, "metric": "regions_per_image", "ours": r.get("regions_per_image"), "paper": "",
                             "difference": "", "note": ""})
            if cfg["compare"] == "fig7" or cfg["plot"].get("kind") == "recall-iou":
                ious = [v for p in r["per_query"] for v in p.get("ious", [])]
                th = [float(t) for t in cfg["iou_thresholds"]]
                if ious:
                    for t, v in zip(th, metrics.localization_recall(ious, th)):
                        rows_csv.append({**base_csv, "metric": f"recall@iou{t:g}", "ours": float(v),
                                         "paper": "no number in the paper" if paper_data else "n/a (different data)",
                                         "difference": "", "note": ""})
        md.append("")
        if paper_data and numbers and cfg["task"] != "scalability":
            ours_names = {paper_row(cfg, paper, bench, e["cell"])[0] for e in es}
            rows = sec.get(bench) if isinstance(sec.get(bench), dict) else sec.get("methods", {})
            others = [(n, row) for n, row in (rows or {}).items() if n not in ours_names and isinstance(row, dict)]
            if others:
                md.append("Paper rows not reimplemented here: " + "; ".join(
                    f"{n} {', '.join(_fmt(_paper_value(row, p, bench, sec)) for _, _, p in cols)}"
                    + (" (cited)" if row.get("cited") else "") for n, row in others))
                md.append("")
        if cfg["task"] == "scalability" or cfg["plot"].get("kind") == "recall-iou":
            th = [float(t) for t in cfg["iou_thresholds"]]
            if cfg["task"] != "scalability":
                md.append("Localization recall (best region of each relevant image vs its ground-truth box):")
                md.append("")
                md.append("| cell | " + " | ".join(f"IoU≥{t:g}" for t in th) + " |")
                md.append("|---|" + "---|" * len(th))
                for e in es:
                    if e.get("result") is None:
                        continue
                    ious = [v for p in e["result"]["per_query"] for v in p.get("ious", [])]
                    vals = metrics.localization_recall(ious, th) if ious else None
                    md.append(f"| {e['cell']['label']} | " + " | ".join(
                        _fmt(float(v)) for v in vals) + " |" if vals is not None else
                        f"| {e['cell']['label']} | no ground-truth boxes |")
                md.append("")
    boot = bootstrap_rows(cfg, entries)
    if boot:
        md.append("## 95% paired bootstrap CI over queries (reference - other)")
        md.append("")
        md.append(f"Metric: per-query `{boot[0]['metric']}`; {int((cfg.get('bootstrap') or {}).get('n_boot', 10000))} "
                  "resamples of the queries. `*`: the interval excludes 0.")
        md.append("")
        md.append("| benchmark | group | reference - other | mean Δ | 95% CI | queries |")
        md.append("|---|---|---|---|---|---|")
        for b in boot:
            md.append(f"| {b['benchmark']} | {b['group'] or '-'} | {b['reference']} - {b['other']} | "
                      f"{b['mean_difference']:+.3f}{' *' if b['excludes_zero'] else ''} | "
                      f"[{b['ci_low']:+.3f}, {b['ci_high']:+.3f}] | {b['queries']} |")
        md.append("")
    statements = _statements(cfg, entries, paper)
    if statements:
        md.append("## The paper's statements and ours")
        md.append("")
        md += statements
        md.append("")
    pngs = _plots(cfg, entries, paper, out)
    if pngs:
        md.append("## Figures")
        md.append("")
        md += [f"![{p.stem}]({p.name})" for p in pngs]
        md.append("")
    errors = [e for e in entries if e.get("result") is None]
    if errors:
        md.append("## Errors")
        md.append("")
        md += [f"- {e['benchmark']} / {e['cell']['label']}: {e.get('error', '').splitlines()[0]}" for e in errors]
        md.append("")
    from dasr.atomic import atomic_write_bytes

    atomic_write_bytes(out / "results.md", "\n".join(md).encode())
    fields = ["experiment", "benchmark", "data", "group", "cell", "method", "backbone", "layer", "beta", "metric",
              "ours", "paper", "difference", "note"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    w.writerows(rows_csv)
    atomic_write_bytes(out / "results.csv", buf.getvalue().encode())
    buf = io.StringIO()
    bf = ["benchmark", "group", "reference", "other", "metric", "queries", "mean_difference", "ci_low", "ci_high",
          "excludes_zero"]
    w = csv.DictWriter(buf, fieldnames=bf, lineterminator="\n")
    w.writeheader()
    w.writerows(boot)
    atomic_write_bytes(out / "bootstrap.csv", buf.getvalue().encode())
    return {"md": out / "results.md", "csv": out / "results.csv", "bootstrap": out / "bootstrap.csv",
            **{p.stem: p for p in pngs}}


# ----------------------------------------------------------------------------- main
def _save_entries(cfg: dict, entries: list[dict], out: Path) -> None:
    from dasr.atomic import atomic_write_bytes

    saved = {k: v for k, v in cfg.items()}
    atomic_write_bytes(out / "results.json", json.dumps({"config": saved, "entries": entries}, indent=1,
                                                         default=str).encode())


def result_folders(cfg: dict) -> list[Path]:
    """Every finished run of an experiment config: its ``out`` and ``results/<name>-*`` folders."""
    default = Path(cfg["out"] or Path("results") / cfg["name"])
    found = {default, *default.parent.glob(f"{cfg['name']}-*")}
    return sorted(p for p in found if (p / "results.json").is_file())


def redraw_all(cfg: dict, out: Path, quiet: bool = False) -> Path:
    """``task = "figures"``: redraws every run of the listed experiments, adds the pictures, indexes them.

    Every results folder of an experiment (:func:`result_folders`) is replotted from its
    ``results.json``; instance-search runs also get Fig. 6 panels from the rankings of the
    ``[gallery]`` method; and Fig. 1/3 region pictures are drawn for a few query images of
    ``gallery.pictures_benchmark`` (this runs the network on those images only).
    """
    from dasr import gallery
    from dasr.atomic import atomic_write_bytes

    here = Path(cfg["_path"]).parent
    pics = cfg["gallery"]
    lines = [f"# {cfg['title'] or 'Figures'}", ""]
    out.mkdir(parents=True, exist_ok=True)
    for name in cfg["experiments"]:
        path = here / f"{name}.toml"
        sub = load_config(path)
        folders = result_folders(sub)
        if not folders:
            lines.append(f"- {name}: not run yet (`dasr reproduce {path}`)")
            continue
        for folder in folders:
            run_experiment(path, ["replot=true", f"out={folder.as_posix()}"], quiet=quiet)
            pngs = list(folder.glob("*.png"))
            pngs += _gallery_panels(folder, pics) if sub["task"] == "instance" else []
            rel = Path(os.path.relpath(folder, out))
            lines.append(f"- {name}: [{folder.name}]({(rel / 'results.md').as_posix()})")
            lines += [f"  ![{p.stem}]({Path(os.path.relpath(p, out)).as_posix()})" for p in sorted(set(pngs))]
    if pics["pictures_benchmark"] and int(pics["pictures"]) > 0:
        from dasr import cli

        bench = load_benchmark(pics["pictures_benchmark"])
        args = cli.build_parser().parse_args(["detect", "--method", pics["method"], "x"])
        written = gallery.region_pictures(cli.build_extractor(args), bench, out, int(pics["pictures"]))
        lines += ["", f"Figs. 1/3: {pics['method']} regions of {bench.name} query images", ""]
        lines += [f"![{p.stem}]({p.name})" for p in written]
    atomic_write_bytes(out / "results.md", ("\n".join(lines) + "\n").encode())
    if not quiet:
        print(f"wrote {out}/results.md")
    return out


def _gallery_panels(folder: Path, pics: dict) -> list[Path]:
    """Fig. 6 panels of one instance-search run, from its ``pics['method']`` cells' rankings."""
    from dasr import gallery

    data = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    roots = {spec.name: spec.root for spec in resolve_benchmarks(data["config"])}
    written = []
    for entry in data["entries"]:
        if entry.get("result") is None or entry["cell"]["method"] != pics["method"]:
            continue
        run = folder / "runs" / _slug(entry["benchmark"]) / _slug(entry["cell"]["label"])
        if (run / "rankings.tsv").is_file():
            bench = load_benchmark(entry["benchmark"], roots.get(entry["benchmark"]))
            written += gallery.ranking_panels(run / "rankings.tsv", bench, run, int(pics["queries"]), int(pics["top"]))
    return written


def run_experiment(config_path: str | os.PathLike, overrides: Iterable[str] = (), quiet: bool = False) -> Path:
    """Runs one experiment and writes its report; returns the results folder.

    Args:
      config_path: ``experiments/<name>.toml``.
      overrides: ``KEY=VALUE`` strings (dotted keys for tables; values read as TOML).
      quiet: no progress bars / per-cell lines.

    Raises:
      DatasetMissingError: a dataset is missing (checked before any work).
      ExperimentError: some cells failed (after the report of the others is written).
      ValueError: a bad config or override.
    """
    cfg = apply_overrides(load_config(config_path), overrides)
    if cfg["task"] not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {cfg['task']!r}")
    if cfg["pca"] not in ("other", "none"):
        raise ValueError(f"pca must be 'other' or 'none', got {cfg['pca']!r}")
    if cfg["ap_variant"] not in metrics.AP_VARIANTS:
        raise ValueError(f"ap_variant must be one of {metrics.AP_VARIANTS}, got {cfg['ap_variant']!r}")
    out = Path(cfg["out"] or Path("results") / cfg["name"])
    paper = load_paper_numbers(cfg)
    if cfg["replot"]:
        data = json.loads((out / "results.json").read_text(encoding="utf-8"))
        saved = data["config"]
        saved["plot"] = cfg["plot"]
        write_report(saved, data["entries"], paper, out)
        if not quiet:
            print(f"wrote {out}/results.md (replotted)")
        return out
    if cfg["task"] == "figures":
        return redraw_all(cfg, out, quiet)
    specs = resolve_benchmarks(cfg)
    cells = build_cells(cfg)
    if cfg["task"] == "image-search":
        vlad_settings(cfg)
    check_datasets(cfg, specs)  # before any extraction
    on_paper = paper_benchmarks(paper, cfg["compare"])
    runner = RUNNERS[cfg["task"]]
    out.mkdir(parents=True, exist_ok=True)
    entries: list[dict] = []
    total = len(cells) * len(specs)
    step = 0
    # No-NMS cells first: the other β of the same regions are then derived from their stores
    # without the backprop (dasr.derive); the report keeps the config's order.
    run_order = sorted(cells, key=lambda c: c.beta != "none")
    for cell in run_order:
        extractor = None
        for spec in specs:
            step += 1
            cell_info = {**asdict(cell), "effective_beta": cell.effective_beta()}
            entry_base = {"benchmark": spec.name, "paper_data": spec.name in on_paper, "cell": cell_info}
            if not quiet:
                print(f"[{step}/{total}] {cfg['name']}: {spec.name} / {cell.label}", flush=True)
            try:
                if extractor is None:
                    extractor = make_extractor(cfg, cell)
                run_out = out / "runs" / _slug(spec.name) / _slug(cell.label)
                for item in runner(cfg, spec, cell, extractor, run_out, quiet):
                    entries.append({**entry_base, **item, "error": None})
            except (KeyboardInterrupt, DatasetMissingError):
                _save_entries(cfg, entries, out)
                raise
            except Exception as e:  # noqa: BLE001 - one failing cell must not lose the others
                if not cfg["keep_going"]:
                    _save_entries(cfg, entries, out)
                    raise
                msg = f"{type(e).__name__}: {e}"
                print(f"error in {spec.name} / {cell.label}: {msg.splitlines()[0]}", file=sys.stderr)
                if not quiet:
                    traceback.print_exc()
                entries.append({**entry_base, "group": "", "result": None, "error": msg})
            _save_entries(cfg, entries, out)
        if hasattr(extractor, "backbone"):  # a real network: free it before the next cell builds one
            del extractor
            gc.collect()
    position = {c.label: i for i, c in enumerate(cells)}
    entries.sort(key=lambda e: position[e["cell"]["label"]])
    write_report(cfg, entries, paper, out)
    if not quiet:
        print(f"wrote {out}/results.md, results.csv, bootstrap.csv")
    failed = [e for e in entries if e.get("result") is None]
    if failed:
        raise ExperimentError(f"{len(failed)} of {len(entries)} cells failed (see {out}/results.md): "
                              f"{failed[0]['benchmark']} / {failed[0]['cell']['label']}: "
                              f"{failed[0]['error'].splitlines()[0]}")
    return out
