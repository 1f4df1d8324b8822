"""dasr.store.skipped: the .skipped.tsv of the images that could not be processed."""

from __future__ import annotations

import pytest

from dasr.store import RegionStore, StoreWriter, read_skipped, skipped_path
from store_helpers import CONFIG, ITEMS, ROOT, make_regions, size_of


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
