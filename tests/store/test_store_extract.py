"""dasr.store.extract: a bad image is skipped and reported; any other error stops the run, resumably."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dasr.store.extract as extract_module
from conftest import write_collection
from dasr.features.extractor import Extractor
from dasr.features.spec import ExtractorSpec
from dasr.io.images import ImageError
from dasr.store import RegionStore, StoreConfigError, parts_path, read_skipped, skipped_path
from dasr.store.extract import extract_collection
from dasr.store.format import ChunkSource, chunk_files

NAMES = [f"img{i:02d}.{'jpg' if i % 2 == 0 else 'png'}" for i in range(3)]


@pytest.fixture(scope="module")
def extractor() -> Extractor:
    return ExtractorSpec.from_options(method="dasr", weights="random", max_side=64, backprop_dtype="float32").build()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("extract") / "images"
    assert write_collection(folder, seed=3, count=len(NAMES)) == NAMES
    return folder


@pytest.fixture(scope="module")
def uninterrupted(extractor, images, tmp_path_factory) -> RegionStore:
    out = tmp_path_factory.mktemp("direct") / "direct.h5"
    extract_collection(extractor, images, out, progress=False)
    return RegionStore.open(out)


def chunk_images(out: Path) -> tuple[list[str], dict[str, str]]:
    """(images, skips) held by the chunk files of an unfinished store."""
    stored: list[str] = []
    skips: dict[str, str] = {}
    for path in chunk_files(parts_path(out)):
        chunk = ChunkSource(path)
        stored += chunk.images
        skips.update(chunk.skips)
    return stored, skips


def assert_same_store(got: RegionStore, want: RegionStore) -> None:
    assert got.images == want.images
    np.testing.assert_array_equal(got.offsets, want.offsets)
    np.testing.assert_array_equal(got.sizes, want.sizes)
    for key in want.arrays:
        np.testing.assert_array_equal(got.arrays[key], want.arrays[key], err_msg=key)


def test_extractor_error_stops_the_run_and_keeps_finished_images(extractor, images, uninterrupted, tmp_path,
                                                                 monkeypatch):
    out = tmp_path / "store.h5"
    real_call = Extractor.__call__
    calls = []

    def third_fails(self, image):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("simulated out-of-memory in the network")
        return real_call(self, image)

    monkeypatch.setattr(Extractor, "__call__", third_fails)
    with pytest.raises(RuntimeError, match="simulated out-of-memory"):
        extract_collection(extractor, images, out, progress=False)
    # Not finalized, nothing recorded as skipped: the two finished images wait in the chunks.
    assert not out.exists() and not skipped_path(out).exists()
    assert chunk_images(out) == (NAMES[:2], {})

    monkeypatch.setattr(Extractor, "__call__", real_call)
    summary = extract_collection(extractor, images, out, progress=False)
    assert (summary.already_done, summary.extracted, summary.skipped) == (2, 1, [])
    assert_same_store(RegionStore.open(out), uninterrupted)


def test_decode_bug_stops_the_run(extractor, images, tmp_path, monkeypatch):
    out = tmp_path / "store.h5"
    real_read = extract_module.read_image

    def buggy_decoder(path, **kwargs):
        if Path(path).name == NAMES[1]:
            raise TypeError("a bug in the decoder, not a bad image")
        return real_read(path, **kwargs)

    monkeypatch.setattr(extract_module, "read_image", buggy_decoder)
    with pytest.raises(TypeError, match="a bug in the decoder"):
        extract_collection(extractor, images, out, progress=False)
    assert not out.exists() and not skipped_path(out).exists()
    assert chunk_images(out) == (NAMES[:1], {})


def test_bad_image_is_skipped_and_reported(extractor, images, uninterrupted, tmp_path, monkeypatch, capsys):
    out = tmp_path / "store.h5"
    real_read = extract_module.read_image

    def one_bad(path, **kwargs):
        if Path(path).name == NAMES[2]:
            raise ImageError(path, "truncated file")
        return real_read(path, **kwargs)

    monkeypatch.setattr(extract_module, "read_image", one_bad)
    summary = extract_collection(extractor, images, out, progress=False)
    assert summary.skipped == [(NAMES[2], "truncated file")] and summary.extracted == 2
    assert read_skipped(out) == {NAMES[2]: "truncated file"}
    from dasr.store.skipped import read_skipped_identity

    data = (images / NAMES[2]).read_bytes()
    assert read_skipped_identity(out) == {NAMES[2]: (len(data), _sha256(images / NAMES[2]))}
    assert f"skipped {images / NAMES[2]}: truncated file" in capsys.readouterr().err
    assert RegionStore.open(out).images == [n for n in NAMES if n != NAMES[2]]
    # The image is retried by the next run.
    monkeypatch.setattr(extract_module, "read_image", real_read)
    summary = extract_collection(extractor, images, out, progress=False)
    assert (summary.already_done, summary.extracted) == (2, 1) and not skipped_path(out).exists()
    assert_same_store(RegionStore.open(out), uninterrupted)


def test_another_folder_with_the_same_names_is_not_already_done(extractor, images, uninterrupted, tmp_path):
    out = tmp_path / "store.h5"
    out.write_bytes(uninterrupted.path.read_bytes())
    other = tmp_path / "other"
    assert write_collection(other, seed=9, count=len(NAMES)) == NAMES  # other pixels, same names
    with pytest.raises(StoreConfigError, match=f"holds images of {images}, not of {other}"):
        extract_collection(extractor, other, out, progress=False)
    assert_same_store(RegionStore.open(out), uninterrupted)
    assert RegionStore.open(out).root == str(images)


def test_a_list_of_absolute_paths_is_stored_relative_to_its_root(tmp_path):
    """``find $PWD -name '*.jpg' > list.txt`` is the most natural list a user writes."""
    from dasr.errors import InputError
    from dasr.store.extract import read_image_list

    (tmp_path / "a").mkdir()
    for name in ("x.jpg", "y.jpg"):
        (tmp_path / "a" / name).write_bytes(b"not decoded here")
    listing = tmp_path / "list.txt"
    listing.write_text(f"{tmp_path.resolve()}/a/x.jpg\na/y.jpg\n")
    base, rel = read_image_list(listing)
    assert base == tmp_path and rel == ["a/x.jpg", "a/y.jpg"]
    for line, problem in (("/etc/passwd", "outside the root"), ("../../etc/passwd", "leaves the root")):
        listing.write_text(f"a/x.jpg\n{line}\n")
        with pytest.raises(InputError, match=rf"list.txt:2: .*{problem}"):
            read_image_list(listing)


# --------------------------------------------------------------------------- per-image identity


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_store_records_each_files_size_and_sha256(images, uninterrupted):
    for i, name in enumerate(uninterrupted.images):
        assert uninterrupted.identity_of(i) == ((images / name).stat().st_size, _sha256(images / name))


def _copy_collection(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_resume_refuses_a_stored_image_changed_in_place(extractor, images, uninterrupted, tmp_path):
    from dasr.store import ImageChangedError

    folder = _copy_collection(images, tmp_path / "images")
    out = tmp_path / "store.h5"
    extract_collection(extractor, folder, out, progress=False)
    before = out.read_bytes()
    # Same size, other bytes: only the hash can tell.
    data = bytearray((folder / NAMES[1]).read_bytes())
    data[-20] ^= 0xFF
    (folder / NAMES[1]).write_bytes(bytes(data))
    with pytest.raises(ImageChangedError, match=rf"{NAMES[1]} has the same size but another SHA-256.*new output path"):
        extract_collection(extractor, folder, out, progress=False)
    (folder / NAMES[0]).write_bytes((folder / NAMES[0]).read_bytes() + b"\0")
    with pytest.raises(ImageChangedError, match=rf"{NAMES[0]} has \d+ bytes, \d+ when it was extracted "
                                                r"\(and 1 more changed images\)"):
        extract_collection(extractor, folder, out, progress=False)
    (folder / NAMES[2]).unlink()  # named by a list, a deleted stored image is a change too
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{name}\n" for name in reversed(NAMES)))
    with pytest.raises(ImageChangedError, match=rf"{NAMES[2]} is gone or unreadable \(and 2 more"):
        extract_collection(extractor, listing, out, root=folder, progress=False)
    assert out.read_bytes() == before  # refused before any work: the store is untouched


def test_a_new_modification_time_alone_is_not_a_change(extractor, images, tmp_path):
    import os

    folder = _copy_collection(images, tmp_path / "images")
    out = tmp_path / "store.h5"
    extract_collection(extractor, folder, out, progress=False)
    for name in NAMES:
        os.utime(folder / name, (1, 1))
    summary = extract_collection(extractor, folder, out, progress=False)
    assert (summary.already_done, summary.extracted) == (len(NAMES), 0)


def test_an_old_store_without_identity_is_searched_and_resumed_with_a_warning(extractor, images, uninterrupted,
                                                                               tmp_path, capsys):
    import h5py

    out = tmp_path / "old.h5"
    out.write_bytes(uninterrupted.path.read_bytes())
    with h5py.File(out, "a") as f:  # what an older dasr wrote
        del f["file_sizes"], f["file_sha256"]
    old = RegionStore.open(out)
    assert_same_store(old, uninterrupted)
    assert all(old.identity_of(i) is None for i in range(len(old)))
    summary = extract_collection(extractor, images, out, progress=False)
    assert (summary.already_done, summary.extracted) == (len(NAMES), 0)
    assert f"{out}: {len(NAMES)} stored images have no recorded size and SHA-256" in capsys.readouterr().err


def test_two_extractions_of_the_same_images_are_bit_identical(extractor, images, uninterrupted, tmp_path):
    out = tmp_path / "again.h5"
    extract_collection(extractor, images, out, progress=False)
    import h5py

    with h5py.File(out, "r") as a, h5py.File(uninterrupted.path, "r") as b:
        for key in ("images", "file_sizes", "file_sha256", "sizes", "offsets", "regions/features"):
            np.testing.assert_array_equal(a[key][()], b[key][()], err_msg=key)


# --------------------------------------------------------------------------- decode memory budget


def test_prefetch_keeps_decodes_and_waiting_images_within_the_budget(images, tmp_path):
    from dasr.io.budget import DecodeBudget
    from dasr.io.pixels import decode_need

    # Every image needs decode_need bytes (32 MiB slack + 7 bytes per pixel); a budget of one
    # and a half such needs lets only one image be decoded or waiting at any time.
    need = decode_need(96, 72, "RGB", "JPEG")
    budget = DecodeBudget(need + need // 2)
    lowest = []
    real_acquire = budget.acquire

    def watched(ticket, nbytes):
        ok = real_acquire(ticket, nbytes)
        lowest.append(budget.free)
        return ok

    budget.acquire = watched
    items = list(enumerate(NAMES * 3))
    seen = [(rel, decoded.pixels.shape) for _, rel, decoded, _ in extract_module.prefetch(images, items, budget=budget)]
    assert [rel for rel, _ in seen] == NAMES * 3
    assert min(lowest) >= 0 and budget.free == budget.total  # everything given back


def test_an_image_over_the_whole_budget_is_skipped_naming_the_budget(extractor, images, tmp_path, monkeypatch):
    from dasr.io.budget import DecodeBudget

    monkeypatch.setattr(extract_module, "DecodeBudget", lambda: DecodeBudget(1 << 20))
    out = tmp_path / "store.h5"
    summary = extract_collection(extractor, images, out, progress=False)
    assert summary.extracted == 0 and len(summary.skipped) == len(NAMES)
    assert all("over the decode memory budget of 1 MiB" in reason for _, reason in summary.skipped)


# --------------------------------------------------------------------------- many images per step
# Five images, three of one network-input shape: with 3 images per step the first step has a
# bucket of two and one of one, the last (incomplete) step a bucket of two.
STEP_SIZES = [(96, 72), (96, 72), (80, 80), (64, 48), (96, 72)]


@pytest.fixture(scope="module")
def step_images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("steps") / "images"
    write_collection(folder, seed=5, count=len(STEP_SIZES), sizes=STEP_SIZES)
    return folder


def assert_close_stores(got: RegionStore, want: RegionStore) -> None:
    """The same images, in the same order, with the same regions up to float rounding."""
    assert got.images == want.images
    np.testing.assert_array_equal(got.offsets, want.offsets)
    np.testing.assert_array_equal(got.sizes, want.sizes)
    np.testing.assert_array_equal(got.arrays["seeds"], want.arrays["seeds"])
    np.testing.assert_allclose(got.arrays["boxes"], want.arrays["boxes"], atol=1e-4)
    # A batch's forward pass rounds differently (TensorFlow's CPU kernels depend on the batch):
    # 1e-5 of the features' scale.
    want_features = want.arrays["features"]
    np.testing.assert_allclose(got.arrays["features"], want_features, rtol=1e-5, atol=1e-5 * np.abs(want_features).max())


def test_many_images_per_step_give_the_default_store(extractor, step_images, tmp_path, monkeypatch, capsys):
    real_read = extract_module.read_image
    bad = sorted(p.name for p in step_images.iterdir())[1]

    def one_bad(path, **kwargs):
        if Path(path).name == bad:
            raise ImageError(path, "truncated file")
        return real_read(path, **kwargs)

    monkeypatch.setattr(extract_module, "read_image", one_bad)
    one = extract_collection(extractor, step_images, tmp_path / "one.h5", progress=False)
    calls = []
    real_inputs = Extractor.extract_inputs

    def counted(self, inputs, keep_maps=False):
        calls.append(len(inputs))
        return real_inputs(self, inputs, keep_maps)

    monkeypatch.setattr(Extractor, "extract_inputs", counted)
    many = extract_collection(extractor, step_images, tmp_path / "many.h5", progress=False, images_per_step=3)
    assert calls == [3, 1]  # the bad image is skipped, not waited for
    assert many.skipped == one.skipped == [(bad, "truncated file")] and many.extracted == 4
    assert f"skipped {step_images / bad}: truncated file" in capsys.readouterr().err
    assert_close_stores(RegionStore.open(tmp_path / "many.h5"), RegionStore.open(tmp_path / "one.h5"))
    assert read_skipped(tmp_path / "many.h5") == {bad: "truncated file"}


def test_an_error_in_a_step_keeps_the_finished_steps(extractor, step_images, tmp_path, monkeypatch):
    out = tmp_path / "store.h5"
    real_inputs = Extractor.extract_inputs
    calls = []

    def second_fails(self, inputs, keep_maps=False):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated out-of-memory in the network")
        return real_inputs(self, inputs, keep_maps)

    monkeypatch.setattr(Extractor, "extract_inputs", second_fails)
    with pytest.raises(RuntimeError, match="simulated out-of-memory"):
        extract_collection(extractor, step_images, out, progress=False, images_per_step=2)
    names = sorted(p.name for p in step_images.iterdir())
    assert chunk_images(out) == (names[:2], {})
    monkeypatch.setattr(Extractor, "extract_inputs", real_inputs)
    summary = extract_collection(extractor, step_images, out, progress=False, images_per_step=2)
    assert (summary.already_done, summary.extracted) == (2, 3)
    default = extract_collection(extractor, step_images, tmp_path / "default.h5", progress=False)
    assert default.extracted == 5
    assert_close_stores(RegionStore.open(out), RegionStore.open(tmp_path / "default.h5"))


@pytest.mark.parametrize("value", [0, -1, 2.0, True])
def test_images_per_step_must_be_a_positive_integer(extractor, images, tmp_path, value):
    with pytest.raises(ValueError, match="images_per_step must be a positive integer"):
        extract_collection(extractor, images, tmp_path / "s.h5", progress=False, images_per_step=value)
