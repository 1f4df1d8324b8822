"""The JAX device a measurement runs on: its name and its allocator's peak.

JAX cannot reset its allocator's statistics, so the peak is the process's peak so far: a check
that wants one peak per configuration runs them in increasing order of memory, or reads the
growth.  On a CPU, JAX reports no allocator statistics (None).
"""

from __future__ import annotations

import jax

__all__ = ["device_name", "peak_memory_mib"]


def device_name() -> str:
    """The first device's kind (``NVIDIA H100 80GB HBM3``, ``cpu``) and its platform."""
    dev = jax.devices()[0]
    return f"{getattr(dev, 'device_kind', dev)} ({dev.platform})"


def peak_memory_mib() -> float | None:
    """The first device's peak bytes in use since the process started, in MiB (None: not reported)."""
    stats = jax.devices()[0].memory_stats() if hasattr(jax.devices()[0], "memory_stats") else None
    if not stats or "peak_bytes_in_use" not in stats:
        return None
    return stats["peak_bytes_in_use"] / 2**20
