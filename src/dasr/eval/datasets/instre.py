"""INSTRE under the protocol of Iscen et al. (``gnd_instre.mat``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from dasr.errors import InputError
from dasr.eval.datasets.common import Benchmark, Query, require_images, require_path

__all__ = ["load_instre"]


def _mat_field(record: Any, field: str) -> Any:
    """A field of one MATLAB struct as ``scipy.io.loadmat`` returns it (record or mat_struct)."""
    if isinstance(record, Mapping):
        return record[field]
    if isinstance(record, np.void) or (isinstance(record, np.ndarray) and record.dtype.names):
        return record[field]
    return getattr(record, field)


def _mat_strings(value: Any) -> list[str]:
    return [str(np.asarray(s).ravel()[0]) if np.asarray(s).size else "" for s in np.ravel(value)]


def load_instre(
    root: str | Path,
    bbx_format: str = "xyxy",
    ap: str = "oxford",
    check_images: bool = True,
) -> Benchmark:
    """INSTRE under the protocol of Iscen et al. (``gnd_instre.mat``: 1,250 queries).

    Layout of ``gnd_instre.mat`` (checked on the official file by
    ``tests/eval/test_eval_official_ground_truth.py``): ``imlist`` (27,293 database image paths
    relative to ``root``: INSTRE-S1 10,511, INSTRE-S2 11,559, INSTRE-M 5,223; e.g.
    ``INSTRE-S1/01a_canada_book/001.jpg``), ``qimlist`` (1,250 query image paths: 500/500/250)
    and ``gnd``, a 1x1250 struct array with ``ok`` (1-based MATLAB indices into ``imlist``) and
    ``bbx`` (the query box, ``x1 y1 x2 y2``: every official box has ``x1 < x2`` and ``y1 < y2``
    within 1000 pixels, while read as ``x y w h`` half of them would leave the image; the
    per-image ``.txt`` files of the INSTRE release use ``x y w h``, hence ``bbx_format='xywh'``
    for a copy built from them). An optional ``junk`` field is honoured. Queries are not in the
    database.

    Args:
        root: the INSTRE folder holding ``gnd_instre.mat`` and the ``INSTRE-*`` folders.
        bbx_format: ``'xyxy'`` or ``'xywh'``: how ``gnd(i).bbx`` is stored.
        ap: ``'oxford'`` (the trapezoid AP of the INSTRE/Holidays package, default) or
            ``'instance'`` (AP@k like Instance-160).
        check_images: also check that every image file exists.

    Returns:
        The benchmark.

    Raises:
        DatasetMissingError: the folder, ``gnd_instre.mat`` or an image is missing.
        ValueError: a missing field, an index outside ``imlist`` or a bad box.
    """
    name = "instre"
    if bbx_format not in ("xyxy", "xywh"):
        raise InputError(f"bbx_format must be 'xyxy' or 'xywh', got {bbx_format!r}")
    root = Path(root)
    require_path(name, root)
    mat_path = require_path(name, root / "gnd_instre.mat")
    from scipy.io import loadmat  # here: scipy (a scikit-learn dependency) is only needed for INSTRE

    mat = loadmat(str(mat_path), squeeze_me=True)
    for key in ("imlist", "qimlist", "gnd"):
        if key not in mat:
            raise InputError(f"{mat_path}: no variable {key!r}")
    database = tuple(_mat_strings(mat["imlist"]))
    qimlist = _mat_strings(mat["qimlist"])
    gnd = np.atleast_1d(mat["gnd"])
    if len(gnd) != len(qimlist):
        raise InputError(f"{mat_path}: {len(gnd)} gnd entries for {len(qimlist)} queries")
    n = len(database)
    queries = []
    for i, (qimage, rec) in enumerate(zip(qimlist, gnd)):
        try:
            ok = np.atleast_1d(np.asarray(_mat_field(rec, "ok"), dtype=np.int64)).ravel()
            bbx = np.asarray(_mat_field(rec, "bbx"), dtype=np.float64).ravel()
        except (KeyError, ValueError, AttributeError, IndexError) as exc:
            raise InputError(f"{mat_path}: gnd({i + 1}) lacks a usable 'ok'/'bbx' field ({exc})") from None
        try:
            junk = np.atleast_1d(np.asarray(_mat_field(rec, "junk"), dtype=np.int64)).ravel()
        except (KeyError, ValueError, AttributeError, IndexError):
            junk = np.zeros(0, dtype=np.int64)
        if bbx.size != 4:
            raise InputError(f"{mat_path}: gnd({i + 1}).bbx has {bbx.size} values, expected 4")
        for what, idx in (("ok", ok), ("junk", junk)):
            if idx.size and (idx.min() < 1 or idx.max() > n):
                raise InputError(f"{mat_path}: gnd({i + 1}).{what} has an index outside 1..{n} (1-based)")
        x1, y1, a, b = (float(v) for v in bbx)
        box = (x1, y1, x1 + a, y1 + b) if bbx_format == "xywh" else (x1, y1, a, b)
        queries.append(Query(name=qimage, image=qimage, box=box,
                             positives=tuple(int(j) - 1 for j in ok),
                             junk=tuple(int(j) - 1 for j in junk)))
    if check_images:
        require_images(name, root, [*qimlist, *database])
    return Benchmark(name=name, root=root, database=database, queries=tuple(queries), ap=ap)
