#!/usr/bin/env python3
"""What compiling the network for each new input shape costs on a collection of mixed sizes.

TensorFlow traces the forward pass and the backprop once per input shape it has not seen (with
``reduce_retracing`` it soon traces shape-relaxed functions instead); JAX compiles per shape.
Each image of a new input shape is extracted twice in a row by the library's Extractor: the
first call pays any tracing, the second does not, so their difference is the tracing cost.
Prints and writes (JSON, Markdown) the share of the extraction time it adds: over those images
(every one a new shape: the worst case) and over the whole collection they come from, whose
images share few shapes (counted from the image headers).  Images are the first of each instance folder of the shared
instance-track set (their sizes differ), or a folder.

Usage::

    .venv/bin/python benchmarks/retracing.py [--method dasr] [--n 12] [--out results/bench/retracing.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
from PIL import Image  # noqa: E402

from dasr.eval.datasets import default_root  # noqa: E402
from dasr.features.extractor import prepare_input  # noqa: E402
from dasr.features.spec import ExtractorSpec  # noqa: E402
from dasr.io.atomic import atomic_write_bytes  # noqa: E402
from dasr.io.images import list_images, load_image, resized_size  # noqa: E402
from dasr.profiling import machine  # noqa: E402


def first_of_each_folder(folder: Path) -> list[Path]:
    seen: dict[str, Path] = {}
    for rel in list_images(folder):
        seen.setdefault(rel.rsplit("/", 1)[0], folder / rel)
    return [seen[k] for k in sorted(seen)]


def input_shapes(folder: Path, max_side: int) -> list[tuple[int, int]]:
    """The network input (height, width) of every image of ``folder``, from the headers alone."""
    shapes = []
    for rel in list_images(folder):
        with Image.open(folder / rel) as img:
            shapes.append(resized_size(img.height, img.width, max_side))
    return shapes


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--images", default=None, help="a folder (default: the shared instance-track images)")
    p.add_argument("--n", type=int, default=12, help="images of distinct input shapes to time")
    p.add_argument("--method", default="dasr", help="extraction method (dasr: the cheapest, so the largest share)")
    p.add_argument("--weights", default="imagenet")
    p.add_argument("--max-side", type=int, default=512)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--out", default="results/bench/retracing.json")
    args = p.parse_args(argv)
    folder = Path(args.images) if args.images else default_root("instance-track") / "images"
    ex = ExtractorSpec.from_options(method=args.method, weights=args.weights, max_side=args.max_side,
                                    backprop_dtype=args.dtype).build()
    rows, shapes = [], set()
    for path in first_of_each_folder(folder):
        if len(rows) >= args.n:
            break
        img = load_image(path)
        shape = tuple(prepare_input(img, args.max_side)[0].shape)
        if shape in shapes:
            continue
        shapes.add(shape)
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            ex(img)
            times.append(time.perf_counter() - t0)
        rows.append({"image": str(path), "input_shape": list(shape[1:3]), "first_s": times[0], "again_s": times[1]})
        print(f"[retracing] {path.name} {shape[1]}x{shape[2]}: first {times[0]:.2f} s, again {times[1]:.2f} s",
              flush=True)
    if len(rows) < 2:
        raise RuntimeError(f"need at least 2 images of distinct shapes, found {len(rows)} in {folder}")
    first, again = sum(r["first_s"] for r in rows), sum(r["again_s"] for r in rows)
    # The first image also builds what every shape shares (one-time start-up): not per-shape cost.
    later_first, later_again = first - rows[0]["first_s"], again - rows[0]["again_s"]
    summary = {"images": len(rows), "distinct_shapes": len(shapes), "extraction_s": again,
               "tracing_s_after_the_first_shape": later_first - later_again,
               "share_of_extraction_after_the_first_shape": (later_first - later_again) / later_again,
               "first_shape_start_up_s": rows[0]["first_s"] - rows[0]["again_s"]}
    # Over the whole collection: the tracing measured here, paid once per process, against every
    # image's extraction. Exact when the timed images cover every shape of the collection; else a
    # lower bound (more shapes may trace more, though reduce_retracing soon stops tracing at all).
    collection = input_shapes(folder, args.max_side)
    summary.update({"collection_images": len(collection), "collection_distinct_shapes": len(set(collection)),
                    "every_collection_shape_timed": set(collection) <= {tuple(r["input_shape"]) for r in rows},
                    "share_of_collection_extraction": summary["tracing_s_after_the_first_shape"]
                    / (len(collection) * again / len(rows))})
    meta = {"backend": keras.backend.backend(), "cpu": machine.cpu_name(), "cpu_flags": machine.cpu_flags(),
            "method": args.method, "weights": args.weights, "max_side": args.max_side, "dtype": args.dtype,
            "images_from": str(folder)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, json.dumps({"meta": meta, "summary": summary, "per_image": rows}, indent=1).encode())
    table = "\n".join(["| metric | value |", "|---|---|", *(f"| {k} | {v:.3f} |" if isinstance(v, float) else
                                                            f"| {k} | {v} |" for k, v in summary.items())])
    md = (f"# Tracing cost per new input shape ({meta['backend']}, {meta['cpu']}, flags {' '.join(meta['cpu_flags'])})\n\n"
          f"`{' '.join(['benchmarks/retracing.py', *sys.argv[1:]])}`: {args.method}, {args.weights} weights, "
          f"{args.dtype}, max side {args.max_side}.\n\n{table}\n")
    atomic_write_bytes(out.with_suffix(".md"), md.encode())
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
