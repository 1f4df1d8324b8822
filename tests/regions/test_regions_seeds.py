"""Seeds on the activation map: local maxima (DASR) and above-mean cells (DASR*)."""

from __future__ import annotations

import numpy as np

from dasr.regions import above_mean_seeds, activation_map, find_seeds, local_maxima_seeds


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
