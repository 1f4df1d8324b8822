"""Finished stores kept and reused: one folder per collection and configuration.

The store of a collection's images under one extraction configuration lives in::

    <work>/<collection>/<method>-<config hash>/<role>.h5     (+ <role>.txt, the image list)

:func:`ensure_store` returns such a store, extracting only what no finished store already
gives: a store of the same configuration under another role that holds the images (or some
of them, whose rows are copied), or a store of the same regions under another β, feature
layer or pooling (:mod:`dasr.store.derive`, no backprop).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from dasr.io.atomic import atomic_write_bytes
from dasr.store import derive
from dasr.store.config import diff_configs
from dasr.store.errors import StoreConfigError
from dasr.store.extract import extract_collection
from dasr.store.reader import RegionStore, store_contents
from dasr.store.skipped import read_skipped

if TYPE_CHECKING:
    from dasr.features.extractor import Extractor

__all__ = ["config_hash", "ensure_store", "store_folder", "write_list"]


def config_hash(config: dict) -> str:
    """Short stable hash of an extraction configuration (names the store folder)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]


def store_folder(work: Path, collection: str, extractor: Extractor) -> Path:
    """``<work>/<collection>/<method>-<config hash>``: the stores of one collection and configuration."""
    return work / collection / f"{extractor.method}-{config_hash(extractor.config())}"


def write_list(path: Path, items: list[str]) -> Path:
    """Writes ``items`` one per line (atomically; non-UTF-8 names kept as their bytes).

    Returns:
      ``path``.
    """
    atomic_write_bytes(path, ("\n".join(items) + "\n").encode("utf-8", "surrogateescape"))
    return path


def _holds(path: Path, stored_images: list[str], images: list[str]) -> bool:
    """Whether a finished store holds every image of ``images`` (stored or recorded as skipped)."""
    return set(images) <= set(stored_images) | set(read_skipped(path))


def ensure_store(extractor: Extractor, collection: str, root: Path, images: list[str], work: Path, role: str,
                 progress: bool = True) -> Path:
    """Extracts ``images`` into ``<work>/<collection>/<method>-<hash>/<role>.h5`` unless done.

    Work already done is reused: a finished store of the same configuration that holds every
    image is returned as it is (whatever its role, and even while another process extends it);
    one that holds some of them gives their rows;
    a store of the same regions with no NMS, or with another feature layer or pooling, gives the
    store without the backprop (:mod:`dasr.store.derive`).

    Args:
      extractor: the configured extractor.
      collection: names the collection's folder under ``work`` (e.g. a benchmark's name).
      root: the folder ``images`` are relative to.
      images: the image names, in list order (e.g. a benchmark's database images).
      work: the folder of all kept stores.
      role: names the store in its folder (``database``, ``pca-source``, ``queries``).
      progress: show progress bars.

    Returns:
      The path of a finished store holding every image (or its recorded skip).

    Raises:
      StoreConfigError: ``<role>.h5`` exists with another configuration.
      StoreError: a store in the folder is unreadable.
    """
    cfg = extractor.config()
    folder = store_folder(work, collection, extractor)
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{role}.h5"
    # A finished store is read even while an extension of it runs (its parts folder exists): the
    # writer replaces the file atomically, so what is read is a whole earlier version.
    if out.is_file():
        stored_config, stored_images = store_contents(out)
        lines = diff_configs(stored_config, cfg)
        if lines:
            raise StoreConfigError(f"{out}: configuration differs from the stored one ({'; '.join(lines)})")
        if _holds(out, stored_images, images):
            return out
    # Another role's finished store of this configuration may hold every image (a benchmark's
    # pca-source holds its database) or some of them (its database, for the pca-source).
    siblings = [p for p in sorted(folder.glob("*.h5")) if p != out]
    for other in siblings:
        stored_config, stored_images = store_contents(other)
        if not diff_configs(stored_config, cfg) and _holds(other, stored_images, images):
            return other
    listing = write_list(folder / f"{role}.txt", images)
    # Another β, layer or pooling of regions already found: no backprop (see dasr.store.derive).
    source = derive.find_source(work / collection, cfg, images)
    if source is not None and source.kind == "nms":
        derive.derive_nms_store(source.path, out, cfg, images, progress=progress)
        return out
    for other in siblings:
        if not diff_configs(store_contents(other)[0], cfg):
            derive.copy_rows(other, out, cfg, images, progress=progress)
    regions_from = RegionStore.open(source.path) if source is not None else None
    if regions_from is not None:
        print(f"{collection} {role}: pooling the regions of {source.path} on {extractor.feature_layer}")
    summary = extract_collection(extractor, listing, out, root=root, progress=progress, regions_from=regions_from)
    print(f"{collection} {role}: {summary.line()}")
    return out
