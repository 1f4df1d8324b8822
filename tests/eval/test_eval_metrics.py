"""Hand-computed checks of the retrieval and localization metrics."""

from __future__ import annotations

import numpy as np
import pytest

from dasr.eval import metrics as M


# --- AP@k -------------------------------------------------------------------------------------

def test_ap_at_k_truncated_and_min_differ_on_the_cut():
    rel = [1, 0, 1, 0]  # P@1 = 1, P@3 = 2/3; |R| = 3
    assert M.average_precision_at_k(rel, 3, k=2) == pytest.approx(1 / 3)
    assert M.average_precision_at_k(rel, 3, k=2, variant="min") == pytest.approx(1 / 2)
    assert M.average_precision_at_k(rel, 3, k=4) == pytest.approx((1 + 2 / 3) / 3)
    # min(k=4, |R|=3) = 3: same as truncated once k >= |R|
    assert M.average_precision_at_k(rel, 3, k=4, variant="min") == pytest.approx((1 + 2 / 3) / 3)


def test_ap_whole_list_and_k_beyond_the_list():
    rel = np.array([False, True, True])  # P@2 = 1/2, P@3 = 2/3
    expected = (1 / 2 + 2 / 3) / 2
    assert M.average_precision_at_k(rel, 2) == pytest.approx(expected)
    assert M.average_precision_at_k(rel, 2, k=100) == pytest.approx(expected)
    assert M.average_precision_at_k(rel, 2, variant="min") == pytest.approx(expected)


def test_ap_perfect_and_empty_lists():
    assert M.average_precision_at_k([1, 1, 0], 2) == pytest.approx(1.0)
    assert M.average_precision_at_k([], 5) == 0.0


def test_ap_rejects_bad_input():
    with pytest.raises(ValueError, match="num_relevant"):
        M.average_precision_at_k([0, 0], 0)
    with pytest.raises(ValueError, match="variant"):
        M.average_precision_at_k([1], 1, variant="mean")
    with pytest.raises(ValueError, match="marks 2"):
        M.average_precision_at_k([1, 1], 1)
    with pytest.raises(ValueError, match="k must be"):
        M.average_precision_at_k([1], 1, k=0)


def test_ap_variants_are_described():
    assert set(M.AP_VARIANTS) == set(M.AP_VARIANT_DESCRIPTIONS)
    assert all(M.AP_VARIANT_DESCRIPTIONS[v] for v in M.AP_VARIANTS)


# --- Oxford trapezoid ---------------------------------------------------------------------------

def test_oxford_ap_two_positives_by_hand():
    # positive 0 at rank 0: (1 + 1)/2 * 1/2 = 0.5
    # positive 1 at rank 2: (1/2 + 2/3)/2 * 1/2 = 7/24
    assert M.oxford_average_precision([0, 2], 2) == pytest.approx(0.5 + 7 / 24)
    # rank 1: (0 + 1/2)/2/2 = 1/8 ; rank 3: (1/3 + 2/4)/2/2 = 5/24
    assert M.oxford_average_precision([3, 1], 2) == pytest.approx(1 / 8 + 5 / 24)


def test_oxford_ap_missing_positive_counts_in_denominator():
    assert M.oxford_average_precision([0], 2) == pytest.approx(0.5)
    assert M.oxford_average_precision([], 3) == 0.0


def test_oxford_ap_differs_from_non_interpolated_ap():
    # same list as AP@k's [0,1,1]: non-interpolated = (1/2 + 2/3)/2 = 7/12
    # trapezoid: (0 + 1/2)/2/2 + (1/2 + 2/3)/2/2 = 1/8 + 7/24 = 5/12
    assert M.oxford_average_precision([1, 2], 2) == pytest.approx(5 / 12)


def test_oxford_ap_rejects_bad_input():
    with pytest.raises(ValueError):
        M.oxford_average_precision([0], 0)
    with pytest.raises(ValueError):
        M.oxford_average_precision([0, 1, 2], 2)
    with pytest.raises(ValueError):
        M.oxford_average_precision([1, 1], 2)


def test_ranks_without_junk_shifts_later_positives():
    ranking = [7, 3, 9, 5, 1]  # junk 3 and 5 removed -> [7, 9, 1]
    assert M.ranks_without_junk(ranking, positives=[9, 1], junk=[3, 5]).tolist() == [1, 2]
    assert M.ranks_without_junk(ranking, positives=[9, 1]).tolist() == [2, 4]
    # an id both positive and junk is junk (as in compute_ap.cpp)
    assert M.ranks_without_junk(ranking, positives=[3, 1], junk=[3]).tolist() == [3]


# --- Holidays ---------------------------------------------------------------------------------

def test_holidays_ap_skips_the_query():
    ranking = [10, 0, 11, 5, 12]  # query 10 first, positives 11 and 12
    # without the query: [0, 11, 5, 12] -> ranks 1 and 3 -> 1/8 + 5/24
    assert M.holidays_average_precision(ranking, 10, [11, 12]) == pytest.approx(1 / 8 + 5 / 24)
    # query absent from the list: no shift; ranks 1 and 3 again
    assert M.holidays_average_precision([0, 11, 5, 12], 10, [11, 12]) == pytest.approx(1 / 8 + 5 / 24)
    # query ranked after a positive: only later results move up
    assert M.holidays_average_precision([11, 10, 12], 10, [11, 12]) == pytest.approx(1.0)


def test_holidays_ap_rejects_query_in_positives():
    with pytest.raises(ValueError, match="own positives"):
        M.holidays_average_precision([1, 2], 1, [1, 2])


# --- boxes ------------------------------------------------------------------------------------

def test_localization_recall():
    rec = M.localization_recall([0.3, 0.5, 0.95])
    assert rec.shape == (9,)
    # 0.3 passes the 0.3 threshold exactly
    np.testing.assert_allclose(rec, [1, 1, 1, 2 / 3, 2 / 3, 1 / 3, 1 / 3, 1 / 3, 1 / 3])
    np.testing.assert_array_equal(M.localization_recall([], thresholds=[0.5, 0.7]), [0.0, 0.0])
    np.testing.assert_allclose(M.localization_recall([0.4, 0.6], thresholds=[0.5]), [0.5])


# --- bootstrap --------------------------------------------------------------------------------

def test_bootstrap_ci_contains_mean_and_is_reproducible():
    rng = np.random.default_rng(1)
    a = rng.uniform(0.4, 0.9, size=50)
    b = a - 0.1 + rng.normal(0, 0.05, size=50)
    mean, low, high = M.bootstrap_difference_ci(a, b, n_boot=2000, seed=3)
    assert mean == pytest.approx(float(np.mean(a - b)))
    assert low < mean < high
    assert low > 0.0  # a real 0.1 improvement is detected
    assert M.bootstrap_difference_ci(a, b, n_boot=2000, seed=3) == (mean, low, high)
    assert M.bootstrap_difference_ci(a, b, n_boot=2000, seed=4) != (mean, low, high)


def test_bootstrap_constant_difference_has_zero_width():
    mean, low, high = M.bootstrap_difference_ci([1.0, 2.0, 3.0], [0.5, 1.5, 2.5], n_boot=100)
    assert (mean, low, high) == pytest.approx((0.5, 0.5, 0.5))


def test_bootstrap_rejects_mismatched_input():
    with pytest.raises(ValueError):
        M.bootstrap_difference_ci([1.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        M.bootstrap_difference_ci([], [])


# ----------------------------------------------------------------------------- the authors' mIoU
def test_enclosing_iou_by_hand():
    from dasr.eval.metrics import enclosing_iou

    a = [[0, 0, 4, 4]]
    # overlap 2x2 = 4; enclosing box (0,0)-(6,6) = 36 -> 1/9 (true IoU: 4 / 28 = 1/7)
    b = [[2, 2, 6, 6], [0, 0, 4, 4], [1, 1, 3, 3], [5, 5, 7, 7], [4, 0, 8, 4]]
    got = enclosing_iou(a, b)[0]
    np.testing.assert_allclose(got, [1 / 9, 1.0, 4 / 16, 0.0, 0.0])
    assert enclosing_iou([[0, 0, 0, 0]], [[0, 0, 0, 0]])[0, 0] == 0.0  # empty enclosing box


def test_authors_miou_best_per_image_then_mean():
    from dasr.eval.metrics import authors_miou, best_enclosing_ious

    regions = [np.array([[0, 0, 4, 4], [2, 2, 6, 6]]), np.zeros((0, 4)), np.array([[0, 0, 2, 4]])]
    truths = [np.array([[2, 2, 6, 6]]), np.array([[0, 0, 1, 1]]), np.array([[0, 0, 4, 4], [0, 0, 2, 2]])]
    # image 0: best of 1/9 and 1; image 1: no region -> 0; image 2: max(8/16, 4/8) = 0.5
    np.testing.assert_allclose(best_enclosing_ious(regions, truths), [1.0, 0.0, 0.5])
    assert authors_miou(regions, truths) == pytest.approx(0.5)
    assert authors_miou([], []) == 0.0
    with pytest.raises(ValueError):
        best_enclosing_ious(regions, truths[:2])


def test_pooled_miou_weights_by_images():
    from dasr.eval.metrics import MIOU_IMAGES_KEY, MIOU_KEY, pooled_authors_miou

    scores = [{"ap": 1.0, MIOU_KEY: 0.5, MIOU_IMAGES_KEY: 3.0}, {"ap": 0.0, MIOU_KEY: 0.1, MIOU_IMAGES_KEY: 1.0}]
    assert pooled_authors_miou(scores) == pytest.approx((0.5 * 3 + 0.1) / 4)
    assert pooled_authors_miou([{"ap": 1.0}]) is None
