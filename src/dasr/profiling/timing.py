"""Timing helpers: waiting for asynchronous device results, summarising repeated measurements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np


def wait(value: Any) -> None:
    """Blocks until ``value`` (a device tensor, an array, or a dict/list/tuple of them) is computed.

    A GPU runs asynchronously: a timer stopped when a call returns measures the launch, not the
    work.  Reading one element of each tensor waits for the computation that produced it
    without copying the whole tensor to the host.
    """
    if isinstance(value, Mapping):
        for v in value.values():
            wait(v)
        return
    if isinstance(value, (list, tuple)):
        for v in value:
            wait(v)
        return
    if hasattr(value, "block_until_ready"):  # a JAX array
        value.block_until_ready()
        return
    ndim = len(getattr(value, "shape", ()))
    # A one-element slice, not a scalar: NumPy cannot take a bfloat16 TensorFlow scalar (its
    # __array__ gives a NumPy scalar), while a one-element tensor converts in every dtype.
    first = value[(slice(0, 1),) * ndim] if ndim and min(value.shape) > 0 else value
    first.numpy() if hasattr(first, "numpy") else np.asarray(first)


@dataclass(frozen=True)
class Summary:
    """Summary of repeated measurements (e.g. seconds per image over the timed images)."""

    mean: float
    median: float
    min: float
    max: float
    std: float
    count: int


def summarise(values: Iterable[float | None]) -> Summary | None:
    """The :class:`Summary` of the values that are not None; None when there are none."""
    v = np.asarray([x for x in values if x is not None], np.float64)
    if v.size == 0:
        return None
    return Summary(float(v.mean()), float(np.median(v)), float(v.min()), float(v.max()), float(v.std()),
                   int(v.size))
