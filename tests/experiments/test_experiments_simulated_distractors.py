"""The simulated database of the search-at-scale benchmark, on hand-made data."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture

from dasr.eval.datasets.common import Benchmark, Query
from dasr.experiments import simulated_distractors as scale


def test_search_scale_map_maps_only_its_own_collection(tmp_path):
    """simulated_distractors.map_at: the run's image numbering (collection A, collection B, distractors)
    back to one collection's benchmark; B's images and the distractors are never relevant to A."""
    # Collection B: 3 database images, its store holds them as b2, b0, b1; its images follow
    # 2 images of collection A in the run's numbering (first_image = 2).
    bench = Benchmark("b", tmp_path, ("b0", "b1", "b2"), (Query("q", "q.jpg", None, positives=(1,)),), "instance")
    real = scale.RealSet(bench, store=None, queries=np.zeros((1, 4), np.float32),
                         to_bench=np.array([2, 0, 1]), first_image=2)
    # Run images 0, 1 are A's, 2..4 are B's (store order b2, b0, b1), 5+ distractors.
    # b1 (the positive) is run image 4: ranked first -> AP@1 = 1; ranked third -> 1/3.
    assert scale.map_at(real, [np.array([4, 0, 5, 2, 3])], k=1) == pytest.approx(1.0)
    assert scale.map_at(real, [np.array([0, 5, 4, 1, 2])], k=50) == pytest.approx(1 / 3)
    # An A image at the position of B's positive index (1) must not count as relevant.
    assert scale.map_at(real, [np.array([1, 0, 5, 6, 7])], k=50) == pytest.approx(0.0)


def test_distractor_images_hold_19_regions_after_the_real_ones():
    real = np.array([0, 2, 5])
    np.testing.assert_array_equal(scale.database_offsets(real, 40), [0, 2, 5, 24, 43, 45])
    np.testing.assert_array_equal(scale.database_offsets(real, 0), real)
    # The first 30 rows: the real images, then the first distractor image cut at row 30.
    np.testing.assert_array_equal(scale.prefix_offsets(scale.database_offsets(real, 40), 30), [0, 2, 5, 24, 30])


def _mixture(d: int = 4) -> GaussianMixture:
    rng = np.random.default_rng(0)
    return GaussianMixture(2, covariance_type="diag", random_state=0).fit(rng.normal(size=(50, d)))


def test_the_distractor_stream_is_deterministic_and_unit_length():
    g = _mixture()
    a, b = scale.sample_chunk(g, 100, 3, 0), scale.sample_chunk(g, 100, 3, 0)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-6)
    assert not np.array_equal(a, scale.sample_chunk(g, 100, 3, 1))  # chunks differ
    assert not np.array_equal(a, scale.sample_chunk(g, 100, 4, 0))  # seeds differ


def test_a_smaller_database_s_whole_chunks_begin_a_larger_one(tmp_path, monkeypatch):
    monkeypatch.setattr(scale, "CHUNK", 8)  # several chunks in a tiny file
    g = _mixture()
    real = np.eye(4, dtype=np.float32)[:3]
    small, large = tmp_path / "small.npy", tmp_path / "large.npy"
    scale.write_database(small, real, g, 20, 5, log=lambda _: None)
    scale.write_database(large, real, g, 30, 5, log=lambda _: None)
    s, big = scale.RowFile(small), scale.RowFile(large)
    assert s.shape == (23, 4) and big.shape == (33, 4)
    np.testing.assert_array_equal(s.range(0, 3 + 16), big.range(0, 3 + 16))  # two whole chunks of 8
    assert not np.array_equal(s.range(19, 23), big.range(19, 23))  # the partial chunk is drawn anew
    np.testing.assert_array_equal(s.range(0, 3), real)  # the real rows first, exactly (float16 holds 0/1)
    rows = np.array([22, 0, 7])
    np.testing.assert_array_equal(s.rows(rows), s.range(0, 23)[rows])
    np.testing.assert_array_equal(s.sample(rows), s.range(0, 23)[rows])


def test_fit_space_keeps_the_top_directions_and_their_variance_share():
    rng = np.random.default_rng(1)
    # Variance 100 along axis 0, 1 along axis 1, 0 along axis 2.
    x = np.c_[10 * rng.standard_normal(500), rng.standard_normal(500), np.zeros(500)] + 3.0
    mean, proj, kept = scale.fit_space(x, 1)
    np.testing.assert_allclose(mean, x.mean(0))
    assert abs(abs(proj[0, 0]) - 1) < 1e-3 and proj.shape == (3, 1)
    var = x.var(0)
    assert kept == pytest.approx(var[0] / var.sum(), rel=1e-3)
