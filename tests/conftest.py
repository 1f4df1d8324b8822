"""Shared fixtures of the end-to-end tests (tests/test_cli.py, tests/test_robustness.py).

* ``sample_images`` / ``other_images``: session folders of 6 small textured JPEG/PNG images
  (random coloured blobs on a noisy background), two different collections.
* ``run_dasr``: runs ``python -m dasr.cli ...`` in a subprocess (DASR_HOME in tmp); each call
  pays TensorFlow's import (~5-10 s), so use it only where a separate process matters.
* ``dasr_cli``: ``dasr.cli.main`` in-process, output captured, returning (rc, stdout, stderr).
  The random-weights extractors it builds are cached per configuration (building ResNet-50 and
  tracing its tf.functions costs seconds per command; an Extractor keeps no state between images
  and ``--weights random`` is one fixed seeded network), so a command line costs milliseconds.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
# Region options every fast test uses: untrained network, 64-pixel network input.
FAST = ("--weights", "random", "--max-side", "64")


def textured_image(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Noisy background with a few random coloured ellipse blobs (uint8 RGB)."""
    img = rng.normal(120, 25, (height, width, 3))
    yy, xx = np.mgrid[:height, :width]
    for _ in range(int(rng.integers(2, 5))):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        rx, ry = rng.uniform(0.1, 0.3) * width, rng.uniform(0.1, 0.3) * height
        inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
        img[inside] = rng.uniform(0, 255, 3) + rng.normal(0, 10, (int(inside.sum()), 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def write_collection(folder: Path, seed: int, count: int = 6, sizes=None, prefix: str = "img") -> list[str]:
    """``count`` textured images, alternately JPEG and PNG; returns their names (sorted)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sizes = sizes or [(96, 72), (80, 80), (72, 96), (120, 60), (64, 48), (100, 75)]
    names = []
    for i in range(count):
        w, h = sizes[i % len(sizes)]
        name = f"{prefix}{i:02d}.{'jpg' if i % 2 == 0 else 'png'}"
        Image.fromarray(textured_image(rng, w, h)).save(folder / name, quality=95)
        names.append(name)
    return sorted(names)


@pytest.fixture(scope="session")
def sample_images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sample") / "images"
    write_collection(folder, seed=1)
    return folder


@pytest.fixture(scope="session")
def other_images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("other") / "images"
    write_collection(folder, seed=2, prefix="other")
    return folder


@pytest.fixture(scope="session")
def dasr_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("dasr-home")


@pytest.fixture(scope="session")
def run_dasr(dasr_home):
    """``run_dasr(*args, timeout=300, cwd=None)`` -> (rc, stdout, stderr) of a ``dasr`` subprocess."""

    def run(*args, timeout: float = 300, cwd=None):
        proc = subprocess.run([sys.executable, "-m", "dasr.cli", *map(os.fspath, args)],
                              capture_output=True, text=True, errors="backslashreplace",
                              env=subprocess_env(dasr_home), timeout=timeout, cwd=cwd)
        return proc.returncode, proc.stdout, proc.stderr

    return run


def subprocess_env(dasr_home: Path) -> dict[str, str]:
    """Environment of a ``dasr`` child: DASR_HOME in tmp, quiet TensorFlow, the src on the path."""
    env = dict(os.environ)
    env["DASR_HOME"] = os.fspath(dasr_home)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    return env


@pytest.fixture(scope="session")
def _cached_extractors():
    """Memoises the library's network builders for random weights (see the module docstring).

    One seeded random backbone per architecture for the whole session, and one Extractor per
    :class:`~dasr.features.spec.ExtractorSpec`, shared by every command of the session.
    """
    from dasr.features.spec import ExtractorSpec
    from dasr.model import backbone as backbone_module

    real_backbone, real_build = backbone_module.build_backbone, ExtractorSpec.build
    backbones: dict[str, object] = {}
    extractors: dict[ExtractorSpec, object] = {}

    def build_backbone(name="resnet50", weights="imagenet"):
        if weights != "random":
            return real_backbone(name, weights)
        if name not in backbones:
            backbones[name] = real_backbone(name, weights)
        return backbones[name]

    def build(spec):
        if spec.weights != "random":
            return real_build(spec)
        if spec not in extractors:
            extractors[spec] = real_build(spec)
        return extractors[spec]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(backbone_module, "build_backbone", build_backbone)
        mp.setattr(ExtractorSpec, "build", build)
        yield


def call_main(argv) -> tuple[int, str, str]:
    """``dasr.cli.main(argv)`` with stdout/stderr captured: (rc, stdout, stderr)."""
    from dasr.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([os.fspath(a) for a in argv])
        except SystemExit as e:  # argparse errors
            rc = e.code if isinstance(e.code, int) else 1
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="session")
def dasr_cli(_cached_extractors):
    """``dasr_cli(*args)`` -> (rc, stdout, stderr) of ``dasr.cli.main`` in this process.

    Only for ``--weights random`` commands: DASR_HOME is not redirected in this process.
    """

    def run(*args):
        return call_main(args)

    return run


def skip_without_bf16(dtype: str = "bfloat16") -> None:
    """Skips the calling test, saying why, where ``dtype`` is bfloat16 and the backend cannot run a
    bfloat16 convolution here (TensorFlow with oneDNN below AVX512_CORE); JAX's bfloat16 tests
    (tests/model/test_backprop_jax.py) cover that path on any CPU."""
    from dasr.model.device import bf16_unavailable

    if dtype == "bfloat16" and bf16_unavailable():
        pytest.skip(f"{bf16_unavailable()}; tests/model/test_backprop_jax.py covers bfloat16 on JAX")


def refuse_imports(blocked) -> str:
    """The first lines of a child process's code (``python -c``): a finder that makes the named
    top-level modules unimportable, as on a machine without them (a GPU machine has no TensorFlow)."""
    return textwrap.dedent(f"""
        import importlib.abc, sys

        class Refuse(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {sorted(blocked)!r}:
                    raise ImportError(f"{{name}} is made unimportable by the test")
                return None

        sys.meta_path.insert(0, Refuse())
    """)
