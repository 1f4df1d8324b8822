"""StoreWriter: the resumable, crash-safe writer of a region store (chunks, resume, finalize).

Completed images are buffered in memory and flushed as atomic chunk files into
``<out>.parts/`` (whose ``config.json`` records the configuration); closing the writer
merges an earlier finished file and all chunks into ``<out>`` atomically and deletes the
parts. A writer opened on the same output after a kill resumes: it checks the stored
configuration and lists the images already stored.
"""
from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dasr.io.atomic import disk_full_error, fsync_dir, temp_sibling
from dasr.store import files
from dasr.store.config import config_error, diff_configs, normalize_config, store_backend
from dasr.store.errors import StoreConfigError, StoreError
from dasr.store.files import PathLike, cleanup_tmp, parts_path
from dasr.store.assemble import select, write_store
from dasr.store.format import (FEATURE_DTYPES, FEATURE_KEY, FORMAT_NAME, FORMAT_VERSION, ChunkSource, H5Source,
                               Record, Schema, Source, chunk_files, chunk_number, decode_name, one_line,
                               same_root, schema_text, write_chunk)
from dasr.store.lock import StoreLock
from dasr.store.skipped import clean_reason, read_skipped, read_skipped_identity, write_skipped

__all__ = ["StoreWriter"]

_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def _check_image_name(image: Any) -> str:
    if not isinstance(image, str) or not image:
        raise ValueError(f"image must be a non-empty str path relative to root, got {image!r}")
    if image.startswith("/") or "\x00" in image:
        raise ValueError(f"{image!r}: image must be a relative posix path without NUL")
    return image


def _checked_identity(image: str, identity: Any) -> tuple[int, str]:
    """(size, hex SHA-256) checked, or ValueError naming the image."""
    try:
        file_size, digest = identity
    except (TypeError, ValueError):
        file_size, digest = None, None
    if (isinstance(file_size, bool) or not isinstance(file_size, (int, np.integer)) or file_size < 0
            or not isinstance(digest, str) or not _SHA256_RE.match(digest)):
        raise ValueError(f"{image}: identity must be (size >= 0, 64 hex digits), got {identity!r}")
    return int(file_size), digest


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
            f"{image}: region arrays ({schema_text(own)}) differ from the store's ({schema_text(schema)})"
        )
    return counts.pop(), converted, own


class StoreWriter:
    """Resumable, crash-safe writer of a region store.

    Completed images are buffered and flushed every ``chunk_images`` images, or once
    ``flush_seconds`` have passed since the last flush, as atomic chunk files in
    ``<path>.parts/``; :meth:`close` merges an existing
    final file (earlier completed run) and all chunks into ``<path>``
    atomically. Opening the writer again after a crash resumes: :attr:`done`
    lists the images already stored.

    Attributes:
      path: the store path.
      config: the stored configuration (the requested one for a new store).
      root: image root directory written to the store.
      done: images already stored (earlier runs, flushed chunks and this session).
      identity: image -> (file size, hex SHA-256) recorded for the images of ``done`` (those
        stored by an older dasr without them are absent).
    """

    def __init__(
        self,
        path: PathLike,
        config: Mapping[str, Any],
        root: PathLike,
        *,
        feature_dtype: str = "float32",
        chunk_images: int = 16,
        flush_seconds: float = 60.0,
    ) -> None:
        """Open (create or resume) the store at ``path`` for writing.

        Args:
          path: output HDF5 path; its directory is created if needed.
          config: flat JSON-able configuration; must match the stored one
            (except :data:`VOLATILE_CONFIG_KEYS`) when resuming.
          root: directory the image names are relative to; stored as an absolute path.
            Resuming requires the stored one (the same folder, symbolic links resolved):
            a store holds the images of one collection.
          feature_dtype: storage dtype of the 'features' array, float32 or float16.
          chunk_images: images buffered in memory before a flush.
          flush_seconds: the buffer is also flushed at the first image completed this long after
            the last flush, so a hard kill (SIGKILL, a lost machine) loses at most about this much
            work even where one image takes a minute (the paper-rule DASR* on a CPU).

        Raises:
          StoreLockedError: another writer holds the store.
          StoreConfigError: the store exists with another config, feature_dtype or root.
          StoreError: existing files are corrupt or foreign.
          ValueError, TypeError: invalid arguments.
        """
        if feature_dtype not in FEATURE_DTYPES:
            raise ValueError(f"feature_dtype must be one of {FEATURE_DTYPES}, got {feature_dtype!r}")
        if not isinstance(chunk_images, int) or chunk_images < 1:
            raise ValueError(f"chunk_images must be a positive int, got {chunk_images!r}")
        if isinstance(flush_seconds, bool) or not isinstance(flush_seconds, (int, float)) or not flush_seconds >= 0:
            raise ValueError(f"flush_seconds must be a number >= 0, got {flush_seconds!r}")
        requested = normalize_config(config)
        self.path = Path(path)
        self.root = os.path.abspath(os.fspath(root))
        self.feature_dtype = feature_dtype
        self.chunk_images = chunk_images
        self.flush_seconds = float(flush_seconds)
        self._last_flush = time.monotonic()
        self.done: set[str] = set()
        self.identity: dict[str, tuple[int, str]] = {}
        self._records: list[Record] = []
        self._skips: dict[str, str] = {}
        self._skip_identity: dict[str, tuple[int, str]] = {}
        self._schema: Schema | None = None
        self._closed = False
        self._requested = requested
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = StoreLock(self.path)
        try:
            cleanup_tmp(self.path)
            self.config = self._open_parts(requested)
            self._scan_chunks()
        except BaseException:
            self._lock.release()
            raise

    @property
    def parts(self) -> Path:
        """Folder of unfinished work (chunks and config.json)."""
        return parts_path(self.path)

    def _check_stored(self, stored: Mapping[str, Any], feature_dtype: str, root: str, where: Path) -> None:
        lines = diff_configs(stored, self._requested)
        if feature_dtype != self.feature_dtype:
            lines.append(f"feature_dtype: stored={json.dumps(feature_dtype)} requested={json.dumps(self.feature_dtype)}")
        if lines:
            raise config_error(where, lines, "use another output path or the original settings")
        if store_backend(stored) != store_backend(self._requested):
            # Searchable from either backend, but one store holds one backend's regions.
            raise StoreConfigError(
                f"{where}: made with the {store_backend(stored)} Keras backend, this run uses "
                f"{store_backend(self._requested)}; resume with --backend {store_backend(stored)} or use another output path"
            )
        if not same_root(root, self.root):
            # Image names alone would match another folder's files of the same names.
            raise StoreConfigError(
                f"{where}: holds images of {root}, not of {self.root}; use another output path for another collection"
            )

    def _open_parts(self, requested: dict[str, Any]) -> dict[str, Any]:
        """Check the stored configuration, create the parts folder if needed; return the config."""
        config = requested
        if self.path.exists():
            final = H5Source(self.path)
            try:
                self._check_stored(final.config, final.feature_dtype, final.root, self.path)
                self.root = os.path.abspath(final.root)  # the same folder: keep how it was named
                self.done.update(final.images)
                self._note_identity(final)
                if final.images:
                    self._schema = dict(final.schema)
                config = final.config  # volatile keys (creation time) keep their first value
            finally:
                final.close()
        meta_path = self.parts / "config.json"
        if self.parts.exists() and not self.parts.is_dir():
            raise StoreError(f"{self.parts}: not a DASR parts folder (a file of that name is in the way); "
                             "move it away or use another output path")
        if self.parts.is_dir():
            try:
                meta = json.loads(meta_path.read_text("utf-8"))
                if not isinstance(meta, dict):
                    raise ValueError("config.json is not a JSON object")
                if meta.get("format") != FORMAT_NAME or meta.get("format_version") != FORMAT_VERSION:
                    raise ValueError(f"format {meta.get('format')!r} version {meta.get('format_version')!r}")
                stored, stored_fd, stored_root = meta["config"], meta["feature_dtype"], meta["root"]
                if not isinstance(stored, dict) or not isinstance(stored_fd, str) or not isinstance(stored_root, str):
                    raise ValueError("config, feature_dtype or root of the wrong type")
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise StoreError(f"{self.parts}: not a DASR parts folder ({one_line(exc)})") from None
            self._check_stored(stored, stored_fd, stored_root, meta_path)
            self.root = os.path.abspath(stored_root)
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
        tmp = temp_sibling(self.parts)
        try:
            tmp.mkdir()
            text = json.dumps(meta, indent=1, sort_keys=True).encode("utf-8")
            with open(tmp / "config.json", "xb") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            fsync_dir(tmp)
            os.rename(tmp, self.parts)
        except BaseException as exc:
            files.remove(tmp)
            full = disk_full_error(self.parts, exc)
            if full is None:
                raise
            raise full from None
        fsync_dir(self.parts.parent)
        return config

    def _scan_chunks(self) -> None:
        chunks = chunk_files(self.parts)
        numbers = [n for n in (chunk_number(p) for p in chunks) if n is not None]
        self._next_chunk = 1 + max(numbers, default=0)
        for chunk in chunks:
            source = ChunkSource(chunk)
            self.done.update(source.images)
            self._note_identity(source)
            if self._schema is None and source.images:
                self._schema = dict(source.schema)

    def _note_identity(self, source: Source) -> None:
        for image, size, digest in zip(source.images, source.file_sizes, source.sha256s):
            if size >= 0 and digest:
                self.identity.setdefault(image, (int(size), digest.decode("ascii")))

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"{self.path}: writer is closed")

    def add(self, image: str, order: int, size: tuple[int, int], regions: Mapping[str, Any],
            identity: tuple[int, str] | None = None) -> None:
        """Add the regions of one completed image.

        Args:
          image: path relative to root (posix str).
          order: position of the image in the full input list (kept by sharding).
          size: (width, height) of the original image.
          regions: arrays with a common leading dimension n (n may be 0), e.g.
            boxes (n, 4), scores (n,), features (n, D). Every image must give the
            same keys and trailing shapes. 'features' is stored as feature_dtype,
            float64 arrays as float32, others as given.
          identity: (size in bytes, hex SHA-256) of the image file, or None (not recorded).

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
        file_size, digest = _checked_identity(image, identity) if identity is not None else (-1, "")
        count, arrays, schema = _check_regions(image, regions, self._schema, self.feature_dtype)
        if self._schema is None:
            self._schema = schema
        self._records.append(Record(image, int(order), (width, height), count, arrays, int(file_size), digest))
        if identity is not None:
            self.identity[image] = (int(file_size), digest)
        self.done.add(image)
        self._skips.pop(image, None)
        self._skip_identity.pop(image, None)
        self._flush_if_due()

    def skip(self, image: str, reason: str, identity: tuple[int, str] | None = None) -> None:
        """Record an image that could not be processed.

        Skipped images go to ``<path>.skipped.tsv`` at close and are not in
        :attr:`done`, so a later run retries them.

        Args:
          image: path relative to root.
          reason: short explanation; whitespace is collapsed to keep one line.
          identity: (size in bytes, hex SHA-256) of the skipped file when it could be read.

        Raises:
          ValueError: the image is already stored, or its name contains a tab or newline.
        """
        self._check_open()
        image = _check_image_name(image)
        if image in self.done:
            raise ValueError(f"{image}: already stored in {self.path}; cannot skip it")
        if any(c in image for c in "\t\n\r"):
            raise ValueError(f"{image!r}: a skipped image name cannot contain a tab or newline")
        self._skips[image] = clean_reason(reason)
        if identity is not None:
            self._skip_identity[image] = _checked_identity(image, identity)
        self._flush_if_due()

    def _flush_if_due(self) -> None:
        if (len(self._records) + len(self._skips) >= self.chunk_images
                or time.monotonic() - self._last_flush >= self.flush_seconds):
            self.flush()

    def flush(self) -> None:
        """Write the buffered images (and skips) as one atomic chunk file."""
        self._check_open()
        if not self._records and not self._skips:
            return
        chunk = self.parts / f"chunk-{self._next_chunk:06d}.npz"
        write_chunk(chunk, self._records, self._skips, self._schema,
                    {k: v for k, v in self._skip_identity.items() if k in self._skips})
        # Cleared only once the chunk is in place: an interrupted write keeps the
        # buffer for abort(); a record written twice is deduplicated at close.
        self._next_chunk += 1
        self._records, self._skips, self._skip_identity = [], {}, {}
        self._last_flush = time.monotonic()

    def _finalize(self) -> None:
        chunks = [ChunkSource(p) for p in chunk_files(self.parts)]
        sources: list[Source] = []
        skips = read_skipped(self.path)
        skip_identity = read_skipped_identity(self.path)
        final = H5Source(self.path) if self.path.exists() else None
        try:
            if final is not None:
                sources.append(final)
            sources.extend(chunks)
            picks = select(sources, duplicates="first")
            if final is None or any(p.source > 0 for p in picks):
                write_store(self.path, sources, picks, self.config, self.root, self.feature_dtype)
            stored = {decode_name(p.key) for p in picks}
        finally:
            if final is not None:
                final.close()
        for chunk in chunks:
            skips.update(chunk.skips)
            skip_identity.update(chunk.skip_identity)
        write_skipped(self.path, {k: v for k, v in skips.items() if k not in stored}, skip_identity)
        files.remove_parts(self.path)

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
