"""The data-only unpickler of the revisited ground truth."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from dasr.eval.datasets.safe_pickle import load_data_pickle


class _Runs:
    """Unpickling this calls ``os.system`` with the plain ``pickle.load``."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_a_global_outside_the_data_types_is_refused_before_anything_runs(tmp_path, protocol):
    witness = tmp_path / "ran"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps([1, _Runs(f"touch {witness}")], protocol=protocol))
    with pytest.raises(pickle.UnpicklingError, match="refused global"):
        load_data_pickle(path)
    assert not witness.exists()
    path.write_bytes(pickle.dumps({"f": eval}, protocol=protocol))  # a builtin function: code too
    with pytest.raises(pickle.UnpicklingError, match="refused global builtins.eval"):
        load_data_pickle(path)


class _ObjectArrayFromMemory:
    """Unpickles through an allowed numpy function, asking for object pointers made of raw bytes."""

    def __reduce__(self):
        return (np.zeros(1).__reduce_ex__(5)[0], (b"\x01" * 8, np.dtype("O"), (1,), "C"))


def test_allowed_numpy_functions_with_refused_arguments_are_malformed_data(tmp_path):
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps({"a": _ObjectArrayFromMemory()}, protocol=5))
    with pytest.raises(pickle.UnpicklingError, match="malformed data"):
        load_data_pickle(path)
    path.write_bytes(pickle.dumps({"a": [1, (2.5, "x")], "b": {3}, "c": np.arange(3)}, protocol=2))
    loaded = load_data_pickle(path)
    assert loaded["a"] == [1, (2.5, "x")] and loaded["b"] == {3} and loaded["c"].tolist() == [0, 1, 2]
