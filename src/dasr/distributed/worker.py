"""The shard worker: one extractor, built once, extracting shard after shard into shard stores.

:class:`ShardWorker` is a plain class; :mod:`dasr.distributed.ray_engine` makes it a Ray actor
(``ray.remote(ShardWorker)``), one per GPU or CPU share.  It is the one place where every
exception is caught: a shard that fails (a bug, a store refused, out of memory) becomes a
:class:`ShardResult` with the traceback's text, so the other shards go on and the driver reports
it and exits non-zero.  A bad image is not a failure: the per-shard extraction
(:func:`dasr.store.extract.extract_collection`) reports it, lists it in the shard's
``.skipped.tsv`` and goes on.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from dasr.errors import UserError
from dasr.features.spec import ExtractorSpec
from dasr.store.errors import StoreLockedError
from dasr.store.extract import extract_collection

__all__ = ["LOCK_WAIT_SECONDS", "ShardResult", "ShardTask", "ShardWorker"]

LOCK_WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class ShardTask:
    """One shard to extract.

    Attributes:
      shard: its number ``i`` (0-based).
      shards: the number of shards ``n`` (the shard takes images ``i, i+n, ...``).
      images: the planned image list file.
      root: the folder the stored paths are relative to.
      out: the shard store.
      feature_dtype: ``float32`` or ``float16``.
      lock_wait: seconds to wait for the shard store's lock (a worker of a killed driver still
        ends its process: within a second on this host, a few on others) before failing.
    """

    shard: int
    shards: int
    images: str
    root: str
    out: str
    feature_dtype: str = "float32"
    lock_wait: float = LOCK_WAIT_SECONDS


@dataclass
class ShardResult:
    """What one shard did (sent back to the driver).

    Attributes:
      shard: the shard number.
      extracted, already_done, regions: counts of :class:`dasr.store.extract.ExtractSummary`.
      skipped: (image, reason) of every bad image skipped.
      no_region: images stored without any region.
      seconds: wall time of the shard.
      error: None, or the traceback text of the exception that failed the shard.
      user_error: whether that exception was a :class:`dasr.errors.UserError` (bad input, e.g.
        a shard store of another configuration) rather than a bug.
      host, pid: where it ran.
    """

    shard: int
    extracted: int = 0
    already_done: int = 0
    regions: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    no_region: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None
    user_error: bool = False
    host: str = ""
    pid: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None


def _watch_driver(pid: int, period: float = 0.5) -> None:
    """Ends this process once the driver process ``pid`` (on this machine) is gone.

    A killed driver must not leave workers writing its shard stores (their locks would refuse
    the rerun's workers); the flock of a store goes with the process.
    """
    while True:
        time.sleep(period)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:  # alive, another user's process
            pass


class ShardWorker:
    """Extracts shards with one extractor, built when the worker starts.

    Args:
      spec: the extractor to build (plain data: what travels to the worker, not the network).
      driver: (host name, pid) of the driver; a worker on the same host ends itself when the
        driver is gone.  None: no watch.
    """

    def __init__(self, spec: ExtractorSpec, driver: tuple[str, int] | None = None) -> None:
        if driver is not None and driver[0] == socket.gethostname():
            threading.Thread(target=_watch_driver, args=(driver[1],), daemon=True,
                             name="dasr-driver-watch").start()
        self.spec = spec
        self.extractor = spec.build()

    def where(self) -> tuple[str, int, str]:
        """(host name, process id, weights fingerprint) of this worker."""
        return socket.gethostname(), os.getpid(), self.extractor.backbone.weights_id

    def _extract(self, task: ShardTask):
        """The shard's extraction, once its store's lock is free (waiting up to ``task.lock_wait``)."""
        deadline = time.monotonic() + task.lock_wait
        while True:
            try:
                return extract_collection(self.extractor, task.images, task.out, root=task.root,
                                          shard=(task.shard, task.shards), feature_dtype=task.feature_dtype,
                                          progress=False)
            except StoreLockedError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.25)

    def run(self, task: ShardTask) -> ShardResult:
        """Extracts one shard into its store (resuming it); never raises.

        Args:
          task: the shard.

        Returns:
          Its :class:`ShardResult`; ``error`` holds the traceback text when it failed.
        """
        result = ShardResult(task.shard, host=socket.gethostname(), pid=os.getpid())
        start = time.perf_counter()
        try:
            Path(task.out).parent.mkdir(parents=True, exist_ok=True)
            summary = self._extract(task)
        except Exception as exc:  # the per-shard boundary: one failed shard never loses the others
            result.error = traceback.format_exc()
            result.user_error = isinstance(exc, UserError)
        else:
            result.extracted = summary.extracted
            result.already_done = summary.already_done
            result.regions = summary.regions
            result.skipped = list(summary.skipped)
            result.no_region = list(summary.no_region)
        result.seconds = time.perf_counter() - start
        return result
