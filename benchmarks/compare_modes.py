"""A fast mode against the faithful one, from two ``dasr evaluate`` runs on the same benchmark.

Reads each run's ``results.json`` (and the region store it names) and prints, over the
database images both evaluated: regions per image, the matched-box IoU (each faithful region's
best IoU with a region of the other mode in the same image), and the mAP of each with the
paired bootstrap 95% interval of the difference over queries.

Usage:
    dasr evaluate --benchmark instance-track --method dasr-star --pca none --subsample 6 --out runs/faithful
    dasr evaluate --benchmark instance-track --method dasr-star --pca none --subsample 6 \\
        --cascade-stride 16 --out runs/cascade
    python benchmarks/compare_modes.py runs/faithful/results.json runs/cascade/results.json
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from dasr.metrics import bootstrap_difference_ci, box_iou
from dasr.store import RegionStore


def matched_iou(faithful: RegionStore, other: RegionStore, images: list[str]) -> tuple[float, float, float]:
    """(mean best IoU, regions/image faithful, regions/image other) over ``images``."""
    best, n_a, n_b = [], [], []
    for name in images:
        a = faithful.regions_of(faithful.index(name))["boxes"].astype(np.float64)
        b = other.regions_of(other.index(name))["boxes"].astype(np.float64)
        n_a.append(len(a))
        n_b.append(len(b))
        if len(a):
            best += (box_iou(a, b).max(1) if len(b) else np.zeros(len(a))).tolist()
    return float(np.mean(best)), float(np.mean(n_a)), float(np.mean(n_b))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("faithful", help="results.json of the faithful run")
    p.add_argument("other", help="results.json of the mode to compare")
    p.add_argument("--metric", default="ap", help="per-query metric (default: AP over the whole list)")
    args = p.parse_args()
    runs = [json.load(open(path, encoding="utf-8")) for path in (args.faithful, args.other)]
    if runs[0]["benchmark"] != runs[1]["benchmark"] or runs[0].get("subsample") != runs[1].get("subsample"):
        raise SystemExit("compare_modes: the two runs are not on the same benchmark and subsample")
    stores = [RegionStore.open(r["store"]) for r in runs]
    images = sorted(set(stores[0].images) & set(stores[1].images))
    wanted = {q["name"]: q[args.metric] for q in runs[1]["per_query"]}
    a = np.array([q[args.metric] for q in runs[0]["per_query"]])
    b = np.array([wanted[q["name"]] for q in runs[0]["per_query"]])
    mean, low, high = bootstrap_difference_ci(b, a)
    iou, reg_a, reg_b = matched_iou(stores[0], stores[1], images)
    print(f"{runs[0]['benchmark']} (subsample {runs[0].get('subsample', 1)}): {len(a)} queries, {len(images)} images")
    print(f"  regions/image: faithful {reg_a:.1f}, other {reg_b:.1f}")
    print(f"  faithful region's best IoU with an other region, mean: {iou:.3f}")
    print(f"  mAP ({args.metric}): faithful {a.mean():.3f}, other {b.mean():.3f}; other - faithful "
          f"{mean:+.3f} [95% CI {low:+.3f}, {high:+.3f}]")


if __name__ == "__main__":
    main()
