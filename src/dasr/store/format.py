"""The two file formats of a store and their readers: the final HDF5 file and the npz chunks.

The HDF5 layout is described in :mod:`dasr.store`. A chunk ``<out>.parts/chunk-NNNNNN.npz``
holds a batch of completed images (and skipped ones) of an unfinished writer::

    images, orders, sizes, counts   one entry per completed image (names as surrogateescape bytes)
    file_sizes, file_sha256         the image files' sizes and SHA-256 (absent in older chunks)
    skip_images, skip_reasons       the images skipped in the batch, with their reasons
    schema                          JSON {key: [dtype str, trailing shape]} of the region arrays
    region_<key>                    (rows, ...) the region arrays of the batch

Both are read through a :class:`Source` (validated index + lazily read region rows); a new
final file is written from sources by :func:`dasr.store.assemble.write_store` (the writer's
finalize and :func:`dasr.store.merge.merge_stores`).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from dasr.store.errors import StoreError
from dasr.store.files import atomic_write_bytes, parts_path

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
    "missing_regions",
    "one_line",
    "same_root",
    "text_attr",
    "schema_text",
    "write_chunk",
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


def text_attr(text: str) -> str | np.bytes_:
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
    file_size: int = -1  # bytes of the image file; -1: not recorded
    sha256: str = ""     # hex SHA-256 of the image file; "": not recorded


# ------------------------------------------------------------------------ sources


class Source:
    """Records readable for a merge: a finalized store file or a chunk file."""

    name: str
    images: list[str]
    orders: np.ndarray
    sizes: np.ndarray
    offsets: np.ndarray
    schema: Schema
    file_sizes: np.ndarray  # (N,) int64, -1 where not recorded
    sha256s: np.ndarray     # (N,) S64 hex digests, b"" where not recorded

    def rows(self, key: str) -> Any:
        """Array-like of all region rows of ``key`` (supports slicing)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release file handles."""


def _identity(n: int, sizes: Any, digests: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-image file sizes and SHA-256 digests as stored, or "not recorded" (older files)."""
    if sizes is None or digests is None:
        return np.full(n, -1, np.int64), np.zeros(n, "S64")
    return np.asarray(sizes, dtype=np.int64), np.asarray(digests).astype("S64")


def _check_index(name: str, n: int, orders: np.ndarray, sizes: np.ndarray, offsets: np.ndarray,
                 identity: tuple[np.ndarray, np.ndarray]) -> None:
    if orders.shape != (n,) or sizes.shape != (n, 2) or offsets.shape != (n + 1,):
        raise StoreError(f"{name}: not a DASR region store (inconsistent index shapes)")
    if identity[0].shape != (n,) or identity[1].shape != (n,):
        raise StoreError(f"{name}: not a DASR region store (file_sizes or file_sha256 is not one entry per image)")
    if offsets[0] != 0 or np.any(np.diff(offsets) < 0):
        raise StoreError(f"{name}: not a DASR region store (offsets are not increasing from 0)")


def missing_regions(path: str | os.PathLike, key: str, images: int) -> StoreError:
    """The error for a region array a store lacks: none at all in a store of no image (a shard
    that received none: nothing to search or learn from), else a broken store."""
    if images == 0:
        return StoreError(f"{path}: the store holds no image, so no regions to search or learn from")
    return StoreError(f"{path}: not a DASR region store (no regions/{key} for its {images} images)")


def _member(file: h5py.File, name: str, kind: type) -> Any:
    """``file[name]``, which must be a ``kind`` (h5py.Dataset or h5py.Group) as the writer made it.

    Raises:
      KeyError: no such member.
      StoreError: a member of another kind (a file edited or written by something else).
    """
    obj = file[name]
    if not isinstance(obj, kind):
        raise StoreError(f"{file.filename}: not a DASR region store ({name} is a {type(obj).__name__.lower()}, "
                         f"where the store has a {kind.__name__.lower()})")
    return obj


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
        if not isinstance(self.config, dict) or not self.config:
            raise StoreError(f"{path}: not a DASR region store (its config attribute is "
                             f"{'empty' if self.config == {} else 'not a JSON object'})")
        self.root = decode_name(attrs.get("root", ""))
        f = self.file
        self.images = [decode_name(raw) for raw in _member(f, "images", h5py.Dataset)[()]]
        self.orders = np.asarray(_member(f, "orders", h5py.Dataset)[()], dtype=np.int64)
        self.sizes = np.asarray(_member(f, "sizes", h5py.Dataset)[()], dtype=np.int32)
        self.offsets = np.asarray(_member(f, "offsets", h5py.Dataset)[()], dtype=np.int64)
        # Stores written before per-image identity was recorded have neither dataset.
        self.has_identity = "file_sizes" in f and "file_sha256" in f
        self.file_sizes, self.sha256s = _identity(
            len(self.images), _member(f, "file_sizes", h5py.Dataset)[()] if self.has_identity else None,
            _member(f, "file_sha256", h5py.Dataset)[()] if self.has_identity else None)
        _check_index(self.name, len(self.images), self.orders, self.sizes, self.offsets,
                     (self.file_sizes, self.sha256s))
        total = int(self.offsets[-1])
        region_image = np.asarray(_member(f, "region_image", h5py.Dataset)[()])
        counts = np.diff(self.offsets)
        if region_image.shape != (total,) or not np.array_equal(
            region_image, np.repeat(np.arange(len(self.images)), counts)
        ):
            raise StoreError(f"{path}: not a DASR region store (region_image does not match offsets)")
        if len(set(self.images)) != len(self.images):
            raise StoreError(f"{path}: not a DASR region store (an image is stored twice)")
        self.schema = {}
        for key in _member(f, "regions", h5py.Group):
            dset = _member(f, f"regions/{key}", h5py.Dataset)
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
        """The h5py dataset ``regions/<key>`` (read lazily).

        Raises:
          StoreError: the store has no such array (:func:`missing_regions`).
        """
        if key not in self.schema:
            raise missing_regions(self.name, key, len(self.images))
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
                self.file_sizes, self.sha256s = _identity(
                    len(self.images), npz["file_sizes"] if "file_sizes" in npz else None,
                    npz["file_sha256"] if "file_sha256" in npz else None)
                sizes, digests = _identity(
                    len(self.skips), npz["skip_file_sizes"] if "skip_file_sizes" in npz else None,
                    npz["skip_file_sha256"] if "skip_file_sha256" in npz else None)
                self.skip_identity = {image: (int(size), digest.decode("ascii"))
                                      for image, size, digest in zip(self.skips, sizes, digests) if size >= 0 and digest}
        except (OSError, ValueError, KeyError, EOFError, TypeError) as exc:
            # Chunks are written atomically, so this means outside damage.
            raise StoreError(
                f"{path}: not a DASR chunk file ({one_line(exc)}); delete it to recompute its images"
            ) from None
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        _check_index(self.name, len(self.images), self.orders, self.sizes, self.offsets,
                     (self.file_sizes, self.sha256s))

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


def write_chunk(path: Path, records: list[Record], skips: Mapping[str, str], schema: Schema | None,
                skip_identity: Mapping[str, tuple[int, str]] | None = None) -> None:
    """Write one batch of completed images (and skips, with their files' identity) atomically as .npz."""
    skip_identity = skip_identity or {}
    arrays: dict[str, np.ndarray] = {
        # 'S' arrays strip trailing NULs only; names and reasons contain none.
        "images": np.array([encode_name(r.image) for r in records], dtype="S") if records else np.zeros(0, "S1"),
        "orders": np.array([r.order for r in records], dtype=np.int64),
        "sizes": np.array([r.size for r in records], dtype=np.int32).reshape(-1, 2),
        "counts": np.array([r.count for r in records], dtype=np.int64),
        "file_sizes": np.array([r.file_size for r in records], dtype=np.int64),
        "file_sha256": np.array([r.sha256.encode("ascii") for r in records], dtype="S64"),
        "skip_images": np.array([encode_name(k) for k in skips], dtype="S") if skips else np.zeros(0, "S1"),
        "skip_reasons": np.array([encode_name(v) for v in skips.values()], dtype="S") if skips else np.zeros(0, "S1"),
        "skip_file_sizes": np.array([skip_identity.get(k, (-1, ""))[0] for k in skips], dtype=np.int64),
        "skip_file_sha256": np.array([skip_identity.get(k, (-1, ""))[1].encode("ascii") for k in skips], dtype="S64"),
    }
    described = {}
    if records:
        for key, (dtype, shape) in (schema or {}).items():
            rows = np.concatenate([r.arrays[key] for r in records])
            arrays[_NPZ_REGION + key] = rows.astype(dtype, copy=False).reshape(-1, *shape)
            described[key] = [dtype.str, list(shape)]
    arrays["schema"] = np.array(json.dumps(described).encode("utf-8"), dtype="S")
    atomic_write_bytes(path, lambda handle: np.savez(handle, **arrays))
