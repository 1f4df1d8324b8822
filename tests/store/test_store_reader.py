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


def test_restricted_keeps_the_named_images_rows_in_store_order(tmp_path):
    """Image i has i regions whose features are all i: every kept row must still belong to its image."""
    import numpy as np

    path = tmp_path / "s.h5"
    with StoreWriter(path, {"method": "dasr-star"}, str(tmp_path)) as writer:
        for i, name in enumerate(["a.jpg", "b.jpg", "c.jpg", "d.jpg"]):
            writer.add(name, i, (10 + i, 20), {"boxes": np.full((i, 4), i, np.float32),
                                               "features": np.full((i, 3), i, np.float32)})
    store = RegionStore.open(path)
    part = store.restricted(["d.jpg", "b.jpg", "absent.jpg", "a.jpg"])
    assert part.images == ["a.jpg", "b.jpg", "d.jpg"]
    assert part.offsets.tolist() == [0, 0, 1, 4]
    assert part.region_image.tolist() == [1, 2, 2, 2]
    assert part.arrays["features"][:, 0].tolist() == [1, 3, 3, 3]
    assert part.regions_of(2)["boxes"].tolist() == [[3, 3, 3, 3]] * 3
    assert part.sizes[:, 0].tolist() == [10, 11, 13] and part.index("d.jpg") == 2
    assert store.restricted(store.images) is store
    assert len(store.restricted([])) == 0 and len(store.restricted([]).arrays["features"]) == 0


def test_a_store_of_no_image_opens_but_has_no_features_to_give(tmp_path):
    from dasr.store.format import FEATURE_KEY, H5Source

    path = tmp_path / "none.h5"
    with StoreWriter(path, CONFIG, ROOT):
        pass  # a shard that received no image
    store = RegionStore.open(path)
    assert len(store) == 0
    with pytest.raises(StoreError, match=r"none\.h5: the store holds no image"):
        store.features
    source = H5Source(path)
    try:
        with pytest.raises(StoreError, match="holds no image"):
            source.rows(FEATURE_KEY)
    finally:
        source.close()


@pytest.mark.parametrize("member, kind", [("regions", "dataset"), ("images", "group"), ("regions/features", "group")])
def test_a_store_whose_layout_is_not_the_writers_is_refused_by_name(tmp_path, member, kind):
    import h5py
    import numpy as np

    path = tmp_path / "s.h5"
    with StoreWriter(path, CONFIG, ROOT) as writer:
        writer.add(ITEMS[0], 0, size_of(0), make_regions(0))
    assert len(RegionStore.open(path).features)
    with h5py.File(path, "r+") as f:
        del f[member]
        if kind == "group":
            f.create_group(member)
        else:
            f[member] = np.zeros(3)
    with pytest.raises(StoreError, match=f"not a DASR region store \\({member} is a {kind}, where the store has a"):
        RegionStore.open(path)
