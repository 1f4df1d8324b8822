"""Where an experiment writes: ``results/<name>/`` (or ``out``), one ``runs/<benchmark>/<cell>/`` per cell.

Every file name made from a benchmark, a cell label or a query name goes through :func:`slug`.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["slug", "results_folder", "run_folder", "result_folders"]


def slug(text: str) -> str:
    """``text`` as one safe file-name part: every character but letters, digits, ``-_.`` becomes ``-``.

    >>> slug("dasr-star no NMS/x")
    'dasr-star-no-NMS-x'
    """
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text).strip("-") or "x"


def results_folder(cfg: dict) -> Path:
    """The run's folder: ``out`` when given, else ``results/<name>`` (``name`` has no path separator)."""
    return Path(cfg["out"] or Path("results") / cfg["name"])


def run_folder(out: Path, benchmark: str, label: str) -> Path:
    """The folder of one cell's own files (``results.json``, ``rankings.tsv``, Fig. 6 panels)."""
    return out / "runs" / slug(benchmark) / slug(label)


def result_folders(cfg: dict) -> list[Path]:
    """Every finished run of an experiment config: its results folder and ``results/<name>-*`` ones."""
    default = results_folder(cfg)
    found = {default, *default.parent.glob(f"{cfg['name']}-*")}
    return sorted(p for p in found if (p / "results.json").is_file())
