"""GPU helpers of the benchmark (TensorFlow): which backprop ops have a GPU kernel, allocator peaks.

On a machine without a GPU every helper says so (None or ``on_gpu=False``) instead of measuring.
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

GPU = "GPU:0"


def gpus() -> list:
    """The physical GPUs TensorFlow sees."""
    return tf.config.list_physical_devices("GPU")


def gpu_name() -> str | None:
    """The first GPU's device name (e.g. ``NVIDIA H200``), None without a GPU."""
    found = gpus()
    if not found:
        return None
    details = tf.config.experimental.get_device_details(found[0])
    return str(details.get("device_name", found[0].name))


def backprop_op_placement(dtypes: tuple[str, ...] = ("float32", "bfloat16")) -> dict[str, dict[str, str]]:
    """Where each TensorFlow op of the probability backprop runs, per dtype, on ``/GPU:0``.

    Soft device placement is switched off meanwhile, so that an op without a GPU kernel raises
    (reported as ``no GPU kernel (...)``) instead of silently running on the CPU.

    Args:
      dtypes: compute dtypes to try.

    Returns:
      {dtype: {op name: ``GPU`` or what went wrong}}.

    Raises:
      RuntimeError: there is no GPU.
    """
    if not gpus():
        raise RuntimeError("no GPU visible to TensorFlow")
    soft = tf.config.get_soft_device_placement()
    tf.config.set_soft_device_placement(False)
    out: dict[str, dict[str, str]] = {}
    try:
        for dt in dtypes:
            with tf.device("/GPU:0"):
                x = tf.ones((2, 8, 8, 4), dt)
                k = tf.ones((3, 3, 4, 4), dt)
                ops: dict[str, Callable[[], tf.Tensor]] = {
                    "conv2d": lambda: tf.nn.conv2d(x, k, 1, "SAME"),
                    "conv2d_transpose": lambda: tf.nn.conv2d_transpose(x, k, (2, 16, 16, 4), 2, "SAME"),
                    "avg_pool2d": lambda: tf.nn.avg_pool2d(x, 2, 2, "SAME"),
                    "AvgPoolGrad": lambda: tf.raw_ops.AvgPoolGrad(
                        orig_input_shape=[2, 16, 16, 4], grad=x, ksize=[1, 2, 2, 1],
                        strides=[1, 2, 2, 1], padding="SAME"),
                    "divide_no_nan": lambda: tf.math.divide_no_nan(x, x),
                    "reduce_sum": lambda: tf.reduce_sum(x, -1),
                }
                placed = {}
                for name, fn in ops.items():
                    try:
                        y = fn()
                    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as err:
                        # what TensorFlow raises for an op it cannot place on the GPU
                        placed[name] = f"no GPU kernel ({type(err).__name__})"
                        continue
                    placed[name] = "GPU" if "GPU" in y.device else y.device
            out[dt] = placed
    finally:
        tf.config.set_soft_device_placement(soft)
    return out


class GpuMemory:
    """The TensorFlow allocator's peak on ``GPU:0`` between :meth:`reset` and :meth:`peak_mib`."""

    def __init__(self) -> None:
        self.on_gpu = bool(gpus())

    def reset(self) -> None:
        """Starts a new peak (nothing without a GPU)."""
        if self.on_gpu:
            tf.config.experimental.reset_memory_stats(GPU)

    def peak_mib(self) -> float | None:
        """Peak allocated MiB since :meth:`reset`; None without a GPU."""
        if not self.on_gpu:
            return None
        return tf.config.experimental.get_memory_info(GPU)["peak"] / 2**20
