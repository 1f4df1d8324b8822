"""The PNG plots of an experiment's report, by ``plot.kind``.

* ``bars``: ``plot.metric`` per cell and benchmark, the paper's values as ticks;
* ``beta``: mAP and regions per image vs the NMS threshold β (no-NMS cells as flat lines);
* ``recall-iou``: localization recall vs IoU threshold;
* ``scalability``: mAP and the recall of the exact top regions vs database size.
"""

from __future__ import annotations

from pathlib import Path

from dasr import figures
from dasr.eval import metrics
from dasr.experiments.cells import display_label
from dasr.experiments.config import first_k
from dasr.experiments.entries import Entry
from dasr.experiments.paper import metric_columns, paper_row, paper_value, scalability_metric
from dasr.experiments.paths import slug

__all__ = ["write_plots"]


def _bars(cfg: dict, ok: list[Entry], paper: dict, out: Path, benches: list[str]) -> list[Path]:
    metric = cfg["plot"].get("metric", "ap")
    sec = paper.get(cfg["compare"]) or {}
    files = []
    for bench in benches:
        values, ref = {}, {}
        for e in ok:
            if e.benchmark != bench or metric not in e.result.mean:
                continue
            name = display_label(cfg, e.cell.label)
            values[name] = e.result.mean[metric]
            if e.paper_data:
                _, row = paper_row(cfg, paper, bench, e.cell)
                col = dict((m, p) for m, _, p in metric_columns(cfg, bench)).get(metric)
                pv = paper_value(row, col, bench, sec)
                if pv is not None:
                    ref[name] = pv
        if values:
            files.append(figures.bar_plot(values, f"mAP ({metric})", out / f"{slug(bench)}-{metric.replace('/', '-')}.png",
                                          title=f"{cfg['title']} - {bench}", reference=ref or None))
    return files


def _beta(cfg: dict, ok: list[Entry], out: Path, benches: list[str]) -> list[Path]:
    files = []
    for what, ylabel, fname in (("ap", "mAP", "map-vs-beta.png"),
                                ("regions_per_image", "regions / image", "regions-vs-beta.png")):
        def value(e: Entry) -> float:
            return e.result.mean["ap"] if what == "ap" else e.result.regions_per_image

        series = {}
        for bench in benches:
            pts = [(e.cell.effective_beta(), e) for e in ok if e.benchmark == bench
                   and e.cell.beta != "none" and e.cell.effective_beta() is not None]
            pts.sort(key=lambda t: t[0])
            xs = [p for p, _ in pts]
            if xs:
                series[bench] = (xs, [value(e) for _, e in pts])
            for e in ok:
                if e.benchmark == bench and e.cell.effective_beta() is None and xs:
                    series[f"{bench} {e.cell.label}"] = ([xs[0], xs[-1]], [value(e)] * 2)
        if series:
            files.append(figures.line_plot(series, "NMS IoU threshold β", ylabel, out / fname, title=cfg["title"]))
    return files


def _recall_iou(cfg: dict, ok: list[Entry], out: Path) -> list[Path]:
    th = [float(t) for t in cfg["iou_thresholds"]]
    series = {}
    for e in ok:
        ious = [v for p in e.result.per_query for v in p.ious]
        if ious:
            series[f"{e.benchmark} {e.cell.label}"] = (th, metrics.localization_recall(ious, th).tolist())
    if not series:
        return []
    return [figures.line_plot(series, "IoU threshold", "recall", out / "recall-vs-iou.png", title=cfg["title"])]


def _scalability(cfg: dict, ok: list[Entry], out: Path) -> list[Path]:
    series: dict = {}
    recall: dict = {}
    for e in ok:
        r, s = e.result, e.result.scalability
        name = f"{e.benchmark} {e.cell.label} {s.search}"
        series.setdefault(name, ([], []))
        series[name][0].append(r.database_images)
        series[name][1].append(r.mean[scalability_metric(cfg, r.mean)])
        if s.search != "exact":
            recall.setdefault(name, ([], []))
            recall[name][0].append(r.database_images)
            recall[name][1].append(s.recall_vs_exact)
    files = []
    if series:
        files.append(figures.line_plot(series, "database images", f"mAP@{first_k(cfg)}",
                                       out / "map-vs-database-size.png", title=cfg["title"]))
    if recall:
        files.append(figures.line_plot(recall, "database images", "recall of the exact top regions",
                                       out / "recall-vs-database-size.png", title=cfg["title"]))
    return files


def write_plots(cfg: dict, entries: list[Entry], paper: dict, out: Path) -> list[Path]:
    """Draws the plots of ``plot.kind`` (default ``bars``) from the cells that ran.

    Returns:
      The PNG paths written (none when nothing ran; an unknown kind draws nothing).
    """
    kind = cfg["plot"].get("kind", "bars")
    ok = [e for e in entries if e.result is not None]
    benches = list(dict.fromkeys(e.benchmark for e in ok))
    if kind == "bars":
        return _bars(cfg, ok, paper, out, benches)
    if kind == "beta":
        return _beta(cfg, ok, out, benches)
    if kind == "recall-iou":
        return _recall_iou(cfg, ok, out)
    if kind == "scalability":
        return _scalability(cfg, ok, out)
    return []
