"""dasr.store.format: names that are not UTF-8, damaged and foreign files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from dasr.store import RegionStore, StoreError, StoreWriter, read_skipped
from store_helpers import CONFIG, ITEMS, ROOT, make_regions, size_of, write_items


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


@pytest.mark.parametrize("config, problem", [("", "bad config attribute"), ("[1, 2]", "not a JSON object"),
                                             ("5", "not a JSON object"), ("{}", "empty")])
def test_a_store_whose_config_is_not_an_object_is_refused_in_one_line(tmp_path, config, problem):
    import h5py

    from dasr.store import RegionStore, StoreError
    from store_helpers import write_items

    out = tmp_path / "s.h5"
    write_items(out, [0, 1])
    with h5py.File(out, "a") as f:
        f.attrs["config"] = config
    with pytest.raises(StoreError, match=problem) as info:
        RegionStore.open(out)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("meta", ["[1]", '{"format": "dasr-region-store", "format_version": 1, "config": [1], '
                                  '"feature_dtype": "float32", "root": "/x"}'])
def test_a_parts_config_json_of_the_wrong_shape_is_refused_in_one_line(tmp_path, meta):
    from dasr.store import StoreError, StoreWriter, parts_path
    from store_helpers import CONFIG, ROOT

    out = tmp_path / "s.h5"
    parts_path(out).mkdir()
    (parts_path(out) / "config.json").write_text(meta)
    with pytest.raises(StoreError, match="not a DASR parts folder"):
        StoreWriter(out, CONFIG, ROOT)
