"""Shared fixtures of the store tests: a tiny deterministic collection of region arrays.

Not a test module (no ``test_`` prefix); the kill -9 child script of
test_store_writer.py imports it by file path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dasr.store import RegionStore, StoreWriter

CONFIG = {"backbone": "resnet50", "weights": "abc123", "layer": "conv5_block3_out", "tau": 0.5, "dasr_version": "0.1.0"}
ROOT = "/data/instre"
# Region counts per image, zeros included: an image without regions is still stored.
COUNTS = [3, 0, 2, 5, 1, 0, 4]
ITEMS = [f"sub{i % 2}/img_{i}.jpg" for i in range(len(COUNTS))]
DIM = 8


def make_regions(i: int, dim: int = DIM) -> dict[str, np.ndarray]:
    """Deterministic regions of image i (float64 scores to check the float32 cast)."""
    rng = np.random.default_rng(1000 + i)
    n = COUNTS[i]
    return {
        "boxes": rng.uniform(0, 100, (n, 4)).astype(np.float32),
        "scores": rng.uniform(0, 1, n),
        "features": rng.standard_normal((n, dim)).astype(np.float32),
    }


def size_of(i: int) -> tuple[int, int]:
    return (100 + i, 50 + 2 * i)


def write_items(path: Path, orders: list[int], config: dict | None = None, **kwargs) -> None:
    with StoreWriter(path, config or CONFIG, ROOT, **kwargs) as writer:
        for k in orders:
            writer.add(ITEMS[k], k, size_of(k), make_regions(k))


def assert_same_store(a: RegionStore, b: RegionStore) -> None:
    assert a.images == b.images
    np.testing.assert_array_equal(a.orders, b.orders)
    np.testing.assert_array_equal(a.sizes, b.sizes)
    np.testing.assert_array_equal(a.offsets, b.offsets)
    np.testing.assert_array_equal(a.region_image, b.region_image)
    assert sorted(a.arrays) == sorted(b.arrays)
    for key in a.arrays:
        assert a.arrays[key].dtype == b.arrays[key].dtype, key
        np.testing.assert_array_equal(a.arrays[key], b.arrays[key])


def assert_clean(folder: Path) -> None:
    """No parts folder and no temporaries are left next to a finished store."""
    leftovers = [p.name for p in folder.iterdir() if p.name.endswith(".parts") or ".tmp-" in p.name]
    assert leftovers == []


def write_reference(path: Path) -> RegionStore:
    """Uninterrupted single run over all items, added in input order."""
    write_items(path, list(range(len(ITEMS))))
    return RegionStore.open(path)
