"""The one ranking on tiny hand-computed cases: best region per image, chunks, ties, top-k."""

from __future__ import annotations

import numpy as np
import pytest

from dasr.search.ranking import best_region_scores, images_from_regions, order_images, rank_images, top_regions

# 3 images: image 0 has regions 0-1, image 1 none, image 2 regions 2-4.
FEATURES = np.array([[1, 0], [0, 1], [0.6, 0.8], [0.8, 0.6], [-1, 0]], np.float32)
OFFSETS = np.array([0, 2, 2, 5])
BOXES = np.arange(20, dtype=np.float32).reshape(5, 4)


def test_image_scores_are_their_best_region_by_hand():
    q = np.array([[0.0, 1.0], [1.0, 0.0]], np.float32)
    scores, best = best_region_scores(q, FEATURES, OFFSETS)
    # q0: image 0 best is region 1 (1.0), image 2 best region 2 (0.8); q1: region 0 (1.0), region 3 (0.8).
    np.testing.assert_allclose(scores, [[1.0, -np.inf, 0.8], [1.0, -np.inf, 0.8]], atol=1e-6)
    assert best.tolist() == [[1, -1, 2], [0, -1, 3]]


@pytest.mark.parametrize("chunk", [1, 2, 3, 4, 1 << 18])
def test_chunks_give_the_same_ranking(chunk):
    """Images straddling chunk borders keep their best region (and the first of tied rows)."""
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(40, 3)).astype(np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)  # cosine: a vector is its own best match
    feats[7] = feats[6]  # a tie inside image 1: the first row wins
    offsets = np.array([0, 5, 9, 9, 23, 40])
    q = rng.normal(size=(3, 3)).astype(np.float32)
    q[0] = feats[6]
    ref = rank_images(q, feats, offsets, np.arange(160, dtype=np.float32).reshape(40, 4))
    got = rank_images(q, feats, offsets, np.arange(160, dtype=np.float32).reshape(40, 4), chunk=chunk)
    for a, b in zip(ref, got):
        assert a.order.tolist() == b.order.tolist()
        assert a.regions.tolist() == b.regions.tolist()
        # A 1-column product may round differently from a wide one (another BLAS kernel).
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)
    assert got[0].order[0] == 1 and got[0].regions[0] == 6
    # Brute force: per image, the max over its rows.
    sims = q @ feats.T
    for qi in range(3):
        want = [sims[qi, lo:hi].max() if hi > lo else -np.inf for lo, hi in zip(offsets[:-1], offsets[1:])]
        np.testing.assert_allclose(np.sort(want)[::-1], got[qi].scores, rtol=1e-6)


def test_ranking_boxes_and_the_image_without_regions():
    r = rank_images(np.array([[0.0, 1.0]], np.float32), FEATURES, OFFSETS, BOXES)[0]
    assert r.order.tolist() == [0, 2, 1]
    np.testing.assert_array_equal(r.boxes[0], BOXES[1])
    np.testing.assert_array_equal(r.boxes[1], BOXES[2])
    assert r.regions[2] == -1 and np.isnan(r.boxes[2]).all() and r.scores[2] == -np.inf


def test_top_is_the_prefix_of_the_full_stable_order():
    scores = np.array([0.5, 0.9, 0.5, 0.1, 0.9, 0.5, -np.inf], np.float32)
    full = order_images(scores)
    assert full.tolist() == [1, 4, 0, 2, 5, 3, 6]  # ties by index
    for k in range(0, 9):
        assert order_images(scores, k).tolist() == full[:k].tolist()


def test_top_regions_is_exact_and_chunk_independent():
    rng = np.random.default_rng(3)
    feats = rng.normal(size=(50, 4)).astype(np.float32)
    q = rng.normal(size=(2, 4)).astype(np.float32)
    ids, sc = top_regions(q, feats, 7, chunk=6)
    want = np.argsort(-(q @ feats.T), axis=1)[:, :7]
    assert ids.tolist() == want.tolist()
    np.testing.assert_allclose(sc, np.take_along_axis(q @ feats.T, want, 1), rtol=1e-6)
    ids_all, _ = top_regions(q, feats, 100)
    assert ids_all.shape == (2, 50)


def test_inconsistent_inputs_are_refused():
    with pytest.raises(ValueError, match="offsets"):
        best_region_scores(np.zeros((1, 2), np.float32), FEATURES, np.array([0, 2, 4]))
    with pytest.raises(ValueError, match="must be"):
        best_region_scores(np.zeros((1, 3), np.float32), FEATURES, OFFSETS)


def test_images_from_regions_ranks_each_image_at_its_first_candidate():
    # Regions 0-1: image 0, image 1 none, regions 2-4: image 2 (OFFSETS); -1 pads.
    ids = np.array([[3, 0, 4, 1, -1], [1, -1, -1, -1, -1], [-1, -1, -1, -1, -1]])
    got = images_from_regions(ids, OFFSETS)
    assert [g.tolist() for g in got] == [[2, 0], [0], []]
    assert [g.tolist() for g in images_from_regions(ids, OFFSETS, top=1)] == [[2], [0], []]
    # The exact candidates give rank_images' order (best region per image).
    q = np.array([[0.6, 0.8]], np.float32)
    exact, _ = top_regions(q, FEATURES, len(FEATURES))
    assert images_from_regions(exact, OFFSETS)[0].tolist() == rank_images(q, FEATURES, OFFSETS)[0].order[:2].tolist()
    with pytest.raises(ValueError, match="outside"):
        images_from_regions(np.array([[5]]), OFFSETS)
