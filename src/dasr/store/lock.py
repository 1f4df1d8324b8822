"""The writer's lock: an exclusive flock on ``<store>.lock``, released with the process."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from dasr.store.errors import StoreLockedError
from dasr.store.files import lock_path

__all__ = ["StoreLock"]


class StoreLock:
    """Exclusive, non-blocking flock on ``<store>.lock``, released with the process.

    The kernel drops the flock when its process dies, so a killed writer never
    leaves a stale lock; the lock file itself may remain.
    """

    def __init__(self, store: Path) -> None:
        """Take the lock of ``store``.

        Raises:
          StoreLockedError: another process (or another writer of this one) holds it.
          OSError: the lock file cannot be created.
        """
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
        """Drop the lock (idempotent)."""
        if self.fd is not None:
            os.close(self.fd)  # closing the only description drops the flock
            self.fd = None
