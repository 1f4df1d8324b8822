"""l2 normalisation and PCA-whitening of descriptors, and the whitening files kept next to a store.

DASR post-processes every descriptor (region or global) as
``l2 -> PCA-whitening -> l2`` (:func:`postprocess`), with the whitening learnt
on an independent collection (e.g. Paris6k features for Oxford5k queries;
which collection teaches which benchmark is :func:`dasr.eval.pca_source.pca_source`).
A store keeps its whitenings next to it, one file per source collection and
dimension (:func:`whitening_path`), so that runs with another source or dimension
never overwrite each other's; :func:`choose_whitening` picks the one a search uses, and
:func:`load_whitening_for` refuses one learned on features that mean something else.

The whitening parameters are a plain ``dict`` of numpy arrays:

* ``"mean"``: ``(d,)`` mean of the learning data,
* ``"projection"``: ``(d, dim)`` matrix whose columns are the principal
  directions, already divided by ``sqrt(eigenvalue)`` when whitening, so that
  ``apply(x) = (x - mean) @ projection``,
* ``"eigenvalues"``: ``(dim,)`` variances of the learning data along those
  directions, in decreasing order (as estimated, before any regularisation).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from dasr.errors import InputError, InputWarning
from dasr.features.methods import GLOBAL_METHODS
from dasr.io.atomic import atomic_path
from dasr.store.config import config_differences, format_differences

__all__ = [
    "l2_normalize",
    "learn_pca_whitening",
    "apply_pca_whitening",
    "postprocess",
    "save_whitening",
    "load_whitening",
    "whitening_identity",
    "FEATURE_KEYS",
    "feature_meaning",
    "check_whitening",
    "load_whitening_for",
    "whitening_path",
    "whitening_files",
    "learn_whitening",
    "WhiteningChoice",
    "choose_whitening",
]

_PARAM_KEYS = ("mean", "projection", "eigenvalues")
_META_KEY = "meta_json"

# Rows per chunk when accumulating the covariance, bounding the float64 copy
# of the data to ~chunk * d * 8 bytes (millions of 2048-d regions otherwise
# need tens of GB).
_CHUNK = 65536

# Fewer learning vectors per whitened dimension than this draws a warning (see
# learn_pca_whitening).
_MIN_SAMPLES_PER_DIM = 4


def _out_dtype(dtype: np.dtype) -> np.dtype:
    """Keep float32/float64; anything else (ints, float16) becomes float32."""
    dtype = np.dtype(dtype)
    return dtype if dtype in (np.float32, np.float64) else np.dtype(np.float32)


def l2_normalize(x: np.ndarray, axis: int = -1, eps: float = 1e-12) -> np.ndarray:
    """Scale vectors to unit l2 norm.

    Args:
        x: array of vectors along ``axis``.
        axis: axis holding the vector components.
        eps: added to the norm, so that all-zero vectors stay zero instead of
            becoming NaN.

    Returns:
        array of the same shape, float32 unless ``x`` is float64.
    """
    x = np.asarray(x)
    x = x.astype(_out_dtype(x.dtype), copy=False)
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / (norm + eps)


def learn_pca_whitening(
    x: np.ndarray,
    dim: int | None = None,
    whiten: bool = True,
    eps: float = 1e-9,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Learn PCA (optionally whitening) from learning descriptors.

    Computed in float64: eigen-decomposition of the covariance (``1/(n-1)``
    normalisation, so the whitened learning data has unit sample variance as
    measured by ``np.cov``) when ``n >= d``, accumulated in chunks; SVD of the
    centred data when ``n < d``. Eigenvector signs are fixed (largest-magnitude
    entry positive) so that the result is reproducible.

    Regularisation: directions whose variance is below ``eps * lambda_max``
    carry no information (rank deficiency: fewer samples than dimensions, or
    l2-normalised data), and dividing by their ``sqrt(eigenvalue)`` would
    multiply round-off noise by ~1e8. Such components are therefore
    *negligible*: ``dim=None`` keeps only the non-negligible ones. If an
    explicit ``dim`` asks for some of them anyway, their variance is floored
    at ``eps * lambda_max`` before the inverse square root (a warning is
    issued), which bounds the gain of any component to at most
    ``1 / sqrt(eps * lambda_max)``.

    Args:
        x: ``(n, d)`` learning descriptors (normally already l2-normalised).
        dim: number of output dimensions; ``None`` keeps all non-negligible
            components. At most ``min(n - 1, d)``: the centred data has no
            variance in other directions.
        whiten: divide each component by its standard deviation; ``False``
            gives a plain PCA rotation / projection.
        eps: relative eigenvalue floor described above.
        progress: show a bar over the passes through ``x`` (minutes for millions of regions).

    Returns:
        dict with ``mean`` ``(d,)``, ``projection`` ``(d, dim)`` and
        ``eigenvalues`` ``(dim,)``, all float64.

    Raises:
        ValueError: if ``x`` is not 2-D, has fewer than 2 rows, is not finite,
            has no variance, or if ``dim`` is not in ``1..min(n - 1, d)``.
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (n, d), got {x.shape}")
    n, d = x.shape
    if n < 2:
        raise ValueError(f"need at least 2 learning vectors, got {n}")
    max_dim = min(n - 1, d)
    if dim is not None and not 1 <= int(dim) <= max_dim:
        raise ValueError(f"dim must be in 1..{max_dim} (min(n-1, d)), got {dim}")
    if not eps >= 0:
        raise ValueError(f"eps must be non-negative, got {eps}")

    starts = range(0, n, _CHUNK)
    with tqdm(total=len(starts) * (2 if n >= d else 1), desc="PCA-whitening", unit="chunk",
              disable=not progress, dynamic_ncols=True) as bar:
        mean = np.zeros(d, dtype=np.float64)
        for start in starts:
            mean += x[start : start + _CHUNK].sum(axis=0, dtype=np.float64)
            bar.update()
        mean /= n
        if not np.all(np.isfinite(mean)):
            raise ValueError("x contains non-finite values")
        if n >= d:
            cov = np.zeros((d, d), dtype=np.float64)
            for start in starts:
                xc = x[start : start + _CHUNK].astype(np.float64) - mean
                cov += xc.T @ xc
                bar.update()
            cov /= n - 1
    if n >= d:
        eigval, eigvec = np.linalg.eigh(cov)
        eigval, eigvec = eigval[::-1], eigvec[:, ::-1]
    else:
        xc = x.astype(np.float64) - mean
        _, sing, vt = np.linalg.svd(xc, full_matrices=False)
        eigval, eigvec = sing**2 / (n - 1), vt.T
    # Round-off can make null eigenvalues slightly negative.
    eigval = np.maximum(eigval[:max_dim], 0.0)
    eigvec = eigvec[:, :max_dim]

    lam_max = float(eigval[0])
    if not lam_max > 0:
        raise ValueError("learning data has zero variance")
    floor = eps * lam_max
    n_ok = int(np.count_nonzero(eigval > floor))
    if dim is None:
        dim = n_ok
    dim = int(dim)
    if dim > n_ok and whiten:
        warnings.warn(
            f"PCA-whitening: {dim - n_ok} of {dim} requested components have "
            f"variance below eps * lambda_max = {floor:.3g}; flooring them",
            RuntimeWarning,
            stacklevel=2,
        )
    if whiten and n < _MIN_SAMPLES_PER_DIM * dim:
        # Sample eigenvalues of n vectors in `dim` directions spread out (Marchenko-Pastur):
        # the smallest come out about (1 - sqrt(dim/n))^2 times too small, so whitening
        # multiplies the noisiest directions most.  At n = 4 dim that factor is 1/4 (a gain
        # of 2x on the last component); below it the tail is mostly estimation noise.
        warnings.warn(
            f"PCA-whitening learned from {n} vectors for {dim} dimensions: the trailing "
            f"components are poorly estimated (fewer than {_MIN_SAMPLES_PER_DIM} vectors per "
            f"dimension); a smaller dim (at most {max(1, n // _MIN_SAMPLES_PER_DIM)}) or a larger "
            f"learning collection is safer",
            RuntimeWarning,
            stacklevel=2,
        )
    eigval, eigvec = eigval[:dim], eigvec[:, :dim]

    # Deterministic sign: eigh/SVD may flip any column between platforms.
    pivot = np.argmax(np.abs(eigvec), axis=0)
    signs = np.sign(eigvec[pivot, np.arange(dim)])
    signs[signs == 0] = 1.0
    eigvec = eigvec * signs

    projection = eigvec / np.sqrt(np.maximum(eigval, floor)) if whiten else eigvec
    return {
        "mean": mean,
        "projection": np.ascontiguousarray(projection),
        "eigenvalues": eigval.copy(),
    }


def _check_params(params: dict[str, np.ndarray]) -> None:
    missing = [k for k in _PARAM_KEYS if k not in params]
    if missing:
        raise ValueError(f"whitening params lack {missing}")
    d, dim = np.shape(params["projection"])
    if np.shape(params["mean"]) != (d,) or np.shape(params["eigenvalues"]) != (dim,):
        raise ValueError("inconsistent whitening params shapes")


def apply_pca_whitening(
    x: np.ndarray,
    params: dict[str, np.ndarray],
    dim: int | None = None,
) -> np.ndarray:
    """Project descriptors with learnt PCA(-whitening) parameters.

    Args:
        x: ``(n, d)`` descriptors, or a single ``(d,)`` descriptor.
        params: output of :func:`learn_pca_whitening` (or
            :func:`load_whitening`).
        dim: keep only the first ``dim`` components (the largest-variance
            ones); ``None`` keeps all the learnt ones.

    Returns:
        ``(n, dim)`` (or ``(dim,)``) projected descriptors, *not* normalised;
        float32 unless ``x`` is float64.

    Raises:
        ValueError: on inconsistent params, a dimension mismatch, or ``dim``
            larger than the learnt number of components.
    """
    _check_params(params)
    x = np.asarray(x)
    single = x.ndim == 1
    x2 = x[None, :] if single else x
    if x2.ndim != 2:
        raise ValueError(f"x must have shape (n, d) or (d,), got {x.shape}")
    proj = np.asarray(params["projection"], dtype=np.float64)
    if x2.shape[1] != proj.shape[0]:
        raise ValueError(f"x has {x2.shape[1]} dimensions, whitening expects {proj.shape[0]}")
    if dim is not None:
        if not 1 <= int(dim) <= proj.shape[1]:
            raise ValueError(f"dim must be in 1..{proj.shape[1]}, got {dim}")
        proj = proj[:, : int(dim)]
    out = (x2.astype(np.float64) - np.asarray(params["mean"], dtype=np.float64)) @ proj
    out = out.astype(_out_dtype(x.dtype))
    return out[0] if single else out


def postprocess(
    x: np.ndarray,
    params: dict[str, np.ndarray] | None,
    dim: int | None = None,
) -> np.ndarray:
    """DASR descriptor post-processing: ``l2 -> PCA-whitening -> l2``.

    Args:
        x: ``(n, d)`` or ``(d,)`` raw descriptors.
        params: whitening parameters; ``None`` means no whitening (the
            result is just l2-normalised).
        dim: optional output dimensionality (see :func:`apply_pca_whitening`).

    Returns:
        unit-norm descriptors (all-zero inputs stay zero).

    Raises:
        ValueError: as :func:`apply_pca_whitening`.
    """
    x = l2_normalize(x)
    if params is None:
        return x
    return l2_normalize(apply_pca_whitening(x, params, dim=dim))


def save_whitening(
    path: str | os.PathLike[str],
    params: dict[str, np.ndarray],
    meta: dict[str, Any] | None = None,
) -> None:
    """Save whitening parameters and JSON metadata to an ``.npz`` atomically.

    Written through :func:`dasr.io.atomic.atomic_path`, so an interrupted run
    never leaves a truncated file that a later run would load.

    Args:
        path: destination file (written as given; no suffix is appended).
        params: whitening parameters (``mean``, ``projection``,
            ``eigenvalues``).
        meta: JSON-serialisable description (learning collection, layer,
            network, ...).

    Raises:
        ValueError: on inconsistent params.
        TypeError: if ``meta`` is not JSON-serialisable.
    """
    _check_params(params)
    meta_json = json.dumps(meta or {}, sort_keys=True)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(
            tmp,
            **{k: np.asarray(params[k]) for k in _PARAM_KEYS},
            **{_META_KEY: np.array(meta_json)},
        )


def load_whitening(
    path: str | os.PathLike[str],
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Load parameters written by :func:`save_whitening`.

    Args:
        path: the ``.npz`` file.

    Returns:
        ``(params, meta)``.

    Raises:
        InputError: no such file, not a whitening file, or non-finite / all-zero parameters
          (a ValueError too); ValueError: inconsistent shapes.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such whitening file")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in (*_PARAM_KEYS, _META_KEY) if k not in data.files]
            if missing:
                raise InputError(f"{path}: not a whitening file (missing {', '.join(missing)})")
            params = {k: data[k] for k in _PARAM_KEYS}
            meta = json.loads(str(data[_META_KEY]))
    except InputError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
        # Not an npz of plain arrays; never suggest loading it with pickles allowed.
        raise InputError(f"{path}: not a whitening file (not an .npz of numeric arrays)") from None
    for key, value in params.items():
        if value.dtype.kind not in "fiu" or not np.all(np.isfinite(value)):
            raise InputError(f"{path}: not a usable whitening ({key} is not all finite numbers)")
    if not np.any(params["projection"]):
        raise InputError(f"{path}: not a usable whitening (its projection is all zero)")
    _check_params(params)
    return params, meta


def whitening_identity(params: dict | None) -> str:
    """A digest of the whitening parameters (``"none"`` without whitening)."""
    if params is None:
        return "none"
    h = hashlib.sha256()
    for key in sorted(params):
        a = np.ascontiguousarray(params[key])
        h.update(key.encode() + str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()[:16]


# What a descriptor's coordinates mean: the network, its weights, the layer, the input's scale,
# how a box's cells are pooled, and the kind of descriptor (a region's pooled cells, or one of
# the global methods, with R-MAC's own region whitening if any). The rest of a store's
# configuration changes which regions there are (rule, tau, beta, seeds, resampling filter) or
# only their rounding (dtype, backend, version): a whitening carries over those, and refusing
# them would refuse every float32/bfloat16 pair.
FEATURE_KEYS = ("backbone", "weights", "feature_layer", "max_side", "pooling", "rmac_whitening_digest",
                "descriptor")


def feature_meaning(config: dict[str, Any]) -> dict[str, Any]:
    """The :data:`FEATURE_KEYS` of a store configuration (``descriptor``: the global method, or
    ``region`` for DASR, DASR* and the fixed boxes, which pool the same feature map in boxes)."""
    method = config.get("method")
    meaning = {key: config[key] for key in FEATURE_KEYS if key != "descriptor" and key in config}
    meaning["descriptor"] = method if method in GLOBAL_METHODS else "region"
    return meaning


def check_whitening(path: str | os.PathLike, meta: dict[str, Any], config: dict[str, Any]) -> None:
    """Refuses a whitening learned on features that mean something else than a store's.

    Args:
      path: the whitening file (named in the messages).
      meta: its metadata (:func:`load_whitening`); ``meta["config"]`` is the configuration of the
        store it was learned on (:func:`learn_whitening` records it).
      config: the configuration of the store it is about to whiten.

    Raises:
      InputError: a :data:`FEATURE_KEYS` entry differs; the message names each.

    Warns:
      InputWarning: the file records no configuration (it cannot be checked; it is used).
    """
    learned = meta.get("config")
    if not isinstance(learned, dict):
        warnings.warn(f"{os.fspath(path)}: records no configuration of the features it was learned on; "
                      "used unchecked", InputWarning, stacklevel=2)
        return
    differences = config_differences(feature_meaning(learned), feature_meaning(config))
    if differences:
        lines = format_differences(differences, ("whitening", "store"))
        raise InputError(f"{os.fspath(path)}: learned on other features than the store's ({'; '.join(lines)})")


def load_whitening_for(path: str | os.PathLike, config: dict[str, Any]) -> dict[str, np.ndarray]:
    """:func:`load_whitening`'s parameters, after :func:`check_whitening` against ``config``."""
    params, meta = load_whitening(path)
    check_whitening(path, meta, config)
    return params


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def whitening_path(index: str | os.PathLike, source: str, dim: int | None) -> Path:
    """Where an index keeps the whitening learned on ``source`` with ``dim`` output dimensions.

    ``<index>.whitening-<source>-<dim>.npz`` (``all`` for every usable component).
    """
    name = _UNSAFE.sub("_", source).strip("_") or "source"
    return Path(f"{os.fspath(index)}.whitening-{name}-{'all' if dim is None else int(dim)}.npz")


def whitening_files(index: str | os.PathLike) -> list[Path]:
    """The whitening files kept next to ``index``, sorted."""
    index = Path(index)
    return sorted(index.parent.glob(f"{glob.escape(index.name)}.whitening-*.npz"))


def learn_whitening(source, out: str | os.PathLike, dim: int | None = None,
                    progress: bool = True) -> dict:
    """Learns PCA-whitening on ``source``'s (l2-normalised) region features and saves it.

    Args:
      source: a region store (:class:`dasr.store.RegionStore`: ``features``, ``path``, ``config``)
        of ANOTHER collection, extracted with the same configuration.
      out: destination ``.npz`` (atomic).
      dim: output dimension (None: all components with non-negligible variance).
      progress: show a bar while learning.

    Returns:
      The whitening parameters.

    Raises:
      ValueError: fewer than two regions in ``source``, or more dimensions than it can give.
    """
    feats = source.features
    if len(feats) < 2:
        raise InputError(f"{source.path}: needs at least 2 regions to learn a whitening, has {len(feats)}")
    x = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    if dim is not None and dim > min(len(x) - 1, x.shape[1]):
        raise InputError(f"{source.path}: a {dim}-d whitening needs more than {dim} regions "
                         f"and dimensions; it has {len(x)} regions of {x.shape[1]} dimensions")
    params = learn_pca_whitening(x, dim=dim, progress=progress)
    save_whitening(out, params, {"learned_from": os.fspath(source.path), "regions": int(len(feats)),
                                 "config": source.config})
    return params


@dataclass(frozen=True)
class WhiteningChoice:
    """Which whitening a search uses: ``path`` None = none (l2-normalised raw features)."""

    path: Path | None
    reason: str

    def describe(self) -> str:
        return f"whitening: {self.path} ({self.reason})" if self.path else f"whitening: none ({self.reason})"


def choose_whitening(index: str | os.PathLike, pca: str | os.PathLike | None) -> WhiteningChoice:
    """The whitening ``pca`` asks for.

    Args:
      index: the store path.
      pca: ``"auto"`` (the one whitening file next to the index, none if there is none),
        ``None``/``"none"``, or a whitening file's path.

    Raises:
      ValueError: ``auto`` with several whitening files next to the index (they are listed),
        or a path that is not a file.
    """
    if pca in (None, "none"):
        return WhiteningChoice(None, "asked for none")
    if pca == "auto":
        found = whitening_files(index)
        if not found:
            return WhiteningChoice(None, f"no whitening file next to {index}")
        if len(found) > 1:
            raise InputError(f"{index}: {len(found)} whitening files ({', '.join(p.name for p in found)}); "
                             "choose one with --pca PATH (or --pca none)")
        return WhiteningChoice(found[0], "the only one next to the index")
    path = Path(pca)
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a whitening file")
    if not path.is_file():
        raise InputError(f"{path}: no such whitening file")
    return WhiteningChoice(path, "given")
