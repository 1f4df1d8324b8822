"""Tests for dasr.features.whitening."""

from __future__ import annotations

import os

import numpy as np
import pytest

from dasr.features.whitening import (
    apply_pca_whitening,
    l2_normalize,
    learn_pca_whitening,
    load_whitening,
    postprocess,
    save_whitening,
)


def _correlated(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = np.array(
        [[3.0, 0.0, 0.0, 0.0], [1.0, 2.0, 0.0, 0.0], [0.5, -1.0, 1.0, 0.0], [0.0, 0.3, 0.2, 0.1]]
    )
    x = rng.normal(size=(n, 4)) @ a.T + np.array([5.0, -2.0, 0.0, 1.0])
    return x.astype(np.float32), a @ a.T


def test_l2_normalize_hand_values():
    np.testing.assert_allclose(l2_normalize(np.array([3.0, 4.0])), [0.6, 0.8])
    x = np.array([[3, 0], [4, 0]], dtype=np.float32)
    np.testing.assert_allclose(l2_normalize(x, axis=0), [[0.6, 0], [0.8, 0]])
    assert l2_normalize(np.array([1, 2])).dtype == np.float32
    np.testing.assert_array_equal(l2_normalize(np.zeros((2, 3))), 0)  # no NaN


def test_hand_computed_pca_whitening():
    # Mean 0; covariance (1/(n-1)) = diag(18/3, 2/3) = diag(6, 2/3).
    x = np.array([[3, 0], [-3, 0], [0, 1], [0, -1]], dtype=np.float64)
    p = learn_pca_whitening(x)
    np.testing.assert_allclose(p["mean"], [0, 0], atol=1e-12)
    np.testing.assert_allclose(p["eigenvalues"], [6.0, 2.0 / 3.0])
    np.testing.assert_allclose(
        p["projection"], [[1 / np.sqrt(6), 0], [0, 1 / np.sqrt(2 / 3)]], atol=1e-12
    )
    y = apply_pca_whitening(np.array([3.0, 1.0]), p)
    np.testing.assert_allclose(y, [3 / np.sqrt(6), np.sqrt(1.5)])
    q = learn_pca_whitening(x, whiten=False)
    np.testing.assert_allclose(q["projection"], np.eye(2), atol=1e-12)


def test_whitened_fit_data_has_identity_covariance():
    x, cov = _correlated()
    p = learn_pca_whitening(x)
    assert p["projection"].shape == (4, 4) and p["mean"].shape == (4,)
    y = apply_pca_whitening(x.astype(np.float64), p)
    np.testing.assert_allclose(np.cov(y, rowvar=False), np.eye(4), atol=1e-8)
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-8)
    # Eigenvalues: exactly those of the sample covariance, close to the true ones.
    sample_cov = np.cov(x.astype(np.float64), rowvar=False)
    np.testing.assert_allclose(
        p["eigenvalues"], np.sort(np.linalg.eigvalsh(sample_cov))[::-1], rtol=1e-8
    )
    np.testing.assert_allclose(p["eigenvalues"], np.sort(np.linalg.eigvalsh(cov))[::-1], rtol=0.15)
    # float32 input -> float32 output.
    assert apply_pca_whitening(x, p).dtype == np.float32


def test_more_dims_than_samples_uses_svd_path():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 10))
    p = learn_pca_whitening(x)
    assert p["projection"].shape == (10, 5)  # at most n - 1
    y = apply_pca_whitening(x, p)
    np.testing.assert_allclose(np.cov(y, rowvar=False), np.eye(5), atol=1e-8)


def test_pca_without_whitening_is_a_rotation():
    x, _ = _correlated(500)
    p = learn_pca_whitening(x, whiten=False)
    proj = p["projection"]
    np.testing.assert_allclose(proj.T @ proj, np.eye(4), atol=1e-10)
    a, b = x[:2].astype(np.float64)
    ya, yb = apply_pca_whitening(np.stack([a, b]), p)
    assert np.isclose(np.linalg.norm(ya - yb), np.linalg.norm(a - b))


def test_dims_truncation_and_errors():
    x, _ = _correlated(500)
    p = learn_pca_whitening(x, dim=2)
    assert p["projection"].shape == (4, 2) and p["eigenvalues"].shape == (2,)
    full = learn_pca_whitening(x)
    np.testing.assert_allclose(
        apply_pca_whitening(x, full, dim=2), apply_pca_whitening(x, p), rtol=1e-5
    )
    assert apply_pca_whitening(x[0], p).shape == (2,)
    with pytest.raises(ValueError):
        learn_pca_whitening(x[:3], dim=3)  # > n - 1
    with pytest.raises(ValueError):
        learn_pca_whitening(x, dim=5)  # > d
    with pytest.raises(ValueError):
        learn_pca_whitening(x[:1])
    with pytest.raises(ValueError):
        learn_pca_whitening(np.ones((5, 3)))  # no variance
    with pytest.raises(ValueError):
        apply_pca_whitening(x[:, :3], p)
    with pytest.raises(ValueError):
        apply_pca_whitening(x, p, dim=3)


def test_negligible_components_are_dropped_or_floored():
    # Points on a line in 3-d: a single component has variance.
    t = np.linspace(-1, 1, 50)[:, None]
    x = t * np.array([[1.0, 2.0, 2.0]]) / 3.0
    p = learn_pca_whitening(x)
    assert p["projection"].shape == (3, 1)
    with pytest.warns(RuntimeWarning):
        q = learn_pca_whitening(x, dim=3, eps=1e-6)
    # Gain of every direction bounded by 1/sqrt(eps * lambda_max).
    gains = np.linalg.norm(q["projection"], axis=0)
    assert np.all(gains <= 1 / np.sqrt(1e-6 * q["eigenvalues"][0]) * (1 + 1e-9))
    assert np.all(np.isfinite(apply_pca_whitening(np.eye(3), q)))


def test_few_vectors_per_dimension_warn_and_enough_do_not():
    import warnings

    rng = np.random.default_rng(0)
    with pytest.warns(RuntimeWarning, match=r"learned from 30 vectors for 10 dimensions"):
        learn_pca_whitening(rng.normal(size=(30, 10)))  # 3 per dimension
    with pytest.warns(RuntimeWarning, match=r"at most 7"):
        learn_pca_whitening(rng.normal(size=(30, 10)), dim=9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        learn_pca_whitening(rng.normal(size=(40, 10)))  # 4 per dimension
        learn_pca_whitening(rng.normal(size=(30, 10)), dim=7)
        learn_pca_whitening(rng.normal(size=(30, 10)), whiten=False)  # a rotation amplifies nothing


def test_postprocess_pipeline():
    x, _ = _correlated(400)
    p = learn_pca_whitening(l2_normalize(x))
    out = postprocess(x, p)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    want = l2_normalize(apply_pca_whitening(l2_normalize(x), p))
    np.testing.assert_allclose(out, want, rtol=1e-6)
    # Scale invariance comes from the first l2.
    np.testing.assert_allclose(postprocess(7.0 * x, p), out, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(postprocess(x, None), l2_normalize(x))
    assert postprocess(x[0], p, dim=2).shape == (2,)


def test_save_load_round_trip(tmp_path):
    x, _ = _correlated(300)
    p = learn_pca_whitening(x, dim=3)
    path = tmp_path / "sub" / "whiten.npz"
    meta = {"collection": "paris6k", "layer": "conv5_block3_out", "dim": 3}
    save_whitening(path, p, meta)
    save_whitening(path, p, meta)  # overwrite in place
    q, meta2 = load_whitening(path)
    assert meta2 == meta
    for k in p:
        np.testing.assert_array_equal(p[k], q[k])
    assert os.listdir(path.parent) == ["whiten.npz"]  # no temp file left behind
    np.testing.assert_array_equal(apply_pca_whitening(x, p), apply_pca_whitening(x, q))


def test_save_rejects_bad_meta_without_leaving_files(tmp_path):
    x, _ = _correlated(100)
    p = learn_pca_whitening(x)
    with pytest.raises(TypeError):
        save_whitening(tmp_path / "w.npz", p, {"bad": object()})
    assert os.listdir(tmp_path) == []
    np.savez(tmp_path / "other.npz", a=np.zeros(2))
    with pytest.raises(ValueError):
        load_whitening(tmp_path / "other.npz")


@pytest.mark.parametrize("write, problem", [
    (lambda p: p.write_bytes(b"not a zip at all"), "not an .npz of numeric arrays"),
    (lambda p: np.savez(p, mean=np.array([object()], dtype=object), projection=np.zeros((1, 1)),
                        eigenvalues=np.ones(1), meta_json=np.array("{}")), "not an .npz of numeric arrays"),
    (lambda p: p.write_bytes(b""), "not an .npz"),
])
def test_a_file_that_is_no_whitening_is_refused_without_inviting_a_pickle_load(tmp_path, write, problem):
    path = tmp_path / "w.npz"
    write(path)
    with pytest.raises(ValueError, match=problem) as err:
        load_whitening(path)
    assert "allow_pickle" not in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize("spoil, problem", [
    (lambda p: p["projection"].__setitem__((0, 0), np.nan), "projection is not all finite"),
    (lambda p: p["mean"].__setitem__(0, np.inf), "mean is not all finite"),
    (lambda p: p["projection"].__setitem__(slice(None), 0.0), "all zero"),
])
def test_a_non_finite_or_zero_whitening_is_refused_when_opened(tmp_path, spoil, problem):
    x, _ = _correlated(100)
    params = learn_pca_whitening(x)
    spoil(params)
    save_whitening(tmp_path / "w.npz", params, {})
    with pytest.raises(ValueError, match=problem):
        load_whitening(tmp_path / "w.npz")
