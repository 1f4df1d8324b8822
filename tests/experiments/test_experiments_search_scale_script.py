"""benchmarks/search_scale.py end to end on two tiny fake collections: a report, and a clean refusal.

Every run has TensorFlow, Keras and JAX made unimportable: the script searches finished stores and
never runs the network, so it must start (and run) on a machine without them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import REPO, refuse_imports, subprocess_env
from dasr.eval.datasets import load_benchmark

from experiments_helpers import fake_instance_track, fake_paris_landmarks, write_store

SCRIPT = REPO / "benchmarks" / "search_scale.py"
DIM = 32
REGIONS = 10  # per image


def _collection(root, bench, rng):
    """A store in which each query's relevant images hold two regions near a centre of its own
    (the other regions noise), and the queries: each its centre, a little moved."""
    centres = 3 * rng.normal(size=(len(bench.queries), DIM))
    feats = [rng.normal(size=(REGIONS, DIM)) for _ in bench.database]
    for centre, query in zip(centres, bench.queries):
        for i in query.positives:
            feats[i][:2] = centre + 0.05 * rng.normal(size=(2, DIM))
    root.mkdir(parents=True)
    write_store(root / "database.h5", list(bench.database), feats, {"method": "dasr-star"})
    np.savez(root / "queries.npz", names=np.array([q.name for q in bench.queries]),
             features=(centres + 0.05 * rng.normal(size=centres.shape)).astype(np.float32))
    return root


# The script run as __main__ with the network's frameworks unimportable.
WITHOUT_FRAMEWORKS = refuse_imports(("tensorflow", "keras", "jax")) + textwrap.dedent("""
    import runpy
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
""")


def _run(tmp_path, *args):
    return subprocess.run([sys.executable, "-c", WITHOUT_FRAMEWORKS, str(SCRIPT), *map(str, args)],
                          capture_output=True, text=True, env=subprocess_env(tmp_path / "home"), timeout=600,
                          cwd=REPO)


@pytest.fixture
def collections(tmp_path):
    rng = np.random.default_rng(0)
    track = fake_instance_track(tmp_path / "track", instances=("a", "b", "c", "d"))
    paris = fake_paris_landmarks(tmp_path / "paris", landmarks=("x", "y", "z"), db=4)
    it = _collection(tmp_path / "stores" / "it", load_benchmark("instance-track", track), rng)
    pl = _collection(tmp_path / "stores" / "pl", load_benchmark("paris-landmarks", paris), rng)
    return ["--data", track, "--store", it, "--subsample", 1, "--paris-data", paris, "--paris-store", pl,
            "--paris-subsample", 1]


@pytest.mark.slow
def test_a_small_run_reports_its_size(tmp_path, collections):
    out = tmp_path / "report"
    proc = _run(tmp_path, *collections, "--sizes", 10000, "--work", tmp_path / "work", "--out", out, "--dim", 16,
                "--components", 2, "--kind", "ivfpq", "--bytes-per-region", 16, "--nlist", 16, "--nprobe", 16,
                "--candidates", 300, "--threads", 1, "--build-threads", 1, "--curve", 1000)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    report = json.loads((out / "results.json").read_text())
    real = (12 + 12) * REGIONS
    assert report["setup"]["real_regions"] == real and report["setup"]["queries"] == 4 + 3
    size = report["sizes"]["10000"]
    assert size["regions"] == real + 10000
    # Every list probed: the index's candidates, re-ranked exactly, find the exact top regions.
    assert size["recall@100"] > 0.9
    # Each query's two planted regions in its three images: exact search ranks them first.
    assert report["setup"]["map@50_full_space"] == pytest.approx(1.0)
    assert size["map@50_exact"] == pytest.approx(1.0) and size["map@50_index"] == pytest.approx(1.0)
    assert set(size["exact_curve_map@50"]) == {"1000"}
    assert (out / "fig8.png").read_bytes()[:4] == b"\x89PNG"
    assert "| 10,000 |" in (out / "results.md").read_text()


def test_a_store_of_other_images_is_refused_in_one_line(tmp_path, collections):
    other = fake_instance_track(tmp_path / "other", instances=("a", "b", "c", "d"), refs=4)  # one more image each
    args = [str(a) for a in collections]
    args[args.index("--data") + 1] = str(other)
    proc = _run(tmp_path, *args, "--work", tmp_path / "work", "--out", tmp_path / "report")
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("search_scale: ") and "Traceback" not in proc.stderr
    assert "its images are not the benchmark's 16 database images" in last
    assert not (tmp_path / "report").exists()


def test_too_few_distractors_for_the_codebooks_are_refused_in_one_line(tmp_path, collections):
    proc = _run(tmp_path, *collections, "--sizes", 3000, "--work", tmp_path / "work", "--out", tmp_path / "report",
                "--dim", 16, "--components", 2, "--kind", "ivfpq", "--bytes-per-region", 16)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert last.startswith("search_scale: N=3,000: ivfpq: only 3240 vectors") and "larger --sizes" in last
