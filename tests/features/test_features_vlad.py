"""Tests for dasr.features.vlad on a hand-made 2-word, 2-d vocabulary."""

from __future__ import annotations

import numpy as np
import pytest

from dasr.features.vlad import assign, learn_codebook, learn_vlad_pca, vlad_encode, vlad_encode_many
from dasr.features.whitening import apply_pca_whitening, learn_pca_whitening

# Words c0 = (0, 0) and c1 = (4, 0).
CODEBOOK = np.array([[0.0, 0.0], [4.0, 0.0]], dtype=np.float32)
# Residuals: (1,0)->c0 (1,0); (0,2)->c0 (0,2); (4,3)->c1 (0,3); (5,0)->c1 (1,0).
FEATS = np.array([[1, 0], [0, 2], [4, 3], [5, 0]], dtype=np.float32)


def test_assign():
    np.testing.assert_array_equal(assign(FEATS, CODEBOOK), [0, 0, 1, 1])
    np.testing.assert_array_equal(assign(np.array([[2.0, 0.0]]), CODEBOOK), [0])  # tie -> 0
    with pytest.raises(ValueError):
        assign(np.zeros((2, 3)), CODEBOOK)


def test_plain_vlad_hand_values():
    # v0 = (1, 2), v1 = (1, 3) -> / sqrt(15).
    v = vlad_encode(FEATS, CODEBOOK, power=1.0, residual_normalization=False)
    assert v.shape == (4,) and v.dtype == np.float32
    np.testing.assert_allclose(v, np.array([1, 2, 1, 3]) / np.sqrt(15), rtol=1e-6)


def test_residual_normalization_hand_values():
    # Unit residuals: v0 = (1,0)+(0,1), v1 = (0,1)+(1,0) -> all 0.5.
    v = vlad_encode(FEATS, CODEBOOK, power=1.0, residual_normalization=True)
    np.testing.assert_allclose(v, [0.5, 0.5, 0.5, 0.5], rtol=1e-6)


def test_power_law_hand_values():
    # sqrt of (1, 2, 1, 3) -> (1, sqrt2, 1, sqrt3) / sqrt(7).
    v = vlad_encode(FEATS, CODEBOOK, power=0.5, residual_normalization=False)
    want = np.array([1, np.sqrt(2), 1, np.sqrt(3)]) / np.sqrt(7)
    np.testing.assert_allclose(v, want, rtol=1e-6)
    # Negative residual (3,-1) - (4,0) = (-1,-1): the sign survives the power law.
    v = vlad_encode(np.array([[3.0, -1.0]]), CODEBOOK, power=0.5)
    np.testing.assert_allclose(v, [0, 0, -1 / np.sqrt(2), -1 / np.sqrt(2)], rtol=1e-6)


def test_intra_normalization_hand_values():
    # (1,2)/sqrt5 and (1,3)/sqrt10 concatenated have norm sqrt2.
    v = vlad_encode(FEATS, CODEBOOK, power=1.0, residual_normalization=False, intra=True)
    blocks = [np.array([1, 2]) / np.sqrt(5), np.array([1, 3]) / np.sqrt(10)]
    want = np.concatenate(blocks) / np.sqrt(2)
    np.testing.assert_allclose(v, want, rtol=1e-6)


def test_empty_and_degenerate_images_give_zero_vectors():
    np.testing.assert_array_equal(vlad_encode(np.zeros((0, 2)), CODEBOOK), np.zeros(4))
    # Regions exactly on the words: all residuals are zero, no NaN.
    np.testing.assert_array_equal(vlad_encode(CODEBOOK.copy(), CODEBOOK), np.zeros(4))
    many = vlad_encode_many([FEATS, np.zeros((0, 2))], CODEBOOK, power=1.0)
    assert many.shape == (2, 4)
    np.testing.assert_allclose(many[0], 0.5, rtol=1e-6)
    np.testing.assert_array_equal(many[1], 0)
    assert vlad_encode_many([], CODEBOOK).shape == (0, 4)
    with pytest.raises(ValueError):
        vlad_encode(np.zeros((3, 5)), CODEBOOK)
    with pytest.raises(ValueError):
        vlad_encode(FEATS, CODEBOOK, power=0)


def test_learn_codebook_recovers_clusters_deterministically():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = np.concatenate([c + 0.1 * rng.normal(size=(50, 2)) for c in centres])
    cb = learn_codebook(x, k=3, seed=0)
    assert cb.shape == (3, 2) and cb.dtype == np.float32
    # Each true centre has its own word within 0.1 (cluster means of N(0, 0.1^2)).
    dist = np.linalg.norm(centres[:, None, :] - cb[None, :, :], axis=2)
    assert sorted(dist.argmin(axis=1).tolist()) == [0, 1, 2]
    assert dist.min(axis=1).max() < 0.1
    np.testing.assert_array_equal(learn_codebook(x, k=3, seed=0), cb)
    sub = learn_codebook(x, k=3, seed=1, max_points=60)
    assert sub.shape == (3, 2)
    with pytest.raises(ValueError):
        learn_codebook(np.ones((10, 2)), k=2)


def test_learn_vlad_pca_skips_empty_images():
    rng = np.random.default_rng(1)
    feats = [rng.normal(size=(rng.integers(3, 9), 2)) for _ in range(12)] + [np.zeros((0, 2))]
    vlads = vlad_encode_many(feats, CODEBOOK)
    p = learn_vlad_pca(vlads, dim=3)
    assert p["projection"].shape == (4, 3)
    np.testing.assert_allclose(p["mean"], vlads[:12].mean(axis=0), rtol=1e-5, atol=1e-7)
    y = apply_pca_whitening(vlads[:12].astype(np.float64), p)
    np.testing.assert_allclose(np.cov(y, rowvar=False), np.eye(3), atol=1e-8)


@pytest.mark.parametrize("seed", [1, 7])  # the best of 5 restarts: the 1st, the 3rd
def test_learn_codebook_restarts_one_by_one_equal_scikit_learns_own(seed, capsys):
    from sklearn.cluster import KMeans

    # Overlapping clusters: the restarts end in different local minima, so the pick among them matters.
    x = np.random.default_rng(seed).normal(size=(400, 3)).astype(np.float32)
    together = KMeans(n_clusters=8, n_init=5, max_iter=300, random_state=seed).fit(x).cluster_centers_
    got = learn_codebook(x, k=8, seed=seed, n_init=5, progress=True)
    np.testing.assert_array_equal(got, together.astype(np.float32))
    err = capsys.readouterr().err
    assert "k-means (8 words)" in err and "5/5" in err


def test_learn_pca_whitening_shows_its_passes(capsys):
    x = np.random.default_rng(0).normal(size=(50, 4))
    a = learn_pca_whitening(x, progress=True)
    assert "PCA-whitening" in capsys.readouterr().err
    b = learn_pca_whitening(x)
    np.testing.assert_array_equal(a["projection"], b["projection"])
    assert "PCA-whitening" not in capsys.readouterr().err
