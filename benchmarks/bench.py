#!/usr/bin/env python3
"""Speed, memory, work and accuracy benchmark of the DASR pipeline and of region search.

One run measures (benchmarks/README.md says what each number means):

* on a fixed, sorted set of images (default: the first image of each instance folder of the
  shared instance-track set), after one warm-up image: the forward pass; the probability
  backprop of the DASR* seeds in float32 and, where ``resolve_dtype("auto")`` picks it,
  bfloat16 (with the IoU of the two dtypes' boxes of each seed); DASR and DASR* end to end
  (``Extractor(image)``); the fast modes (``stop_stride``, ``cascade_stride``) against the
  faithful boxes; peak memory;
* the multiply-accumulates of the forward pass and of one seed's backprop for each input size
  (:mod:`dasr.profiling.flops`) against the measured matmul peak (:mod:`dasr.profiling.peak`);
* search over random region features: the project's exact ranking
  (:func:`dasr.search.rank_images`, what ``SearchIndex.search_many`` runs), faiss exact and
  faiss IVF-PQ (:mod:`dasr.search.ann`) with its recall.

Prints a Markdown table and writes the results as JSON (after each section, atomically) and the
table as ``.md`` next to it.  A broken pipeline fails the run (traceback, non-zero exit); no
timing does.

Usage::

    .venv/bin/python benchmarks/bench.py            # make bench
    .venv/bin/python benchmarks/bench.py --quick    # smoke test: 2 images, 1 seed chunk, 10k regions
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import faiss  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from dasr import __version__  # noqa: E402
from dasr.eval.datasets import default_root  # noqa: E402
from dasr.features.extractor import Extractor, prepare_input  # noqa: E402
from dasr.features.spec import ExtractorSpec  # noqa: E402
from dasr.io.atomic import atomic_write_bytes  # noqa: E402
from dasr.io.images import list_images, load_image  # noqa: E402
from dasr.model.device import resolve_dtype  # noqa: E402
from dasr.profiling import flops, gpu, machine, peak, timing  # noqa: E402
from dasr.profiling.report import fmt, markdown, write_json  # noqa: E402
from dasr.regions import activation_map, best_iou, box_iou, find_seeds  # noqa: E402
from dasr.search import rank_images  # noqa: E402
from dasr.search.ann import build_index, index_bytes_per_vector, plan_index, recall_at_k, search_index  # noqa: E402
from dasr.search.ranking import top_regions  # noqa: E402

DEFAULT_OUT = "results/bench/bench.json"
QUICK_OUT = "results/bench/bench-quick.json"
QUICK = {"n": 2, "regions": 10000}
DEFAULTS = {"n": 20, "regions": 100000}


# ----------------------------------------------------------------------------- arguments
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--images", default=None,
                   help="a folder (images grouped by sub-folder: first image of each, then the "
                        "second of each, ...) or a text file with one image path per line; "
                        "default: the shared instance-track set's images/ folder")
    p.add_argument("--n", type=int, default=None, help=f"timed images (plus one warm-up image); "
                                                      f"default {DEFAULTS['n']}, --quick {QUICK['n']}")
    p.add_argument("--max-side", type=int, default=512, help="long side of the network input, pixels")
    p.add_argument("--backbone", default="resnet50", choices=("resnet50", "vgg16"))
    p.add_argument("--weights", default="imagenet",
                   help="imagenet, a .weights.h5 path, or random (timing only: seeds, regions and "
                        "IoUs are then meaningless)")
    p.add_argument("--seed-chunk", type=int, default=16, help="seeds per batched backprop call")
    p.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"),
                   help="backprop dtype of the end-to-end and fast-mode runs; the DASR* backprop is timed "
                        "in float32 and in this dtype (auto: what `dasr --dtype auto` picks on this machine)")
    p.add_argument("--max-seeds", type=int, default=None,
                   help="at most this many seeds per image (default: all, as the method does)")
    p.add_argument("--fast-strides", type=int, nargs="*", default=[8, 16],
                   help="stop strides of the fast mode to measure")
    p.add_argument("--cascade-strides", type=int, nargs="*", default=[16],
                   help="coarse strides of the cascade fast mode to measure")
    p.add_argument("--regions", type=int, default=None,
                   help=f"database regions of the search benchmark; default {DEFAULTS['regions']}, "
                        f"--quick {QUICK['regions']}")
    p.add_argument("--queries", type=int, default=100, help="queries of the search benchmark")
    p.add_argument("--dim", type=int, default=2048, help="feature dimension of the search benchmark")
    p.add_argument("--regions-per-image", type=int, default=20,
                   help="regions per database image (an image scores as its best region)")
    p.add_argument("--k", type=int, default=10, help="recall@k of IVF-PQ vs exact")
    p.add_argument("--matmul-n", type=int, default=None,
                   help="side of the square matmul that measures the peak (default 2048 on CPU, 8192 on GPU)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the search features")
    p.add_argument("--time-budget", type=float, default=None,
                   help="stop starting new timed images after this many seconds of the image section")
    p.add_argument("--export-images", default=None, metavar="DIR",
                   help="copy the selected images (warm-up + n, keeping their sub-folders) to DIR and exit")
    p.add_argument("--skip", nargs="*", default=[], choices=("startup", "images", "search", "floor"),
                   help="sections to leave out")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: --n {QUICK['n']}, one seed chunk per image, --regions {QUICK['regions']}, "
                        f"output {QUICK_OUT}")
    p.add_argument("--out", default=None, help=f"JSON output (default {DEFAULT_OUT})")
    args = p.parse_args(argv)
    sizes = QUICK if args.quick else DEFAULTS
    args.n = sizes["n"] if args.n is None else args.n
    args.regions = sizes["regions"] if args.regions is None else args.regions
    if args.quick:
        args.max_seeds = args.seed_chunk if args.max_seeds is None else min(args.max_seeds, args.seed_chunk)
    if args.out is None:
        args.out = QUICK_OUT if args.quick else DEFAULT_OUT
    if min(args.n, args.seed_chunk, args.regions, args.queries, args.dim, args.k) < 1 or args.max_side < 32:
        p.error("--n, --seed-chunk, --regions, --queries, --dim, --k must be >= 1 and --max-side >= 32")
    return args


# ----------------------------------------------------------------------------- images
def select_images(spec: str | None, n: int) -> tuple[list[Path], str]:
    """A fixed, sorted list of up to ``n + 1`` images (the first is the warm-up image).

    A folder: images grouped by their sub-folder (sorted); the first image of each group, then
    the second of each, ...  A file: one path per line (relative to the file's folder; ``#``
    starts a comment).

    Raises:
      FileNotFoundError: ``spec`` (or, by default, the shared instance-track images) is missing.
    """
    if spec is None:
        folder = default_root("instance-track") / "images"
        if not folder.is_dir():
            raise FileNotFoundError(f"no instance-track images at {folder}; pass --images DIR_OR_LIST")
        source = f"instance-track: {folder}"
    else:
        folder, source = Path(spec), spec
    if folder.is_file():
        paths = []
        for line in folder.read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                paths.append(Path(line) if Path(line).is_absolute() else folder.parent / line)
        return paths[: n + 1], source
    if not folder.is_dir():
        raise FileNotFoundError(f"--images {spec}: no such folder or list file")
    groups: dict[str, list[str]] = {}
    for rel in list_images(folder):
        groups.setdefault(rel.rsplit("/", 1)[0] if "/" in rel else "", []).append(rel)
    ordered, depth = [], 0
    while len(ordered) < n + 1 and any(depth < len(g) for g in groups.values()):
        ordered.extend(groups[k][depth] for k in sorted(groups) if depth < len(groups[k]))
        depth += 1
    return [folder / rel for rel in ordered[: n + 1]], source


# ----------------------------------------------------------------------------- extractors
@dataclass
class Extractors:
    """Every extractor measured, each built by :class:`ExtractorSpec`.

    Attributes:
      star: DASR* per backprop dtype measured (``float32`` first).
      pipeline_dtype: ``resolve_dtype("auto")``: the dtype of the end-to-end and fast-mode runs.
      dasr: DASR in the pipeline dtype.
      fast: DASR* with ``stop_stride`` s, per s.
      cascade: DASR* with ``cascade_stride`` s, per s.
    """

    star: dict[str, Extractor]
    pipeline_dtype: str
    dasr: Extractor
    fast: dict[int, Extractor]
    cascade: dict[int, Extractor]

    def all(self) -> list[Extractor]:
        return [*self.star.values(), self.dasr, *self.fast.values(), *self.cascade.values()]


def build_extractors(args, dtypes: list[str], pipeline_dtype: str) -> Extractors:
    common = {"backbone": args.backbone, "weights": args.weights, "max_side": args.max_side,
              "seed_chunk": args.seed_chunk, "max_seeds": args.max_seeds}

    def build(method: str, **options) -> Extractor:
        return ExtractorSpec.from_options(method=method, **common, **options).build()

    return Extractors(
        star={d: build("dasr-star", backprop_dtype=d) for d in dtypes},
        pipeline_dtype=pipeline_dtype,
        dasr=build("dasr", backprop_dtype=pipeline_dtype),
        fast={s: build("dasr-star", stop_stride=s, backprop_dtype=pipeline_dtype) for s in args.fast_strides},
        cascade={s: build("dasr-star", cascade_stride=s, backprop_dtype=pipeline_dtype)
                 for s in args.cascade_strides})


def image_seeds(ex: Extractor, acts) -> tuple[np.ndarray, np.ndarray]:
    """The extractor's seeds (and scores) on a forward pass's activations."""
    return find_seeds(activation_map(np.asarray(acts[ex.backbone.top_layer])), ex.region.method,
                      ex.region.max_seeds)


def warm_up(ex: Extractor, image: np.ndarray) -> None:
    """Compiles the extractor's device functions for two image shapes and two seed batch sizes,
    so that the timed images run already-traced functions with relaxed shapes."""
    chunk = max(1, ex.region.seed_chunk)
    for img in (image, np.ascontiguousarray(image.transpose(1, 0, 2))):
        _, scale, _, acts = ex.forward(img)
        seeds, scores = image_seeds(ex, acts)
        if not len(seeds):  # a flat activation map: any cell compiles the same functions
            seeds, scores = np.zeros((1, 2), np.int64), np.ones(1, np.float32)
        for k in (chunk, max(1, chunk // 2)):
            ex.seed_maps(acts, seeds[:k])
            if ex.coarse_bp is not None:
                ex.cascade_survivors(acts, seeds[:k], scores[:k], scale)


def time_backprop(ex: Extractor, acts, seeds: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(prepare seconds, backprop seconds of all seeds, maps) of ``ex.seed_maps``.

    ``seed_maps`` runs ``prepare`` once and the seeds in chunks; ``prepare`` is timed on its own
    first and subtracted, so the backprop seconds are the chunks' (maps copied to the host).
    """
    t0 = time.perf_counter()
    timing.wait(ex.bp.prepare(acts))
    prepare_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    maps = ex.seed_maps(acts, seeds)
    return prepare_s, max(0.0, time.perf_counter() - t0 - prepare_s), maps


def paired_iou(a: np.ndarray, b: np.ndarray) -> list[float]:
    """IoU of ``a[i]`` with ``b[i]`` (the boxes of the same seed)."""
    return np.diag(box_iou(a, b)).tolist() if len(a) else []


# ----------------------------------------------------------------------------- image section
def measure_image(path: Path, ex: Extractors, work_for, memory: gpu.GpuMemory) -> dict:
    """Every per-image measurement of one timed image (see the README)."""
    ref = ex.star["float32"]
    top_layer = ref.backbone.top_layer
    rec: dict = {"image": str(path)}
    img = load_image(path)
    rec["original_hw"] = list(img.shape[:2])
    x, _, size = prepare_input(img, ref.region.max_side)
    rec["input_hw"] = [int(x.shape[1]), int(x.shape[2])]
    work = work_for(int(x.shape[1]), int(x.shape[2]))
    rec["forward_macs"] = work["forward_macs"]
    rec["backprop_macs_per_seed"] = work["backprop"]["faithful"]["macs"]

    memory.reset()
    t0 = time.perf_counter()
    acts = ref.bp.forward(x)
    timing.wait(acts)
    rec["forward_s"] = time.perf_counter() - t0
    rec["gpu_peak_mib"] = {"forward": memory.peak_mib()}
    rec["flop_shape_ok"] = tuple(acts[top_layer].shape) == work["top_shape"]
    seeds, _ = image_seeds(ref, acts)
    rec["star_seeds"] = int(len(seeds))

    boxes, rec["backprop"] = {}, {}
    for d, e in ex.star.items():
        memory.reset()
        prep, back, maps = time_backprop(e, acts if e is ref else e.bp.forward(x), seeds)
        rec["gpu_peak_mib"][f"backprop_{d}"] = memory.peak_mib()
        boxes[d] = e.boxes_from_maps(maps, size)[0]
        rec["backprop"][d] = {"prepare_s": prep, "backprop_s": back,
                              "per_seed_s": back / len(seeds) if len(seeds) else None}
    rec["bf16_iou"] = paired_iou(boxes["bfloat16"], boxes["float32"]) if "bfloat16" in boxes else []

    rec["e2e"] = {}
    finals = {}
    for name, e in (("dasr", ex.dasr), ("dasr-star", ex.star[ex.pipeline_dtype])):
        memory.reset()
        t0 = time.perf_counter()
        ext = e(img)
        rec["e2e"][name] = {"s": time.perf_counter() - t0,
                            "seeds": int(len(find_seeds(ext.activation, e.region.method, e.region.max_seeds)[0])),
                            "regions": int(len(ext.regions))}
        rec["gpu_peak_mib"][name] = memory.peak_mib()
        finals[name] = ext.regions.boxes
    faithful = finals["dasr-star"]  # the reference of the fast modes (after NMS)

    rec["fast"] = {}
    for s, e in ex.fast.items():
        t0 = time.perf_counter()
        ext = e(img)
        e2e_s = time.perf_counter() - t0
        prep, back, maps = time_backprop(e, e.bp.forward(x), seeds)
        rec["fast"][str(s)] = {"s": e2e_s, "regions": int(len(ext.regions)), "map_stride": int(e.bp.map_stride),
                               "prepare_s": prep, "backprop_s": back,
                               "per_seed_s": back / len(seeds) if len(seeds) else None,
                               "backprop_macs_per_seed": work["backprop"][f"stride{s}"]["macs"],
                               "iou": paired_iou(e.boxes_from_maps(maps, size)[0], boxes[ex.pipeline_dtype]),
                               "matched_iou": best_iou(faithful, ext.regions.boxes).tolist()}
    rec["cascade"] = {}
    for s, e in ex.cascade.items():
        t0 = time.perf_counter()
        ext = e(img)
        rec["cascade"][str(s)] = {"s": time.perf_counter() - t0, "regions": int(len(ext.regions)),
                                  "matched_iou": best_iou(faithful, ext.regions.boxes).tolist()}
    return rec


def summary(values) -> dict | None:
    s = timing.summarise(values)
    return None if s is None else dataclasses.asdict(s)


def mean_of(lists) -> float | None:
    values = [v for vs in lists for v in vs]
    return float(np.mean(values)) if values else None


def summarise_images(recs: list[dict], ex: Extractors, floor: dict) -> dict:
    """The per-image records summed up (see the README for each number)."""
    summ: dict = {"timed_images": len(recs), "forward_s": summary(r["forward_s"] for r in recs)}
    fwd_time = sum(r["forward_s"] for r in recs)
    fwd_macs = sum(r["forward_macs"] for r in recs)
    summ["forward_gflop_per_image"] = 2 * fwd_macs / len(recs) / 1e9
    summ["forward_gflops_achieved"] = 2 * fwd_macs / fwd_time / 1e9
    summ["flop_shape_ok"] = all(r["flop_shape_ok"] for r in recs)
    n_seeds = sum(r["star_seeds"] for r in recs)
    macs = sum(r["backprop_macs_per_seed"] * r["star_seeds"] for r in recs)
    summ["backprop"] = {}
    for d in ex.star:
        t_back = sum(r["backprop"][d]["backprop_s"] for r in recs)
        b = {"seeds": n_seeds,
             "per_seed_s": t_back / n_seeds if n_seeds else None,
             "per_seed_s_by_image": summary(r["backprop"][d]["per_seed_s"] for r in recs),
             "prepare_s": summary(r["backprop"][d]["prepare_s"] for r in recs),
             "gflop_per_seed": 2 * macs / n_seeds / 1e9 if n_seeds else None,
             "gflops_achieved": 2 * macs / t_back / 1e9 if t_back > 0 and n_seeds else None}
        if d in floor and b["gflops_achieved"]:
            pk = floor[d]["gflops"]
            b.update(peak_gflops=pk, ratio_of_peak=b["gflops_achieved"] / pk, x_of_floor=pk / b["gflops_achieved"],
                     floor_per_seed_s=b["gflop_per_seed"] / pk)
        summ["backprop"][d] = b
    if "float32" in floor:
        pk32 = floor["float32"]["gflops"]
        summ.update(forward_peak_gflops=pk32, forward_ratio_of_peak=summ["forward_gflops_achieved"] / pk32,
                    forward_x_of_floor=pk32 / summ["forward_gflops_achieved"],
                    forward_floor_s=summ["forward_gflop_per_image"] / pk32)
    ious = [v for r in recs for v in r["bf16_iou"]]
    if ious:
        summ["bf16_vs_f32_iou"] = {"mean": float(np.mean(ious)), "min": float(np.min(ious)),
                                   "frac_ge_0.95": float(np.mean(np.asarray(ious) >= 0.95)), "seeds": len(ious)}
    summ["e2e"] = {name: {k: summary(r["e2e"][name][k] for r in recs) for k in ("s", "seeds", "regions")}
                   for name in ("dasr", "dasr-star")}
    if "float32" in floor and ex.pipeline_dtype in floor:
        pk32, pkd = floor["float32"]["gflops"], floor[ex.pipeline_dtype]["gflops"]
        # forward + prepare (the backprop's MACs once) + every seed's backprop, at the peaks
        at_peaks = [(2 * r["forward_macs"] / pk32 + 2 * r["backprop_macs_per_seed"] * (1 + r["star_seeds"]) / pkd) / 1e9
                    for r in recs]
        at_fp32 = [2 * (r["forward_macs"] + r["backprop_macs_per_seed"] * (1 + r["star_seeds"])) / pk32 / 1e9
                   for r in recs]
        star = summ["e2e"]["dasr-star"]
        star.update(floor_s=float(np.mean(at_peaks)), floor_fp32_s=float(np.mean(at_fp32)),
                    x_of_floor=star["s"]["mean"] / float(np.mean(at_peaks)),
                    x_of_fp32_floor=star["s"]["mean"] / float(np.mean(at_fp32)))
    summ["fast"] = {}
    for s, e in ex.fast.items():
        rs = [r["fast"][str(s)] for r in recs]
        seeds = sum(len(r["iou"]) for r in rs)
        summ["fast"][str(s)] = {
            "map_stride": int(e.bp.map_stride), "s": summary(r["s"] for r in rs),
            "regions": summary(r["regions"] for r in rs),
            "per_seed_s": sum(r["backprop_s"] for r in rs) / seeds if seeds else None,
            "gflop_per_seed": 2 * sum(r["backprop_macs_per_seed"] * len(r["iou"]) for r in rs) / seeds / 1e9
            if seeds else None,
            "iou_mean": mean_of(r["iou"] for r in rs),
            "iou_min": min((v for r in rs for v in r["iou"]), default=None),
            "matched_iou_mean": mean_of(r["matched_iou"] for r in rs)}
    summ["cascade"] = {str(s): {"s": summary(r["cascade"][str(s)]["s"] for r in recs),
                                "regions": summary(r["cascade"][str(s)]["regions"] for r in recs),
                                "matched_iou_mean": mean_of(r["cascade"][str(s)]["matched_iou"] for r in recs)}
                       for s in ex.cascade}
    return summ


def run_images(args, floor: dict, res: dict) -> None:
    paths, source = select_images(args.images, args.n)
    if len(paths) < 2:
        raise RuntimeError(f"need at least 2 images (1 warm-up + 1 timed), found {len(paths)} in {source}")
    res.update(source=source, warmup=str(paths[0]), timed=[str(p) for p in paths[1:]])
    pipeline_dtype = resolve_dtype(args.dtype)
    # bfloat16 by default only where the pipeline would use it: emulated bfloat16 is slow.
    dtypes = list(dict.fromkeys(["float32", pipeline_dtype]))
    t0 = time.perf_counter()
    ex = build_extractors(args, dtypes, pipeline_dtype)
    ref = ex.star["float32"]
    res.update(build_s=time.perf_counter() - t0, weights=ref.backbone.weights_id, dtypes=dtypes,
               pipeline_dtype=pipeline_dtype, region_config=ref.region.as_dict())

    t0 = time.perf_counter()
    warm = load_image(paths[0])
    for e in ex.all():
        warm_up(e, warm)
    res["warmup_s"] = time.perf_counter() - t0
    res["maxrss_after_warmup_mib"] = machine.maxrss_mib()

    cache: dict[tuple[int, int], dict] = {}

    def work_for(h: int, w: int) -> dict:
        if (h, w) not in cache:
            model = ref.backbone.model
            shapes = flops.layer_shapes(model, h, w)
            backprops = {"faithful": ref, **{f"stride{s}": e for s, e in ex.fast.items()}}
            entry = {"top_shape": shapes[ref.backbone.top_layer], "forward_macs": flops.forward_macs(model, shapes),
                     "backprop": {}}
            for key, e in backprops.items():
                work = flops.backprop_macs(e.bp.ops, shapes, e.bp.map_stride)
                entry["backprop"][key] = {**dataclasses.asdict(work), "macs": work.macs}
            cache[(h, w)] = entry
        return cache[(h, w)]

    memory = gpu.GpuMemory()
    recs = []
    t_loop = time.perf_counter()
    for i, path in enumerate(paths[1:], 1):
        if recs and args.time_budget is not None and time.perf_counter() - t_loop > args.time_budget:
            res["stopped_by_time_budget_after"] = i - 1
            print(f"[bench] --time-budget {args.time_budget:g} s reached: {i - 1} images timed", flush=True)
            break
        rec = measure_image(path, ex, work_for, memory)
        recs.append(rec)
        print(f"[bench] image {i}/{len(paths) - 1} {path.name}: forward={rec['forward_s']:.2f}s, "
              f"dasr*={rec['e2e']['dasr-star']['s']:.2f}s, seeds={rec['star_seeds']}", flush=True)
    res["per_image"] = recs
    res["flops_by_input_hw"] = {f"{h}x{w}": {k: list(v) if k == "top_shape" else v for k, v in e.items()}
                                for (h, w), e in cache.items()}
    if memory.on_gpu:
        res["gpu_peak_mib"] = {k: max(r["gpu_peak_mib"][k] for r in recs) for k in recs[0]["gpu_peak_mib"]}
    res["summary"] = summarise_images(recs, ex, floor)


# ----------------------------------------------------------------------------- search section
def run_search(args, res: dict) -> None:
    n, d, nq, k = args.regions, args.dim, args.queries, args.k
    rng = np.random.default_rng(args.seed)
    feats = rng.standard_normal((n, d), dtype=np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    queries = rng.standard_normal((nq, d), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    per = max(1, args.regions_per_image)
    offsets = np.r_[np.arange(0, n, per), n]
    res.update(regions=n, dim=d, queries=nq, k=k, regions_per_image=per, images=len(offsets) - 1,
               features="random l2-normalised float32 (no cluster structure: worst case for IVF-PQ recall)")

    rank_images(queries[:1], feats, offsets)  # warm-up (page faults of the first product)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        rankings = rank_images(queries, feats, offsets)
        times.append(time.perf_counter() - t0)
    best = min(times)
    if len(rankings) != nq or len(rankings[0].order) != len(offsets) - 1:
        raise RuntimeError(f"rank_images gave {len(rankings)} rankings of {len(rankings[0].order)} images "
                           f"for {nq} queries over {len(offsets) - 1} images")
    res["exact_ranking"] = {"s": best, "qps": nq / best, "s_per_query": best / nq,
                            "function": "dasr.search.rank_images (SearchIndex.search_many)"}
    exact_ids, _ = top_regions(queries, feats, k)

    def build_and_search(kind: str):
        """(index, build seconds, result ids, search seconds), after one warm-up query."""
        t0 = time.perf_counter()
        index = build_index(feats, kind)
        build_s = time.perf_counter() - t0
        search_index(index, queries[:1], k)
        t0 = time.perf_counter()
        _, found = search_index(index, queries, k)
        return index, build_s, found, time.perf_counter() - t0

    _, build, flat_ids, search_s = build_and_search("exact")
    res["faiss_exact"] = {"build_s": build, "s": search_s, "qps": nq / search_s,
                          "top_k_agrees_with_exact": recall_at_k(flat_ids, exact_ids, k)}
    plan = plan_index(n, d, "ivfpq")
    res["ivfpq_plan"] = dataclasses.asdict(plan)
    ivf, build, ids, search_s = build_and_search("ivfpq")
    res["faiss_ivfpq"] = {"kind": plan.kind, "factory": plan.factory, "nprobe": plan.nprobe,
                          "build_s": build, "s": search_s, "qps": nq / search_s,
                          f"recall@{k}": recall_at_k(ids, exact_ids, k),
                          f"top1_in_top{k}": float(np.mean([e[0] in set(a) for a, e in zip(ids, exact_ids)])),
                          "bytes_per_vector": index_bytes_per_vector(ivf)}


# ----------------------------------------------------------------------------- start-up section
STARTUP_COMMANDS = (("--help",), ("--version",), ("merge", "--help"))


def run_startup(res: dict, repeats: int = 3) -> None:
    """Wall time of ``dasr ARGS`` in a new process (best of ``repeats``), as a user starts it."""
    for args in STARTUP_COMMANDS:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "dasr.cli", *args], capture_output=True, text=True)
            times.append(time.perf_counter() - t0)
            if proc.returncode != 0:
                raise RuntimeError(f"dasr {' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}")
        res[" ".join(args)] = {"best_s": min(times), "median_s": float(np.median(times)), "runs": repeats}


# ----------------------------------------------------------------------------- report
def mean_median(s: dict | None, scale: float = 1.0) -> str:
    return "n/a" if s is None else f"{fmt(s['mean'] * scale)} (median {fmt(s['median'] * scale)})"


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3


def table_rows(data: dict) -> list[tuple[str, str, str, str]]:
    """The report's rows (section, metric, value, unit) from the results."""
    rows: list[tuple[str, str, str, str]] = []

    def row(section, metric, value, unit=""):
        rows.append((section, metric, fmt(value), unit))

    meta = data["meta"]
    row("machine", "device", meta["device"])
    row("machine", "CPU threads usable", meta["cpus"])
    row("machine", "CPU flags (of those that pick kernels)", " ".join(meta["cpu_flags"]) or "none")
    row("machine", "Keras backend of the pipeline", meta["backend"])
    row("machine", "TensorFlow oneDNN (TF_ENABLE_ONEDNN_OPTS)", meta["tf_onednn"])
    for cmd, t in (data["startup"] if "startup" in data else {}).items():
        row("start-up", f"dasr {cmd}, new process, best of {t['runs']}", t["best_s"], "s")
    for key, fl in (data["floor"] if "floor" in data else {}).items():
        row("floor", f"matmul peak {key} ({fl['n']}²)", fl["gflops"], "GFLOP/s")
    for d, ops in (data["gpu_kernels"] if "gpu_kernels" in data else {}).items():
        row("GPU kernels", f"backprop ops without a GPU kernel, {d}",
            ", ".join(k for k, v in ops.items() if v != "GPU") or "none")
    if "images" in data:
        im, s = data["images"], data["images"]["summary"]
        row("images", "timed images (+1 warm-up)", s["timed_images"])
        row("images", "pipeline backprop dtype", im["pipeline_dtype"])
        row("images", "warm-up (tracing)", im["warmup_s"], "s")
        row("images", "FLOP count matches the network's top shape", s["flop_shape_ok"])
        row("forward", "time per image", mean_median(s["forward_s"], 1e3), "ms")
        row("forward", "work per image", s["forward_gflop_per_image"], "GFLOP")
        row("forward", "achieved", s["forward_gflops_achieved"], "GFLOP/s")
        if "forward_ratio_of_peak" in s:
            row("forward", "ratio = achieved / peak (float32)", s["forward_ratio_of_peak"])
            row("forward", "x of floor = time / (GFLOP / peak)", s["forward_x_of_floor"], "x")
        for d, b in s["backprop"].items():
            row(f"backprop {d}", "time per seed (batched)", ms(b["per_seed_s"]), "ms")
            row(f"backprop {d}", "prepare (normalisers) per image", mean_median(b["prepare_s"], 1e3), "ms")
            row(f"backprop {d}", "work per seed", b["gflop_per_seed"], "GFLOP")
            row(f"backprop {d}", "achieved", b["gflops_achieved"], "GFLOP/s")
            if "ratio_of_peak" in b:
                row(f"backprop {d}", f"ratio = achieved / peak ({d})", b["ratio_of_peak"])
                row(f"backprop {d}", "x of floor", b["x_of_floor"], "x")
        if "bf16_vs_f32_iou" in s:
            i = s["bf16_vs_f32_iou"]
            row("bf16 vs f32", f"DASR* box IoU before NMS, mean / min over {i['seeds']} seeds",
                f"{fmt(i['mean'])} / {fmt(i['min'])}")
            row("bf16 vs f32", "share of seeds with IoU >= 0.95", i["frac_ge_0.95"])
        for name, label in (("dasr", "DASR"), ("dasr-star", "DASR*")):
            e = s["e2e"][name]
            row(f"{label} end to end", "time per image", mean_median(e["s"]), "s")
            row(f"{label} end to end", "seeds per image", mean_median(e["seeds"]))
            row(f"{label} end to end", "regions per image", mean_median(e["regions"]))
            if "floor_s" in e:
                row(f"{label} end to end", "floor per image (fwd + prepare + seeds x backprop at peak)",
                    e["floor_s"], "s")
                row(f"{label} end to end", "x of floor", e["x_of_floor"], "x")
                row(f"{label} end to end", "float32 floor per image (all work at the fp32 peak)",
                    e["floor_fp32_s"], "s")
                row(f"{label} end to end", "x of float32 floor", e["x_of_fp32_floor"], "x")
        for st, f in s["fast"].items():
            tag = f"fast stop_stride={st}"
            row(tag, "DASR* time per image", mean_median(f["s"]), "s")
            row(tag, "regions per image", mean_median(f["regions"]))
            row(tag, "backprop per seed", ms(f["per_seed_s"]), "ms")
            row(tag, "work per seed", f["gflop_per_seed"], "GFLOP")
            row(tag, "box IoU with faithful, per seed before NMS, mean / min",
                f"{fmt(f['iou_mean'])} / {fmt(f['iou_min'])}")
            row(tag, "faithful region's best IoU with a fast region (after NMS), mean", f["matched_iou_mean"])
        for st, f in s["cascade"].items():
            tag = f"cascade stride={st}"
            row(tag, "DASR* time per image", mean_median(f["s"]), "s")
            row(tag, "regions per image", mean_median(f["regions"]))
            row(tag, "faithful region's best IoU with a cascade region (after NMS), mean", f["matched_iou_mean"])
        for k, v in (im["gpu_peak_mib"] if "gpu_peak_mib" in im else {}).items():
            row("memory", f"GPU peak, {k}", v, "MiB")
    row("memory", "peak RSS (ru_maxrss)", data["memory"]["maxrss_mib"], "MiB")
    if "search" in data:
        se = data["search"]
        tag = f"search {se['regions']:,} x {se['dim']}"
        row(tag, f"exact ranking, dasr.search.rank_images ({se['queries']} queries)",
            se["exact_ranking"]["qps"], "queries/s")
        row(tag, "faiss exact (IndexFlatIP)", se["faiss_exact"]["qps"], "queries/s")
        f = se["faiss_ivfpq"]
        name = "IVF-PQ" if f["kind"] == "ivfpq" else f"ivfpq -> {f['kind']} (too few vectors)"
        row(tag, f"faiss {f['factory']} nprobe={f['nprobe']}", f["qps"], "queries/s")
        row(tag, f"{name} build (train + add)", f["build_s"], "s")
        row(tag, f"{name} recall@{se['k']} vs exact (random features)", f[f"recall@{se['k']}"])
        row(tag, f"{name}: exact top-1 found in its top {se['k']}", f[f"top1_in_top{se['k']}"])
        row(tag, f"{name} index size", f["bytes_per_vector"], "bytes/vector")
    row("run", "wall time", meta["wall_s"], "s")
    return rows


# ----------------------------------------------------------------------------- main
def export_images(args) -> int:
    paths, source = select_images(args.images, args.n)
    dest = Path(args.export_images)
    for p in paths:
        target = dest / p.parent.name / p.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, target)
    print(f"[bench] copied {len(paths)} images from {source} to {dest} (use --images {dest} --n {len(paths) - 1})")
    return 0


def machine_meta(args) -> dict:
    on_gpu = bool(gpu.gpus())
    meta = {"started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "argv": sys.argv[1:],
            "args": vars(args), "python": sys.version.split()[0], "platform": platform.platform(),
            "cpu": machine.cpu_name(), "cpus": machine.usable_cpus(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "backend": keras.backend.backend(), "floor_framework": keras.backend.backend(),
            "faiss": faiss.__version__, "dasr": __version__,
            "auto_dtype": resolve_dtype("auto"), "dtype": resolve_dtype(args.dtype), "on_gpu": on_gpu,
            "cpu_flags": machine.cpu_flags(), "tf_onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default")}
    if on_gpu:
        meta["device"] = f"GPU: {gpu.gpu_name()}"
        meta["tf32"] = bool(tf.config.experimental.tensor_float_32_execution_enabled())
    else:
        meta["device"] = f"CPU: {meta['cpu']}"
    return meta


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.export_images:
        return export_images(args)
    t_start = time.perf_counter()
    for g in gpu.gpus():
        tf.config.experimental.set_memory_growth(g, True)
    out = Path(args.out).absolute()
    meta = machine_meta(args)
    data: dict = {"meta": meta, "memory": {}}

    def section(name: str, run) -> None:
        t0 = time.perf_counter()
        print(f"[bench] {name} ...", flush=True)
        run()
        print(f"[bench] {name} took {time.perf_counter() - t0:.1f} s", flush=True)
        meta.update(complete=False, wall_s=time.perf_counter() - t_start)
        write_json(out, data)  # partial results, so that a killed run keeps what it finished

    if "startup" not in args.skip:
        section("start-up of the dasr command", lambda: run_startup(data.setdefault("startup", {})))
    if "floor" not in args.skip:
        def run_floor():
            n = args.matmul_n or (8192 if meta["on_gpu"] else 2048)
            device, chain = ("/GPU:0", 10) if meta["on_gpu"] else ("/CPU:0", 1)
            # On the network's own framework: the floor of the kernels the pipeline runs.
            data["floor"] = {d: dataclasses.asdict(peak.matmul_peak(d, n, device, chain,
                                                                    framework=meta["floor_framework"]))
                             for d in dict.fromkeys(["float32", meta["dtype"]])}
        section("hardware floor (matmul peak)", run_floor)
    if meta["on_gpu"]:
        section("GPU kernels of the backprop ops",
                lambda: data.update(gpu_kernels=gpu.backprop_op_placement()))
    if "images" not in args.skip:
        floor = data["floor"] if "floor" in data else {}
        section("image pipeline", lambda: run_images(args, floor, data.setdefault("images", {})))
    if "search" not in args.skip:
        section("search", lambda: run_search(args, data.setdefault("search", {})))
    data["memory"]["maxrss_mib"] = machine.maxrss_mib()
    meta.update(complete=True, wall_s=time.perf_counter() - t_start,
                finished=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    rows = table_rows(data)
    table = markdown(rows)
    data["table"] = [dict(zip(("section", "metric", "value", "unit"), r)) for r in rows]
    print("\n" + table)
    write_json(out, data)
    atomic_write_bytes(out.with_suffix(".md"), f"# dasr benchmark ({meta['device']})\n\n{table}\n".encode())
    print(f"\n[bench] wrote {out} and {out.with_suffix('.md')}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
