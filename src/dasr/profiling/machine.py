"""What a benchmark records about the machine and the process: CPU, usable threads, peak memory."""

from __future__ import annotations

import os
import platform
import resource
import sys


def _cpuinfo_field(name: str, cpuinfo: str | None = None) -> str | None:
    """The first ``name : value`` line's value in /proc/cpuinfo (``cpuinfo``: its text; None reads
    the file); None where there is no such file or line (not Linux)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                cpuinfo = f.read()
        except OSError:
            return None
    line = next((ln for ln in cpuinfo.splitlines() if ln.startswith(name)), None)
    return None if line is None else line.partition(":")[2].strip()


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``; elsewhere what :mod:`platform` knows)."""
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


# The instruction-set flags that decide which kernels and dtypes run (oneDNN's ISA, bfloat16).
SIMD_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_flags(cpuinfo: str | None = None) -> list[str]:
    """Which of :data:`SIMD_FLAGS` this CPU has (``/proc/cpuinfo``; elsewhere none known).

    Args:
      cpuinfo: the text of /proc/cpuinfo; None reads it.
    """
    have = set((_cpuinfo_field("flags", cpuinfo) or "").split())
    return [flag for flag in SIMD_FLAGS if flag in have]


def usable_cpus() -> int:
    """CPU threads this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def maxrss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024
