#!/usr/bin/env python3
"""Peak memory of decoding the largest legal images, each measured in a fresh child process.

Every case is a file just below the pixel guard (``dasr.io.images.MAX_PIXELS``), built by a
child process of its own, then decoded by another child that only imports ``dasr.io.images``
and calls ``load_image`` (or, for the ``prefetch`` cases, runs the extraction's decode pool
``dasr.store.extract.prefetch`` with its two threads over several such files). The peak
resident set size of the decoding child is read with ``os.wait4`` (``ru_maxrss``), and the
same child run without decoding anything gives the baseline (Python, numpy, OpenCV, Pillow).

Usage::

    python benchmarks/decode_memory.py [--side 13000] [--cases png-rgba,jpeg-rgb,...]
                                       [--out reports/robustness/decode-memory.md]

Prints the Markdown table and writes it (with the command and the machine) to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# name -> (file name, Pillow mode of the array written, save keyword arguments)
CASES: dict[str, tuple[str, str, dict]] = {
    "png-rgba": ("big.png", "RGBA", {"compress_level": 1}),
    "png-rgb": ("big-rgb.png", "RGB", {"compress_level": 1}),
    "png-gray16": ("big16.png", "I;16", {"compress_level": 1}),
    "png-palette-trns": ("bigp.png", "P", {"compress_level": 1, "transparency": 0}),
    "jpeg-rgb": ("big.jpg", "RGB", {"quality": 50}),
    "jpeg-cmyk": ("big-cmyk.jpg", "CMYK", {"quality": 50}),
    "webp-rgba": ("big.webp", "RGBA", {"quality": 10, "method": 0}),
    "webp-rgba-9000": ("mid.webp", "RGBA", {"quality": 10, "method": 0}),
    "tiff-float": ("big.tif", "F", {"compression": "tiff_deflate"}),
    "gif": ("big.gif", "P", {}),
}
PREFETCH_CASES = {"prefetch-4x-png-rgba": ("png-rgba", 4)}
# Cases of another side than --side (a WebP of 13000 x 13000 is over the decode budget).
SIDES = {"webp-rgba-9000": 9000}

_MAKE = r"""
import sys
import numpy as np
from PIL import Image
path, mode, side, kwargs = sys.argv[1], sys.argv[2], int(sys.argv[3]), eval(sys.argv[4])
rng = np.random.default_rng(0)
tile = rng.integers(0, 256, (64, 64, 4), dtype=np.uint8)
reps = (side + 63) // 64
if mode == "I;16":
    plane = np.tile(tile[..., 0].astype(np.uint16) * 257, (reps, reps))[:side, :side]
    img = Image.fromarray(plane)
elif mode == "F":
    plane = np.tile(tile[..., 0].astype(np.float32) / 255.0, (reps, reps))[:side, :side]
    img = Image.fromarray(plane, "F")
elif mode == "P":
    img = Image.fromarray(np.tile(tile[..., 0] // 2, (reps, reps))[:side, :side], "L").convert("P")
else:
    bands = len(mode)
    arr = np.tile(tile[..., :min(bands, 4)], (reps, reps, 1))[:side, :side]
    img = Image.fromarray(arr, mode if mode != "CMYK" else "RGBA")
    if mode == "CMYK":
        img = Image.frombytes("CMYK", img.size, img.tobytes())
img.save(path, **kwargs)
"""

_DECODE = r"""
import sys, time
from pathlib import Path
import numpy as np
from dasr.io.images import load_image, resize_long_side
kind, paths = sys.argv[1], sys.argv[2:]
t = time.perf_counter()
if kind == "baseline":
    pass
elif kind == "baseline-prefetch":
    from dasr.store.extract import prefetch
elif kind == "load":
    from dasr.io.images import ImageError
    try:
        print("result", "decoded", load_image(paths[0]).shape)
    except ImageError as e:
        print("result", "refused:", e.reason)
else:
    from dasr.store.extract import prefetch
    root = Path(paths[0]).parent
    items = [(i, Path(p).name) for i, p in enumerate(paths)]
    for order, rel, decoded, reason in prefetch(root, items):
        assert decoded is not None or reason, rel
        small = resize_long_side(decoded.pixels, 512)[0] if decoded is not None else None
        print("decoded" if decoded is not None else "refused", rel, decoded.pixels.shape if decoded is not None else reason)
        decoded = small = None
print("seconds", round(time.perf_counter() - t, 2))
"""


def _run(args: list[str]) -> tuple[int, float, str]:
    """Runs a child, returns (peak RSS in bytes, wall seconds, stdout+stderr)."""
    t = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"child failed ({proc.returncode}): {' '.join(args)}\n{out}")
    return usage.ru_maxrss * 1024, time.perf_counter() - t, out


def main(argv: list[str] | None = None) -> int:
    """Builds the files, measures every case, prints and writes the table.

    Args:
        argv: command-line arguments (default ``sys.argv[1:]``).

    Returns:
        The exit status (0).
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", type=int, default=13000, help="width = height of every file")
    parser.add_argument("--cases", default=",".join([*CASES, *PREFETCH_CASES]))
    parser.add_argument("--out", type=Path, default=Path("reports/robustness/decode-memory.md"))
    args = parser.parse_args(argv)
    wanted = args.cases.split(",")
    unknown = [c for c in wanted if c not in CASES and c not in PREFETCH_CASES]
    if unknown:
        parser.error(f"unknown cases {unknown}; known: {[*CASES, *PREFETCH_CASES]}")
    py = sys.executable
    rows = []
    with tempfile.TemporaryDirectory(prefix="dasr-decode-memory-") as tmp:
        base_rss, _, _ = _run([py, "-c", _DECODE, "baseline"])
        # The extraction module imports the network's framework: its own baseline.
        prefetch_base_rss = _run([py, "-c", _DECODE, "baseline-prefetch"])[0] if any(
            c in PREFETCH_CASES for c in wanted) else base_rss
        made: dict[str, Path] = {}

        def make(case: str) -> Path:
            if case not in made:
                name, mode, kwargs = CASES[case]
                path = Path(tmp) / name
                _run([py, "-c", _MAKE, str(path), mode, str(SIDES.get(case, args.side)), repr(kwargs)])
                made[case] = path
            return made[case]

        for case in wanted:
            if case in CASES:
                path = make(case)
                rss, wall, out = _run([py, "-c", _DECODE, "load", str(path)])
                files, size, base = 1, path.stat().st_size, base_rss
                result = next(line for line in out.splitlines() if line.startswith("result ")).split(" ", 1)[1]
            else:
                source, copies = PREFETCH_CASES[case]
                first = make(source)
                paths = [first]
                for k in range(1, copies):
                    link = Path(tmp) / f"copy{k}-{first.name}"
                    if not link.exists():
                        os.link(first, link)
                    paths.append(link)
                rss, wall, out = _run([py, "-c", _DECODE, "prefetch", *map(str, paths)])
                files, size, base = copies, first.stat().st_size, prefetch_base_rss
                result = f"{sum(1 for line in out.splitlines() if line.startswith('decoded '))} decoded"
            side = SIDES.get(case, args.side)
            row = (case, side, files, size, rss, rss - base, wall, result)
            print(f"{case}: {side} x {side}, file {size / 1e6:.1f} MB x{files}, peak RSS {rss / 2**20:.0f} MiB "
                  f"(+{(rss - base) / 2**20:.0f} MiB over the baseline), {wall:.1f} s, {result}", flush=True)
            rows.append(row)
    megapixels = args.side * args.side / 1e6
    lines = [
        "# Decode memory of the largest legal images",
        "",
        f"Written by `python benchmarks/decode_memory.py --side {args.side} --cases {args.cases}`"
        f" on {platform.machine()} Linux, Python {platform.python_version()}, {os.cpu_count()} CPUs.",
        f"Each file is {args.side} x {args.side} = {megapixels:.0f} megapixels unless its row says"
        " otherwise (the pixel guard is 179 megapixels). Peak RSS of a fresh child process (`os.wait4` `ru_maxrss`); the"
        f" baseline child (imports only) peaks at {base_rss / 2**20:.0f} MiB"
        + (f", {prefetch_base_rss / 2**20:.0f} MiB with `dasr.store.extract` (the prefetch cases' baseline)"
           if prefetch_base_rss != base_rss else "") + ".",
        "",
        "| case | side | files | file size (MB) | peak RSS (MiB) | over baseline (MiB) | bytes per pixel | wall (s) | result |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for case, side, files, size, rss, extra, wall, result in rows:
        lines.append(f"| {case} | {side} | {files} | {size / 1e6:.1f} | {rss / 2**20:.0f} | {extra / 2**20:.0f} | "
                     f"{extra / (side * side):.2f} | {wall:.1f} | {result} |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
