"""One store file from several sources: which record comes from where, and the streaming copy.

A writer's finalize (its chunks, :mod:`dasr.store.writer`) and a merge of finished shard stores
(:mod:`dasr.store.merge`) both end here: :func:`select` picks the records and sorts them by
(order, image); :func:`write_store` copies them, block by block, into one file written atomically.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from dasr.store.errors import StoreError
from dasr.store.files import atomic_path
from dasr.store.format import FORMAT_NAME, FORMAT_VERSION, Schema, Source, encode_name, h5open, schema_text, text_attr

__all__ = ["COPY_BLOCK_BYTES", "Pick", "gather_per_image", "select", "write_store"]


@dataclass(frozen=True, slots=True)
class Pick:
    """One record chosen for the output: sort key and where it comes from (slots: a merge holds
    one per image of the output)."""

    order: int
    key: bytes
    source: int
    index: int


def select(sources: Sequence[Source], duplicates: str) -> list[Pick]:
    """Choose the records of a merge and sort them by (order, image).

    Args:
      sources: record sources, in priority order.
      duplicates: "first" keeps the first occurrence of an image (a writer's
        own crash windows can store a record twice, always with identical data);
        "error" raises.

    Returns:
      The picked records, sorted.

    Raises:
      StoreError: ``duplicates == "error"`` and an image occurs twice.
    """
    seen: dict[str, int] = {}
    picks = []
    for s, source in enumerate(sources):
        for i, image in enumerate(source.images):
            if image in seen:
                if duplicates == "error":
                    raise StoreError(
                        f"{image}: image stored in both {sources[seen[image]].name} and {source.name}"
                    )
                continue
            seen[image] = s
            picks.append(Pick(int(source.orders[i]), encode_name(image), s, i))
    picks.sort(key=lambda p: (p.order, p.key))
    return picks


def _common_schema(sources: Sequence[Source], picks: Sequence[Pick]) -> Schema:
    used = sorted({p.source for p in picks})
    schema: Schema | None = None
    first = ""
    for s in used:
        own = sources[s].schema
        if schema is None:
            schema, first = own, sources[s].name
        elif own != schema:
            raise StoreError(
                f"{sources[s].name}: region arrays ({schema_text(own)}) differ from {first} ({schema_text(schema)})"
            )
    return schema or {}


def gather_per_image(arrays: Sequence[np.ndarray], src_of: np.ndarray, idx_of: np.ndarray) -> np.ndarray:
    """One per-image array of the output from the sources' (sizes, file identity, counts...).

    Args:
      arrays: each source's (n_s, ...) array, in source order (all of one dtype kind and shape).
      src_of, idx_of: (N,) the source and the index in it of each output image.

    Returns:
      (N, ...) ``arrays[src_of[i]][idx_of[i]]`` for every i, gathered source by source (numpy,
      no Python object per image: a merge of a million images stays small).
    """
    arrays = [np.asarray(a) for a in arrays]
    if not arrays:
        return np.zeros(0)
    out = np.empty((len(src_of), *arrays[0].shape[1:]), np.result_type(*arrays) if arrays[0].dtype.kind != "S"
                   else f"S{max(a.dtype.itemsize for a in arrays)}")
    for s in np.unique(src_of):
        sel = src_of == s
        out[sel] = arrays[s][idx_of[sel]]
    return out


# Rows of one region array gathered in memory before one write to the destination.
COPY_BLOCK_BYTES = 32 * 2**20


def _ranges(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """The concatenation of ``arange(a, b)`` for every (a, b) pair, vectorised."""
    lengths = stops - starts
    if lengths.sum() == 0:
        return np.zeros(0, np.int64)
    first = np.cumsum(lengths) - lengths
    return np.repeat(starts - first, lengths) + np.arange(int(lengths.sum()))


def _copy_regions(dsets: Mapping[str, Any], sources: Sequence[Source], src_of: np.ndarray, idx_of: np.ndarray,
                  dst_offsets: np.ndarray) -> None:
    """Copies every picked image's region rows into ``dsets``, in bounded memory.

    The destination is written block by block (about :data:`COPY_BLOCK_BYTES` per array): the
    rows of a block are gathered from each source with one read per contiguous span (shards of an
    interleaved list give one span per source and block), then written at once.  Per-image reads
    and writes of HDF5 cost ~0.1 ms each: a million interleaved images would take hours.

    Args:
      dsets: region key -> destination dataset (rows in destination order).
      sources: the sources.
      src_of, idx_of: (N,) the source and the index in it of each destination image.
      dst_offsets: (N+1,) the destination's row offsets.
    """
    if not dsets or len(src_of) == 0:
        return
    row_bytes = max(int(np.prod(d.shape[1:], dtype=np.int64)) * d.dtype.itemsize for d in dsets.values())
    block_rows = max(1, COPY_BLOCK_BYTES // max(1, row_bytes))
    src_lo = np.empty(len(src_of), np.int64)
    src_hi = np.empty(len(src_of), np.int64)
    for s in np.unique(src_of):
        sel = src_of == s
        src_lo[sel] = sources[s].offsets[idx_of[sel]]
        src_hi[sel] = sources[s].offsets[idx_of[sel] + 1]
    n, start = len(src_of), 0
    while start < n:
        stop = int(np.searchsorted(dst_offsets, dst_offsets[start] + block_rows, side="right")) - 1
        stop = min(n, max(start + 1, stop))
        d0, d1 = int(dst_offsets[start]), int(dst_offsets[stop])
        groups = []  # (source, image positions in the block) with a source span <= block_rows
        block_src = src_of[start:stop]
        for s in np.unique(block_src):
            pos = np.nonzero(block_src == s)[0] + start
            lo, hi = src_lo[pos], src_hi[pos]
            if hi.max() - lo.min() <= block_rows:  # the usual case: one read
                groups.append((int(s), pos))
                continue
            begin, g_lo, g_hi = 0, lo[0], hi[0]  # images spread over the source: reads of bounded spans
            for k in range(1, len(pos)):
                if max(g_hi, hi[k]) - min(g_lo, lo[k]) > block_rows:
                    groups.append((int(s), pos[begin:k]))
                    begin, g_lo, g_hi = k, lo[k], hi[k]
                else:
                    g_lo, g_hi = min(g_lo, lo[k]), max(g_hi, hi[k])
            groups.append((int(s), pos[begin:]))
        for key, dset in dsets.items():
            buffer = np.empty((d1 - d0, *dset.shape[1:]), dset.dtype)
            for s, pos in groups:
                lo, hi = src_lo[pos], src_hi[pos]
                span_lo, span_hi = int(lo.min()), int(hi.max())
                if span_hi <= span_lo:
                    continue
                rows = np.asarray(sources[s].rows(key)[span_lo:span_hi])
                buffer[_ranges(dst_offsets[pos] - d0, dst_offsets[pos + 1] - d0)] = rows[_ranges(lo - span_lo, hi - span_lo)]
            if d1 > d0:
                dset[d0:d1] = buffer
        start = stop


def write_store(
    out: Path,
    sources: Sequence[Source],
    picks: Sequence[Pick],
    config: Mapping[str, Any],
    root: str,
    feature_dtype: str,
) -> None:
    """Write the picked records of ``sources`` to ``out`` atomically (streaming, block by block)."""
    schema = _common_schema(sources, picks)
    src_of = np.fromiter((p.source for p in picks), np.int64, len(picks))
    idx_of = np.fromiter((p.index for p in picks), np.int64, len(picks))
    counts = gather_per_image([np.diff(source.offsets) for source in sources], src_of, idx_of).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    total = int(offsets[-1])
    with atomic_path(out) as tmp:
        with h5open(tmp, "w") as f:
            f.attrs["format"] = FORMAT_NAME
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["config"] = json.dumps(dict(config), sort_keys=True)
            f.attrs["root"] = text_attr(root)
            f.attrs["feature_dtype"] = feature_dtype
            names = np.array([p.key for p in picks], dtype=object) if picks else np.zeros(0, dtype=object)
            f.create_dataset("images", data=names, dtype=h5py.string_dtype("utf-8"))
            f.create_dataset("orders", data=np.array([p.order for p in picks], dtype=np.int64))
            f.create_dataset(
                "sizes", data=gather_per_image([s.sizes for s in sources], src_of, idx_of).astype(np.int32).reshape(-1, 2)
            )
            f.create_dataset("offsets", data=offsets)
            f.create_dataset("file_sizes", data=gather_per_image([s.file_sizes for s in sources], src_of, idx_of).astype(np.int64))
            f.create_dataset("file_sha256", data=gather_per_image([s.sha256s for s in sources], src_of, idx_of).astype("S64"))
            f.create_dataset("region_image", data=np.repeat(np.arange(len(picks), dtype=np.int32), counts))
            group = f.create_group("regions")
            dsets = {key: group.create_dataset(key, shape=(total, *shape), dtype=dtype) for key, (dtype, shape) in schema.items()}
            _copy_regions(dsets, sources, src_of, idx_of, offsets)
