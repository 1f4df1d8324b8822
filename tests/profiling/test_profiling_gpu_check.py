"""benchmarks/gpu_check.py on this CPU: the bundle (TensorFlow), then the check on JAX, which runs
the library's own collection loop without TensorFlow, and matches its boxes with the bundle's."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, subprocess_env

SCRIPT = REPO / "benchmarks" / "gpu_check.py"
# TensorFlow made unimportable (as on the GPU machine), every attempt to import it counted and
# reported at exit (Keras tries whenever TensorFlow is installed: a JAX process must not), then
# the script as __main__.
WITHOUT_TENSORFLOW = ("import atexit, runpy, sys\n"
                      "tried = []\n"
                      "class Refuse:\n"
                      "    def find_spec(self, name, path=None, target=None):\n"
                      "        if name.split('.')[0] == 'tensorflow':\n"
                      "            tried.append(name)\n"
                      "            raise ImportError('tensorflow is made unimportable by the test')\n"
                      "sys.meta_path.insert(0, Refuse())\n"
                      "atexit.register(lambda: print('tensorflow import attempts:', len(tried), file=sys.stderr))\n"
                      "sys.argv = ['gpu_check.py', *sys.argv[1:]]\n"
                      f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n")


@pytest.mark.slow
def test_the_check_runs_the_library_on_jax_and_matches_the_cpu_boxes(tmp_path):
    env = {**subprocess_env(tmp_path / "home"), "KERAS_BACKEND": "tensorflow"}
    bundle, out = tmp_path / "bundle", tmp_path / "out"
    made = subprocess.run([sys.executable, str(SCRIPT), "bundle", str(bundle), "--n", "3", "--max-side", "64",
                           "--weights", "random", "--seed-chunk", "8"], env=env, capture_output=True, text=True,
                          timeout=600, cwd=REPO)
    assert made.returncode == 0, made.stderr[-3000:]
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert len(manifest["images"]) == 3 and all((bundle / "images" / n).is_file() for n in manifest["images"])
    jax_env = {**env, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    args = ["check", str(bundle), str(out), "--smoke", "--images-per-step", "2", "--more-steps", "3",
            "--matmul-n", "64", "--matmul-chain", "1"]
    ran = subprocess.run([sys.executable, "-c", WITHOUT_TENSORFLOW, *args], env=jax_env, capture_output=True,
                         text=True, timeout=900, cwd=REPO)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "tensorflow import attempts: 0" in ran.stderr
    report = json.loads((out / "gpu-check.json").read_text())
    assert report["modules"]["tensorflow"] is False
    assert report["peak"]["bfloat16"]["gflops"] > 0 and report["peak"]["float32"]["gflops"] > 0
    rows = {(r["method"], r["dtype"], r["images_per_step"]): r for r in report["rows"]}
    assert sorted(rows) == sorted([(m, "bfloat16", s) for m in ("dasr", "dasr-star") for s in (2, 3)]
                                  + [(m, "float32", 2) for m in ("dasr", "dasr-star")])
    for (method, dtype, _), r in rows.items():
        assert r["images"] == 3 and r["images_per_s"] > 0 and r["reference_boxes"] >= 3
        # JAX against TensorFlow, both float32: round-off moves a box by far less than a pixel at 64 px
        assert r["matched_iou_min"] >= (0.99 if dtype == "float32" else 0.9), r
        assert r["matmul_precision"] == ("highest" if dtype == "float32" else "default")
    assert os.path.getsize(out / "gpu-check.json") < 2**20
