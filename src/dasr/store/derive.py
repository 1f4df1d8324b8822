"""Region stores computed from other stores, without running the backprop again.

Two settings act only after the regions are found, so a finished store of the same images
under the same region settings gives a store for them without the backprop, which is nearly
all of DASR*'s cost:

* the NMS threshold β: NMS runs on the stored boxes and scores (the extractor applies it in
  original-image coordinates for this reason), so the store for β is exactly the rows of the
  no-NMS store that NMS at β keeps;
* the feature layer and the pooling: the boxes do not depend on them, so the stored boxes are
  pooled again on one forward pass per image (:meth:`dasr.features.extractor.Extractor.describe_boxes`).

The derived store has the configuration a direct extraction would have and is used like one;
the experiments (Figs. 4 and 5: one region set, many β or layers) rely on this.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from dasr.features.methods import GLOBAL_METHODS
from dasr.regions import nms
from dasr.store.config import BACKEND_KEY, config_differences, diff_configs, normalize_config, store_backend
from dasr.store.errors import StoreError
from dasr.store.files import parts_path
from dasr.store.reader import RegionStore, store_contents
from dasr.store.skipped import read_skipped, read_skipped_identity
from dasr.store.writer import StoreWriter

NMS_KEY = "nms_iou"
POOLING_KEYS = frozenset({"feature_layer", "pooling"})


@dataclass(frozen=True)
class Source:
    """A finished store another one can be derived from.

    Attributes:
      path: the source store.
      kind: ``nms`` (apply NMS to its rows) or ``repool`` (pool its boxes on another layer).
    """

    path: Path
    kind: str


def derivation_kind(source_config: dict, target_config: dict) -> str | None:
    """How a store with ``target_config`` follows from one with ``source_config``, if it does.

    Returns:
      ``nms`` when they differ only in β and the source has no NMS; ``repool`` when they differ
      only in the feature layer and/or pooling; None otherwise (or when they are equal).
    """
    src, dst = normalize_config(source_config), normalize_config(target_config)
    if src.get("method") is None or src["method"] in GLOBAL_METHODS:
        return None  # a global descriptor has no regions to reuse
    differing = set(config_differences(src, dst))
    if not differing:
        return None
    if differing == {NMS_KEY} and src.get(NMS_KEY) is None:
        return "nms"
    if differing <= POOLING_KEYS:
        return "repool"
    return None


def find_source(folder: str | os.PathLike, config: dict, images: list[str]) -> Source | None:
    """A finished store under ``folder`` (one subfolder per configuration) to derive from.

    Args:
      folder: e.g. ``results/stores/<benchmark>``; candidates are ``<folder>/*/*.h5`` (any role).
      config: the configuration wanted.
      images: the images it must hold (stored or recorded as skipped in the source).

    Returns:
      The best source (``nms`` before ``repool``: it needs no network), or None.

    A store that cannot be read is no candidate: a one-line warning naming it and the
    problem goes to stderr, and the search goes on.
    """
    found: list[Source] = []
    for path in sorted(Path(folder).glob("*/*.h5")):
        if parts_path(path).exists():
            continue  # unfinished
        try:
            stored_config, stored_images = store_contents(path)
        except StoreError as exc:
            # The message names the file and what is wrong with it.
            print(f"warning: {exc} (not used as a source to derive from)", file=sys.stderr)
            continue
        kind = derivation_kind(stored_config, config)
        if kind is None:
            continue
        if set(images) <= set(stored_images) | set(read_skipped(path)):
            found.append(Source(path, kind))
    found.sort(key=lambda s: s.kind != "nms")
    return found[0] if found else None


def derive_nms_store(source: str | os.PathLike, out: str | os.PathLike, config: dict, images: list[str],
                     progress: bool = True) -> int:
    """Writes the store for β = ``config['nms_iou']`` from a no-NMS store of the same images.

    Args:
      source: the finished no-NMS store.
      out: the store to write (resumable like any extraction).
      config: the target configuration (the source's with ``nms_iou`` set).
      images: image names to include, in list order; images the source skipped stay skipped.

    Returns:
      The number of images written in this call.

    Raises:
      ValueError: the configurations do not differ by β alone, or an image is not in the source.
    """
    src = RegionStore.open(source)
    if derivation_kind(src.config, config) != "nms":
        raise ValueError(f"{out}: cannot be derived from {source} by NMS (their configurations differ otherwise)")
    beta = float(config[NMS_KEY])
    missing = [name for name in images if name not in set(src.images) | set(read_skipped(source))]
    if missing:
        raise ValueError(f"{source}: has no image {missing[0]} (needed for {out})")
    written = _write_rows(src, out, config, images, lambda rows: nms(rows["boxes"], rows["scores"], beta),
                          f"NMS beta={beta:g}", progress)
    print(f"{out}: {written} images derived from {source} by NMS at beta={beta:g}", file=sys.stderr)
    return written


def copy_rows(source: str | os.PathLike, out: str | os.PathLike, config: dict, images: list[str],
              progress: bool = True) -> int:
    """Copies into ``out`` the images of ``images`` that ``source`` (same configuration) holds.

    A collection extracted for one role (a benchmark's database) then serves another (its
    database plus queries) without extracting the shared images twice; the caller extracts the
    rest into the same, resumable store.

    Returns:
      The number of images copied in this call.

    Raises:
      ValueError: the two configurations differ.
    """
    src = RegionStore.open(source)
    lines = diff_configs(src.config, config)
    if lines:
        raise ValueError(f"{source}: rows cannot be copied into {out} ({'; '.join(lines)})")
    held = set(src.images)
    return _write_rows(src, out, config, [name for name in images if name in held], lambda rows: slice(None),
                       "copy", progress, orders={name: i for i, name in enumerate(images)})


def _write_rows(src: RegionStore, out, config: dict, images: list[str], pick, what: str, progress: bool,
                orders: dict[str, int] | None = None) -> int:
    """Writes ``pick(rows)`` of each image of ``images`` (skips copied as skips) into ``out``.

    The rows were computed where the source's were: ``out`` records the source's backend.
    """
    config = {**config, BACKEND_KEY: store_backend(src.config)}
    skipped = read_skipped(src.path)
    skipped_identity = read_skipped_identity(src.path)
    written = 0
    with StoreWriter(out, config, src.root) as writer:
        todo = [(orders[name] if orders else order, name) for order, name in enumerate(images)
                if name not in writer.done]
        for order, name in tqdm(todo, disable=not progress, unit="img", desc=what, dynamic_ncols=True):
            if name in skipped:
                writer.skip(name, skipped[name], identity=skipped_identity.get(name))
                continue
            i = src.index(name)
            rows = src.regions_of(i)
            keep = pick(rows) if len(rows["boxes"]) else slice(0, 0)
            writer.add(name, order, tuple(int(v) for v in src.sizes[i]), {key: value[keep] for key, value in rows.items()},
                       identity=src.identity_of(i))
            written += 1
    return written
