"""The stored maps of the tiny net (a regression fixture) and every kernel set agree within round-off.

tests/model/data/backprop_maps.npz holds the tiny net's weights, image, seeds and the maps that
the TensorFlow backprop gave when the fixture was made (make_backprop_fixture.py), one per
configuration of ``FIXTURE_CASES``.  Another CPU runs other kernels (oneDNN on AVX-512, Eigen on
AVX2), so the maps are compared at the bounds of tests/tolerances.py, not bit for bit: the float32
and bfloat16 maps lie within ``backprop_bound`` of the float64 reference, and any two kernel sets
(the stored maps, this process's, and a child process's with TensorFlow's oneDNN kernels turned
on and off) within twice that.  A changed rule (a dropped term, a wrong sign, a shifted cell)
moves the maps by a share of their maximum, thousands of times the float32 bound.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from backprop_reference import FIXTURE_CASES, backprop_maps, reference_maps, tiny_net_with_weights
from conftest import skip_without_bf16
from tolerances import assert_close_to_max, backprop_bound, between_kernel_sets

HERE = Path(__file__).resolve().parent
FIXTURE = HERE / "data" / "backprop_maps.npz"
on_tensorflow = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the fixture is TensorFlow's")


def load_fixture() -> tuple[list[np.ndarray], np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(weights, image, seeds, maps per case) of the stored fixture."""
    data = np.load(FIXTURE)
    weights = [data[f"weight{i}"] for i in range(sum(k.startswith("weight") for k in data.files))]
    return weights, data["image"], data["seeds"], {n: data[f"maps_{n}"] for n in FIXTURE_CASES}


def case_dtype(case: str) -> str:
    return FIXTURE_CASES[case].get("dtype", "float32")


@pytest.fixture(scope="module")
def fixture_and_maps():
    weights, image, seeds, stored = load_fixture()
    model = tiny_net_with_weights(weights)
    return model, image, seeds, stored, backprop_maps(model, image, seeds)


@on_tensorflow
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_stored_and_computed_maps_lie_within_the_bound_of_the_float64_reference(fixture_and_maps, dtype):
    skip_without_bf16(dtype)
    model, image, seeds, stored, got = fixture_and_maps
    want, _ = reference_maps(model, image, seeds)
    bound = backprop_bound(dtype)
    assert got[dtype].dtype == np.float32 and want.max() > 0
    assert_close_to_max(got[dtype], want, bound, what=f"{dtype} here")
    assert_close_to_max(stored[dtype], want, bound, what=f"{dtype} stored")


@on_tensorflow
@pytest.mark.parametrize("case", list(FIXTURE_CASES))
def test_tensorflow_maps_match_the_stored_ones_within_round_off(fixture_and_maps, case):
    skip_without_bf16(case_dtype(case))
    _, _, _, stored, got = fixture_and_maps
    assert got[case].shape == stored[case].shape and got[case].dtype == np.float32
    assert_close_to_max(got[case], stored[case], between_kernel_sets(backprop_bound(case_dtype(case))), what=case)


@on_tensorflow
@pytest.mark.parametrize("onednn", ["0", "1"])
def test_the_other_kernel_set_matches_the_stored_maps(tmp_path, onednn):
    """TensorFlow's oneDNN kernels on and off (oneDNN is TensorFlow's default only on CPUs with
    AVX512_VNNI/BF16 or AMX): both kernel sets run on whichever CPU runs the suite."""
    out = tmp_path / "maps.npz"
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_ENABLE_ONEDNN_OPTS": onednn}
    proc = subprocess.run([sys.executable, str(HERE / "backprop_child.py"), str(FIXTURE), str(out)],
                          cwd=HERE, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    stored = load_fixture()[3]
    with np.load(out) as data:
        assert str(data["backend"]) == "tensorflow"
        # bfloat16 is left out only where this kernel set has no bfloat16 convolution (oneDNN below AVX512_CORE).
        assert {f"maps_{case}" for case in FIXTURE_CASES if case_dtype(case) == "float32"} <= set(data.files)
        for case in [c for c in FIXTURE_CASES if f"maps_{c}" in data.files]:
            bound = between_kernel_sets(backprop_bound(case_dtype(case)))
            assert_close_to_max(data[f"maps_{case}"], stored[case], bound, what=f"{case}, oneDNN={onednn}")
