"""Extraction across processes, GPUs and machines (``dasr extract --engine ray``).

:mod:`~dasr.distributed.plan` (the shard plan, pure), :mod:`~dasr.distributed.worker` (the shard
worker, one extractor per process), :mod:`~dasr.distributed.pool` (the workers as Ray actors) and
:mod:`~dasr.distributed.ray_engine` (the driver: plan, pool, merge).  Ray is an optional extra, imported only when a run starts: ``import dasr`` and
``import dasr.distributed`` never need it.
"""

import importlib

# Each name from the module that defines it, on first use: the plan (pure) is read by the
# command line's option parser, which must not load the network that the workers import.
_WHERE = {"DEFAULT_SHARD_SIZE": "plan", "PlanMismatchError": "plan", "ShardPlan": "plan",
          "RayOptions": "pool", "RayUnavailableError": "pool", "ShardPool": "pool",
          "RaySummary": "ray_engine", "extract_on_ray": "ray_engine"}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
