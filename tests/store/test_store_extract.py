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
    real_load = extract_module.load_image

    def buggy_decoder(path):
        if Path(path).name == NAMES[1]:
            raise TypeError("a bug in the decoder, not a bad image")
        return real_load(path)

    monkeypatch.setattr(extract_module, "load_image", buggy_decoder)
    with pytest.raises(TypeError, match="a bug in the decoder"):
        extract_collection(extractor, images, out, progress=False)
    assert not out.exists() and not skipped_path(out).exists()
    assert chunk_images(out) == (NAMES[:1], {})


def test_bad_image_is_skipped_and_reported(extractor, images, uninterrupted, tmp_path, monkeypatch, capsys):
    out = tmp_path / "store.h5"
    real_load = extract_module.load_image

    def one_bad(path):
        if Path(path).name == NAMES[2]:
            raise ImageError(path, "truncated file")
        return real_load(path)

    monkeypatch.setattr(extract_module, "load_image", one_bad)
    summary = extract_collection(extractor, images, out, progress=False)
    assert summary.skipped == [(NAMES[2], "truncated file")] and summary.extracted == 2
    assert read_skipped(out) == {NAMES[2]: "truncated file"}
    assert f"skipped {images / NAMES[2]}: truncated file" in capsys.readouterr().err
    assert RegionStore.open(out).images == [n for n in NAMES if n != NAMES[2]]
    # The image is retried by the next run.
    monkeypatch.setattr(extract_module, "load_image", real_load)
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
