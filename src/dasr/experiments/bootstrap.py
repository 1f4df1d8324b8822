"""The 95% paired bootstrap CI of (reference cell - every other cell) over queries, per benchmark and group."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

from dasr.errors import InputError, InputWarning
from dasr.eval import metrics
from dasr.experiments.cells import Cell
from dasr.experiments.config import DEFAULTS
from dasr.experiments.entries import Entry
from dasr.experiments.paper import scalability_metric
from dasr.model.architectures import DEFAULT_FEATURE_LAYER

__all__ = ["BOOTSTRAP_FIELDS", "bootstrap_settings", "matches_reference", "bootstrap_rows"]

# The columns of bootstrap.csv.
BOOTSTRAP_FIELDS = ["benchmark", "group", "reference", "other", "metric", "queries", "mean_difference", "ci_low",
                    "ci_high", "excludes_zero"]
_CELL_FIELDS = {f.name for f in dataclasses.fields(Cell)}


def bootstrap_settings(cfg: dict) -> dict:
    """The config's ``bootstrap`` table over :data:`DEFAULTS`' (reference, n_boot, seed, alpha, metric)."""
    return {**DEFAULTS["bootstrap"], **cfg["bootstrap"]}


def matches_reference(cell: Cell, reference: dict[str, Any]) -> bool:
    """Whether ``cell`` is the one ``reference`` describes (``{method, backbone, layer, beta, label}``).

    ``beta`` matches by effect: ``"none"`` = no NMS (a ``"none"`` cell, or the default of a method
    without NMS), a number = that NMS IoU, ``"default"`` = the method's own.  ``layer`` matches a
    cell of the default layer when it names the backbone's default.

    Raises:
      ValueError: a key that is not a cell field.
    """
    for key, want in reference.items():
        if key not in _CELL_FIELDS:
            raise InputError(f"bootstrap.reference: unknown key {key!r}; known: {', '.join(sorted(_CELL_FIELDS))}")
        have = getattr(cell, key)
        if key == "beta":
            eff = cell.effective_beta()
            if want == "none":
                ok = eff is None and have in ("none", "default")
            elif want == "default":
                ok = have == "default"
            else:
                ok = eff is not None and abs(float(eff) - float(want)) < 1e-9
            if not ok:
                return False
        elif key == "layer" and have is None:
            if DEFAULT_FEATURE_LAYER.get(cell.backbone, None) != want:
                return False
        elif have != want:
            return False
    return True


def bootstrap_rows(cfg: dict, entries: list[Entry]) -> list[dict]:
    """One row per (benchmark, group, other cell): mean difference and CI over their common queries.

    A group without exactly one reference cell gives no rows, with a warning naming the cells
    matched (a reference by method alone matches every rule and variant of that method).

    Returns:
      Rows with the :data:`BOOTSTRAP_FIELDS` keys (the lines of ``bootstrap.csv``).
    """
    b = bootstrap_settings(cfg)
    ref = b["reference"] or {}
    rows = []
    groups: dict[tuple, list[Entry]] = {}
    for e in entries:
        if e.result is not None:
            groups.setdefault((e.benchmark, e.group), []).append(e)
    for (bench, group), members in groups.items():
        refs = [e for e in members if matches_reference(e.cell, ref)]
        if len(refs) != 1:
            where = f"{bench}{' / ' + group if group else ''}"
            found = f"{len(refs)} cells ({', '.join(e.cell.label for e in refs)})" if refs else "no cell"
            warnings.warn(f"bootstrap.reference {ref} matches {found} of {where}: no paired intervals there; "
                          "name one cell, e.g. by its label", InputWarning, stacklevel=2)
            continue
        r = refs[0]
        metric = b["metric"] or (scalability_metric(cfg, r.result.mean) if cfg["task"] == "scalability" else "ap")
        ra = {p.name: p.ap[metric] for p in r.result.per_query if metric in p.ap}
        for e in members:
            if e is r:
                continue
            ob = {p.name: p.ap[metric] for p in e.result.per_query if metric in p.ap}
            names = [n for n in ra if n in ob]
            if not names:
                continue
            mean, lo, hi = metrics.bootstrap_difference_ci([ra[n] for n in names], [ob[n] for n in names],
                                                           n_boot=int(b["n_boot"]), alpha=float(b["alpha"]),
                                                           seed=int(b["seed"]))
            rows.append({"benchmark": bench, "group": group, "reference": r.cell.label,
                         "other": e.cell.label, "metric": metric, "queries": len(names),
                         "mean_difference": mean, "ci_low": lo, "ci_high": hi,
                         "excludes_zero": bool(lo > 0 or hi < 0)})
    return rows
