"""Tests for dasr.store: round trips, resume after kill -9, locking, sharding and merging."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from dasr.store import (
    FORMAT_NAME,
    RegionStore,
    StoreConfigError,
    StoreError,
    StoreLockedError,
    StoreWriter,
    lock_path,
    merge_stores,
    parse_shard,
    parts_path,
    read_skipped,
    shard_of,
    skipped_path,
)

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


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> RegionStore:
    """Uninterrupted single run over all items, added in input order."""
    path = tmp_path_factory.mktemp("ref") / "ref.h5"
    write_items(path, list(range(len(ITEMS))))
    return RegionStore.open(path)


# ------------------------------------------------------------------ round trip


def test_round_trip_with_empty_images(tmp_path):
    path = tmp_path / "out" / "regions.h5"
    order = [4, 1, 6, 0, 3, 5, 2]  # added out of order: the store sorts by order
    write_items(path, order, chunk_images=3)
    store = RegionStore.open(path, expected_config=CONFIG)

    assert len(store) == len(ITEMS)
    assert store.images == ITEMS
    assert store.root == ROOT
    assert store.config == CONFIG
    np.testing.assert_array_equal(store.orders, np.arange(len(ITEMS)))
    assert store.sizes.dtype == np.int32 and store.sizes.tolist() == [list(size_of(i)) for i in range(len(ITEMS))]
    np.testing.assert_array_equal(store.offsets, np.concatenate([[0], np.cumsum(COUNTS)]))
    assert store.region_image.dtype == np.int32
    np.testing.assert_array_equal(store.region_image, np.repeat(np.arange(len(ITEMS)), COUNTS))
    assert store.arrays["scores"].dtype == np.float32  # float64 input stored as float32
    for i in range(len(ITEMS)):
        got, want = store.regions_of(i), make_regions(i)
        assert got["boxes"].shape == (COUNTS[i], 4) and got["features"].shape == (COUNTS[i], DIM)
        np.testing.assert_array_equal(got["boxes"], want["boxes"])
        np.testing.assert_array_equal(got["features"], want["features"])
        np.testing.assert_array_equal(got["scores"], want["scores"].astype(np.float32))
    assert store.index(ITEMS[3]) == 3
    with pytest.raises(IndexError):
        store.regions_of(len(ITEMS))
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == FORMAT_NAME and "regions" in f
    assert_clean(path.parent)
    assert not skipped_path(path).exists()


def test_float16_features(tmp_path):
    path = tmp_path / "half.h5"
    write_items(path, [0, 2, 3], feature_dtype="float16")
    with h5py.File(path, "r") as f:
        assert f["regions/features"].dtype == np.float16
        assert f["regions/boxes"].dtype == np.float32
    store = RegionStore.open(path)
    assert store.feature_dtype == "float16"
    assert store.arrays["features"].dtype == np.float32
    want = np.concatenate([make_regions(i)["features"] for i in (0, 2, 3)])
    np.testing.assert_array_equal(store.arrays["features"], want.astype(np.float16).astype(np.float32))
    # Resuming with another feature dtype would mix precisions.
    with pytest.raises(StoreConfigError, match="feature_dtype: stored=\"float16\" requested=\"float32\""):
        StoreWriter(path, CONFIG, ROOT)


def test_empty_store(tmp_path):
    path = tmp_path / "empty.h5"
    StoreWriter(path, CONFIG, ROOT).close()
    store = RegionStore.open(path)
    assert len(store) == 0 and store.arrays == {} and store.offsets.tolist() == [0]


def test_add_validation(tmp_path):
    with StoreWriter(tmp_path / "v.h5", CONFIG, ROOT) as writer:
        writer.add(ITEMS[0], 0, size_of(0), make_regions(0))
        with pytest.raises(ValueError, match="already stored"):
            writer.add(ITEMS[0], 0, size_of(0), make_regions(0))
        bad_keys = {k: v for k, v in make_regions(2).items() if k != "scores"}
        with pytest.raises(ValueError, match=ITEMS[2]):
            writer.add(ITEMS[2], 2, size_of(2), bad_keys)
        wrong_dim = dict(make_regions(2), features=np.zeros((COUNTS[2], DIM + 1), np.float32))
        with pytest.raises(ValueError, match=ITEMS[2]):
            writer.add(ITEMS[2], 2, size_of(2), wrong_dim)
        ragged = dict(make_regions(2), scores=np.zeros(COUNTS[2] + 1))
        with pytest.raises(ValueError, match="leading dimensions"):
            writer.add(ITEMS[2], 2, size_of(2), ragged)
        with pytest.raises(ValueError, match="order"):
            writer.add(ITEMS[2], -1, size_of(2), make_regions(2))
        with pytest.raises(ValueError, match="relative"):
            writer.add("/abs/path.jpg", 2, size_of(2), make_regions(2))
        # A rejected image is not half-stored: it can still be added correctly.
        writer.add(ITEMS[2], 2, size_of(2), make_regions(2))
    assert RegionStore.open(tmp_path / "v.h5").images == [ITEMS[0], ITEMS[2]]


# ------------------------------------------------------------------ config


def test_config_mismatch_lists_keys(tmp_path):
    path = tmp_path / "c.h5"
    write_items(path, [0, 1], config=dict(CONFIG, shard="0/1", created="2024-01-01"))
    requested = dict(CONFIG, tau=0.6, layer="conv4", shard="3/4", created="2025-02-02")
    with pytest.raises(StoreConfigError) as info:
        RegionStore.open(path, expected_config=requested)
    message = str(info.value)
    assert "tau: stored=0.5 requested=0.6" in message
    assert 'layer: stored="conv5_block3_out" requested="conv4"' in message
    assert "shard" not in message and "created" not in message and "\n" not in message
    # Volatile keys alone never make configurations differ; dasr_version does.
    RegionStore.open(path, expected_config=dict(CONFIG, shard="1/2", created="x"))
    with pytest.raises(StoreConfigError, match="dasr_version: stored=\"0.1.0\" requested=\"0.2.0\""):
        RegionStore.open(path, expected_config=dict(CONFIG, dasr_version="0.2.0"))
    with pytest.raises(StoreConfigError, match="beta: stored=<missing> requested=1"):
        RegionStore.open(path, expected_config=dict(CONFIG, beta=1))


def test_writer_refuses_other_config_and_unlocks(tmp_path):
    path = tmp_path / "w.h5"
    write_items(path, [0])  # completed store
    with pytest.raises(StoreConfigError, match="tau: stored=0.5 requested=0.7"):
        StoreWriter(path, dict(CONFIG, tau=0.7), ROOT)
    writer = StoreWriter(path, CONFIG, ROOT, chunk_images=1)  # lock was released by the failure
    writer.add(ITEMS[1], 1, size_of(1), make_regions(1))
    writer.abort()  # unfinished parts
    with pytest.raises(StoreConfigError, match="tau: stored=0.5 requested=0.7"):
        StoreWriter(path, dict(CONFIG, tau=0.7), ROOT)


# ------------------------------------------------------------------ lock


def test_lock_refuses_second_writer(tmp_path):
    path = tmp_path / "l.h5"
    first = StoreWriter(path, CONFIG, ROOT)
    with pytest.raises(StoreLockedError) as info:
        StoreWriter(path, CONFIG, ROOT)
    assert str(info.value) == f"{path}: another process is writing this store (lock {lock_path(path)})"
    # A second process is refused as well.
    code = f"from dasr.store import *\ntry:\n StoreWriter({str(path)!r}, {CONFIG!r}, '/')\nexcept StoreLockedError:\n raise SystemExit(3)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 3
    with pytest.raises(StoreLockedError):
        merge_stores([path], path)
    first.close()
    StoreWriter(path, CONFIG, ROOT).close()


# ------------------------------------------------------------------ kill -9 and resume

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, sys.argv[1])
    import test_store as t
    from dasr import store

    out, mode, kill_after = sys.argv[2], sys.argv[3], int(sys.argv[4])

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    if mode == "chunk_rename":  # chunk file fully written, killed before its rename
        fsync = store._fsync_file
        seen = []
        def fsync_then_die(path):
            fsync(path)
            seen.append(path)
            if len(seen) == kill_after:
                die()
        store._fsync_file = fsync_then_die
    elif mode == "final_rename":  # merged tmp store written, killed before os.replace
        store._fsync_file = lambda path: die() if path.name.startswith(".store.h5.tmp-") else None
    elif mode == "after_final":  # final store in place, parts not yet deleted
        store._write_skipped = die
    elif mode == "parts_removal":  # parts renamed away, killed while deleting them
        store._remove = lambda path: die() if ".parts.tmp-" in path.name else None

    writer = store.StoreWriter(out, t.CONFIG, t.ROOT, chunk_images=2)
    for k in range(len(t.ITEMS)):
        if mode == "add" and k == kill_after:
            die()
        writer.add(t.ITEMS[k], k, t.size_of(k), t.make_regions(k))
    writer.close()
    sys.exit(5)  # the kill point was never reached
    """
)


def left_state(folder: Path) -> tuple[bool, bool, list[str]]:
    """(final store exists, parts folder exists, temporaries) after a kill."""
    parts = folder / "store.h5.parts"
    tmps = [p.name.split(".tmp-")[0] for p in [*folder.iterdir(), *(parts.iterdir() if parts.is_dir() else [])]]
    return (folder / "store.h5").exists(), parts.is_dir(), sorted(t for t in tmps if t.startswith("."))


@pytest.mark.parametrize(
    ("mode", "kill_after", "expected_done", "state"),
    [
        ("add", 0, 0, (False, True, [])),
        ("add", 1, 0, (False, True, [])),  # buffered image lost, recomputed
        ("add", 4, 4, (False, True, [])),
        ("add", 5, 4, (False, True, [])),
        ("chunk_rename", 2, 2, (False, True, [".chunk-000002.npz"])),
        ("final_rename", 0, 7, (False, True, [".store.h5"])),
        ("after_final", 0, 7, (True, True, [])),  # records both in the store and in chunks
        ("parts_removal", 0, 7, (True, False, [".store.h5.parts"])),
    ],
)
def test_resume_after_kill(tmp_path, reference, mode, kill_after, expected_done, state):
    out = tmp_path / "store.h5"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc = subprocess.run(
        [sys.executable, str(script), str(Path(__file__).parent), str(out), mode, str(kill_after)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stderr
    script.unlink()
    assert left_state(tmp_path) == state

    writer = StoreWriter(out, CONFIG, ROOT, chunk_images=2)  # no stale lock after kill -9
    assert writer.done == set(ITEMS[:expected_done])
    for k, item in enumerate(ITEMS):
        if item not in writer.done:
            writer.add(item, k, size_of(k), make_regions(k))
    writer.close()

    assert_same_store(RegionStore.open(out), reference)
    assert_clean(tmp_path)


def test_reader_never_sees_unfinished_store(tmp_path):
    path = tmp_path / "u.h5"
    writer = StoreWriter(path, CONFIG, ROOT, chunk_images=1)
    writer.add(ITEMS[0], 0, size_of(0), make_regions(0))
    with pytest.raises(StoreError, match="unfinished extraction"):
        RegionStore.open(path)
    writer.close()
    assert RegionStore.open(path).images == [ITEMS[0]]


def test_abort_keeps_parts_for_resume(tmp_path, reference):
    path = tmp_path / "store.h5"
    with pytest.raises(KeyboardInterrupt):
        with StoreWriter(path, CONFIG, ROOT, chunk_images=10) as writer:
            for k in range(3):
                writer.add(ITEMS[k], k, size_of(k), make_regions(k))
            raise KeyboardInterrupt
    assert not path.exists() and parts_path(path).is_dir()
    # Resume, then resume again on the completed store: its images count as done.
    with StoreWriter(path, CONFIG, ROOT) as writer:
        assert writer.done == set(ITEMS[:3])
        # The region layout of the flushed chunks still applies after a resume.
        with pytest.raises(ValueError, match=ITEMS[3]):
            writer.add(ITEMS[3], 3, size_of(3), make_regions(3, dim=DIM + 1))
        for k in (3, 5):
            writer.add(ITEMS[k], k, size_of(k), make_regions(k))
    with StoreWriter(path, CONFIG, ROOT) as writer:
        assert writer.done == {ITEMS[k] for k in (0, 1, 2, 3, 5)}
        for k in (4, 6):
            writer.add(ITEMS[k], k, size_of(k), make_regions(k))
    assert_same_store(RegionStore.open(path), reference)
    assert_clean(tmp_path)


# ------------------------------------------------------------------ skipped


def test_skipped_tsv(tmp_path):
    path = tmp_path / "s.h5"
    with StoreWriter(path, CONFIG, ROOT, chunk_images=2) as writer:
        writer.add(ITEMS[0], 0, size_of(0), make_regions(0))
        writer.skip(ITEMS[1], "cannot identify image file")
        writer.skip(ITEMS[2], "bad\theader\nline")
        with pytest.raises(ValueError, match="already stored"):
            writer.skip(ITEMS[0], "x")
    # Sorted by name; whitespace collapsed so that each image stays one TSV line.
    assert skipped_path(path).read_text() == f"{ITEMS[2]}\tbad header line\n{ITEMS[1]}\tcannot identify image file\n"
    assert RegionStore.open(path).images == [ITEMS[0]]
    # Skipped images are retried; one that succeeds leaves the list.
    with StoreWriter(path, CONFIG, ROOT) as writer:
        assert writer.done == {ITEMS[0]}
        writer.add(ITEMS[2], 2, size_of(2), make_regions(2))
    assert read_skipped(path) == {ITEMS[1]: "cannot identify image file"}
    with StoreWriter(path, CONFIG, ROOT) as writer:
        writer.add(ITEMS[1], 1, size_of(1), make_regions(1))
    assert not skipped_path(path).exists()


def test_non_utf8_names_round_trip(tmp_path):
    name = b"caf\xe9/\xff\xfe.jpg".decode("utf-8", "surrogateescape")
    bad = b"x\xe9.png".decode("utf-8", "surrogateescape")
    root = b"/data/r\xe9".decode("utf-8", "surrogateescape")
    path = tmp_path / "n.h5"
    with StoreWriter(path, CONFIG, root) as writer:
        writer.add(name, 0, size_of(0), make_regions(0))
        writer.add("plain.jpg", 1, size_of(1), make_regions(1))
        writer.skip(bad, "truncated")
    store = RegionStore.open(path)
    assert store.images == [name, "plain.jpg"] and store.root == root
    assert read_skipped(path) == {bad: "truncated"}
    with StoreWriter(path, CONFIG, root) as writer:
        assert writer.done == {name, "plain.jpg"}


# ------------------------------------------------------------------ damaged files


def test_truncated_file(tmp_path):
    path = tmp_path / "t.h5"
    write_items(path, list(range(len(ITEMS))))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(StoreError) as info:
        RegionStore.open(path)
    message = str(info.value)
    assert message.startswith(f"{path}: unreadable HDF5 file (") and "\n" not in message
    with pytest.raises(StoreError):
        StoreWriter(path, CONFIG, ROOT)  # never overwrites what it cannot read


def test_foreign_files(tmp_path):
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(StoreError, match=r"foreign.h5: not a DASR region store \(no 'format' attribute\)$"):
        RegionStore.open(foreign)
    text = tmp_path / "notes.h5"
    text.write_text("hello\n")
    with pytest.raises(StoreError, match="notes.h5: unreadable HDF5 file"):
        RegionStore.open(text)
    with pytest.raises(StoreError, match="no such region store"):
        RegionStore.open(tmp_path / "missing.h5")


# ------------------------------------------------------------------ shards and merge


def test_parse_shard():
    assert parse_shard("2/4") == (2, 4)
    assert parse_shard(" 0/1 ") == (0, 1)
    for text in ["4/4", "1/0", "a/b", "1", "-1/2", "1/2/3", ""]:
        with pytest.raises(ValueError, match="invalid shard"):
            parse_shard(text)


def test_shard_of_partitions_items():
    items = list("abcdefg")
    shards = [shard_of(items, (i, 3)) for i in range(3)]
    assert shards[1] == [(1, "b"), (4, "e")]
    assert sorted(pair for shard in shards for pair in shard) == list(enumerate(items))
    assert shard_of(items, (0, 1)) == list(enumerate(items))
    for bad in [(3, 3), (-1, 2), (0, 0)]:
        with pytest.raises(ValueError, match="invalid shard"):
            shard_of(items, bad)


def test_merge_shards_equals_single_run(tmp_path, reference):
    inputs = []
    for i in range(2):
        path = tmp_path / f"shard{i}" / "store.h5"
        with StoreWriter(path, dict(CONFIG, shard=f"{i}/2"), ROOT, chunk_images=2) as writer:
            for order, item in shard_of(ITEMS, (i, 2)):
                writer.add(item, order, size_of(order), make_regions(order))
            writer.skip(f"broken_{i}.jpg", f"reason {i}")
        inputs.append(path)
    out = tmp_path / "merged.h5"
    merged = merge_stores(inputs, out)
    assert_same_store(merged, reference)
    assert_same_store(RegionStore.open(out, expected_config=CONFIG), reference)
    assert "shard" not in merged.config
    assert read_skipped(out) == {"broken_0.jpg": "reason 0", "broken_1.jpg": "reason 1"}
    assert_clean(tmp_path)


def test_merge_rejects_duplicates_and_config_mismatch(tmp_path):
    a, b, c = tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "c.h5"
    write_items(a, [0, 1])
    write_items(b, [1, 2])
    write_items(c, [3], config=dict(CONFIG, tau=0.9))
    with pytest.raises(StoreError, match=f"{ITEMS[1]}: image stored in both"):
        merge_stores([a, b], tmp_path / "m.h5")
    with pytest.raises(StoreConfigError, match="tau: first=0.5 this=0.9"):
        merge_stores([a, c], tmp_path / "m.h5")
    assert not (tmp_path / "m.h5").exists()
