"""The matmul peak probe, GPU helpers on a CPU, machine and timing helpers."""

from __future__ import annotations

import time

import numpy as np
import pytest
import tensorflow as tf

from dasr.profiling.gpu import GpuMemory, backprop_op_placement, gpus
from dasr.profiling.machine import maxrss_mib, usable_cpus
from dasr.profiling.peak import matmul_peak
from dasr.profiling.timing import Summary, summarise, wait


def test_matmul_peak_is_a_positive_rate_from_its_runs():
    t0 = time.perf_counter()
    peak = matmul_peak("float32", 128, budget_s=0.2, min_runs=3, max_runs=5)
    assert time.perf_counter() - t0 < 2.0
    assert (peak.dtype, peak.n, peak.chain, peak.device) == ("float32", 128, 1, "/CPU:0")
    assert 3 <= peak.runs <= 5
    assert 0 < peak.best_s <= peak.median_s
    np.testing.assert_allclose(peak.gflops, 2 * 128 ** 3 / peak.best_s / 1e9)
    with pytest.raises(ValueError, match="max_runs"):
        matmul_peak("float32", 8, min_runs=4, max_runs=2)


@pytest.mark.skipif(bool(gpus()), reason="checks the behaviour without a GPU")
def test_gpu_helpers_without_a_gpu():
    memory = GpuMemory()
    memory.reset()
    assert memory.peak_mib() is None
    with pytest.raises(RuntimeError, match="no GPU"):
        backprop_op_placement()


def test_machine_and_timing_helpers():
    assert usable_cpus() >= 1
    assert maxrss_mib() > 10  # this process holds TensorFlow
    assert summarise([3.0, None, 1.0, 2.0]) == Summary(2.0, 2.0, 1.0, 3.0, float(np.std([1, 2, 3])), 3)
    assert summarise([None]) is None
    wait({"a": tf.ones((2, 3)), "b": [tf.zeros((0, 4)), np.ones(2)]})  # nested, empty and host values
