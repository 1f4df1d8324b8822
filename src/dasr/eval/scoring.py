"""THE scoring of one query: the benchmark's own AP protocol (and the localization IoUs).

Every evaluation (instance search, VLAD image search, the scalability runs) scores a query with
:func:`score_query`, so a benchmark is always scored with the AP its protocol defines, whatever
produced the ranking.  The protocols (``Benchmark.ap``, see :mod:`dasr.eval.datasets`):

* ``instance`` (Instance-160/335, instance-track, paris-landmarks; INSTRE on request): for each
  ``k`` of ``ks`` and each variant of :data:`dasr.eval.metrics.AP_VARIANTS`,
  ``ap@k/truncated = (1/|R|) * sum_{i<=k} rel(i) * P@i`` and
  ``ap@k/min = (1/min(k, |R|)) * sum_{i<=k} rel(i) * P@i``, plus
  ``ap = (1/|R|) * sum_i rel(i) * P@i`` over the whole list (:func:`~dasr.eval.metrics.average_precision_at_k`);
  ``|R|`` counts every positive of the query.
* ``oxford`` (Oxford5k, Paris6k, R-Oxford/R-Paris under their protocol's positives and junk,
  INSTRE): junk images are removed from the list, then ``ap = (1/|R|) * sum_j (P_before(j) + P_after(j)) / 2``
  over the positives ``j`` (the trapezoid of ``compute_ap.cpp``, :func:`~dasr.eval.metrics.oxford_average_precision`).
* ``holidays``: the same trapezoid after the query image is removed from its own list
  (INRIA's ``holidays_map.py``, :func:`~dasr.eval.metrics.holidays_average_precision`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from dasr.eval import metrics
from dasr.eval.datasets import REVISITOP_PROTOCOL_RULES, Benchmark
from dasr.eval.records import QueryScore
from dasr.regions import box_iou

__all__ = ["DEFAULT_KS", "ap_definition", "protocol_notes", "score_query"]

DEFAULT_KS: tuple[int, ...] = (10, 20, 50, 100)


def score_query(bench: Benchmark, query_index: int, order: Sequence[int] | np.ndarray,
                boxes: np.ndarray | None = None, ks: Sequence[int] = DEFAULT_KS) -> QueryScore:
    """Every metric of one query from its ranked database images, by the benchmark's protocol.

    The formulas are in the module docstring: ``instance`` benchmarks get ``ap@k/truncated`` and
    ``ap@k/min`` for each ``k`` and the whole-list ``ap``; ``oxford`` and ``holidays`` ones get
    the trapezoid ``ap``.

    Args:
      bench: the benchmark (its ``ap`` picks the protocol; its database order is the index space).
      query_index: the query's index in ``bench.queries``.
      order: database indices, best first. It may be a truncated ranking (e.g. the top 100 of an
        approximate search): positives it lacks count as not retrieved (they stay in ``|R|``).
      boxes: ``(len(order), 4)`` returned box of each ranked image (NaN: none), or None when the
        search localizes nothing; with boxes, every positive that has a ground-truth box gets
        the IoU of its returned box (0 for no box or when it is not in ``order``).
      ks: the cut-offs of AP@k (``instance`` benchmarks only).

    Returns:
      The query's :class:`~dasr.eval.records.QueryScore`.

    Raises:
      ValueError: ``boxes`` does not match ``order``, or the AP is undefined (no positives).
    """
    q = bench.queries[query_index]
    order = np.asarray(order, np.int64).ravel()
    positives = np.asarray(q.positives, np.int64)
    ap: dict[str, float] = {}
    if bench.ap == "instance":
        rel = np.isin(order, positives)
        for variant in metrics.AP_VARIANTS:
            for k in ks:
                ap[f"ap@{k}/{variant}"] = metrics.average_precision_at_k(rel, len(positives), k, variant)
        ap["ap"] = metrics.average_precision_at_k(rel, len(positives), None)
    elif bench.ap == "oxford":
        ranks = metrics.ranks_without_junk(order, positives, q.junk)
        ap["ap"] = metrics.oxford_average_precision(ranks, len(positives))
    else:
        query_id = bench.database.index(q.image)
        ap["ap"] = metrics.holidays_average_precision(order, query_id, positives)
    ious: list[float] = []
    if boxes is not None and q.positive_boxes:
        boxes = np.asarray(boxes)
        if boxes.shape != (len(order), 4):
            raise ValueError(f"boxes of shape {boxes.shape} for a ranking of {len(order)} images")
        where = {int(img): i for i, img in enumerate(order)}
        for img, gt in q.positive_boxes.items():
            i = where.get(int(img))
            box = boxes[i] if i is not None else None
            ious.append(0.0 if box is None or np.isnan(box).any()
                        else float(box_iou(box[None], np.asarray(gt)[None])[0, 0]))
    return QueryScore(q.name, ap, ious)


def ap_definition(bench: Benchmark) -> dict[str, str] | str:
    """What the AP of ``bench`` means, as printed with each result.

    Returns:
      For ``instance`` benchmarks, AP@k variant -> its formula; otherwise the protocol name
      (``oxford`` or ``holidays``).
    """
    if bench.ap == "instance":
        return {v: metrics.AP_VARIANT_DESCRIPTIONS[v] for v in metrics.AP_VARIANTS}
    return bench.ap


def protocol_notes(bench: Benchmark) -> list[str]:
    """The note naming a revisited benchmark's protocol (none for the other benchmarks)."""
    if bench.protocol is None:
        return []
    return [f"revisited protocol {bench.protocol}: {REVISITOP_PROTOCOL_RULES[bench.protocol]}"]
