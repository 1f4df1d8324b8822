"""Keras backends: ``dasr --backend``, the backend recorded in a store, and stores across backends.

A ResNet-50 with random weights saved to a file is extracted on TensorFlow (this process) and
on JAX (a child process: Keras fixes its backend per process).  The two stores must agree to
rounding, the JAX store must be searchable from TensorFlow, and a resume or a merge must not mix
the two backends' regions in one store.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import subprocess_env, write_collection
from tolerances import assert_boxes_close, assert_close_to_max, forward_bound
from dasr.cli.backend import BackendError, requested_backend, select_backend
from dasr.store import RegionStore, StoreWriter, config_differences
from dasr.store.errors import StoreConfigError

needs_jax = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
OPTIONS = ("--max-side", "128", "--method", "dasr-star", "--quiet")


@pytest.mark.parametrize("argv, want", [
    (["--backend", "jax", "extract", "x"], "jax"),
    (["--debug", "--backend=tensorflow", "search"], "tensorflow"),
    (["extract", "--backend", "jax"], None),  # after the subcommand: not the top-level option
    (["--backend"], None),  # no value: argparse reports it
    ([], None),
])
def test_requested_backend(argv, want) -> None:
    assert requested_backend(argv) == want


def test_select_backend_refuses_unknown_and_switching() -> None:
    import keras

    with pytest.raises(BackendError, match="choose one of tensorflow, jax"):
        select_backend("torch")
    other = "jax" if keras.backend.backend() == "tensorflow" else "tensorflow"
    with pytest.raises(BackendError, match=f"already loaded with the {keras.backend.backend()} backend"):
        select_backend(other)
    select_backend(keras.backend.backend())  # the loaded one: nothing to do


def test_cli_reports_backend_errors_on_one_line(dasr_cli) -> None:
    rc, _, stderr = dasr_cli("--backend", "torch", "weights")
    assert rc == 2 and stderr.strip() == "dasr: error: --backend torch: choose one of tensorflow, jax"


@pytest.fixture(scope="module")
def two_backends(tmp_path_factory, dasr_cli, dasr_home) -> dict[str, Path]:
    """The same images and weights file extracted on TensorFlow and on JAX."""
    import keras

    from dasr.model.architectures import classifier_model

    work = tmp_path_factory.mktemp("backends")
    images = work / "images"
    write_collection(images, seed=7, count=3, sizes=[(160, 120), (128, 128), (120, 150)])
    keras.utils.set_random_seed(3)
    weights = work / "random.weights.h5"
    classifier_model("resnet50", None).save_weights(weights)
    tf_store, jax_store = work / "tf.h5", work / "jax.h5"
    rc, _, stderr = dasr_cli("extract", images, "--out", tf_store, "--weights", weights, *OPTIONS)
    assert rc == 0, stderr
    env = {**subprocess_env(dasr_home), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-m", "dasr.cli", "--backend", "jax", "extract", os.fspath(images),
                           "--out", os.fspath(jax_store), "--weights", os.fspath(weights), *OPTIONS],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    # The JAX run kept its compiled programs for the next run (dasr.model.device).
    assert any((dasr_home / "jax-compilation-cache").iterdir())
    return {"images": images, "weights": weights, "tf": tf_store, "jax": jax_store}


@needs_jax
def test_store_records_backend_and_agrees_across_backends(two_backends) -> None:
    tf, jx = RegionStore.open(two_backends["tf"]), RegionStore.open(two_backends["jax"])
    assert (tf.config["backend"], jx.config["backend"]) == ("tensorflow", "jax")
    assert config_differences(tf.config, jx.config) == {}  # the backend alone differs, and is volatile
    assert tf.images == jx.images
    np.testing.assert_array_equal(tf.offsets, jx.offsets)
    assert tf.offsets[-1] > len(tf.images)  # several regions per image: a real comparison
    np.testing.assert_array_equal(tf.arrays["seeds"], jx.arrays["seeds"])
    # float32 on two backends, two kernel sets: a value within round-off of the threshold tau can
    # move a box edge by up to one input pixel (128 / 160 is the smallest scale of the images).
    assert_boxes_close(jx.arrays["boxes"], tf.arrays["boxes"], scale=128 / 160)
    assert_close_to_max(jx.arrays["features"], tf.arrays["features"], forward_bound(), axis=1, what="features")


@needs_jax
def test_jax_store_is_searchable_from_tensorflow(two_backends, dasr_cli) -> None:
    query = two_backends["images"] / "img00.jpg"
    found = {}
    for name in ("tf", "jax"):
        rc, stdout, stderr = dasr_cli("search", "--index", two_backends[name], "--query", query,
                                      "--box", "10,10,120,100", "--weights", two_backends["weights"], "--json")
        assert rc == 0, stderr
        found[name] = json.loads(stdout)
    assert [r["image"] for r in found["jax"]["results"]] == [r["image"] for r in found["tf"]["results"]]


@needs_jax
def test_resume_and_merge_refuse_to_mix_backends(two_backends, dasr_cli, tmp_path) -> None:
    copy = tmp_path / "jax.h5"
    shutil.copy(two_backends["jax"], copy)
    rc, _, stderr = dasr_cli("extract", two_backends["images"], "--out", copy, "--weights",
                             two_backends["weights"], *OPTIONS)
    assert rc == 2 and "made with the jax Keras backend, this run uses tensorflow" in stderr
    stored = RegionStore.open(copy)
    with pytest.raises(StoreConfigError, match="--backend jax"):
        StoreWriter(copy, {**stored.config, "backend": "tensorflow"}, stored.root)
    rc, _, stderr = dasr_cli("merge", two_backends["tf"], two_backends["jax"], "--out", tmp_path / "m.h5")
    assert rc == 2 and 'backend: first="tensorflow" this="jax"' in stderr
    assert not (tmp_path / "m.h5").exists()
