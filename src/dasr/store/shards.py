"""Sharding a collection over several processes: shard ``i/n`` takes every n-th image from i."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, TypeVar

from dasr.errors import InputError

__all__ = ["parse_shard", "shard_of"]

T = TypeVar("T")


def parse_shard(text: str) -> tuple[int, int]:
    """Parse a shard spec ``"i/n"`` (0-based i).

    Args:
      text: e.g. "2/4".

    Returns:
      (i, n) with 0 <= i < n.

    Raises:
      ValueError: malformed text or out-of-range values.
    """
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not match:
        raise InputError(f"invalid shard {text!r}: expected I/N with 0 <= I < N (0-based), e.g. 0/4")
    i, n = int(match.group(1)), int(match.group(2))
    _check_shard((i, n), text)
    return i, n


def _check_shard(shard: tuple[int, int], text: Any) -> None:
    i, n = shard
    if n < 1 or not 0 <= i < n:
        raise InputError(f"invalid shard {text!r}: need 0 <= I < N (0-based I), got I={i} N={n}")


def shard_of(items: Sequence[T], shard: tuple[int, int]) -> list[tuple[int, T]]:
    """Select shard i of n of ``items``: every n-th item starting at i.

    Args:
      items: the full input list.
      shard: (i, n), 0 <= i < n.

    Returns:
      (order, item) pairs, order being the position in ``items``; the n shards
      partition ``items``.

    Raises:
      ValueError: invalid shard.
    """
    try:
        i, n = (int(v) for v in shard)
    except (TypeError, ValueError):
        raise InputError(f"invalid shard {shard!r}: expected (i, n)") from None
    _check_shard((i, n), shard)
    return [(k, items[k]) for k in range(i, len(items), n)]
