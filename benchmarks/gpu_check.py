"""GPU check of the probability backprop on JAX, and the bundle it runs on.

Two commands (``benchmarks/gpu_check.sh`` runs the second on the GPU machine):

* ``bundle OUT`` (here, on the CPU with TensorFlow; ``make gpu-bundle``): a float16 copy of the
  cached ImageNet weights, ``--n`` instance-track images resized to ``--max-side`` (raw uint8,
  so that the GPU machine needs no image decoder) and the CPU float32 reference boxes of DASR
  and DASR* for them.
* ``check BUNDLE OUT`` (there, on JAX): the same pipeline on every bundled image, timed, and its
  boxes matched against the reference; prints one table and writes ``OUT/gpu-check.json``.

The pipeline is the Extractor's batched region path (:meth:`Extractor.extract_inputs`: one
forward pass for ``--images-per-step`` images of one shape, the seeds of all of them through
fixed-size backprop chunks, ellipses on the device, NMS per image) composed from the same public
functions, without :mod:`dasr.io.images` (OpenCV and Pillow are not on the GPU machine); the
caffe preprocessing is Keras' own ``preprocess_input``, checked against
:func:`dasr.io.images.preprocess_caffe` when the bundle is made.  Steps come in few shapes (a
step's batch padded with blank images to a power of two, as the Extractor pads; the last chunk
padded with zero seeds), and the warm-up runs one step of each, so nothing compiles in the
timed pass; the bundle takes images of the most common size, hence one or two
image shapes.

``--images-per-step`` defaults to 8, the collection loop's GPU default
(:data:`dasr.store.extract.GPU_IMAGES_PER_STEP`, not imported: that module needs OpenCV), chosen
without a GPU to measure on (see there why).
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import keras
import numpy as np

from dasr.model.backbone import build_backbone
from dasr.model import chunks
from dasr.model.backprop import ProbabilityBackprop, resolve_dtype
from dasr.regions import RegionConfig, activation_map, best_iou, find_seeds, nms

METHODS = ("dasr", "dasr-star")
WEIGHTS_FILE = "resnet50_float16.weights.h5"
IMAGES_FILE = "images.npz"
REFERENCE_FILE = "reference.npz"
MANIFEST_FILE = "manifest.json"
# The GPU machine takes 64 MiB per run, the repository's own files (~1 MiB) included.
BUNDLE_LIMIT_MIB = 62
# bfloat16 dense tensor-core peak of one H200 (SXM), the denominator of the achieved rate.
H200_BF16_DENSE_TFLOPS = 790.0
# The collection loop's GPU default (dasr.store.extract.GPU_IMAGES_PER_STEP).
IMAGES_PER_STEP = 8


# ----------------------------------------------------------------------------- the pipeline
@dataclass
class StepResult:
    """One network step through one method: each image's boxes (network-input pixels, after NMS)
    and seed count, and the step's timings."""

    boxes: list[np.ndarray]
    seeds: list[int]
    forward_s: float
    backprop_s: float
    total_s: float


def network_input(rgb: np.ndarray) -> np.ndarray:
    """(1, H, W, 3) caffe-preprocessed float32 input of a resized uint8 RGB image."""
    return keras.applications.resnet50.preprocess_input(rgb[None].astype(np.float32))


def step_regions(bp: ProbabilityBackprop, top_layer: str, x: np.ndarray, real: int, region: RegionConfig,
                 chunk: int) -> StepResult:
    """The region boxes of the first ``real`` images of the batch ``x`` (the rest is padding).

    The Extractor's batched region path, without pooling: one forward pass, the seeds of every
    image through the same fixed-size chunks, each seed gathering its own image's state.
    """
    t0 = time.perf_counter()
    acts = bp.forward(x)
    top = keras.ops.convert_to_numpy(acts[top_layer])
    t1 = time.perf_counter()
    seeds, scores = zip(*(find_seeds(activation_map(top[i]), region.method, region.max_seeds) for i in range(real)))
    counts = [len(s) for s in seeds]
    boxes = [np.zeros((0, 4), np.float32) for _ in range(real)]
    if sum(counts):
        # The GPU path of the Extractor: Eq. 4 computed with the maps, only boxes come back.
        found_boxes, _, kept = chunks.seed_boxes(
            bp, bp.prepare(acts), acts[top_layer], np.concatenate(seeds), chunk=chunk, rule="paper",
            tau=region.tau, weighted=region.weighted_moments, percentile=None,
            image=np.repeat(np.arange(real, dtype=np.int32), counts))
        t2 = time.perf_counter()
        h, w = x.shape[1:3]
        cuts = np.cumsum(counts)[:-1]
        for i, (b, k, sc) in enumerate(zip(np.split(found_boxes, cuts), np.split(kept, cuts), scores)):
            found = np.flatnonzero(k > 0)
            boxes[i] = np.clip(b[found], 0, [w, h, w, h]).astype(np.float32)
            if region.nms_iou is not None and len(boxes[i]):
                boxes[i] = boxes[i][nms(boxes[i], sc[found], region.nms_iou)]
    else:
        t2 = t1
    return StepResult(boxes, counts, t1 - t0, t2 - t1, time.perf_counter() - t0)


def steps_of(images: list[np.ndarray], per_step: int) -> list[tuple[list[int], np.ndarray]]:
    """(image indices, (B, H, W, 3) input) of each step: up to ``per_step`` images of one shape,
    padded with blank images to :func:`dasr.model.chunks.padded_batch` (as the Extractor pads)."""
    steps = []
    for shape in sorted({rgb.shape for rgb in images}):
        rows = [i for i, rgb in enumerate(images) if rgb.shape == shape]
        for k in range(0, len(rows), per_step):
            part = rows[k:k + per_step]
            x = np.concatenate([network_input(images[i]) for i in part])
            x = np.concatenate([x, np.zeros((chunks.padded_batch(len(part)) - len(part), *x.shape[1:]), x.dtype)])
            steps.append((part, x))
    return steps


def op_macs(bp: ProbabilityBackprop, height: int, width: int) -> tuple[float, float]:
    """(forward MACs of the convolutions below the top, MACs of ONE seed's backprop).

    A transposed convolution costs what the convolution costs; pooling is not counted.
    """
    size = {bp.input_id: (height, width)}
    fwd = back = 0.0
    down = {id(op) for op in bp.ops_down}
    for op in bp.ops:
        h, w = size[op.inputs[0]]
        if op.kind in ("conv", "pool"):
            kh, kw = op.kernel.shape[:2] if op.kind == "conv" else op.pool_size
            s = op.strides[0]
            h, w = ((-(-h // s), -(-w // s)) if op.padding == "SAME"
                    else ((h - kh) // s + 1, (w - kw) // s + 1))
            if op.kind == "conv":
                macs = float(h * w * np.prod(op.kernel.shape))
                fwd += macs
                back += macs if id(op) in down else 0.0
        elif op.kind == "pad":
            (t, b), (l, r) = op.crop
            h, w = h + t + b, w + l + r
        size[op.output] = (h, w)
    return fwd, back


# ----------------------------------------------------------------------------- bundle (CPU)
def write_float16_weights(src: Path, dst: Path) -> None:
    """A float16, gzip-compressed copy of a Keras ``.weights.h5`` (loads into float32 variables).

    Values beyond float16's range (conv1's BN moving variance reaches 8e4) keep float32.

    The classifier's ``dense`` top is written as zeros: the backbone is cut below it, and zeros
    compress to nothing (the file must stay under the GPU machine's 64 MiB).
    """
    with h5py.File(src, "r") as fin, h5py.File(dst, "w") as fout:
        def copy(name, obj):
            if isinstance(obj, h5py.Group):
                group = fout.require_group(name)
                group.attrs.update(obj.attrs)
                return
            data = obj[()]
            if np.issubdtype(data.dtype, np.floating):
                data = np.zeros_like(data) if name.startswith("layers/dense/") else data
                # A few BN variances exceed float16's range (65504): those small vectors stay float32.
                if np.abs(data).max(initial=0) <= np.finfo(np.float16).max:
                    data = data.astype(np.float16)
            kw = {"compression": "gzip", "compression_opts": 4} if data.ndim else {}
            fout.create_dataset(name, data=data, **kw).attrs.update(obj.attrs)
        fout.attrs.update(fin.attrs)
        fin.visititems(copy)


def pick_images(root: Path, n: int) -> list[str]:
    """``n`` image paths of instance-track's most common size, spread over its instances."""
    rows = list(csv.DictReader(open(root / "annotations.csv")))
    sizes = [(r["width"], r["height"]) for r in rows]
    common = max(set(sizes), key=sizes.count)
    same = [r["image"] for r, s in zip(rows, sizes) if s == common]
    step = max(1, len(same) // n)
    return same[::step][:n]


def make_bundle(args) -> None:
    # Imported here, not at the top: they need OpenCV and Pillow, which the GPU machine lacks
    # (only the check runs there).
    from dasr.eval.datasets import default_root
    from dasr.io.images import IMAGENET_BGR_MEAN, load_image, preprocess_caffe, resize_long_side
    from dasr.model.weights import cached_weights_path

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    src = Path(args.weights) if args.weights != "imagenet" else cached_weights_path("resnet50")
    write_float16_weights(src, out / WEIGHTS_FILE)
    root = Path(args.images_root) if args.images_root else Path(default_root("instance-track"))
    names = pick_images(root, args.n)
    images = [resize_long_side(load_image(root / name), args.max_side)[0] for name in names]
    for rgb in images:  # the check's preprocessing is the Extractor's
        if not np.array_equal(network_input(rgb)[0], preprocess_caffe(rgb)):
            raise RuntimeError("keras preprocess_input differs from dasr.io.images.preprocess_caffe")
    np.savez_compressed(out / IMAGES_FILE, **{f"image{i}": rgb for i, rgb in enumerate(images)})
    # The reference: the CPU Extractor in float32 (maps brought back, NumPy float64 moments), from
    # the float16 file (the weights the check uses); the images are already at max_side (scale 1).
    from dasr.features.extractor import Extractor

    bb = build_backbone("resnet50", weights=out / WEIGHTS_FILE)
    ref = {}
    for method in METHODS:
        region = RegionConfig(method=method, max_side=args.max_side, backprop_dtype="float32",
                              seed_chunk=args.seed_chunk)
        extractor = Extractor(bb, method, region, boxes_on_device=False)
        for i, rgb in enumerate(images):
            ref[f"{method}/{i}"] = extractor(rgb).regions.boxes
            print(f"[bundle] {method} {names[i]}: {len(ref[f'{method}/{i}'])} boxes", flush=True)
    np.savez_compressed(out / REFERENCE_FILE, **ref)
    manifest = {"images": names, "max_side": args.max_side, "input_offset": list(IMAGENET_BGR_MEAN),
                "reference": {"backend": keras.backend.backend(), "dtype": "float32",
                              "machine": platform.processor() or platform.machine(),
                              "seed_chunk": args.seed_chunk},
                "weights_source": str(src)}
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"[bundle] {out}: {len(names)} images at {args.max_side} px, {total / 2**20:.1f} MiB in all")
    if total > BUNDLE_LIMIT_MIB * 2**20:
        raise SystemExit(f"the bundle is {total / 2**20:.1f} MiB, over the {BUNDLE_LIMIT_MIB} MiB the GPU machine "
                         "takes with the repository: make it with fewer images (--n, GPU_IMAGES=)")


# ----------------------------------------------------------------------------- check (GPU)
def device_report() -> dict:
    """The accelerator and, on JAX, its peak memory so far."""
    info = {"backend": keras.backend.backend()}
    if keras.backend.backend() == "jax":
        import jax

        dev = jax.devices()[0]
        info.update(platform=dev.platform, device=str(getattr(dev, "device_kind", dev)),
                    jax=jax.__version__)
        stats = dev.memory_stats() if hasattr(dev, "memory_stats") else None
        info["peak_memory_gib"] = (stats or {}).get("peak_bytes_in_use", 0) / 2**30 if stats else None
    return info


def run_check(args) -> int:
    bundle, out = Path(args.bundle), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((bundle / MANIFEST_FILE).read_text())
    with np.load(bundle / IMAGES_FILE) as data:
        images = [data[f"image{i}"] for i in range(len(manifest["images"]))][: args.n]
    with np.load(bundle / REFERENCE_FILE) as data:
        reference = {k: data[k] for k in data.files}
    dtype = resolve_dtype(args.dtype)
    t0 = time.perf_counter()
    bb = build_backbone("resnet50", weights=bundle / WEIGHTS_FILE)
    build_s = time.perf_counter() - t0
    bp = ProbabilityBackprop(bb.model, bb.top_layer, input_offset=manifest["input_offset"], dtype=dtype)
    steps = steps_of(images, args.images_per_step)
    shapes = sorted({x.shape for _, x in steps})
    rows, per_method = [], {}
    for method in METHODS:
        region = RegionConfig(method=method, max_side=manifest["max_side"])
        # Warm-up: one step of each (batch, image) shape compiles forward, prepare and the backprop step.
        t0 = time.perf_counter()
        for shape in shapes:
            part, x = next(st for st in steps if st[1].shape == shape)
            step_regions(bp, bb.top_layer, x, len(part), region, args.seed_chunk)
        warmup_s = time.perf_counter() - t0
        results = []
        boxes: list = [None] * len(images)
        t0 = time.perf_counter()
        for part, x in steps:
            results.append(step_regions(bp, bb.top_layer, x, len(part), region, args.seed_chunk))
            for i, b in zip(part, results[-1].boxes):
                boxes[i] = b
        wall = time.perf_counter() - t0
        ious = np.concatenate([best_iou(reference[f"{method}/{i}"], b) for i, b in enumerate(boxes)])
        seeds_of = {i: n for (part, _), r in zip(steps, results) for i, n in zip(part, r.seeds)}
        seeds = sum(seeds_of.values())
        fwd_macs, seed_macs = zip(*(op_macs(bp, *rgb.shape[:2]) for rgb in images))
        flops = 2.0 * (sum(fwd_macs) + sum(m * seeds_of[i] for i, m in enumerate(seed_macs)))
        row = {"method": method, "images": len(images), "images_per_s": len(images) / wall,
               "steps": len(steps),
               "forward_ms_per_step": 1e3 * float(np.median([r.forward_s for r in results])),
               "backprop_ms_per_seed": 1e3 * sum(r.backprop_s for r in results) / max(seeds, 1),
               "seeds": seeds, "achieved_tflops": flops / wall / 1e12,
               "warmup_s": warmup_s, "shapes": len(shapes),
               "matched_iou_mean": float(ious.mean()) if len(ious) else None,
               "matched_iou_min": float(ious.min()) if len(ious) else None,
               "reference_boxes": int(len(ious))}
        row["fraction_of_peak"] = row["achieved_tflops"] / args.peak_tflops
        rows.append(row)
        per_method[method] = [b.tolist() for b in boxes]
    dev = device_report()
    report = {"device": dev, "dtype": dtype, "max_side": manifest["max_side"], "seed_chunk": args.seed_chunk,
              "images_per_step": args.images_per_step,
              "build_s": build_s, "smoke": args.smoke, "peak_tflops": args.peak_tflops, "rows": rows,
              "python": sys.version.split()[0], "keras": keras.__version__, "boxes": per_method}
    (out / "gpu-check.json").write_text(json.dumps(report, indent=1))
    print(f"\n{dev}  dtype {dtype}  {manifest['max_side']} px  chunk {args.seed_chunk}  "
          f"{args.images_per_step} images/step  "
          f"build {build_s:.1f} s  {'SMOKE (CPU, small)' if args.smoke else ''}")
    print("| method | img/s | forward ms/step | backprop ms/seed | seeds | TFLOP/s | % of peak | warm-up s (shapes) "
          "| matched IoU mean / min | peak GiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        iou = "n/a" if r["matched_iou_mean"] is None else f"{r['matched_iou_mean']:.4f} / {r['matched_iou_min']:.4f}"
        mem = "n/a" if dev.get("peak_memory_gib") is None else f"{dev['peak_memory_gib']:.1f}"
        print(f"| {r['method']} | {r['images_per_s']:.2f} | {r['forward_ms_per_step']:.1f} | {r['backprop_ms_per_seed']:.2f} "
              f"| {r['seeds']} | {r['achieved_tflops']:.3f} | {100 * r['fraction_of_peak']:.2f} "
              f"| {r['warmup_s']:.1f} ({r['shapes']}) | {iou} | {mem} |")
    print(f"\nwritten: {out / 'gpu-check.json'}")
    return 0


def positive(text: str) -> int:
    """An integer >= 1 (argparse type)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be >= 1")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bundle", help="make the bundle (CPU, TensorFlow): weights, images, reference boxes")
    b.add_argument("out", help="bundle folder (make gpu-bundle: .gpu)")
    b.add_argument("--n", type=int, default=50, help="images")
    b.add_argument("--max-side", type=int, default=512, help="long side of the network input")
    b.add_argument("--weights", default="imagenet", help="imagenet (the cache) or a .weights.h5")
    b.add_argument("--images-root", default=None, help="instance-track folder (default: the shared one)")
    b.add_argument("--seed-chunk", type=int, default=16)
    c = sub.add_parser("check", help="run the check (JAX) on a bundle")
    c.add_argument("bundle")
    c.add_argument("out", help="folder for gpu-check.json")
    c.add_argument("--n", type=int, default=None, help="use only the first N bundled images")
    c.add_argument("--dtype", default="auto", help="backprop dtype (auto: bfloat16 where the hardware has it)")
    c.add_argument("--seed-chunk", type=positive, default=64, help="seeds per backprop call (fixed shape)")
    c.add_argument("--images-per-step", type=positive, default=IMAGES_PER_STEP,
                   help=f"images per forward pass, their seeds sharing the chunks (default {IMAGES_PER_STEP})")
    c.add_argument("--peak-tflops", type=float, default=H200_BF16_DENSE_TFLOPS)
    c.add_argument("--smoke", action="store_true", help="label the run as the CPU smoke test")
    args = parser.parse_args(argv)
    if args.command == "bundle":
        make_bundle(args)
        return 0
    return run_check(args)


if __name__ == "__main__":
    sys.exit(main())
