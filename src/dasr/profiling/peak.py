"""The hardware floor: the measured throughput of a large square matmul (TensorFlow).

The peak is measured, not read from a data sheet: the best of several timed runs of an
``n x n`` ``tf.matmul`` in the given dtype on the given device, after one untimed run (tracing,
first-touch page faults).  On a GPU the product is chained ``chain`` times inside one
``tf.function`` so that the launch overhead does not count; reading one element of the result
waits for the device.  A matmul does ``2 · n³`` FLOP.  On a GPU TensorFlow runs float32 matmuls
in TF32 by default, so the float32 "peak" is then the TF32 peak.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import tensorflow as tf


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
                min_runs: int = 3, max_runs: int = 50) -> MatmulPeak:
    """Achievable GFLOP/s of an ``n x n`` matmul.

    Args:
      dtype: compute dtype.
      n: matrix side (2048 on a CPU and 8192 on a GPU are large enough to reach the peak).
      device: where to run it.
      chain: matmuls chained per call (10 on a GPU).
      budget_s: keep timing runs (after ``min_runs``) while under this many seconds.
      min_runs, max_runs: bounds on the number of timed runs.

    Returns:
      The :class:`MatmulPeak`.

    Raises:
      ValueError: ``n``, ``chain`` or ``min_runs`` below 1, or ``max_runs < min_runs``.
    """
    if n < 1 or chain < 1 or min_runs < 1 or max_runs < min_runs:
        raise ValueError(f"need n, chain, min_runs >= 1 and max_runs >= min_runs; got n={n}, chain={chain}, "
                         f"min_runs={min_runs}, max_runs={max_runs}")
    with tf.device(device):
        a = tf.cast(tf.random.stateless_normal((n, n), seed=(1, 0)), dtype)
        # Scaled so that a chain of products neither overflows nor underflows.
        b = tf.cast(tf.random.stateless_normal((n, n), seed=(2, 0)) / math.sqrt(n), dtype)

        @tf.function
        def run(x, y):
            c = x
            for _ in range(chain):
                c = tf.matmul(c, y)
            return c[0, 0]

        run(a, b).numpy()  # trace + warm-up
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < min_runs or (time.perf_counter() - start < budget_s and len(times) < max_runs):
            t0 = time.perf_counter()
            run(a, b).numpy()
            times.append(time.perf_counter() - t0)
    best = min(times)
    return MatmulPeak(dtype=str(tf.as_dtype(dtype).name), n=int(n), chain=int(chain), device=device,
                      best_s=best, median_s=float(np.median(times)), runs=len(times),
                      gflops=2.0 * n ** 3 * chain / best / 1e9)
