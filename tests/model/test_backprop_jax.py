"""The backprop on the JAX backend agrees with TensorFlow's and with the float64 reference.

Keras fixes its backend per process: the JAX maps come from a child process
(backprop_child.py, ``KERAS_BACKEND=jax``) fed the stored fixture (the tiny net's weights,
image and seeds, and TensorFlow's maps); this process compares.  Skipped where JAX is not
installed (it is in the ``test`` extra).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backprop_reference import (AUTHORS_CASES, CONTRASTIVE_CASES, FIXTURE_CASES, authors_reference_maps, backprop_maps,
                                contrastive_reference_maps, reference_maps, tiny_net_with_weights)
from test_backprop_fixture import FIXTURE, load_fixture
from tolerances import assert_close_to_max, backprop_bound, between_kernel_sets

pytestmark = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")

HERE = Path(__file__).resolve().parent
# float32 on two backends: two kernel sets, each within the float32 bound of the float64 reference.
RTOL = between_kernel_sets(backprop_bound("float32"))


@pytest.fixture(scope="module")
def jax_maps(tmp_path_factory) -> dict[str, np.ndarray]:
    out = tmp_path_factory.mktemp("jax") / "maps.npz"
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, str(HERE / "backprop_child.py"), str(FIXTURE), str(out)],
                          cwd=HERE, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    with np.load(out) as data:
        return {k: data[k] for k in data.files}


def relative_difference(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| / max |want|."""
    return float(np.abs(got - want).max() / np.abs(want).max())


def test_child_ran_on_jax(jax_maps):
    assert str(jax_maps["backend"]) == "jax"


@pytest.mark.parametrize("case", [c for c in FIXTURE_CASES if c != "bfloat16"])
def test_jax_float32_matches_tensorflow(jax_maps, case):
    want = load_fixture()[3][case]
    got = jax_maps[f"maps_{case}"]
    assert got.shape == want.shape and got.dtype == np.float32
    assert relative_difference(got, want) <= RTOL


def test_jax_bfloat16_within_its_bound_of_the_float64_reference(jax_maps):
    """JAX computes bfloat16 on any CPU: the bfloat16 path is tested where TensorFlow emulates it."""
    weights, image, seeds, _ = load_fixture()
    want, _ = reference_maps(tiny_net_with_weights(weights), image, seeds)
    got = jax_maps["maps_bfloat16"]
    assert_close_to_max(got, want, backprop_bound("bfloat16"), what="JAX bfloat16")
    # really computed in bfloat16: off by more than float32 could be
    assert relative_difference(got, want) > backprop_bound("float32")


def test_jax_matches_float64_reference(jax_maps):
    weights, image, seeds, _ = load_fixture()
    want, masses = reference_maps(tiny_net_with_weights(weights), image, seeds)
    got = jax_maps["maps_float32"]
    bound = backprop_bound("float32")
    np.testing.assert_allclose(got, want, rtol=bound, atol=1e-6 * want.max())
    np.testing.assert_allclose(got.sum((1, 2)), masses[:, 0], rtol=bound)


def test_jax_seeds_alone_equal_seeds_together(jax_maps):
    together = jax_maps["maps_float32"][:2]
    np.testing.assert_allclose(jax_maps["alone"], together, rtol=1e-5, atol=1e-7 * together.max())


@pytest.mark.parametrize("case", list(AUTHORS_CASES))
def test_jax_authors_rule_matches_float64_reference(jax_maps, case):
    """The authors' rule on JAX (its max-pooling transpose is JAX's own vjp) against the reference."""
    weights, image, seeds, _ = load_fixture()
    want = authors_reference_maps(tiny_net_with_weights(weights), image, seeds,
                                  AUTHORS_CASES[case].get("strided_conv", "window"))
    got = jax_maps[f"maps_{case}"]
    assert want.max() > 0
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * want.max())


@pytest.mark.parametrize("case", list(CONTRASTIVE_CASES))
def test_jax_contrastive_matches_tensorflow_and_reference(jax_maps, case):
    """Contrastive excitation backprop (dasr.model.contrast): JAX against this process's backend
    (TensorFlow) within 1e-5 of the map's maximum, and against the float64 reference."""
    weights, image, seeds, _ = load_fixture()
    model = tiny_net_with_weights(weights)
    got = jax_maps[f"maps_{case}"]
    here = backprop_maps(model, image, seeds, cases=(case,))[case]
    assert got.shape == here.shape and here.max() > 0
    assert relative_difference(got, here) <= RTOL
    level = "relu1" if CONTRASTIVE_CASES[case].get("stop_stride") == 2 else "pixels"
    want = contrastive_reference_maps(model, image, seeds, level)[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * want.max())


def test_jax_contrastive_device_boxes_match_the_maps_boxes(jax_maps):
    """``backprop_ellipses`` (maps and moments in one compiled JAX step) against Eq. 4 in NumPy on
    the contrastive maps of this process's backend."""
    from dasr.regions.ellipse import ellipses_from_maps

    weights, image, seeds, _ = load_fixture()
    here = backprop_maps(tiny_net_with_weights(weights), image, seeds, cases=("contrastive",))["contrastive"]
    want = ellipses_from_maps(here, 0.1)[0]
    assert np.abs(want).max() > 1
    np.testing.assert_allclose(jax_maps["boxes_contrastive"], want, atol=1e-3)
