#!/usr/bin/env python3
"""Peak memory and time of ``dasr merge`` over many synthetic shard stores.

Writes ``--shards`` shard stores of ``--images`` images each (shard ``i/n`` of an interleaved
list, as ``dasr extract --shard i/n`` and ``--engine ray`` make them), with 3 to 11 random regions
per image (7 on average, the paper's 7,014,819 regions for 1M images) and ``--dim``-dimensional
random features, through the store's own writer of final files (:func:`dasr.store.format.write_store`).
Then merges them in a fresh child process (``dasr.store.merge.merge_store_files``, what
``dasr merge`` runs) and reads the child's peak resident set size with ``os.wait4``
(``ru_maxrss``); the same child without the merge gives the baseline (Python, numpy, h5py).
The merged store is checked: every image once, in list order, region counts and a sample of
rows equal to their shard's.

Usage::

    python benchmarks/merge_memory.py [--shards 200] [--images 5000] [--dim 16]
                                      [--work DIR] [--out reports/scale-out/merge-memory.md]

Prints the Markdown report and writes it to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from dasr.store.assemble import select, write_store  # noqa: E402
from dasr.store.format import Source  # noqa: E402

CHILD = r"""
import sys, time
from pathlib import Path
sys.path.insert(0, {src!r})
from dasr.store.merge import merge_store_files
inputs = sorted(Path({folder!r}).glob("shard-*.h5"))
if {merge!r}:
    start = time.perf_counter()
    merged = merge_store_files(inputs, Path({out!r}))
    print(merged.images, merged.regions, time.perf_counter() - start)
else:
    print(0, 0, 0.0)
"""


class SyntheticShard(Source):
    """One shard's records, made up in memory (what :func:`write_store` copies from)."""

    def __init__(self, shard: int, shards: int, images: int, dim: int, rng: np.random.Generator) -> None:
        self.name = f"synthetic shard {shard}/{shards}"
        self.orders = np.arange(shard, shard + shards * images, shards, dtype=np.int64)
        self.images = [f"img{o:08d}.jpg" for o in self.orders]
        self.sizes = np.tile(np.array([[640, 480]], np.int32), (images, 1))
        counts = rng.integers(3, 12, images)
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        rows = int(self.offsets[-1])
        self.arrays = {
            "boxes": rng.uniform(0, 480, (rows, 4)).astype(np.float32),
            "scores": rng.uniform(0, 1, rows).astype(np.float32),
            "seeds": rng.integers(0, 1000, rows).astype(np.int32),
            "ellipses": rng.uniform(0, 100, (rows, 5)).astype(np.float32),
            "features": rng.standard_normal((rows, dim)).astype(np.float32),
        }
        self.schema = {k: (v.dtype, v.shape[1:]) for k, v in self.arrays.items()}
        # The per-image file identity of the store format: not recorded, as in stores written before it.
        self.file_sizes = np.full(images, -1, np.int64)
        self.sha256s = np.zeros(images, "S64")

    def rows(self, key: str) -> np.ndarray:
        return self.arrays[key]


def write_shards(folder: Path, shards: int, images: int, dim: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(shards):
        source = SyntheticShard(i, shards, images, dim, rng)
        config = {"method": "synthetic", "dim": dim, "shard": f"{i}/{shards}"}
        write_store(folder / f"shard-{i:05d}.h5", [source], select([source], "error"), config, str(folder), "float32")


def run_child(folder: Path, out: Path, merge: bool) -> tuple[float, list[str]]:
    """(peak RSS in MiB, printed fields) of a fresh child that merges (or not)."""
    code = CHILD.format(src=str(REPO / "src"), folder=str(folder), out=str(out), merge=merge)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    stdout = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"merge child failed with status {status}")
    return usage.ru_maxrss / 1024, stdout.split()


def run_cli(args: list[str]) -> float:
    """Peak RSS in MiB of a fresh ``python -m dasr.cli ARGS`` process."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "dasr.cli", *args], stdout=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"dasr {' '.join(args[:1])} failed with status {status}")
    return usage.ru_maxrss / 1024


def check(folder: Path, out: Path, shards: int, images: int) -> None:
    """Every image once, in list order; counts and two shards' rows equal to the shard's."""
    import h5py

    with h5py.File(out, "r") as f:
        orders = f["orders"][()]
        assert np.array_equal(orders, np.arange(shards * images)), "orders are the list order"
        offsets = f["offsets"][()]
        for i in (0, shards - 1):
            with h5py.File(folder / f"shard-{i:05d}.h5", "r") as s:
                s_off = s["offsets"][()]
                for k in (0, images // 2, images - 1):
                    dst = i + k * shards
                    a = f["regions/features"][offsets[dst]:offsets[dst + 1]]
                    b = s["regions/features"][s_off[k]:s_off[k + 1]]
                    assert np.array_equal(a, b), (i, k)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=200)
    parser.add_argument("--images", type=int, default=5000, help="images per shard")
    parser.add_argument("--dim", type=int, default=16, help="feature dimension")
    parser.add_argument("--work", default=None, help="folder for the shards (default: a temporary one)")
    parser.add_argument("--out", default=str(REPO / "reports/scale-out/merge-memory.md"))
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="dasr-merge-"))
    folder, out = work / "shards", work / "merged.h5"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        start = time.perf_counter()
        write_shards(folder, args.shards, args.images, args.dim)
        gen = time.perf_counter() - start
        base_rss, _ = run_child(folder, out, merge=False)
        rss, (n_images, n_regions, seconds) = run_child(folder, out, merge=True)
        check(folder, out, args.shards, args.images)
        cli_out = work / "merged-cli.h5"
        start = time.perf_counter()
        cli_rss = run_cli(["merge", *map(str, sorted(folder.glob("shard-*.h5"))), "--out", str(cli_out)])
        cli_seconds = time.perf_counter() - start
        cli_base = run_cli(["--version"])
        shard_bytes = sum(p.stat().st_size for p in folder.iterdir())
        out_bytes = out.stat().st_size
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    verdict = "meets" if rss <= 1024 else "misses"
    lines = [
        "# Merge memory: `dasr merge` over many shard stores",
        "",
        f"Command: `python benchmarks/merge_memory.py --shards {args.shards} --images {args.images} "
        f"--dim {args.dim}`",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "",
        f"{args.shards} shard stores of {args.images} images (3-11 regions each, {args.dim}-dim float32 "
        f"features, boxes, scores, seeds, ellipses), {shard_bytes / 2**20:.0f} MiB in all, written in "
        f"{gen:.0f} s; merged by `merge_store_files` (what `dasr merge` runs) in a fresh process.",
        "",
        "| images | regions | merge time (s) | peak RSS (MiB) | baseline RSS (MiB) | merged file (MiB) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {int(n_images)} | {int(n_regions)} | {float(seconds):.1f} | {rss:.0f} | {base_rss:.0f} | "
        f"{out_bytes / 2**20:.0f} |",
        f"| the `dasr merge` command, same shards | | {cli_seconds:.1f} (whole process) | {cli_rss:.0f} | "
        f"{cli_base:.0f} (`dasr --version`) | |",
        "",
        f"Target: peak RSS <= 1 GB: the run {verdict} it. The baseline is the same child process "
        "without the merge (Python, numpy, h5py and the dasr.store imports). The merged store was "
        "checked: every image once in list order, and sampled rows equal to their shard's.",
        "",
        f"The `dasr merge` command's process holds {cli_base:.0f} MiB before any work (`dasr --version`: "
        f"the command line imports no network; TensorFlow and Keras are imported by the commands that "
        f"run one); the merge adds {cli_rss - cli_base:.0f} MiB to it.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
