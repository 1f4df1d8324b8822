"""Extraction of a whole collection into a region store: progress, prefetch, resume, shards.

Images are decoded and resized by a small thread pool ahead of the network (OpenCV and Pillow
release the GIL), so the network never waits for JPEG decoding.  Every finished image goes to
a :class:`dasr.store.StoreWriter`, which makes the run resumable after any interruption.

Where a GPU is visible, several images go through the network per step
(:meth:`dasr.features.extractor.Extractor.extract_inputs`, ``images_per_step``); on a CPU the
default stays one image per step, the path whose stores are bit-identical to earlier ones.

Only an error about the image itself (:class:`dasr.io.images.ImageError`: missing, truncated,
not an image, too large...) is reported (file and cause), recorded in the store's
``.skipped.tsv`` and skipped. Any other error (in the network, out of memory, a bug in the
decoding) is not a property of the image: it stops the run with its traceback, and every image
finished before it stays saved for the rerun to resume.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from dasr.errors import InputError
from dasr.store.config import BACKEND_KEY
from dasr.store.errors import CollectionNotFoundError
from dasr.store.identity import check_unchanged, file_identity
from dasr.io.budget import DecodeBudget
from dasr.io.images import DecodedImage, ImageError, list_images, read_image
from dasr.regions import Regions
from dasr.store.reader import RegionStore
from dasr.store.shards import shard_of
from dasr.store.skipped import read_skipped
from dasr.store.writer import StoreWriter

if TYPE_CHECKING:  # the network is imported by whoever builds the extractor
    from dasr.features.extractor import Extractor, NetworkInput


# Images per network step where a GPU is visible.  Chosen, not measured (no GPU here): at
# 512 px, 8 images give DASR (a few seeds per image) about one full seed chunk per step and
# DASR* (tens of seeds per image) several, while 8 images' activations and normalisers stay a
# small part of a data-centre GPU's memory; benchmarks/gpu_check.py --images-per-step measures
# other values.
GPU_IMAGES_PER_STEP = 8


def default_images_per_step() -> int:
    """:data:`GPU_IMAGES_PER_STEP` where a GPU is visible, else 1 (the per-image path, bit-identical stores)."""
    from dasr.model.device import gpu_compute_capabilities

    return GPU_IMAGES_PER_STEP if gpu_compute_capabilities() else 1


@dataclass
class ExtractSummary:
    """What a run did: counts, and the skipped images with their reasons."""

    extracted: int = 0
    already_done: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    regions: int = 0
    no_region: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"{self.extracted} extracted, {self.already_done} already done, "
                f"{len(self.skipped)} skipped, {len(self.no_region)} without any region")


def read_image_list(images: str | os.PathLike, root: str | os.PathLike | None = None) -> tuple[Path, list[str]]:
    """The collection: a folder (searched recursively) or a text file with one path per line.

    Args:
      images: a folder, or a list file (paths relative to ``root``, or to the list's folder).
      root: root the stored paths are relative to (default: the folder / the list's folder).

    Returns:
      (root, relative paths).  Duplicate entries of a list are dropped (first kept) and reported.
      An absolute path in a list (``find $PWD -name '*.jpg'`` writes those) is stored relative
      to the root when it lies under it.

    Raises:
      CollectionNotFoundError: ``images`` does not exist.
      InputError: a list line is an absolute path outside the root, or leaves it with ``..``
        (the message names the line), or ``images`` is empty (``Path("")`` is the current folder).
    """
    if os.fspath(images) == "":
        raise InputError("the images to extract: an empty path names nothing; give a folder or a list file")
    src = Path(images)
    if src.is_dir():
        base = Path(root) if root else src
        rel = list_images(src)
        if base.resolve() != src.resolve():
            rel = [os.path.relpath(src / r, base).replace(os.sep, "/") for r in rel]
        return base, rel
    if not src.is_file():
        raise CollectionNotFoundError(f"{src}: no such folder or image list")
    base = Path(root) if root else src.parent
    seen: dict[str, None] = {}
    dupes = 0
    resolved_base = base.resolve()
    with open(src, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            line = os.fsdecode(raw.rstrip(b"\r\n")).strip()
            if not line or line.startswith("#"):
                continue
            if os.path.isabs(line):
                try:
                    line = Path(os.path.normpath(line)).relative_to(resolved_base).as_posix()
                except ValueError:
                    raise InputError(f"{src}:{line_no}: {line} is outside the root {resolved_base} "
                                     "(give --root a folder that holds every image)") from None
            elif os.path.normpath(line).split(os.sep)[0] == "..":
                raise InputError(f"{src}:{line_no}: {line} leaves the root {resolved_base}")
            if line in seen:
                dupes += 1
                continue
            seen[line] = None
    if dupes:
        print(f"{src}: {dupes} duplicate paths ignored", file=sys.stderr)
    return base, list(seen)


def _load(root: Path, rel: str, budget: DecodeBudget, ticket: int):
    """Decode in a worker thread: returns (DecodedImage, None) or (None, reason) for a bad image.

    The decode reserves its memory in ``budget`` in ``ticket`` order (see :mod:`dasr.io.budget`);
    the file's size and SHA-256 come with the pixels (one open file, see :func:`read_image`).

    Raises:
      Any error other than :class:`ImageError` (re-raised by ``Future.result()`` in the
      extraction loop): a decoding bug is not a bad image.
    """
    try:
        return read_image(root / rel, budget=budget, ticket=ticket, identity=True), None
    except ImageError as e:
        return None, e.reason
    finally:
        budget.settle(ticket)


def prefetch(root: Path, items: list[tuple[int, str]], workers: int = 2, depth: int = 4,
             budget: DecodeBudget | None = None):
    """Yields (order, rel, DecodedImage or None, reason) while the next images decode in threads.

    Memory: the decodes in flight and the decoded images waiting to be consumed together hold
    at most ``budget.total`` bytes (default :data:`DEFAULT_DECODE_BUDGET`); an image that alone
    needs more is yielded as bad (its reason says so). A yielded image's bytes go back to the
    budget when the consumer asks for the next one, so the consumer must not keep it.

    Raises:
      Whatever :func:`_load` raises for the image being yielded.
    """
    budget = budget if budget is not None else DecodeBudget()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dasr-decode") as pool:
        pending: deque = deque()

        def submit(order: int, rel: str) -> None:
            pending.append((order, rel, pool.submit(_load, root, rel, budget, budget.ticket())))

        try:
            it = iter(items)
            for order, rel in it:
                submit(order, rel)
                if len(pending) >= depth:
                    break
            while pending:
                order, rel, fut = pending.popleft()
                nxt = next(it, None)
                if nxt is not None:
                    submit(*nxt)
                decoded, reason = fut.result()
                fut = None  # the future holds the result too
                held = decoded.pixels.nbytes if decoded is not None else 0
                try:
                    yield order, rel, decoded, reason
                finally:
                    decoded = None
                    budget.release(held)
        finally:
            # Stopped early (an error, or the consumer closed us): the waiting decodes must not
            # wait for room that the unconsumed images will never give back.
            for _, _, fut in pending:
                fut.cancel()
            budget.close()


def _skip(writer: StoreWriter, summary: ExtractSummary, base: Path, rel_path: str, reason: str) -> None:
    """Records a skipped image; a name the skipped-list TSV cannot hold is only reported."""
    note = ""
    try:
        # Re-read for the record (skips are rare): a file that failed to decode still has bytes.
        writer.skip(rel_path, reason, identity=file_identity(base / rel_path))
    except ValueError:  # a tab or newline in the name: one bad file must not stop the run
        note = " (not listed in the .skipped.tsv: its name has a tab or newline)"
    summary.skipped.append((rel_path, reason))
    tqdm.write(f"skipped {base / rel_path}: {reason}{note}", file=sys.stderr)


def regions_record(extraction) -> dict:
    """The per-region arrays a store keeps for one image."""
    r = extraction.regions
    feats = extraction.features
    return {
        "boxes": r.boxes.astype(np.float32),
        "scores": r.scores.astype(np.float32),
        "seeds": r.seeds.astype(np.int32),
        "ellipses": r.ellipses.astype(np.float32),
        "features": feats.astype(np.float32),
    }


@dataclass
class _Repooled:
    """A stored image's regions with features pooled again (what :func:`regions_record` reads)."""

    regions: Regions
    features: np.ndarray


def _repooled(extractor: Extractor, source: RegionStore, rel_path: str, image: np.ndarray) -> _Repooled:
    try:
        rows = source.regions_of(source.index(rel_path))
    except KeyError:
        # Not a bad image: the source does not belong to this collection.
        raise ValueError(f"{rel_path}: not in {source.path}, the store its regions are taken from") from None
    regions = Regions(rows["boxes"], rows["scores"], rows["seeds"], rows["ellipses"], np.zeros(len(rows["boxes"]), np.float32))
    return _Repooled(regions, extractor.describe_boxes(image, rows["boxes"]))


def _extract_one(extractor: Extractor, writer: StoreWriter, summary: ExtractSummary, base: Path, order: int,
                 rel_path: str, decoded: DecodedImage, regions_from: RegionStore | None) -> None:
    """Regions of one decoded image into the writer (or its skip when the image is the cause)."""
    image = decoded.pixels
    try:
        ex = extractor(image) if regions_from is None else _repooled(extractor, regions_from, rel_path, image)
    except ImageError as e:  # the image itself: reported, the run goes on
        _skip(writer, summary, base, rel_path, e.reason)
        return
    _store(writer, summary, base, order, rel_path, (int(image.shape[1]), int(image.shape[0])),
           (decoded.file_size, decoded.sha256), ex)


@dataclass
class _Waiting:
    """An image waiting for its batch: only its network input is kept (the decoded pixels go back)."""

    order: int
    rel_path: str
    identity: tuple[int, str]
    inp: NetworkInput


def _extract_waiting(extractor: Extractor, writer: StoreWriter, summary: ExtractSummary, base: Path,
                     waiting: list[_Waiting]) -> None:
    """The waiting images through the network together, into the writer in their order."""
    for item, ex in zip(waiting, extractor.extract_inputs([w.inp for w in waiting])):
        _store(writer, summary, base, item.order, item.rel_path, item.inp.original, item.identity, ex)
    waiting.clear()


def _store(writer: StoreWriter, summary: ExtractSummary, base: Path, order: int, rel_path: str,
           size: tuple[int, int], identity: tuple[int, str], ex) -> None:
    """One image's regions into the writer, counted (and reported when it has none)."""
    writer.add(rel_path, order, size, regions_record(ex), identity=identity)
    summary.extracted += 1
    summary.regions += len(ex.regions)
    if len(ex.regions) == 0:
        # Stored with zero regions (it can never be returned by a search).
        summary.no_region.append(rel_path)
        tqdm.write(f"no region found in {base / rel_path} (stored with 0 regions)", file=sys.stderr)


def extract_collection(extractor: Extractor, images: str | os.PathLike, out: str | os.PathLike, *,
                       root: str | os.PathLike | None = None, shard: tuple[int, int] | None = None,
                       feature_dtype: str = "float32", progress: bool = True,
                       limit: int | None = None, regions_from: RegionStore | None = None,
                       images_per_step: int | None = None) -> ExtractSummary:
    """Extracts every image of a collection into ``out`` (resuming a partial run).

    Args:
      extractor: the configured :class:`Extractor`.
      images: folder or list file (see :func:`read_image_list`).
      out: the store path (``.h5``).
      root: root the stored paths are relative to.
      shard: (i, n): only images ``i, i+n, ...`` of the list (0-based i).
      feature_dtype: ``float32`` or ``float16``.
      progress: show a tqdm bar.
      limit: only the first ``limit`` images of the list (before sharding), for quick runs.
      regions_from: a finished store of these images whose regions differ from the wanted ones
        only in the feature layer or pooling (see :mod:`dasr.store.derive`): its boxes are pooled
        again on one forward pass per image instead of being found by the backprop.
      images_per_step: images through the network together (bucketed by input shape, see
        :meth:`Extractor.extract_inputs`); None: :func:`default_images_per_step`.  The regions
        are the same up to float rounding; a batch not yet written when the run stops is
        extracted again by the rerun.  Not with ``regions_from`` (one image per step).

    Returns:
      An :class:`ExtractSummary`.

    Raises:
      InputError: ``images_per_step`` is not a positive integer.
      Any error other than an :class:`ImageError` of one image (that one is skipped), after
      the images finished so far are saved in ``out``'s parts for a rerun to resume.
    """
    step = default_images_per_step() if images_per_step is None else images_per_step
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 1:
        raise InputError(f"images_per_step must be a positive integer, got {images_per_step!r}")
    base, rel = read_image_list(images, root)
    if limit is not None:
        rel = rel[:limit]
    items = shard_of(rel, shard) if shard else list(enumerate(rel))
    config = extractor.config()
    from dasr.model.device import BACKEND  # the extractor's network has loaded Keras already

    config[BACKEND_KEY] = BACKEND
    if shard:
        config["shard"] = f"{shard[0]}/{shard[1]}"
    summary = ExtractSummary()
    source_skipped = read_skipped(regions_from.path) if regions_from is not None else {}
    with StoreWriter(out, config, str(base), feature_dtype=feature_dtype) as writer:
        todo = [(o, r) for o, r in items if r not in writer.done]
        summary.already_done = len(items) - len(todo)
        # A stored image whose file changed since would keep the old picture's regions.
        check_unchanged(writer.path, base, [r for _, r in items if r in writer.done], writer.identity)
        for o, r in [(o, r) for o, r in todo if r in source_skipped]:
            _skip(writer, summary, base, r, source_skipped[r])
        todo = [(o, r) for o, r in todo if r not in source_skipped]
        bar = tqdm(total=len(items), initial=summary.already_done, disable=not progress,
                   unit="img", desc=f"extract {extractor.method}", dynamic_ncols=True)
        waiting: list[_Waiting] = []
        with bar:
            for order, rel_path, decoded, reason in prefetch(base, todo):
                done = summary.extracted + len(summary.skipped)
                if decoded is None:
                    _skip(writer, summary, base, rel_path, reason)
                elif step == 1 or regions_from is not None:
                    _extract_one(extractor, writer, summary, base, order, rel_path, decoded, regions_from)
                else:
                    try:
                        inp = extractor.network_input(decoded.pixels)
                    except ImageError as e:  # the image itself: reported, the run goes on
                        _skip(writer, summary, base, rel_path, e.reason)
                    else:
                        waiting.append(_Waiting(order, rel_path, (decoded.file_size, decoded.sha256), inp))
                    if len(waiting) >= step:
                        _extract_waiting(extractor, writer, summary, base, waiting)
                decoded = None  # its memory goes back to the decode budget with the next image
                _progress(bar, summary, done)
            if waiting:  # the last, incomplete batch
                done = summary.extracted + len(summary.skipped)
                _extract_waiting(extractor, writer, summary, base, waiting)
                _progress(bar, summary, done)
    return summary


def _progress(bar, summary: ExtractSummary, before: int) -> None:
    """Advances the bar by the images written or skipped since ``before``."""
    now = summary.extracted + len(summary.skipped)
    if summary.extracted:
        bar.set_postfix(regions=f"{summary.regions / summary.extracted:.1f}/img")
    bar.update(now - before)
