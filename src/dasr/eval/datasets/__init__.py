"""Benchmark loaders: one ``Benchmark`` (database + queries + ground truth) per dataset.

Every loader reads the dataset's own annotation files as published, validates them, and
returns the same data model (:mod:`dasr.eval.datasets.common`), so the search and evaluation
code never sees a dataset format:

* ``Benchmark.database``: image paths relative to ``Benchmark.root``, in a fixed order; every
  index in the ground truth (``Query.positives``, ``Query.junk``, ``Query.positive_boxes``) is
  an index into this tuple.
* ``Query.box``: ``x1, y1, x2, y2`` in the pixels of the image file as stored, or ``None`` for
  a whole-image query.
* ``Benchmark.ap``: which AP the benchmark is scored with (formulas in :mod:`dasr.eval.scoring`):
  ``'instance'`` (AP@k, Instance-160/335 style), ``'oxford'`` (trapezoid, junk removed) or
  ``'holidays'`` (trapezoid, the query itself removed from its own list).

A missing dataset raises ``DatasetMissingError`` (expected path, layout, where it is
published); a malformed annotation raises ``ValueError`` naming the file and line.

One module per family: :mod:`~dasr.eval.datasets.instance_track`,
:mod:`~dasr.eval.datasets.paris_landmarks`, :mod:`~dasr.eval.datasets.instance_gt`
(Instance-160/335), :mod:`~dasr.eval.datasets.instre`, :mod:`~dasr.eval.datasets.holidays`,
:mod:`~dasr.eval.datasets.oxford_paris`, :mod:`~dasr.eval.datasets.revisitop`,
:mod:`~dasr.eval.datasets.copy_paste` (built from the two shared sets); this module is the registry.

Registry names: ``instance-track``, ``paris-landmarks``, ``instance-160``, ``instance-335``,
``instre``, ``holidays``, ``oxford5k``, ``paris6k``, ``paris6k-subset`` (the official Paris6k lists on
the shared paris-landmarks images), ``roxford5k``, ``rparis6k``, ``copy-paste`` and
``copy-paste-feathered`` (instance-track's instances pasted onto paris-landmarks photos, hard or
feathered paste; built by ``make copy-paste`` into ``default_root(name)``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from dasr.errors import InputError
from dasr.eval.datasets.common import AP_PROTOCOLS, Benchmark, Box, DatasetMissingError, Query, default_root
from dasr.eval.datasets.copy_paste import load_copy_paste, load_copy_paste_feathered
from dasr.eval.datasets.holidays import load_holidays
from dasr.eval.datasets.instance_gt import load_instance_160, load_instance_335
from dasr.eval.datasets.instance_track import load_instance_track
from dasr.eval.datasets.instre import load_instre
from dasr.eval.datasets.oxford_paris import load_oxford5k, load_paris6k, load_paris6k_subset
from dasr.eval.datasets.paris_landmarks import load_paris_landmarks
from dasr.eval.datasets.revisitop import (REVISITED_BENCHMARKS, REVISITOP_PROTOCOL_RULES, REVISITOP_PROTOCOLS,
                                          load_roxford5k, load_rparis6k)

__all__ = ["AP_PROTOCOLS", "BENCHMARKS", "Benchmark", "Box", "DatasetMissingError", "Query", "REVISITED_BENCHMARKS",
           "REVISITOP_PROTOCOLS", "REVISITOP_PROTOCOL_RULES", "default_root", "load_benchmark", "load_copy_paste",
           "load_copy_paste_feathered", "load_holidays",
           "load_instance_160", "load_instance_335", "load_instance_track", "load_instre", "load_oxford5k",
           "load_paris6k", "load_paris6k_subset", "load_paris_landmarks", "load_roxford5k", "load_rparis6k"]

BENCHMARKS: dict[str, Callable[..., Benchmark]] = {
    "instance-track": load_instance_track,
    "paris-landmarks": load_paris_landmarks,
    "instance-160": load_instance_160,
    "instance-335": load_instance_335,
    "instre": load_instre,
    "holidays": load_holidays,
    "oxford5k": load_oxford5k,
    "paris6k": load_paris6k,
    "paris6k-subset": load_paris6k_subset,
    "roxford5k": load_roxford5k,
    "rparis6k": load_rparis6k,
    "copy-paste": load_copy_paste,
    "copy-paste-feathered": load_copy_paste_feathered,
}


def load_benchmark(name: str, root: str | Path | None = None, *, protocol: str | None = None,
                   **options: Any) -> Benchmark:
    """Loads a benchmark by registry name.

    Args:
        name: a key of ``BENCHMARKS``.
        root: the dataset folder; ``None`` uses ``default_root(name)``.
        protocol: the revisited protocol (``easy``, ``medium``, ``hard``) of ``roxford5k`` /
            ``rparis6k``; None: the loader's default (``medium``).
        **options: loader options: ``check_images`` (every loader), ``bbx_format`` and ``ap``
            for ``instre``.

    Returns:
        The benchmark.

    Raises:
        ValueError: unknown name, a ``protocol`` for a benchmark without one, or malformed
            annotations.
        TypeError: an option the loader does not take.
        DatasetMissingError: the dataset is not at ``root``.
    """
    if name not in BENCHMARKS:
        raise InputError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    if protocol is not None:
        if name not in REVISITED_BENCHMARKS:
            raise InputError(f"{name} has no protocol to choose (only {', '.join(REVISITED_BENCHMARKS)} have)")
        options["protocol"] = protocol
    return BENCHMARKS[name](default_root(name) if root is None else Path(root), **options)
