"""The matmul peak probe, GPU helpers on a CPU, machine and timing helpers."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from dasr.profiling.gpu import GpuMemory, backprop_op_placement, gpus
from dasr.profiling.machine import cpu_flags, maxrss_mib, usable_cpus
from dasr.profiling.peak import matmul_peak
from dasr.profiling.timing import Summary, summarise, wait


def test_matmul_peak_is_a_positive_rate_from_its_runs():
    peak = matmul_peak("float32", 128, budget_s=0.2, min_runs=3, max_runs=5)
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


@pytest.mark.parametrize("shape", [(), (3,), (2, 3)])
def test_wait_takes_bfloat16_tensors_of_every_rank(shape):
    """bfloat16 is what ``auto`` picks on AVX512_BF16 CPUs and GPUs: the bench times it."""
    import jax.numpy as jnp
    import ml_dtypes

    wait(tf.cast(tf.ones(shape), tf.bfloat16))
    wait([jnp.ones(shape, jnp.bfloat16), np.ones(shape, ml_dtypes.bfloat16)])


def test_cpu_flags_reads_the_flags_line():
    info = "processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx avx2 fma avx512f avx512_bf16 sse4_1\n"
    assert cpu_flags(info) == ["avx", "avx2", "fma", "avx512f", "avx512_bf16"]
    assert cpu_flags("flags\t\t: fpu sse2\n") == [] and cpu_flags("") == []


def test_matmul_peak_on_jax_times_the_same_product():
    peak = matmul_peak("bfloat16", 64, budget_s=0.1, min_runs=2, max_runs=3, chain=2, framework="jax")
    assert (peak.dtype, peak.n, peak.chain) == ("bfloat16", 64, 2) and peak.device  # JAX's device name
    np.testing.assert_allclose(peak.gflops, 2 * 2 * 64 ** 3 / peak.best_s / 1e9)
