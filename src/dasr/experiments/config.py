"""An experiment's configuration: the TOML file, ``--set`` overrides and the check of every value.

A config is a plain dict: :data:`DEFAULTS` filled in by the file (tables merged one level deep),
then by the overrides (``a.b=value``, the value read as a TOML scalar or list, else as a plain
string).  :func:`validate_config` checks each value against its type where the config is
loaded and again after the overrides, so a wrong value stops the run with ONE line naming the
key, before anything is extracted.  Keys starting with ``_`` are bookkeeping (``_path``: the
config file; ``_overrides``: the ``--set`` strings applied).
"""

from __future__ import annotations

import copy
import math
import os
import tomllib
from pathlib import Path
from typing import Any, Iterable

from dasr.errors import InputError, UserError
from dasr.eval.datasets.common import QUERY_KINDS
from dasr.eval.metrics import AP_VARIANTS

__all__ = ["DEFAULTS", "TASKS", "INDEX_DEFAULTS", "ConfigNotFoundError", "load_config", "parse_value", "parse_override",
           "apply_overrides", "validate_config", "pca_dim", "first_k"]

DEFAULTS: dict[str, Any] = {
    "name": "",                       # experiment name: results/<name>/
    "title": "",
    "task": "instance",               # instance | image-search | scalability | figures
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
    "rules": ["paper"],               # paper | authors (dasr and dasr-star only; dasr.regions.RegionConfig)
    "extra_cells": [],                # [{method, backbone, layer, beta, label}]
    "variants": [],                   # [{label, methods, <extractor options>}]: beside each paper-rule cell (dasr.experiments.cells)
    "extractor": {},                  # further extractor options (ExtractorSpec.from_options names)
    "pca": "other",                   # other | none
    "pca_benchmark": "",              # "" = per benchmark / dasr.eval.pca_source.DEFAULT_PCA_SOURCE
    "pca_dim": 0,                     # 0 = every usable component
    "pca_subsample": 1,               # learn on every n-th database image of pca_benchmark (+ its queries)
    "query": "box",                   # instance task: box (instance search) | image (whole-image search)
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

_STRING_KEYS = ("title", "compare", "paper_numbers", "bench", "bench_root", "backbone", "weights",
                "pca_benchmark", "work", "out", "distractors_root")
_TABLE_KEYS = ("paper_methods", "extractor", "bootstrap", "plot", "vlad", "index", "gallery")
_BOOL_KEYS = ("keep_going", "replot")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _fail(where: str, key: str, want: str, value: Any) -> InputError:
    # An InputError (a ValueError too): a config value is the user's input, one line and exit 2.
    return InputError(f"{where}: {key} must be {want}, got {value!r}")


def validate_config(cfg: dict, where: str = "config") -> None:
    """Checks every value of ``cfg`` against its type (one key at a time, in :data:`DEFAULTS` order).

    Values whose meaning depends on other modules (method names, β, benchmark names, extractor
    and VLAD options) are checked where they are used, still before any work.

    Args:
      cfg: a config (:data:`DEFAULTS` keys).
      where: names the config in the message (its file).

    Raises:
      ValueError: one line naming the first bad key and its value.
    """
    name = cfg["name"]
    if not isinstance(name, str) or not name:
        raise _fail(where, "name", "a non-empty string", name)
    if "/" in name or "\\" in name or name in (".", "..") or os.path.isabs(name):
        # results/<name>/ must stay inside results/ (an absolute `out` is the way elsewhere).
        raise _fail(where, "name", "a plain folder name (no path separator, not '.' or '..')", name)
    for key in _STRING_KEYS:
        if not isinstance(cfg[key], str):
            raise _fail(where, key, "a string", cfg[key])
    for key in _TABLE_KEYS:
        if not isinstance(cfg[key], dict):
            raise _fail(where, key, "a table", cfg[key])
    for key in _BOOL_KEYS:
        if not isinstance(cfg[key], bool):
            raise _fail(where, key, "true or false", cfg[key])
    if cfg["task"] not in TASKS:
        raise _fail(where, "task", f"one of {TASKS}", cfg["task"])
    if cfg["pca"] not in ("other", "none"):
        raise _fail(where, "pca", "'other' or 'none'", cfg["pca"])
    if cfg["ap_variant"] not in AP_VARIANTS:
        raise _fail(where, "ap_variant", f"one of {AP_VARIANTS}", cfg["ap_variant"])
    if not _is_str_list(cfg["methods"]):
        raise _fail(where, "methods", "a list of method names", cfg["methods"])
    if not isinstance(cfg["benchmarks"], list) or not all(isinstance(b, (str, dict)) for b in cfg["benchmarks"]):
        raise _fail(where, "benchmarks", "a list of names or {name, root, pca_benchmark, pca_root} tables",
                    cfg["benchmarks"])
    layers = cfg["layers"]
    if not (_is_str_list(layers) or (isinstance(layers, dict) and all(_is_str_list(v) for v in layers.values()))):
        raise _fail(where, "layers", "a list of layer names or a table {backbone: [layers]}", layers)
    if not _is_str_list(cfg["rules"]):
        raise _fail(where, "rules", "a list of 'paper' / 'authors'", cfg["rules"])
    if not isinstance(cfg["betas"], list):
        raise _fail(where, "betas", "a list of 'default', 'none' or numbers", cfg["betas"])
    if not isinstance(cfg["extra_cells"], list) or not all(isinstance(c, dict) for c in cfg["extra_cells"]):
        raise _fail(where, "extra_cells", "a list of tables", cfg["extra_cells"])
    variants = cfg["variants"]
    if not isinstance(variants, list) or not all(
            isinstance(v, dict) and isinstance(v.get("label"), str) and v["label"].strip()
            and all(isinstance(x, (str, int, float, bool)) for k, x in v.items() if k != "methods")
            and _is_str_list(v.get("methods", [])) for v in variants):
        raise _fail(where, "variants", "a list of tables {label = \"...\", methods = [...], <extractor option> = value}",
                    variants)
    if not _is_number(cfg["tau"]):
        raise _fail(where, "tau", "a number", cfg["tau"])
    pca_dim(cfg, where)
    if not isinstance(cfg["ks"], list) or not all(_is_int(k) and k >= 1 for k in cfg["ks"]):
        raise _fail(where, "ks", "a list of positive integers", cfg["ks"])
    if not _is_int(cfg["subsample"]) or cfg["subsample"] < 1:
        raise _fail(where, "subsample", "a positive integer (1 = every database image)", cfg["subsample"])
    if cfg["query"] not in QUERY_KINDS:
        raise _fail(where, "query", " or ".join(repr(k) for k in QUERY_KINDS), cfg["query"])
    if not _is_int(cfg["pca_subsample"]) or cfg["pca_subsample"] < 1:
        raise _fail(where, "pca_subsample", "a positive integer (1 = every database image of the learning collection)",
                    cfg["pca_subsample"])
    th = cfg["iou_thresholds"]
    if not isinstance(th, list) or not all(_is_number(t) and 0 < t <= 1 for t in th):
        raise _fail(where, "iou_thresholds", "a list of numbers in (0, 1]", th)
    d = cfg["distractors"]
    if not (isinstance(d, str) or _is_str_list(d)):
        raise _fail(where, "distractors", "a folder, list file or benchmark name, or a list of those", d)
    if not isinstance(cfg["steps"], list) or not all(_is_int(s) and s >= 0 for s in cfg["steps"]):
        raise _fail(where, "steps", "a list of non-negative integers", cfg["steps"])
    if not _is_int(cfg["baseline_max_distractors"]) or cfg["baseline_max_distractors"] < 0:
        raise _fail(where, "baseline_max_distractors", "a non-negative integer", cfg["baseline_max_distractors"])
    if not _is_str_list(cfg["experiments"]):
        raise _fail(where, "experiments", "a list of config names", cfg["experiments"])


class ConfigNotFoundError(UserError, FileNotFoundError):
    """An experiment config file that does not exist."""


def load_config(path: str | os.PathLike) -> dict:
    """Reads a config file, fills in :data:`DEFAULTS` (tables are merged one level deep) and checks it.

    Raises:
      ConfigNotFoundError: no such file (a FileNotFoundError too).
      InputError: a folder, not UTF-8 TOML, an unknown key or a value of the wrong type (a
        ValueError too).
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: a folder, not a config file (expected experiments/<name>.toml)")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigNotFoundError(f"{path}: no such config file (expected experiments/<name>.toml)") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{path}: {e}") from None
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        raise InputError(f"{path}: unknown config key(s) {', '.join(unknown)}; known: {', '.join(DEFAULTS)}")
    cfg = copy.deepcopy(DEFAULTS)
    for key, value in raw.items():
        if isinstance(cfg[key], dict) and isinstance(value, dict):
            cfg[key].update(value)
        else:
            cfg[key] = value
    cfg["name"] = cfg["name"] or path.stem
    cfg["_path"] = os.fspath(path)
    cfg["_overrides"] = []
    validate_config(cfg, os.fspath(path))
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
        raise InputError(f"{text!r}: not a valid TOML inline table")
    return text


def parse_override(text: str) -> tuple[list[str], Any]:
    """``'a.b=value'`` -> ``(['a', 'b'], value)``.

    Raises:
      ValueError: no ``=`` or an empty key part.
    """
    if "=" not in text:
        raise InputError(f"--set {text!r}: expected KEY=VALUE")
    key, value = text.split("=", 1)
    parts = [p.strip() for p in key.strip().split(".")]
    if not all(parts):
        raise InputError(f"--set {text!r}: empty key part in {key!r}")
    return parts, parse_value(value)


def apply_overrides(cfg: dict, overrides: Iterable[str]) -> dict:
    """A copy of ``cfg`` with every ``a.b=value`` applied, checked again (:func:`validate_config`).

    Raises:
      ValueError: a malformed override, an unknown top-level key, a key below a non-table, or a
        value of the wrong type.
    """
    cfg = copy.deepcopy(cfg)
    applied = False
    for text in overrides or ():
        parts, value = parse_override(text)
        if parts[0] not in DEFAULTS:
            raise InputError(f"--set {text!r}: unknown config key {parts[0]!r}; known: {', '.join(DEFAULTS)}")
        node = cfg
        for p in parts[:-1]:
            if not isinstance(node.get(p, {}), dict):
                raise InputError(f"--set {text!r}: {p!r} is not a table")
            node = node.setdefault(p, {})
        node[parts[-1]] = value
        cfg.setdefault("_overrides", []).append(text)
        applied = True
    if applied:
        validate_config(cfg, f"{cfg.get('_path', 'config')} with --set {' '.join(cfg['_overrides'])}")
    return cfg


def pca_dim(cfg: dict, where: str = "config") -> int | None:
    """``pca_dim`` 0 / "" / "all" -> None (every usable component), else the positive integer.

    Raises:
      ValueError: any other value.
    """
    v = cfg["pca_dim"]
    if v in ("", "all") or (_is_int(v) and v == 0):
        return None
    if not _is_int(v) or v < 1:
        raise _fail(where, "pca_dim", "a positive integer, 0 or 'all'", v)
    return v


def first_k(cfg: dict) -> int:
    """The k of the scalability runs' mAP@k: the first of ``ks`` (50 when ``ks`` is empty)."""
    return int(cfg["ks"][0]) if cfg["ks"] else 50
