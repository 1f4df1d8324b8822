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


def test_a_store_with_non_finite_features_is_refused_when_opened(tmp_path):
    """A NaN feature would give NaN scores to every search: the store is refused at open."""
    import h5py
    import numpy as np

    path = tmp_path / "s.h5"
    with StoreWriter(path, {"method": "dasr-star"}, str(tmp_path)) as writer:
        writer.add("a.jpg", 0, (10, 10), {"boxes": np.zeros((1, 4), np.float32),
                                          "features": np.ones((1, 3), np.float32)})
    RegionStore.open(path)
    with h5py.File(path, "r+") as f:
        name = next(k for k in ("regions/features", "features") if k in f)
        f[name][0, 1] = np.nan
    with pytest.raises(StoreError, match="non-finite"):
        RegionStore.open(path)
