"""Reading a finalized region store: :class:`RegionStore` (all in memory) and :func:`store_contents`."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dasr.store.config import config_error, diff_configs, normalize_config
from dasr.store.errors import StoreError
from dasr.store.files import PathLike
from dasr.store.format import FEATURE_KEY, H5Source, missing_regions, one_line

__all__ = ["RegionStore", "store_contents"]


class RegionStore:
    """A finalized region store, fully loaded into memory (read-only).

    Attributes:
      path: the store path.
      config: stored configuration.
      root: image root directory.
      feature_dtype: storage dtype of the features ("float32" or "float16").
      images: image names (relative to root), sorted by (order, name).
      orders: (N,) int64 positions in the full input list.
      sizes: (N, 2) int32 (width, height).
      offsets: (N+1,) int64; regions of image i are rows offsets[i]:offsets[i+1].
      region_image: (R,) int32 image index of each region.
      arrays: key -> (R, ...) region arrays; features as float32.
      file_sizes: (N,) int64 size in bytes of each image file when extracted (-1: not recorded).
      sha256s: (N,) S64 hex SHA-256 of each image file (b"": not recorded; stores written
        before identity was recorded have neither).
    """

    def __init__(
        self,
        path: Path,
        config: dict[str, Any],
        root: str,
        feature_dtype: str,
        images: list[str],
        orders: np.ndarray,
        sizes: np.ndarray,
        offsets: np.ndarray,
        region_image: np.ndarray,
        arrays: dict[str, np.ndarray],
        file_sizes: np.ndarray | None = None,
        sha256s: np.ndarray | None = None,
    ) -> None:
        self.path = path
        self.config = config
        self.root = root
        self.feature_dtype = feature_dtype
        self.images = images
        self.orders = orders
        self.sizes = sizes
        self.offsets = offsets
        self.region_image = region_image
        self.arrays = arrays
        self.file_sizes = np.full(len(images), -1, np.int64) if file_sizes is None else file_sizes
        self.sha256s = np.zeros(len(images), "S64") if sha256s is None else sha256s
        self._index = {name: i for i, name in enumerate(images)}

    @classmethod
    def open(cls, path: PathLike, expected_config: Mapping[str, Any] | None = None) -> RegionStore:
        """Load a store.

        Args:
          path: store path.
          expected_config: if given, must equal the stored configuration except
            for :data:`VOLATILE_CONFIG_KEYS`.

        Returns:
          The loaded store.

        Raises:
          StoreError: missing, unreadable, truncated or foreign file.
          StoreConfigError: the configuration differs from ``expected_config``.
        """
        path = Path(path)
        expected = None if expected_config is None else normalize_config(expected_config)
        source = H5Source(path)
        try:
            if expected is not None:
                lines = diff_configs(source.config, expected)
                if lines:
                    raise config_error(path, lines, "extract again with the requested settings")
            arrays = {}
            for key in source.schema:
                data = np.asarray(source.rows(key)[()])
                arrays[key] = data.astype(np.float32) if key == FEATURE_KEY else data
                if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
                    # A NaN feature or box would give NaN scores and boxes to every search.
                    raise StoreError(f"{path}: {key} holds non-finite values (NaN or infinity); "
                                     "extract the store again")
            region_image = np.repeat(np.arange(len(source.images), dtype=np.int32), np.diff(source.offsets))
        except (OSError, ValueError) as exc:
            raise StoreError(f"{path}: unreadable HDF5 file ({one_line(exc)})") from None
        finally:
            source.close()
        return cls(
            path,
            source.config,
            source.root,
            source.feature_dtype,
            source.images,
            source.orders,
            source.sizes,
            source.offsets,
            region_image,
            arrays,
            source.file_sizes,
            source.sha256s,
        )

    def __len__(self) -> int:
        return len(self.images)

    @property
    def features(self) -> np.ndarray:
        """(R, D) float32 features of every region, image after image.

        Raises:
          StoreError: the store holds no image (a shard that received none, a collection whose
            every image was skipped): nothing to search or learn from, not even a dimension
            (:func:`~dasr.store.format.missing_regions`).
        """
        if FEATURE_KEY not in self.arrays:
            raise missing_regions(self.path, FEATURE_KEY, len(self.images))
        return self.arrays[FEATURE_KEY]

    def index(self, image: str) -> int:
        """Position of ``image`` (KeyError if absent)."""
        return self._index[image]

    def regions_of(self, i: int) -> dict[str, np.ndarray]:
        """Region arrays (views) of image ``i``.

        Raises:
          IndexError: ``i`` out of range.
        """
        n = len(self.images)
        if not -n <= i < n:
            raise IndexError(f"image index {i} out of range for {n} images")
        i %= n
        lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
        return {key: array[lo:hi] for key, array in self.arrays.items()}

    def restricted(self, images: Iterable[str]) -> RegionStore:
        """The same store holding only its images named in ``images`` (store order kept).

        What a store is reused for may be a part of it: a learning collection's sample inside a
        store of the whole collection. Names the store does not hold (skipped at extraction) are
        left out.
        """
        wanted = set(images)
        keep = np.array([name in wanted for name in self.images], bool)
        if keep.all():
            return self
        counts = np.diff(self.offsets)
        rows = np.repeat(keep, counts)
        offsets = np.concatenate([[0], np.cumsum(counts[keep])]).astype(np.int64)
        return RegionStore(
            self.path, self.config, self.root, self.feature_dtype,
            [name for name, k in zip(self.images, keep) if k], self.orders[keep], self.sizes[keep], offsets,
            np.repeat(np.arange(int(keep.sum()), dtype=np.int32), counts[keep]),
            {key: array[rows] for key, array in self.arrays.items()}, self.file_sizes[keep], self.sha256s[keep])

    def identity_of(self, i: int) -> tuple[int, str] | None:
        """(file size, hex SHA-256) recorded for image ``i``, or None when not recorded."""
        size, digest = int(self.file_sizes[i]), bytes(self.sha256s[i]).decode("ascii")
        return (size, digest) if size >= 0 and digest else None


def store_contents(path: PathLike) -> tuple[dict[str, Any], list[str]]:
    """The configuration and image names of a finalized store, without loading its regions.

    Raises:
      StoreError: missing, unreadable or foreign file.
    """
    source = H5Source(Path(path))
    try:
        return source.config, list(source.images)
    finally:
        source.close()
