"""The pool of shard workers on Ray: starting (or joining) Ray, the actors, the scheduling loop.

A :class:`ShardPool` holds Ray actors of :class:`~dasr.distributed.worker.ShardWorker`, each with
its extractor built once; :meth:`ShardPool.run` hands every idle actor the next shard and yields
the results as they come.  A worker process that dies (killed, out of memory) is restarted by Ray
and the shard it ran is retried on it (``max_restarts``, ``max_task_retries``); when it died on
every attempt, the shard is reported failed and the actor replaced.  A pool outlives a run: the
driver of several collections (or a test) keeps its workers warm across runs.

Ray is imported here only, inside the functions: ``import dasr.distributed`` never needs it.
"""

from __future__ import annotations

import logging
import os
import socket
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dasr.distributed.worker import ShardResult, ShardTask, ShardWorker
from dasr.errors import InputError, UserError
from dasr.features.spec import ExtractorSpec
from dasr.model.device import BACKEND

__all__ = ["WORKER_RESTARTS", "RayOptions", "RayUnavailableError", "ShardPool", "import_ray", "start_ray"]

# Attempts of a shard whose worker process dies (each restarts the actor and retries the shard).
WORKER_RESTARTS = 2


class RayUnavailableError(UserError):
    """``--engine ray`` without Ray installed."""


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide the pool runs.

    Attributes:
      address: None: a local Ray on this machine's resources (started and stopped by the run, no
        dashboard); ``auto`` or ``ray://host:port``: join that cluster.
      workers: the number of shard workers (None: as many as the resources allow, at most one
        per pending shard).
      cpus_per_worker: the CPUs Ray reserves per worker (fractions allowed).  Only the actors ask
        for CPUs (no other task runs), so the pool cannot starve a task of its own.
      gpus_per_worker: the GPUs per worker (1 where GPUs exist; 0: CPU only).
      restarts: how often a dead worker is restarted and its shard retried.
    """

    address: str | None = None
    workers: int | None = None
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    restarts: int = WORKER_RESTARTS


def import_ray():
    """The ``ray`` module.

    Raises:
      RayUnavailableError: Ray is not installed.
    """
    # Ray's progress-bar manager would replace builtins.print process-wide (the caller's, too).
    os.environ.setdefault("RAY_TQDM_PATCH_PRINT", "0")
    try:
        import ray
    except ModuleNotFoundError:
        raise RayUnavailableError("--engine ray needs Ray: pip install 'dasr[ray]'") from None
    return ray


def start_ray(options: RayOptions):
    """Starts a local Ray, or joins the cluster of ``options.address``, unless Ray already runs here.

    Returns:
      (the ``ray`` module, whether this call started it: then the caller shuts it down).

    Raises:
      RayUnavailableError: Ray is not installed.
    """
    ray = import_ray()
    if ray.is_initialized():
        return ray, False
    if options.address is None:
        ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR)
    else:
        ray.init(address=options.address, log_to_driver=False, logging_level=logging.ERROR)
    return ray, True


def worker_count(ray, options: RayOptions, pending: int) -> int:
    """How many workers a run of ``pending`` shards starts (see :attr:`RayOptions.workers`).

    Raises:
      InputError: GPUs are asked for and the cluster has none.
    """
    if options.workers is not None:
        return max(1, min(options.workers, pending))
    resources = ray.cluster_resources()
    if options.gpus_per_worker > 0:
        fit = int(resources.get("GPU", 0) // options.gpus_per_worker)
        if fit == 0:
            raise InputError(f"--gpus-per-worker {options.gpus_per_worker:g}: the Ray cluster has no GPU")
    else:
        fit = int(resources.get("CPU", 1) // options.cpus_per_worker)
    return max(1, min(fit, pending))


class ShardPool:
    """Ray actors extracting shards, each with the extractor of ``spec`` built once.

    Args:
      spec: the extractor (plain data, sent to each worker, which builds the network).
      options: the actors' resources and restarts.
      size: the number of workers.

    Raises:
      RayUnavailableError: Ray is not installed.
    """

    def __init__(self, spec: ExtractorSpec, options: RayOptions, size: int) -> None:
        self.ray = import_ray()
        self.spec = spec
        self.options = options
        self._remote = self.ray.remote(
            num_cpus=options.cpus_per_worker, num_gpus=options.gpus_per_worker, max_restarts=options.restarts,
            max_task_retries=options.restarts, runtime_env={"env_vars": {"KERAS_BACKEND": BACKEND, "TF_CPP_MIN_LOG_LEVEL": "2"}})(ShardWorker)
        self._driver = (socket.gethostname(), os.getpid())  # the workers on this host end with the driver
        self.actors = [self._new() for _ in range(size)]

    def _new(self):
        return self._remote.remote(self.spec, self._driver)

    def run(self, tasks: Sequence[ShardTask], on_result: Callable[[ShardResult, ShardTask], None]) -> list[ShardResult]:
        """Runs every task, each on the next idle worker.

        Args:
          tasks: the shards.
          on_result: called with each result as it arrives (progress, reports).

        Returns:
          One result per task, in completion order; a shard whose worker died on every attempt
          (or could not start) has its ``error`` set, and its actor is replaced.
        """
        ray = self.ray
        queue = deque(tasks)
        idle = list(self.actors)
        running: dict = {}
        results = []
        while queue or running:
            while idle and queue:
                actor, task = idle.pop(), queue.popleft()
                running[actor.run.remote(task)] = (actor, task)
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                actor, task = running.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as exc:  # the worker died on every attempt
                    result = ShardResult(task.shard, error=f"the worker died or could not start (restarted up "
                                                           f"to {self.options.restarts} times): {exc}")
                    ray.kill(actor)
                    self.actors[self.actors.index(actor)] = actor = self._new()
                idle.append(actor)
                results.append(result)
                on_result(result, task)
        return results

    def close(self) -> None:
        """Ends every worker (idempotent)."""
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []

    def __enter__(self) -> ShardPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
