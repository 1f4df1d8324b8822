"""Crash-safe HDF5 store for the regions extracted from an image collection.

One store file holds, for every image of a collection, a variable number of
regions (rows): boxes, scores, features... Extraction takes seconds per image,
may be killed at any moment (``kill -9``), resumed, and split over several
shard processes whose outputs are merged later. The store is built so that:

* a kill at any moment loses at most the images buffered in memory (at most
  ``chunk_images``), which a resume recomputes; every image ends up stored
  exactly once;
* a reader only ever sees a complete, finalized file (it is written to a
  temporary sibling, fsynced and ``os.replace``-d into place);
* two writers on the same output cannot run at once (``<out>.lock``, flock).

Files next to a store ``<out>`` (e.g. ``regions.h5``)::

    <out>              final HDF5 store (layout below), only ever replaced atomically
    <out>.lock         flock held by the writer for its whole life; may remain after
                       exit (the kernel drops the flock with the process, so a killed
                       writer never leaves a stale lock)
    <out>.parts/       only while a writer has unfinished work:
        config.json    {"format", "format_version", "config", "root", "feature_dtype"}
        chunk-NNNNNN.npz   batches of completed images (+ skipped images), each
                       written atomically; merged into <out> by StoreWriter.close()
    <out>.skipped.tsv  images that could not be processed: ``image<TAB>reason`` lines
    .<out-name>[.parts|.skipped.tsv].tmp-<hex>   temporaries; removed by the next writer

HDF5 layout of ``<out>`` (N images, R regions in total)::

    attrs:  format = "dasr-region-store", format_version = 1,
            config = JSON string of a flat dict (backbone, weights hash, layer, ...),
            root = image root directory (str; bytes when it is not valid UTF-8),
            feature_dtype = "float32" | "float16"
    images        (N,)   vlen string, the image paths relative to root (posix). Stored as
                         ``name.encode("utf-8", "surrogateescape")`` so that non-UTF-8
                         file names survive; read raw and decoded the same way.
    orders        (N,)   int64, position of the image in the full input list; rows are
                         sorted by (order, image)
    sizes         (N, 2) int32, (width, height) of the original image
    offsets       (N+1,) int64, regions of image i are rows offsets[i]:offsets[i+1]
    region_image  (R,)   int32, image index of each region row
    regions/<key> (R, ...) one dataset per region array (boxes, scores, features, ...);
                         features stored as feature_dtype, read back as float32

Configuration keys listed in :data:`VOLATILE_CONFIG_KEYS` (shard, creation time)
are kept but ignored when configurations are compared.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar, Union

import h5py
import numpy as np

from dasr.atomic import TMP_MARK as _TMP_MARK
from dasr.atomic import atomic_path
from dasr.atomic import fsync_dir as _fsync_dir
from dasr.atomic import fsync_file as _fsync_file
from dasr.atomic import temp_sibling as _tmp_sibling

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "VOLATILE_CONFIG_KEYS",
    "store_contents",
    "RegionStore",
    "StoreConfigError",
    "StoreError",
    "StoreLockedError",
    "StoreWriter",
    "diff_configs",
    "lock_path",
    "merge_stores",
    "normalize_config",
    "parse_shard",
    "parts_path",
    "read_skipped",
    "shard_of",
    "skipped_path",
]

FORMAT_NAME = "dasr-region-store"
FORMAT_VERSION = 1
# Keys that legitimately differ between runs producing the same regions.
VOLATILE_CONFIG_KEYS = ("shard", "created")
FEATURE_KEY = "features"
FEATURE_DTYPES = ("float32", "float16")

PathLike = Union[str, "os.PathLike[str]"]
T = TypeVar("T")

_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CHUNK_RE = re.compile(r"^chunk-(\d{6,})\.npz$")
_NPZ_REGION = "region_"  # npz member prefix of region arrays inside a chunk


class StoreError(Exception):
    """A store file is corrupt, foreign, truncated or otherwise unusable."""


class StoreConfigError(StoreError):
    """A store was created with a configuration other than the requested one."""


class StoreLockedError(StoreError):
    """Another process is writing the same store."""


# --------------------------------------------------------------------------- paths


def parts_path(path: PathLike) -> Path:
    """Folder holding the unfinished work of a writer of ``path``."""
    return Path(f"{os.fspath(path)}.parts")


def lock_path(path: PathLike) -> Path:
    """Lock file of the writer of ``path``."""
    return Path(f"{os.fspath(path)}.lock")


def skipped_path(path: PathLike) -> Path:
    """TSV file listing the images of ``path`` that could not be processed."""
    return Path(f"{os.fspath(path)}.skipped.tsv")


def _cleanup_tmp(store: Path) -> None:
    """Remove temporaries left by a killed writer of ``store``.

    Only called while holding the store lock, and only names produced by
    :func:`_tmp_sibling` (:func:`dasr.atomic.temp_sibling`, also behind
    :func:`_atomic_path`) for this store match, so nothing in use is removed.
    """
    name = re.escape(store.name)
    pattern = re.compile(rf"^\.{name}(\.parts|\.skipped\.tsv)?{re.escape(_TMP_MARK)}[0-9a-f]{{32}}$")
    candidates = [(store.parent, pattern)]
    parts = parts_path(store)
    if parts.is_dir():
        candidates.append((parts, re.compile(rf"^\..*{re.escape(_TMP_MARK)}[0-9a-f]{{32}}$")))
    for folder, regex in candidates:
        with contextlib.suppress(FileNotFoundError):
            for entry in os.listdir(folder):
                if regex.match(entry):
                    _remove(folder / entry)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _atomic_path(path: Path) -> contextlib.AbstractContextManager[Path]:
    """:func:`dasr.atomic.atomic_path` (no suffix, so :func:`_cleanup_tmp` knows the names).

    ``_fsync_file`` is looked up at each call, so tests can stop a writer right
    before the rename (see tests/test_store.py).
    """
    return atomic_path(path, fsync=lambda tmp: _fsync_file(tmp))


def _atomic_write_bytes(path: Path, write: Callable[[Any], None]) -> None:
    """Write a file atomically through ``write(binary_file_object)``."""
    with _atomic_path(path) as tmp, open(tmp, "wb") as handle:
        write(handle)


# ------------------------------------------------------------------------ helpers


def _encode_name(name: str) -> bytes:
    # surrogateescape: names decoded from non-UTF-8 bytes round-trip exactly.
    return name.encode("utf-8", "surrogateescape")


def _decode_name(raw: bytes | str) -> str:
    if isinstance(raw, str):
        return raw
    return bytes(raw).decode("utf-8", "surrogateescape")


def _text_attr(text: str) -> str | np.bytes_:
    # h5py stores str as UTF-8; fall back to raw bytes for undecodable paths.
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return np.bytes_(_encode_name(text))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _h5open(path: Path, mode: str) -> h5py.File:
    # Store files are immutable once renamed into place, so HDF5's own file
    # locking adds nothing and fails on some network file systems.
    try:
        return h5py.File(path, mode, locking=False)
    except (TypeError, ValueError):  # pragma: no cover - HDF5 without locking control
        return h5py.File(path, mode)


def _plain_scalar(value: Any, key: str) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"config[{key!r}]: {type(value).__name__} is not a JSON scalar or list of scalars")


def _plain_value(value: Any, key: str) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain_scalar(v, key) for v in value]
    return _plain_scalar(value, key)


def normalize_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``config`` as a plain JSON-round-tripped flat dict.

    Args:
      config: mapping of str keys to JSON scalars (None, bool, int, float, str),
        numpy scalars or lists of scalars.

    Returns:
      A new dict equal to ``json.loads(json.dumps(config))``.

    Raises:
      TypeError: a key is not a str or a value is nested / not JSON-able.
      ValueError: a float is NaN or infinite.
    """
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping, got {type(config).__name__}")
    plain: dict[str, Any] = {}
    for key, value in config.items():
        if not isinstance(key, str):
            raise TypeError(f"config keys must be str, got {key!r}")
        plain[key] = _plain_value(value, key)
    return json.loads(json.dumps(plain, allow_nan=False))


def _same_value(a: Any, b: Any) -> bool:
    # 1 == 1.0 is accepted (JSON writers disagree on them) but True != 1.
    if isinstance(a, list) or isinstance(b, list):
        return (
            isinstance(a, list)
            and isinstance(b, list)
            and len(a) == len(b)
            and all(_same_value(x, y) for x, y in zip(a, b))
        )
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


_MISSING = object()


def diff_configs(
    stored: Mapping[str, Any],
    requested: Mapping[str, Any],
    labels: tuple[str, str] = ("stored", "requested"),
) -> list[str]:
    """List the significant differences between two configurations.

    Args:
      stored: configuration found in a store.
      requested: configuration asked for.
      labels: names of the two sides in the messages.

    Returns:
      One ``"key: stored=<json> requested=<json>"`` string per differing key
      (sorted; keys in :data:`VOLATILE_CONFIG_KEYS` ignored); empty when equal.
    """
    def show(value: Any) -> str:
        return "<missing>" if value is _MISSING else json.dumps(value)

    lines = []
    for key in sorted((set(stored) | set(requested)) - set(VOLATILE_CONFIG_KEYS)):
        a, b = stored.get(key, _MISSING), requested.get(key, _MISSING)
        if a is _MISSING or b is _MISSING or not _same_value(a, b):
            lines.append(f"{key}: {labels[0]}={show(a)} {labels[1]}={show(b)}")
    return lines


def _config_error(path: Path, lines: list[str], hint: str) -> StoreConfigError:
    return StoreConfigError(f"{path}: configuration differs from the stored one ({'; '.join(lines)}); {hint}")


def _check_image_name(image: Any) -> str:
    if not isinstance(image, str) or not image:
        raise ValueError(f"image must be a non-empty str path relative to root, got {image!r}")
    if image.startswith("/") or "\x00" in image:
        raise ValueError(f"{image!r}: image must be a relative posix path without NUL")
    return image


# ------------------------------------------------------------------------ records


@dataclass(frozen=True)
class _Record:
    """One completed image, buffered in memory until the next flush."""

    image: str
    order: int
    size: tuple[int, int]
    count: int
    arrays: dict[str, np.ndarray]


# Region schema: key -> (stored dtype, trailing shape).
Schema = dict[str, tuple[np.dtype, tuple[int, ...]]]


def _schema_text(schema: Schema) -> str:
    return ", ".join(f"{k}: {dt.name}{list(shape)}" for k, (dt, shape) in sorted(schema.items())) or "none"


def _stored_dtype(key: str, dtype: np.dtype, feature_dtype: str) -> np.dtype:
    if key == FEATURE_KEY:
        return np.dtype(feature_dtype)
    if dtype == np.float64:
        return np.dtype(np.float32)  # no region quantity needs double precision
    return dtype


def _check_regions(
    image: str, regions: Mapping[str, Any], schema: Schema | None, feature_dtype: str
) -> tuple[int, dict[str, np.ndarray], Schema]:
    """Validate and convert the region arrays of one image.

    Args:
      image: image name, for messages.
      regions: key -> array with a common leading dimension n.
      schema: schema of the store, None before the first image.
      feature_dtype: dtype of the 'features' array.

    Returns:
      (n, converted copies of the arrays, schema of this image).

    Raises:
      ValueError: naming the image, when the arrays are inconsistent with each
        other or with ``schema``.
    """
    if not isinstance(regions, Mapping) or not regions:
        raise ValueError(f"{image}: regions must be a non-empty dict of arrays")
    counts = set()
    converted: dict[str, np.ndarray] = {}
    own: Schema = {}
    for key, value in regions.items():
        if not isinstance(key, str) or not _KEY_RE.match(key):
            raise ValueError(f"{image}: invalid region key {key!r} (letters, digits, _)")
        array = np.asarray(value)
        if array.ndim < 1:
            raise ValueError(f"{image}: regions[{key!r}] must have a leading region axis")
        if array.dtype.kind not in "biuf":
            raise ValueError(f"{image}: regions[{key!r}] has non-numeric dtype {array.dtype}")
        counts.add(array.shape[0])
        dtype = _stored_dtype(key, array.dtype, feature_dtype)
        if schema is not None and key in schema:
            want = schema[key][0]
            if not np.can_cast(dtype, want, "same_kind"):
                raise ValueError(f"{image}: regions[{key!r}] dtype {array.dtype} does not match stored {want}")
            dtype = want
        converted[key] = np.array(array, dtype=dtype, copy=True)  # the caller may reuse its buffers
        own[key] = (dtype, tuple(int(d) for d in array.shape[1:]))
    if len(counts) != 1:
        shapes = {k: v.shape for k, v in converted.items()}
        raise ValueError(f"{image}: region arrays have different leading dimensions {shapes}")
    if schema is not None and {k: v[1] for k, v in own.items()} != {k: v[1] for k, v in schema.items()}:
        raise ValueError(
            f"{image}: region arrays ({_schema_text(own)}) differ from the store's ({_schema_text(schema)})"
        )
    return counts.pop(), converted, own


# ------------------------------------------------------------------------ sources


class _Source:
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


class _H5Source(_Source):
    """A finalized store file, opened read-only and validated."""

    def __init__(self, path: Path) -> None:
        self.name = str(path)
        try:
            self.file = _h5open(path, "r")
        except FileNotFoundError:
            hint = ""
            if parts_path(path).is_dir():
                hint = f" (an unfinished extraction is in {parts_path(path)}; rerun it to resume)"
            raise StoreError(f"{path}: no such region store{hint}") from None
        except OSError as exc:
            raise StoreError(f"{path}: unreadable HDF5 file ({_one_line(exc)})") from None
        try:
            self._load(path)
        except StoreError:
            self.close()
            raise
        except KeyError as exc:
            self.close()
            raise StoreError(f"{path}: not a DASR region store (missing {_one_line(exc)})") from None
        except (OSError, ValueError, TypeError) as exc:
            self.close()
            raise StoreError(f"{path}: unreadable HDF5 file ({_one_line(exc)})") from None

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
            self.config = json.loads(_decode_name(attrs["config"]))
        except (KeyError, json.JSONDecodeError) as exc:
            raise StoreError(f"{path}: not a DASR region store (bad config attribute: {_one_line(exc)})") from None
        self.root = _decode_name(attrs.get("root", ""))
        f = self.file
        self.images = [_decode_name(raw) for raw in f["images"][()]]
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
            _decode_name(stored_fd)
            if stored_fd is not None
            else (self.schema[FEATURE_KEY][0].name if FEATURE_KEY in self.schema else "float32")
        )

    def rows(self, key: str) -> Any:
        return self.file["regions"][key]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.file.close()


class _ChunkSource(_Source):
    """One chunk file of a writer's parts folder (small; region arrays read lazily)."""

    def __init__(self, path: Path) -> None:
        self.name = str(path)
        self.path = path
        try:
            with np.load(path, allow_pickle=False) as npz:
                self.images = [_decode_name(raw) for raw in npz["images"].tolist()]
                self.orders = npz["orders"].astype(np.int64)
                self.sizes = npz["sizes"].astype(np.int32).reshape(-1, 2)
                counts = npz["counts"].astype(np.int64)
                self.skips = dict(
                    zip(
                        (_decode_name(s) for s in npz["skip_images"].tolist()),
                        (_decode_name(s) for s in npz["skip_reasons"].tolist()),
                    )
                )
                # Schema from a small JSON member: reading the region arrays here
                # would load every chunk's features when a writer opens.
                described = json.loads(npz["schema"].item().decode("utf-8"))
                self.schema = {key: (np.dtype(dt), tuple(shape)) for key, (dt, shape) in described.items()}
        except (OSError, ValueError, KeyError, EOFError, TypeError) as exc:
            # Chunks are written atomically, so this means outside damage.
            raise StoreError(
                f"{path}: not a DASR chunk file ({_one_line(exc)}); delete it to recompute its images"
            ) from None
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        _check_index(self.name, len(self.images), self.orders, self.sizes, self.offsets)

    def rows(self, key: str) -> np.ndarray:
        with np.load(self.path, allow_pickle=False) as npz:  # one at a time: bounded memory and fds
            return npz[_NPZ_REGION + key]


def _chunk_files(parts: Path) -> list[Path]:
    found = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.listdir(parts):
            match = _CHUNK_RE.match(entry)
            if match:
                found.append((int(match.group(1)), parts / entry))
    return [p for _, p in sorted(found)]


def _write_chunk(path: Path, records: list[_Record], skips: Mapping[str, str], schema: Schema | None) -> None:
    """Write one batch of completed images (and skips) atomically as an .npz file."""
    arrays: dict[str, np.ndarray] = {
        # 'S' arrays strip trailing NULs only; names and reasons contain none.
        "images": np.array([_encode_name(r.image) for r in records], dtype="S") if records else np.zeros(0, "S1"),
        "orders": np.array([r.order for r in records], dtype=np.int64),
        "sizes": np.array([r.size for r in records], dtype=np.int32).reshape(-1, 2),
        "counts": np.array([r.count for r in records], dtype=np.int64),
        "skip_images": np.array([_encode_name(k) for k in skips], dtype="S") if skips else np.zeros(0, "S1"),
        "skip_reasons": np.array([_encode_name(v) for v in skips.values()], dtype="S") if skips else np.zeros(0, "S1"),
    }
    described = {}
    if records:
        for key, (dtype, shape) in (schema or {}).items():
            rows = np.concatenate([r.arrays[key] for r in records])
            arrays[_NPZ_REGION + key] = rows.astype(dtype, copy=False).reshape(-1, *shape)
            described[key] = [dtype.str, list(shape)]
    arrays["schema"] = np.array(json.dumps(described).encode("utf-8"), dtype="S")
    _atomic_write_bytes(path, lambda handle: np.savez(handle, **arrays))


@dataclass(frozen=True)
class _Pick:
    """One record chosen for the output: sort key and where it comes from."""

    order: int
    key: bytes
    source: int
    index: int


def _select(sources: Sequence[_Source], duplicates: str) -> list[_Pick]:
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
            picks.append(_Pick(int(source.orders[i]), _encode_name(image), s, i))
    picks.sort(key=lambda p: (p.order, p.key))
    return picks


def _common_schema(sources: Sequence[_Source], picks: Sequence[_Pick]) -> Schema:
    used = sorted({p.source for p in picks})
    schema: Schema | None = None
    first = ""
    for s in used:
        own = sources[s].schema
        if schema is None:
            schema, first = own, sources[s].name
        elif own != schema:
            raise StoreError(
                f"{sources[s].name}: region arrays ({_schema_text(own)}) differ from {first} ({_schema_text(schema)})"
            )
    return schema or {}


def _runs(picks: Sequence[_Pick], source: int, src_offsets: np.ndarray, dst_offsets: np.ndarray) -> list[tuple[int, int, int]]:
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


def _write_store(
    out: Path,
    sources: Sequence[_Source],
    picks: Sequence[_Pick],
    config: Mapping[str, Any],
    root: str,
    feature_dtype: str,
) -> None:
    """Write the picked records of ``sources`` to ``out`` atomically (streaming, per run)."""
    schema = _common_schema(sources, picks)
    counts = np.array([sources[p.source].offsets[p.index + 1] - sources[p.source].offsets[p.index] for p in picks], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    total = int(offsets[-1])
    with _atomic_path(out) as tmp:
        with _h5open(tmp, "w") as f:
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


# ------------------------------------------------------------------------ skipped


def _clean_reason(reason: str) -> str:
    # One TSV line per image: tabs/newlines would break the format.
    return " ".join(str(reason).replace("\x00", " ").split()) or "unknown"


def read_skipped(path: PathLike) -> dict[str, str]:
    """Read ``<store>.skipped.tsv``.

    Args:
      path: the store path (not the tsv path).

    Returns:
      image -> reason, in file order; empty when there is no such file.
    """
    tsv = skipped_path(path)
    skips: dict[str, str] = {}
    try:
        data = tsv.read_bytes()
    except FileNotFoundError:
        return skips
    for line in data.splitlines():
        if line:
            image, _, reason = line.partition(b"\t")
            skips[_decode_name(image)] = _decode_name(reason)
    return skips


def _write_skipped(path: Path, skips: Mapping[str, str]) -> None:
    tsv = skipped_path(path)
    if not skips:
        _remove(tsv)  # a stale list from an earlier run would be wrong now
        return
    lines = b"".join(_encode_name(k) + b"\t" + _encode_name(v) + b"\n" for k, v in sorted(skips.items()))
    _atomic_write_bytes(tsv, lambda handle: handle.write(lines))


# ------------------------------------------------------------------------ lock


class _Lock:
    """Exclusive, non-blocking flock on ``<store>.lock``, released with the process."""

    def __init__(self, store: Path) -> None:
        self.path = lock_path(store)
        # os.open fds are non-inheritable, so a spawned child never keeps the lock.
        self.fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = None
            raise StoreLockedError(f"{store}: another process is writing this store (lock {self.path})") from None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the only description drops the flock
            self.fd = None


# ------------------------------------------------------------------------ writer


class StoreWriter:
    """Resumable, crash-safe writer of a region store.

    Completed images are buffered and flushed every ``chunk_images`` images as
    atomic chunk files in ``<path>.parts/``; :meth:`close` merges an existing
    final file (earlier completed run) and all chunks into ``<path>``
    atomically. Opening the writer again after a crash resumes: :attr:`done`
    lists the images already stored.

    Attributes:
      path: the store path.
      config: the stored configuration (the requested one for a new store).
      root: image root directory written to the store.
      done: images already stored (earlier runs, flushed chunks and this session).
    """

    def __init__(
        self,
        path: PathLike,
        config: Mapping[str, Any],
        root: PathLike,
        *,
        feature_dtype: str = "float32",
        chunk_images: int = 16,
    ) -> None:
        """Open (create or resume) the store at ``path`` for writing.

        Args:
          path: output HDF5 path; its directory is created if needed.
          config: flat JSON-able configuration; must match the stored one
            (except :data:`VOLATILE_CONFIG_KEYS`) when resuming.
          root: directory the image names are relative to.
          feature_dtype: storage dtype of the 'features' array, float32 or float16.
          chunk_images: images buffered in memory before a flush.

        Raises:
          StoreLockedError: another writer holds the store.
          StoreConfigError: the store exists with another config or feature_dtype.
          StoreError: existing files are corrupt or foreign.
          ValueError, TypeError: invalid arguments.
        """
        if feature_dtype not in FEATURE_DTYPES:
            raise ValueError(f"feature_dtype must be one of {FEATURE_DTYPES}, got {feature_dtype!r}")
        if not isinstance(chunk_images, int) or chunk_images < 1:
            raise ValueError(f"chunk_images must be a positive int, got {chunk_images!r}")
        requested = normalize_config(config)
        self.path = Path(path)
        self.root = os.fspath(root)
        self.feature_dtype = feature_dtype
        self.chunk_images = chunk_images
        self.done: set[str] = set()
        self._records: list[_Record] = []
        self._skips: dict[str, str] = {}
        self._schema: Schema | None = None
        self._closed = False
        self._requested = requested
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = _Lock(self.path)
        try:
            _cleanup_tmp(self.path)
            self.config = self._open_parts(requested)
            self._scan_chunks()
        except BaseException:
            self._lock.release()
            raise

    @property
    def parts(self) -> Path:
        """Folder of unfinished work (chunks and config.json)."""
        return parts_path(self.path)

    def _check_stored(self, stored: Mapping[str, Any], feature_dtype: str, where: Path) -> None:
        lines = diff_configs(stored, self._requested)
        if feature_dtype != self.feature_dtype:
            lines.append(f"feature_dtype: stored={json.dumps(feature_dtype)} requested={json.dumps(self.feature_dtype)}")
        if lines:
            raise _config_error(where, lines, "use another output path or the original settings")

    def _open_parts(self, requested: dict[str, Any]) -> dict[str, Any]:
        """Check the stored configuration, create the parts folder if needed; return the config."""
        config = requested
        if self.path.exists():
            final = _H5Source(self.path)
            try:
                self._check_stored(final.config, final.feature_dtype, self.path)
                self.done.update(final.images)
                if final.images:
                    self._schema = dict(final.schema)
                config = final.config  # volatile keys (creation time) keep their first value
            finally:
                final.close()
        meta_path = self.parts / "config.json"
        if self.parts.is_dir():
            try:
                meta = json.loads(meta_path.read_text("utf-8"))
                if meta.get("format") != FORMAT_NAME or meta.get("format_version") != FORMAT_VERSION:
                    raise ValueError(f"format {meta.get('format')!r} version {meta.get('format_version')!r}")
                stored, stored_fd = meta["config"], meta["feature_dtype"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise StoreError(f"{self.parts}: not a DASR parts folder ({_one_line(exc)})") from None
            self._check_stored(stored, stored_fd, meta_path)
            return stored
        # Build the folder under a temporary name and rename it: a parts folder
        # therefore always has its config.json.
        meta = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "config": config,
            "root": self.root,
            "feature_dtype": self.feature_dtype,
        }
        tmp = _tmp_sibling(self.parts)
        tmp.mkdir()
        try:
            text = json.dumps(meta, indent=1, sort_keys=True).encode("utf-8")
            with open(tmp / "config.json", "xb") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            _fsync_dir(tmp)
            os.rename(tmp, self.parts)
        except BaseException:
            _remove(tmp)
            raise
        _fsync_dir(self.parts.parent)
        return config

    def _scan_chunks(self) -> None:
        chunks = _chunk_files(self.parts)
        numbers = [int(m.group(1)) for m in (_CHUNK_RE.match(p.name) for p in chunks) if m]
        self._next_chunk = 1 + max(numbers, default=0)
        for chunk in chunks:
            source = _ChunkSource(chunk)
            self.done.update(source.images)
            if self._schema is None and source.images:
                self._schema = dict(source.schema)

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"{self.path}: writer is closed")

    def add(self, image: str, order: int, size: tuple[int, int], regions: Mapping[str, Any]) -> None:
        """Add the regions of one completed image.

        Args:
          image: path relative to root (posix str).
          order: position of the image in the full input list (kept by sharding).
          size: (width, height) of the original image.
          regions: arrays with a common leading dimension n (n may be 0), e.g.
            boxes (n, 4), scores (n,), features (n, D). Every image must give the
            same keys and trailing shapes. 'features' is stored as feature_dtype,
            float64 arrays as float32, others as given.

        Raises:
          ValueError: the image is already stored, or the arguments are invalid
            or inconsistent with earlier images (the message names the image).
        """
        self._check_open()
        image = _check_image_name(image)
        if image in self.done:
            raise ValueError(f"{image}: already stored in {self.path}")
        if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 0:
            raise ValueError(f"{image}: order must be a non-negative int, got {order!r}")
        try:
            width, height = (int(v) for v in size)
        except (TypeError, ValueError):
            raise ValueError(f"{image}: size must be (width, height), got {size!r}") from None
        if width <= 0 or height <= 0:
            raise ValueError(f"{image}: size must be positive (width, height), got {size!r}")
        count, arrays, schema = _check_regions(image, regions, self._schema, self.feature_dtype)
        if self._schema is None:
            self._schema = schema
        self._records.append(_Record(image, int(order), (width, height), count, arrays))
        self.done.add(image)
        self._skips.pop(image, None)
        if len(self._records) + len(self._skips) >= self.chunk_images:
            self.flush()

    def skip(self, image: str, reason: str) -> None:
        """Record an image that could not be processed.

        Skipped images go to ``<path>.skipped.tsv`` at close and are not in
        :attr:`done`, so a later run retries them.

        Args:
          image: path relative to root.
          reason: short explanation; whitespace is collapsed to keep one line.

        Raises:
          ValueError: the image is already stored, or its name contains a tab or newline.
        """
        self._check_open()
        image = _check_image_name(image)
        if image in self.done:
            raise ValueError(f"{image}: already stored in {self.path}; cannot skip it")
        if any(c in image for c in "\t\n\r"):
            raise ValueError(f"{image!r}: a skipped image name cannot contain a tab or newline")
        self._skips[image] = _clean_reason(reason)
        if len(self._records) + len(self._skips) >= self.chunk_images:
            self.flush()

    def flush(self) -> None:
        """Write the buffered images (and skips) as one atomic chunk file."""
        self._check_open()
        if not self._records and not self._skips:
            return
        chunk = self.parts / f"chunk-{self._next_chunk:06d}.npz"
        _write_chunk(chunk, self._records, self._skips, self._schema)
        # Cleared only once the chunk is in place: an interrupted write keeps the
        # buffer for abort(); a record written twice is deduplicated at close.
        self._next_chunk += 1
        self._records, self._skips = [], {}

    def _finalize(self) -> None:
        chunks = [_ChunkSource(p) for p in _chunk_files(self.parts)]
        sources: list[_Source] = []
        skips = read_skipped(self.path)
        final = _H5Source(self.path) if self.path.exists() else None
        try:
            if final is not None:
                sources.append(final)
            sources.extend(chunks)
            picks = _select(sources, duplicates="first")
            if final is None or any(p.source > 0 for p in picks):
                _write_store(self.path, sources, picks, self.config, self.root, self.feature_dtype)
            stored = {_decode_name(p.key) for p in picks}
        finally:
            if final is not None:
                final.close()
        for chunk in chunks:
            skips.update(chunk.skips)
        _write_skipped(self.path, {k: v for k, v in skips.items() if k not in stored})
        _remove_parts(self.path)

    def close(self) -> None:
        """Flush, merge everything into ``path`` atomically, delete the parts, unlock.

        Raises:
          StoreError: unreadable parts or final file; the parts are kept.
        """
        if self._closed:
            return
        try:
            self.flush()
            self._finalize()
        finally:
            self._closed = True
            self._lock.release()

    def abort(self) -> None:
        """Flush the complete buffered images, keep the parts for a resume, unlock."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            self._lock.release()

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _remove_parts(path: Path) -> None:
    """Delete the parts folder: rename it away first (atomic), then remove it."""
    parts = parts_path(path)
    if not parts.is_dir():
        return
    trash = _tmp_sibling(parts)
    os.rename(parts, trash)
    _fsync_dir(parts.parent)
    _remove(trash)


# ------------------------------------------------------------------------ reader


class RegionStore:
    """A finalized region store, fully loaded into memory (read-only).

    Attributes:
      path: the store path.
      config: stored configuration.
      root: image root directory.
      feature_dtype: storage dtype of the features ("float32" or "float16").
      images: image names (relative to root), sorted by (order, name).
      orders: (N,) int64 positions in the full input list.
      sizes: (N, 2) int32 (width, height).
      offsets: (N+1,) int64; regions of image i are rows offsets[i]:offsets[i+1].
      region_image: (R,) int32 image index of each region.
      arrays: key -> (R, ...) region arrays; features as float32.
    """

    def __init__(
        self,
        path: Path,
        config: dict[str, Any],
        root: str,
        feature_dtype: str,
        images: list[str],
        orders: np.ndarray,
        sizes: np.ndarray,
        offsets: np.ndarray,
        region_image: np.ndarray,
        arrays: dict[str, np.ndarray],
    ) -> None:
        self.path = path
        self.config = config
        self.root = root
        self.feature_dtype = feature_dtype
        self.images = images
        self.orders = orders
        self.sizes = sizes
        self.offsets = offsets
        self.region_image = region_image
        self.arrays = arrays
        self._index = {name: i for i, name in enumerate(images)}

    @classmethod
    def open(cls, path: PathLike, expected_config: Mapping[str, Any] | None = None) -> RegionStore:
        """Load a store.

        Args:
          path: store path.
          expected_config: if given, must equal the stored configuration except
            for :data:`VOLATILE_CONFIG_KEYS`.

        Returns:
          The loaded store.

        Raises:
          StoreError: missing, unreadable, truncated or foreign file.
          StoreConfigError: the configuration differs from ``expected_config``.
        """
        path = Path(path)
        expected = None if expected_config is None else normalize_config(expected_config)
        source = _H5Source(path)
        try:
            if expected is not None:
                lines = diff_configs(source.config, expected)
                if lines:
                    raise _config_error(path, lines, "extract again with the requested settings")
            arrays = {}
            for key in source.schema:
                data = np.asarray(source.rows(key)[()])
                arrays[key] = data.astype(np.float32) if key == FEATURE_KEY else data
            region_image = np.repeat(np.arange(len(source.images), dtype=np.int32), np.diff(source.offsets))
        except (OSError, ValueError) as exc:
            raise StoreError(f"{path}: unreadable HDF5 file ({_one_line(exc)})") from None
        finally:
            source.close()
        return cls(
            path,
            source.config,
            source.root,
            source.feature_dtype,
            source.images,
            source.orders,
            source.sizes,
            source.offsets,
            region_image,
            arrays,
        )

    def __len__(self) -> int:
        return len(self.images)

    def index(self, image: str) -> int:
        """Position of ``image`` (KeyError if absent)."""
        return self._index[image]

    def regions_of(self, i: int) -> dict[str, np.ndarray]:
        """Region arrays (views) of image ``i``.

        Raises:
          IndexError: ``i`` out of range.
        """
        n = len(self.images)
        if not -n <= i < n:
            raise IndexError(f"image index {i} out of range for {n} images")
        i %= n
        lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
        return {key: array[lo:hi] for key, array in self.arrays.items()}


def store_contents(path: PathLike) -> tuple[dict[str, Any], list[str]]:
    """The configuration and image names of a finalized store, without loading its regions.

    Raises:
      StoreError: missing, unreadable or foreign file.
    """
    source = _H5Source(Path(path))
    try:
        return source.config, list(source.images)
    finally:
        source.close()


# ------------------------------------------------------------------------ merge


def merge_stores(inputs: Sequence[PathLike], out: PathLike) -> RegionStore:
    """Merge finalized stores (e.g. shard outputs) into one, atomically.

    Args:
      inputs: store paths; their configurations must agree except
        :data:`VOLATILE_CONFIG_KEYS`. The first input gives config and root
        ('shard' is dropped from the merged config).
      out: output path; replaced atomically if it exists.

    Returns:
      The merged store, loaded.

    Raises:
      ValueError: no inputs.
      StoreLockedError: a writer is writing ``out``.
      StoreConfigError: configurations or feature dtypes differ.
      StoreError: an image occurs in two inputs, ``out`` has unfinished parts, or
        an input is unreadable.
    """
    paths = [Path(p) for p in inputs]
    if not paths:
        raise ValueError("merge_stores needs at least one input store")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = _Lock(out)  # first: a running writer is reported as such
    sources: list[_Source] = []
    try:
        if parts_path(out).is_dir():
            # Its writer would later take the merged file for an earlier run of its own.
            raise StoreError(
                f"{out}: an unfinished extraction writes here ({parts_path(out)}); finish it or delete it"
            )
        _cleanup_tmp(out)
        for p in paths:
            sources.append(_H5Source(p))
        first = sources[0]
        assert isinstance(first, _H5Source)
        for p, source in zip(paths[1:], sources[1:]):
            assert isinstance(source, _H5Source)
            labels = ("first", "this")
            lines = diff_configs(first.config, source.config, labels)
            if source.feature_dtype != first.feature_dtype:
                lines.append(f"feature_dtype: first={json.dumps(first.feature_dtype)} this={json.dumps(source.feature_dtype)}")
            if lines:
                raise StoreConfigError(f"{p}: configuration differs from the first input {paths[0]} ({'; '.join(lines)})")
        picks = _select(sources, duplicates="error")
        config = {k: v for k, v in first.config.items() if k != "shard"}
        _write_store(out, sources, picks, config, first.root, first.feature_dtype)
        stored = {_decode_name(p.key) for p in picks}
        skips: dict[str, str] = {}
        for p in paths:
            skips.update(read_skipped(p))
        _write_skipped(out, {k: v for k, v in skips.items() if k not in stored})
    finally:
        for source in sources:
            source.close()
        lock.release()
    return RegionStore.open(out)


# ------------------------------------------------------------------------ shards


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
        raise ValueError(f"invalid shard {text!r}: expected I/N with 0 <= I < N (0-based), e.g. 0/4")
    i, n = int(match.group(1)), int(match.group(2))
    _check_shard((i, n), text)
    return i, n


def _check_shard(shard: tuple[int, int], text: Any) -> None:
    i, n = shard
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"invalid shard {text!r}: need 0 <= I < N (0-based I), got I={i} N={n}")


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
        raise ValueError(f"invalid shard {shard!r}: expected (i, n)") from None
    _check_shard((i, n), shard)
    return [(k, items[k]) for k in range(i, len(items), n)]
