"""SearchEngine: the page's searches are the library's ranking, boxes are checked, benchmark
marks and APs are the ground truth's, images outside the collection are never read."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from dasr.serve import RequestError, SearchEngine
from dasr.store import StoreWriter
from serve_helpers import (IMAGE_SIZE, engine_for, region_boxes, tiny_extractor, write_images,
                           write_instance_track, write_store)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def extractor():
    return tiny_extractor()


@pytest.fixture(scope="module")
def collection(tmp_path_factory, extractor):
    root = tmp_path_factory.mktemp("serve-engine") / "photos"
    names = write_images(root, 6)
    store = write_store(root.parent / "index.h5", root, names, extractor)
    return root, names, store


@pytest.fixture(scope="module")
def engine(collection, extractor):
    return engine_for(collection[2], extractor)


def test_search_ranks_every_image_by_its_best_region(engine, collection):
    """Scores and boxes recomputed by hand from the post-processed features."""
    root, names, _ = collection
    image = engine.load(2)
    box = (10.0, 5.0, 110.0, 90.0)
    result = engine.search_image(2, box, top=6)
    query = engine.index.describe(engine.extractor.describe_box(image, box))
    offsets = engine.index.store.offsets
    best = []
    for i in range(len(names)):
        sims = engine.index.features[offsets[i]:offsets[i + 1]] @ query
        best.append((float(sims.max()), -i, region_boxes(i)[int(np.argmax(sims))]))
    best.sort(reverse=True)
    assert [h.image_id for h in result.hits] == [-b[1] for b in best]
    assert [h.name for h in result.hits] == [names[-b[1]] for b in best]
    np.testing.assert_allclose([h.score for h in result.hits], [b[0] for b in best], atol=1e-4)
    for hit, (_, _, expected_box) in zip(result.hits, best):
        np.testing.assert_allclose(hit.box, expected_box, atol=0.06)
    assert result.box == list(box) and result.ap is None
    assert [h.rank for h in result.hits] == list(range(1, 7))


def test_top_limits_the_hits(engine):
    assert len(engine.search_image(0, None, top=2).hits) == 2


@pytest.mark.parametrize("box, words", [
    ((200.0, 10.0, 300.0, 50.0), "outside"),
    ((50.0, 50.0, 50.0, 90.0), "zero or negative area"),
    ((10.0, 10.0, 20.0, 20.0), "smaller than one 32x32 feature cell"),
    ((float("nan"), 0.0, 10.0, 10.0), "finite"),
])
def test_invalid_boxes_are_refused_in_one_line(engine, box, words):
    with pytest.raises(RequestError) as e:
        engine.search_image(0, box)
    assert e.value.status == 400 and words in str(e.value) and "\n" not in str(e.value)


def test_a_box_beyond_the_image_is_clipped(engine):
    assert engine.search_image(0, (-20.0, -5.0, 500.0, 400.0), top=1).box == [0.0, 0.0, *map(float, IMAGE_SIZE)]


@pytest.mark.parametrize("top", [0, 101, True, "3"])
def test_top_must_be_a_small_integer(engine, top):
    with pytest.raises(RequestError, match="top must be"):
        engine.search_image(0, None, top=top)


def test_unknown_ids_are_404(engine):
    for bad in (-1, 6, 10**9):
        with pytest.raises(RequestError) as e:
            engine.image_path(bad)
        assert e.value.status == 404


def test_images_leaving_the_collection_are_never_read(tmp_path, extractor):
    root = tmp_path / "photos"
    write_images(root, 1)
    outside = tmp_path / "secret"
    write_images(outside, 1, prefix="secret")
    os.symlink(outside / "secret00.png", root / "link.png")
    (root / "sub").mkdir()
    os.symlink(root / "img00.png", root / "sub" / "inner.png")  # a link that stays inside is fine
    names = ["img00.png", "../secret/secret00.png", "link.png", "sub/../../secret/secret00.png",
             "sub/inner.png", "missing.png"]
    engine = engine_for(write_store(tmp_path / "index.h5", root, names, extractor), extractor)
    assert engine.image_path(0) == (root / "img00.png").resolve()
    assert engine.image_path(4) == (root / "img00.png").resolve()
    for bad in (1, 2, 3, 5):
        with pytest.raises(RequestError, match="not a file inside the collection") as e:
            engine.load(bad)
        assert e.value.status == 404


def test_uploads_are_decoded_with_limits(engine, collection, tmp_path):
    root = collection[0]
    data = (root / "img01.png").read_bytes()
    np.testing.assert_array_equal(engine.decode_upload(data), np.asarray(Image.open(root / "img01.png").convert("RGB")))
    with pytest.raises(RequestError, match="upload: ") as e:
        engine.decode_upload(b"this is not an image" * 10)
    assert e.value.status == 400 and "dasr-upload" not in str(e.value)  # no temporary path shown
    with pytest.raises(RequestError, match="empty"):
        engine.decode_upload(b"")
    small = SearchEngine(engine.index, engine.whitening, engine.extractor, max_upload_bytes=len(data) - 1)
    with pytest.raises(RequestError) as e:
        small.decode_upload(data)
    assert e.value.status == 413
    few_pixels = SearchEngine(engine.index, engine.whitening, engine.extractor, max_upload_pixels=128 * 96 - 1)
    with pytest.raises(RequestError, match="upload: ") as e:
        few_pixels.decode_upload(data)
    assert e.value.status == 400


def test_an_uploaded_copy_finds_what_the_indexed_image_finds(engine, collection):
    data = (collection[0] / "img03.png").read_bytes()
    up = engine.search(engine.decode_upload(data), (0.0, 0.0, 128.0, 96.0), top=6)
    same = engine.search_image(3, (0.0, 0.0, 128.0, 96.0), top=6)
    assert [h.image_id for h in up.hits] == [h.image_id for h in same.hits]
    assert up.query == "upload"


@pytest.fixture(scope="module")
def bench_engine(tmp_path_factory, extractor):
    folder = tmp_path_factory.mktemp("bench")
    names = write_images(folder / "db", 6)
    names = [f"db/{n}" for n in names]
    write_images(folder / "q", 2, seed=9, prefix="q")
    # Benchmark database order differs from the store's: reference rows are grouped by instance.
    instances = {"red": [1, 4, 5], "blue": [0, 2, 3]}
    write_instance_track(folder, names, instances, {"red": "q/q00.png", "blue": "q/q01.png"})
    store = write_store(folder / "index.h5", folder, names, extractor)
    return SearchEngine.open(store, pca="none", weights="random", benchmark="instance-track",
                             benchmark_root=folder), instances


def test_benchmark_marks_and_ap_follow_the_ground_truth(bench_engine):
    engine, instances = bench_engine
    assert [q.name for q in engine.queries()] == ["red", "blue"]
    assert engine.queries()[0].box == [10.0, 10.0, 90.0, 80.0]
    result = engine.search_query(0, None, top=6)
    relevant = [h.image_id in instances["red"] for h in result.hits]
    assert [h.relevant for h in result.hits] == relevant
    # AP by hand: mean precision at the ranks of the relevant images (all 3 are ranked).
    ranks = [r for r, rel in enumerate(relevant, 1) if rel]
    expected = np.mean([(k + 1) / r for k, r in enumerate(ranks)])
    assert result.ap["ap"] == pytest.approx(expected)
    assert result.ap["ap@10/truncated"] == pytest.approx(expected)
    for h in result.hits:  # the ground-truth box of each relevant image is its first region here
        assert (h.truth is not None) == h.relevant
        if h.relevant:
            np.testing.assert_allclose(h.truth, region_boxes(h.image_id)[0], atol=0.06)


def test_the_query_list_decodes_each_query_image_once(bench_engine, monkeypatch):
    engine, _ = bench_engine
    decoded = []
    load = engine.load_query
    monkeypatch.setattr(engine, "load_query", lambda k: decoded.append(k) or load(k))
    engine._query_sizes.clear()
    first = engine.queries()
    assert engine.queries() == first and [(q.width, q.height) for q in first] == [IMAGE_SIZE] * 2
    assert decoded == [0, 1]  # the second list came from the sizes already known


def test_benchmark_marks_an_indexed_query_by_its_instance(bench_engine):
    engine, instances = bench_engine
    result = engine.search_image(2, None, top=6)
    assert [h.relevant for h in result.hits] == [h.image_id in instances["blue"] for h in result.hits]
    assert result.ap is None


def test_search_over_10000_regions_ranks_every_image_by_its_best_region(tmp_path, extractor):
    """10,000 regions (the scale of the speed bar, which bench.py's search section times): each
    image's score is its best region's, the images come best first, and the query's own image leads."""
    root = tmp_path / "photos"
    write_images(root, 1)
    rng = np.random.default_rng(0)
    with StoreWriter(tmp_path / "big.h5", extractor.config(), os.fspath(root)) as writer:
        for i in range(1000):
            writer.add("img00.png" if i == 0 else f"copy{i}.png", i, IMAGE_SIZE, {
                "boxes": np.tile([[0, 0, 64, 48]], (10, 1)).astype(np.float32) + i % 7,
                "scores": np.ones(10, np.float32),
                "features": rng.standard_normal((10, 2048)).astype(np.float32)})
    engine = engine_for(tmp_path / "big.h5", extractor)
    index = engine.index
    assert len(index.features) == 10_000
    row = 4321  # a region of image 432: the query is that region's own feature
    ranking = index.search(index.features[row], 10)
    best = (index.features @ index.features[row]).reshape(1000, 10).max(axis=1)
    assert ranking.order.tolist() == np.argsort(-best, kind="stable")[:10].tolist()
    assert ranking.order[0] == 432 and ranking.regions[0] == row
    np.testing.assert_allclose(ranking.scores, best[ranking.order], rtol=1e-5)
    np.testing.assert_array_equal(ranking.boxes[0], [432 % 7, 432 % 7, 64 + 432 % 7, 48 + 432 % 7])
    result = engine.search_image(0, (0.0, 0.0, 100.0, 90.0), top=10)
    assert len(result.hits) == 10 and [h.rank for h in result.hits] == list(range(1, 11))
