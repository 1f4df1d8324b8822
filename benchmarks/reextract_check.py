#!/usr/bin/env python3
"""Re-extracts images of a finished store with the current code and compares them bit for bit.

Proof that a change of the code did not change its output: the store was made by an earlier
version (or another machine); the extractor is rebuilt from the store's recorded configuration
(:func:`dasr.features.spec.extractor_for_store`) and every stored array of each checked image
(boxes, scores, seeds, ellipses, features) must come out identical.

Usage::

    python benchmarks/reextract_check.py STORE [STORE ...] [--images N] [--every K]

Prints one line per image and a summary per store; exits 1 if any image differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from dasr.features.spec import extractor_for_store
from dasr.io.images import load_image
from dasr.store import RegionStore
from dasr.store.extract import regions_record


def check_store(path: Path, images: int, every: int) -> tuple[int, int]:
    """(images checked, images that differ) for one store."""
    store = RegionStore.open(path)
    extractor = extractor_for_store(store.config)
    picked = list(range(0, len(store), every))[:images]
    differ = 0
    for i in picked:
        name = store.images[i]
        stored = store.regions_of(i)
        fresh = regions_record(extractor(load_image(Path(store.root) / name)))
        bad = [key for key in stored if key not in fresh or stored[key].shape != fresh[key].shape
               or not np.array_equal(stored[key], fresh[key].astype(stored[key].dtype))]
        differ += bool(bad)
        print(f"{path.name} {name}: {len(stored['boxes'])} regions, "
              f"{'identical' if not bad else 'DIFFERENT: ' + ', '.join(bad)}", flush=True)
    return len(picked), differ


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("stores", nargs="+", type=Path)
    p.add_argument("--images", type=int, default=5, help="images to re-extract per store")
    p.add_argument("--every", type=int, default=1, help="take every k-th image of the store")
    args = p.parse_args(argv)
    total_differ = 0
    for path in args.stores:
        checked, differ = check_store(path, args.images, args.every)
        total_differ += differ
        config = RegionStore.open(path).config
        print(f"{path}: method {config['method']}, {checked} images re-extracted, {differ} differ")
    return 1 if total_differ else 0


if __name__ == "__main__":
    sys.exit(main())
