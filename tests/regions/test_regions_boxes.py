"""The one box IoU, best-match IoU, greedy NMS and the fixed-box squares on hand-computed boxes."""

from __future__ import annotations

import numpy as np
import pytest

from dasr.regions import authors_integer_boxes, best_iou, box_iou, fixed_boxes, nms


def test_nms_known_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 5]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    # IoU(0,1) = 81/119 = 0.68; IoU(3,0) = 0.5; IoU(3,1) = 36/(50+100-36) = 0.32
    assert nms(boxes, scores, 0.3).tolist() == [3, 2]
    assert nms(boxes, scores, 0.6).tolist() == [3, 0, 2]
    assert nms(boxes, scores, 0.7).tolist() == [3, 0, 1, 2]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.3).tolist() == []


def test_box_iou_hand_values():
    a = np.array([[0, 0, 2, 2], [0, 0, 0, 5]], dtype=float)  # second box has zero area
    b = np.array([[1, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6]], dtype=float)
    iou = box_iou(a, b)
    assert iou.shape == (2, 3)
    assert iou[0, 0] == pytest.approx(1 / 7)  # inter 1, union 4 + 4 - 1
    assert iou[0, 1] == pytest.approx(1.0) and iou[0, 2] == 0.0
    assert np.all(iou[1] == 0.0) and box_iou(a[1:], a[1:])[0, 0] == 0.0  # zero area: no NaN
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 3)
    assert box_iou([0, 0, 4, 4], [1, 1, 3, 3])[0, 0] == pytest.approx(4 / 16)  # a single box


def test_best_iou_takes_the_best_candidate_per_reference():
    ref = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [100, 100, 101, 101]], float)
    cand = np.array([[0, 0, 10, 5], [0, 0, 10, 10], [25, 20, 35, 30]], float)
    np.testing.assert_allclose(best_iou(ref, cand), [1.0, 50 / 150, 0.0])
    np.testing.assert_array_equal(best_iou(ref, np.zeros((0, 4))), [0, 0, 0])
    assert best_iou(np.zeros((0, 4)), cand).shape == (0,)


def test_nms_never_keeps_two_boxes_above_the_threshold():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 50, (60, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 30, (60, 2))], 1)
    scores = rng.uniform(size=60)
    for beta in (0.1, 0.3, 0.7):
        keep = nms(boxes, scores, beta)
        iou = box_iou(boxes[keep], boxes[keep])
        np.fill_diagonal(iou, 0)
        assert iou.max() <= beta
        # Every dropped box overlaps a kept box of higher score by more than beta.
        for d in np.setdiff1d(np.arange(60), keep):
            better = keep[scores[keep] > scores[d]]
            assert (box_iou(boxes[d], boxes[better])[0] > beta).any()
        assert np.all(np.diff(scores[keep]) <= 0)  # by decreasing score


def test_fixed_boxes_centre_each_square_on_its_seed_cell():
    # Seed (row 1, col 2) at stride 32: cell centre x = 2.5 * 32 = 80, y = 1.5 * 32 = 48.
    boxes, ellipses = fixed_boxes(np.array([[1, 2], [0, 0]]), 32, 20.0)
    np.testing.assert_array_equal(boxes, [[70, 38, 90, 58], [6, 6, 26, 26]])
    np.testing.assert_array_equal(ellipses, [[80, 48, 10, 10, 0], [16, 16, 10, 10, 0]])
    # Another seed stride moves the centres, not the side.
    boxes16, _ = fixed_boxes(np.array([[1, 2]]), 16, 20.0)
    np.testing.assert_array_equal(boxes16, [[30, 14, 50, 34]])
    assert fixed_boxes(np.zeros((0, 2), int), 32, 20.0)[0].shape == (0, 4)


def test_authors_integer_boxes_truncate_like_their_estimate_ellipse():
    # Axis-aligned ellipse centred at x = 10.5, y = 20.5 (pixel centres (10, 20)), semi-axes 3.7, 2.2:
    # x: int(-3.7) + 10 = 7 .. int(3.7) + 10 = 13; y: int(-2.2) + 20 = 18 .. 22.
    boxes = authors_integer_boxes(np.array([[10.5, 20.5, 3.7, 2.2, 0.0]]), (100, 100))
    np.testing.assert_array_equal(boxes, [[7, 18, 13, 22]])
    # Rotated by 90 degrees: the long axis is vertical.
    boxes = authors_integer_boxes(np.array([[10.5, 20.5, 3.7, 2.2, np.pi / 2]]), (100, 100))
    np.testing.assert_array_equal(boxes, [[8, 17, 12, 23]])
    # Clipped to the last pixel index (not the edge): 0 .. width - 1.
    boxes = authors_integer_boxes(np.array([[1.0, 98.9, 5.0, 5.0, 0.0]]), (100, 100))
    np.testing.assert_array_equal(boxes, [[0, 93, 5, 99]])
