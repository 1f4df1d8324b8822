"""The precision section of a report: cells that change only the backprop's dtype, against their own cells.

For a run with ``compare = "precision"`` (``experiments/bfloat16.toml``: float32 cells, and a
``variants`` cell in bfloat16 beside each), per benchmark:

* the cell table of the fidelity section (mAP@k, regions per image, loc@0.5, mIoU);
* paired 95% bootstrap intervals over queries of each variants cell minus its own cell (AP, mIoU);
* the matched-box IoU: each box of the own cell, against the best box of the variant in the same
  image (:func:`dasr.regions.boxes.best_iou`): the median, the 5th percentile and the share at or
  above :data:`MIN_MEDIAN_MATCHED_IOU`, over the images both stores hold;
* the rule that decides ``--dtype auto`` on CPUs, stated before measuring: the variant's dtype is
  kept only if every mAP interval includes 0 and every median matched-box IoU is at least
  :data:`MIN_MEDIAN_MATCHED_IOU`; and whether this benchmark passes it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dasr.experiments.entries import Entry
from dasr.experiments.fidelity import benchmark_intro, bootstrap_table, cell_table, own_cells
from dasr.regions.boxes import best_iou
from dasr.store import RegionStore

__all__ = ["MIN_MEDIAN_MATCHED_IOU", "matched_box_ious", "precision_section"]

# A box that moves by a pixel or two at 512 px keeps an IoU above 0.98 (a 200 px box shifted by
# 2 px: 0.98); below that the boxes themselves change, whatever the mAP says.
MIN_MEDIAN_MATCHED_IOU = 0.98


def matched_box_ious(reference: RegionStore, other: RegionStore, names: list[str] | None = None) -> np.ndarray:
    """The best IoU of every box of ``reference`` with the boxes of ``other`` in the same image.

    Args:
      reference: the store whose boxes are matched (a box with no counterpart scores 0).
      other: the store searched for each box's best match.
      names: the images compared (default: those both stores hold, in ``reference``'s order).

    Returns:
      The IoUs of the reference boxes of those images, image after image.
    """
    if names is None:
        held = set(other.images)
        names = [n for n in reference.images if n in held]
    ious = [best_iou(reference.regions_of(reference.index(n))["boxes"], other.regions_of(other.index(n))["boxes"])
            for n in names]
    return np.concatenate(ious) if ious else np.zeros(0)


def _open(e: Entry) -> RegionStore | None:
    return RegionStore.open(e.result.store) if e.result.store and Path(e.result.store).is_file() else None


def _box_table(pairs: list[tuple[Entry, Entry]]) -> tuple[list[str], list[float]]:
    """The matched-box IoU table of (variant, own cell) pairs, and each pair's median (where measured)."""
    md = ["Matched-box IoU: each box of the own cell against the best box of the variant in the same image.", "",
          "| variant - own cell | images | boxes | median IoU | 5th percentile | share ≥ "
          f"{MIN_MEDIAN_MATCHED_IOU:g} |", "|---|---|---|---|---|---|"]
    medians = []
    for variant, own in pairs:
        a, b = _open(own), _open(variant)
        if a is None or b is None:
            md.append(f"| {variant.cell.label} - {own.cell.label} | store missing | | | | |")
            continue
        images = len(set(a.images) & set(b.images))
        ious = matched_box_ious(a, b)
        if not len(ious):
            md.append(f"| {variant.cell.label} - {own.cell.label} | {images} | 0 | | | |")
            continue
        medians.append(float(np.median(ious)))
        md.append(f"| {variant.cell.label} - {own.cell.label} | {images} | {len(ious)} | {medians[-1]:.4f} | "
                  f"{np.percentile(ious, 5):.4f} | {np.mean(ious >= MIN_MEDIAN_MATCHED_IOU):.3f} |")
    return md + [""], medians


def _verdict(pairs: list[tuple[Entry, Entry]], ap_ci: dict, medians: list[float]) -> list[str]:
    intervals = [ap_ci[(v.cell.label, o.cell.label)] for v, o in pairs if (v.cell.label, o.cell.label) in ap_ci]
    if len(intervals) < len(pairs) or len(medians) < len(pairs):
        return ["- Not every pair was measured: no verdict.", ""]
    zero = all(lo <= 0 <= hi for _, lo, hi in intervals)
    close = all(m >= MIN_MEDIAN_MATCHED_IOU for m in medians)
    return [f"- Every mAP interval includes 0: **{'yes' if zero else 'no'}**; every median matched-box IoU is at "
            f"least {MIN_MEDIAN_MATCHED_IOU:g}: **{'yes' if close else 'no'}** (lowest {min(medians):.4f}) -> "
            + ("the variant **passes** the rule here." if zero and close else "the variant **fails** the rule here."),
            ""]


def precision_section(cfg: dict, entries: list[Entry], rows: list[dict]) -> list[str]:
    """The precision section of results.md: the arguments and result of
    :func:`~dasr.experiments.fidelity.fidelity_section` (its CSV rows appended to ``rows``)."""
    md = ["## Precision: each variants cell against its own cell", "",
          "The rule for `--dtype auto` on CPUs, stated before measuring: the variant's dtype is kept only if every "
          f"mAP interval (variant - own cell) includes 0 and every median matched-box IoU is at least "
          f"{MIN_MEDIAN_MATCHED_IOU:g}; otherwise float32.", ""]
    for bench in dict.fromkeys(e.benchmark for e in entries):
        es = [e for e in entries if e.benchmark == bench and e.result is not None]
        if not es:
            continue
        b, intro = benchmark_intro(cfg, bench, es)
        table, _ = cell_table(cfg, es, set(b.database), rows, bench)
        by_label = {e.cell.label: e for e in es}
        pairs = [(by_label[v], by_label[o]) for v, o in own_cells(es).items() if o is not None]
        boot, ap_ci = bootstrap_table(cfg, by_label, [(v.cell.label, o.cell.label) for v, o in pairs])
        boxes, medians = _box_table(pairs)
        md += intro + table + [""] + boot + boxes
        md += ["The rule on this benchmark:", "", *_verdict(pairs, ap_ci, medians)]
    return md
