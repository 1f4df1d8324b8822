#!/usr/bin/env python3
"""Speed, memory, FLOP and accuracy benchmark of the DASR pipeline and of region search.

One run measures everything (see benchmarks/README.md for what each number means):

* on a fixed, sorted set of real images (default: the first image of each instance folder of
  the shared instance-track set, resized to 512 px long side), after one warm-up image:
  - forward pass time per image;
  - probability backprop time per seed (batched, ``--seed-chunk`` seeds per call) in float32
    and, where the hardware computes it natively (GPU, or a CPU with AVX512_BF16/AMX), bfloat16;
  - seconds per image of DASR and DASR* end to end (``Extractor(...)(image)``), seeds and
    regions per image;
  - the fast mode (``RegionConfig(stop_stride=8|16)``): seconds per image and the IoU of its
    boxes with the faithful ones (same seed, before NMS);
  - bfloat16 vs float32: IoU of the DASR* boxes of the same seed, before NMS (mean, min);
  - peak memory (process max RSS; GPU allocator peak on a GPU);
* multiply-accumulate counts of the forward pass and of one seed's backprop for the real input
  sizes, the achieved GFLOP/s and how far they are from the hardware floor (a measured
  ``tf.matmul`` peak);
* search throughput over ``--regions`` random 2048-d region features: exact numpy matrix
  product with the per-image maximum (as dasr.search), faiss exact (IndexFlatIP) and faiss
  IVF-PQ (dasr.ann.build_index), with the IVF-PQ recall@10.

Prints one Markdown table and writes JSON (atomically) plus the table as ``.md`` next to it.
No measurement can make the script fail: a section that raises is reported under ``errors``
and the script still exits 0.

Usage::

    .venv/bin/python benchmarks/bench.py            # make bench
    .venv/bin/python benchmarks/bench.py --quick    # smoke test: 2 images, 1 seed chunk, 10k regions
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import resource
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from dasr.atomic import atomic_write_bytes

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = "results/bench/bench.json"
QUICK_OUT = "results/bench/bench-quick.json"


# ----------------------------------------------------------------------------- arguments
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--images", default=None,
                   help="a folder (images grouped by sub-folder: first image of each, then the "
                        "second of each, ...) or a text file with one image path per line; "
                        "default: the shared instance-track set's images/ folder")
    p.add_argument("--n", type=int, default=20, help="number of timed images (plus one warm-up image)")
    p.add_argument("--max-side", type=int, default=512, help="long side of the network input, pixels")
    p.add_argument("--backbone", default="resnet50", choices=("resnet50", "vgg16"))
    p.add_argument("--weights", default="imagenet",
                   help="imagenet (dasr.weights resolution: cache, then downloads), a .weights.h5 path, "
                        "or random (timing only: seeds, regions and IoUs are then meaningless)")
    p.add_argument("--seed-chunk", type=int, default=16, help="seeds per batched backprop call")
    p.add_argument("--max-seeds", type=int, default=None,
                   help="at most this many seeds per image (default: all, as the method does)")
    p.add_argument("--fast-strides", type=int, nargs="*", default=[8, 16],
                   help="stop strides of the fast mode to measure")
    p.add_argument("--cascade-strides", type=int, nargs="*", default=[16],
                   help="coarse strides of the cascade fast mode to measure")
    p.add_argument("--regions", type=int, default=100000, help="database regions for the search benchmark")
    p.add_argument("--queries", type=int, default=100, help="queries for the search benchmark")
    p.add_argument("--dim", type=int, default=2048, help="feature dimension for the search benchmark")
    p.add_argument("--regions-per-image", type=int, default=20,
                   help="regions per database image (the per-image max of the exact search)")
    p.add_argument("--k", type=int, default=10, help="recall@k of IVF-PQ vs exact")
    p.add_argument("--matmul-n", type=int, default=None,
                   help="side of the square matmul that measures the peak (default 2048 on CPU, 8192 on GPU)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the search features")
    p.add_argument("--time-budget", type=float, default=None,
                   help="stop starting new timed images after this many seconds of the image section "
                        "(the summaries cover the images done)")
    p.add_argument("--export-images", default=None, metavar="DIR",
                   help="copy the selected images (warm-up + n, keeping their sub-folders) to DIR and "
                        "exit, e.g. to carry them to another machine")
    p.add_argument("--skip", nargs="*", default=[], choices=("images", "search", "floor"),
                   help="sections to leave out")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: --n 2, one seed chunk per image, --regions 10000, "
                        f"output {QUICK_OUT}")
    p.add_argument("--out", default=None, help=f"JSON output (default {DEFAULT_OUT})")
    args = p.parse_args(argv)
    if args.quick:
        args.n = 2
        args.max_seeds = args.seed_chunk if args.max_seeds is None else min(args.max_seeds, args.seed_chunk)
        args.regions = 10000
    if args.out is None:
        args.out = QUICK_OUT if args.quick else DEFAULT_OUT
    if args.n < 1 or args.seed_chunk < 1 or args.regions < 1 or args.queries < 1 or args.max_side < 32:
        p.error("--n, --seed-chunk, --regions, --queries must be >= 1 and --max-side >= 32")
    return args


# ----------------------------------------------------------------------------- small helpers
class Report:
    """Collects results, errors and table rows."""

    def __init__(self):
        self.data: dict = {}
        self.errors: list[dict] = []
        self.rows: list[tuple[str, str, str, str]] = []

    @contextlib.contextmanager
    def section(self, name: str):
        t0 = time.perf_counter()
        print(f"[bench] {name} ...", flush=True)
        try:
            yield
        except Exception as err:  # noqa: BLE001 - a benchmark section must never abort the run
            tb = traceback.format_exc()
            self.errors.append({"section": name, "error": f"{type(err).__name__}: {err}", "traceback": tb})
            print(f"[bench] {name} FAILED: {type(err).__name__}: {err}\n{tb}", file=sys.stderr, flush=True)
        finally:
            print(f"[bench] {name} took {time.perf_counter() - t0:.1f} s", flush=True)

    def row(self, section: str, metric: str, value, unit: str = "", digits: int = 3):
        self.rows.append((section, metric, fmt(value, digits), unit))


def fmt(v, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, str):
        return v
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    v = float(v)
    if not math.isfinite(v):
        return str(v)
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.1f}"
    return f"{v:.{digits}g}"


def stats(values) -> dict | None:
    v = np.asarray([x for x in values if x is not None], np.float64)
    if v.size == 0:
        return None
    return {"mean": float(v.mean()), "median": float(np.median(v)), "min": float(v.min()),
            "max": float(v.max()), "std": float(v.std()), "count": int(v.size)}


def mean_median(s: dict | None, scale: float = 1.0) -> str:
    if not s:
        return "n/a"
    return f"{fmt(s['mean'] * scale)} (median {fmt(s['median'] * scale)})"


def to_jsonable(o):
    if isinstance(o, dict):
        return {str(k): to_jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [to_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return to_jsonable(o.tolist())
    if isinstance(o, np.generic):
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, Path):
        return str(o)
    return o


def maxrss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB, macOS bytes)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024 * 1024) if sys.platform == "darwin" else r / 1024


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# ----------------------------------------------------------------------------- images
def select_images(spec: str | None, n: int) -> tuple[list[Path], str]:
    """A fixed, sorted list of ``n + 1`` images (the first is the warm-up image).

    A folder: images grouped by their sub-folder (sorted); the first image of each group, then
    the second of each, ... (so the default set is the first frame of each instance, and more
    frames only when ``n`` exceeds the number of instances).  A file: one path per line
    (relative paths are relative to the file's folder; ``#`` starts a comment).
    """
    from dasr.datasets import default_root
    from dasr.images import list_images

    if spec is None:
        root = default_root("instance-track")
        folder = root / "images"
        if not folder.is_dir():
            raise FileNotFoundError(
                f"no instance-track images at {folder} (looked for shared/data/instance-track in the "
                "current folder and its parents, then $DASR_DATA); pass --images DIR_OR_LIST")
        source = f"instance-track: {folder}"
    else:
        folder = Path(spec)
        source = str(folder)
    if folder.is_file():
        paths = []
        for line in folder.read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                p = Path(line)
                paths.append(p if p.is_absolute() else folder.parent / p)
        return paths[: n + 1], source
    files = list_images(folder)
    groups: dict[str, list[str]] = {}
    for rel in files:
        groups.setdefault(rel.rsplit("/", 1)[0] if "/" in rel else "", []).append(rel)
    ordered, depth = [], 0
    keys = sorted(groups)
    while len(ordered) < n + 1 and any(depth < len(groups[k]) for k in keys):
        ordered.extend(groups[k][depth] for k in keys if depth < len(groups[k]))
        depth += 1
    return [folder / rel for rel in ordered[: n + 1]], source


# ----------------------------------------------------------------------------- FLOP counts
def _inbound(layer) -> list[str]:
    node = layer._inbound_nodes[0]
    return [t._keras_history.operation.name for t in node.input_tensors]


def layer_shapes(model, height: int, width: int) -> dict[str, tuple[int, ...]]:
    """Output shape (1, h, w, c) of every layer for an input of ``height x width``."""
    import keras

    shapes: dict[str, tuple[int, ...]] = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            shapes[layer.name] = (1, height, width, 3)
            continue
        ins = [shapes[n] for n in _inbound(layer)]
        out = layer.compute_output_shape(ins[0] if len(ins) == 1 else ins)
        shapes[layer.name] = tuple(int(d) for d in out)
    return shapes


def forward_macs(model, shapes) -> int:
    """Multiply-adds of the forward pass: Conv2D ``out_h*out_w*kh*kw*cin*cout`` (+ Dense, none here)."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, oh, ow, cout = shapes[layer.name]
            kh, kw = layer.kernel_size
            cin = shapes[_inbound(layer)[0]][-1] // max(1, getattr(layer, "groups", 1))
            total += oh * ow * kh * kw * cin * cout
        elif isinstance(layer, keras.layers.Dense):
            total += int(np.prod(shapes[layer.name][:-1])) * shapes[_inbound(layer)[0]][-1] * layer.units
    return int(total)


def backprop_macs(bp, shapes) -> dict:
    """Multiply-adds of ONE seed's backprop below the stop point.

    Transposed convolutions cost what the forward convolutions cost; a pooling (or the all-ones
    window of a 1x1 strided conv) costs one add per window cell per output.  The element-wise
    products (``P/Z``, ``A*back``, the Add split) are counted separately, not as MACs.  The
    per-image ``prepare`` (the normalisers W⁺A) costs the same MACs once per image.
    """
    conv = pool = elementwise = 0
    for op in bp.ops_down:
        if op.kind == "conv":
            a = shapes[op.inputs[0]]
            _, oh, ow, cout = shapes[op.name]
            kh, kw, cin, _ = op.kernel.shape
            conv += oh * ow * kh * kw * cin * cout
            if op.window:
                pool += oh * ow * op.strides[0] * op.strides[1] * cin
            elementwise += oh * ow * cout + int(np.prod(a[1:]))
        elif op.kind == "pool":
            a = shapes[op.inputs[0]]
            _, oh, ow, c = shapes[op.name]
            pool += oh * ow * op.pool_size[0] * op.pool_size[1] * c
            elementwise += oh * ow * c + int(np.prod(a[1:]))
        elif op.kind in ("add", "posscale"):
            elementwise += int(np.prod(shapes[op.output][1:])) * max(1, len(op.inputs) if op.kind == "add" else 1)
    return {"conv_macs": int(conv), "pool_macs": int(pool), "macs": int(conv + pool),
            "elementwise": int(elementwise)}


# ----------------------------------------------------------------------------- hardware floor
def matmul_peak(tf, dtype: str, n: int, on_gpu: bool, budget_s: float = 3.0) -> dict:
    """Achievable GFLOP/s of an ``n x n`` matmul in ``dtype`` (best of several timed runs)."""
    device = "/GPU:0" if on_gpu else "/CPU:0"
    chain = 10 if on_gpu else 1
    with tf.device(device):
        a = tf.cast(tf.random.normal((n, n), seed=1), dtype)
        b = tf.cast(tf.random.normal((n, n), seed=2) / math.sqrt(n), dtype)

        @tf.function
        def run(a, b):
            c = a
            for _ in range(chain):
                c = tf.matmul(c, b)
            return c[0, 0]

        run(a, b).numpy()  # trace + warm-up
        times = []
        start = time.perf_counter()
        while len(times) < 3 or (time.perf_counter() - start < budget_s and len(times) < 50):
            t0 = time.perf_counter()
            run(a, b).numpy()
            times.append(time.perf_counter() - t0)
    best = min(times)
    flops = 2.0 * n ** 3 * chain
    return {"dtype": dtype, "n": n, "chain": chain, "device": device, "best_s": best,
            "median_s": float(np.median(times)), "runs": len(times), "gflops": flops / best / 1e9}


def gpu_kernel_check(tf) -> dict:
    """Which backprop ops have a GPU kernel per dtype (soft placement off, so a missing kernel
    raises instead of silently running on the CPU)."""
    out = {}
    soft = tf.config.get_soft_device_placement()
    tf.config.set_soft_device_placement(False)
    try:
        for dt in ("float32", "bfloat16"):
            res = {}
            with tf.device("/GPU:0"):
                try:
                    x = tf.ones((2, 8, 8, 4), dt)
                    k = tf.ones((3, 3, 4, 4), dt)
                except Exception as err:  # noqa: BLE001
                    out[dt] = {"tensors": f"cannot place on GPU ({type(err).__name__})"}
                    continue
                ops = {
                    "conv2d": lambda: tf.nn.conv2d(x, k, 1, "SAME"),
                    "conv2d_transpose": lambda: tf.nn.conv2d_transpose(x, k, (2, 16, 16, 4), 2, "SAME"),
                    "avg_pool2d": lambda: tf.nn.avg_pool2d(x, 2, 2, "SAME"),
                    "AvgPoolGrad": lambda: tf.raw_ops.AvgPoolGrad(
                        orig_input_shape=[2, 16, 16, 4], grad=x, ksize=[1, 2, 2, 1],
                        strides=[1, 2, 2, 1], padding="SAME"),
                    "divide_no_nan": lambda: tf.math.divide_no_nan(x, x),
                    "reduce_sum": lambda: tf.reduce_sum(x, -1),
                }
                for name, fn in ops.items():
                    try:
                        y = fn()
                        res[name] = "GPU" if "GPU" in y.device else y.device
                    except Exception as err:  # noqa: BLE001
                        res[name] = f"no GPU kernel ({type(err).__name__})"
            out[dt] = res
    finally:
        tf.config.set_soft_device_placement(soft)
    return out


# ----------------------------------------------------------------------------- image pipeline
def sync(t):
    """Waits for a (GPU) tensor: fetching any output of the function waits for its stream."""
    return t.numpy() if hasattr(t, "numpy") else np.asarray(t)


def gpu_peak_reset(tf, on_gpu):
    if on_gpu:
        with contextlib.suppress(Exception):
            tf.config.experimental.reset_memory_stats("GPU:0")


def gpu_peak_mib(tf, on_gpu):
    if not on_gpu:
        return None
    try:
        return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    except Exception:  # noqa: BLE001
        return None


def tracing_counts(bp) -> dict:
    out = {}
    for name in ("_forward_fn", "_prepare_fn", "_backprop_fn"):
        fn = getattr(bp, name, None)
        with contextlib.suppress(Exception):
            out[name.strip("_")] = int(fn.experimental_get_tracing_count())
    return out


def matched_iou(reference: np.ndarray, boxes: np.ndarray) -> list[float]:
    """For each reference (faithful, after NMS) box, its best IoU with the fast mode's boxes."""
    from dasr.metrics import box_iou

    if len(reference) == 0:
        return []
    if len(boxes) == 0:
        return [0.0] * len(reference)
    return box_iou(np.asarray(reference, np.float64), np.asarray(boxes, np.float64)).max(1).tolist()


def seed_boxes(ex, acts, seeds, size) -> tuple[np.ndarray, float, float]:
    """Pre-NMS boxes of ``seeds`` (network-input pixels), with prepare and backprop times."""
    from dasr.backprop import seed_probabilities
    from dasr.regions import ellipses_from_maps

    bp = ex.bp
    t0 = time.perf_counter()
    state = bp.prepare(acts)
    for v in state.values():  # wait for the normalisers
        sync(tf_reduce_probe(v))
        break
    prep = time.perf_counter() - t0
    top = acts[ex.backbone.top_layer]
    chunk = max(1, ex.region.seed_chunk)
    t0 = time.perf_counter()
    maps = [np.asarray(bp.backprop(state, seed_probabilities(top, seeds[i:i + chunk])))
            for i in range(0, len(seeds), chunk)]
    back = time.perf_counter() - t0
    if not maps:
        return np.zeros((0, 4), np.float32), prep, back
    maps = np.concatenate(maps, 0)
    boxes = ellipses_from_maps(maps, ex.region.tau, ex.region.weighted_moments, bp.map_stride)[0]
    w, h = size
    return np.clip(boxes, 0, [w, h, w, h]), prep, back


def tf_reduce_probe(v):
    # The state tensors are all outputs of one tf.function call; reading a scalar of one of
    # them waits for the whole call without copying a large tensor to the host.
    return v[(0,) * len(v.shape)] if len(v.shape) else v


def warm_up(ex, image, seed_method="dasr-star"):
    """Traces every tf.function of ``ex.bp`` with relaxed shapes (two image shapes, two batch
    sizes), so that the timed images do not retrace."""
    from dasr.regions import activation_map, find_seeds

    chunk = max(1, ex.region.seed_chunk)
    for img, k in ((image, chunk), (np.ascontiguousarray(image.transpose(1, 0, 2)), max(1, chunk // 2))):
        _, _, size, acts = ex.forward(img)
        amap = activation_map(np.asarray(acts[ex.backbone.top_layer]))
        seeds, _ = find_seeds(amap, seed_method, None)
        seed_boxes(ex, acts, seeds[:k] if len(seeds) else np.zeros((1, 2), np.int32), size)


def run_images(tf, args, rep: Report, on_gpu: bool, peak: dict):
    from dasr.backbone import build_backbone
    from dasr.backprop import cpu_has_bf16, resolve_dtype
    from dasr.extractor import Extractor, prepare_input
    from dasr.images import load_image
    from dasr.metrics import box_iou
    from dasr.regions import RegionConfig, activation_map, default_nms, find_seeds

    paths, source = select_images(args.images, args.n)
    if len(paths) < 2:
        raise RuntimeError(f"need at least 2 images (1 warm-up + 1 timed), found {len(paths)} in {source}")
    if len(paths) < args.n + 1:
        print(f"[bench] only {len(paths)} images available: 1 warm-up + {len(paths) - 1} timed", flush=True)
    res = rep.data.setdefault("images", {})
    res["source"] = source
    res["warmup"] = str(paths[0])
    res["timed"] = [str(p) for p in paths[1:]]

    t0 = time.perf_counter()
    weights = None if args.weights == "random" else args.weights
    backbone = build_backbone(args.backbone, weights=weights)
    res["backbone_build_s"] = time.perf_counter() - t0
    res["weights"] = backbone.weights_id
    dtypes = ["float32"] + (["bfloat16"] if (on_gpu or cpu_has_bf16()) else [])
    resolved = resolve_dtype("auto")
    res["dtypes"] = dtypes
    res["pipeline_dtype"] = resolved
    base = RegionConfig(max_side=args.max_side, seed_chunk=args.seed_chunk, max_seeds=args.max_seeds)
    star = {d: Extractor(backbone, "dasr-star", dataclasses.replace(base, backprop_dtype=d)) for d in dtypes}
    dasr = Extractor(backbone, "dasr", dataclasses.replace(base, method="dasr", nms_iou=default_nms("dasr"),
                                                            backprop_dtype=resolved))
    # Same backprop configuration as DASR* at the pipeline dtype: share it (one tracing).
    dasr.bp = star[resolved].bp
    fast = {}
    for s in args.fast_strides:
        try:
            fast[s] = Extractor(backbone, "dasr-star", dataclasses.replace(base, stop_stride=s, backprop_dtype=resolved))
        except ValueError as err:
            rep.errors.append({"section": f"fast stop_stride={s}", "error": str(err)})
    cascade = {}
    for s in args.cascade_strides:
        try:
            cascade[s] = Extractor(backbone, "dasr-star", dataclasses.replace(base, cascade_stride=s,
                                                                              backprop_dtype=resolved))
            cascade[s].bp = star[resolved].bp  # the same full backprop: share its tracing
        except ValueError as err:
            rep.errors.append({"section": f"cascade stride={s}", "error": str(err)})
    res["region_config"] = base.as_dict()

    # ---- warm-up (tracing) on the first image
    t0 = time.perf_counter()
    warm = load_image(paths[0])
    for ex in [*star.values(), *fast.values(), *cascade.values()]:
        warm_up(ex, warm)  # (DASR shares DASR*'s backprop, warmed here)
    res["warmup_s"] = time.perf_counter() - t0
    traces_before = {id(ex.bp): tracing_counts(ex.bp) for ex in [*star.values(), *fast.values()]}
    rep.data.setdefault("memory", {})["maxrss_after_warmup_mib"] = maxrss_mib()

    shape_cache: dict = {}

    def flops_for(h, w):
        if (h, w) not in shape_cache:
            shapes = layer_shapes(backbone.model, h, w)
            entry = {"shapes": shapes, "forward_macs": forward_macs(backbone.model, shapes),
                     "backprop": {"faithful": backprop_macs(star["float32"].bp, shapes)}}
            for s, ex in fast.items():
                entry["backprop"][f"stride{s}"] = backprop_macs(ex.bp, shapes)
            shape_cache[(h, w)] = entry
        return shape_cache[(h, w)]

    per_image = []
    t_loop = time.perf_counter()
    gpu_peaks = {"forward": [], **{f"backprop_{d}": [] for d in dtypes}, "dasr": [], "dasr-star": []}
    for i, path in enumerate(paths[1:], 1):
        if args.time_budget is not None and time.perf_counter() - t_loop > args.time_budget:
            res["stopped_by_time_budget_after"] = i - 1
            print(f"[bench] --time-budget {args.time_budget:g} s reached: {i - 1} images timed", flush=True)
            break
        rec: dict = {"image": str(path)}
        per_image.append(rec)
        try:
            img = load_image(path)
            rec["original_hw"] = list(img.shape[:2])
            x, _, (w, h) = prepare_input(img, args.max_side)
            rec["input_hw"] = [int(x.shape[1]), int(x.shape[2])]
            fl = flops_for(int(x.shape[1]), int(x.shape[2]))
            top_shape = tuple(fl["shapes"][backbone.top_layer])
            rec["forward_macs"] = fl["forward_macs"]
            rec["backprop_macs_per_seed"] = fl["backprop"]["faithful"]["macs"]

            # forward (float32 whatever the backprop dtype)
            gpu_peak_reset(tf, on_gpu)
            t0 = time.perf_counter()
            acts = star["float32"].bp.forward(x)
            top = sync(acts[backbone.top_layer])
            rec["forward_s"] = time.perf_counter() - t0
            gpu_peaks["forward"].append(gpu_peak_mib(tf, on_gpu))
            rec["flop_shape_ok"] = tuple(top.shape) == top_shape
            amap = activation_map(top)
            seeds, _ = find_seeds(amap, "dasr-star", args.max_seeds)
            rec["star_seeds"] = int(len(seeds))

            # backprop per seed, each dtype; pre-NMS boxes for the IoU comparisons
            boxes = {}
            rec["backprop"] = {}
            for d in dtypes:
                gpu_peak_reset(tf, on_gpu)
                b, prep, back = seed_boxes(star[d], acts, seeds, (w, h))
                gpu_peaks[f"backprop_{d}"].append(gpu_peak_mib(tf, on_gpu))
                boxes[d] = b
                rec["backprop"][d] = {"prepare_s": prep, "backprop_s": back,
                                      "per_seed_s": back / len(seeds) if len(seeds) else None}
            if "bfloat16" in boxes and len(seeds):
                rec["bf16_iou"] = np.diag(box_iou(boxes["bfloat16"], boxes["float32"])).tolist()

            # end to end
            rec["e2e"] = {}
            for name, ex in (("dasr", dasr), ("dasr-star", star[resolved])):
                gpu_peak_reset(tf, on_gpu)
                t0 = time.perf_counter()
                ext = ex(img)
                dt = time.perf_counter() - t0
                gpu_peaks[name].append(gpu_peak_mib(tf, on_gpu))
                n_seeds = len(find_seeds(ext.activation, name, args.max_seeds)[0])
                rec["e2e"][name] = {"s": dt, "seeds": int(n_seeds), "regions": int(len(ext.regions))}
                final = ext.regions.boxes  # ends as DASR*'s: the reference of the fast modes

            # fast mode
            rec["fast"] = {}
            for s, ex in fast.items():
                t0 = time.perf_counter()
                ext = ex(img)
                dt = time.perf_counter() - t0
                acts_s = ex.bp.forward(x)
                b, prep, back = seed_boxes(ex, acts_s, seeds, (w, h))
                iou = np.diag(box_iou(b, boxes[resolved])).tolist() if len(seeds) else []
                rec["fast"][str(s)] = {"s": dt, "regions": int(len(ext.regions)), "prepare_s": prep,
                                       "matched_iou": matched_iou(final, ext.regions.boxes),
                                       "backprop_s": back,
                                       "per_seed_s": back / len(seeds) if len(seeds) else None,
                                       "backprop_macs_per_seed": fl["backprop"][f"stride{s}"]["macs"],
                                       "iou": iou}
            rec["cascade"] = {}
            for s, ex in cascade.items():
                t0 = time.perf_counter()
                ext = ex(img)
                rec["cascade"][str(s)] = {"s": time.perf_counter() - t0, "regions": int(len(ext.regions)),
                                          "matched_iou": matched_iou(final, ext.regions.boxes)}
        except Exception as err:  # noqa: BLE001
            rec["error"] = f"{type(err).__name__}: {err}"
            rep.errors.append({"section": f"image {path}", "error": rec["error"],
                               "traceback": traceback.format_exc()})
        print(f"[bench] image {i}/{len(paths) - 1} {path.name}: "
              + ", ".join(f"{k}={v:.2f}s" for k, v in (("forward", rec.get("forward_s")),
                                                        ("dasr*", rec.get("e2e", {}).get("dasr-star", {}).get("s")))
                          if v is not None)
              + f", seeds={rec.get('star_seeds')}", flush=True)

    ok = [r for r in per_image if "error" not in r]
    if not ok:
        raise RuntimeError("no image was measured")
    res["per_image"] = per_image
    res["flops_by_input_hw"] = {f"{h}x{w}": {k: v for k, v in e.items() if k != "shapes"}
                                for (h, w), e in shape_cache.items()}
    traces_after = {id(ex.bp): tracing_counts(ex.bp) for ex in [*star.values(), *fast.values()]}
    res["retraces_during_timing"] = {
        label: {k: traces_after[id(ex.bp)].get(k, 0) - traces_before[id(ex.bp)].get(k, 0)
                for k in traces_after[id(ex.bp)]}
        for label, ex in [*((f"dasr-star/{d}", e) for d, e in star.items()),
                          *((f"fast{s}", e) for s, e in fast.items())]}
    mem = rep.data.setdefault("memory", {})
    mem["maxrss_mib"] = maxrss_mib()
    if on_gpu:
        mem["gpu_peak_mib"] = {k: (max(v for v in vals if v is not None) if any(v is not None for v in vals) else None)
                               for k, vals in gpu_peaks.items()}

    # ---- summaries
    summ = res.setdefault("summary", {})
    summ["timed_images"] = len(ok)
    summ["forward_s"] = stats(r["forward_s"] for r in ok)
    fwd_time = sum(r["forward_s"] for r in ok)
    fwd_macs = sum(r["forward_macs"] for r in ok)
    summ["forward_gflop_per_image"] = 2 * fwd_macs / max(1, len(ok)) / 1e9
    summ["forward_gflops_achieved"] = 2 * fwd_macs / fwd_time / 1e9 if fwd_time > 0 else None
    summ["flop_shape_ok"] = all(r.get("flop_shape_ok") for r in ok)
    summ["backprop"] = {}
    for d in dtypes:
        n_seeds = sum(r["star_seeds"] for r in ok)
        t_back = sum(r["backprop"][d]["backprop_s"] for r in ok)
        macs = sum(r["backprop_macs_per_seed"] * r["star_seeds"] for r in ok)
        summ["backprop"][d] = {
            "per_seed_s": t_back / n_seeds if n_seeds else None,
            "per_seed_s_by_image": stats(r["backprop"][d]["per_seed_s"] for r in ok),
            "prepare_s": stats(r["backprop"][d]["prepare_s"] for r in ok),
            "gflop_per_seed": 2 * macs / n_seeds / 1e9 if n_seeds else None,
            "gflops_achieved": 2 * macs / t_back / 1e9 if t_back > 0 else None,
            "seeds": n_seeds,
        }
    for d, b in summ["backprop"].items():
        key = "bfloat16" if d == "bfloat16" else "float32"
        pk = peak.get(key, {}).get("gflops")
        if pk and b["gflops_achieved"]:
            b["peak_gflops"] = pk
            b["ratio_of_peak"] = b["gflops_achieved"] / pk
            b["x_of_floor"] = pk / b["gflops_achieved"]
            b["floor_per_seed_s"] = b["gflop_per_seed"] / pk
    pk32 = peak.get("float32", {}).get("gflops")
    if pk32 and summ["forward_gflops_achieved"]:
        summ["forward_peak_gflops"] = pk32
        summ["forward_ratio_of_peak"] = summ["forward_gflops_achieved"] / pk32
        summ["forward_x_of_floor"] = pk32 / summ["forward_gflops_achieved"]
        summ["forward_floor_s"] = summ["forward_gflop_per_image"] / pk32
    ious = [v for r in ok for v in r.get("bf16_iou", [])]
    if ious:
        summ["bf16_vs_f32_iou"] = {"mean": float(np.mean(ious)), "min": float(np.min(ious)),
                                   "frac_ge_0.95": float(np.mean(np.asarray(ious) >= 0.95)),
                                   "seeds": len(ious)}
    summ["e2e"] = {}
    for name in ("dasr", "dasr-star"):
        summ["e2e"][name] = {"s": stats(r["e2e"][name]["s"] for r in ok),
                             "seeds": stats(r["e2e"][name]["seeds"] for r in ok),
                             "regions": stats(r["e2e"][name]["regions"] for r in ok)}
    # floor of a whole DASR* image: forward + prepare + seeds x backprop, at the measured peak
    pkd = peak.get("bfloat16" if resolved == "bfloat16" else "float32", {}).get("gflops")
    if pk32 and pkd and ok:
        fl_img = [(2 * r["forward_macs"] / pk32 + 2 * r["backprop_macs_per_seed"] * (1 + r["star_seeds"]) / pkd) / 1e9
                  for r in ok]
        summ["e2e"]["dasr-star"]["floor_s"] = float(np.mean(fl_img))
        t_img = summ["e2e"]["dasr-star"]["s"]
        # The target is stated against the float32 floor (all work at the fp32 peak).
        fl32 = [2 * (r["forward_macs"] + r["backprop_macs_per_seed"] * (1 + r["star_seeds"])) / pk32 / 1e9 for r in ok]
        summ["e2e"]["dasr-star"]["floor_fp32_s"] = float(np.mean(fl32))
        if t_img:
            summ["e2e"]["dasr-star"]["x_of_floor"] = t_img["mean"] / float(np.mean(fl_img))
            summ["e2e"]["dasr-star"]["x_of_fp32_floor"] = t_img["mean"] / float(np.mean(fl32))
    summ["fast"] = {}
    for s in fast:
        rs = [r["fast"][str(s)] for r in ok if str(s) in r.get("fast", {})]
        iou = [v for r in rs for v in r["iou"]]
        n_seeds = sum(len(r["iou"]) for r in rs)
        summ["fast"][str(s)] = {
            "s": stats(r["s"] for r in rs),
            "regions": stats(r["regions"] for r in rs),
            "per_seed_s": sum(r["backprop_s"] for r in rs) / n_seeds if n_seeds else None,
            "gflop_per_seed": 2 * sum(r["backprop_macs_per_seed"] * len(r["iou"]) for r in rs) / n_seeds / 1e9
            if n_seeds else None,
            "iou_mean": float(np.mean(iou)) if iou else None,
            "iou_min": float(np.min(iou)) if iou else None,
            "matched_iou_mean": float(np.mean([v for r in rs for v in r["matched_iou"]])) if rs else None,
        }
    summ["cascade"] = {}
    for s in cascade:
        rs = [r["cascade"][str(s)] for r in ok if str(s) in r.get("cascade", {})]
        summ["cascade"][str(s)] = {
            "s": stats(r["s"] for r in rs), "regions": stats(r["regions"] for r in rs),
            "matched_iou_mean": float(np.mean([v for r in rs for v in r["matched_iou"]])) if rs else None}


# ----------------------------------------------------------------------------- search
def run_search(args, rep: Report):
    res = rep.data.setdefault("search", {})
    n, d, nq, k = args.regions, args.dim, args.queries, args.k
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    feats = rng.standard_normal((n, d), dtype=np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    queries = rng.standard_normal((nq, d), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    per = max(1, args.regions_per_image)
    starts = np.arange(0, n, per)
    res.update({"regions": n, "dim": d, "queries": nq, "k": k, "regions_per_image": per,
                "images": int(len(starts)), "data_s": time.perf_counter() - t0,
                "features": "random l2-normalised float32 (no cluster structure: worst case for IVF-PQ recall)"})

    # exact, as dasr.search.SearchIndex.search_many: one matrix product, best region per image,
    # every image ranked
    def numpy_exact():
        sims = queries @ feats.T
        for row in sims:
            scores = np.maximum.reduceat(row, starts)
            np.argsort(-scores, kind="stable")
        return sims

    numpy_exact()  # warm-up (page faults of the first product)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        sims = numpy_exact()
        times.append(time.perf_counter() - t0)
    best = min(times)
    res["numpy_exact"] = {"s": best, "qps": nq / best, "s_per_query": best / nq}
    top_np = np.argsort(-sims, axis=1, kind="stable")[:, :k]

    try:
        from dasr.ann import build_index, index_bytes_per_vector, plan_index, recall_at_k, search_index
    except ImportError as err:
        raise RuntimeError(f"faiss searches skipped: {err}") from err

    def build_and_search(kind: str):
        """(index, build seconds, result ids, search seconds), after one warm-up query."""
        t0 = time.perf_counter()
        index = build_index(feats, kind)
        build_s = time.perf_counter() - t0
        search_index(index, queries[:1], k)
        t0 = time.perf_counter()
        _, found = search_index(index, queries, k)
        return index, build_s, found, time.perf_counter() - t0

    flat, build, exact_ids, dt = build_and_search("exact")
    res["faiss_exact"] = {"build_s": build, "s": dt, "qps": nq / dt,
                          "top_k_agrees_with_numpy": float(np.mean([len(set(a) & set(b)) / k
                                                                    for a, b in zip(top_np, exact_ids)]))}
    del flat

    plan = plan_index(n, d, "ivfpq")
    res["ivfpq_plan"] = dataclasses.asdict(plan)
    ivf, build, ids, dt = build_and_search("ivfpq")
    res["faiss_ivfpq"] = {"kind": plan.kind, "factory": plan.factory, "nprobe": plan.nprobe,
                          "build_s": build, "s": dt, "qps": nq / dt,
                          f"recall@{k}": recall_at_k(ids, exact_ids, k),
                          f"top1_in_top{k}": float(np.mean([e[0] in set(a) for a, e in zip(ids, exact_ids)])),
                          "bytes_per_vector": index_bytes_per_vector(ivf)}


# ----------------------------------------------------------------------------- table
def build_table(rep: Report, args):
    r = rep.row
    meta = rep.data.get("meta", {})
    r("machine", "device", meta.get("device", "?"))
    r("machine", "CPU threads usable", meta.get("cpus"))
    fl = rep.data.get("floor", {})
    for key in ("float32", "bfloat16"):
        if key in fl:
            r("floor", f"matmul peak {key} ({fl[key]['n']}²)", fl[key]["gflops"], "GFLOP/s")
    for dt, ops in (rep.data.get("gpu_kernels") or {}).items():
        missing = [k for k, v in ops.items() if v != "GPU"]
        r("GPU kernels", f"backprop ops without a GPU kernel, {dt}", ", ".join(missing) or "none")
    im = rep.data.get("images", {})
    s = im.get("summary")
    if s:
        r("images", "timed images (+1 warm-up)", s["timed_images"])
        r("images", "pipeline backprop dtype", im.get("pipeline_dtype"))
        r("images", "warm-up (tracing)", im.get("warmup_s"), "s")
        r("forward", "time per image", mean_median(s["forward_s"], 1e3), "ms")
        r("forward", "work per image", s["forward_gflop_per_image"], "GFLOP")
        r("forward", "achieved", s["forward_gflops_achieved"], "GFLOP/s")
        if "forward_ratio_of_peak" in s:
            r("forward", "ratio = achieved / peak (float32)", s["forward_ratio_of_peak"])
            r("forward", "x of floor = time / (GFLOP / peak)", s["forward_x_of_floor"], "x")
        for d, b in s["backprop"].items():
            r(f"backprop {d}", "time per seed (batched)", None if b["per_seed_s"] is None else b["per_seed_s"] * 1e3, "ms")
            r(f"backprop {d}", "prepare (normalisers) per image", mean_median(b["prepare_s"], 1e3), "ms")
            r(f"backprop {d}", "work per seed", b["gflop_per_seed"], "GFLOP")
            r(f"backprop {d}", "achieved", b["gflops_achieved"], "GFLOP/s")
            if "ratio_of_peak" in b:
                r(f"backprop {d}", f"ratio = achieved / peak ({d})", b["ratio_of_peak"])
                r(f"backprop {d}", "x of floor", b["x_of_floor"], "x")
        if "bf16_vs_f32_iou" in s:
            i = s["bf16_vs_f32_iou"]
            r("bf16 vs f32", f"DASR* box IoU before NMS, mean / min over {i['seeds']} seeds",
              f"{fmt(i['mean'])} / {fmt(i['min'])}")
            r("bf16 vs f32", "share of seeds with IoU >= 0.95", i["frac_ge_0.95"])
        for name, label in (("dasr", "DASR"), ("dasr-star", "DASR*")):
            e = s["e2e"][name]
            r(f"{label} end to end", "time per image", mean_median(e["s"]), "s")
            r(f"{label} end to end", "seeds per image", mean_median(e["seeds"]))
            r(f"{label} end to end", "regions per image", mean_median(e["regions"]))
            if "floor_s" in e:
                r(f"{label} end to end", "floor per image (fwd + prepare + seeds x backprop at peak)", e["floor_s"], "s")
                r(f"{label} end to end", "x of floor", e.get("x_of_floor"), "x")
            if "floor_fp32_s" in e:
                r(f"{label} end to end", "float32 floor per image (all work at the fp32 peak)", e["floor_fp32_s"], "s")
                r(f"{label} end to end", "x of float32 floor (target <= 1.3)", e.get("x_of_fp32_floor"), "x")
        for st, f in s["fast"].items():
            r(f"fast stop_stride={st}", "DASR* time per image", mean_median(f["s"]), "s")
            r(f"fast stop_stride={st}", "regions per image", mean_median(f["regions"]))
            r(f"fast stop_stride={st}", "backprop per seed",
              None if f["per_seed_s"] is None else f["per_seed_s"] * 1e3, "ms")
            r(f"fast stop_stride={st}", "work per seed", f["gflop_per_seed"], "GFLOP")
            r(f"fast stop_stride={st}", "box IoU with faithful, per seed before NMS, mean / min",
              f"{fmt(f['iou_mean'])} / {fmt(f['iou_min'])}")
            r(f"fast stop_stride={st}", "faithful region's best IoU with a fast region (after NMS), mean",
              f.get("matched_iou_mean"))
        for st, f in s.get("cascade", {}).items():
            r(f"cascade stride={st}", "DASR* time per image", mean_median(f["s"]), "s")
            r(f"cascade stride={st}", "regions per image", mean_median(f["regions"]))
            r(f"cascade stride={st}", "faithful region's best IoU with a cascade region (after NMS), mean",
              f.get("matched_iou_mean"))
        rt = im.get("retraces_during_timing", {})
        r("images", "tf.function retraces while timing", sum(sum(v.values()) for v in rt.values()))
    mem = rep.data.get("memory", {})
    if "maxrss_mib" in mem or "maxrss_after_warmup_mib" in mem:
        r("memory", "peak RSS (ru_maxrss)", mem.get("maxrss_mib", mem.get("maxrss_after_warmup_mib")), "MiB")
    for k, v in (mem.get("gpu_peak_mib") or {}).items():
        r("memory", f"GPU peak, {k}", v, "MiB")
    se = rep.data.get("search", {})
    if "numpy_exact" in se:
        tag = f"search {se['regions']:,} x {se['dim']}"
        r(tag, f"numpy exact + per-image max ({se['queries']} queries)", se["numpy_exact"]["qps"], "queries/s")
    if "faiss_exact" in se:
        r(tag, "faiss exact (IndexFlatIP)", se["faiss_exact"]["qps"], "queries/s")
    if "faiss_ivfpq" in se:
        f = se["faiss_ivfpq"]
        name = "IVF-PQ" if f["kind"] == "ivfpq" else f"ivfpq -> {f['kind']} (too few vectors)"
        r(tag, f"faiss {f['factory']} nprobe={f['nprobe']}", f["qps"], "queries/s")
        r(tag, f"{name} build (train + add)", f["build_s"], "s")
        r(tag, f"{name} recall@{se['k']} vs exact (random features)", f[f"recall@{se['k']}"])
        r(tag, f"{name}: exact top-1 found in its top {se['k']}", f[f"top1_in_top{se['k']}"])
        r(tag, f"{name} index size", f["bytes_per_vector"], "bytes/vector")
    r("run", "errors", len(rep.errors))
    r("run", "wall time", rep.data.get("meta", {}).get("wall_s"), "s")


def markdown(rows) -> str:
    head = ["section", "metric", "value", "unit"]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)] if rows else [len(h) for h in head]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(row) for row in rows]
    return "\n".join(out)


# ----------------------------------------------------------------------------- main
def export_images(args) -> int:
    import shutil

    paths, source = select_images(args.images, args.n)
    dest = Path(args.export_images)
    for p in paths:
        target = dest / p.parent.name / p.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, target)
    print(f"[bench] copied {len(paths)} images from {source} to {dest} "
          f"(use --images {dest} --n {len(paths) - 1})")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.export_images:
        return export_images(args)
    t_start = time.perf_counter()
    rep = Report()
    meta = rep.data.setdefault("meta", {})
    meta.update({"started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                 "argv": sys.argv[1:], "args": vars(args), "python": sys.version.split()[0],
                 "platform": platform.platform(), "cpu": cpu_name(), "cpus": usable_cpus()})
    tf = None
    on_gpu = False
    with rep.section("setup"):
        import tensorflow as tf  # noqa: PLC0415

        gpus = tf.config.list_physical_devices("GPU")
        for g in gpus:
            with contextlib.suppress(Exception):
                tf.config.experimental.set_memory_growth(g, True)
        on_gpu = bool(gpus)
        meta["tensorflow"] = tf.__version__
        with contextlib.suppress(Exception):
            import keras
            meta["keras"] = keras.__version__
        with contextlib.suppress(Exception):
            import faiss
            meta["faiss"] = faiss.__version__
        with contextlib.suppress(Exception):
            from dasr import __version__
            meta["dasr"] = __version__
        with contextlib.suppress(Exception):
            from dasr.backprop import cpu_has_bf16
            meta["cpu_has_bf16"] = cpu_has_bf16()
        if on_gpu:
            details = {}
            with contextlib.suppress(Exception):
                details = tf.config.experimental.get_device_details(gpus[0])
            meta["device"] = f"GPU: {details.get('device_name', gpus[0].name)}"
            meta["gpu_details"] = details
            meta["tf32"] = bool(tf.config.experimental.tensor_float_32_execution_enabled())
        else:
            meta["device"] = f"CPU: {meta['cpu']}"
    if tf is None:
        meta["device"] = f"CPU: {meta['cpu']} (TensorFlow did not import)"

    out = Path(args.out)
    if not out.is_absolute():
        out = Path.cwd() / out

    def checkpoint():
        """Partial results after each section, so that a killed run still leaves them."""
        rep.data["errors"] = rep.errors
        meta["complete"] = False
        meta["wall_s"] = time.perf_counter() - t_start
        with contextlib.suppress(Exception):
            atomic_write_bytes(out, (json.dumps(to_jsonable(rep.data), indent=1) + "\n").encode())

    peak: dict = {}
    if tf is not None and "floor" not in args.skip:
        with rep.section("hardware floor (matmul peak)"):
            n = args.matmul_n or (8192 if on_gpu else 2048)
            dts = ["float32"]
            from dasr.backprop import cpu_has_bf16
            if on_gpu or cpu_has_bf16():
                dts.append("bfloat16")
            for dt in dts:
                peak[dt] = matmul_peak(tf, dt, n, on_gpu)
                print(f"[bench] matmul {dt} {n}: {peak[dt]['gflops']:.1f} GFLOP/s", flush=True)
            rep.data["floor"] = peak
        checkpoint()
    if tf is not None and on_gpu:
        with rep.section("GPU kernels of the backprop ops"):
            rep.data["gpu_kernels"] = gpu_kernel_check(tf)
            print(f"[bench] GPU kernels: {rep.data['gpu_kernels']}", flush=True)
    if tf is not None and "images" not in args.skip:
        with rep.section("image pipeline"):
            run_images(tf, args, rep, on_gpu, peak)
        checkpoint()
    if "search" not in args.skip:
        with rep.section("search"):
            run_search(args, rep)
    rep.data.setdefault("memory", {})["maxrss_mib"] = maxrss_mib()
    meta["wall_s"] = time.perf_counter() - t_start
    meta["complete"] = True
    meta["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

    table = ""
    try:
        build_table(rep, args)
        table = markdown(rep.rows)
    except Exception as err:  # noqa: BLE001
        rep.errors.append({"section": "table", "error": f"{type(err).__name__}: {err}",
                           "traceback": traceback.format_exc()})
    rep.data["errors"] = rep.errors
    rep.data["table"] = [dict(zip(("section", "metric", "value", "unit"), row)) for row in rep.rows]
    print()
    print(table)
    for e in rep.errors:
        print(f"ERROR in {e['section']}: {e['error']}", file=sys.stderr)
    try:
        atomic_write_bytes(out, (json.dumps(to_jsonable(rep.data), indent=1, sort_keys=False) + "\n").encode())
        atomic_write_bytes(out.with_suffix(".md"), f"# dasr benchmark ({meta.get('device')})\n\n{table}\n".encode())
        print(f"\n[bench] wrote {out} and {out.with_suffix('.md')}", flush=True)
    except OSError as err:
        print(f"[bench] could not write {out}: {err}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
