"""``dasr extract --engine ray`` on a local Ray: 20 small images, the seeded random network.

One Ray session and one pool of two warm workers serve the whole module (Ray starts in seconds,
a TensorFlow worker takes ~10 s to build its network and trace it): the runs of the module use
the pool, except the driver that is killed, a subprocess with workers of its own.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import ray

from conftest import REPO, write_collection
from store.store_helpers import assert_same_store
from dasr.distributed.plan import PlanMismatchError, finished, plan_path, shard_path
from dasr.distributed.pool import RayOptions, ShardPool
from dasr.distributed.ray_engine import extract_on_ray
from dasr.features.spec import ExtractorSpec
from dasr.store import RegionStore, read_skipped
from dasr.store.config import diff_configs
from dasr.store.extract import extract_collection

pytestmark = pytest.mark.timeout(300)

# Small and cheap: 64-pixel input, at most 3 seeds per image, float32 everywhere (bit for bit).
OPTIONS = {"weights": "random", "max_side": 64, "max_seeds": 3, "backprop_dtype": "float32"}
CLI_OPTIONS = ["--weights", "random", "--max-side", "64", "--max-seeds", "3", "--dtype", "float32"]
SPEC = ExtractorSpec.from_options(**OPTIONS)
# Fractional CPUs: the actors never hold every CPU of the machine.
POOL = RayOptions(workers=2, cpus_per_worker=0.5)
SIZES = [(64, 48), (48, 64), (80, 40), (56, 56), (72, 54)]


@pytest.fixture(scope="module")
def ray_address():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def pool(ray_address):
    with ShardPool(SPEC, POOL, 2) as workers:
        yield workers


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ray") / "images"
    write_collection(folder, seed=11, count=20, sizes=SIZES)
    (folder / "img07b.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")  # a bad image, mid-list
    return folder


@pytest.fixture(scope="module")
def reference(collection, tmp_path_factory) -> RegionStore:
    """The single-process engine's store of the same collection."""
    out = tmp_path_factory.mktemp("single") / "single.h5"
    summary = extract_collection(SPEC.build(), collection, out, progress=False)
    assert summary.extracted == 20 and len(summary.skipped) == 1
    return RegionStore.open(out)


@pytest.fixture(scope="module")
def ray_run(pool, reference, collection, tmp_path_factory):
    # The pool's workers build their networks while this process makes the reference store.
    out = tmp_path_factory.mktemp("out") / "ray.h5"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        summary = extract_on_ray(SPEC, collection, out, shard_size=6, progress=False, pool=pool)
    return out, summary, err.getvalue()


def test_ray_store_is_the_single_process_store_bit_for_bit(ray_run, reference):
    out, summary, _ = ray_run
    assert summary.failed == [] and summary.plan.shards == 4 and summary.plan.images == 21
    assert sorted(r.shard for r in summary.results) == [0, 1, 2, 3]
    assert len({r.pid for r in summary.results}) == 2, "two workers share the four shards"
    merged = RegionStore.open(out)
    assert_same_store(merged, reference)
    assert diff_configs(merged.config, reference.config) == []
    assert "shard" not in merged.config
    assert summary.merged.images == 20 and summary.merged.regions == len(reference.region_image)
    assert all(finished(shard_path(out, i, 4)) for i in range(4))


def test_a_bad_image_is_reported_and_skipped(ray_run, collection):
    out, summary, stderr = ray_run
    assert [image for image, _ in summary.skipped] == ["img07b.jpg"]
    assert f"skipped {collection / 'img07b.jpg'}: " in stderr
    assert list(read_skipped(out)) == ["img07b.jpg"]
    assert "img07b.jpg" not in RegionStore.open(out).images
    assert "20 extracted, 0 already done, 1 skipped" in summary.line()


def test_a_rerun_of_a_finished_run_reuses_every_shard(ray_run, collection, reference):
    out, _, _ = ray_run
    # No pool and no Ray needed: nothing is pending (a run that started Ray would take seconds).
    summary = extract_on_ray(SPEC, collection, out, shard_size=6, options=POOL, progress=False)
    assert summary.results == [] and summary.reused == 4 and summary.failed == []
    assert_same_store(RegionStore.open(out), reference)


def test_a_changed_list_or_config_is_refused_naming_what_differs(ray_run, collection):
    out, _, _ = ray_run
    plan_before = plan_path(out).read_bytes()
    with pytest.raises(PlanMismatchError, match=r"image list: stored 21 images .* requested 15 images"):
        extract_on_ray(SPEC, collection, out, shard_size=6, limit=15, options=POOL, progress=False)
    with pytest.raises(PlanMismatchError, match=r"tau: stored=0\.1 requested=0\.3") as err:
        extract_on_ray(SPEC.replace(tau=0.3), collection, out, shard_size=6, options=POOL, progress=False)
    assert "image list" not in str(err.value)
    with pytest.raises(PlanMismatchError, match="shard_size: stored=6 requested=5"):
        extract_on_ray(SPEC, collection, out, shard_size=5, options=POOL, progress=False)
    assert plan_path(out).read_bytes() == plan_before


def _running_a_shard(pids: list[int]) -> list[int]:
    """Those of ``pids`` now inside ``ShardWorker.run`` (Ray's process title of a busy actor)."""
    found = []
    for pid in pids:
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read().startswith(b"ray::ShardWorker.run"):
                    found.append(pid)
    return found


def test_a_killed_driver_is_resumed_by_the_rerun(ray_address, pool, collection, reference, tmp_path):
    out = tmp_path / "killed.h5"
    command = [sys.executable, "-m", "dasr.cli", "extract", str(collection), "--out", str(out), *CLI_OPTIONS,
               "--engine", "ray", "--ray-address", ray_address, "--shard-size", "3", "--workers", "1",
               "--cpus-per-worker", "0.5", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    driver = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 200
    try:
        while not any(finished(shard_path(out, i, 7)) for i in range(7)):
            assert driver.poll() is None, driver.stdout.read().decode(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "no shard finished in time"
            time.sleep(0.2)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    done = [i for i in range(7) if finished(shard_path(out, i, 7))]
    assert 0 < len(done) < 7 and not out.exists(), "killed after one shard, before the merge"
    summary = extract_on_ray(SPEC, collection, out, shard_size=3, progress=False, pool=pool)
    assert summary.failed == []
    rerun = {r.shard for r in summary.results}
    assert not set(done) & rerun, "finished shards are not run again"
    assert summary.reused + len(rerun) == 7 and summary.reused >= len(done)
    assert_same_store(RegionStore.open(out), reference)


def test_a_killed_worker_is_restarted_and_its_shard_retried(pool, collection, reference, tmp_path):
    out = tmp_path / "worker.h5"
    outcome: dict = {}

    def run():
        try:
            outcome["summary"] = extract_on_ray(SPEC, collection, out, shard_size=11, progress=False, pool=pool)
        except BaseException as exc:  # handed to the test thread
            outcome["error"] = exc

    workers = [pid for _, pid, _ in ray.get([actor.where.remote() for actor in pool.actors])]
    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 60
    while not (pids := _running_a_shard(workers)):
        assert thread.is_alive() and time.monotonic() < deadline, outcome
        time.sleep(0.02)
    time.sleep(0.3)  # inside the shard (11 images: seconds)
    os.kill(pids[0], signal.SIGKILL)
    thread.join(240)
    assert not thread.is_alive() and "error" not in outcome, outcome.get("error")
    summary = outcome["summary"]
    assert summary.failed == [] and sorted(r.shard for r in summary.results) == [0, 1]
    assert pids[0] not in {r.pid for r in summary.results}, "the killed process finished nothing"
    assert_same_store(RegionStore.open(out), reference)


def test_a_failed_shard_loses_no_other_and_the_rerun_retries_it(pool, collection, reference, tmp_path):
    out = tmp_path / "failed.h5"
    shard_path(out, 1, 4).mkdir(parents=True)  # a folder where shard 1's store goes: its writer fails
    summary = extract_on_ray(SPEC, collection, out, shard_size=6, progress=False, pool=pool)
    [failed] = summary.failed
    assert failed.shard == 1 and failed.user_error
    assert "Traceback" in failed.error and "StoreError" in failed.error and str(shard_path(out, 1, 4)) in failed.error
    assert {r.shard for r in summary.results if r.ok} == {0, 2, 3}
    assert summary.merged.images == 15, "the three finished shards are merged (shard 1 holds 5 images)"
    shard_path(out, 1, 4).rmdir()
    again = extract_on_ray(SPEC, collection, out, shard_size=6, progress=False, pool=pool)
    assert [r.shard for r in again.results] == [1] and again.failed == [] and again.reused == 3
    assert_same_store(RegionStore.open(out), reference)


def test_the_command_line_refuses_a_changed_run_with_one_line(ray_run, collection, dasr_cli):
    out, _, _ = ray_run
    plan_before = plan_path(out).read_bytes()
    rc, _, err = dasr_cli("extract", str(collection), "--out", str(out), *CLI_OPTIONS, "--tau", "0.3",
                          "--engine", "ray", "--shard-size", "6")
    assert rc == 2 and err.count("\n") == 1 and "tau: stored=0.1 requested=0.3" in err, err
    rc, _, err = dasr_cli("extract", str(collection), "--out", str(out), *CLI_OPTIONS, "--engine", "ray",
                          "--shard", "0/2")
    assert rc == 2 and "--shard is for the local engine" in err, err
    assert plan_path(out).read_bytes() == plan_before


def test_the_driver_keeps_its_own_print(ray_run):
    # Last, after every Ray run of the module: Ray's progress-bar manager would have replaced
    # builtins.print process-wide (every later test's print) unless told not to.
    import builtins

    assert builtins.print.__module__ == "builtins"
