"""Per-image identity: a stored image's file must still be the file its regions came from.

A store records each image file's size and SHA-256 (computed while the file is read for
decoding, see :func:`dasr.io.images.read_image`). Resuming an extraction hashes the images
already stored (a read of each, no decoding) and refuses the run if one of them changed: its
stored regions would silently describe another picture. The content hash, not the
modification time, is the identity, so that a copy of a collection on another machine
resumes and merges like the original and stores stay bit-identical.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dasr.store.errors import ImageChangedError

__all__ = ["check_unchanged", "file_identity"]


def file_identity(path: Path) -> tuple[int, str] | None:
    """(size in bytes, hex SHA-256) of a file, or None when it cannot be read.

    Args:
        path: the file.

    Returns:
        The identity, or None for a missing, unreadable or non-regular file.
    """
    digest = hashlib.sha256()
    size = 0
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None  # a FIFO would block the read forever; a folder has no bytes
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
    except OSError:
        return None
    return size, digest.hexdigest()


def _difference(recorded: tuple[int, str], now: tuple[int, str] | None) -> str | None:
    if now is None:
        return "is gone or unreadable"
    if now[0] != recorded[0]:
        return f"has {now[0]} bytes, {recorded[0]} when it was extracted"
    if now[1] != recorded[1]:
        return f"has the same size but another SHA-256 ({now[1][:12]}..., {recorded[1][:12]}... when it was extracted)"
    return None


def check_unchanged(store: Path, root: Path, images: Sequence[str], recorded: Mapping[str, tuple[int, str]],
                    workers: int = 2) -> None:
    """Refuse a resume when an already stored image's file changed.

    Args:
        store: the store being resumed (for the message).
        root: the collection's root folder.
        images: the stored images of this run's list.
        recorded: image -> (size, SHA-256) as stored; images absent from it (stored by an older
            dasr) are not checked, and a warning on stderr says how many.
        workers: hashing threads (hashlib releases the GIL).

    Raises:
        ImageChangedError: naming the first changed image, what differs, and how many changed.
    """
    unchecked = sum(1 for image in images if image not in recorded)
    if unchecked:
        print(f"{store}: {unchecked} stored images have no recorded size and SHA-256 (an older dasr "
              "stored them); they are kept without checking whether their files changed", file=sys.stderr)
    checked = [image for image in images if image in recorded]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dasr-hash") as pool:
        now = list(pool.map(lambda image: file_identity(root / image), checked))
    changed = [(image, why) for image, ident in zip(checked, now)
               if (why := _difference(recorded[image], ident)) is not None]
    if changed:
        image, why = changed[0]
        more = f" (and {len(changed) - 1} more changed images)" if len(changed) > 1 else ""
        raise ImageChangedError(
            f"{root / image} {why}{more}: {store} holds the regions of the earlier file; extract into "
            "a new output path, or delete the store (and its .parts folder) to extract again")
