"""End-to-end happy paths of the ``dasr`` command on an untrained network (``--weights random``).

Commands run in-process through ``dasr.cli.main`` (fixture ``dasr_cli``, extractors cached);
one test runs the real console entry point in a subprocess.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import FAST
from dasr.io.images import load_image
from dasr.features.whitening import whitening_files, whitening_path
from dasr.store import RegionStore, skipped_path

SUMMARY = re.compile(r"^(\d+) extracted, (\d+) already done, (\d+) skipped, (\d+) without any region$", re.M)


def extract(dasr_cli, images: Path, out: Path, *extra: str) -> RegionStore:
    rc, stdout, stderr = dasr_cli("extract", images, "--out", out, *FAST, "--quiet", *extra)
    assert rc == 0, stderr
    assert SUMMARY.search(stdout), stdout
    return RegionStore.open(out)


def search(dasr_cli, index: Path, query: Path, *extra: str) -> dict:
    rc, stdout, stderr = dasr_cli("search", "--index", index, "--query", query, "--json", *extra)
    assert rc == 0, stderr
    return json.loads(stdout)


def box_arg(box) -> str:
    return ",".join(repr(float(v)) for v in box)


@pytest.fixture(scope="module")
def stores(tmp_path_factory, dasr_cli, sample_images, other_images) -> dict[str, Path]:
    """The sample collection and the other one, extracted with --method dasr."""
    work = tmp_path_factory.mktemp("cli-stores")
    extract(dasr_cli, sample_images, work / "s.h5", "--method", "dasr")
    extract(dasr_cli, other_images, work / "other.h5", "--method", "dasr")
    return {"index": work / "s.h5", "other": work / "other.h5"}


# ----------------------------------------------------------------------------- detect
def test_detect_json_and_figure(tmp_path, dasr_cli, sample_images) -> None:
    # A 240 x 180 image: in network-input pixels (max side 64) no coordinate could exceed 64.
    big = tmp_path / "big.jpg"
    Image.fromarray(np.kron(load_image(sample_images / "img00.jpg"), np.ones((2, 2, 1), np.uint8))
                    ).resize((240, 180)).save(big, quality=95)
    rc, stdout, stderr = dasr_cli("detect", big, *FAST, "--json", tmp_path / "out.json",
                                  "--figure", tmp_path / "fig.png")
    assert rc == 0, stderr
    assert "wrote" in stdout
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["image"] == str(big)
    assert (result["width"], result["height"]) == (240, 180)
    assert result["method"] == "dasr-star"
    assert result["regions"], "the seeded random network finds regions on a textured image"
    boxes = np.array([r["box"] for r in result["regions"]])
    assert np.all(boxes[:, 0] < boxes[:, 2]) and np.all(boxes[:, 1] < boxes[:, 3])
    assert np.all(boxes >= 0) and np.all(boxes[:, [0, 2]] <= 240) and np.all(boxes[:, [1, 3]] <= 180)
    assert boxes.max() > 64, "boxes are in original image coordinates, not network-input ones"
    for r in result["regions"]:
        assert np.isfinite(r["score"]) and len(r["seed"]) == 2
        assert set(r["ellipse"]) == {"center", "axes", "angle"}
    fig = tmp_path / "fig.png"
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(fig) as im:
        assert im.size[0] > 0 and im.size[1] > 0


def test_detect_json_to_stdout(dasr_cli, sample_images) -> None:
    rc, stdout, stderr = dasr_cli("detect", sample_images / "img01.png", sample_images / "img02.jpg",
                                  *FAST, "--method", "dasr", "--json", "-")
    assert rc == 0, stderr
    results = json.loads(stdout)
    assert [Path(r["image"]).name for r in results] == ["img01.png", "img02.jpg"]
    assert all(r["method"] == "dasr" for r in results)


# ----------------------------------------------------------------------------- extract + search
def test_extract_store_contents(stores, sample_images) -> None:
    store = RegionStore.open(stores["index"])
    assert store.images == sorted(p.name for p in sample_images.iterdir())
    assert Path(store.root).resolve() == sample_images.resolve()
    assert store.config["method"] == "dasr" and store.config["weights"] == "random"
    assert store.config["max_side"] == 64
    for i, name in enumerate(store.images):
        h, w = load_image(sample_images / name).shape[:2]
        assert tuple(store.sizes[i]) == (w, h)
        boxes = store.regions_of(i)["boxes"]
        assert np.all(boxes >= -1e-3) and np.all(boxes[:, [0, 2]] <= w + 1e-3) and np.all(boxes[:, [1, 3]] <= h + 1e-3)
    assert len(store.region_image) >= len(store)
    assert store.arrays["features"].shape[1] == 2048  # conv5_block1_out
    assert not skipped_path(stores["index"]).exists()


@pytest.mark.slow
def test_search_in_a_new_process_uses_the_index_network(stores, run_dasr, sample_images, tmp_path) -> None:
    # The real command in its own process (no cached extractor): it must rebuild the very
    # network the index was extracted with (--weights random is seeded), so a stored region's
    # box as the query matches that region exactly.
    store = RegionStore.open(stores["index"])
    i = store.index("img02.jpg")
    box = store.regions_of(i)["boxes"][0]
    rc, stdout, stderr = run_dasr("search", "--index", stores["index"], "--query", sample_images / "img02.jpg",
                                  "--box", box_arg(box), "--small-box", "--top", "3", "--pca", "none", "--json",
                                  "--figure", tmp_path / "panel.png")
    assert rc == 0, stderr
    result = json.loads(stdout[: stdout.rindex("}") + 1])
    assert stdout.rstrip().endswith(f"figure: {tmp_path / 'panel.png'}")
    first = result["results"][0]
    assert first["image"] == "img02.jpg"
    assert first["score"] == pytest.approx(1.0, abs=1e-5)
    assert (tmp_path / "panel.png").read_bytes()[:4] == b"\x89PNG"


def test_search_query_in_index_ranks_first(stores, dasr_cli, sample_images) -> None:
    query = sample_images / "img03.png"
    w, h = Image.open(query).size
    result = search(dasr_cli, stores["index"], query, "--box", f"0,0,{w},{h}", "--top", "3")
    rows = result["results"]
    assert [r["rank"] for r in rows] == [1, 2, 3]
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert all(-1 - 1e-5 <= s <= 1 + 1e-5 for s in scores)
    assert result["box"] == [0.0, 0.0, float(w), float(h)]
    # With the seeded random network, the whole-image box of an indexed image finds that image
    # first (its regions are the most similar ones).
    assert rows[0]["image"] == "img03.png"
    assert len({r["image"] for r in rows}) == 3


def test_search_stored_region_box_is_an_exact_match(stores, dasr_cli, sample_images) -> None:
    # A query box equal to a stored region of an indexed image pools the same cells of the same
    # feature map: similarity 1, that image first, that box returned.
    store = RegionStore.open(stores["index"])
    i = store.index("img04.jpg")
    box = store.regions_of(i)["boxes"][0]
    result = search(dasr_cli, stores["index"], sample_images / "img04.jpg", "--box", box_arg(box),
                    "--small-box", "--top", "6", "--pca", "none")
    first = result["results"][0]
    assert first["image"] == "img04.jpg"
    assert first["score"] == pytest.approx(1.0, abs=1e-5)
    assert np.allclose(first["box"], box, atol=0.06)  # the JSON rounds to 0.1 px
    assert len(result["results"]) == 6


# ----------------------------------------------------------------------------- whitening
def test_whiten_and_search_with_it(tmp_path, stores, dasr_cli, sample_images) -> None:
    index = tmp_path / "w.h5"
    shutil.copyfile(stores["index"], index)
    query = sample_images / "img00.jpg"
    plain = search(dasr_cli, index, query, "--top", "6")

    rc, stdout, stderr = dasr_cli("whiten", "--index", index, "--learn-from", stores["other"])
    assert rc == 0, stderr
    npz = whitening_path(index, Path(stores["other"]).stem, None)
    assert npz.parent == tmp_path and npz.name.startswith("w.h5.whitening-") and npz.is_file()
    assert str(npz) in stdout and "PCA-whitening" in stdout
    with np.load(npz, allow_pickle=False) as data:
        assert "projection" in data.files
        assert data["projection"].shape[0] == 2048

    whitened = search(dasr_cli, index, query, "--top", "6")  # --pca auto picks the npz up
    explicit = search(dasr_cli, index, query, "--top", "6", "--pca", npz)
    unwhitened = search(dasr_cli, index, query, "--top", "6", "--pca", "none")
    assert whitened == explicit
    assert unwhitened == plain
    assert [r["score"] for r in whitened["results"]] != [r["score"] for r in plain["results"]]
    for res in (whitened, plain):
        scores = [r["score"] for r in res["results"]]
        assert scores == sorted(scores, reverse=True) and all(abs(s) <= 1 + 1e-5 for s in scores)


def test_whiten_refuses_the_index_itself(stores, dasr_cli) -> None:
    rc, stdout, stderr = dasr_cli("whiten", "--index", stores["index"], "--learn-from", stores["index"])
    assert rc != 0
    assert "another collection" in stderr and stderr.count("\n") == 1
    assert not whitening_files(stores["index"])


def test_a_whitening_of_other_features_is_refused_and_one_without_record_warned(tmp_path, stores, dasr_cli,
                                                                                sample_images) -> None:
    """search and index build refuse a region whitening for a GAP store in one line; an unrecorded
    whitening is used, with a one-line warning."""
    regions_npz = tmp_path / "regions-whitening.npz"
    rc, _, stderr = dasr_cli("whiten", "--index", stores["index"], "--learn-from", stores["other"],
                             "--out", regions_npz)
    assert rc == 0, stderr
    gap = extract(dasr_cli, sample_images, tmp_path / "g.h5", "--method", "gap")
    query = sample_images / "img00.jpg"
    for argv in (("search", "--index", gap.path, "--query", query, "--pca", regions_npz),
                 ("index", "build", gap.path, "--kind", "pq", "--pca", regions_npz, "--out", tmp_path / "i.npz")):
        rc, stdout, stderr = dasr_cli(*argv)
        assert rc == 2 and stderr.count("\n") == 1, stderr
        assert stderr.startswith(f"dasr: error: {regions_npz}: learned on other features") and \
            'descriptor: whitening="region" store="gap"' in stderr, stderr
    assert not (tmp_path / "i.npz").exists()
    with np.load(regions_npz, allow_pickle=False) as data:
        np.savez(tmp_path / "unrecorded.npz", **{k: data[k] for k in data.files if k != "meta_json"},
                 meta_json=np.array("{}"))
    rc, stdout, stderr = dasr_cli("search", "--index", stores["index"], "--query", query, "--json",
                                  "--pca", tmp_path / "unrecorded.npz")
    assert rc == 0 and json.loads(stdout)["results"], stderr
    assert stderr == f"dasr: warning: {tmp_path / 'unrecorded.npz'}: records no configuration of the features " \
                     "it was learned on; used unchecked\n"


# ----------------------------------------------------------------------------- global baseline
def test_gap_baseline_extract_and_search(tmp_path, dasr_cli, sample_images) -> None:
    store = extract(dasr_cli, sample_images, tmp_path / "g.h5", "--method", "gap")
    assert store.config["method"] == "gap"
    # One whole-image "region" per image.
    assert np.array_equal(np.diff(store.offsets), np.ones(len(store)))
    for i in range(len(store)):
        w, h = store.sizes[i]
        assert np.allclose(store.regions_of(i)["boxes"], [[0, 0, w, h]])
    result = search(dasr_cli, tmp_path / "g.h5", sample_images / "img05.png", "--top", "3")
    rows = result["results"]
    assert len(rows) == 3
    assert rows[0]["image"] == "img05.png"
    assert rows[0]["score"] == pytest.approx(1.0, abs=1e-5)  # the same global descriptor
    assert rows[0]["score"] >= rows[1]["score"] >= rows[2]["score"]


# ----------------------------------------------------------------------------- shards + merge
def test_merge_of_shards_equals_one_run(tmp_path, stores, dasr_cli, sample_images) -> None:
    a = extract(dasr_cli, sample_images, tmp_path / "a.h5", "--method", "dasr", "--shard", "0/2")
    b = extract(dasr_cli, sample_images, tmp_path / "b.h5", "--method", "dasr", "--shard", "1/2")
    assert a.images == sorted(p.name for p in sample_images.iterdir())[0::2]
    assert b.images == sorted(p.name for p in sample_images.iterdir())[1::2]
    assert a.config["shard"] == "0/2" and b.config["shard"] == "1/2"

    rc, stdout, stderr = dasr_cli("merge", tmp_path / "a.h5", tmp_path / "b.h5", "--out", tmp_path / "m.h5")
    assert rc == 0, stderr
    merged, whole = RegionStore.open(tmp_path / "m.h5"), RegionStore.open(stores["index"])
    assert f"{len(whole)} images" in stdout
    assert "shard" not in merged.config
    assert merged.config == whole.config
    assert merged.images == whole.images
    assert np.array_equal(merged.orders, whole.orders)
    assert np.array_equal(merged.sizes, whole.sizes)
    assert np.array_equal(merged.offsets, whole.offsets)
    assert set(merged.arrays) == set(whole.arrays)
    for key in whole.arrays:
        np.testing.assert_allclose(merged.arrays[key], whole.arrays[key], rtol=0, atol=1e-6, err_msg=key)

    # Merging a shard twice is refused (an image would be stored twice).
    rc, _, stderr = dasr_cli("merge", tmp_path / "a.h5", tmp_path / "a.h5", "--out", tmp_path / "x.h5")
    assert rc != 0 and stderr.startswith("dasr: error:")
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.slow
def test_two_shard_processes_at_once_then_merge(tmp_path, stores, dasr_home, sample_images) -> None:
    # Two real `dasr extract --shard` processes running at the same time, then `dasr merge`:
    # the same store as one run.
    import os
    import subprocess
    import sys

    from conftest import subprocess_env

    procs = [subprocess.Popen([sys.executable, "-m", "dasr.cli", "extract", os.fspath(sample_images),
                               "--out", os.fspath(tmp_path / f"s{i}.h5"), *FAST, "--method", "dasr",
                               "--shard", f"{i}/2", "--quiet"],
                              env=subprocess_env(dasr_home), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode(errors="replace")[-2000:]
    from dasr.store import merge_stores

    merged = merge_stores([tmp_path / "s0.h5", tmp_path / "s1.h5"], tmp_path / "m.h5")
    whole = RegionStore.open(stores["index"])
    assert merged.images == whole.images
    for key in whole.arrays:
        np.testing.assert_allclose(merged.arrays[key], whole.arrays[key], rtol=0, atol=1e-6, err_msg=key)


def test_evaluate_passes_the_learning_sample_and_the_query_kind(dasr_cli, tmp_path, monkeypatch):
    """``--pca-subsample`` and ``--query`` reach :func:`dasr.eval.instance.evaluate` as given."""
    import dasr.eval.instance

    seen = {}

    class Stop(Exception):
        pass

    def fake_evaluate(extractor, benchmark, root, **kwargs):
        seen.update(kwargs, benchmark=benchmark)
        raise Stop

    monkeypatch.setattr(dasr.eval.instance, "evaluate", fake_evaluate)  # the command imports it when it runs
    with pytest.raises(Stop):
        dasr_cli("evaluate", "--benchmark", "paris6k-subset", *FAST, "--pca", "instance-track",
                 "--pca-subsample", "6", "--query", "image", "--out", tmp_path / "out")
    assert (seen["benchmark"], seen["pca_benchmark"], seen["pca_subsample"], seen["query"]) == \
        ("paris6k-subset", "instance-track", 6, "image")
