"""Seeds, ellipses, boxes and NMS on hand-made maps."""

from __future__ import annotations

import numpy as np
import pytest

from dasr.regions import (RegionConfig, above_mean_seeds, activation_map, ellipses_from_maps, find_seeds,
                          local_maxima_seeds, nms)


def test_activation_map_is_channel_mean():
    top = np.arange(2 * 3 * 4, dtype=np.float32).reshape(1, 2, 3, 4)
    np.testing.assert_allclose(activation_map(top), top[0].mean(-1))


def test_local_maxima_borders_and_ties():
    amap = np.array([[5, 1, 0, 2],
                     [1, 0, 0, 2],
                     [0, 3, 0, 0]], np.float32)
    seeds, scores = local_maxima_seeds(amap)
    # (0,0)=5 corner max; (2,1)=3 border max; the tie 2/2 at (0,3),(1,3): both are maxima
    assert [tuple(s) for s in seeds] == [(0, 0), (2, 1), (0, 3), (1, 3)]
    np.testing.assert_array_equal(scores, [5, 3, 2, 2])


def test_local_maxima_ignores_zero_plateau():
    seeds, _ = local_maxima_seeds(np.zeros((3, 3), np.float32))
    assert len(seeds) == 0


def test_above_mean_seeds_sorted_by_score():
    amap = np.array([[1, 4], [2, 9]], np.float32)  # mean 4: only 9 is above (4 is not > 4)
    seeds, scores = above_mean_seeds(amap)
    assert [tuple(s) for s in seeds] == [(1, 1)]
    seeds, scores = find_seeds(np.array([[1, 5], [6, 0]], np.float32), "dasr-star", max_seeds=1)
    assert [tuple(s) for s in seeds] == [(1, 0)] and scores[0] == 6


def test_ellipse_of_a_rectangle_mask():
    # A uniform 20x10 (w x h) block at x in [30, 50), y in [40, 50): moments of a uniform
    # rectangle are w²/12 and h²/12, so the box is centre ± 2·sqrt(w²/12) = ± w/sqrt(3).
    m = np.zeros((1, 100, 100), np.float32)
    m[0, 40:50, 30:50] = 1.0
    boxes, ellipses, kept = ellipses_from_maps(m, tau=0.5)
    cx, cy = 40.0, 45.0
    hw, hh = 20 / np.sqrt(3), 10 / np.sqrt(3)
    np.testing.assert_allclose(boxes[0], [cx - hw, cy - hh, cx + hw, cy + hh], atol=1e-3)
    np.testing.assert_allclose(ellipses[0, :2], [cx, cy], atol=1e-4)
    assert ellipses[0, 2] > ellipses[0, 3]  # long axis along x
    np.testing.assert_allclose(ellipses[0, 4], 0.0, atol=1e-6)
    np.testing.assert_allclose(kept[0], 200 / 10000)


def test_threshold_tau_and_weighting():
    m = np.zeros((1, 50, 50), np.float32)
    m[0, 10, 10] = 1.0  # peak
    m[0, 10, 40] = 0.05  # below tau=0.1 of the peak: ignored
    boxes, _, _ = ellipses_from_maps(m, tau=0.1)
    # one kept pixel: a unit square -> half-width 2*sqrt(1/12)
    half = 2 * np.sqrt(1 / 12)
    np.testing.assert_allclose(boxes[0], [10.5 - half, 10.5 - half, 10.5 + half, 10.5 + half], atol=1e-5)
    m[0, 10, 40] = 0.2  # now kept: unweighted centroid halfway, weighted near the peak
    _, unweighted, _ = ellipses_from_maps(m, tau=0.1)
    _, weighted, _ = ellipses_from_maps(m, tau=0.1, weighted=True)
    assert abs(unweighted[0, 0] - 25.5) < 1e-4  # centre x
    np.testing.assert_allclose(weighted[0, 0], (10.5 * 1 + 40.5 * 0.2) / 1.2, rtol=1e-5)


def test_rotated_ellipse_box_and_clipping():
    yy, xx = np.mgrid[0:200, 0:200] + 0.5
    u = ((xx - 100) + (yy - 100)) / np.sqrt(2)
    v = ((xx - 100) - (yy - 100)) / np.sqrt(2)
    mask = ((u / 60) ** 2 + (v / 15) ** 2 <= 1).astype(np.float32)[None]
    boxes, ellipses, _ = ellipses_from_maps(mask, tau=0.5)
    np.testing.assert_allclose(ellipses[0, 2:4], [60, 15], rtol=0.03)  # semi-axes of a filled ellipse
    np.testing.assert_allclose(abs(ellipses[0, 4]), np.pi / 4, atol=0.02)
    half = np.sqrt((60**2 + 15**2) / 2)  # circumscribed rectangle of the rotated ellipse
    np.testing.assert_allclose(boxes[0], [100 - half, 100 - half, 100 + half, 100 + half], rtol=0.03)
    # a blob at the border: the box is clipped to the image
    edge = np.zeros((1, 20, 20), np.float32)
    edge[0, :, 0:3] = 1
    b, _, _ = ellipses_from_maps(edge, tau=0.5)
    assert b[0, 0] == 0 and b[0, 1] == 0 and b[0, 3] == 20


def test_all_zero_map_gives_empty_box():
    boxes, ellipses, kept = ellipses_from_maps(np.zeros((1, 8, 8), np.float32))
    assert np.all(boxes == 0) and kept[0] == 0


def test_coarse_maps_use_cell_size():
    m = np.zeros((1, 4, 4), np.float32)
    m[0, 1, 2] = 1
    boxes, _, _ = ellipses_from_maps(m, cell=8)
    centre = ((boxes[0, 0] + boxes[0, 2]) / 2, (boxes[0, 1] + boxes[0, 3]) / 2)
    np.testing.assert_allclose(centre, (20.0, 12.0))


def test_nms_known_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 5]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    # IoU(0,1) = 81/119 = 0.68; IoU(3,0) = 0.5; IoU(3,1) = 36/(50+100-36) = 0.32
    assert nms(boxes, scores, 0.3).tolist() == [3, 2]
    assert nms(boxes, scores, 0.6).tolist() == [3, 0, 2]
    assert nms(boxes, scores, 0.7).tolist() == [3, 0, 1, 2]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.3).tolist() == []


def test_region_config_validation():
    with pytest.raises(ValueError, match="method"):
        RegionConfig(method="dasr**")
    with pytest.raises(ValueError, match="tau"):
        RegionConfig(tau=1.5)
    with pytest.raises(ValueError, match="nms_iou"):
        RegionConfig(nms_iou=0.0)
    assert RegionConfig().as_dict()["tau"] == 0.1
