"""``dasr extract --engine ray``: a collection extracted by a pool of Ray actors, shard by shard.

The driver (:func:`extract_on_ray`) plans the shards (:mod:`dasr.distributed.plan`), starts a
pool of :class:`~dasr.distributed.worker.ShardWorker` actors (:mod:`dasr.distributed.pool`; each
builds its extractor once), hands each idle actor the next pending shard, streams the per-shard results as they come
(progress bar, skipped images), and finally merges every finished shard store into the output
with :func:`dasr.store.merge.merge_store_files` (streaming, bounded memory).

Ray core actors rather than a Ray Data pipeline: a shard is the unit of work, of failure and of
resume, and nothing else runs on the cluster, so there are no read tasks to starve of CPUs
(reserving whole CPUs for actors beside Ray Data's read tasks deadlocks a small machine), no
uncaught exception can fail the whole job (a worker catches everything per shard), and no block of
good rows is ever dropped silently (``max_errored_blocks``).  A worker process that dies (killed,
out of memory) is restarted by Ray and its shard retried on it (``max_restarts``,
``max_task_retries``): the shard store resumes from its saved chunks.

Ray is an optional extra (``pip install 'dasr[ray]'``), imported only when a run starts.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from dasr.distributed.plan import (DEFAULT_SHARD_SIZE, ShardPlan, check_plan, finished, list_path, make_plan,
                                   pending_shards, plan_config, plan_path, read_plan, shard_path, write_plan)
from dasr.distributed.pool import RayOptions, RayUnavailableError, ShardPool, start_ray, worker_count
from dasr.distributed.worker import ShardResult, ShardTask
from dasr.errors import InputError
from dasr.features.spec import ExtractorSpec
from dasr.io.atomic import atomic_write_bytes
from dasr.model.device import BACKEND
from dasr.store.extract import read_image_list
from dasr.store.merge import MergeSummary, merge_store_files

__all__ = ["RayOptions", "RaySummary", "RayUnavailableError", "extract_on_ray", "planned_list", "weights_id_of"]


@dataclass
class RaySummary:
    """What a distributed run did.

    Attributes:
      plan: the plan.
      results: the result of every shard run now (finished ones of earlier runs are not run).
      reused: shards finished by an earlier run.
      merged: the merge of the finished shard stores into the output (None: nothing finished).
      startup_seconds: Ray's start (or joining) time.
    """

    plan: ShardPlan
    results: list[ShardResult] = field(default_factory=list)
    reused: int = 0
    merged: MergeSummary | None = None
    startup_seconds: float = 0.0

    @property
    def failed(self) -> list[ShardResult]:
        return sorted((r for r in self.results if not r.ok), key=lambda r: r.shard)

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return [s for r in self.results for s in r.skipped]

    def line(self) -> str:
        """``N extracted, K already done, M skipped, Z without any region``, then the shards."""
        ok = [r for r in self.results if r.ok]
        extracted = sum(r.extracted for r in ok)
        done = sum(r.already_done for r in ok)
        no_region = sum(len(r.no_region) for r in ok)
        return (f"{extracted} extracted, {done} already done, {len(self.skipped)} skipped, "
                f"{no_region} without any region; shards: {len(ok)} run, {self.reused} already finished, "
                f"{len(self.failed)} failed of {self.plan.shards}")


def weights_id_of(spec: ExtractorSpec) -> str:
    """The fingerprint of ``spec``'s weights, without building the network.

    Raises:
      dasr.model.weights.WeightsError: the weights cannot be found or read.
    """
    if spec.weights == "random":
        return "random"
    from dasr.model.weights import resolve_weights, weights_fingerprint

    return weights_fingerprint(resolve_weights(spec.backbone, None if spec.weights == "imagenet" else spec.weights))


def planned_list(out: Path, root: Path, images: list[str]) -> Path:
    """Writes the planned image list the workers read (absolute paths), atomically.

    Absolute paths keep a name beginning with ``#`` or a space from being read as a comment or
    trimmed; the file is read back to prove it round-trips.

    Raises:
      InputError: an image name a list file cannot hold (a newline, trailing white space).
    """
    path = list_path(out)
    base = root.resolve()
    lines = []
    for name in images:
        if "\n" in name or "\r" in name:
            raise InputError(f"{str(base / name)!r}: a name with a line break cannot be planned; rename it")
        lines.append(os.fsencode(str(base / name)) + b"\n")
    atomic_write_bytes(path, b"".join(lines))
    _, back = read_image_list(path, root)
    if back != images:
        bad = next((a for a, b in zip(images, back) if a != b), images[len(back)] if len(back) < len(images) else "")
        raise InputError(f"{str(base / bad)!r}: this name does not survive an image list (white space at its ends?); "
                         "rename it")
    return path


def _report(result: ShardResult, task: ShardTask, bar: tqdm) -> None:
    root = Path(task.root)
    for image, reason in result.skipped:
        tqdm.write(f"skipped {root / image}: {reason}", file=sys.stderr)
    for image in result.no_region:
        tqdm.write(f"no region found in {root / image} (stored with 0 regions)", file=sys.stderr)
    if result.ok:
        tqdm.write(f"shard {task.shard}/{task.shards}: {result.extracted} extracted, {result.already_done} "
                   f"already done, {len(result.skipped)} skipped ({result.seconds:.1f} s on {result.host})",
                   file=sys.stderr)
        bar.update(result.extracted + result.already_done + len(result.skipped))
    else:
        tqdm.write(f"shard {task.shard}/{task.shards} FAILED:\n{result.error}", file=sys.stderr)


def extract_on_ray(spec: ExtractorSpec, images: str | os.PathLike, out: str | os.PathLike, *,
                   root: str | os.PathLike | None = None, shard_size: int = DEFAULT_SHARD_SIZE,
                   feature_dtype: str = "float32", limit: int | None = None,
                   options: RayOptions = RayOptions(), progress: bool = True,
                   pool: ShardPool | None = None) -> RaySummary:
    """Extracts a collection into the store ``out`` on a Ray actor pool, shard by shard (resuming).

    Args:
      spec: the extractor each worker builds.
      images: folder or list file (see :func:`dasr.store.extract.read_image_list`).
      out: the merged store (``.h5``); the plan and the shard stores go next to it.
      root: root the stored paths are relative to.
      shard_size: the most images per shard.
      feature_dtype: ``float32`` or ``float16``.
      limit: only the first ``limit`` images of the list.
      options: :class:`RayOptions`.
      progress: show a progress bar (images).
      pool: warm workers of ``spec`` to run the shards on (kept open); default: a pool of
        ``options`` started for this run and ended after it (and Ray too, if this run started it).

    Returns:
      A :class:`RaySummary`; the run failed while ``summary.failed`` is not empty (then the
      finished shards are merged anyway, with a warning, and a rerun runs the failed ones).

    Raises:
      PlanMismatchError: the plan next to ``out`` records another image list, shard size or
        configuration (the message names each difference).
      InputError: ``out`` exists and was not made by this engine; an image name cannot be planned.
      RayUnavailableError: Ray is not installed.
      ValueError: ``pool`` builds another extractor than ``spec``.
      Any error of the merge (:func:`dasr.store.merge.merge_store_files`).
    """
    if pool is not None and pool.spec != spec:
        raise ValueError(f"the pool's workers extract with {pool.spec}, not {spec}")
    out = Path(os.path.abspath(out))  # the workers' current folders are not this one
    base, rel = read_image_list(images, root)
    base = Path(os.path.abspath(base))
    if limit is not None:
        rel = rel[:limit]
    config = plan_config(spec, weights_id_of(spec), feature_dtype, str(base.resolve()), BACKEND)
    plan = make_plan(rel, shard_size, config)
    stored = read_plan(out)
    if stored is not None:
        check_plan(stored, plan, plan_path(out))
    elif out.exists():
        raise InputError(f"{out}: exists and was not made by --engine ray (no {plan_path(out).name}); "
                         "choose another --out")
    list_file = planned_list(out, base, rel)
    write_plan(out, plan)
    pending = pending_shards(out, plan)
    summary = RaySummary(plan, reused=plan.shards - len(pending))
    if pending:
        tasks = [ShardTask(i, plan.shards, str(list_file), str(base), str(shard_path(out, i, plan.shards)),
                           feature_dtype) for i in pending]
        done_before = sum(len(range(i, plan.images, plan.shards)) for i in range(plan.shards) if i not in pending)
        bar = tqdm(total=plan.images, initial=done_before, disable=not progress, unit="img",
                   desc=f"extract {spec.method} ({plan.shards} shards)", dynamic_ncols=True)
        with bar:
            report = lambda result, task: _report(result, task, bar)  # noqa: E731
            if pool is not None:
                summary.results = pool.run(tasks, report)
            else:
                start = time.perf_counter()
                ray, started = start_ray(options)
                summary.startup_seconds = time.perf_counter() - start
                try:
                    with ShardPool(spec, options, worker_count(ray, options, len(tasks))) as own:
                        summary.results = own.run(tasks, report)
                finally:
                    if started:
                        ray.shutdown()
    stores = [shard_path(out, i, plan.shards) for i in range(plan.shards)]
    stores = [s for s in stores if finished(s)]
    if stores:
        summary.merged = merge_store_files(stores, out, allow_incomplete=bool(summary.failed))
    return summary
