"""Extraction across processes, GPUs and machines (``dasr extract --engine ray``).

:mod:`~dasr.distributed.plan` (the shard plan, pure), :mod:`~dasr.distributed.worker` (the shard
worker, one extractor per process), :mod:`~dasr.distributed.pool` (the workers as Ray actors) and
:mod:`~dasr.distributed.ray_engine` (the driver: plan, pool, merge).  Ray is an optional extra, imported only when a run starts: ``import dasr`` and
``import dasr.distributed`` never need it.
"""

from dasr.distributed.plan import DEFAULT_SHARD_SIZE, PlanMismatchError, ShardPlan
from dasr.distributed.pool import RayOptions, RayUnavailableError, ShardPool
from dasr.distributed.ray_engine import RaySummary, extract_on_ray

__all__ = ["DEFAULT_SHARD_SIZE", "PlanMismatchError", "RayOptions", "RaySummary", "RayUnavailableError",
           "ShardPlan", "ShardPool", "extract_on_ray"]
