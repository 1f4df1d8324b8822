"""dasr.store.writer: round trips, validation, resume after kill -9, abort."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from dasr.store import FORMAT_NAME, RegionStore, StoreConfigError, StoreWriter, parts_path, skipped_path
from dasr.store.format import chunk_files
from store_helpers import (CONFIG, COUNTS, DIM, ITEMS, ROOT, assert_clean, assert_same_store, make_regions, size_of,
                           write_items, write_reference)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> RegionStore:
    """Uninterrupted single run over all items, added in input order."""
    return write_reference(tmp_path_factory.mktemp("ref") / "ref.h5")


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


class FakeClock:
    """Stands in for ``time`` in dasr.store.writer: ``now`` is set by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


def test_slow_images_are_flushed_after_flush_seconds(tmp_path, monkeypatch):
    # One paper-rule DASR* image takes about a minute on a CPU: a 16-image buffer would put a
    # quarter of an hour at the mercy of a kill -9.
    clock = FakeClock()
    monkeypatch.setattr("dasr.store.writer.time", clock)
    path = tmp_path / "slow.h5"
    writer = StoreWriter(path, CONFIG, ROOT, chunk_images=16, flush_seconds=60)
    chunks = lambda: chunk_files(parts_path(path))  # noqa: E731
    for i, t in enumerate([10.0, 59.0]):
        clock.now = t
        writer.add(ITEMS[i], i, size_of(i), make_regions(i))
    assert chunks() == []  # 59 s after the writer opened: still buffered
    clock.now = 61.0
    writer.add(ITEMS[2], 2, size_of(2), make_regions(2))
    assert len(chunks()) == 1  # 61 s: the three images go to disk
    clock.now = 100.0
    writer.skip(ITEMS[3], "cannot decode")
    assert len(chunks()) == 1  # 39 s after that flush
    clock.now = 121.5
    writer.add(ITEMS[4], 4, size_of(4), make_regions(4))
    assert len(chunks()) == 2  # 60.5 s after that flush: image 4 and the skip go to disk
    writer.abort()
    resumed = StoreWriter(path, CONFIG, ROOT)
    assert resumed.done == {ITEMS[i] for i in (0, 1, 2, 4)}
    resumed.close()


@pytest.mark.parametrize("bad", [-1, True, "60", float("nan")])
def test_flush_seconds_validation(tmp_path, bad):
    with pytest.raises(ValueError, match="flush_seconds"):
        StoreWriter(tmp_path / "f.h5", CONFIG, ROOT, flush_seconds=bad)
    StoreWriter(tmp_path / "f.h5", CONFIG, ROOT).close()  # the refusal left no lock behind


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


# ------------------------------------------------------------------ kill -9 and resume

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, sys.argv[1])
    import store_helpers as t
    from dasr import store
    from dasr.store import files, writer as store_writer

    out, mode, kill_after = sys.argv[2], sys.argv[3], int(sys.argv[4])

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    if mode == "chunk_rename":  # chunk file fully written, killed before its rename
        fsync = files._fsync_file
        seen = []
        def fsync_then_die(path):
            fsync(path)
            seen.append(path)
            if len(seen) == kill_after:
                die()
        files._fsync_file = fsync_then_die
    elif mode == "final_rename":  # merged tmp store written, killed before os.replace
        files._fsync_file = lambda path: die() if path.name.startswith(".store.h5.tmp-") else None
    elif mode == "after_final":  # final store in place, parts not yet deleted
        store_writer.write_skipped = die
    elif mode == "parts_removal":  # parts renamed away, killed while deleting them
        files.remove = lambda path: die() if ".parts.tmp-" in path.name else None

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


# ------------------------------------------------------------------ one collection per store


@pytest.mark.parametrize("finished", [True, False])
def test_resume_refuses_another_collection_with_the_same_names(tmp_path, finished):
    path = tmp_path / "store.h5"
    first, other = tmp_path / "photos-2023", tmp_path / "photos-2024"
    writer = StoreWriter(path, CONFIG, first, chunk_images=1)
    writer.add(ITEMS[0], 0, size_of(0), make_regions(0))
    writer.close() if finished else writer.abort()
    # The same relative names in another folder are other images: never "already done".
    with pytest.raises(StoreConfigError) as info:
        StoreWriter(path, CONFIG, other)
    where = path if finished else parts_path(path) / "config.json"
    assert str(info.value) == (f"{where}: holds images of {first}, not of {other}; "
                               "use another output path for another collection")
    # Refused before anything changed: the store still holds the first collection only.
    with StoreWriter(path, CONFIG, first) as writer:
        assert writer.done == {ITEMS[0]}
    assert RegionStore.open(path).root == str(first)


def test_relative_root_is_stored_absolute_and_aliases_are_the_same_folder(tmp_path, monkeypatch):
    (tmp_path / "images").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "images")
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "store.h5"
    with StoreWriter(path, CONFIG, "images") as writer:
        writer.add(ITEMS[1], 1, size_of(1), make_regions(1))
    assert RegionStore.open(path).root == str(tmp_path / "images")
    # The same folder under another name resumes, and the stored root keeps its first name.
    with StoreWriter(path, CONFIG, tmp_path / "alias") as writer:
        assert writer.done == {ITEMS[1]}
        writer.add(ITEMS[2], 2, size_of(2), make_regions(2))
    assert RegionStore.open(path).root == str(tmp_path / "images")
    monkeypatch.chdir(tmp_path / "images")
    with pytest.raises(StoreConfigError, match="holds images of"):
        StoreWriter(path, CONFIG, "images")  # now another folder: images/images


def test_a_file_named_like_the_parts_folder_is_refused_in_one_line(tmp_path):
    from dasr.store import StoreError, parts_path

    out = tmp_path / "s.h5"
    parts_path(out).write_text("in the way\n")
    with pytest.raises(StoreError, match=r"s.h5.parts: not a DASR parts folder \(a file of that name"):
        StoreWriter(out, CONFIG, ROOT)
    assert parts_path(out).read_text() == "in the way\n"
    parts_path(out).unlink()
    with StoreWriter(out, CONFIG, ROOT) as writer:  # the lock was released: the same store now works
        writer.add(ITEMS[0], 0, size_of(0), make_regions(0))
    assert RegionStore.open(out).images == [ITEMS[0]]


def test_a_full_disk_at_finalize_keeps_the_store_and_the_chunks(tmp_path, monkeypatch):
    import errno
    import os

    from dasr.io.atomic import DiskFullError
    from dasr.store import files

    out = tmp_path / "s.h5"
    with StoreWriter(out, CONFIG, ROOT) as writer:
        writer.add(ITEMS[0], 0, size_of(0), make_regions(0))
    before = out.read_bytes()
    writer = StoreWriter(out, CONFIG, ROOT)
    writer.add(ITEMS[1], 1, size_of(1), make_regions(1))
    writer.flush()

    def full(path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files, "_fsync_file", full)
    with pytest.raises(DiskFullError, match=r"s.h5: no space left on device"):
        writer.close()
    assert out.read_bytes() == before and len(list(parts_path(out).glob("chunk-*.npz"))) == 1
    monkeypatch.undo()
    with StoreWriter(out, CONFIG, ROOT) as again:  # space freed: the same run resumes
        assert again.done == {ITEMS[0], ITEMS[1]}
    assert RegionStore.open(out).images == [ITEMS[0], ITEMS[1]]


def test_a_full_disk_when_creating_the_parts_folder_is_one_line(tmp_path, monkeypatch):
    import errno
    import os

    from dasr.io.atomic import DiskFullError
    from dasr.store import writer as writer_module

    def full(folder):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(writer_module, "fsync_dir", full)
    with pytest.raises(DiskFullError, match=r"s.h5.parts: no space left on device"):
        StoreWriter(tmp_path / "s.h5", CONFIG, ROOT)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5.lock"]
