"""dasr.store.reader: a reader only ever sees finished stores."""

from __future__ import annotations

import pytest

from dasr.store import RegionStore, StoreError, StoreWriter
from store_helpers import CONFIG, ITEMS, ROOT, make_regions, size_of


def test_reader_never_sees_unfinished_store(tmp_path):
    path = tmp_path / "u.h5"
    writer = StoreWriter(path, CONFIG, ROOT, chunk_images=1)
    writer.add(ITEMS[0], 0, size_of(0), make_regions(0))
    with pytest.raises(StoreError, match="unfinished extraction"):
        RegionStore.open(path)
    writer.close()
    assert RegionStore.open(path).images == [ITEMS[0]]
