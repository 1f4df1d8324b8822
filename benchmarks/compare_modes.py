"""A fast mode against the faithful one, from two ``dasr evaluate`` runs on the same benchmark.

Reads each run's ``results.json`` (and the region store it names) and prints, over the
database images both stores hold: regions per image, the matched-box IoU (each faithful region's
best IoU with a region of the other mode in the same image,
:func:`dasr.experiments.precision.matched_box_ious`), and
the mAP of each with the paired bootstrap 95% interval of the difference over queries.

Usage:
    dasr evaluate --benchmark instance-track --method dasr-star --pca none --subsample 6 --out runs/faithful
    dasr evaluate --benchmark instance-track --method dasr-star --pca none --subsample 6 \\
        --cascade-stride 16 --out runs/cascade
    python benchmarks/compare_modes.py runs/faithful/results.json runs/cascade/results.json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

import numpy as np

from dasr.eval.metrics import bootstrap_difference_ci
from dasr.eval.records import SearchResult
from dasr.experiments.precision import matched_box_ious
from dasr.store import RegionStore


@dataclass(frozen=True)
class RegionAgreement:
    """How well the other mode's regions reproduce the faithful ones.

    Attributes:
      matched_iou: mean over every faithful region of its best IoU with a region of the other
        mode in the same image (0 where the other mode has none).
      regions_faithful, regions_other: mean regions per image.
      images: images compared.
    """

    matched_iou: float
    regions_faithful: float
    regions_other: float
    images: int


def region_agreement(faithful: RegionStore, other: RegionStore, images: list[str]) -> RegionAgreement:
    """:class:`RegionAgreement` of two stores over ``images`` (names both hold)."""
    best = matched_box_ious(faithful, other, images)
    n_a, n_b = ([len(s.regions_of(s.index(name))["boxes"]) for name in images] for s in (faithful, other))
    return RegionAgreement(float(np.mean(best)) if len(best) else float("nan"), float(np.mean(n_a)),
                           float(np.mean(n_b)), len(images))


def load_result(path: str) -> SearchResult:
    with open(path, encoding="utf-8") as f:
        return SearchResult.from_json(json.load(f))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("faithful", help="results.json of the faithful run")
    p.add_argument("other", help="results.json of the mode to compare")
    p.add_argument("--metric", default="ap", help="per-query metric (default: AP over the whole list)")
    args = p.parse_args(argv)
    runs = [load_result(path) for path in (args.faithful, args.other)]
    if (runs[0].benchmark, runs[0].subsample) != (runs[1].benchmark, runs[1].subsample):
        raise SystemExit("compare_modes: the two runs are not on the same benchmark and subsample")
    if runs[0].store is None or runs[1].store is None:
        raise SystemExit("compare_modes: both runs must name their region store")
    stores = [RegionStore.open(r.store) for r in runs]
    images = sorted(set(stores[0].images) & set(stores[1].images))
    other_scores = {q.name: q.ap[args.metric] for q in runs[1].per_query}
    a = np.array([q.ap[args.metric] for q in runs[0].per_query])
    b = np.array([other_scores[q.name] for q in runs[0].per_query])
    mean, low, high = bootstrap_difference_ci(b, a)
    agree = region_agreement(stores[0], stores[1], images)
    print(f"{runs[0].benchmark} (subsample {runs[0].subsample}): {len(a)} queries, {agree.images} images")
    print(f"  regions/image: faithful {agree.regions_faithful:.1f}, other {agree.regions_other:.1f}")
    print(f"  faithful region's best IoU with an other region, mean: {agree.matched_iou:.3f}")
    print(f"  mAP ({args.metric}): faithful {a.mean():.3f}, other {b.mean():.3f}; other - faithful "
          f"{mean:+.3f} [95% CI {low:+.3f}, {high:+.3f}]")


if __name__ == "__main__":
    main()
