"""The streaming merge of shard stores (``merge_store_files``): block-wise copies, no loading."""

from __future__ import annotations

import numpy as np
import pytest

from dasr.store import RegionStore, merge_stores
from dasr.store import assemble
from dasr.store.assemble import select, write_store
from dasr.store.format import Source
from dasr.store.merge import MergeSummary, merge_store_files

pytestmark = pytest.mark.timeout(120)


class Synthetic(Source):
    """Shard ``shard/shards`` of an interleaved list of ``images`` images with 0-5 regions each."""

    def __init__(self, shard: int, shards: int, images: int, seed: int, count_hi: int = 6) -> None:
        rng = np.random.default_rng(seed)
        self.name = f"synthetic {shard}/{shards}"
        self.orders = np.arange(shard, images, shards, dtype=np.int64)
        n = len(self.orders)
        self.images = [f"img{o:05d}.jpg" for o in self.orders]
        self.sizes = rng.integers(1, 500, (n, 2)).astype(np.int32)
        self.offsets = np.concatenate([[0], np.cumsum(rng.integers(0, count_hi, n))]).astype(np.int64)
        rows = int(self.offsets[-1])
        self.arrays = {"boxes": rng.uniform(0, 9, (rows, 4)).astype(np.float32),
                       "seeds": rng.integers(0, 999, rows).astype(np.int32),
                       "features": rng.standard_normal((rows, 8)).astype(np.float32)}
        self.schema = {k: (v.dtype, v.shape[1:]) for k, v in self.arrays.items()}
        for attr, annotation in Source.__annotations__.items():  # per-image datasets of newer formats
            if not hasattr(self, attr) and "ndarray" in str(annotation):
                template = {"file_sizes": np.full(n, -1, np.int64), "sha256s": np.zeros(n, "S64")}
                setattr(self, attr, template.get(attr, np.zeros(n)))

    def rows(self, key):
        return self.arrays[key]


def shard_stores(tmp_path, shards=5, images=103):
    paths = []
    for i in range(shards):
        source = Synthetic(i, shards, images, seed=i)
        path = tmp_path / f"shard-{i}.h5"
        write_store(path, [source], select([source], "error"), {"m": "x", "shard": f"{i}/{shards}"},
                    str(tmp_path), "float32")
        paths.append(path)
    return paths


def expected_rows(paths):
    """Every image's rows, by name, read from the shard stores."""
    rows = {}
    for p in paths:
        store = RegionStore.open(p)
        for i, name in enumerate(store.images):
            rows[name] = {k: v.copy() for k, v in store.regions_of(i).items()}
    return rows


@pytest.mark.parametrize("block_bytes", [1, 100, 1000, 64 * 2**20])
def test_the_merge_copies_every_row_whatever_the_block(tmp_path, monkeypatch, block_bytes):
    # One-row blocks, blocks of a few images, and one block: the same store.
    monkeypatch.setattr(assemble, "COPY_BLOCK_BYTES", block_bytes)
    paths = shard_stores(tmp_path)
    summary = merge_store_files(paths, tmp_path / "merged.h5")
    assert isinstance(summary, MergeSummary)
    merged = RegionStore.open(tmp_path / "merged.h5")
    assert summary.images == len(merged) == 103 and summary.regions == len(merged.region_image)
    assert merged.images == [f"img{o:05d}.jpg" for o in range(103)]
    rows = expected_rows(paths)
    for i, name in enumerate(merged.images):
        for key, value in merged.regions_of(i).items():
            np.testing.assert_array_equal(value, rows[name][key], err_msg=f"{name} {key}")


def test_spread_sources_are_read_in_bounded_spans(tmp_path, monkeypatch):
    # Two sources whose images alternate in the destination, one block wide: the spans of a
    # source must be cut (the rows between belong to images of another block).
    monkeypatch.setattr(assemble, "COPY_BLOCK_BYTES", 200)
    a, b = Synthetic(0, 2, 60, seed=1), Synthetic(1, 2, 60, seed=2)
    picks = select([a, b], "error")
    write_store(tmp_path / "m.h5", [a, b], picks, {"m": "x"}, str(tmp_path), "float32")
    merged = RegionStore.open(tmp_path / "m.h5")
    for i, name in enumerate(merged.images):
        source = a if int(name[3:8]) % 2 == 0 else b
        k = source.images.index(name)
        lo, hi = source.offsets[k], source.offsets[k + 1]
        np.testing.assert_array_equal(merged.regions_of(i)["features"], source.arrays["features"][lo:hi])


def test_merge_stores_still_returns_the_loaded_store(tmp_path):
    paths = shard_stores(tmp_path, shards=3, images=20)
    store = merge_stores(paths, tmp_path / "m.h5")
    assert isinstance(store, RegionStore) and len(store) == 20
