"""Why do DASR* regions localise small instances poorly?  Region size against object size.

Two measurements on a benchmark with ground-truth boxes (default: instance-track):

1. ``stores``: for each given region store, regions per image, the median region area (share of
   the image), the median ground-truth area, and the "oracle" localisation: the share of
   relevant images where SOME region reaches IoU >= 0.5 with the ground truth.
2. ``--tau-sweep N``: DASR* maps of N reference images computed once (no NMS), thresholded at
   several τ: median region area and best IoU with the ground truth per τ.
3. ``--seeds N``: seeds per image of DASR (3x3 local maxima) and DASR* (above the mean) over the
   N database images spread evenly over the list (one forward pass each).
4. ``--context STORE [STORE ...]``: does the benchmark reward the object or its scene?  Every
   query is searched in each store three times, its feature pooled from (a) the query box, (b)
   a box of the same size that does not touch the object (the box mirrored through the image
   centre, else pushed to the far side), (c) the whole query image.  Also: the per-query AP
   difference between the first store and each other one against the object's size.

Usage:
    python benchmarks/region_analysis.py results/stores/instance-track/dasr-star-*/database.h5
    python benchmarks/region_analysis.py --tau-sweep 14
    python benchmarks/region_analysis.py --subsample 3 --context \
        results/stores/instance-track/dasr-star-*/database.h5 results/stores/instance-track/rmac-*/database.h5
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from scipy.stats import spearmanr  # noqa: E402

from dasr.eval.datasets import load_benchmark  # noqa: E402
from dasr.eval.instance import align_rankings, subsample_database  # noqa: E402
from dasr.eval.scoring import score_query  # noqa: E402
from dasr.features.spec import ExtractorSpec, extractor_for_store  # noqa: E402
from dasr.io.images import load_image  # noqa: E402
from dasr.regions import activation_map, best_iou, box_area, box_iou, find_seeds  # noqa: E402
from dasr.search import SearchIndex  # noqa: E402
from dasr.store import RegionStore  # noqa: E402


def ground_truth(bench) -> dict[str, np.ndarray]:
    return {bench.database[i]: np.asarray(b, np.float64)
            for q in bench.queries for i, b in (q.positive_boxes or {}).items()}


def store_stats(path: str, gt: dict[str, np.ndarray]) -> str:
    """Regions per image, region and ground-truth areas, and the oracle localisation of one store."""
    s = RegionStore.open(path)
    b = s.arrays["boxes"].astype(np.float64)
    frac = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) / np.prod(s.sizes[s.region_image], axis=1)
    counts = np.diff(s.offsets)
    gt_frac, best = [], []
    for i, name in enumerate(s.images):
        if name in gt:
            g = gt[name]
            gt_frac.append((g[2] - g[0]) * (g[3] - g[1]) / np.prod(s.sizes[i]))
            best.append(best_iou(g[None], s.regions_of(i)["boxes"])[0])
    best = np.asarray(best)
    return (f"{path}: {len(s)} images, regions/image mean {counts.mean():.1f} (min {counts.min()}, "
            f"max {counts.max()}); median region area {100 * np.median(frac):.2f}% of the image, median "
            f"ground-truth area {100 * np.median(gt_frac):.2f}%; an image has some region with IoU >= 0.5 "
            f"in {100 * np.mean(best >= 0.5):.1f}% (>= 0.3: {100 * np.mean(best >= 0.3):.1f}%), median best IoU "
            f"{np.median(best):.3f}")


def tau_sweep(bench, n: int, taus: tuple[float, ...]) -> list[str]:
    """DASR* regions of ``n`` reference images (no NMS) re-thresholded at each τ of ``taus``.

    The maps come from the pipeline itself (``Extractor(image, keep_maps=True)``) and each τ's
    boxes from :meth:`Extractor.boxes_from_maps`, as the pipeline makes them at its own τ.
    """
    ex = ExtractorSpec.from_options(method="dasr-star", nms_iou=None).build()
    step = max(1, len(bench.queries) // n)
    items = [(bench.database[i], np.asarray(g, np.float64))
             for q in bench.queries[::step][:n] for i, g in sorted(q.positive_boxes.items())[:1]]
    area = {t: [] for t in taus}
    best = {t: [] for t in taus}
    gt_frac = []
    for name, g in items:
        img = load_image(bench.root / name)
        image_area = img.shape[0] * img.shape[1]
        gt_frac.append(box_area(g)[0] / image_area)
        ext = ex(img, keep_maps=True)
        for t in taus:
            boxes = ex.boxes_from_maps(ext.maps, ext.input_size, tau=t)[0].astype(np.float64) / ext.scale
            area[t].append(np.median(box_area(boxes)) / image_area)
            best[t].append(best_iou(g[None], boxes)[0])
    lines = [f"tau sweep on {len(items)} images (DASR* seeds, no NMS); median ground-truth area "
             f"{100 * np.median(gt_frac):.2f}% of the image"]
    for t in taus:
        bt = np.asarray(best[t])
        lines.append(f"  tau {t}: median region area {100 * np.median(area[t]):.2f}%, median best IoU "
                     f"{np.median(bt):.3f}, images with a region at IoU >= 0.5: {100 * np.mean(bt >= 0.5):.0f}%")
    return lines


def seed_counts(bench, n: int) -> str:
    """Seeds per image of DASR and DASR* on the same activation maps."""
    ex = ExtractorSpec(method="dasr-star").build()
    counts = {"dasr": [], "dasr-star": []}
    for name in bench.database[:: max(1, len(bench.database) // n)][:n]:  # spread over the instances
        _, _, _, acts = ex.forward(load_image(bench.root / name))
        amap = activation_map(np.asarray(acts[ex.backbone.top_layer]))
        for method in counts:
            counts[method].append(len(find_seeds(amap, method)[0]))
    return "; ".join(f"{m} seeds/image over {n} images: mean {np.mean(c):.1f}, median {np.median(c):.0f}, "
                     f"min {min(c)}, max {max(c)}" for m, c in counts.items())


def background_box(box, width: int, height: int):
    """A box of ``box``'s size that does not overlap it, or None when the image has no room."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    cx, cy = width - (x1 + x2) / 2, height - (y1 + y2) / 2  # mirrored through the centre
    cand = [(cx - w / 2, cy - h / 2)]
    cand += [(0.0, y1), (width - w, y1), (x1, 0.0), (x1, height - h)]  # far sides
    for bx, by in cand:
        bx, by = min(max(bx, 0.0), width - w), min(max(by, 0.0), height - h)
        b = np.array([bx, by, bx + w, by + h])
        if box_iou(b[None], np.asarray(box, np.float64)[None])[0, 0] == 0:
            return tuple(b)
    return None


def context_control(bench, paths: list[str]) -> list[str]:
    """Object box vs background box vs whole image as the query, searched in each store."""
    images = [load_image(bench.root / q.image) for q in bench.queries]
    boxes = {"object box": [], "background box": [], "whole image": []}
    for q, img in zip(bench.queries, images):
        h, w = img.shape[:2]
        boxes["object box"].append(q.box)
        boxes["background box"].append(background_box(q.box, w, h))
        boxes["whole image"].append((0.0, 0.0, float(w), float(h)))
    size = np.array([(q.box[2] - q.box[0]) * (q.box[3] - q.box[1]) / (im.shape[0] * im.shape[1])
                     for q, im in zip(bench.queries, images)])
    lines = [f"context control: {len(bench.queries)} queries, {len(bench.database)} database images, no whitening, "
             f"AP over the whole list; {sum(b is None for b in boxes['background box'])} queries without room "
             f"for a background box (left out of that row)"]
    per_store, methods = [], []
    for path in paths:
        store = RegionStore.open(path)
        methods.append(store.config["method"])
        ex = extractor_for_store(store.config)
        index = SearchIndex(store, None)
        row = {}
        for kind, qboxes in boxes.items():
            aps = np.full(len(qboxes), np.nan)
            for qi, (img, box) in enumerate(zip(images, qboxes)):
                if box is None:
                    continue
                ranking = align_rankings(index.search_many(index.describe(ex.describe_box(img, box))[None]), store,
                                         bench)[0]
                aps[qi] = score_query(bench, qi, ranking.order, ranking.boxes).ap["ap"]
            row[kind] = aps
        per_store.append(row)
        lines.append(f"  {store.config['method']:>10}: " + ", ".join(
            f"{k} mAP {np.nanmean(v):.3f}" for k, v in row.items()))
    for method, row in zip(methods[1:], per_store[1:]):
        diff = per_store[0]["object box"] - row["object box"]
        rho, pval = spearmanr(size, diff)
        lines.append(f"  AP({methods[0]}) - AP({method}) vs object area: Spearman rho {rho:+.2f} (p {pval:.2f}); median object area "
                     f"{100 * np.median(size):.2f}% of the query image")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stores", nargs="*", help="region stores of the benchmark's database")
    p.add_argument("--benchmark", default="instance-track")
    p.add_argument("--root", default=None)
    p.add_argument("--tau-sweep", type=int, default=0, metavar="N", help="images for the τ sweep (0: none)")
    p.add_argument("--taus", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.5, 0.7, 0.9])
    p.add_argument("--seeds", type=int, default=0, metavar="N", help="count seeds on N images (0: no)")
    p.add_argument("--context", nargs="+", default=[], metavar="STORE",
                   help="object vs background vs whole-image queries, searched in these stores")
    p.add_argument("--subsample", type=int, default=1, help="every n-th database image (as the stores were made)")
    args = p.parse_args()
    bench = subsample_database(load_benchmark(args.benchmark, args.root), args.subsample)
    gt = ground_truth(bench)
    for path in args.stores:
        print(store_stats(path, gt))
    if args.seeds:
        print(seed_counts(bench, args.seeds))
    if args.tau_sweep:
        print("\n".join(tau_sweep(bench, args.tau_sweep, tuple(args.taus))))
    if args.context:
        print("\n".join(context_control(bench, args.context)))


if __name__ == "__main__":
    main()
