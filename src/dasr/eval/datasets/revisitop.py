"""Revisited Oxford / Paris (revisitop): ``gnd_<name>.pkl`` under one of its three protocols.

The protocol (:data:`REVISITOP_PROTOCOLS`) decides which images are positives and which are
junk (:data:`REVISITOP_PROTOCOL_RULES`, :func:`dasr.eval.metrics.revisitop_positives_junk`); the
queries carry them, so the evaluation scores the benchmark with the Oxford AP
(:mod:`dasr.eval.scoring`) like any other. Select it with ``load_benchmark("roxford5k", root,
protocol="hard")`` (or ``evaluate(..., protocol="hard")``).

The pkl is read with :func:`~dasr.eval.datasets.safe_pickle.load_data_pickle`: a crafted file
cannot run code.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Mapping

import numpy as np

from dasr.errors import InputError
from dasr.eval.datasets.common import Benchmark, Query, require_images, require_path
from dasr.eval.datasets.safe_pickle import load_data_pickle
from dasr.eval.metrics import revisitop_positives_junk

__all__ = ["REVISITED_BENCHMARKS", "REVISITOP_PROTOCOLS", "REVISITOP_PROTOCOL_RULES", "load_roxford5k",
           "load_rparis6k"]

REVISITOP_PROTOCOLS: tuple[str, ...] = ("easy", "medium", "hard")
REVISITOP_PROTOCOL_RULES: dict[str, str] = {
    "easy": "positives = easy, junk = junk + hard",
    "medium": "positives = easy + hard, junk = junk",
    "hard": "positives = hard, junk = junk + easy",
}
REVISITED_BENCHMARKS: tuple[str, ...] = ("roxford5k", "rparis6k")


def _load_revisitop(name: str, root: str | Path, protocol: str = "medium", check_images: bool = True) -> Benchmark:
    """R-Oxford / R-Paris from ``gnd_<name>.pkl`` under one revisitop protocol.

    ``gnd_<name>.pkl`` is a dict with ``imlist`` (database names, no extension), ``qimlist``
    (query names) and ``gnd`` (one dict per query: ``bbx``, ``easy``, ``hard``, ``junk``, 0-based
    indices into ``imlist``). Images are ``root/jpg/<name>.jpg``. Per protocol: easy: positives =
    easy, junk = junk + hard; medium: positives = easy + hard, junk = junk; hard: positives =
    hard, junk = junk + easy. Queries without positives under the protocol are left out (the
    revisitop evaluation skips them). ``Benchmark.name`` stays ``name`` (features do not depend
    on the protocol) and ``Benchmark.protocol`` records it; the query images are not in the
    database.

    Raises:
        DatasetMissingError: no root, pkl or image.
        ValueError: an unknown protocol, or a malformed pkl or one that holds more than data.
    """
    if protocol not in REVISITOP_PROTOCOLS:
        raise InputError(f"protocol must be one of {REVISITOP_PROTOCOLS}, got {protocol!r}")
    root = Path(root)
    require_path(name, root)
    pkl_path = require_path(name, root / f"gnd_{name}.pkl")
    try:
        cfg = load_data_pickle(pkl_path)
    except (pickle.UnpicklingError, EOFError) as exc:
        raise InputError(f"{pkl_path}: not a ground-truth pickle ({exc})") from None
    if not isinstance(cfg, Mapping) or not {"imlist", "qimlist", "gnd"} <= set(cfg):
        raise InputError(f"{pkl_path}: expected a dict with 'imlist', 'qimlist' and 'gnd'")
    database = tuple(f"jpg/{n}.jpg" for n in cfg["imlist"])
    if len(cfg["gnd"]) != len(cfg["qimlist"]):
        raise InputError(f"{pkl_path}: {len(cfg['gnd'])} gnd entries for {len(cfg['qimlist'])} queries")
    n = len(database)
    queries = []
    for i, (qname, g) in enumerate(zip(cfg["qimlist"], cfg["gnd"])):
        if not {"bbx", "easy", "hard", "junk"} <= set(g):
            raise InputError(f"{pkl_path}: gnd[{i}] lacks one of 'bbx', 'easy', 'hard', 'junk'")
        positives, junk = revisitop_positives_junk(g, protocol)
        if any(not 0 <= j < n for j in (*positives, *junk)):
            raise InputError(f"{pkl_path}: gnd[{i}] has an index outside [0, {n})")
        if not positives:
            continue
        bbx = [float(v) for v in np.ravel(g["bbx"])]
        if len(bbx) != 4:
            raise InputError(f"{pkl_path}: gnd[{i}]['bbx'] has {len(bbx)} values, expected 4")
        x1, y1, x2, y2 = bbx
        queries.append(Query(name=str(qname), image=f"jpg/{qname}.jpg", box=(x1, y1, x2, y2),
                             positives=tuple(dict.fromkeys(positives)), junk=tuple(dict.fromkeys(junk))))
    if check_images:
        require_images(name, root, [*(q.image for q in queries), *database])
    return Benchmark(name=name, root=root, database=database, queries=tuple(queries), ap="oxford",
                     protocol=protocol)


def load_roxford5k(root: str | Path, protocol: str = "medium", check_images: bool = True) -> Benchmark:
    """Revisited Oxford (70 queries, 4,993 images); see ``_load_revisitop``. ``ap='oxford'``."""
    return _load_revisitop("roxford5k", root, protocol, check_images)


def load_rparis6k(root: str | Path, protocol: str = "medium", check_images: bool = True) -> Benchmark:
    """Revisited Paris (70 queries, 6,322 images); see ``_load_revisitop``. ``ap='oxford'``."""
    return _load_revisitop("rparis6k", root, protocol, check_images)
