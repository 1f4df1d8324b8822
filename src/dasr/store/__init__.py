"""Crash-safe HDF5 store for the regions extracted from an image collection.

One store file holds, for every image of a collection, a variable number of
regions (rows): boxes, scores, features... Extraction takes seconds per image,
may be killed at any moment (``kill -9``), resumed, and split over several
shard processes whose outputs are merged later. The store is built so that:

* a kill at any moment loses at most the images buffered in memory (at most
  ``chunk_images``, and at most those completed in the last ``flush_seconds``), which a resume
  recomputes; every image ends up stored exactly once;
* a reader only ever sees a complete, finalized file (it is written to a
  temporary sibling, fsynced and ``os.replace``-d into place);
* two writers on the same output cannot run at once (``<out>.lock``, flock);
* a store holds the images of one collection, identified by its root folder (stored
  absolute): a writer refuses to resume, and a merge to combine, stores of another root,
  since the same relative names there are other images.

Files next to a store ``<out>`` (e.g. ``regions.h5``)::

    <out>              final HDF5 store (layout below), only ever replaced atomically
    <out>.lock         flock held by the writer for its whole life; may remain after
                       exit (the kernel drops the flock with the process, so a killed
                       writer never leaves a stale lock)
    <out>.parts/       only while a writer has unfinished work:
        config.json    {"format", "format_version", "config", "root", "feature_dtype"}
        chunk-NNNNNN.npz   batches of completed images (+ skipped images), each
                       written atomically; merged into <out> by StoreWriter.close()
    <out>.skipped.tsv  images that could not be processed: ``image<TAB>reason`` lines, with
                       ``<TAB>size<TAB>sha256`` of the file when it could be read
    .<out-name>[.parts|.skipped.tsv].tmp-<hex>   temporaries; removed by the next writer

HDF5 layout of ``<out>`` (N images, R regions in total)::

    attrs:  format = "dasr-region-store", format_version = 1,
            config = JSON string of a flat dict (backbone, weights hash, layer, ...),
            root = absolute image root directory (str; bytes when it is not valid UTF-8;
                   stores written before roots were made absolute may hold a relative one),
            feature_dtype = "float32" | "float16"
    images        (N,)   vlen string, the image paths relative to root (posix). Stored as
                         ``name.encode("utf-8", "surrogateescape")`` so that non-UTF-8
                         file names survive; read raw and decoded the same way.
    orders        (N,)   int64, position of the image in the full input list; rows are
                         sorted by (order, image)
    sizes         (N, 2) int32, (width, height) of the original image
    offsets       (N+1,) int64, regions of image i are rows offsets[i]:offsets[i+1]
    file_sizes    (N,)   int64, size in bytes of each image file when it was extracted (-1:
                         not recorded)
    file_sha256   (N,)   S64, hex SHA-256 of each image file's bytes (b"": not recorded).
                         Both are absent from stores written before they existed; such a
                         store is searched as before, and resuming into it checks only the
                         images that have them. A resume refuses an image whose file's size
                         or SHA-256 differs from the recorded one (a file changed in place).
    region_image  (R,)   int32, image index of each region row
    regions/<key> (R, ...) one dataset per region array (boxes, scores, features, ...);
                         features stored as feature_dtype, read back as float32

Configuration keys listed in :data:`VOLATILE_CONFIG_KEYS` (shard, creation time)
are kept but ignored when configurations are compared.

Modules: :mod:`~dasr.store.config` (configurations), :mod:`~dasr.store.format` (the HDF5
and chunk formats), :mod:`~dasr.store.files` (the files next to a store),
:mod:`~dasr.store.assemble` (one store file from several sources), :mod:`~dasr.store.lock`,
:mod:`~dasr.store.writer`, :mod:`~dasr.store.reader`, :mod:`~dasr.store.merge`, :mod:`~dasr.store.shards`, :mod:`~dasr.store.skipped`,
:mod:`~dasr.store.identity` (a stored image's file is unchanged); built on
them: :mod:`~dasr.store.extract` (collection -> store), :mod:`~dasr.store.derive` (stores
from other stores) and :mod:`~dasr.store.cache` (reuse of finished stores).
"""
from __future__ import annotations

from dasr.store.config import VOLATILE_CONFIG_KEYS, config_differences, diff_configs, normalize_config
from dasr.store.errors import (CollectionNotFoundError, ImageChangedError, StoreConfigError, StoreError,
                               StoreLockedError)
from dasr.store.files import lock_path, parts_path, skipped_path
from dasr.store.format import FORMAT_NAME, FORMAT_VERSION
from dasr.store.merge import merge_stores
from dasr.store.reader import RegionStore, store_contents
from dasr.store.shards import parse_shard, shard_of
from dasr.store.skipped import read_skipped
from dasr.store.writer import StoreWriter

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "VOLATILE_CONFIG_KEYS",
    "store_contents",
    "RegionStore",
    "CollectionNotFoundError",
    "ImageChangedError",
    "StoreConfigError",
    "StoreError",
    "StoreLockedError",
    "StoreWriter",
    "config_differences",
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
