"""GPU check of `dasr extract` on JAX, and the bundle it runs on.

Two commands (``benchmarks/gpu_check.sh`` runs the second on the GPU machine):

* ``bundle OUT`` (here, on the CPU with TensorFlow; ``make gpu-bundle``): a float16 copy of the
  ImageNet weights, ``--n`` instance-track images copied as they are (JPEG files of their real,
  mixed sizes, spread over the instances) and the boxes of DASR and DASR* on them from the
  library's own collection loop (:func:`dasr.store.extract.extract_collection`) on this CPU in
  float32, with the same float16 weights.
* ``check BUNDLE OUT`` (there, on JAX, without TensorFlow): for each dtype (``--dtypes``, in
  order of importance), images per step (``--images-per-step``, then ``--more-steps``) and
  method: the same collection loop (decoding with :mod:`dasr.io.images`, the Extractor's batched
  path, the HDF5 store) once to compile every input shape, then once timed, into fresh stores;
  its boxes matched against the CPU float32 ones (each reference box's best IoU,
  :func:`dasr.regions.boxes.best_iou`, as in the precision report),
  the images per second, the device's peak memory (:mod:`dasr.profiling.jax_device`) and the
  matmul peak measured on the same device (:func:`dasr.profiling.peak.matmul_peak`).  Each row is
  written to ``OUT/gpu-check.json`` as soon as it is measured, so a stopped run keeps its rows.

float32 runs with ``jax_default_matmul_precision = "highest"`` (full float32, not TF32): the
report says so per row.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

METHODS = ("dasr-star", "dasr")
WEIGHTS_FILE = "resnet50_float16.weights.h5"
IMAGES_DIR = "images"
REFERENCE_FILE = "reference.npz"
MANIFEST_FILE = "manifest.json"
# The GPU machine takes 64 MiB per run, the repository's own files (~2 MiB) included.
BUNDLE_LIMIT_MIB = 62


# ----------------------------------------------------------------------------- bundle (CPU)
def write_float16_weights(src: Path, dst: Path) -> None:
    """A float16, gzip-compressed copy of a Keras ``.weights.h5`` (loads into float32 variables).

    Values beyond float16's range (conv1's BN moving variance reaches 8e4) keep float32.  The
    classifier's ``dense`` top is written as zeros: the backbone is cut below it, and zeros
    compress to nothing (the file must stay under the GPU machine's 64 MiB).
    """
    with h5py.File(src, "r") as fin, h5py.File(dst, "w") as fout:
        def copy(name, obj):
            if isinstance(obj, h5py.Group):
                fout.require_group(name).attrs.update(obj.attrs)
                return
            data = obj[()]
            if np.issubdtype(data.dtype, np.floating):
                data = np.zeros_like(data) if name.startswith("layers/dense/") else data
                if np.abs(data).max(initial=0) <= np.finfo(np.float16).max:
                    data = data.astype(np.float16)
            kw = {"compression": "gzip", "compression_opts": 4} if data.ndim else {}
            fout.create_dataset(name, data=data, **kw).attrs.update(obj.attrs)
        fout.attrs.update(fin.attrs)
        fin.visititems(copy)


def pick_images(root: Path, n: int) -> list[str]:
    """``n`` image paths of an instance-track folder, evenly spread over its rows (all sizes)."""
    with open(root / "annotations.csv", newline="") as f:
        names = list(dict.fromkeys(row["image"] for row in csv.DictReader(f)))
    picked = [names[int(i)] for i in np.linspace(0, len(names) - 1, min(n, len(names)))]
    return list(dict.fromkeys(picked))


def spec_options(weights: Path, max_side: int, dtype: str, seed_chunk: int) -> dict:
    """The extractor options of every run of the check (the method and dtype vary)."""
    return {"weights": str(weights), "max_side": max_side, "backprop_dtype": dtype, "seed_chunk": seed_chunk}


def store_boxes(path: Path) -> dict[str, np.ndarray]:
    """{image: boxes} of a finished store."""
    from dasr.store import RegionStore

    store = RegionStore.open(path)
    return {name: store.regions_of(i)["boxes"] for i, name in enumerate(store.images)}


def make_bundle(args) -> None:
    from dasr.eval.datasets import default_root
    from dasr.features.spec import ExtractorSpec
    from dasr.model.weights import cached_weights_path
    from dasr.store.extract import extract_collection

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.weights == "random":  # the smoke run: an untrained network, saved so that both sides load it
        import keras

        from dasr.model.architectures import classifier_model

        src = out / "random.weights.h5"
        keras.utils.set_random_seed(0)
        classifier_model("resnet50", None).save_weights(src)
    else:
        src = Path(args.weights) if args.weights != "imagenet" else cached_weights_path("resnet50")
    write_float16_weights(src, out / WEIGHTS_FILE)
    root = Path(args.images_root) if args.images_root else Path(default_root("instance-track"))
    names = pick_images(root, args.n)
    shutil.rmtree(out / IMAGES_DIR, ignore_errors=True)
    for name in names:
        (out / IMAGES_DIR / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / name, out / IMAGES_DIR / name)
    reference = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in METHODS:
            ex = ExtractorSpec.from_options(method=method, **spec_options(
                out / WEIGHTS_FILE, args.max_side, "float32", args.seed_chunk)).build()
            extract_collection(ex, out / IMAGES_DIR, Path(tmp) / f"{method}.h5", images_per_step=1)
            reference.update({f"{method}/{k}": v for k, v in store_boxes(Path(tmp) / f"{method}.h5").items()})
    np.savez_compressed(out / REFERENCE_FILE, **reference)
    (out / "random.weights.h5").unlink(missing_ok=True)
    import keras

    manifest = {"images": names, "max_side": args.max_side, "seed_chunk": args.seed_chunk,
                "reference": {"backend": keras.backend.backend(), "dtype": "float32",
                              "machine": platform.processor() or platform.machine(), "images_per_step": 1},
                "weights_source": str(src) if args.weights != "random" else "random"}
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"[bundle] {out}: {len(names)} images, {total / 2**20:.1f} MiB in all")
    if total > BUNDLE_LIMIT_MIB * 2**20:
        raise SystemExit(f"the bundle is {total / 2**20:.1f} MiB, over the {BUNDLE_LIMIT_MIB} MiB the GPU machine "
                         "takes with the repository: make it with fewer images (--n, GPU_IMAGES=)")


# ----------------------------------------------------------------------------- check (GPU, JAX)
def measure(bundle: Path, method: str, dtype: str, per_step: int, manifest: dict, reference: dict,
            work: Path) -> dict:
    """One row: the collection loop compiled, then timed, and its boxes against the reference."""
    from dasr.features.spec import ExtractorSpec
    from dasr.profiling.jax_device import peak_memory_mib
    from dasr.regions.boxes import best_iou
    from dasr.store.extract import extract_collection

    ex = ExtractorSpec.from_options(method=method, **spec_options(
        bundle / WEIGHTS_FILE, manifest["max_side"], dtype, manifest["seed_chunk"])).build()
    runs = []
    for label in ("compile", "timed"):
        path = work / f"{method}-{dtype}-{per_step}-{label}.h5"
        t0 = time.perf_counter()
        summary = extract_collection(ex, bundle / IMAGES_DIR, path, images_per_step=per_step, progress=False)
        runs.append(time.perf_counter() - t0)
    if summary.skipped:
        raise RuntimeError(f"images skipped on the GPU machine: {summary.skipped}")
    boxes = store_boxes(path)
    ious = np.concatenate([best_iou(reference[f"{method}/{name}"], b) for name, b in boxes.items()])
    regions = sum(len(b) for b in boxes.values())
    return {"method": method, "dtype": dtype, "images_per_step": per_step, "images": len(boxes),
            "images_per_s": len(boxes) / runs[1], "timed_s": runs[1], "compile_pass_s": runs[0],
            "regions_per_image": regions / len(boxes),
            "matched_iou_median": float(np.median(ious)) if len(ious) else None,
            "matched_iou_p5": float(np.percentile(ious, 5)) if len(ious) else None,
            "matched_iou_min": float(ious.min()) if len(ious) else None,
            "reference_boxes": int(len(ious)), "peak_memory_mib_so_far": peak_memory_mib()}


def run_check(args) -> int:
    import jax

    from dasr.profiling.jax_device import device_name
    from dasr.profiling.peak import matmul_peak

    bundle, out = Path(args.bundle), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((bundle / MANIFEST_FILE).read_text())
    with np.load(bundle / REFERENCE_FILE) as data:
        reference = {k: data[k] for k in data.files}
    report = {"device": device_name(), "jax": jax.__version__, "python": sys.version.split()[0],
              "smoke": args.smoke, "max_side": manifest["max_side"], "seed_chunk": manifest["seed_chunk"],
              "images": len(manifest["images"]), "reference": manifest["reference"], "peak": {}, "rows": [],
              "modules": {}}
    path = out / "gpu-check.json"

    def save() -> None:
        report["modules"] = {"tensorflow": "tensorflow" in sys.modules, "keras": sys.modules["keras"].__version__}
        path.write_text(json.dumps(report, indent=1))

    steps = [args.images_per_step, *[s for s in args.more_steps if s != args.images_per_step]]
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in args.dtypes:
            # float32 at full precision (JAX's GPU default would be TF32-like bfloat16 passes).
            jax.config.update("jax_default_matmul_precision", "highest" if dtype == "float32" else None)
            peak = matmul_peak(dtype, args.matmul_n, chain=args.matmul_chain, budget_s=2.0, framework="jax")
            report["peak"][dtype] = {"gflops": peak.gflops, "n": peak.n, "chain": peak.chain}
            for per_step in steps if dtype == args.dtypes[0] else steps[:1]:
                for method in args.methods:
                    row = measure(bundle, method, dtype, per_step, manifest, reference, Path(tmp))
                    row["matmul_precision"] = "highest" if dtype == "float32" else "default"
                    report["rows"].append(row)
                    save()
                    print(json.dumps(row), flush=True)
    print(f"\n{report['device']}  {manifest['max_side']} px  {report['images']} images")
    print("| method | dtype | images/step | img/s | regions/img | matched IoU median / min | peak MiB |")
    print("|---|---|---|---|---|---|---|")
    for r in report["rows"]:
        iou = "n/a" if r["matched_iou_median"] is None else f"{r['matched_iou_median']:.4f} / {r['matched_iou_min']:.4f}"
        print(f"| {r['method']} | {r['dtype']} | {r['images_per_step']} | {r['images_per_s']:.2f} | "
              f"{r['regions_per_image']:.1f} | {iou} | {r['peak_memory_mib_so_far']} |")
    print(f"\nwritten: {path}")
    return 0


def positive(text: str) -> int:
    """An integer >= 1 (argparse type)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be >= 1")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bundle", help="make the bundle (CPU, TensorFlow): weights, images, reference boxes")
    b.add_argument("out", help="bundle folder (make gpu-bundle: .gpu)")
    b.add_argument("--n", type=positive, default=50, help="images")
    b.add_argument("--max-side", type=positive, default=512, help="long side of the network input")
    b.add_argument("--weights", default="imagenet", help="imagenet (the cache), random (smoke) or a .weights.h5")
    b.add_argument("--images-root", default=None, help="instance-track folder (default: the shared one)")
    b.add_argument("--seed-chunk", type=positive, default=64, help="seeds per backprop call (fixed shape)")
    c = sub.add_parser("check", help="run the check (JAX) on a bundle")
    c.add_argument("bundle")
    c.add_argument("out", help="folder for gpu-check.json")
    c.add_argument("--dtypes", type=lambda t: t.split(","), default=["bfloat16", "float32"],
                   help="backprop dtypes, in order of importance")
    c.add_argument("--methods", type=lambda t: t.split(","), default=list(METHODS))
    c.add_argument("--images-per-step", type=positive, default=8,
                   help="images per network step of the first rows (dasr extract's GPU default)")
    c.add_argument("--more-steps", type=lambda t: [positive(v) for v in t.split(",") if v], default=[4, 16],
                   help="further images-per-step values, first dtype only")
    c.add_argument("--matmul-n", type=positive, default=8192, help="side of the peak's matmul")
    c.add_argument("--matmul-chain", type=positive, default=10, help="matmuls per timed call of the peak")
    c.add_argument("--smoke", action="store_true", help="label the run as the CPU smoke test")
    args = parser.parse_args(argv)
    if args.command == "bundle":
        make_bundle(args)
        return 0
    return run_check(args)


if __name__ == "__main__":
    sys.exit(main())
