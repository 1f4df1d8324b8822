"""Runs one experiment config: every cell on every benchmark, then the report."""

from __future__ import annotations

import gc
import os
import sys
import traceback
from pathlib import Path
from typing import Iterable

from dasr.eval.datasets import DatasetMissingError
from dasr.experiments.benchmarks import check_datasets, resolve_benchmarks
from dasr.experiments.cells import build_cells, make_extractor
from dasr.experiments.config import apply_overrides, load_config
from dasr.experiments.entries import Entry, save_results
from dasr.experiments.redraw import redraw_all
from dasr.experiments.paper import load_paper_numbers, paper_benchmarks
from dasr.experiments.paths import results_folder, run_folder
from dasr.errors import UserError
from dasr.experiments.report import replot, write_report
from dasr.experiments.runners import RUNNERS, vlad_settings

__all__ = ["ExperimentError", "run_experiment"]


class ExperimentError(RuntimeError):
    """Some cells failed (their errors are listed in results.md; the traceback of every error that
    is not a user error was printed when it happened)."""


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
    out = results_folder(cfg)
    paper = load_paper_numbers(cfg)
    if cfg["replot"]:
        replot(cfg, paper, out)
        if not quiet:
            print(f"wrote {out}/results.md (replotted)")
        return out
    if cfg["task"] == "figures":
        return redraw_all(cfg, out, quiet)
    specs = resolve_benchmarks(cfg)
    cells = build_cells(cfg)
    if cfg["task"] == "image-search":
        vlad_settings(cfg)  # an unknown VLAD option stops the run here, not in the first cell
    check_datasets(cfg, specs)  # before any extraction
    on_paper = paper_benchmarks(paper, cfg["compare"])
    runner = RUNNERS[cfg["task"]]
    out.mkdir(parents=True, exist_ok=True)
    entries: list[Entry] = []
    total = len(cells) * len(specs)
    step = 0
    # No-NMS cells first: the other β of the same regions are then derived from their stores
    # without the backprop (dasr.store.derive); the report keeps the config's order.
    run_order = sorted(cells, key=lambda c: c.beta != "none")
    for cell in run_order:
        extractor = None
        for spec in specs:
            step += 1
            if not quiet:
                print(f"[{step}/{total}] {cfg['name']}: {spec.name} / {cell.label}", flush=True)
            try:
                if extractor is None:
                    extractor = make_extractor(cfg, cell)
                for group, result in runner(cfg, spec, cell, extractor, run_folder(out, spec.name, cell.label), quiet):
                    entries.append(Entry(spec.name, spec.name in on_paper, cell, group, result))
            except (KeyboardInterrupt, DatasetMissingError):
                save_results(cfg, entries, out)
                raise
            except Exception as e:  # noqa: BLE001 - one failing cell must not lose the others; it is
                # reported in results.md and raised as ExperimentError once every cell has run.
                if not cfg["keep_going"]:
                    save_results(cfg, entries, out)
                    raise
                msg = f"{type(e).__name__}: {e}"
                print(f"error in {spec.name} / {cell.label}: {msg.splitlines()[0]}", file=sys.stderr)
                if not quiet or not isinstance(e, UserError):  # a bug always shows its traceback
                    traceback.print_exc()
                entries.append(Entry(spec.name, spec.name in on_paper, cell, "", None, msg))
            save_results(cfg, entries, out)
        if hasattr(extractor, "backbone"):  # a real network: free it before the next cell builds one
            del extractor
            gc.collect()
    position = {c.label: i for i, c in enumerate(cells)}
    entries.sort(key=lambda e: position[e.cell.label])
    write_report(cfg, entries, paper, out)
    if not quiet:
        print(f"wrote {out}/results.md, results.csv, bootstrap.csv")
    failed = [e for e in entries if e.result is None]
    if failed:
        raise ExperimentError(f"{len(failed)} of {len(entries)} cells failed (see {out}/results.md): "
                              f"{failed[0].benchmark} / {failed[0].cell.label}: "
                              f"{failed[0].error.splitlines()[0]}")
    return out
