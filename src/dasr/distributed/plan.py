"""The shard plan of a distributed extraction: which images each shard holds, and the plan file.

A run of ``dasr extract --engine ray --out OUT`` keeps, next to ``OUT``::

    OUT.plan.json        the plan: format, image-list hash and count, shard size and count,
                         the normalised configuration (extractor, weights fingerprint,
                         feature dtype, root); written atomically before any work
    OUT.shards/
        images.txt       the planned image list (absolute paths), what every worker reads
        shard-IIIII-of-NNNNN.h5   shard ``I/N``: an ordinary store of ``dasr extract --shard I/N``

Shard ``i`` of ``n`` takes images ``i, i+n, i+2n, ...`` of the list (:func:`dasr.store.shard_of`),
so a shard store is exactly the store ``dasr extract --shard i/n`` makes and the shard stores
merge into the store one process makes (``dasr merge`` checks that the set is complete).

A rerun reads the plan back and refuses (naming what differs) a changed image list, shard size
or configuration; the shards to run are those without a finished shard store.  Everything in
this module is pure or plain file I/O: no Ray.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dasr.errors import InputError, UserError
from dasr.features.spec import ExtractorSpec
from dasr.io.atomic import atomic_write_bytes
from dasr.store.config import normalize_config, sharing_differences
from dasr.store.files import parts_path
from dasr.store.format import encode_name

__all__ = [
    "DEFAULT_SHARD_SIZE",
    "PLAN_FORMAT",
    "PlanMismatchError",
    "ShardPlan",
    "check_plan",
    "finished",
    "list_hash",
    "list_path",
    "make_plan",
    "pending_shards",
    "plan_config",
    "plan_path",
    "read_plan",
    "shard_count",
    "shard_path",
    "shards_dir",
    "write_plan",
]

DEFAULT_SHARD_SIZE = 2000
PLAN_FORMAT = "dasr-shard-plan-1"


class PlanMismatchError(UserError):
    """A rerun's image list, shard size or configuration is not the one its plan file records."""


@dataclass(frozen=True)
class ShardPlan:
    """What a distributed extraction extracts, and how it is cut into shards.

    Attributes:
      list_hash: :func:`list_hash` of the image list (relative paths, in order).
      images: the number of images in the list.
      shard_size: the largest number of images a shard holds (as asked).
      shards: the number of shards, :func:`shard_count` of the two above.
      config: the normalised configuration (:func:`plan_config`).
    """

    list_hash: str
    images: int
    shard_size: int
    shards: int
    config: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The plan file's content."""
        return {"format": PLAN_FORMAT, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: Any, where: Path) -> ShardPlan:
        """Reads a plan file's content back.

        Raises:
          PlanMismatchError: not a plan of this format (the message names ``where``).
        """
        fields = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT or not fields <= set(data):
            raise PlanMismatchError(f"{where}: not a shard plan of this version ({PLAN_FORMAT}); "
                                    "delete it and the shards folder to start again")
        return cls(**{k: data[k] for k in fields})


def list_hash(images: Sequence[str]) -> str:
    """sha256 (hex) of an image list: its names (as stored) in order, one per line.

    Args:
      images: relative image paths, in list order.

    Returns:
      64 hex digits; two lists have the same hash when they hold the same names in the same order.
    """
    h = hashlib.sha256()
    for name in images:
        h.update(encode_name(name))
        h.update(b"\n")
    return h.hexdigest()


def shard_count(images: int, shard_size: int) -> int:
    """How many shards a list of ``images`` images needs so that none holds over ``shard_size``.

    Args:
      images: the list's length (0 gives one, empty, shard).
      shard_size: the most images per shard (>= 1).

    Returns:
      ``ceil(images / shard_size)``, at least 1.

    Raises:
      InputError: ``shard_size`` < 1.
    """
    if shard_size < 1:
        raise InputError(f"shard size must be >= 1, got {shard_size}")
    return max(1, math.ceil(images / shard_size))


def plan_config(spec: ExtractorSpec, weights_id: str, feature_dtype: str, root: str,
                backend: str = "tensorflow") -> dict[str, Any]:
    """The normalised configuration a plan records and a rerun must match.

    Args:
      spec: the extractor; every field counts but ``seed_chunk`` (it changes the batching of the
        backprop, not the regions) and the weights' path (the fingerprint stands for it).
      weights_id: the weights' fingerprint (``random`` for the untrained network).
      feature_dtype: ``float32`` or ``float16``.
      root: the absolute folder the stored paths are relative to.
      backend: the Keras backend the workers compute with.

    Returns:
      A flat JSON dict.
    """
    options = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec) if f.name != "region"}
    options.update({k: v for k, v in spec.region.as_dict().items() if k != "seed_chunk"})
    options["weights"] = weights_id
    options["feature_dtype"] = feature_dtype
    options["root"] = root
    options["backend"] = backend
    return normalize_config(options)


def make_plan(images: Sequence[str], shard_size: int, config: Mapping[str, Any]) -> ShardPlan:
    """The plan of an image list.

    Args:
      images: relative image paths, in list order.
      shard_size: the most images per shard.
      config: :func:`plan_config`.

    Returns:
      The :class:`ShardPlan`.

    Raises:
      InputError: ``shard_size`` < 1.
    """
    return ShardPlan(list_hash(images), len(images), int(shard_size), shard_count(len(images), shard_size),
                     normalize_config(config))


def check_plan(stored: ShardPlan, requested: ShardPlan, where: Path) -> None:
    """Refuses a rerun that would mix shards of two different extractions.

    Args:
      stored: the plan read from ``where``.
      requested: the plan of this run.
      where: the plan file, for the message.

    Raises:
      PlanMismatchError: the image list, the shard size or the configuration differ; the message
        names each difference (``image list: ...``, ``shard_size: ...``, ``key: stored=.. requested=..``).
    """
    lines = []
    if stored.list_hash != requested.list_hash:
        lines.append(f"image list: stored {stored.images} images (sha256 {stored.list_hash[:12]}), "
                     f"requested {requested.images} images (sha256 {requested.list_hash[:12]})")
    if stored.shard_size != requested.shard_size:
        lines.append(f"shard_size: stored={stored.shard_size} requested={requested.shard_size}")
    lines += sharing_differences(stored.config, requested.config)
    if lines:
        raise PlanMismatchError(f"{where}: this run differs from the planned one ({'; '.join(lines)}); "
                                "rerun it as planned, or choose another --out")


def plan_path(out: str | Path) -> Path:
    """``OUT.plan.json``, the plan file of the store ``out``."""
    out = Path(out)
    return out.with_name(out.name + ".plan.json")


def shards_dir(out: str | Path) -> Path:
    """``OUT.shards/``, the folder of the shard stores and of the planned list."""
    out = Path(out)
    return out.with_name(out.name + ".shards")


def list_path(out: str | Path) -> Path:
    """``OUT.shards/images.txt``, the planned list the workers read."""
    return shards_dir(out) / "images.txt"


def shard_path(out: str | Path, shard: int, shards: int) -> Path:
    """``OUT.shards/shard-IIIII-of-NNNNN.h5``, the store of shard ``shard`` of ``shards``."""
    return shards_dir(out) / f"shard-{shard:05d}-of-{shards:05d}.h5"


def finished(store: Path) -> bool:
    """Whether a shard store is finished: its file exists and no writer left unfinished parts."""
    return store.is_file() and not parts_path(store).exists()


def pending_shards(out: str | Path, plan: ShardPlan) -> list[int]:
    """The shards of ``plan`` without a finished shard store, in order."""
    return [i for i in range(plan.shards) if not finished(shard_path(out, i, plan.shards))]


def read_plan(out: str | Path) -> ShardPlan | None:
    """The plan file of ``out``, or None when there is none.

    Raises:
      PlanMismatchError: the file is not a plan (unreadable JSON or another format).
    """
    path = plan_path(out)
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PlanMismatchError(f"{path}: not a shard plan (not JSON: {exc})") from None
    return ShardPlan.from_json(data, path)


def write_plan(out: str | Path, plan: ShardPlan) -> Path:
    """Writes the plan file of ``out`` atomically.

    Returns:
      Its path.

    Raises:
      OSError: it cannot be written.
    """
    path = plan_path(out)
    atomic_write_bytes(path, json.dumps(plan.to_json(), indent=1, sort_keys=True).encode("utf-8"))
    return path
