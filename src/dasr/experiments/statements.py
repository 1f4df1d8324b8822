"""The paper's statements about a figure (``claims``, best layer / β, region counts) next to ours.

Each ``fig*`` section of ``paper_numbers.toml`` states what the paper concludes; these lines
say what our run shows for the same question, and whether it agrees.
"""

from __future__ import annotations

from dasr.experiments.cells import display_label
from dasr.experiments.entries import Entry
from dasr.experiments.paper import scalability_metric

__all__ = ["statements"]


def _best_layer(cfg: dict, sec: dict, bench: str, es: list[Entry]) -> list[str]:
    best = max(es, key=lambda e: e.result.mean["ap"])
    layer = best.cell.layer
    verdict = "agrees" if layer == sec.get("best_layer_ours") else "differs"
    lines = [f"- Ours on {bench}: best layer {display_label(cfg, best.cell.label)} "
             f"(mAP {best.result.mean['ap']:.3f}); paper: {sec.get('best_layer')} "
             f"({sec.get('best_layer_ours')}) -> {verdict}"]
    per_bb: dict = {}
    for e in es:
        per_bb[e.cell.backbone] = max(per_bb.get(e.cell.backbone, -1), e.result.mean["ap"])
    if len(per_bb) > 1:
        lines.append(f"- Ours on {bench}: best mAP per backbone: " + ", ".join(f"{bb} {v:.3f}" for bb, v in per_bb.items()))
    return lines


def _nms(sec: dict, bench: str, es: list[Entry]) -> list[str]:
    lines = []
    numeric = [e for e in es if e.cell.beta not in ("none", "default") or
               (e.cell.beta == "default" and e.cell.effective_beta() is not None)]
    if numeric:
        best = max(numeric, key=lambda e: e.result.mean["ap"])
        b = best.cell.effective_beta()
        lines.append(f"- Ours on {bench}: best β = {b:g} (mAP {best.result.mean['ap']:.3f}); paper: "
                     f"β = {sec.get('best_beta')} -> {'agrees' if abs(b - sec.get('best_beta', -1)) < 1e-9 else 'differs'}")
    at = {e.cell.effective_beta(): e for e in numeric}
    d = sec.get("default_beta", 0.3)
    if d in at:
        lines.append(f"- Ours on {bench}: {at[d].result.regions_per_image:.1f} regions/image at β = {d:g}; "
                     f"paper: about {sec.get('regions_per_image_at_default')}")
    bb = sec.get("best_beta", 0.4)
    for e in es:
        if e.cell.effective_beta() is None and bb in at and e.result.regions_per_image > 0:
            ratio = at[bb].result.regions_per_image / e.result.regions_per_image
            lines.append(f"- Ours on {bench}: regions(β = {bb:g}) / regions({e.cell.label}) = {ratio:.2f}; "
                         f"paper: roughly {sec.get('regions_ratio_best_to_no_nms')} (β = {bb:g} doubles the "
                         f"regions of no NMS)")
    return lines


def _localization(ok: list[Entry]) -> list[str]:
    lines = []
    for e in ok:
        loc = e.result.localization_recall
        if loc:
            lines.append(f"- Ours on {e.benchmark} ({e.cell.label}): recall at IoU 0.5 = {loc.get('0.5', 0):.3f}")
        else:
            lines.append(f"- Ours on {e.benchmark} ({e.cell.label}): no ground-truth boxes of the "
                         "relevant images, no localization recall")
    return lines


def _scalability(cfg: dict, sec: dict, bench: str, es: list[Entry]) -> list[str]:
    lines = []
    dstar = [e for e in es if e.cell.method == "dasr-star"]
    if dstar:
        top = max(dstar, key=lambda e: e.result.scalability.distractors).result.scalability
        lines.append(f"- Ours on {bench}: {top.distractor_regions:,} DASR* regions for {top.distractors:,} "
                     f"distractor images ({top.distractor_regions / max(1, top.distractors):.2f}/image); "
                     f"paper: {sec.get('regions_total', 0):,} for {sec.get('distractors', 0):,} "
                     f"({sec.get('regions_total', 0) / max(1, sec.get('distractors', 1)):.2f}/image)")
    by_step: dict = {}
    for e in es:
        by_step.setdefault((e.result.scalability.distractors, e.result.scalability.search), []).append(e)
    verdicts = []
    for (n, search), group in sorted(by_step.items()):
        if len({g.cell.method for g in group}) < 2:
            continue
        score = {id(g): g.result.mean[scalability_metric(cfg, g.result.mean)] for g in group}
        top_score = max(score.values())
        best = [g.cell.label for g in group if score[id(g)] == top_score]
        verdicts.append(f"{n} ({search}): {' = '.join(best)}{' (tie)' if len(best) > 1 else ''}")
    if verdicts:
        lines.append(f"- Ours on {bench}: best method per step: " + "; ".join(verdicts))
    return lines


def statements(cfg: dict, entries: list[Entry], paper: dict) -> list[str]:
    """Markdown list lines: the paper's claims for ``compare``, then what we measured on each benchmark."""
    compare = cfg["compare"]
    sec = paper.get(compare) or {}
    ok = [e for e in entries if e.result is not None]
    benches = list(dict.fromkeys(e.benchmark for e in ok))
    lines = [f"- Paper: {c}" for c in sec.get("claims", [])]
    if compare == "table3" and sec.get("text"):
        lines.append(f"- Paper: {sec['text']}")
    if compare == "fig7":
        return lines + _localization(ok)
    for bench in benches:
        es = [e for e in ok if e.benchmark == bench]
        if compare == "fig4":
            lines += _best_layer(cfg, sec, bench, es)
        elif compare == "fig5":
            lines += _nms(sec, bench, es)
        elif compare == "fig8":
            lines += _scalability(cfg, sec, bench, es)
    return lines
