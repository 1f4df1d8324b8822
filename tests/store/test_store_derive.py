"""dasr.store.derive: stores derived from other stores (another β, another layer) equal direct extractions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from store_fixtures import backbone, images, make  # noqa: F401  (fixtures)
from dasr.store import RegionStore, StoreWriter, derive
from dasr.store.extract import extract_collection


def direct(extractor, images: Path, out: Path) -> RegionStore:
    extract_collection(extractor, images, out, progress=False)
    return RegionStore.open(out)


def assert_same_store(got: RegionStore, want: RegionStore, feature_rtol: float = 0.0) -> None:
    assert got.images == want.images
    np.testing.assert_array_equal(got.offsets, want.offsets)
    assert {k: v for k, v in got.config.items() if k != "created"} == \
        {k: v for k, v in want.config.items() if k != "created"}
    for key in ("boxes", "scores", "seeds", "ellipses"):
        np.testing.assert_array_equal(got.arrays[key], want.arrays[key], err_msg=key)
    np.testing.assert_allclose(got.arrays["features"], want.arrays["features"], rtol=feature_rtol,
                               atol=1e-6 if feature_rtol else 0)


def test_derivation_kind():
    base = {"method": "dasr-star", "feature_layer": "conv5_block1_out", "pooling": "avg", "nms_iou": None, "tau": 0.1}
    assert derive.derivation_kind(base, {**base, "nms_iou": 0.3}) == "nms"
    assert derive.derivation_kind({**base, "nms_iou": 0.5}, {**base, "nms_iou": 0.3}) is None  # NMS is not undone
    assert derive.derivation_kind(base, {**base, "feature_layer": "conv4_block6_out", "pooling": "max"}) == "repool"
    assert derive.derivation_kind(base, {**base, "feature_layer": "conv4_block6_out", "nms_iou": 0.3}) is None
    assert derive.derivation_kind(base, {**base, "tau": 0.2}) is None  # other regions
    assert derive.derivation_kind(base, dict(base)) is None
    gap = {"method": "gap", "feature_layer": "conv5_block1_out"}
    assert derive.derivation_kind(gap, {**gap, "feature_layer": "conv5_block3_out"}) is None


def test_nms_store_is_the_direct_extraction(backbone, images, tmp_path, make):
    none = direct(make(backbone, beta=None), images, tmp_path / "none.h5")
    for beta in (0.1, 0.3):
        target = make(backbone, beta=beta)
        want = direct(target, images, tmp_path / f"direct-{beta}.h5")
        derive.derive_nms_store(none.path, tmp_path / f"derived-{beta}.h5", target.config(), none.images, progress=False)
        got = RegionStore.open(tmp_path / f"derived-{beta}.h5", expected_config=target.config())
        assert_same_store(got, want)
        assert len(got.arrays["boxes"]) <= len(none.arrays["boxes"])
    assert len(RegionStore.open(tmp_path / "derived-0.1.h5").arrays["boxes"]) < len(none.arrays["boxes"])
    with pytest.raises(ValueError, match="cannot be derived"):
        derive.derive_nms_store(none.path, tmp_path / "x.h5", {**target.config(), "tau": 0.2}, none.images)


def test_repooled_store_is_the_direct_extraction(backbone, images, tmp_path, make):
    source = direct(make(backbone), images, tmp_path / "conv5.h5")
    target = make(backbone, layer="conv4_block6_out")  # stride 16, 1024 channels
    want = direct(target, images, tmp_path / "direct.h5")
    extract_collection(target, images, tmp_path / "derived.h5", progress=False, regions_from=source)
    got = RegionStore.open(tmp_path / "derived.h5", expected_config=target.config())
    assert got.arrays["features"].shape[1] == 1024
    assert_same_store(got, want, feature_rtol=1e-5)


def test_derivation_kind_reads_the_differing_keys_not_the_messages():
    base = {"method": "dasr-star", "pooling": "avg", "nms_iou": None}
    # A key whose name looks like "pooling: ..." is another key, not the pooling.
    assert derive.derivation_kind(base, {**base, "pooling: legacy": 1}) is None
    assert derive.derivation_kind(base, {**base, "nms_iou": 0.3, "shard": "0/2"}) == "nms"  # volatile key ignored
    for method in ("gap", "mac", "rmac", "crow", "gem"):  # the global methods of dasr.features.methods
        assert derive.derivation_kind({**base, "method": method}, {**base, "method": method, "nms_iou": 0.3}) is None


def test_find_source_warns_about_a_corrupt_store_and_goes_on(tmp_path, capsys):
    base = {"method": "dasr-star", "feature_layer": "conv5_block1_out", "pooling": "avg", "nms_iou": None}
    corrupt = tmp_path / "a-broken" / "database.h5"
    corrupt.parent.mkdir()
    corrupt.write_bytes(b"not an HDF5 file\n")
    good = tmp_path / "b-good" / "database.h5"
    with StoreWriter(good, base, "/images") as writer:
        writer.add("x.jpg", 0, (10, 10), {"boxes": np.zeros((1, 4), np.float32), "scores": np.ones(1, np.float32)})
    found = derive.find_source(tmp_path, {**base, "nms_iou": 0.3}, ["x.jpg"])
    assert found == derive.Source(good, "nms")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"warning: {corrupt}: unreadable HDF5 file (") and "source to derive from" in lines[0]
