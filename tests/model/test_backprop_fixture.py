"""The TensorFlow backprop reproduces the stored maps of the tiny net bit for bit.

tests/model/data/backprop_maps.npz was written (make_backprop_fixture.py) by the TensorFlow
backprop before it became backend-neutral; any change to the TF op sequence, dtype handling or
seed batching shows up here as a changed bit.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from backprop_reference import FIXTURE_CASES, backprop_maps, tiny_net_with_weights

FIXTURE = Path(__file__).with_name("data") / "backprop_maps.npz"


def load_fixture() -> tuple[list[np.ndarray], np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(weights, image, seeds, maps per case) of the stored fixture."""
    data = np.load(FIXTURE)
    weights = [data[f"weight{i}"] for i in range(sum(k.startswith("weight") for k in data.files))]
    return weights, data["image"], data["seeds"], {n: data[f"maps_{n}"] for n in FIXTURE_CASES}


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the fixture is TensorFlow's")
def test_tensorflow_maps_are_bit_identical_to_stored():
    weights, image, seeds, want = load_fixture()
    got = backprop_maps(tiny_net_with_weights(weights), image, seeds)
    for name in FIXTURE_CASES:
        assert got[name].dtype == np.float32
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
