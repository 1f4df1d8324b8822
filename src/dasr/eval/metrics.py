"""Retrieval and localization metrics for instance search (pure numpy).

Four AP definitions are in use for the paper's benchmarks, and they are not interchangeable:

* ``average_precision_at_k``: the non-interpolated AP over the top-k of a ranked list, used for
  Instance-160/335 (the paper's Table 1 reports k = 10, 20, 50, 100 and the whole list). Two
  normalisations exist (``AP_VARIANTS``); the caller must say which one it printed.
* ``oxford_average_precision``: the trapezoid-rule AP of the official Oxford ``compute_ap.cpp``
  and of revisitop's ``compute_ap`` (junk images are removed from the list first).
* ``holidays_average_precision``: the same trapezoid, as INRIA's ``holidays_map.py`` applies it
  (the query image itself is dropped from its own result list).
* ``revisitop_positives_junk``: the positives and junk of the Easy / Medium / Hard protocols of
  Revisited Oxford and Paris (scored with the Oxford AP; the loaders apply it, see
  :mod:`dasr.eval.datasets.revisitop`).

Every AP here is a fraction in [0, 1] (not a percentage).
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np

AP_VARIANTS: tuple[str, ...] = ("truncated", "min")

AP_VARIANT_DESCRIPTIONS: dict[str, str] = {
    "truncated": "AP@k = (1/|R|) * sum_{i<=k} rel(i)*P@i, |R| = all relevant images "
    "(reaches the full-list AP as k grows, as in the paper's Table 1)",
    "min": "AP@k = (1/min(k,|R|)) * sum_{i<=k} rel(i)*P@i (the normalisation of the DASR "
    "authors' later public evaluation code)",
}

# Rounded so that an IoU of exactly 0.3 passes the 0.3 threshold (np.arange gives 0.30000000000000004).
DEFAULT_IOU_THRESHOLDS: tuple[float, ...] = tuple(float(t) for t in np.round(np.arange(0.1, 1.0, 0.1), 2))


def average_precision_at_k(
    relevant_sorted: Sequence[bool] | np.ndarray,
    num_relevant: int,
    k: int | None = None,
    variant: str = "truncated",
) -> float:
    """Non-interpolated average precision over the top ``k`` of one ranked list.

    With ``rel(i)`` the relevance of rank ``i`` (1-based) and ``P@i`` the precision at ``i``:

    * ``"truncated"``: ``AP@k = (1/|R|) * sum_{i<=k} rel(i) * P@i``;
    * ``"min"``: the same sum divided by ``min(k, |R|)``.

    With ``k=None`` the whole list is used and both variants divide by ``|R|``.

    Args:
        relevant_sorted: relevance of each ranked item, best first (any bool-like 1-D array).
        num_relevant: ``|R|``, the number of relevant items in the whole database (relevant
            items missing from the list still count, as they lower the recall).
        k: cut-off; ``None`` means the whole list. A ``k`` longer than the list is allowed.
        variant: one of ``AP_VARIANTS``.

    Returns:
        The AP in [0, 1].

    Raises:
        ValueError: ``num_relevant`` < 1, fewer relevant items than the list marks relevant,
            ``k`` < 1, or an unknown ``variant``.
    """
    if variant not in AP_VARIANTS:
        raise ValueError(f"unknown AP variant {variant!r}; expected one of {AP_VARIANTS}")
    if num_relevant < 1:
        raise ValueError(f"num_relevant must be >= 1 (AP is undefined without relevant items), got {num_relevant}")
    rel = np.asarray(relevant_sorted, dtype=bool).ravel()
    if int(rel.sum()) > num_relevant:
        raise ValueError(f"the list marks {int(rel.sum())} items relevant but num_relevant={num_relevant}")
    if k is not None:
        if k < 1:
            raise ValueError(f"k must be >= 1 or None, got {k}")
        rel = rel[:k]
    hits = np.cumsum(rel)
    positions = np.arange(1, rel.size + 1)
    total = float(np.sum((hits / positions)[rel])) if rel.size else 0.0
    if variant == "min" and k is not None:
        return total / min(k, num_relevant)
    return total / num_relevant


def oxford_average_precision(ranks: Sequence[int] | np.ndarray, num_positives: int) -> float:
    """Trapezoid-rule AP of the Oxford / Paris / revisitop evaluation packages.

    For the j-th positive (0-based) found at 0-based rank ``r`` of the junk-free list, the
    precision just before it is ``j/r`` (1 when ``r == 0``) and just after it ``(j+1)/(r+1)``;
    each positive adds the mean of the two times the recall step ``1/num_positives``. This
    equals ``compute_ap.cpp``'s ``(recall - old_recall) * (old_precision + precision) / 2``.

    Args:
        ranks: 0-based positions of the positive images in the ranked list after junk images
            were removed (see ``ranks_without_junk``); sorted here, so any order is accepted.
        num_positives: the number of positives of the query (those never ranked count too).

    Returns:
        The AP in [0, 1].

    Raises:
        ValueError: ``num_positives`` < 1, more ranks than positives, repeated or negative ranks.
    """
    if num_positives < 1:
        raise ValueError(f"num_positives must be >= 1, got {num_positives}")
    r = np.sort(np.asarray(ranks, dtype=np.int64).ravel())
    if r.size > num_positives:
        raise ValueError(f"{r.size} ranks given for only {num_positives} positives")
    if r.size and (r[0] < 0 or np.any(np.diff(r) == 0)):
        raise ValueError("ranks must be distinct non-negative positions")
    j = np.arange(r.size, dtype=np.float64)
    # r == 0 only for j == 0, where the official code sets the left precision to 1.
    precision_0 = np.where(r == 0, 1.0, j / np.maximum(r, 1))
    precision_1 = (j + 1.0) / (r + 1.0)
    return float(np.sum((precision_0 + precision_1) / 2.0) / num_positives)


def ranks_without_junk(
    ranking: Sequence[int] | np.ndarray,
    positives: Iterable[int],
    junk: Iterable[int] = (),
) -> np.ndarray:
    """Positions of the positives in a ranked list once the junk images are taken out.

    An id listed both as positive and as junk is treated as junk, as in the official Oxford
    ``compute_ap.cpp`` (which skips ambiguous images before looking at the positives).

    Args:
        ranking: database ids, best first.
        positives: ids of the positive images.
        junk: ids ignored by the evaluation (neither positive nor negative).

    Returns:
        Sorted int64 array of 0-based positions in the junk-free list.
    """
    ranking = np.asarray(ranking).ravel()
    junk_arr = np.fromiter(junk, dtype=np.int64)
    pos_arr = np.fromiter(positives, dtype=np.int64)
    kept = ranking[~np.isin(ranking, junk_arr)]
    return np.flatnonzero(np.isin(kept, pos_arr)).astype(np.int64)


def holidays_average_precision(
    ranking: Sequence[int] | np.ndarray,
    query_id: int,
    positives: Iterable[int],
) -> float:
    """AP of one INRIA Holidays query, as ``holidays_map.py`` computes it.

    Rule (from ``holidays_map.py``): the query image is dropped from its own result list
    (every result ranked after it moves up by one), the 0-based ranks of the positives in that
    list are collected, and ``score_ap_from_ranks_1`` applies the same trapezoid as Oxford
    (``oxford_average_precision``) with ``nres`` = the number of positives (the other images
    of the query's group). Positives absent from ``ranking`` add nothing.

    Args:
        ranking: database ids, best first (may or may not contain ``query_id``).
        query_id: database id of the query image.
        positives: ids of the other images of the query's group (not the query itself).

    Returns:
        The AP in [0, 1].

    Raises:
        ValueError: no positives, or the query listed among its own positives.
    """
    pos = list(positives)
    if query_id in pos:
        raise ValueError(f"query {query_id} is listed among its own positives")
    if not pos:
        raise ValueError(f"query {query_id} has no positives")
    return oxford_average_precision(ranks_without_junk(ranking, pos, junk=(query_id,)), len(pos))


def revisitop_positives_junk(
    g: Mapping[str, Sequence[int]], protocol: str
) -> tuple[list[int], list[int]]:
    """Positives and junk of one revisitop query under one protocol.

    Args:
        g: ground-truth dict with ``'easy'``, ``'hard'``, ``'junk'`` id lists.
        protocol: ``'easy'``, ``'medium'`` or ``'hard'``.

    Returns:
        ``(positives, junk)`` as lists of ids.

    Raises:
        ValueError: unknown protocol.
    """
    easy = [int(i) for i in np.ravel(g.get("easy", []))]
    hard = [int(i) for i in np.ravel(g.get("hard", []))]
    junk = [int(i) for i in np.ravel(g.get("junk", []))]
    if protocol == "easy":
        return easy, junk + hard
    if protocol == "medium":
        return easy + hard, junk
    if protocol == "hard":
        return hard, junk + easy
    raise ValueError(f"unknown revisitop protocol {protocol!r}; expected 'easy', 'medium' or 'hard'")


def localization_recall(
    ious: Sequence[float] | np.ndarray,
    thresholds: Sequence[float] | np.ndarray = DEFAULT_IOU_THRESHOLDS,
) -> np.ndarray:
    """Fraction of localizations whose IoU reaches each threshold.

    Args:
        ious: one IoU per relevant retrieved image (the best predicted box against its
            ground-truth box).
        thresholds: IoU thresholds; the default is 0.1, 0.2, ..., 0.9.

    Returns:
        float64 array, one fraction per threshold (zeros when ``ious`` is empty).
    """
    ious = np.asarray(ious, dtype=np.float64).ravel()
    th = np.asarray(thresholds, dtype=np.float64).ravel()
    if ious.size == 0:
        return np.zeros(th.shape, dtype=np.float64)
    return (ious[None, :] >= th[:, None]).mean(axis=1)


# The name the authors' localization measure goes by in every report.
MIOU_ENCLOSING_NAME = "mIoU (enclosing-box denominator, authors' MSAR)"


def enclosing_iou(a: Sequence | np.ndarray, b: Sequence | np.ndarray) -> np.ndarray:
    """Pairwise overlap as the authors' MSAR code measures it (``IoU/main.py``, ``calculate_iou``).

    The intersection's area divided by the area of the smallest box enclosing both boxes (not
    by the union): never more than the true IoU, and it equals it only when one box holds
    the other exactly.

    Args:
        a: (n, 4) boxes x1, y1, x2, y2.
        b: (m, 4) boxes.

    Returns:
        (n, m) float64; 0 where the boxes do not overlap or the enclosing box is empty.
    """
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    ew = np.maximum(a[:, None, 2], b[None, :, 2]) - np.minimum(a[:, None, 0], b[None, :, 0])
    eh = np.maximum(a[:, None, 3], b[None, :, 3]) - np.minimum(a[:, None, 1], b[None, :, 1])
    enclosing = ew * eh
    return np.where(enclosing > 0, inter / np.where(enclosing > 0, enclosing, 1.0), 0.0)


def best_enclosing_ious(regions: Sequence[np.ndarray], truths: Sequence[np.ndarray]) -> np.ndarray:
    """Per reference image, the best :func:`enclosing_iou` of any of its regions with any of its
    ground-truth boxes (0 for an image without regions), as MSAR's ``calculate_miou``.

    Args:
        regions: per reference image, its (n_i, 4) detected boxes (every region, whatever the search).
        truths: per reference image, its (m_i, 4) ground-truth boxes (m_i >= 1).

    Returns:
        (len(regions),) float64.

    Raises:
        ValueError: the two lists differ in length.
    """
    if len(regions) != len(truths):
        raise ValueError(f"{len(regions)} region lists for {len(truths)} ground-truth lists")
    return np.array([enclosing_iou(r, t).max() if np.size(r) and np.size(t) else 0.0
                     for r, t in zip(regions, truths)], np.float64)


def authors_miou(regions: Sequence[np.ndarray], truths: Sequence[np.ndarray]) -> float:
    """The authors' mIoU: :func:`best_enclosing_ious` averaged over the reference images (0.0 for none)."""
    best = best_enclosing_ious(regions, truths)
    return float(best.mean()) if best.size else 0.0


# The per-query keys of the authors' mIoU in a query's scores (dasr.eval.records.QueryScore.ap):
# the mean of the query's reference images' best enclosing IoU, and how many images that is.
MIOU_KEY = "miou/enclosing"
MIOU_IMAGES_KEY = "miou/images"


def pooled_authors_miou(scores: Sequence[dict]) -> float | None:
    """The authors' mIoU over every reference image of the queries, from per-query scores.

    Each query contributes its :data:`MIOU_KEY` weighted by its :data:`MIOU_IMAGES_KEY` (the
    mean over images, not over queries; they coincide when every query has as many images).

    Args:
        scores: per query, its metric -> value dict.

    Returns:
        The pooled mean, or None when no query has reference images with boxes.
    """
    pairs = [(d[MIOU_KEY], d[MIOU_IMAGES_KEY]) for d in scores if MIOU_KEY in d]
    n = sum(w for _, w in pairs)
    return float(sum(v * w for v, w in pairs) / n) if n > 0 else None


def bootstrap_difference_ci(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    n_boot: int = 10000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Paired bootstrap confidence interval of ``mean(a - b)`` over queries.

    Queries are resampled with replacement, keeping each query's pair of scores together (the
    two methods are evaluated on the same queries, so the pairing removes query difficulty).

    Args:
        a: per-query scores of method A (e.g. APs).
        b: per-query scores of method B, same queries in the same order.
        n_boot: number of bootstrap resamples.
        alpha: 1 - confidence level; the interval is the percentile interval
            ``[alpha/2, 1 - alpha/2]``.
        seed: seed of the ``numpy`` generator (same seed, same interval).

    Returns:
        ``(mean_difference, low, high)``.

    Raises:
        ValueError: empty or mismatched inputs, ``n_boot`` < 1, or ``alpha`` outside (0, 1).
    """
    a_arr = np.asarray(a, dtype=np.float64).ravel()
    b_arr = np.asarray(b, dtype=np.float64).ravel()
    if a_arr.size != b_arr.size:
        raise ValueError(f"a and b differ in length ({a_arr.size} vs {b_arr.size})")
    d = a_arr - b_arr
    if d.size == 0:
        raise ValueError("need at least one query")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot, dtype=np.float64)
    # Chunked so that n_boot x n_queries indices never need more than a few MB.
    chunk = max(1, 2_000_000 // d.size)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, d.size, size=(stop - start, d.size))
        means[start:stop] = d[idx].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(d.mean()), float(low), float(high)
