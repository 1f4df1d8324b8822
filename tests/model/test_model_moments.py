"""Eq. 4 on the device (dasr.model.moments) equals the float64 NumPy ellipses (dasr.regions.ellipse).

On maps whose answers are known by hand (one pixel, a rectangle, an empty map) and on random
blob maps, for both keep rules; on this process's backend and, in a child process, on JAX.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dasr.model.moments import device_ellipses
from dasr.regions.ellipse import AUTHORS_PERCENTILE, ellipses_from_maps

SRC = Path(__file__).resolve().parents[2] / "src"
BOX_ATOL = 1e-4  # pixels: the bar for the device boxes


def blob_maps(seed: int, count: int = 12, h: int = 96, w: int = 128) -> np.ndarray:
    """Sums of random anisotropic Gaussian blobs plus sparse noise, some of them tiny."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    maps = np.zeros((count, h, w))
    for i in range(count):
        for _ in range(int(rng.integers(1, 4))):
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            sy, sx = rng.uniform(0.5, h / 4), rng.uniform(0.5, w / 4)
            maps[i] += rng.uniform(0.2, 1) * np.exp(-((yy - cy) / sy) ** 2 / 2 - ((xx - cx) / sx) ** 2 / 2)
        maps[i] += (rng.random((h, w)) < 0.01) * rng.uniform(0, 0.3, (h, w))
    return maps.astype(np.float32)


def on_device(maps, **kwargs):
    return [np.asarray(t) for t in device_ellipses(maps, **kwargs)]


CASES = [
    {"tau": 0.1},
    {"tau": 0.5, "weighted": True},
    {"tau": 0.1, "cell": 4.0},
    {"percentile": AUTHORS_PERCENTILE},
]


def numpy_rule(case: dict) -> dict:
    if "percentile" in case:
        return {"rule": "authors", "cell": case.get("cell", 1.0)}
    return {k: v for k, v in case.items()}


@pytest.mark.skipif(os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow", reason="a TensorFlow trace")
def test_sizes_unknown_when_compiled() -> None:
    """TensorFlow retraces with relaxed shapes after a second image size: the sizes are then
    int32 tensors, which once made the compiled step fail (``w * cell``: int32 times float)."""
    import tensorflow as tf

    compiled = tf.function(lambda m: device_ellipses(m, tau=0.1, cell=4.0),
                           input_signature=[tf.TensorSpec([None, None, None], tf.float32)])
    maps = blob_maps(5, count=3, h=24, w=40)
    for got, want in zip(compiled(maps), on_device(maps, tau=0.1, cell=4.0)):
        np.testing.assert_array_equal(np.asarray(got), want)


def test_one_pixel_rectangle_and_empty_map_by_hand() -> None:
    maps = np.zeros((3, 8, 10), np.float32)
    maps[0, 2, 3] = 5.0  # one pixel: a unit square, variance 1/12 -> half side 2*sqrt(1/12)
    maps[1, 1:5, 2:8] = 1.0  # a 4 x 6 rectangle: variance (n²-1)/12 + 1/12 = n²/12
    boxes, ellipses, kept = on_device(maps, tau=0.1)
    half = 2 * np.sqrt(1 / 12)
    np.testing.assert_allclose(boxes[0], [3.5 - half, 2.5 - half, 3.5 + half, 2.5 + half], atol=1e-6)
    np.testing.assert_allclose(boxes[1], [5 - 2 * np.sqrt(3), 3 - 2 * np.sqrt(16 / 12),
                                          5 + 2 * np.sqrt(3), 3 + 2 * np.sqrt(16 / 12)], atol=1e-5)
    np.testing.assert_allclose(ellipses[1, :4], [5, 3, 2 * np.sqrt(3), 2 * np.sqrt(16 / 12)], atol=1e-5)
    np.testing.assert_array_equal(boxes[2], 0)
    np.testing.assert_array_equal(ellipses[2], 0)
    np.testing.assert_allclose(kept, [1 / 80, 24 / 80, 0], rtol=1e-6)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_device_boxes_equal_numpy_float64(case) -> None:
    maps = blob_maps(seed=len(str(case)))
    maps[3] = 0  # an empty map among them
    want_boxes, want_ellipses, want_kept = ellipses_from_maps(maps, **numpy_rule(case))
    boxes, ellipses, kept = on_device(maps, **case)
    np.testing.assert_allclose(boxes, want_boxes, atol=BOX_ATOL)
    np.testing.assert_allclose(kept, want_kept, atol=1e-7)
    np.testing.assert_allclose(ellipses[:, :4], want_ellipses[:, :4], atol=BOX_ATOL)
    # The angle is defined only where the ellipse is not a circle.
    distinct = want_ellipses[:, 2] - want_ellipses[:, 3] > 1e-2
    np.testing.assert_allclose(ellipses[distinct, 4], want_ellipses[distinct, 4], atol=1e-4)


def test_large_map_keeps_small_regions_exact() -> None:
    # 512 x 512 maps with a few-pixel region far from the origin: raw moments in float32 would
    # be off by ~1e-2 px there (E[y²] ~ 2.5e5); central moments are not.
    maps = np.zeros((2, 512, 512), np.float32)
    maps[0, 500:503, 480:482] = 1.0
    maps[1] = blob_maps(seed=5, count=1, h=512, w=512)[0]
    want_boxes, _, _ = ellipses_from_maps(maps, tau=0.1)
    boxes, _, _ = on_device(maps, tau=0.1)
    np.testing.assert_allclose(boxes, want_boxes, atol=BOX_ATOL)


CHILD = """
import sys, numpy as np, keras
from dasr.model.moments import device_ellipses
maps = np.load(sys.argv[1])["maps"]
out = {}
for name, kw in (("paper", {"tau": 0.1}), ("authors", {"percentile": 95.0})):
    for key, t in zip(("boxes", "ellipses", "kept"), device_ellipses(maps, **kw)):
        out[f"{name}_{key}"] = np.asarray(t)
np.savez(sys.argv[2], backend=keras.backend.backend(), **out)
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
def test_jax_device_boxes_equal_numpy(tmp_path) -> None:
    maps = blob_maps(seed=11)
    np.savez(tmp_path / "maps.npz", maps=maps)
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "maps.npz"), str(tmp_path / "out.npz")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = np.load(tmp_path / "out.npz")
    assert str(got["backend"]) == "jax"
    for name, kw in (("paper", {"tau": 0.1}), ("authors", {"rule": "authors"})):
        want_boxes, _, want_kept = ellipses_from_maps(maps, **kw)
        np.testing.assert_allclose(got[f"{name}_boxes"], want_boxes, atol=BOX_ATOL)
        np.testing.assert_allclose(got[f"{name}_kept"], want_kept, atol=1e-7)
