"""The two file formats of a store and their readers: the final HDF5 file and the npz chunks.

The HDF5 layout is described in :mod:`dasr.store`. A chunk ``<out>.parts/chunk-NNNNNN.npz``
holds a batch of completed images (and skipped ones) of an unfinished writer::

    images, orders, sizes, counts   one entry per completed image (names as surrogateescape bytes)
    skip_images, skip_reasons       the images skipped in the batch, with their reasons
    schema                          JSON {key: [dtype str, trailing shape]} of the region arrays
    region_<key>                    (rows, ...) the region arrays of the batch

Both are read through a :class:`Source` (validated index + lazily read region rows); a new
final file is written from sources by :func:`write_store` (the writer's finalize and
:func:`dasr.store.merge.merge_stores`).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from dasr.store.errors import StoreError
from dasr.store.files import atomic_path, atomic_write_bytes, parts_path

__all__ = [
    "FEATURE_DTYPES",
    "FEATURE_KEY",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "ChunkSource",
    "H5Source",
    "Record",
    "Schema",
    "Source",
    "chunk_files",
    "chunk_number",
    "decode_name",
    "encode_name",
    "h5open",
    "one_line",
    "same_root",
    "schema_text",
    "select",
    "write_chunk",
    "write_store",
]

FORMAT_NAME = "dasr-region-store"
FORMAT_VERSION = 1
FEATURE_KEY = "features"
FEATURE_DTYPES = ("float32", "float16")

_CHUNK_RE = re.compile(r"^chunk-(\d{6,})\.npz$")
_NPZ_REGION = "region_"  # npz member prefix of region arrays inside a chunk

# Region schema: key -> (stored dtype, trailing shape).
Schema = dict[str, tuple[np.dtype, tuple[int, ...]]]


# ------------------------------------------------------------------------ encoding


def encode_name(name: str) -> bytes:
    """A stored name's bytes: surrogateescape, so names decoded from non-UTF-8 bytes round-trip."""
    return name.encode("utf-8", "surrogateescape")


def decode_name(raw: bytes | str) -> str:
    """Inverse of :func:`encode_name` (a str is returned as it is)."""
    if isinstance(raw, str):
        return raw
    return bytes(raw).decode("utf-8", "surrogateescape")


def _text_attr(text: str) -> str | np.bytes_:
    # h5py stores str as UTF-8; fall back to raw bytes for undecodable paths.
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return np.bytes_(encode_name(text))


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (its type name when it has none)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def h5open(path: Path, mode: str) -> h5py.File:
    """Open an HDF5 file without HDF5's own file locking.

    Store files are immutable once renamed into place, so HDF5's locking adds
    nothing and fails on some network file systems.
    """
    try:
        return h5py.File(path, mode, locking=False)
    except (TypeError, ValueError):  # pragma: no cover - HDF5 without locking control
        return h5py.File(path, mode)


def same_root(a: str, b: str) -> bool:
    """Whether two image roots are the same folder (absolute, symbolic links resolved).

    A relative root (stores written before roots were stored absolute) is taken
    relative to the current directory.
    """
    return os.path.realpath(a) == os.path.realpath(b)


def schema_text(schema: Schema) -> str:
    """``key: dtype[shape], ...`` for messages."""
    return ", ".join(f"{k}: {dt.name}{list(shape)}" for k, (dt, shape) in sorted(schema.items())) or "none"


@dataclass(frozen=True)
class Record:
    """One completed image, buffered in memory until the next flush."""

    image: str
    order: int
    size: tuple[int, int]
    count: int
    arrays: dict[str, np.ndarray]


# ------------------------------------------------------------------------ sources


class Source:
    """Records readable for a merge: a finalized store file or a chunk file."""

    name: str
    images: list[str]
    orders: np.ndarray
    sizes: np.ndarray
    offsets: np.ndarray
    schema: Schema

    def rows(self, key: str) -> Any:
        """Array-like of all region rows of ``key`` (supports slicing)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release file handles."""


def _check_index(name: str, n: int, orders: np.ndarray, sizes: np.ndarray, offsets: np.ndarray) -> None:
    if orders.shape != (n,) or sizes.shape != (n, 2) or offsets.shape != (n + 1,):
        raise StoreError(f"{name}: not a DASR region store (inconsistent index shapes)")
    if offsets[0] != 0 or np.any(np.diff(offsets) < 0):
        raise StoreError(f"{name}: not a DASR region store (offsets are not increasing from 0)")


class H5Source(Source):
    """A finalized store file, opened read-only and validated."""

    def __init__(self, path: Path) -> None:
        self.name = str(path)
        try:
            self.file = h5open(path, "r")
        except FileNotFoundError:
            hint = ""
            if parts_path(path).is_dir():
                hint = f" (an unfinished extraction is in {parts_path(path)}; rerun it to resume)"
            raise StoreError(f"{path}: no such region store{hint}") from None
        except OSError as exc:
            raise StoreError(f"{path}: unreadable HDF5 file ({one_line(exc)})") from None
        try:
            self._load(path)
        except StoreError:
            self.close()
            raise
        except KeyError as exc:
            self.close()
            raise StoreError(f"{path}: not a DASR region store (missing {one_line(exc)})") from None
        except (OSError, ValueError, TypeError) as exc:
            self.close()
            raise StoreError(f"{path}: unreadable HDF5 file ({one_line(exc)})") from None

    def _load(self, path: Path) -> None:
        attrs = self.file.attrs
        fmt = attrs.get("format")
        if isinstance(fmt, bytes):
            fmt = fmt.decode("utf-8", "replace")
        if fmt != FORMAT_NAME:
            what = "no 'format' attribute" if fmt is None else f"format {fmt!r}"
            raise StoreError(f"{path}: not a DASR region store ({what})")
        version = int(attrs.get("format_version", -1))
        if version != FORMAT_VERSION:
            raise StoreError(
                f"{path}: not a DASR region store (format version {version}, this code reads {FORMAT_VERSION})"
            )
        try:
            self.config = json.loads(decode_name(attrs["config"]))
        except (KeyError, json.JSONDecodeError) as exc:
            raise StoreError(f"{path}: not a DASR region store (bad config attribute: {one_line(exc)})") from None
        self.root = decode_name(attrs.get("root", ""))
        f = self.file
        self.images = [decode_name(raw) for raw in f["images"][()]]
        self.orders = np.asarray(f["orders"][()], dtype=np.int64)
        self.sizes = np.asarray(f["sizes"][()], dtype=np.int32)
        self.offsets = np.asarray(f["offsets"][()], dtype=np.int64)
        _check_index(self.name, len(self.images), self.orders, self.sizes, self.offsets)
        total = int(self.offsets[-1])
        region_image = np.asarray(f["region_image"][()])
        counts = np.diff(self.offsets)
        if region_image.shape != (total,) or not np.array_equal(
            region_image, np.repeat(np.arange(len(self.images)), counts)
        ):
            raise StoreError(f"{path}: not a DASR region store (region_image does not match offsets)")
        if len(set(self.images)) != len(self.images):
            raise StoreError(f"{path}: not a DASR region store (an image is stored twice)")
        self.schema = {}
        for key, dset in f["regions"].items():
            if dset.shape[:1] != (total,):
                raise StoreError(f"{path}: not a DASR region store (regions/{key} has {dset.shape[0]} rows, not {total})")
            self.schema[key] = (dset.dtype, tuple(dset.shape[1:]))
        stored_fd = attrs.get("feature_dtype")
        self.feature_dtype = (
            decode_name(stored_fd)
            if stored_fd is not None
            else (self.schema[FEATURE_KEY][0].name if FEATURE_KEY in self.schema else "float32")
        )

    def rows(self, key: str) -> Any:
        return self.file["regions"][key]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.file.close()


class ChunkSource(Source):
    """One chunk file of a writer's parts folder (small; region arrays read lazily)."""

    def __init__(self, path: Path) -> None:
        self.name = str(path)
        self.path = path
        try:
            with np.load(path, allow_pickle=False) as npz:
                self.images = [decode_name(raw) for raw in npz["images"].tolist()]
                self.orders = npz["orders"].astype(np.int64)
                self.sizes = npz["sizes"].astype(np.int32).reshape(-1, 2)
                counts = npz["counts"].astype(np.int64)
                self.skips = dict(
                    zip(
                        (decode_name(s) for s in npz["skip_images"].tolist()),
                        (decode_name(s) for s in npz["skip_reasons"].tolist()),
                    )
                )
                # Schema from a small JSON member: reading the region arrays here
                # would load every chunk's features when a writer opens.
                described = json.loads(npz["schema"].item().decode("utf-8"))
                self.schema = {key: (np.dtype(dt), tuple(shape)) for key, (dt, shape) in described.items()}
        except (OSError, ValueError, KeyError, EOFError, TypeError) as exc:
            # Chunks are written atomically, so this means outside damage.
            raise StoreError(
                f"{path}: not a DASR chunk file ({one_line(exc)}); delete it to recompute its images"
            ) from None
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        _check_index(self.name, len(self.images), self.orders, self.sizes, self.offsets)

    def rows(self, key: str) -> np.ndarray:
        with np.load(self.path, allow_pickle=False) as npz:  # one at a time: bounded memory and fds
            return npz[_NPZ_REGION + key]


def chunk_number(path: Path) -> int | None:
    """N of a ``chunk-NNNNNN.npz`` file name; None for any other name."""
    match = _CHUNK_RE.match(path.name)
    return int(match.group(1)) if match else None


def chunk_files(parts: Path) -> list[Path]:
    """The chunk files of a parts folder, by chunk number (none when it does not exist)."""
    found = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.listdir(parts):
            match = _CHUNK_RE.match(entry)
            if match:
                found.append((int(match.group(1)), parts / entry))
    return [p for _, p in sorted(found)]


def write_chunk(path: Path, records: list[Record], skips: Mapping[str, str], schema: Schema | None) -> None:
    """Write one batch of completed images (and skips) atomically as an .npz file."""
    arrays: dict[str, np.ndarray] = {
        # 'S' arrays strip trailing NULs only; names and reasons contain none.
        "images": np.array([encode_name(r.image) for r in records], dtype="S") if records else np.zeros(0, "S1"),
        "orders": np.array([r.order for r in records], dtype=np.int64),
        "sizes": np.array([r.size for r in records], dtype=np.int32).reshape(-1, 2),
        "counts": np.array([r.count for r in records], dtype=np.int64),
        "skip_images": np.array([encode_name(k) for k in skips], dtype="S") if skips else np.zeros(0, "S1"),
        "skip_reasons": np.array([encode_name(v) for v in skips.values()], dtype="S") if skips else np.zeros(0, "S1"),
    }
    described = {}
    if records:
        for key, (dtype, shape) in (schema or {}).items():
            rows = np.concatenate([r.arrays[key] for r in records])
            arrays[_NPZ_REGION + key] = rows.astype(dtype, copy=False).reshape(-1, *shape)
            described[key] = [dtype.str, list(shape)]
    arrays["schema"] = np.array(json.dumps(described).encode("utf-8"), dtype="S")
    atomic_write_bytes(path, lambda handle: np.savez(handle, **arrays))


@dataclass(frozen=True)
class Pick:
    """One record chosen for the output: sort key and where it comes from."""

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


def _runs(picks: Sequence[Pick], source: int, src_offsets: np.ndarray, dst_offsets: np.ndarray) -> list[tuple[int, int, int]]:
    """Contiguous (src_start, src_stop, dst_start) row runs copied from one source."""
    runs: list[list[int]] = []
    for dst, pick in enumerate(picks):
        if pick.source != source:
            continue
        s0, s1, d0 = int(src_offsets[pick.index]), int(src_offsets[pick.index + 1]), int(dst_offsets[dst])
        if runs and runs[-1][1] == s0 and runs[-1][2] + (runs[-1][1] - runs[-1][0]) == d0:
            runs[-1][1] = s1  # extend: consecutive in both source and destination
        else:
            runs.append([s0, s1, d0])
    return [(a, b, c) for a, b, c in runs if b > a]


def write_store(
    out: Path,
    sources: Sequence[Source],
    picks: Sequence[Pick],
    config: Mapping[str, Any],
    root: str,
    feature_dtype: str,
) -> None:
    """Write the picked records of ``sources`` to ``out`` atomically (streaming, per run)."""
    schema = _common_schema(sources, picks)
    counts = np.array([sources[p.source].offsets[p.index + 1] - sources[p.source].offsets[p.index] for p in picks], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    total = int(offsets[-1])
    with atomic_path(out) as tmp:
        with h5open(tmp, "w") as f:
            f.attrs["format"] = FORMAT_NAME
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["config"] = json.dumps(dict(config), sort_keys=True)
            f.attrs["root"] = _text_attr(root)
            f.attrs["feature_dtype"] = feature_dtype
            names = np.array([p.key for p in picks], dtype=object) if picks else np.zeros(0, dtype=object)
            f.create_dataset("images", data=names, dtype=h5py.string_dtype("utf-8"))
            f.create_dataset("orders", data=np.array([p.order for p in picks], dtype=np.int64))
            f.create_dataset(
                "sizes", data=np.array([sources[p.source].sizes[p.index] for p in picks], dtype=np.int32).reshape(-1, 2)
            )
            f.create_dataset("offsets", data=offsets)
            f.create_dataset("region_image", data=np.repeat(np.arange(len(picks), dtype=np.int32), counts))
            group = f.create_group("regions")
            dsets = {key: group.create_dataset(key, shape=(total, *shape), dtype=dtype) for key, (dtype, shape) in schema.items()}
            for s, source in enumerate(sources):
                runs = _runs(picks, s, source.offsets, offsets)
                if not runs:
                    continue
                for key, dset in dsets.items():
                    rows = source.rows(key)
                    for s0, s1, d0 in runs:
                        dset[d0 : d0 + (s1 - s0)] = rows[s0:s1]
