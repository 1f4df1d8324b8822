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
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Union

__all__ = ["TMP_MARK", "atomic_path", "atomic_write_bytes", "fsync_dir", "fsync_file", "temp_sibling"]

PathLike = Union[str, "os.PathLike[str]"]

TMP_MARK = ".tmp-"


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
      OSError: the folder or the temporary cannot be created, synced or renamed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path, suffix)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp
        fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
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
