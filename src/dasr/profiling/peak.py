"""The hardware floor: the measured throughput of a large square matmul (TensorFlow or JAX).

The peak is measured, not read from a data sheet: the best of several timed runs of an
``n x n`` matmul in the given dtype, after one untimed run (tracing or compiling, first-touch
page faults).  On a GPU the product is chained ``chain`` times inside one compiled function so
that the launch overhead does not count; reading one element of the result waits for the device.
A matmul does ``2 · n³`` FLOP.  TensorFlow runs float32 matmuls on a GPU in TF32 by default, so
its float32 "peak" there is the TF32 peak; JAX's float32 follows ``jax_default_matmul_precision``
(set it to ``highest`` for full float32).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

@dataclass(frozen=True)
class MatmulPeak:
    """One peak measurement.

    Attributes:
      dtype: ``float32`` or ``bfloat16`` (any TensorFlow float dtype).
      n: side of the square matrices.
      chain: matmuls per timed call.
      device: TensorFlow device string, e.g. ``/CPU:0``.
      best_s, median_s: seconds per timed call.
      runs: timed calls.
      gflops: ``2 · n³ · chain / best_s / 10⁹``.
    """

    dtype: str
    n: int
    chain: int
    device: str
    best_s: float
    median_s: float
    runs: int
    gflops: float


def matmul_peak(dtype: str, n: int, device: str = "/CPU:0", chain: int = 1, budget_s: float = 3.0,
                min_runs: int = 3, max_runs: int = 50, framework: str | None = None) -> MatmulPeak:
    """Achievable GFLOP/s of an ``n x n`` matmul.

    Args:
      dtype: compute dtype.
      n: matrix side (2048 on a CPU and 8192 on a GPU are large enough to reach the peak).
      device: where to run it (TensorFlow's device string; JAX runs on its default device and
        records that device's name instead).
      chain: matmuls chained per call (10 on a GPU).
      budget_s: keep timing runs (after ``min_runs``) while under this many seconds.
      min_runs, max_runs: bounds on the number of timed runs.
      framework: ``tensorflow`` or ``jax`` (None: ``KERAS_BACKEND``, else TensorFlow).

    Returns:
      The :class:`MatmulPeak`.

    Raises:
      ValueError: ``n``, ``chain`` or ``min_runs`` below 1, or ``max_runs < min_runs``.
    """
    if n < 1 or chain < 1 or min_runs < 1 or max_runs < min_runs:
        raise ValueError(f"need n, chain, min_runs >= 1 and max_runs >= min_runs; got n={n}, chain={chain}, "
                         f"min_runs={min_runs}, max_runs={max_runs}")
    framework = framework or os.environ.get("KERAS_BACKEND", "tensorflow")
    run, dtype_name, device = (_jax_runner if framework == "jax" else _tensorflow_runner)(dtype, n, chain, device)
    run()  # trace or compile, and warm up
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or (time.perf_counter() - start < budget_s and len(times) < max_runs):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    best = min(times)
    return MatmulPeak(dtype=dtype_name, n=int(n), chain=int(chain), device=device, best_s=best,
                      median_s=float(np.median(times)), runs=len(times), gflops=2.0 * n ** 3 * chain / best / 1e9)


def _tensorflow_runner(dtype: str, n: int, chain: int, device: str) -> tuple[Callable[[], None], str, str]:
    """(one timed call that waits for its result, the dtype's name, the device)."""
    import tensorflow as tf

    with tf.device(device):
        a = tf.cast(tf.random.stateless_normal((n, n), seed=(1, 0)), dtype)
        # Scaled so that a chain of products neither overflows nor underflows.
        b = tf.cast(tf.random.stateless_normal((n, n), seed=(2, 0)) / math.sqrt(n), dtype)

    @tf.function
    def product(x, y):
        c = x
        for _ in range(chain):
            c = tf.matmul(c, y)
        return c[0, 0]

    def run() -> None:
        with tf.device(device):
            product(a, b).numpy()

    return run, str(tf.as_dtype(dtype).name), device


def _jax_runner(dtype: str, n: int, chain: int, device: str) -> tuple[Callable[[], None], str, str]:
    """:func:`_tensorflow_runner` on JAX's default device."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.PRNGKey(1), (n, n)).astype(dtype)
    b = (jax.random.normal(jax.random.PRNGKey(2), (n, n)) / math.sqrt(n)).astype(dtype)

    @jax.jit
    def product(x, y):
        c = x
        for _ in range(chain):
            c = c @ y
        return c[0, 0]

    def run() -> None:
        product(a, b).block_until_ready()

    dev = jax.devices()[0]
    return run, str(jnp.dtype(dtype).name), str(getattr(dev, "device_kind", dev))
