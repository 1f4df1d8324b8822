"""Which compute dtype the backprop uses on this machine: bfloat16 only where hardware computes it.

bfloat16 halves the backprop's time where the hardware has bf16 arithmetic units: NVIDIA GPUs
of compute capability 8.0 and up (Ampere, Hopper, ...) and x86 CPUs with AVX512_BF16 or AMX.
Elsewhere (a GTX 1080 Ti is 6.1, a V100 7.0, most CPUs) bf16 is emulated, slower than float32,
so ``auto`` gives float32 there.  The boxes bf16 gives match float32's at IoU >= 0.95
(``make bench`` measures it).

The rule itself (:func:`auto_dtype`) takes the capabilities as arguments, so that it is tested
with made-up machines; :func:`gpu_compute_capabilities` and :func:`cpu_has_bf16` read the real
ones, through the active Keras backend (the GPU machine has JAX and no TensorFlow).
"""

from __future__ import annotations

import functools
import os

import keras

from dasr.errors import InputError
from dasr.profiling.machine import cpu_flags

BACKEND = keras.backend.backend()
if BACKEND == "tensorflow":
    import tensorflow as tf
elif BACKEND == "jax":
    import jax

# NVIDIA compute capability from which GPUs have bfloat16 tensor cores (Ampere).
MIN_BF16_COMPUTE_CAPABILITY = (8, 0)
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# oneDNN's instruction-set caps (ONEDNN_MAX_CPU_ISA) below its first one with bfloat16 arithmetic.
ONEDNN_ISAS_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")
DTYPES = ("float32", "bfloat16", "float16", "float64")


def cpu_has_bf16(cpuinfo: str | None = None, max_isa: str | None = None) -> bool:
    """True when this x86 CPU computes bfloat16 natively (AVX512_BF16 or AMX), and oneDNN may use it.

    ``ONEDNN_MAX_CPU_ISA`` makes oneDNN (TensorFlow's CPU kernels) run as if the CPU had only that
    instruction set: capped below AVX512_CORE_BF16, bfloat16 is emulated (AVX512_CORE) or has no
    convolution at all (AVX2), so it is not native then.

    Args:
      cpuinfo: the text of /proc/cpuinfo; None reads it (no file: False).
      max_isa: oneDNN's cap; None reads ``ONEDNN_MAX_CPU_ISA`` (unset: no cap).
    """
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA", "") if max_isa is None else max_isa).strip().upper()
    return cap not in ONEDNN_ISAS_WITHOUT_BF16 and any(flag in cpu_flags(cpuinfo) for flag in CPU_BF16_FLAGS)


@functools.cache
def bf16_unavailable() -> str | None:
    """Why the active backend cannot run a bfloat16 convolution on this machine (None: it can).

    Found by running one: TensorFlow's oneDNN kernels have none below AVX512_CORE (on a CPU
    without AVX-512 with oneDNN on, or with ``ONEDNN_MAX_CPU_ISA=AVX2``); JAX computes bfloat16
    on any CPU.
    """
    if BACKEND != "tensorflow":
        return None
    x = tf.ones((1, 4, 4, 1), tf.bfloat16)
    try:
        tf.nn.conv2d(x, tf.ones((1, 1, 1, 1), tf.bfloat16), 1, "SAME").numpy()
    except tf.errors.OpError:
        cap = os.environ.get("ONEDNN_MAX_CPU_ISA")
        return ("TensorFlow has no bfloat16 convolution on this CPU"
                + (f" (oneDNN limited to {cap} by ONEDNN_MAX_CPU_ISA)" if cap else ""))
    return None


def _parse_capability(value) -> tuple[int, int]:
    """(major, minor) from TensorFlow's tuple or JAX's ``"9.0"`` string."""
    if isinstance(value, str):
        major, _, minor = value.partition(".")
        return int(major), int(minor or 0)
    major, minor = value
    return int(major), int(minor)


def gpu_compute_capabilities() -> list[tuple[int, int]]:
    """CUDA compute capabilities of the GPUs the active backend sees (empty: none).

    A GPU whose capability the backend does not report counts as (0, 0): no bf16.
    """
    if BACKEND == "tensorflow":
        gpus = tf.config.list_physical_devices("GPU")
        return [_parse_capability(tf.config.experimental.get_device_details(g).get("compute_capability", (0, 0)))
                for g in gpus]
    if BACKEND == "jax":
        return [_parse_capability(getattr(d, "compute_capability", "0.0"))
                for d in jax.devices() if d.platform == "gpu"]
    return []


def boxes_on_device_here() -> bool:
    """Whether Eq. 4 runs on the device with the backprop (only boxes come back): on a GPU.  On a
    CPU the NumPy float64 moments are as fast and keep stores bit for bit."""
    return bool(gpu_compute_capabilities())


def auto_dtype(gpu_capabilities: list[tuple[int, int]], cpu_bf16: bool) -> str:
    """The rule: bfloat16 where the device that runs the backprop computes it, else float32.

    Args:
      gpu_capabilities: (major, minor) CUDA compute capability per visible GPU; with any GPU the
        backprop runs on the GPU, so the CPU does not matter then.
      cpu_bf16: whether the CPU has AVX512_BF16 / AMX (used only without a GPU).

    Returns:
      ``bfloat16`` or ``float32``.
    """
    if gpu_capabilities:
        return "bfloat16" if min(gpu_capabilities) >= MIN_BF16_COMPUTE_CAPABILITY else "float32"
    return "bfloat16" if cpu_bf16 else "float32"


def resolve_dtype(dtype: str) -> str:
    """``auto`` -> :func:`auto_dtype` of this machine; any other dtype name -> its canonical name.

    Raises:
      ValueError: not ``auto`` nor one of :data:`DTYPES`, or ``bfloat16`` where the backend has no
        bfloat16 convolution (:func:`bf16_unavailable`).
    """
    if dtype == "auto":
        return auto_dtype(gpu_compute_capabilities(), cpu_has_bf16())
    name = keras.backend.standardize_dtype(dtype)
    if name not in DTYPES:
        raise InputError(f"backprop dtype must be auto or one of {DTYPES}, got {dtype!r}")
    if name == "bfloat16" and bf16_unavailable():
        raise InputError(f"backprop dtype bfloat16: {bf16_unavailable()}; use float32, or the JAX backend "
                         "(dasr --backend jax), which computes bfloat16 on any CPU")
    return name


def enable_compilation_cache(folder) -> bool:
    """Turn on JAX's persistent compilation cache in ``folder`` (nothing to do on TensorFlow).

    JAX compiles the forward pass and the backprop once per input shape (seconds each on a GPU);
    the cache keeps the compiled programs across processes, so a second run, or each worker of a
    distributed run on the same machine, starts without recompiling.

    Args:
      folder: the cache folder (created by JAX when it first writes).

    Returns:
      Whether a cache was turned on (True on JAX).
    """
    if BACKEND != "jax":
        return False
    jax.config.update("jax_compilation_cache_dir", str(folder))
    # Cache every program: the small per-shape ones add up to the start-up time too.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return True

