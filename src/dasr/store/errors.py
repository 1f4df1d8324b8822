"""The errors of the region store (all are :class:`StoreError`)."""

from __future__ import annotations

__all__ = ["StoreConfigError", "StoreError", "StoreLockedError"]


class StoreError(Exception):
    """A store file is corrupt, foreign, truncated or otherwise unusable."""


class StoreConfigError(StoreError):
    """A store was created with a configuration other than the requested one."""


class StoreLockedError(StoreError):
    """Another process is writing the same store."""
