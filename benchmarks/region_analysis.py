"""Why do DASR* regions localise small instances poorly?  Region size against object size.

Two measurements on a benchmark with ground-truth boxes (default: instance-track):

1. ``stores``: for each given region store, regions per image, the median region area (share of
   the image), the median ground-truth area, and the "oracle" localisation: the share of
   relevant images where SOME region reaches IoU >= 0.5 with the ground truth.
2. ``--tau-sweep N``: DASR* maps of N reference images computed once (no NMS), thresholded at
   several τ: median region area and best IoU with the ground truth per τ.
3. ``--seeds N``: seeds per image of DASR (3x3 local maxima) and DASR* (above the mean) over the
   N database images spread evenly over the list (one forward pass each).

Usage:
    python benchmarks/region_analysis.py results/stores/instance-track/dasr-star-*/database.h5
    python benchmarks/region_analysis.py --tau-sweep 14
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from dasr.datasets import load_benchmark  # noqa: E402
from dasr.metrics import box_iou  # noqa: E402


def ground_truth(bench) -> dict[str, np.ndarray]:
    return {bench.database[i]: np.asarray(b, np.float64)
            for q in bench.queries for i, b in (q.positive_boxes or {}).items()}


def store_stats(path: str, gt: dict[str, np.ndarray]) -> str:
    from dasr.store import RegionStore

    s = RegionStore.open(path)
    b = s.arrays["boxes"].astype(np.float64)
    frac = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) / np.prod(s.sizes[s.region_image], axis=1)
    counts = np.diff(s.offsets)
    gt_frac, best = [], []
    for i, name in enumerate(s.images):
        if name in gt:
            g = gt[name]
            gt_frac.append((g[2] - g[0]) * (g[3] - g[1]) / np.prod(s.sizes[i]))
            r = s.regions_of(i)["boxes"].astype(np.float64)
            best.append(box_iou(r, g[None]).max() if len(r) else 0.0)
    best = np.asarray(best)
    return (f"{path}: {len(s)} images, regions/image mean {counts.mean():.1f} (min {counts.min()}, "
            f"max {counts.max()}); median region area {100 * np.median(frac):.2f}% of the image, median "
            f"ground-truth area {100 * np.median(gt_frac):.2f}%; an image has some region with IoU >= 0.5 "
            f"in {100 * np.mean(best >= 0.5):.1f}% (>= 0.3: {100 * np.mean(best >= 0.3):.1f}%), median best IoU "
            f"{np.median(best):.3f}")


def tau_sweep(bench, n: int, taus: tuple[float, ...]) -> list[str]:
    from dasr.backbone import build_backbone
    from dasr.extractor import Extractor
    from dasr.images import load_image
    from dasr.regions import RegionConfig, activation_map, ellipses_from_maps, find_seeds

    ex = Extractor(build_backbone(), "dasr-star", RegionConfig(nms_iou=None))
    step = max(1, len(bench.queries) // n)
    items = [(bench.database[i], np.asarray(g, np.float64))
             for q in bench.queries[::step][:n] for i, g in sorted(q.positive_boxes.items())[:1]]
    area = {t: [] for t in taus}
    best = {t: [] for t in taus}
    gt_frac = []
    for name, g in items:
        img = load_image(bench.root / name)
        gt_frac.append((g[2] - g[0]) * (g[3] - g[1]) / (img.shape[0] * img.shape[1]))
        _, scale, _, acts = ex.forward(img)
        seeds, _ = find_seeds(activation_map(np.asarray(acts[ex.backbone.top_layer])), "dasr-star")
        maps = ex.seed_maps(acts, seeds)
        for t in taus:
            boxes = ellipses_from_maps(maps, t)[0].astype(np.float64) / scale
            a = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / (img.shape[0] * img.shape[1])
            area[t].append(np.median(a))
            best[t].append(box_iou(boxes, g[None]).max())
    lines = [f"tau sweep on {len(items)} images (DASR* seeds, no NMS); median ground-truth area "
             f"{100 * np.median(gt_frac):.2f}% of the image"]
    for t in taus:
        bt = np.asarray(best[t])
        lines.append(f"  tau {t}: median region area {100 * np.median(area[t]):.2f}%, median best IoU "
                     f"{np.median(bt):.3f}, images with a region at IoU >= 0.5: {100 * np.mean(bt >= 0.5):.0f}%")
    return lines


def seed_counts(bench, n: int) -> str:
    from dasr.backbone import build_backbone
    from dasr.extractor import Extractor
    from dasr.images import load_image
    from dasr.regions import activation_map, find_seeds

    ex = Extractor(build_backbone(), "dasr-star")
    counts = {"dasr": [], "dasr-star": []}
    for name in bench.database[:: max(1, len(bench.database) // n)][:n]:  # spread over the instances
        _, _, _, acts = ex.forward(load_image(bench.root / name))
        amap = activation_map(np.asarray(acts[ex.backbone.top_layer]))
        for method in counts:
            counts[method].append(len(find_seeds(amap, method)[0]))
    return "; ".join(f"{m} seeds/image over {n} images: mean {np.mean(c):.1f}, median {np.median(c):.0f}, "
                     f"min {min(c)}, max {max(c)}" for m, c in counts.items())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stores", nargs="*", help="region stores of the benchmark's database")
    p.add_argument("--benchmark", default="instance-track")
    p.add_argument("--root", default=None)
    p.add_argument("--tau-sweep", type=int, default=0, metavar="N", help="images for the τ sweep (0: none)")
    p.add_argument("--taus", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.5, 0.7, 0.9])
    p.add_argument("--seeds", type=int, default=0, metavar="N", help="count seeds on N images (0: no)")
    args = p.parse_args()
    bench = load_benchmark(args.benchmark, args.root)
    gt = ground_truth(bench)
    for path in args.stores:
        print(store_stats(path, gt))
    if args.seeds:
        print(seed_counts(bench, args.seeds))
    if args.tau_sweep:
        print("\n".join(tau_sweep(bench, args.tau_sweep, tuple(args.taus))))


if __name__ == "__main__":
    main()
