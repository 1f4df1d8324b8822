"""dasr.store.cache: finished stores are reused, copied or derived instead of extracted again."""

from __future__ import annotations


import numpy as np

from store_fixtures import backbone, images, make  # noqa: F401  (fixtures)
from dasr.features.extractor import Extractor
from dasr.store import RegionStore
from dasr.store.cache import config_hash, ensure_store, store_folder, write_list
from dasr.store.files import parts_path
from dasr.store.lock import StoreLock


def test_config_hash_and_folder(backbone, tmp_path, make):
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1}) != config_hash({"a": 2, "b": 2})
    assert len(config_hash({"a": 1})) == 10
    extractor = make(backbone)
    assert store_folder(tmp_path, "toy", extractor) == tmp_path / "toy" / f"dasr-star-{config_hash(extractor.config())}"
    name = b"caf\xe9.jpg".decode("utf-8", "surrogateescape")
    assert write_list(tmp_path / "l.txt", ["a.jpg", name]).read_bytes() == b"a.jpg\ncaf\xe9.jpg\n"


def test_ensure_store_derives_instead_of_extracting(backbone, images, tmp_path, monkeypatch, capsys, make):
    names = sorted(p.name for p in images.iterdir())
    work = tmp_path / "stores"
    calls = []
    real_seed_maps = Extractor.seed_maps

    def counted(self, *args, **kwargs):  # one backprop call per extracted image
        calls.append(1)
        return real_seed_maps(self, *args, **kwargs)

    monkeypatch.setattr(Extractor, "seed_maps", counted)
    no_nms = make(backbone, beta=None)
    half = names[:2]
    first = ensure_store(no_nms, "toy", images, half, work, "database", progress=False)
    assert len(calls) == 2
    # another role of the same configuration: the two stored images are copied, not extracted
    whole = ensure_store(no_nms, "toy", images, names, work, "pca-source", progress=False)
    assert len(calls) == 4 and RegionStore.open(whole).images == list(names)
    np.testing.assert_array_equal(RegionStore.open(whole).regions_of(1)["features"],
                                  RegionStore.open(first).regions_of(1)["features"])
    assert ensure_store(no_nms, "toy", images, half, work, "queries") == first  # a finished store holds them all
    calls.clear()
    capsys.readouterr()
    nms_path = ensure_store(make(backbone, beta=0.3), "toy", images, names, work, "database", progress=False)
    assert "by NMS at beta=0.3" in capsys.readouterr().err
    layer_path = ensure_store(make(backbone, beta=0.3, layer="conv5_block2_out"), "toy", images, names, work,
                              "database", progress=False)
    assert "pooling the regions of" in capsys.readouterr().out
    assert not calls  # neither ran the backprop
    assert nms_path.parent != layer_path.parent
    np.testing.assert_array_equal(RegionStore.open(layer_path).arrays["boxes"], RegionStore.open(nms_path).arrays["boxes"])
    ensure_store(make(backbone, beta=0.3, tau=0.3), "toy", images, names, work, "database", progress=False)
    assert len(calls) == len(names)  # another τ: new regions, extracted
    assert first.parent == store_folder(work, "toy", no_nms) and first.with_suffix(".txt").read_text() == \
        "".join(f"{name}\n" for name in half)


def test_ensure_store_reads_a_finished_store_while_it_is_being_extended(backbone, images, tmp_path, monkeypatch, make):
    """A report run beside an extension of the same store uses the finished file; before, it went on
    to extract and stopped on the extension's lock."""
    names = sorted(p.name for p in images.iterdir())
    work = tmp_path / "stores"
    extractor = make(backbone)
    finished = ensure_store(extractor, "toy", images, names[:2], work, "database", progress=False)
    calls = []
    monkeypatch.setattr(Extractor, "seed_maps", lambda self, *a, **k: calls.append(1))
    parts_path(finished).mkdir()  # what a running extension of the store leaves beside it
    lock = StoreLock(finished)  # ... and holds
    try:
        assert ensure_store(extractor, "toy", images, names[:2], work, "database", progress=False) == finished
        # another role of the same configuration finds it too
        assert ensure_store(extractor, "toy", images, names[1:2], work, "queries", progress=False) == finished
    finally:
        lock.release()
    assert not calls
