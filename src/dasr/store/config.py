"""Store configurations: normalisation, comparison, and the messages naming their differences.

A store's configuration is a flat dict of JSON scalars (or lists of them) describing how its
regions were made (backbone, weights hash, layer, ...). Keys listed in
:data:`VOLATILE_CONFIG_KEYS` (shard, creation time) are kept but ignored when configurations
are compared.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dasr.store.errors import StoreConfigError

__all__ = [
    "BACKEND_KEY",
    "DEFAULT_BACKEND",
    "MISSING",
    "VOLATILE_CONFIG_KEYS",
    "config_differences",
    "config_error",
    "diff_configs",
    "format_differences",
    "normalize_config",
    "sharing_differences",
    "store_backend",
]

# The Keras backend that computed a store's regions (``tensorflow`` or ``jax``).
BACKEND_KEY = "backend"
# What a store made before the key was recorded was computed with.
DEFAULT_BACKEND = "tensorflow"
# Keys that legitimately differ between runs producing the same regions.  The backend is one:
# the two backends' regions agree to rounding, so a store made on one is searchable from the
# other; only a resume or a merge must not mix them (the writer and merge check it apart).
VOLATILE_CONFIG_KEYS = ("shard", "created", BACKEND_KEY)


class _Missing:
    """The value of a key one configuration lacks (shown as ``<missing>``)."""

    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()


def store_backend(config: Mapping[str, Any]) -> str:
    """The Keras backend a store's regions were computed with (:data:`DEFAULT_BACKEND` when unrecorded)."""
    return str(config[BACKEND_KEY]) if BACKEND_KEY in config else DEFAULT_BACKEND


def _plain_scalar(value: Any, key: str) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"config[{key!r}]: {type(value).__name__} is not a JSON scalar or list of scalars")


def _plain_value(value: Any, key: str) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain_scalar(v, key) for v in value]
    return _plain_scalar(value, key)


def normalize_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``config`` as a plain JSON-round-tripped flat dict.

    Args:
      config: mapping of str keys to JSON scalars (None, bool, int, float, str),
        numpy scalars or lists of scalars.

    Returns:
      A new dict equal to ``json.loads(json.dumps(config))``.

    Raises:
      TypeError: a key is not a str or a value is nested / not JSON-able.
      ValueError: a float is NaN or infinite.
    """
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping, got {type(config).__name__}")
    plain: dict[str, Any] = {}
    for key, value in config.items():
        if not isinstance(key, str):
            raise TypeError(f"config keys must be str, got {key!r}")
        plain[key] = _plain_value(value, key)
    return json.loads(json.dumps(plain, allow_nan=False))


def _same_value(a: Any, b: Any) -> bool:
    # 1 == 1.0 is accepted (JSON writers disagree on them) but True != 1.
    if isinstance(a, list) or isinstance(b, list):
        return (
            isinstance(a, list)
            and isinstance(b, list)
            and len(a) == len(b)
            and all(_same_value(x, y) for x, y in zip(a, b))
        )
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def config_differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The significant differences between two configurations.

    Args:
      a, b: the two configurations.

    Returns:
      key -> (value in ``a``, value in ``b``) for every differing key, sorted by key;
      a key one side lacks has :data:`MISSING` there; keys in
      :data:`VOLATILE_CONFIG_KEYS` are ignored. Empty when the two are equal.
    """
    differences = {}
    for key in sorted((set(a) | set(b)) - set(VOLATILE_CONFIG_KEYS)):
        left, right = a.get(key, MISSING), b.get(key, MISSING)
        if left is MISSING or right is MISSING or not _same_value(left, right):
            differences[key] = (left, right)
    return differences


def format_differences(
    differences: Mapping[str, tuple[Any, Any]], labels: tuple[str, str] = ("stored", "requested")
) -> list[str]:
    """Human-readable lines of :func:`config_differences`.

    Args:
      differences: key -> (first value, second value).
      labels: names of the two sides.

    Returns:
      One ``"key: <label0>=<json> <label1>=<json>"`` string per key, in the given
      order (``<missing>`` for :data:`MISSING`).
    """
    def show(value: Any) -> str:
        return "<missing>" if value is MISSING else json.dumps(value)

    return [f"{key}: {labels[0]}={show(a)} {labels[1]}={show(b)}" for key, (a, b) in differences.items()]


def diff_configs(
    stored: Mapping[str, Any],
    requested: Mapping[str, Any],
    labels: tuple[str, str] = ("stored", "requested"),
) -> list[str]:
    """List the significant differences between two configurations, as messages.

    Args:
      stored: configuration found in a store.
      requested: configuration asked for.
      labels: names of the two sides in the messages.

    Returns:
      One ``"key: stored=<json> requested=<json>"`` string per differing key
      (sorted; keys in :data:`VOLATILE_CONFIG_KEYS` ignored); empty when equal.
    """
    return format_differences(config_differences(stored, requested), labels)


def config_error(path: Path, lines: list[str], hint: str) -> StoreConfigError:
    """The error for a store at ``path`` whose configuration differs by ``lines``."""
    return StoreConfigError(f"{path}: configuration differs from the stored one ({'; '.join(lines)}); {hint}")


def sharing_differences(
    a: Mapping[str, Any], b: Mapping[str, Any], labels: tuple[str, str] = ("stored", "requested")
) -> list[str]:
    """:func:`diff_configs`, plus the backend: what must agree for two runs' regions to share a store.

    The backend is volatile for searching (either backend searches either store) but not for a
    merge or a sharded run, whose output would hold two backends' regions.

    Returns:
      The lines of :func:`diff_configs`, then ``backend: <label0>=... <label1>=...`` when the
      backends differ (a missing key reads as :data:`DEFAULT_BACKEND`).
    """
    lines = diff_configs(a, b, labels)
    if store_backend(a) != store_backend(b):
        lines.append(f"{BACKEND_KEY}: {labels[0]}={json.dumps(store_backend(a))} "
                     f"{labels[1]}={json.dumps(store_backend(b))}")
    return lines

