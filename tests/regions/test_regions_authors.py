"""The authors' region rules: PRM's peaks, the 95th-percentile threshold, and the rule in RegionConfig."""

from __future__ import annotations

import numpy as np
import pytest

from dasr.errors import InputError
from dasr.regions import RegionConfig, ellipses_from_maps, find_seeds
from dasr.regions.seeds import authors_peaks


def test_peaks_drop_borders_and_break_ties_by_scan_order():
    amap = np.array([
        [9, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0],
        [0, 0, 5, 0, 2, 2, 0],
        [0, 0, 0, 0, 0, 0, 0],
        [0, 3, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 8],
    ], np.float32)
    seeds, scores = authors_peaks(amap, mean_filter=False)
    # 9 and 8 are on the border: dropped; (2, 4) / (2, 5) tie: the first in row-major order wins.
    assert seeds.tolist() == [[2, 2], [4, 1], [2, 4]]
    np.testing.assert_array_equal(scores, [5, 3, 2])
    # a border maximum still suppresses its interior neighbours
    amap[1, 1] = 4
    assert [1, 1] not in authors_peaks(amap, mean_filter=False)[0].tolist()


def test_dasr_keeps_peaks_at_or_above_the_mean_and_dasr_star_keeps_all():
    amap = np.zeros((5, 5), np.float32)
    amap[1, 1], amap[3, 3], amap[1, 3] = 4.0, 0.2, 0.5  # mean = 4.7 / 25 = 0.188
    amap[3, 1] = 0.1
    star, _ = find_seeds(amap, "dasr-star", rule="authors")
    dasr, _ = find_seeds(amap, "dasr", rule="authors")
    assert star.tolist() == [[1, 1], [1, 3], [3, 3], [3, 1]]
    assert dasr.tolist() == [[1, 1], [1, 3], [3, 3]]  # 0.1 < mean
    # the paper's DASR* instead takes every cell above the mean, borders included
    paper, _ = find_seeds(amap, "dasr-star")
    assert paper.tolist() == [[1, 1], [1, 3], [3, 3]]


def test_peaks_must_be_positive():
    amap = -np.ones((4, 4), np.float32)
    amap[1, 1] = -0.5
    assert len(authors_peaks(amap, mean_filter=False)[0]) == 0


def test_percentile_threshold_and_unweighted_box():
    """100 cells, 5 of them above the 95th percentile: their centres' moments, no unit-square term."""
    m = np.zeros((1, 10, 10), np.float32)
    m[0, 2, 2:6] = [1.0, 2.0, 3.0, 4.0]     # four cells on one row
    m[0, 7, 3] = 9.0                         # and one far below
    boxes, ellipses, kept = ellipses_from_maps(m, rule="authors")
    # 95th percentile of 95 zeros and [1, 2, 3, 4, 9]: position 94.05 -> 0 + 0.05 * (1 - 0) = 0.05
    assert kept[0] == pytest.approx(5 / 100)
    xs = np.array([2.5, 3.5, 4.5, 5.5, 3.5])
    ys = np.array([2.5, 2.5, 2.5, 2.5, 7.5])
    hw, hh = 2 * xs.std(), 2 * ys.std()
    want = np.clip([xs.mean() - hw, ys.mean() - hh, xs.mean() + hw, ys.mean() + hh], 0, 10)  # clipped to the map
    assert want[1] == 0
    np.testing.assert_allclose(boxes[0], want, rtol=1e-5)
    # the paper's rule (τ = 0.1 of the maximum 9 keeps values >= 0.9: the same 5 cells) adds 1/12
    paper, _, _ = ellipses_from_maps(m, tau=0.1)
    assert paper[0, 2] - paper[0, 0] > boxes[0, 2] - boxes[0, 0]


def test_percentile_drops_weak_pixels_the_paper_keeps():
    m = np.linspace(1.0, 2.0, 100, dtype=np.float32).reshape(1, 10, 10)
    _, _, kept_authors = ellipses_from_maps(m, rule="authors")
    _, _, kept_paper = ellipses_from_maps(m, tau=0.1)
    assert kept_paper[0] == 1.0 and kept_authors[0] == pytest.approx(0.05)


def test_all_zero_map_gives_empty_region():
    boxes, _, kept = ellipses_from_maps(np.zeros((1, 4, 4), np.float32), rule="authors")
    assert kept[0] == 0 and (boxes == 0).all()


def test_rule_in_region_config():
    assert RegionConfig().rule == "paper"
    assert RegionConfig(rule="authors").as_dict()["rule"] == "authors"
    with pytest.raises(InputError, match="rule must be one of"):
        RegionConfig(rule="nope")
    with pytest.raises(InputError, match="unweighted"):
        RegionConfig(rule="authors", weighted_moments=True)
