"""Atomic file writes: the one way dasr puts a file under its final name.

Extraction, caches and reports may be killed at any moment (``kill -9``, a full
disk, a crash). Every writer therefore writes a temporary sibling of the
destination, fsyncs it, ``os.replace``-s it onto the final name and fsyncs the
folder, so a crash or kill never leaves a half-written file under the final
name: a later run sees either the old file or the complete new one, never a
truncated one it would then load.

Temporaries are named ``.<name>.tmp-<32 hex digits><suffix>`` (:data:`TMP_MARK`),
next to the destination, so the rename stays within one file system.
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Union

from dasr.errors import UserError

__all__ = ["TMP_MARK", "DiskFullError", "atomic_path", "atomic_write_bytes", "disk_full_error", "fsync_dir",
           "fsync_file", "temp_sibling"]

PathLike = Union[str, "os.PathLike[str]"]

TMP_MARK = ".tmp-"

_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# HDF5 reports a failed write as an OSError without errno; its message quotes the system's.
_FULL_TEXTS = (os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT))


class DiskFullError(UserError, OSError):
    """A write failed because the disk (or the user's quota) is full; nothing was replaced."""


def disk_full_error(path: PathLike, exc: BaseException) -> DiskFullError | None:
    """The one-line error for a write of ``path`` that failed on a full disk, else None.

    Args:
      path: what was being written (named in the message).
      exc: the exception the write raised.

    Returns:
      A :class:`DiskFullError` when ``exc`` is an ``OSError`` of ENOSPC/EDQUOT (or an HDF5
      error quoting them); None for any other exception, which the caller re-raises.
    """
    if not isinstance(exc, OSError) or isinstance(exc, DiskFullError):
        return None
    if exc.errno not in _FULL_ERRNOS and not any(text in str(exc) for text in _FULL_TEXTS):
        return None
    return DiskFullError(f"{path}: no space left on device while writing it; free some space and run the "
                         "same command again (what was there before is unchanged, finished work is kept)")


def temp_sibling(path: PathLike, suffix: str = "") -> Path:
    """A fresh, unused-looking temporary name next to ``path`` (nothing is created).

    Args:
      path: the final destination.
      suffix: appended to the name (e.g. ``".npz"``), for libraries that look at it.

    Returns:
      ``<folder>/.<name>.tmp-<32 random hex digits><suffix>``.
    """
    path = Path(path)
    return path.parent / f".{path.name}{TMP_MARK}{uuid.uuid4().hex}{suffix}"


def fsync_file(path: PathLike) -> None:
    """Flush the content of the file ``path`` to disk.

    Args:
      path: an existing regular file.

    Raises:
      OSError: the file cannot be opened or synced.
    """
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def fsync_dir(folder: PathLike) -> None:
    """Flush the entries of ``folder`` to disk, making a rename inside it durable.

    Args:
      folder: an existing directory.

    Raises:
      OSError: the folder cannot be opened or synced.
    """
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(
    path: PathLike, suffix: str = "", *, fsync: Callable[[Path], None] = fsync_file
) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it onto ``path``.

    The temporary is created empty (exclusively, with the usual permissions, so
    the final file gets them too) in the destination's folder, which is created
    if needed. Write it by name, e.g. ``np.savez(tmp, ...)``,
    ``model.save_weights(tmp)``, ``fig.savefig(tmp)``, ``h5py.File(tmp, "w")``.
    On normal exit it is fsynced, ``os.replace``-d onto ``path`` and the folder is
    fsynced. On an exception the temporary is removed, ``path`` is left untouched
    and the exception propagates.

    Args:
      path: the final destination.
      suffix: kept at the end of the temporary name, for libraries that look at
        the extension (``".npz"``, ``".weights.h5"``, ``".png"``, ``".faiss"``).
      fsync: flushes the finished temporary before the rename (default
        :func:`fsync_file`); replaceable, e.g. to simulate a crash at that point.

    Yields:
      The temporary path (a :class:`~pathlib.Path`) to write.

    Raises:
      DiskFullError: the disk is full (from any step, the caller's writes included).
      OSError: the folder or the temporary cannot be created, synced or renamed.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_sibling(path, suffix)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as exc:
        full = disk_full_error(path, exc)
        if full is None:
            raise
        raise full from None
    try:
        yield tmp
        fsync(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        full = disk_full_error(path, exc)
        if full is None:
            raise
        raise full from None
    fsync_dir(path.parent)


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`).

    Args:
      path: the final destination; its folder is created if needed.
      data: the complete new content.

    Raises:
      OSError: the file cannot be written, synced or renamed (``path`` is then
        left as it was).
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
