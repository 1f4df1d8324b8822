"""The fidelity section of a report: the paper's rule beside the authors' released rule.

For every benchmark of a run with ``compare = "fidelity"`` (``experiments/fidelity.toml``):

* one table per cell: mAP@k under both AP@k definitions (``truncated`` and ``min``), the
  full-list mAP, regions per image, the median box area (fraction of the image), localization
  recall at IoU 0.5 (true IoU, the returned region of each relevant image) and the authors' mIoU
  (enclosing-box denominator, the best stored region of each reference image);
* paired 95% bootstrap intervals over queries (:func:`dasr.eval.metrics.bootstrap_difference_ci`)
  for the pairs of :data:`PAIRS` present, on the per-query AP and the per-query mIoU;
* on a benchmark with ground-truth boxes, the same by object-size tercile (queries split by the
  median relative area of their reference images' boxes);
* which rule is closer to the paper's reported behaviour: about 11 regions per image for DASR*
  at β = 0.3 (Section 3.2), and Fig. 7's localization (curves, no numbers: the rule with the
  higher recall@0.5 and mIoU is the one nearer a working localizer), with the numbers;
* for each ``variants`` cell (options beyond the paper, e.g. ``dasr-star contrastive``): its
  paired intervals against the fixed-box control and against its own paper-rule cell, and
  whether it beats the control (the AP interval above 0).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dasr.eval import metrics
from dasr.eval.datasets import Benchmark, load_benchmark
from dasr.eval.instance import subsample_database
from dasr.experiments.benchmarks import resolve_benchmarks
from dasr.experiments.bootstrap import bootstrap_settings
from dasr.experiments.entries import Entry
from dasr.store import RegionStore

__all__ = ["PAIRS", "PAPER_REGIONS_PER_IMAGE", "benchmark_intro", "bootstrap_table", "cell_table", "fidelity_section",
           "median_box_area", "own_cells", "size_terciles", "variant_pairs"]

# Section 3.2: "On average, 11 regions are detected in one image after NMS when β is set to 0.3" (DASR*).
PAPER_REGIONS_PER_IMAGE = 11.0
# (reference, other) cell labels of the paired bootstrap intervals (those present in the run).
PAIRS = [("dasr-star authors", "dasr-star"), ("dasr authors", "dasr"),
         ("dasr-star", "fixed-box"), ("dasr-star authors", "fixed-box"),
         ("dasr", "fixed-box"), ("dasr authors", "fixed-box"),
         ("dasr-star", "rmac"), ("dasr-star authors", "rmac"), ("dasr-star", "gap"), ("dasr-star authors", "gap")]
BOOT_METRICS = ("ap", metrics.MIOU_KEY)


def median_box_area(store: RegionStore, names: set[str]) -> float | None:
    """Median area of the stored regions of the images ``names``, as a fraction of their image.

    Returns:
      None when those images have no region.
    """
    rows = [i for i, n in enumerate(store.images) if n in names]
    fractions = []
    for i in rows:
        boxes = store.regions_of(i)["boxes"].astype(np.float64)
        w, h = (float(v) for v in store.sizes[i])
        fractions.append(np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
                         / (w * h))
    values = np.concatenate(fractions) if fractions else np.zeros(0)
    return float(np.median(values)) if values.size else None


def size_terciles(bench: Benchmark, store: RegionStore) -> dict[str, int] | None:
    """Query name -> object-size tercile (0 small, 1 medium, 2 large), by the median of its reference
    images' ground-truth box areas relative to the image (sizes from ``store``).

    Returns:
      None when the benchmark has no ground-truth boxes.
    """
    position = {n: i for i, n in enumerate(store.images)}
    size = {}
    for q in bench.queries:
        rel = []
        for img, box in (q.positive_boxes or {}).items():
            name = bench.database[img]
            if name in position:
                w, h = (float(v) for v in store.sizes[position[name]])
                rel.append((box[2] - box[0]) * (box[3] - box[1]) / (w * h))
        if rel:
            size[q.name] = float(np.median(rel))
    if not size:
        return None
    edges = np.quantile(list(size.values()), [1 / 3, 2 / 3])
    return {name: int(np.searchsorted(edges, v, side="right")) for name, v in size.items()}


def benchmark_intro(cfg: dict, bench: str, es: list[Entry]) -> tuple[Benchmark, list[str]]:
    """The run's (subsampled) benchmark ``bench`` and the heading of its part of a section.

    Args:
      cfg: the run's config (benchmarks, ``subsample``).
      bench: the benchmark's name.
      es: its finished entries (the whitening mode is read from the first).
    """
    spec = next((s for s in resolve_benchmarks(cfg) if s.name == bench), None)
    b = subsample_database(load_benchmark(bench, spec.root if spec else None), cfg["subsample"])
    return b, [f"### {bench}", "", f"- {len(b.database)} database images"
               + (f" (1 in {cfg['subsample']} of the benchmark's: subsampled for CPU time)" if cfg["subsample"] > 1
                  else "") + f", {len(b.queries)} queries, whitening: {es[0].result.pca.mode}", ""]


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _loc05(per_query) -> float | None:
    ious = [v for p in per_query for v in p.ious]
    return float(np.mean(np.asarray(ious) >= 0.5)) if ious else None


def cell_table(cfg: dict, es: list[Entry], names: set[str], rows: list[dict], bench: str) -> tuple[list[str], dict]:
    """One table row per cell of ``es`` (their CSV rows appended to ``rows``).

    Args:
      cfg: the run's config (``ks``, ``name``).
      es: the benchmark's finished entries.
      names: the database images (the median box area is over their regions).
      rows: results.csv rows, extended here.
      bench: the benchmark's name.

    Returns:
      The Markdown lines and {cell label: {regions, area, loc, miou, ap}}.
    """
    ks = [int(k) for k in cfg["ks"]]
    head = ["cell", *[f"mAP@{k} trunc" for k in ks], *[f"mAP@{k} min" for k in ks], "mAP all", "regions/img",
            "median box area", "loc@0.5", "mIoU (enclosing)"]
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    stats = {}
    for e in es:
        r = e.result
        store = RegionStore.open(r.store) if r.store and Path(r.store).is_file() else None
        area = median_box_area(store, names) if store is not None else None
        miou = metrics.pooled_authors_miou([p.ap for p in r.per_query])
        loc = _loc05(r.per_query)
        values = [r.mean.get(f"ap@{k}/truncated") for k in ks] + [r.mean.get(f"ap@{k}/min") for k in ks]
        md.append("| " + " | ".join([e.cell.label, *(_fmt(v) for v in values), _fmt(r.mean["ap"]),
                                     f"{r.regions_per_image:.1f}", _fmt(area), _fmt(loc), _fmt(miou)]) + " |")
        stats[e.cell.label] = {"regions": r.regions_per_image, "area": area, "loc": loc, "miou": miou,
                               "ap": r.mean["ap"]}
        for metric, v in (("median_box_area", area), ("loc_recall@0.5", loc), ("miou_enclosing", miou),
                          *((f"map@{k}/{d}", r.mean.get(f"ap@{k}/{d}")) for d in ("truncated", "min") for k in ks)):
            if v is not None:
                rows.append({"experiment": cfg["name"], "benchmark": bench, "data": "other", "group": "fidelity",
                             "cell": e.cell.label, "method": e.cell.method, "backbone": e.cell.backbone,
                             "layer": e.cell.layer or "default", "beta": e.cell.beta, "metric": metric, "ours": v,
                             "paper": "", "difference": "",
                             "note": " ".join([f"rule={e.cell.rule}", *(f"{k}={v}" for k, v in e.cell.options)])})
    return md, stats


def own_cells(es: list[Entry]) -> dict[str, str | None]:
    """{label of each variants cell: the label of the same cell without the options, None where it did not run}."""
    plain = {(e.cell.method, e.cell.backbone, e.cell.layer, e.cell.beta, e.cell.rule): e.cell.label
             for e in es if not e.cell.options}
    return {e.cell.label: plain.get((e.cell.method, e.cell.backbone, e.cell.layer, e.cell.beta, e.cell.rule))
            for e in es if e.cell.options}


def variant_pairs(es: list[Entry]) -> list[tuple[str, str]]:
    """(variant cell, fixed-box) and (variant cell, its cell without the options), for each variants cell."""
    return [pair for label, base in own_cells(es).items()
            for pair in [(label, "fixed-box")] + ([(label, base)] if base else [])]


def bootstrap_table(cfg: dict, by_label: dict[str, Entry], pairs: list[tuple[str, str]]) -> tuple[list[str], dict]:
    """The paired intervals of ``pairs`` present, and {(reference, other): (Δ AP, lo, hi)}."""
    b = bootstrap_settings(cfg)
    md = [f"Paired 95% bootstrap intervals over queries ({int(b['n_boot'])} resamples, seed {b['seed']}); "
          "mIoU here is each query's mean over its reference images. `*`: the interval excludes 0.", "",
          "| reference - other | metric | mean Δ | 95% CI | queries |", "|---|---|---|---|---|"]
    ap_ci = {}
    for ref, other in pairs:
        if ref not in by_label or other not in by_label:
            continue
        a, o = by_label[ref].result.per_query, by_label[other].result.per_query
        for metric in BOOT_METRICS:
            if metric not in a[0].ap or metric not in o[0].ap:
                continue
            d, lo, hi = metrics.bootstrap_difference_ci([p.ap[metric] for p in a], [p.ap[metric] for p in o],
                                                        int(b["n_boot"]), float(b["alpha"]), int(b["seed"]))
            star = " *" if lo > 0 or hi < 0 else ""
            if metric == "ap":
                ap_ci[(ref, other)] = (d, lo, hi)
            md.append(f"| {ref} - {other} | {'mIoU' if metric == metrics.MIOU_KEY else 'AP'} | {d:+.3f}{star} | "
                      f"[{lo:+.3f}, {hi:+.3f}] | {len(a)} |")
    return (md + [""] if len(md) > 4 else []), ap_ci  # none of the pairs ran: no empty table


def _variant_verdict(es: list[Entry], ap_ci: dict) -> list[str]:
    """One line per variants cell: does it beat the fixed-box control (AP interval above 0)?"""
    lines = []
    for ref, other in variant_pairs(es):
        if other == "fixed-box" and (ref, other) in ap_ci:
            d, lo, hi = ap_ci[(ref, other)]
            word = "**beats**" if lo > 0 else ("is **beaten by**" if hi < 0 else "does **not** separate from")
            lines.append(f"- {ref} (beyond the paper) {word} the fixed-box control: mean Δ AP {d:+.3f}, "
                         f"95% CI [{lo:+.3f}, {hi:+.3f}].")
    return lines


def _tercile_table(es: list[Entry], terciles: dict[str, int]) -> list[str]:
    counts = [sum(1 for t in terciles.values() if t == k) for k in range(3)]
    md = ["By object-size tercile (queries split by the median relative area of their reference boxes; "
          f"small / medium / large: {counts[0]} / {counts[1]} / {counts[2]} queries):", "",
          "| cell | " + " | ".join(f"{s} mAP | {s} loc@0.5 | {s} mIoU" for s in ("small", "medium", "large")) + " |",
          "|---|" + "---|" * 9]
    for e in es:
        cells = []
        for k in range(3):
            qs = [p for p in e.result.per_query if terciles.get(p.name) == k]
            cells += [_fmt(float(np.mean([p.ap["ap"] for p in qs])) if qs else None), _fmt(_loc05(qs)),
                      _fmt(metrics.pooled_authors_miou([p.ap for p in qs]))]
        md.append(f"| {e.cell.label} | " + " | ".join(cells) + " |")
    return md + [""]


def _verdict(stats: dict) -> list[str]:
    lines = []
    star = {rule: stats.get(label) for rule, label in (("paper", "dasr-star"), ("authors", "dasr-star authors"))}
    if all(star.values()):
        gap = {rule: abs(s["regions"] - PAPER_REGIONS_PER_IMAGE) for rule, s in star.items()}
        closer = min(gap, key=gap.get)
        other = "authors" if closer == "paper" else "paper"
        lines.append(f"- Regions per image (DASR*, β = 0.3): paper rule {star['paper']['regions']:.1f}, authors' rule "
                     f"{star['authors']['regions']:.1f}; the paper reports about {PAPER_REGIONS_PER_IMAGE:g} "
                     f"(Section 3.2) -> the **{closer}** rule is closer ({gap[closer]:.1f} away vs "
                     f"{gap[other]:.1f}, i.e. {gap[closer] / PAPER_REGIONS_PER_IMAGE:.0%} vs "
                     f"{gap[other] / PAPER_REGIONS_PER_IMAGE:.0%} of the paper's number).")
        locs = {rule: (s["loc"], s["miou"]) for rule, s in star.items()}
        if all(v[0] is not None and v[1] is not None for v in locs.values()):
            better = [r for r in ("paper", "authors") if all(locs[r][i] >= locs[o][i] for i in (0, 1)
                                                              for o in ("paper", "authors") if o != r)]
            lines.append(f"- Localization (DASR*): recall@0.5 paper {locs['paper'][0]:.3f} vs authors "
                         f"{locs['authors'][0]:.3f}; mIoU (enclosing) paper {locs['paper'][1]:.3f} vs authors "
                         f"{locs['authors'][1]:.3f}. Fig. 7 prints curves, no numbers, and claims DASR* localizes about "
                         "as well as PCL*+SPN (a weakly supervised detector) -> "
                         + (f"the **{better[0]}** rule localizes better on both measures." if better else
                            "neither rule is better on both measures."))
    return lines


def fidelity_section(cfg: dict, entries: list[Entry], rows: list[dict]) -> list[str]:
    """The fidelity section of results.md (its CSV rows are appended to ``rows``).

    Args:
      cfg: the run's config (``ks``, ``bootstrap``, benchmarks, ``subsample``).
      entries: the run's entries.
      rows: results.csv rows, extended here.

    Returns:
      Markdown lines.
    """
    md = ["## Fidelity: the paper's rule vs the authors' released rule", "",
          f"Constants: τ = {cfg['tau']:g} and β = 0.3 (DASR*) are the paper's; the authors' rule uses its code's "
          "own (95th percentile of each map, PRM's 3x3 peaks without the border, NMS 0.3 for DASR*, none for DASR). "
          "Nothing was tuned to these data.", ""]
    for bench in dict.fromkeys(e.benchmark for e in entries):
        es = [e for e in entries if e.benchmark == bench and e.result is not None]
        if not es:
            continue
        b, intro = benchmark_intro(cfg, bench, es)
        names = set(b.database)
        md += intro
        table, stats = cell_table(cfg, es, names, rows, bench)
        md += table + [""]
        sizes = [len(q.positives) for q in b.queries]
        if b.ap == "instance" and sizes and max(sizes) <= min(int(k) for k in cfg["ks"]):
            md += [f"The two AP@k definitions coincide here: no query has more relevant images than the smallest k "
                   f"(|R| = {min(sizes)}..{max(sizes)}, median {int(np.median(sizes))}).", ""]
        boot, ap_ci = bootstrap_table(cfg, {e.cell.label: e for e in es}, PAIRS + variant_pairs(es))
        md += boot
        store = next((RegionStore.open(e.result.store) for e in es
                      if e.result.store and Path(e.result.store).is_file()), None)
        terciles = size_terciles(b, store) if store is not None else None
        if terciles:
            md += _tercile_table(es, terciles)
        verdict = _verdict(stats)
        if verdict:
            md += ["Which rule is closer to the paper's reported behaviour:", "", *verdict, ""]
        variants = _variant_verdict(es, ap_ci)
        if variants:
            md += ["Options beyond the paper against the fixed-box control (paired AP interval over queries):", "",
                   *variants, ""]
    return md
