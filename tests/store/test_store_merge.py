"""dasr.store.merge: shard outputs merge into the single-run store; conflicts are refused."""

from __future__ import annotations

import pytest

from dasr.store import (RegionStore, StoreConfigError, StoreError, StoreWriter, merge_stores, read_skipped,
                        shard_of)
from store_helpers import CONFIG, ITEMS, ROOT, assert_clean, assert_same_store, make_regions, size_of, write_items, write_reference


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> RegionStore:
    """Uninterrupted single run over all items, added in input order."""
    return write_reference(tmp_path_factory.mktemp("ref") / "ref.h5")


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


def write_shards(folder, n: int, root: str = ROOT) -> list:
    paths = []
    for i in range(n):
        path = folder / f"shard{i}.h5"
        with StoreWriter(path, dict(CONFIG, shard=f"{i}/{n}"), root) as writer:
            for order, item in shard_of(ITEMS, (i, n)):
                writer.add(item, order, size_of(order), make_regions(order))
        paths.append(path)
    return paths


def test_merge_refuses_stores_of_another_collection(tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    write_items(a, [0, 1])
    with StoreWriter(b, CONFIG, "/data/other") as writer:  # other images under the same names
        writer.add(ITEMS[2], 2, size_of(2), make_regions(2))
    with pytest.raises(StoreConfigError) as info:
        merge_stores([a, b], tmp_path / "m.h5")
    assert str(info.value) == f"{b}: holds images of /data/other, not of {ROOT} like the first input {a}"
    assert not (tmp_path / "m.h5").exists()


def test_merge_refuses_an_incomplete_shard_set_unless_allowed(tmp_path, reference, capsys):
    shards = write_shards(tmp_path, 3)
    out = tmp_path / "m.h5"
    with pytest.raises(StoreError, match=r"incomplete set of shard stores \(shard 1/3 missing\)"):
        merge_stores([shards[0], shards[2]], out)
    with pytest.raises(StoreError, match=r"\(shard 1/3, 2/3 missing\)"):
        merge_stores(shards[:1], out)
    odd = tmp_path / "odd.h5"
    with StoreWriter(odd, dict(CONFIG, shard="1/2"), ROOT) as writer:
        writer.add(ITEMS[1], 1, size_of(1), make_regions(1))
    with pytest.raises(StoreError, match=r"\(shards of 2 and 3 processes\)"):
        merge_stores([shards[0], odd], out)
    whole = tmp_path / "whole.h5"
    write_items(whole, [2])
    with pytest.raises(StoreError, match=rf"\({whole} not made by a shard process\)"):
        merge_stores([*shards[:2], whole], out)
    assert not out.exists()
    merged = merge_stores([shards[0], shards[2]], out, allow_incomplete=True)
    assert capsys.readouterr().err == f"warning: {out}: merging an incomplete set of shard stores (shard 1/3 missing)\n"
    assert merged.images == [item for k, item in enumerate(ITEMS) if k % 3 != 1]
    assert_same_store(merge_stores(shards, tmp_path / "all.h5"), reference)
    assert capsys.readouterr().err == ""
