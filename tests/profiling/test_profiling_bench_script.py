"""benchmarks/bench.py end to end: its report on a tiny random network, and failing loudly."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from conftest import REPO, subprocess_env

BENCH = REPO / "benchmarks" / "bench.py"
# An untrained VGG-16 (traced several times faster than ResNet-50) at 64 pixels, a small matmul
# and a small search: every section runs, in minutes on a busy 2-core machine.
TINY = ("--weights", "random", "--backbone", "vgg16", "--max-side", "64", "--matmul-n", "128", "--regions", "2000",
        "--dim", "32", "--queries", "5")


def run_bench(*args, home, timeout=900, backend=None):
    env = {**subprocess_env(home), **({"KERAS_BACKEND": backend} if backend else {})}
    return subprocess.run([sys.executable, str(BENCH), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=REPO)


@pytest.mark.slow
def test_quick_run_reports_every_section(sample_images, tmp_path):
    """Both backprop dtypes on whichever CPU runs it (bfloat16 forced: native or emulated), on
    JAX where TensorFlow has no bfloat16 convolution (oneDNN limited below AVX512_CORE)."""
    from dasr.model.device import bf16_unavailable

    out = tmp_path / "bench.json"
    proc = run_bench("--quick", *TINY, "--dtype", "bfloat16", "--images", sample_images, "--out", out,
                     home=tmp_path, backend="jax" if bf16_unavailable() else None)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert {"meta", "startup", "floor", "images", "search", "memory", "table"} <= set(data)
    assert data["startup"]["--version"]["best_s"] > 0 and data["startup"]["merge --help"]["runs"] == 3
    assert data["meta"]["complete"] is True
    assert data["floor"]["float32"]["gflops"] > 0
    assert data["meta"]["floor_framework"] == data["meta"]["backend"]  # the floor of the pipeline's own kernels
    im = data["images"]
    assert len(im["per_image"]) == 2 and im["weights"] == "random"
    s = im["summary"]
    assert s["flop_shape_ok"] is True  # the FLOP count's shapes are the network's
    assert s["forward_s"]["min"] > 0 and s["forward_gflop_per_image"] > 0
    assert im["dtypes"] == ["float32", "bfloat16"] and im["pipeline_dtype"] == "bfloat16"
    for dtype in ("float32", "bfloat16"):
        assert s["backprop"][dtype]["per_seed_s"] > 0 and s["backprop"][dtype]["gflop_per_seed"] > 0
        assert data["floor"][dtype]["gflops"] > 0
    assert s["bf16_vs_f32_iou"]["seeds"] >= 1 and 0 <= s["bf16_vs_f32_iou"]["min"] <= 1
    assert set(data["meta"]["cpu_flags"]) <= {"avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16",
                                              "amx_bf16", "amx_tile"}
    for name in ("dasr", "dasr-star"):
        assert s["e2e"][name]["s"]["min"] > 0 and s["e2e"][name]["regions"]["min"] >= 1
    # one record per fast stride, each measured with its own backprop (not one printed twice)
    fast = s["fast"]
    assert sorted(fast) == ["16", "8"] and all(fast[k]["map_stride"] == int(k) for k in fast)
    assert s["backprop"]["float32"]["gflop_per_seed"] > fast["8"]["gflop_per_seed"] > fast["16"]["gflop_per_seed"]
    assert all(fast[k]["s"]["min"] > 0 and 0 <= fast[k]["iou_mean"] <= 1 for k in fast)
    assert 0 <= s["cascade"]["16"]["matched_iou_mean"] <= 1
    assert data["search"]["exact_ranking"]["qps"] > 0 and data["search"]["faiss_exact"]["qps"] > 0
    assert data["search"]["faiss_exact"]["top_k_agrees_with_exact"] == 1.0
    assert data["memory"]["maxrss_mib"] > 0
    md = out.with_suffix(".md").read_text()
    assert "| fast stop_stride=8 " in md and "| fast stop_stride=16 " in md and "exact ranking" in md


def test_missing_images_fail_with_a_traceback(tmp_path):
    proc = run_bench("--quick", *TINY, "--skip", "startup", "floor", "search", "--images", tmp_path / "nothing",
                     "--out", tmp_path / "b.json", home=tmp_path, timeout=300)
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "no such folder" in proc.stderr


def test_a_broken_pipeline_is_not_swallowed(sample_images, tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_script", BENCH)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)  # its dataclasses look their module up there
    spec.loader.exec_module(bench)

    def broken(self, acts, seeds, bp=None):
        raise RuntimeError("backprop broke")

    monkeypatch.setattr(bench.Extractor, "seed_maps", broken)
    out = tmp_path / "b.json"
    with pytest.raises(RuntimeError, match="backprop broke"):
        # no fast modes: the failure comes at the first warm-up backprop, seconds in
        bench.main(["--quick", *map(str, TINY), "--skip", "startup", "floor", "search",
                    "--fast-strides", "--cascade-strides", "--images", str(sample_images), "--out", str(out)])
    assert not out.exists()  # nothing reported as if it had been measured
