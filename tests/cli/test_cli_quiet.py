"""TensorFlow's start-up banners are kept off stderr; everything else printed meanwhile gets through."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from PIL import Image

from conftest import subprocess_env
from dasr.cli.quiet import BANNERS, filtered_stderr

BANNER = "I0000 port.cc:153] oneDNN custom operations are on. You may see slightly different numerical results"


def test_filtered_stderr_drops_the_banners_and_passes_the_rest(capfd):
    with filtered_stderr():
        os.write(2, f"{BANNER}\nsomething the user must see\n".encode())  # file descriptor 2, as C++ writes it
        print("a Python warning", file=sys.stderr)
    err = capfd.readouterr().err
    assert "something the user must see" in err and "a Python warning" in err
    assert not any(b in err for b in BANNERS)
    os.write(2, f"{BANNER}\n".encode())  # outside the block, stderr is stderr again
    assert BANNER in capfd.readouterr().err


def test_filtered_stderr_restores_stderr_when_the_block_raises(capfd):
    try:
        with filtered_stderr():
            os.write(2, b"before the error\n")
            raise RuntimeError("import failed")
    except RuntimeError:
        pass
    os.write(2, b"after\n")
    err = capfd.readouterr().err
    assert "before the error" in err and "after" in err


def _import_tensorflow(quiet: bool) -> str:
    # oneDNN's kernels on: TensorFlow then prints its banner on any CPU, not only AVX-512 ones.
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    code = ("from dasr.cli.quiet import quiet_tensorflow_import; quiet_tensorflow_import(); " if quiet else "") + \
        "import keras; import tensorflow as tf; print(tf.constant(2.0).numpy())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "2.0"
    return out.stderr


def test_quiet_import_drops_tensorflows_banners():
    assert "oneDNN custom operations are on" in _import_tensorflow(quiet=False)  # the banner exists here
    assert not any(b in _import_tensorflow(quiet=True) for b in BANNERS)


@pytest.mark.parametrize("debug", [False, True])
def test_a_dasr_command_starts_without_tensorflows_banners_unless_debugging(tmp_path, debug):
    Image.new("RGB", (48, 40), (120, 30, 200)).save(tmp_path / "a.png")
    env = {**subprocess_env(tmp_path / "home"), "TF_ENABLE_ONEDNN_OPTS": "1", "KERAS_BACKEND": "tensorflow"}
    args = ["--debug"] * debug + ["classify", "--weights", "random", str(tmp_path / "a.png")]
    out = subprocess.run([sys.executable, "-m", "dasr.cli", *args], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert "a.png" in out.stdout
    # --debug: TensorFlow's own logs, as it prints them.
    assert ("oneDNN custom operations are on" in out.stderr) == debug, out.stderr
    if not debug:
        assert not any(b in out.stderr for b in BANNERS), out.stderr
