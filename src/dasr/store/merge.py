"""Merging finalized stores (e.g. the outputs of shard processes) into one store.

The inputs must hold images of the same collection (the same root folder) under the same
configuration; inputs made by shard processes (``shard`` = ``i/n`` in their configuration)
must form a complete set ``0/n ... n-1/n``, unless the caller accepts an incomplete one.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dasr.store.config import sharing_differences
from dasr.store.errors import StoreConfigError, StoreError
from dasr.store.files import PathLike, cleanup_tmp, parts_path
from dasr.store.assemble import select, write_store
from dasr.store.format import H5Source, Source, encode_name, same_root
from dasr.store.lock import StoreLock
from dasr.store.reader import RegionStore
from dasr.store.shards import parse_shard
from dasr.store.skipped import read_skipped, read_skipped_identity, write_skipped

__all__ = ["MergeSummary", "merge_store_files", "merge_stores"]


def _missing_shards(paths: Sequence[Path], sources: Sequence[H5Source]) -> str | None:
    """What is wrong with the inputs' shard set, or None when it is complete (or unsharded).

    Raises:
      StoreError: an input's ``shard`` entry is not ``i/n``.
    """
    shards = {}
    for p, source in zip(paths, sources):
        if "shard" in source.config:
            try:
                shards[p] = parse_shard(source.config["shard"])
            except ValueError as exc:
                raise StoreError(f"{p}: {exc} in its configuration") from None
    if not shards:
        return None
    unsharded = [str(p) for p in paths if p not in shards]
    if unsharded:
        return f"{', '.join(unsharded)} not made by a shard process"
    counts = sorted({n for _, n in shards.values()})
    if len(counts) > 1:
        return f"shards of {' and '.join(map(str, counts))} processes"
    n = counts[0]
    missing = sorted(set(range(n)) - {i for i, _ in shards.values()})
    if missing:
        return f"shard {', '.join(f'{i}/{n}' for i in missing)} missing"
    return None


@dataclass(frozen=True)
class MergeSummary:
    """What :func:`merge_store_files` wrote: the store's path and its counts."""

    path: Path
    images: int
    regions: int


def merge_stores(inputs: Sequence[PathLike], out: PathLike, *, allow_incomplete: bool = False) -> RegionStore:
    """:func:`merge_store_files`, then the merged store loaded (all of it: for small stores).

    Returns:
      The merged store, loaded.

    Raises:
      As :func:`merge_store_files`.
    """
    merge_store_files(inputs, out, allow_incomplete=allow_incomplete)
    return RegionStore.open(out)


def merge_store_files(inputs: Sequence[PathLike], out: PathLike, *, allow_incomplete: bool = False) -> MergeSummary:
    """Merge finalized stores (e.g. shard outputs) into one, atomically, in bounded memory.

    Region rows are copied run by run; only the per-image index is held in memory.

    Args:
      inputs: store paths; their configurations must agree except
        :data:`VOLATILE_CONFIG_KEYS`, and their roots must be the same folder. The
        first input gives config and root ('shard' is dropped from the merged config).
      out: output path; replaced atomically if it exists.
      allow_incomplete: merge shard outputs that do not form a complete set ``0/n ...
        n-1/n`` (a warning on stderr says what is missing) instead of refusing them.

    Returns:
      A :class:`MergeSummary` (the store is not loaded).

    Raises:
      ValueError: no inputs.
      StoreLockedError: a writer is writing ``out``.
      StoreConfigError: configurations, feature dtypes or roots differ.
      StoreError: an image occurs in two inputs, the shard set is incomplete (and
        ``allow_incomplete`` is false), ``out`` has unfinished parts, or an input is
        unreadable.
    """
    paths = [Path(p) for p in inputs]
    if not paths:
        raise ValueError("merge_stores needs at least one input store")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = StoreLock(out)  # first: a running writer is reported as such
    sources: list[Source] = []
    try:
        if parts_path(out).is_dir():
            # Its writer would later take the merged file for an earlier run of its own.
            raise StoreError(
                f"{out}: an unfinished extraction writes here ({parts_path(out)}); finish it or delete it"
            )
        cleanup_tmp(out)
        for p in paths:
            sources.append(H5Source(p))
        first = sources[0]
        assert isinstance(first, H5Source)
        for p, source in zip(paths[1:], sources[1:]):
            assert isinstance(source, H5Source)
            labels = ("first", "this")
            lines = sharing_differences(first.config, source.config, labels)
            if source.feature_dtype != first.feature_dtype:
                lines.append(f"feature_dtype: first={json.dumps(first.feature_dtype)} this={json.dumps(source.feature_dtype)}")
            if lines:
                raise StoreConfigError(f"{p}: configuration differs from the first input {paths[0]} ({'; '.join(lines)})")
            if not same_root(source.root, first.root):
                raise StoreConfigError(
                    f"{p}: holds images of {source.root}, not of {first.root} like the first input {paths[0]}"
                )
        picks = select(sources, duplicates="error")
        problem = _missing_shards(paths, [s for s in sources if isinstance(s, H5Source)])
        if problem is not None:
            if not allow_incomplete:
                raise StoreError(f"{out}: incomplete set of shard stores ({problem}); merge them all, "
                                 f"or accept an incomplete store explicitly")
            print(f"warning: {out}: merging an incomplete set of shard stores ({problem})", file=sys.stderr)
        config = {k: v for k, v in first.config.items() if k != "shard"}
        write_store(out, sources, picks, config, first.root, first.feature_dtype)
        stored = {p.key for p in picks}  # encoded names: no second string per image
        skips: dict[str, str] = {}
        skip_identity: dict[str, tuple[int, str]] = {}
        for p in paths:
            skips.update(read_skipped(p))
            skip_identity.update(read_skipped_identity(p))
        write_skipped(out, {k: v for k, v in skips.items() if encode_name(k) not in stored}, skip_identity)
        regions = sum(int(sources[p.source].offsets[p.index + 1] - sources[p.source].offsets[p.index]) for p in picks)
    finally:
        for source in sources:
            source.close()
        lock.release()
    return MergeSummary(out, len(picks), regions)
