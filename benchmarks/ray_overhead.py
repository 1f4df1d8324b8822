#!/usr/bin/env python3
"""What ``dasr extract --engine ray`` costs over the single-process engine, on the same images.

Makes ``--n`` textured images (seeded), then, in this order:

1. the single-process engine: builds the extractor (``ExtractorSpec.build``) and extracts the
   images with :func:`dasr.store.extract.extract_collection`, timed apart;
2. Ray's start-up: ``ray.init`` on this machine, as the engine starts it (no dashboard);
3. the Ray engine: :func:`dasr.distributed.ray_engine.extract_on_ray` on the same images and
   the same Ray session, ``--workers`` shard workers of ``--shard-size`` images; its wall time
   holds the actors' start (importing TensorFlow and building the network in each), the shards
   and the merge.  The per-shard extraction times come from the workers.

Both stores are compared array by array (they must be equal bit for bit).  The random network
(``--weights random``) costs the same as the ImageNet one; the times are of this machine.

Usage::

    python benchmarks/ray_overhead.py [--n 20] [--max-side 128] [--workers 1] [--shard-size 5]
                                      [--out reports/scale-out/ray-overhead.md]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from dasr.distributed.pool import RayOptions, start_ray  # noqa: E402
from dasr.distributed.ray_engine import extract_on_ray  # noqa: E402
from dasr.features.spec import ExtractorSpec  # noqa: E402
from dasr.store import RegionStore  # noqa: E402
from dasr.store.extract import extract_collection  # noqa: E402


def make_images(folder: Path, n: int) -> None:
    """``n`` noisy images with a few coloured ellipses, 320x240 and 240x320."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        w, h = (320, 240) if i % 2 == 0 else (240, 320)
        img = rng.normal(120, 25, (h, w, 3))
        yy, xx = np.mgrid[:h, :w]
        for _ in range(3):
            cx, cy, rx, ry = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(20, 80), rng.uniform(20, 80)
            img[((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1] = rng.uniform(0, 255, 3)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"img{i:03d}.jpg", quality=90)


def same_store(a: RegionStore, b: RegionStore) -> bool:
    return (a.images == b.images and np.array_equal(a.offsets, b.offsets)
            and all(np.array_equal(a.arrays[k], b.arrays[k]) for k in a.arrays) and sorted(a.arrays) == sorted(b.arrays))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--max-side", type=int, default=128)
    parser.add_argument("--max-seeds", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--shard-size", type=int, default=5)
    parser.add_argument("--out", default=str(REPO / "reports/scale-out/ray-overhead.md"))
    args = parser.parse_args()
    logging.getLogger("ray").setLevel(logging.ERROR)
    spec = ExtractorSpec.from_options(weights="random", max_side=args.max_side, max_seeds=args.max_seeds,
                                      backprop_dtype="float32")
    work = Path(tempfile.mkdtemp(prefix="dasr-ray-overhead-"))
    images = work / "images"
    make_images(images, args.n)

    start = time.perf_counter()
    extractor = spec.build()
    build = time.perf_counter() - start
    start = time.perf_counter()
    extract_collection(extractor, images, work / "single.h5", progress=False)
    single = time.perf_counter() - start

    options = RayOptions(workers=args.workers, cpus_per_worker=min(1.0, (os.cpu_count() or 1) / args.workers))
    start = time.perf_counter()
    ray, _ = start_ray(options)
    startup = time.perf_counter() - start
    start = time.perf_counter()
    summary = extract_on_ray(spec, images, work / "ray.h5", shard_size=args.shard_size, options=options,
                             progress=False)
    total = time.perf_counter() - start
    ray.shutdown()
    assert not summary.failed, [r.error for r in summary.failed]
    shards = sum(r.seconds for r in summary.results)
    equal = same_store(RegionStore.open(work / "single.h5"), RegionStore.open(work / "ray.h5"))
    per_single = single / args.n
    per_shards = shards / args.n / args.workers  # per image and worker
    fixed = total - shards / args.workers
    lines = [
        "# Ray overhead: `dasr extract --engine ray` against the single-process engine",
        "",
        f"Command: `python benchmarks/ray_overhead.py --n {args.n} --max-side {args.max_side} --max-seeds "
        f"{args.max_seeds} --workers {args.workers} --shard-size {args.shard_size}`",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs (shared with other work while it ran), "
        f"Python {platform.python_version()}; DASR* on the random ResNet-50, {args.n} images of 320x240, "
        f"{summary.plan.shards} shards on {args.workers} worker(s).",
        "",
        "| step | seconds |",
        "| --- | ---: |",
        f"| Ray start-up (`ray.init`, local, no dashboard) | {startup:.1f} |",
        f"| single process: build the extractor | {build:.1f} |",
        f"| single process: extract {args.n} images | {single:.1f} |",
        f"| Ray engine: whole run (actors' start, {summary.plan.shards} shards, merge) | {total:.1f} |",
        f"| Ray engine: inside the workers' shards (sum) | {shards:.1f} |",
        f"| Ray engine: fixed cost outside the shards (actors' start, scheduling, merge) | {fixed:.1f} |",
        "",
        f"Per image: single process {per_single:.2f} s, inside a Ray worker {per_shards:.2f} s "
        f"({per_shards - per_single:+.2f} s, {100 * (per_shards / per_single - 1):+.0f} %); with every fixed "
        f"cost spread over the {args.n} images, the Ray run costs {(startup + total) / args.n:.2f} s per image "
        f"against {(build + single) / args.n:.2f} s. Stores equal bit for bit: {'yes' if equal else 'NO'}.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
