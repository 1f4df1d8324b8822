"""Per-image identity (file size and SHA-256): recorded, carried by every writer path, checked on resume."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from dasr.store import ImageChangedError, RegionStore, StoreWriter, merge_stores, shard_of
from dasr.store.derive import copy_rows, derive_nms_store
from dasr.store.format import H5Source
from dasr.store.identity import check_unchanged, file_identity
from store_helpers import CONFIG, ITEMS, ROOT, make_regions, size_of


def ident(i: int) -> tuple[int, str]:
    """A made-up identity of item i (the writer does not read the files)."""
    return 1000 + i, hashlib.sha256(f"image {i}".encode()).hexdigest()


def write_with_identity(path: Path, orders, config=None, **kwargs) -> None:
    with StoreWriter(path, config or CONFIG, ROOT, **kwargs) as writer:
        for k in orders:
            writer.add(ITEMS[k], k, size_of(k), make_regions(k), identity=ident(k))


def stored_identity(store: RegionStore) -> dict[str, tuple[int, str] | None]:
    return {name: store.identity_of(i) for i, name in enumerate(store.images)}


def test_writer_stores_identity_through_chunks_and_resume(tmp_path):
    out = tmp_path / "s.h5"
    writer = StoreWriter(out, CONFIG, ROOT, chunk_images=2)
    for k in range(3):
        writer.add(ITEMS[k], k, size_of(k), make_regions(k), identity=ident(k))
    writer.abort()  # two images in a chunk, the third flushed by abort
    writer = StoreWriter(out, CONFIG, ROOT)
    assert writer.identity == {ITEMS[k]: ident(k) for k in range(3)}
    for k in range(3, len(ITEMS)):
        writer.add(ITEMS[k], k, size_of(k), make_regions(k), identity=ident(k))
    writer.close()
    assert stored_identity(RegionStore.open(out)) == {ITEMS[k]: ident(k) for k in range(len(ITEMS))}
    with StoreWriter(out, CONFIG, ROOT) as again:  # from the final file
        assert again.identity == {ITEMS[k]: ident(k) for k in range(len(ITEMS))}


def test_add_refuses_a_malformed_identity(tmp_path):
    with StoreWriter(tmp_path / "s.h5", CONFIG, ROOT) as writer:
        for bad in [(-1, "0" * 64), (True, "0" * 64), (5, "0" * 63), (5, "G" * 64), (5, "A" * 64)]:
            with pytest.raises(ValueError, match="identity must be"):
                writer.add(ITEMS[0], 0, size_of(0), make_regions(0), identity=bad)
        writer.add(ITEMS[0], 0, size_of(0), make_regions(0))  # None: not recorded
    assert stored_identity(RegionStore.open(tmp_path / "s.h5")) == {ITEMS[0]: None}


def test_merge_carries_identity_and_equals_the_single_run_bit_for_bit(tmp_path):
    single = tmp_path / "single.h5"
    write_with_identity(single, range(len(ITEMS)))
    inputs = []
    for i in range(2):
        path = tmp_path / f"shard{i}.h5"
        write_with_identity(path, [order for order, _ in shard_of(ITEMS, (i, 2))], dict(CONFIG, shard=f"{i}/2"))
        inputs.append(path)
    merged = merge_stores(inputs, tmp_path / "merged.h5")
    assert stored_identity(merged) == stored_identity(RegionStore.open(single))
    with h5py.File(single) as a, h5py.File(tmp_path / "merged.h5") as b:
        for key in ("file_sizes", "file_sha256"):
            np.testing.assert_array_equal(a[key][()], b[key][()])


def test_derived_and_copied_stores_keep_identity(tmp_path):
    source = tmp_path / "no-nms.h5"
    write_with_identity(source, range(len(ITEMS)), dict(CONFIG, method="dasr", nms_iou=None))
    derive_nms_store(source, tmp_path / "nms.h5", dict(CONFIG, method="dasr", nms_iou=0.3), list(ITEMS), progress=False)
    copy_rows(source, tmp_path / "copy.h5", dict(CONFIG, method="dasr", nms_iou=None), ITEMS[:3], progress=False)
    want = {ITEMS[k]: ident(k) for k in range(len(ITEMS))}
    assert stored_identity(RegionStore.open(tmp_path / "nms.h5")) == want
    assert stored_identity(RegionStore.open(tmp_path / "copy.h5")) == {name: want[name] for name in ITEMS[:3]}


def test_a_store_without_identity_opens_and_says_so(tmp_path):
    out = tmp_path / "old.h5"
    write_with_identity(out, range(3))
    with h5py.File(out, "a") as f:
        del f["file_sizes"], f["file_sha256"]
    source = H5Source(out)
    assert not source.has_identity and list(source.file_sizes) == [-1] * 3
    source.close()
    assert stored_identity(RegionStore.open(out)) == {ITEMS[k]: None for k in range(3)}
    with StoreWriter(out, CONFIG, ROOT) as writer:
        assert writer.identity == {}


def test_a_store_with_a_foreign_identity_dataset_is_refused(tmp_path):
    from dasr.store import StoreError

    out = tmp_path / "s.h5"
    write_with_identity(out, range(3))
    with h5py.File(out, "a") as f:
        del f["file_sizes"]
        f["file_sizes"] = np.zeros(2, np.int64)
    with pytest.raises(StoreError, match="file_sizes or file_sha256 is not one entry per image"):
        RegionStore.open(out)


def test_check_unchanged_names_what_differs(tmp_path, capsys):
    for name, data in (("a.jpg", b"aaaa"), ("b.jpg", b"bbbb"), ("c.jpg", b"cc")):
        (tmp_path / name).write_bytes(data)
    recorded = {name: file_identity(tmp_path / name) for name in ("a.jpg", "b.jpg", "c.jpg")}
    assert recorded["a.jpg"] == (4, hashlib.sha256(b"aaaa").hexdigest())
    check_unchanged(Path("s.h5"), tmp_path, ["a.jpg", "b.jpg", "c.jpg"], recorded)
    os.utime(tmp_path / "a.jpg", (5, 5))  # a new time alone is no change
    check_unchanged(Path("s.h5"), tmp_path, ["a.jpg"], recorded)
    (tmp_path / "b.jpg").write_bytes(b"bbbB")
    with pytest.raises(ImageChangedError, match=r"b.jpg has the same size but another SHA-256 .*s.h5 holds"):
        check_unchanged(Path("s.h5"), tmp_path, ["a.jpg", "b.jpg", "c.jpg"], recorded)
    (tmp_path / "c.jpg").unlink()
    with pytest.raises(ImageChangedError, match=r"c.jpg is gone or unreadable: "):
        check_unchanged(Path("s.h5"), tmp_path, ["c.jpg"], recorded)
    check_unchanged(Path("s.h5"), tmp_path, ["a.jpg", "old.jpg"], recorded)
    assert "s.h5: 1 stored images have no recorded size and SHA-256" in capsys.readouterr().err


def test_file_identity_of_what_is_not_a_regular_file_is_none(tmp_path):
    os.mkfifo(tmp_path / "fifo.jpg")
    (tmp_path / "dir.jpg").mkdir()
    assert file_identity(tmp_path / "fifo.jpg") is None  # returns at once: a FIFO is never opened
    assert file_identity(tmp_path / "dir.jpg") is None
    assert file_identity(tmp_path / "missing.jpg") is None


def test_skipped_images_keep_their_files_identity_through_chunks_finalize_merge_and_derive(tmp_path):
    from dasr.store import read_skipped
    from dasr.store.skipped import read_skipped_identity

    shards = []
    for i in range(2):
        path = tmp_path / f"shard{i}.h5"
        writer = StoreWriter(path, dict(CONFIG, method="dasr", nms_iou=None, shard=f"{i}/2"), ROOT, chunk_images=1)
        for order, _ in shard_of(ITEMS, (i, 2)):
            writer.add(ITEMS[order], order, size_of(order), make_regions(order), identity=ident(order))
        writer.skip(f"bad{i}.jpg", f"truncated {i}", identity=ident(100 + i))
        writer.skip(f"gone{i}.jpg", "file not found")  # nothing to read: no identity
        writer.abort()  # through the chunks
        StoreWriter(path, dict(CONFIG, method="dasr", nms_iou=None, shard=f"{i}/2"), ROOT).close()
        assert read_skipped_identity(path) == {f"bad{i}.jpg": ident(100 + i)}
        assert read_skipped(path) == {f"bad{i}.jpg": f"truncated {i}", f"gone{i}.jpg": "file not found"}
        shards.append(path)
    merged = tmp_path / "merged.h5"
    merge_stores(shards, merged)
    want = {"bad0.jpg": ident(100), "bad1.jpg": ident(101)}
    assert read_skipped_identity(merged) == want
    derive_nms_store(merged, tmp_path / "nms.h5", dict(CONFIG, method="dasr", nms_iou=0.3),
                     [*ITEMS, "bad0.jpg", "bad1.jpg", "gone0.jpg"], progress=False)
    assert read_skipped_identity(tmp_path / "nms.h5") == want
    assert read_skipped(tmp_path / "nms.h5")["gone0.jpg"] == "file not found"
