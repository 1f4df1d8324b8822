"""The paper's numbers (``experiments/paper_numbers.toml``) and which of them goes with which cell.

A section (``table1``, ``table3``, ``fig5``, ...) holds either one table per benchmark
(``[table1.instance-160."DASR*"]``: a row per method, a key per column) or one table of methods
whose keys are benchmarks (``[table3.methods."DASR+VLAD"]``), plus the figures' claims and values.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from dasr.model.architectures import DEFAULT_FEATURE_LAYER, FEATURE_CHANNELS
from dasr.errors import InputError
from dasr.eval.datasets import BENCHMARKS
from dasr.experiments.cells import Cell
from dasr.experiments.config import first_k

__all__ = ["load_paper_numbers", "paper_benchmarks", "paper_names", "paper_row", "paper_value", "metric_columns",
           "STANDARD_LAYERS", "scalability_metric"]

# The only configuration the paper reports numbers for: ResNet-50 at Block4_unit1, the method's β.
STANDARD_LAYERS = (None, "conv5_block1_out")


def load_paper_numbers(cfg: dict) -> dict:
    """The paper numbers file named by the config (relative to the config's folder); {} when absent.

    Raises:
      ValueError: the path is a folder, or the file is not TOML.
    """
    p = Path(cfg["paper_numbers"])
    if not p.is_absolute():
        p = Path(cfg.get("_path", ".")).parent / p
    if p.is_dir():
        raise InputError(f"paper_numbers: {p} is a folder, not a TOML file")
    if not p.is_file():
        return {}
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{p}: {e}") from None


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


def paper_names(cfg: dict, paper: dict) -> dict:
    """Our method -> the paper's row name (the paper's ``[method_names]``, then the config's ``paper_methods``)."""
    return {**(paper.get("method_names") or {}), **cfg["paper_methods"]}


def paper_row(cfg: dict, paper: dict, bench: str, cell: Cell) -> tuple[str | None, dict | None]:
    """The paper's row name and row for a cell (only the paper's standard configuration has one).

    Returns:
      (None, None) for a method the paper does not report or a non-standard configuration;
      (name, None) when the paper has the method but no row for this benchmark, or its row
      describes another network (its ``dim`` is not our descriptor's).
    """
    sec = paper.get(cfg["compare"]) or {}
    name = paper_names(cfg, paper).get(cell.method)
    if name is None:
        return None, None
    if cell.layer not in STANDARD_LAYERS or cell.backbone != "resnet50" or cell.beta != "default":
        return None, None
    if isinstance(sec.get(bench), dict):
        row = sec[bench].get(name)
        layer = cell.layer or DEFAULT_FEATURE_LAYER[cell.backbone]
        if row is not None and row.get("dim") not in (None, FEATURE_CHANNELS[cell.backbone][layer]):
            # The paper's global baselines are 512-d VGG-16: no difference against a ResNet-50 cell.
            return name, None
        return name, row
    if isinstance(sec.get("methods"), dict):
        return name, sec["methods"].get(name)
    return name, None


def paper_value(row: dict | None, col: str | None, bench: str, sec: dict) -> float | None:
    """The paper's number in ``row`` for column ``col`` (a ``methods`` section: the benchmark's)."""
    if row is None or col is None:
        return None
    if "methods" in sec:
        return row.get(bench)
    return row.get(col)


def metric_columns(cfg: dict, bench: str) -> list[tuple[str, str, str | None]]:
    """(key in ``SearchResult.mean``, column title, the paper's column) for one benchmark.

    Scalability runs report ``mAP@k`` (k: the first of ``ks``) on instance benchmarks and the
    benchmark's own whole-list ``mAP`` on Oxford-style ones (the report keeps the columns present).
    """
    v = cfg["ap_variant"]
    if cfg["task"] == "scalability":
        k = first_k(cfg)
        return [(f"ap@{k}/{v}", f"mAP@{k}", None), ("ap", "mAP", None)]
    if cfg["task"] == "image-search":
        return [("ap", "mAP", bench)]
    return [(f"ap@{k}/{v}", f"Top-{k}", f"top{k}") for k in cfg["ks"]] + [("ap", "All", "all")]


def scalability_metric(cfg: dict, mean: dict) -> str:
    """The metric a scalability result is reported by: ``ap@k/<variant>``, or ``ap`` on an
    Oxford-style benchmark (whose protocol has no AP@k)."""
    key = f"ap@{first_k(cfg)}/{cfg['ap_variant']}"
    return key if key in mean or "ap" not in mean else "ap"
