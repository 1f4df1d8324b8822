"""Shared pieces of the search-page tests: one tiny random network, tiny stores written by hand.

Not a test module.  The stores hold random features of the network's feature dimension and
boxes chosen here, under the network's configuration, so that :class:`SearchEngine` describes
queries with the same (random, 64-pixel) network; nothing needs the real weights.
"""

from __future__ import annotations

import csv
import functools
import os
from pathlib import Path

import numpy as np
from PIL import Image

from conftest import textured_image
from dasr.features.extractor import Extractor
from dasr.features.spec import ExtractorSpec
from dasr.regions import RegionConfig
from dasr.search import SearchIndex
from dasr.serve import SearchEngine
from dasr.store import StoreWriter

MAX_SIDE = 64
IMAGE_SIZE = (128, 96)  # width, height: 64x48 network pixels, a feature cell is 32 of them
FEATURE_DIM = 2048


@functools.lru_cache(maxsize=1)
def tiny_extractor() -> Extractor:
    """One random 64-pixel DASR* network for every test of the folder (it keeps no state
    between images; building and tracing it costs seconds)."""
    return ExtractorSpec(method="dasr-star", weights="random", region=RegionConfig(max_side=MAX_SIDE)).build()


def write_images(folder: Path, count: int, seed: int = 0, prefix: str = "img") -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = []
    for i in range(count):
        name = f"{prefix}{i:02d}.png"
        Image.fromarray(textured_image(rng, *IMAGE_SIZE)).save(folder / name)
        names.append(name)
    return names


def region_boxes(i: int) -> np.ndarray:
    """Image i's regions: i % 3 + 1 boxes inside the 128x96 image (a distinct set per image)."""
    rng = np.random.default_rng(100 + i)
    n = i % 3 + 1
    x1 = rng.uniform(0, 60, n)
    y1 = rng.uniform(0, 40, n)
    return np.stack([x1, y1, x1 + rng.uniform(30, 68, n), y1 + rng.uniform(30, 56, n)], 1).astype(np.float32)


def write_store(path: Path, root: Path, names: list[str], extractor: Extractor, seed: int = 0) -> Path:
    """A store of ``names`` (relative to ``root``) with random features and :func:`region_boxes`."""
    rng = np.random.default_rng(seed)
    with StoreWriter(path, extractor.config(), os.fspath(root)) as writer:
        for i, name in enumerate(names):
            boxes = region_boxes(i)
            writer.add(name, i, IMAGE_SIZE, {
                "boxes": boxes, "scores": rng.uniform(0, 1, len(boxes)).astype(np.float32),
                "features": rng.standard_normal((len(boxes), FEATURE_DIM)).astype(np.float32)})
    return path


def engine_for(store: Path, extractor: Extractor, **limits) -> SearchEngine:
    index, whitening = SearchIndex.open(store, "none")
    return SearchEngine(index, whitening, extractor, **limits)


def write_instance_track(folder: Path, names: list[str], instances: dict[str, list[int]],
                         query_names: dict[str, str]) -> None:
    """An instance-track style benchmark over ``names``: one query image per instance (in
    ``folder``, not indexed) whose positives are the listed database positions."""
    rows = []
    for inst, query in query_names.items():
        rows.append([query, inst, "query", *IMAGE_SIZE, 10, 10, 90, 80])
    for inst, members in instances.items():
        for i in members:
            b = region_boxes(i)[0]
            rows.append([names[i], inst, "reference", *IMAGE_SIZE, *(round(float(v), 1) for v in b)])
    with open(folder / "annotations.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "instance", "role", "width", "height", "x1", "y1", "x2", "y2"])
        w.writerows(rows)
    with open(folder / "gt.txt", "w") as f:
        for inst, query in query_names.items():
            refs = [names[i] for i in instances[inst]]
            f.write(" ".join([query, str(len(refs)), *refs]) + "\n")
