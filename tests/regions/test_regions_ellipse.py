"""Moment ellipses and boxes of thresholded maps (Eq. 4) on hand-made masks."""

from __future__ import annotations

import numpy as np
import pytest

from dasr.regions import ellipses_from_maps


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


@pytest.mark.parametrize("rule", ["paper", "authors"])
def test_no_seeds_give_no_regions(rule):
    """An image without seeds (the authors' border-free peaks on a 2x2 top map) has zero maps."""
    boxes, ellipses, kept = ellipses_from_maps(np.zeros((0, 64, 48), np.float32), rule=rule)
    assert boxes.shape == (0, 4) and ellipses.shape == (0, 5) and kept.shape == (0,)
