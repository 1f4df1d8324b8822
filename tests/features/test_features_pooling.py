"""Tests for dasr.features.pooling on tiny hand-computed feature maps."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dasr.features.pooling import (
    boxes_to_cells,
    crow,
    gap,
    gem,
    mac,
    pool_boxes,
    pool_regions,
    global_descriptor,
    rmac,
    rmac_region_vectors,
    rmac_regions,
    valid_part,
)


def _toy_map() -> np.ndarray:
    # (H=2, W=3, C=2): channel 0 = 0..5 row-major, channel 1 = 10 * channel 0.
    c0 = np.arange(6, dtype=np.float32).reshape(2, 3)
    return np.stack([c0, 10 * c0], axis=-1)


# ----------------------------------------------------------------- boxes_to_cells


def test_boxes_to_cells_hand_values():
    boxes = np.array(
        [
            [0, 0, 64, 64],  # exactly 2x2 cells
            [10, 10, 40, 20],  # touches columns 0-1, row 0
            [100, 90, 1000, 1000],  # clipped at the bottom-right
            [64, 64, 64, 64],  # degenerate on a border -> centre cell (2, 2)
            [500, 500, 600, 600],  # fully outside -> centre clipped to last cell
        ],
        dtype=np.float32,
    )
    cells = boxes_to_cells(boxes, stride=32, fmap_shape=(4, 5))
    assert cells.dtype == np.int64
    np.testing.assert_array_equal(
        cells,
        [
            [0, 2, 0, 2],
            [0, 1, 0, 2],
            [2, 4, 3, 5],
            [2, 3, 2, 3],
            [3, 4, 4, 5],
        ],
    )


def test_boxes_to_cells_tolerates_round_off_and_fractional_stride():
    # 64.0000001 px should not add a third column; 16.5 px stride -> 33 px = 2 cells.
    cells = boxes_to_cells(
        np.array([[0, 0, 64.0000001, 63.9999999], [16.5, 0, 33, 33]]), 32, (4, 4)
    )
    np.testing.assert_array_equal(cells[0], [0, 2, 0, 2])
    cells = boxes_to_cells(np.array([[16.5, 0, 33, 33]]), 16.5, (4, 4))
    np.testing.assert_array_equal(cells, [[0, 2, 1, 2]])


def test_boxes_to_cells_always_non_empty_and_inside():
    rng = np.random.default_rng(0)
    xy = rng.uniform(-50, 400, size=(200, 2))
    wh = rng.uniform(0, 200, size=(200, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1)
    cells = boxes_to_cells(boxes, 32, (7, 9))
    r0, r1, c0, c1 = cells.T
    assert np.all((0 <= r0) & (r0 < r1) & (r1 <= 7))
    assert np.all((0 <= c0) & (c0 < c1) & (c1 <= 9))


def test_boxes_to_cells_empty_and_errors():
    assert boxes_to_cells(np.zeros((0, 4)), 32, (3, 3)).shape == (0, 4)
    with pytest.raises(ValueError):
        boxes_to_cells(np.array([[10, 0, 5, 5]]), 32, (3, 3))  # x2 < x1
    with pytest.raises(ValueError):
        boxes_to_cells(np.array([[0, 0, 5, 5]]), 0, (3, 3))
    with pytest.raises(ValueError):
        boxes_to_cells(np.array([[0, 0, np.nan, 5]]), 32, (3, 3))
    with pytest.raises(ValueError):
        boxes_to_cells(np.array([0, 0, 5, 5]), 32, (3, 3))


# ------------------------------------------------------------------ pool_regions


def test_pool_regions_avg_and_max_hand_values():
    fmap = _toy_map()
    cells = np.array([[0, 2, 0, 3], [0, 1, 1, 3], [1, 2, 0, 2], [1, 2, 2, 3]])
    avg = pool_regions(fmap, cells, "avg")
    assert avg.dtype == np.float32 and avg.shape == (4, 2)
    np.testing.assert_allclose(avg[:, 0], [2.5, 1.5, 3.5, 5.0])
    np.testing.assert_allclose(avg[:, 1], [25.0, 15.0, 35.0, 50.0])
    mx = pool_regions(fmap, cells, "max")
    np.testing.assert_allclose(mx[:, 0], [5, 2, 4, 5])
    np.testing.assert_allclose(mx[:, 1], [50, 20, 40, 50])


def test_pool_regions_avg_matches_brute_force_on_all_ranges():
    rng = np.random.default_rng(1)
    fmap = rng.normal(size=(4, 5, 3)).astype(np.float32)
    cells = np.array(
        [
            (r0, r1, c0, c1)
            for r0 in range(4)
            for r1 in range(r0 + 1, 5)
            for c0 in range(5)
            for c1 in range(c0 + 1, 6)
        ]
    )
    got = pool_regions(fmap, cells, "avg")
    want = np.stack([fmap[a:b, c:d].mean(axis=(0, 1)) for a, b, c, d in cells])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    got_max = pool_regions(fmap, cells, "max")
    want_max = np.stack([fmap[a:b, c:d].max(axis=(0, 1)) for a, b, c, d in cells])
    np.testing.assert_array_equal(got_max, want_max)


def test_pool_regions_empty_and_errors():
    fmap = _toy_map()
    assert pool_regions(fmap, np.zeros((0, 4), dtype=int)).shape == (0, 2)
    with pytest.raises(ValueError):
        pool_regions(fmap, np.array([[0, 0, 0, 1]]))  # empty rows
    with pytest.raises(ValueError):
        pool_regions(fmap, np.array([[0, 3, 0, 1]]))  # beyond H
    with pytest.raises(ValueError):
        pool_regions(fmap, np.array([[0, 1, 0, 1]]), mode="sum")
    with pytest.raises(ValueError):
        pool_regions(fmap[0], np.array([[0, 1, 0, 1]]))


# ------------------------------------------------------------- global poolings


def test_gap_and_mac():
    fmap = _toy_map()
    np.testing.assert_allclose(gap(fmap), [2.5, 25.0])
    np.testing.assert_allclose(mac(fmap), [5.0, 50.0])
    assert gap(fmap).dtype == np.float32


def test_rmac_regions_square_map_hand_values():
    # 7x7, L=3: l=1 one 7x7; l=2 side 4 at 0,3; l=3 side 3 at 0,2,4.
    expected = [[0, 7, 0, 7]]
    expected += [[r, r + 4, c, c + 4] for r in (0, 3) for c in (0, 3)]
    expected += [[r, r + 3, c, c + 3] for r in (0, 2, 4) for c in (0, 2, 4)]
    np.testing.assert_array_equal(rmac_regions(7, 7, 3), expected)


def test_rmac_regions_rectangular_maps():
    # H=7, W=10: overlaps 1 - b/7 for b = 3/(steps-1) -> best is 2 regions at l=1.
    reg = rmac_regions(7, 10, 3)
    assert len(reg) == 1 * 2 + 2 * 3 + 3 * 4
    np.testing.assert_array_equal(reg[:2], [[0, 7, 0, 7], [0, 7, 3, 10]])
    # W=21: overlaps -1, 0, 1/3, 1/2, ... -> 1/3 is closest to 0.4 -> 4 regions at l=1.
    reg = rmac_regions(7, 21, 1)
    np.testing.assert_array_equal(reg[:, 2], [0, 4, 9, 14])
    np.testing.assert_array_equal(reg[:, 3] - reg[:, 2], [7, 7, 7, 7])
    # Transposed map -> transposed grid.
    np.testing.assert_array_equal(rmac_regions(21, 7, 2), _transpose_grid(rmac_regions(7, 21, 2)))
    for h, w in [(1, 1), (2, 3), (5, 40), (13, 9)]:
        reg = rmac_regions(h, w, 4)
        assert np.all(reg[:, 0] >= 0) and np.all(reg[:, 1] <= h)
        assert np.all(reg[:, 2] >= 0) and np.all(reg[:, 3] <= w)
        assert np.all(reg[:, 1] > reg[:, 0]) and np.all(reg[:, 3] > reg[:, 2])
    with pytest.raises(ValueError):
        rmac_regions(0, 3)


def _transpose_grid(reg: np.ndarray) -> np.ndarray:
    # Within each scale the grid is ordered row-major; transposing swaps the
    # roles of rows and columns, so re-sort by (scale side, new row, new col).
    t = reg[:, [2, 3, 0, 1]]
    side = t[:, 1] - t[:, 0]
    order = np.lexsort((t[:, 2], t[:, 0], -side))
    return t[order]


def test_rmac_hand_values():
    # Single positive channel: every region MAC normalises to 1 -> sum = #regions.
    fmap = np.arange(1, 10, dtype=np.float32).reshape(3, 3, 1)
    assert rmac_regions(3, 3, 2).shape[0] == 5  # whole map + four 2x2 corners
    np.testing.assert_allclose(rmac(fmap, L=2), [5.0])
    np.testing.assert_allclose(rmac(fmap, L=2, include_global=True), [6.0])
    # Two channels on a 2x2 map with L=1: a single region (the map) -> l2(MAC).
    fmap = np.array([[[3, 0], [0, 1]], [[0, 4], [1, 1]]], dtype=np.float32)
    np.testing.assert_allclose(rmac(fmap, L=1), [0.6, 0.8], rtol=1e-6)


def test_rmac_matches_brute_force():
    rng = np.random.default_rng(2)
    fmap = rng.uniform(0, 1, size=(5, 8, 4)).astype(np.float32)
    want = np.zeros(4)
    for r0, r1, c0, c1 in rmac_regions(5, 8, 3):
        v = fmap[r0:r1, c0:c1].max(axis=(0, 1)).astype(np.float64)
        want += v / np.linalg.norm(v)
    np.testing.assert_allclose(rmac(fmap, L=3), want, rtol=1e-5)


def test_rmac_region_whitening_hand_values():
    """Each region: l2, minus the mean, times the projection, l2 again, then the sum (Tolias et al.)."""
    fmap = np.array([[[3, 0], [0, 1]], [[0, 4], [1, 1]]], dtype=np.float32)  # one region (L=1): MAC (3, 4)
    np.testing.assert_allclose(rmac_region_vectors(fmap, L=1), [[0.6, 0.8]])
    shift = {"mean": np.array([0.6, 0.0]), "projection": np.diag([1.0, 2.0]), "eigenvalues": np.ones(2)}
    np.testing.assert_allclose(rmac(fmap, L=1, region_whitening=shift), [0.0, 1.0], atol=1e-7)  # (0, 1.6) -> l2
    swap = {"mean": np.zeros(2), "projection": np.array([[0.0, 1.0], [1.0, 0.0]]), "eigenvalues": np.ones(2)}
    np.testing.assert_allclose(rmac(fmap, L=1, region_whitening=swap), [0.8, 0.6], rtol=1e-6)
    to_one = {"mean": np.zeros(2), "projection": np.ones((2, 1)), "eigenvalues": np.ones(1)}
    np.testing.assert_allclose(rmac(fmap, L=1, region_whitening=to_one), [1.0], rtol=1e-6)  # 1.4 -> l2 -> 1
    # Several regions: each is whitened before the sum (whitening the sum would differ).
    rng = np.random.default_rng(5)
    fmap = rng.uniform(0, 1, size=(5, 8, 3)).astype(np.float32)
    params = {"mean": rng.normal(size=3) * 0.1, "projection": rng.normal(size=(3, 3)), "eigenvalues": np.ones(3)}
    want = np.zeros(3)
    for r0, r1, c0, c1 in rmac_regions(5, 8, 3):
        v = fmap[r0:r1, c0:c1].max(axis=(0, 1)).astype(np.float64)
        w = (v / np.linalg.norm(v) - params["mean"]) @ params["projection"]
        want += w / np.linalg.norm(w)
    np.testing.assert_allclose(rmac(fmap, L=3, region_whitening=params), want, rtol=1e-5)
    np.testing.assert_allclose(global_descriptor(fmap, "rmac", params), want, rtol=1e-5)
    with pytest.raises(ValueError, match="rmac only"):
        global_descriptor(fmap, "mac", params)


def test_crow_hand_values():
    # H=1, W=2, C=2: X(0,0) = [1, 0], X(0,1) = [1, 2].
    fmap = np.array([[[1, 0], [1, 2]]], dtype=np.float32)
    s0, s1 = (1 / math.sqrt(10)) ** 0.5, (3 / math.sqrt(10)) ** 0.5  # (S'/||S'||_2)^(1/2)
    w0, w1 = math.log(1.5 / 1.0), math.log(1.5 / 0.5)  # Q = [1, 0.5]
    want = [w0 * (s0 * 1 + s1 * 1), w1 * (s1 * 2)]
    np.testing.assert_allclose(crow(fmap), want, rtol=1e-5)
    # a = b = 1: spatial weight S'/||S'||_1 = [0.25, 0.75].
    want1 = [w0 * (0.25 + 0.75), w1 * (0.75 * 2)]
    np.testing.assert_allclose(crow(fmap, a=1, b=1), want1, rtol=1e-5)


def test_crow_zero_map_and_dead_channel():
    np.testing.assert_array_equal(crow(np.zeros((2, 2, 3), np.float32)), 0)
    fmap = np.zeros((2, 2, 3), np.float32)
    fmap[..., 0] = 1.0
    fmap[0, 0, 1] = 2.0
    out = crow(fmap)
    assert np.all(np.isfinite(out))
    assert out[2] == 0.0  # never-active channel contributes nothing
    assert out[1] > 0  # rare channel gets a large idf-like weight
    with pytest.raises(ValueError):
        crow(fmap, a=0)


def test_pool_boxes_averages_the_cells_a_pixel_box_covers():
    fmap = _toy_map()  # channel 0: [[0, 1, 2], [3, 4, 5]]
    # Stride 10: pixels [10, 30) x [0, 20) are columns 1-2 of both rows -> mean of 1, 2, 4, 5.
    out = pool_boxes(fmap, np.array([[10, 0, 30, 20], [0, 0, 10, 10]]), 10)
    np.testing.assert_allclose(out[:, 0], [3.0, 0.0])
    np.testing.assert_allclose(out[:, 1], [30.0, 0.0])
    np.testing.assert_allclose(pool_boxes(fmap, np.array([[10, 0, 30, 20]]), 10, "max")[0], [5.0, 50.0])
    assert pool_boxes(fmap, np.zeros((0, 4)), 10).shape == (0, 2)


def test_valid_part_drops_the_cells_of_the_padding_only():
    fmap = np.zeros((4, 5, 1))
    # A 33 x 20 image (width x height) at stride 16 covers 3 columns (ceil 33/16) and 2 rows.
    assert valid_part(fmap, (33, 20), 16).shape == (2, 3, 1)
    assert valid_part(fmap, (80, 64), 16).shape == (4, 5, 1)


def test_gem_of_a_dead_region_beside_a_strong_one_is_its_floor_not_nan():
    """A region of zeros next to large activations: GeM is the floor 1e-6 exactly (running sums
    of cubes would cancel to noise, or below zero and NaN)."""
    fmap = np.zeros((6, 6, 2), np.float32)
    fmap[:3, :3] = [3e4, 1.0]
    got = pool_regions(fmap, np.array([[3, 6, 3, 6], [3, 6, 0, 6], [0, 3, 0, 3]]), "gem")
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got[0], [1e-6, 1e-6], rtol=1e-5)
    np.testing.assert_allclose(got[1], [1e-6, 1e-6], rtol=1e-5)
    np.testing.assert_allclose(got[2], [3e4, 1.0], rtol=1e-6)


def test_gem_is_the_cubic_mean_between_the_mean_and_the_max():
    fmap = _toy_map()  # channel 0: [[0, 1, 2], [3, 4, 5]]
    got = gem(fmap)
    want0 = ((1e-18 + 1 + 8 + 27 + 64 + 125) / 6) ** (1 / 3)  # max(0, 1e-6) ** 3 = 1e-18
    np.testing.assert_allclose(got, [want0, 10 * want0], rtol=1e-6)
    assert gap(fmap)[0] < got[0] < mac(fmap)[0]
    # Region GeM: the same formula inside each range (through the integral image).
    cells = np.array([[0, 2, 1, 3], [1, 2, 0, 1]])
    np.testing.assert_allclose(pool_regions(fmap, cells, "gem")[:, 0], [((1 + 8 + 64 + 125) / 4) ** (1 / 3), 3.0],
                               rtol=1e-6)
