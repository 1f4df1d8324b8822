"""The report of an experiment: ``results.md``, ``results.csv``, ``bootstrap.csv`` and the plots.

``results.md`` has one section per benchmark: how the descriptors were whitened, the database
and query counts, then one row per cell with our number next to the paper's and the difference
(``n/a (different data)`` when the benchmark is not the paper's); then the bootstrap CIs, the
paper's statements and ours, the figures and the failed cells.  ``results.csv`` has one line per
(cell, metric).  Everything is read from the run's :class:`~dasr.experiments.entries.Entry` records.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from dasr.eval import metrics
from dasr.eval.metrics import AP_VARIANT_DESCRIPTIONS
from dasr.eval.records import SearchResult
from dasr.experiments.bootstrap import BOOTSTRAP_FIELDS, bootstrap_rows, bootstrap_settings
from dasr.experiments.cells import display_label
from dasr.experiments.entries import Entry, read_results
from dasr.experiments.fidelity import fidelity_section
from dasr.experiments.precision import precision_section
from dasr.experiments.paper import metric_columns, paper_row, paper_value
from dasr.experiments.plots import write_plots
from dasr.experiments.statements import statements
from dasr.io.atomic import atomic_write_bytes

__all__ = ["CSV_FIELDS", "write_report", "replot", "benchmark_header"]

# The columns of results.csv.
CSV_FIELDS = ["experiment", "benchmark", "data", "group", "cell", "method", "backbone", "layer", "beta", "metric",
              "ours", "paper", "difference", "note"]
NOT_PAPER_DATA = "n/a (different data)"


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "-"
    if isinstance(v, str):
        return v
    return f"{v:.{digits}f}"


def _diff(v: float | None) -> str:
    return "-" if v is None else f"{v:+.3f}"


def _first_line(text: str | None) -> str:
    return text.splitlines()[0] if text else ""


def benchmark_header(result: SearchResult) -> list[str]:
    """The lines under a benchmark's title: whitening, database and queries, the result's notes."""
    pca = result.pca
    lines = [f"- whitening: {pca.mode}" + (f", learned on {pca.source}" if pca.source else "")
             + (f", {pca.dim} dims" if pca.dim else "") + (f" ({pca.note})" if pca.note else "")
             + (f"; VLAD codebook learned on {result.vlad['codebook_source']}"
                if result.vlad is not None and result.vlad["codebook_source"] else "")]
    every = f" (subsampled: 1 in {result.subsample})" if result.subsample > 1 else ""
    if result.scalability is not None:
        own = result.database_images - result.scalability.distractors
        lines.append(f"- {own} database images{every} plus the distractors, {result.queries} queries")
    else:
        lines.append(f"- {result.database_images} database images{every}, {result.queries} queries")
    lines += [f"- note: {note}" for note in result.notes]
    return lines


def _header(cfg: dict, sec: dict) -> list[str]:
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
        learned = "codebook" if cfg["pca"] == "none" else "codebook and PCA-whitening"
        md.append(f"- image search: VLAD of each image's region features ({', '.join(cfg['methods'])}); {learned} "
                  "learned on the independent collection named below; the AP is the benchmark's own "
                  "(Oxford / Holidays trapezoid).")
    md.append("")
    return md


def _base_csv(cfg: dict, bench: str, paper_data: bool, e: Entry) -> dict:
    c = e.cell
    return {"experiment": cfg["name"], "benchmark": bench, "data": "paper" if paper_data else "other",
            "group": e.group, "cell": c.label, "method": c.method, "backbone": c.backbone,
            "layer": c.layer or "default", "beta": c.beta}


def _scalability_row(e: Entry, key: str, paper_data: bool, base: dict, md: list[str], rows: list[dict]) -> None:
    r, s = e.result, e.result.scalability
    ours = r.mean[key] if key in r.mean else None
    md.append("| " + " | ".join([e.cell.label, s.search, f"{s.distractors:,}", f"{r.database_images:,}",
                                 f"{s.regions:,}", _fmt(ours), f"{s.recall_vs_exact:.3f} @{s.recall_vs_exact_k}",
                                 f"{s.index['bytes_per_region']:.1f}",
                                 f"{1000 * r.seconds['search_per_query']:.2f}"]) + " |")
    for metric, value in ((key, ours), ("recall_vs_exact", s.recall_vs_exact),
                          ("bytes_per_region", s.index["bytes_per_region"]),
                          ("ms_per_query", 1000 * r.seconds["search_per_query"]),
                          ("regions", s.regions), ("database_images", r.database_images)):
        rows.append({**base, "metric": metric, "ours": value, "paper": "", "difference": "",
                     "note": "no number in the paper" if paper_data else NOT_PAPER_DATA})


def _search_row(cfg: dict, paper: dict, sec: dict, bench: str, e: Entry, cols: list, numbers: bool, paper_data: bool,
                base: dict, md: list[str], rows: list[dict]) -> None:
    r = e.result
    name, row = paper_row(cfg, paper, bench, e.cell) if paper_data else (None, None)
    shown = display_label(cfg, e.cell.label)
    cells_md = [e.cell.label + (f" ({shown})" if shown != e.cell.label else "") + (f" ({name})" if name else ""),
                f"{r.pca.dim or '-'}" + (f" / {row['dim']}" if row and "dim" in row else "")]
    for key, title, pcol in cols:
        ours = r.mean[key] if key in r.mean else None
        if not paper_data:
            pv, ptxt, note = None, NOT_PAPER_DATA, NOT_PAPER_DATA
        elif not numbers:
            pv, ptxt, note = None, "", "no number in the paper (see its statements)"
        else:
            pv = paper_value(row, pcol, bench, sec)
            ptxt = _fmt(pv)
            other_network = (name is not None and row is None and isinstance(sec.get(bench), dict)
                             and name in sec[bench])
            note = "" if pv is not None else (
                f"the paper's row is another network ({sec[bench][name].get('dim')}-d)" if other_network
                else "not in the paper" if row is None else "- in the paper")
        diff = None if (pv is None or ours is None) else ours - pv
        cells_md += [_fmt(ours), ptxt, _diff(diff)] if numbers else [_fmt(ours)]
        rows.append({**base, "metric": title, "ours": ours, "paper": pv if pv is not None else ("" if paper_data else ptxt),
                     "difference": diff if diff is not None else "", "note": note})
    loc = r.localization_recall
    miou = metrics.pooled_authors_miou([p.ap for p in r.per_query])
    cells_md += [f"{r.regions_per_image:.1f}", _fmt(loc["0.5"] if loc and "0.5" in loc else None) if loc else "-",
                 _fmt(miou) if miou is not None else "-"]
    md.append("| " + " | ".join(cells_md) + " |")
    rows.append({**base, "metric": "regions_per_image", "ours": r.regions_per_image, "paper": "", "difference": "",
                 "note": ""})
    if miou is not None:
        rows.append({**base, "metric": "miou_enclosing", "ours": miou, "paper": "", "difference": "",
                     "note": metrics.MIOU_ENCLOSING_NAME})
    if cfg["compare"] == "fig7" or cfg["plot"].get("kind") == "recall-iou":
        ious = [v for p in r.per_query for v in p.ious]
        th = [float(t) for t in cfg["iou_thresholds"]]
        if ious:
            for t, v in zip(th, metrics.localization_recall(ious, th)):
                rows.append({**base, "metric": f"recall@iou{t:g}", "ours": float(v),
                             "paper": "no number in the paper" if paper_data else NOT_PAPER_DATA,
                             "difference": "", "note": ""})


def _localization_table(cfg: dict, es: list[Entry]) -> list[str]:
    th = [float(t) for t in cfg["iou_thresholds"]]
    md = ["Localization recall (true IoU of the returned region of each relevant image vs its ground-truth "
          f"box); {metrics.MIOU_ENCLOSING_NAME}: the best region of each reference image, whatever the ranking:", "",
          "| cell | " + " | ".join(f"IoU≥{t:g}" for t in th) + " | mIoU (enclosing) |", "|---|" + "---|" * (len(th) + 1)]
    for e in es:
        if e.result is None:
            continue
        ious = [v for p in e.result.per_query for v in p.ious]
        if ious:
            miou = metrics.pooled_authors_miou([p.ap for p in e.result.per_query])
            md.append(f"| {e.cell.label} | " + " | ".join(_fmt(float(v)) for v in metrics.localization_recall(ious, th))
                      + f" | {_fmt(miou) if miou is not None else '-'} |")
        else:
            md.append(f"| {e.cell.label} | no ground-truth boxes |")
    md.append("")
    return md


def _benchmark_section(cfg: dict, paper: dict, sec: dict, bench: str, es: list[Entry],
                       rows: list[dict]) -> list[str]:
    paper_data = any(e.paper_data for e in es)
    present = {k for e in es if e.result is not None for k in e.result.mean}
    cols = [c for c in metric_columns(cfg, bench) if c[0] in present] or metric_columns(cfg, bench)
    numbers = isinstance(sec.get(bench), dict) or isinstance(sec.get("methods"), dict)
    first = next((e.result for e in es if e.result is not None), None)
    md = [f"## {bench}" + ("" if paper_data else " (not the paper's data: paper numbers n/a)"), ""]
    if first is not None:
        md += benchmark_header(first)
    md.append("")
    if cfg["task"] == "scalability":
        head = ["cell", "search", "distractors", "images", "regions", cols[0][1], "recall vs exact",
                "bytes/region", "ms/query"]
    else:
        head = ["cell", "dim"]
        for _, title, _ in cols:
            head += [f"{title} ours", f"{title} paper", "Δ"] if numbers else [title]
        head += ["regions/img", "loc@0.5", metrics.MIOU_ENCLOSING_NAME]
    md += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in es:
        base = _base_csv(cfg, bench, paper_data, e)
        if e.result is None:
            md.append(f"| {e.cell.label} | error: {_first_line(e.error) or '?'} |")
            rows.append({**base, "metric": "error", "ours": "", "paper": "", "difference": "",
                         "note": _first_line(e.error)})
        elif cfg["task"] == "scalability":
            _scalability_row(e, cols[0][0], paper_data, base, md, rows)
        else:
            _search_row(cfg, paper, sec, bench, e, cols, numbers, paper_data, base, md, rows)
    md.append("")
    if paper_data and numbers and cfg["task"] != "scalability":
        ours_names = {paper_row(cfg, paper, bench, e.cell)[0] for e in es}
        table = sec.get(bench) if isinstance(sec.get(bench), dict) else sec.get("methods", {})
        others = [(n, row) for n, row in (table or {}).items() if n not in ours_names and isinstance(row, dict)]
        if others:
            md.append("Paper rows not reimplemented here: " + "; ".join(
                f"{n} {', '.join(_fmt(paper_value(row, p, bench, sec)) for _, _, p in cols)}"
                + (" (cited)" if row.get("cited") else "") for n, row in others))
            md.append("")
    if cfg["task"] != "scalability" and cfg["plot"].get("kind") == "recall-iou":
        md += _localization_table(cfg, es)
    return md


def _bootstrap_section(cfg: dict, boot: list[dict]) -> list[str]:
    md = ["## 95% paired bootstrap CI over queries (reference - other)", "",
          f"Metric: per-query `{boot[0]['metric']}`; {int(bootstrap_settings(cfg)['n_boot'])} "
          "resamples of the queries. `*`: the interval excludes 0.", "",
          "| benchmark | group | reference - other | mean Δ | 95% CI | queries |", "|---|---|---|---|---|---|"]
    for b in boot:
        md.append(f"| {b['benchmark']} | {b['group'] or '-'} | {b['reference']} - {b['other']} | "
                  f"{b['mean_difference']:+.3f}{' *' if b['excludes_zero'] else ''} | "
                  f"[{b['ci_low']:+.3f}, {b['ci_high']:+.3f}] | {b['queries']} |")
    md.append("")
    return md


def _csv_bytes(fields: list[str], rows: list[dict]) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode()


def write_report(cfg: dict, entries: list[Entry], paper: dict, out: Path) -> dict[str, Path]:
    """results.md, results.csv, bootstrap.csv and the PNG plots from the run's entries.

    Args:
      cfg: the run's config.
      entries: every entry, in report order (the config's cell order).
      paper: the paper numbers (:func:`dasr.experiments.paper.load_paper_numbers`).
      out: the results folder.

    Returns:
      ``{"md", "csv", "bootstrap", <plot stem>: path, ...}``.
    """
    out.mkdir(parents=True, exist_ok=True)
    sec = paper.get(cfg["compare"]) or {}
    md = _header(cfg, sec)
    rows: list[dict] = []
    for bench in dict.fromkeys(e.benchmark for e in entries):
        md += _benchmark_section(cfg, paper, sec, bench, [e for e in entries if e.benchmark == bench], rows)
    boot = bootstrap_rows(cfg, entries)
    if boot:
        md += _bootstrap_section(cfg, boot)
    if cfg["compare"] == "fidelity":
        md += fidelity_section(cfg, entries, rows)
    if cfg["compare"] == "precision":
        md += precision_section(cfg, entries, rows)
    said = statements(cfg, entries, paper)
    if said:
        md += ["## The paper's statements and ours", "", *said, ""]
    pngs = write_plots(cfg, entries, paper, out)
    if pngs:
        md += ["## Figures", "", *[f"![{p.stem}]({p.name})" for p in pngs], ""]
    errors = [e for e in entries if e.result is None]
    if errors:
        md += ["## Errors", "", *[f"- {e.benchmark} / {e.cell.label}: {_first_line(e.error)}" for e in errors], ""]
    atomic_write_bytes(out / "results.md", "\n".join(md).encode())
    atomic_write_bytes(out / "results.csv", _csv_bytes(CSV_FIELDS, rows))
    atomic_write_bytes(out / "bootstrap.csv", _csv_bytes(BOOTSTRAP_FIELDS, boot))
    return {"md": out / "results.md", "csv": out / "results.csv", "bootstrap": out / "bootstrap.csv",
            **{p.stem: p for p in pngs}}


def replot(cfg: dict, paper: dict, out: Path) -> dict[str, Path]:
    """Rewrites the report of the run in ``out`` from its ``results.json`` (nothing is run again).

    The saved config is used, with this config's ``plot`` table (so plots can be restyled).

    Raises:
      FileNotFoundError: the experiment never ran in ``out``.
    """
    saved, entries = read_results(out)
    saved["plot"] = cfg["plot"]
    return write_report(saved, entries, paper, out)
