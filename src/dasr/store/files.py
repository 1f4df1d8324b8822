"""The files next to a store, their temporaries, and the atomic writes that produce them.

For a store ``<out>`` the writer uses ``<out>.parts/``, ``<out>.lock`` and
``<out>.skipped.tsv`` (see :mod:`dasr.store`); every file is written through
:func:`atomic_path`, whose temporaries :func:`cleanup_tmp` recognises and removes
after a killed writer.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable, Union

from dasr.io.atomic import TMP_MARK
from dasr.io.atomic import atomic_path as _io_atomic_path
from dasr.io.atomic import fsync_dir
from dasr.io.atomic import fsync_file as _fsync_file
from dasr.io.atomic import temp_sibling

__all__ = [
    "PathLike",
    "atomic_path",
    "atomic_write_bytes",
    "cleanup_tmp",
    "lock_path",
    "parts_path",
    "remove",
    "remove_parts",
    "skipped_path",
]

PathLike = Union[str, "os.PathLike[str]"]


def parts_path(path: PathLike) -> Path:
    """Folder holding the unfinished work of a writer of ``path``."""
    return Path(f"{os.fspath(path)}.parts")


def lock_path(path: PathLike) -> Path:
    """Lock file of the writer of ``path``."""
    return Path(f"{os.fspath(path)}.lock")


def skipped_path(path: PathLike) -> Path:
    """TSV file listing the images of ``path`` that could not be processed."""
    return Path(f"{os.fspath(path)}.skipped.tsv")


def cleanup_tmp(store: Path) -> None:
    """Remove temporaries left by a killed writer of ``store``.

    Only called while holding the store lock, and only names produced by
    :func:`dasr.io.atomic.temp_sibling` (also behind :func:`atomic_path`) for
    this store match, so nothing in use is removed.
    """
    name = re.escape(store.name)
    pattern = re.compile(rf"^\.{name}(\.parts|\.skipped\.tsv)?{re.escape(TMP_MARK)}[0-9a-f]{{32}}$")
    candidates = [(store.parent, pattern)]
    parts = parts_path(store)
    if parts.is_dir():
        candidates.append((parts, re.compile(rf"^\..*{re.escape(TMP_MARK)}[0-9a-f]{{32}}$")))
    for folder, regex in candidates:
        with contextlib.suppress(FileNotFoundError):
            for entry in os.listdir(folder):
                if regex.match(entry):
                    remove(folder / entry)


def remove(path: Path) -> None:
    """Delete a file or a folder tree; a missing one is no error."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def remove_parts(path: Path) -> None:
    """Delete the parts folder of ``path``: rename it away first (atomic), then remove it.

    ``remove`` is looked up at each call, so tests can stop a writer while it
    deletes the renamed folder (see tests/store/test_store_writer.py).
    """
    parts = parts_path(path)
    if not parts.is_dir():
        return
    trash = temp_sibling(parts)
    os.rename(parts, trash)
    fsync_dir(parts.parent)
    remove(trash)


def atomic_path(path: Path) -> contextlib.AbstractContextManager[Path]:
    """:func:`dasr.io.atomic.atomic_path` (no suffix, so :func:`cleanup_tmp` knows the names).

    ``_fsync_file`` is looked up at each call, so tests can stop a writer right
    before the rename (see tests/store/test_store_writer.py).
    """
    return _io_atomic_path(path, fsync=lambda tmp: _fsync_file(tmp))


def atomic_write_bytes(path: Path, write: Callable[[Any], None]) -> None:
    """Write a file atomically through ``write(binary_file_object)``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        write(handle)
