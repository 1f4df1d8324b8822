"""The errors of the region store (all are :class:`StoreError`)."""

from __future__ import annotations

from dasr.errors import UserError

__all__ = ["CollectionNotFoundError", "ImageChangedError", "StoreConfigError", "StoreError", "StoreLockedError"]


class StoreError(UserError):
    """A store file is corrupt, foreign, truncated or otherwise unusable."""


class StoreConfigError(StoreError):
    """A store was created with a configuration other than the requested one."""


class ImageChangedError(StoreError):
    """An image file differs (size or SHA-256) from the one a store's regions were taken from."""


class StoreLockedError(StoreError):
    """Another process is writing the same store."""


class CollectionNotFoundError(UserError, FileNotFoundError):
    """The images to extract: no such folder or image list."""
