"""The copy-paste benchmark: placements, pixels, determinism, the two paste modes, the loader, errors.

Tiny synthetic sources: an instance-track folder whose frames are green with the instance's box
filled in red (so every crop is constant red), and a paris-landmarks folder of constant scenes,
each of its own colour (so every pixel of a build tells where it came from). Sizes 64-120 px.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from PIL import Image

from dasr.errors import InputError
from dasr.eval import datasets as D
from dasr.eval.datasets import copy_paste as CP
from dasr.eval.pca_source import pca_source
from dasr.experiments.benchmarks import check_datasets, resolve_benchmarks
from dasr.experiments.config import load_config

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
RED, GREEN = (220, 30, 30), (20, 160, 40)
# instance -> (frame width, height, box): a mid-size box, a tiny one (the upscale cap binds), a wide one (fit binds)
INSTANCES = {"a": (100, 80, (30, 20, 60, 44)), "b": (100, 80, (40, 40, 48, 46)), "c": (100, 80, (5, 30, 95, 40))}
REFS = 5
SCENE_SIZES = [(64, 64), (120, 90), (96, 72), (80, 120), (70, 100), (110, 64)]
N_SCENES = 12


def scene_colour(k: int) -> tuple[int, int, int]:
    return (10 + 19 * k, 90 + 7 * k, 200 - 11 * k)


def save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("sources")
    track, scenes = root / "instance-track", root / "paris-landmarks"
    rows, gt = ["image,instance,role,width,height,x1,y1,x2,y2"], []
    for name, (w, h, (x1, y1, x2, y2)) in INSTANCES.items():
        images = [f"images/{name}/{name}_{i}.png" for i in range(REFS + 1)]
        for i, image in enumerate(images):
            frame = np.full((h, w, 3), GREEN, np.uint8)
            dx = i % 3  # the object moves a little from frame to frame
            frame[y1:y2, x1 + dx:x2 + dx] = RED
            save(track / image, frame)
            rows.append(f"{image},{name},{'query' if i == 0 else 'reference'},{w},{h},{x1 + dx},{y1},{x2 + dx},{y2}")
        gt.append(f"{images[0]} {REFS} " + " ".join(images[1:]))
    (track / "annotations.csv").write_text("\n".join(rows) + "\n")
    (track / "gt.txt").write_text("\n".join(gt) + "\n")
    rows = ["image,landmark,role,width,height"]
    for k in range(N_SCENES):
        w, h = SCENE_SIZES[k % len(SCENE_SIZES)]
        role = "query" if k >= 9 else "database"
        image = f"images/{role}/l{k % 2}/scene_{k}.png"
        save(scenes / image, np.full((h, w, 3), scene_colour(k), np.uint8))
        rows.append(f"{image},l{k % 2},{role},{w},{h}")
    (scenes / "annotations.csv").write_text("\n".join(rows) + "\n")
    return track, scenes


def plan(sources, seed=0, references=2, distractors=3) -> CP.CopyPastePlan:
    return CP.plan_copy_paste(*sources, seed=seed, references=references, distractors=distractors)


def build(sources, out: Path, mode="hard", seed=0, image_format="png", **kw) -> Path:
    CP.build_copy_paste(plan(sources, seed, **kw), out, mode=mode, image_format=image_format, progress=False)
    return out


def rows_of(root: Path) -> list[dict]:
    with open(root / "annotations.csv", newline="") as f:
        return list(csv.DictReader(f))


def pasted(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["role"] == "reference" and r["instance"] != CP.DISTRACTOR_INSTANCE]


def colour_of(scenes: Path, scene: str) -> np.ndarray:
    return read(scenes / scene)[0, 0]


def box_of(r: dict) -> tuple[int, int, int, int]:
    return tuple(int(float(r[k])) for k in ("x1", "y1", "x2", "y2"))  # type: ignore[return-value]


# (1) the pasted box is where the annotation says
def test_hard_paste_is_exactly_the_annotated_box(sources, tmp_path):
    root = build(sources, tmp_path / "cp")
    for r in pasted(rows_of(root)):
        img = read(root / r["image"])
        x1, y1, x2, y2 = box_of(r)
        assert img.shape[:2] == (int(r["height"]), int(r["width"]))
        inside = np.zeros(img.shape[:2], bool)
        inside[y1:y2, x1:x2] = True
        assert (img[inside] == RED).all()
        assert (img[~inside] == colour_of(sources[1], r["scene"])).all()


def test_feathered_paste_is_opaque_inside_and_blended_at_the_edge(sources, tmp_path):
    root = build(sources, tmp_path / "cpf", mode="feathered")
    for r in pasted(rows_of(root)):
        img = read(root / r["image"]).astype(int)
        x1, y1, x2, y2 = box_of(r)
        w, h = x2 - x1, y2 - y1
        scene = colour_of(sources[1], r["scene"]).astype(int)
        outside = np.ones(img.shape[:2], bool)
        outside[y1:y2, x1:x2] = False
        assert (img[outside] == scene).all()
        f = CP.feather_width(w, h)
        assert min(CP.MIN_FEATHER_PX, (min(w, h) + 1) // 2 - 0.5) <= f <= max(CP.MIN_FEATHER_PX, 0.08 * min(w, h))
        alpha = CP.feather_alpha(w, h, f)
        core = alpha == 1.0
        assert core.any() and (img[y1:y2, x1:x2][core] == RED).all()
        # the corner pixel: alpha 0.5 / f, strictly between the scene and the crop
        expected = np.rint(alpha[0, 0] * np.array(RED) + (1 - alpha[0, 0]) * scene)
        assert 0 < alpha[0, 0] < 1 and np.abs(img[y1, x1] - expected).max() <= 1
        assert (img[y1, x1] != RED).any() and (img[y1, x1] != scene).any()


def test_default_jpeg_build_keeps_the_paste_in_place(sources, tmp_path):
    root = tmp_path / "cpj"
    CP.build_copy_paste(plan(sources), root, progress=False)  # default: jpg
    r = next(r for r in pasted(rows_of(root)) if r["instance"] == "a")
    assert r["image"].endswith(".jpg") and Image.open(root / r["image"]).format == "JPEG"
    img = read(root / r["image"]).astype(int)
    x1, y1, x2, y2 = box_of(r)
    assert np.abs(img[(y1 + y2) // 2, (x1 + x2) // 2] - RED).max() < 12
    assert json.loads((root / "recipe.json").read_text())["jpeg_quality"] == 95


# (2) same seed -> identical build; another seed -> other placements
def test_same_seed_same_bytes_other_seed_other_placements(sources, tmp_path):
    one, two = build(sources, tmp_path / "one"), build(sources, tmp_path / "two")
    for name in ("annotations.csv", "gt.txt", "recipe.json", "README.md"):
        assert (one / name).read_bytes() == (two / name).read_bytes()
    for r in rows_of(one):
        assert np.array_equal(read(one / r["image"]), read(two / r["image"]))
    other = build(sources, tmp_path / "other", seed=1)
    a, b = pasted(rows_of(one)), pasted(rows_of(other))
    assert [box_of(r) for r in a] != [box_of(r) for r in b] and [r["scene"] for r in a] != [r["scene"] for r in b]
    assert json.loads((other / "recipe.json").read_text())["seed"] == 1


# (3) hard and feathered share their placements
def test_hard_and_feathered_are_paired(sources, tmp_path):
    hard, soft = build(sources, tmp_path / "h"), build(sources, tmp_path / "f", mode="feathered")
    assert (hard / "annotations.csv").read_bytes() == (soft / "annotations.csv").read_bytes()
    assert (hard / "gt.txt").read_bytes() == (soft / "gt.txt").read_bytes()
    rh, rf = (json.loads((p / "recipe.json").read_text()) for p in (hard, soft))
    assert (rh["mode"], rf["mode"], rf["benchmark"]) == ("hard", "feathered", "copy-paste-feathered")
    assert {k for k in rh if rh[k] != rf[k]} == {"mode", "benchmark", "feather"}
    rows = rows_of(hard)
    for r in rows:
        same = np.array_equal(read(hard / r["image"]), read(soft / r["image"]))
        assert same == (r not in pasted(rows))  # queries and distractors identical, every paste blended


# (4) scenes used once, never the query's frame; distractors outside gt.txt; evenly spaced references
def test_scenes_once_no_query_background_distractors_not_in_gt(sources, tmp_path):
    track, scenes = sources
    root = build(sources, tmp_path / "cp")
    rows = rows_of(root)
    used = [r["scene"] for r in rows if r["scene"]]
    assert len(used) == len(set(used)) == 3 * 2 + 3
    scene_images = {r["image"] for r in csv.DictReader(open(scenes / "annotations.csv"))}
    track_rows = {r["image"]: r for r in csv.DictReader(open(track / "annotations.csv"))}
    assert set(used) <= scene_images
    for r in pasted(rows):
        assert track_rows[r["source_image"]]["role"] == "reference"
        assert track_rows[r["source_image"]]["instance"] == r["instance"]
        # outside the box: the scene's colour, never the source frame's green background
        img = read(root / r["image"])
        assert not (img == GREEN).all(axis=2).any()
    # N = 2 of 5 references: the middle of each half, i.e. the 2nd and the 4th
    gt = {ln.split()[0]: ln.split()[2:] for ln in (root / "gt.txt").read_text().splitlines()}
    by_image = {r["image"]: r for r in rows}
    for query, refs in gt.items():
        inst = by_image[query]["instance"]
        assert [by_image[p]["source_image"] for p in refs] == [f"images/{inst}/{inst}_{i}.png" for i in (2, 4)]
        assert (root / query).read_bytes() == (track / by_image[query]["source_image"]).read_bytes()
    distractors = [r for r in rows if r["instance"] == CP.DISTRACTOR_INSTANCE]
    assert len(distractors) == 3 and all(r["role"] == "reference" for r in distractors)
    assert not {r["image"] for r in distractors} & {p for refs in gt.values() for p in refs}
    for r in distractors:
        assert box_of(r) == (0, 0, int(r["width"]), int(r["height"]))
        assert (read(root / r["image"]) == colour_of(scenes, r["scene"])).all()


# (5) the loader
def test_loader_gives_the_registered_benchmark(sources, tmp_path):
    root = build(sources, tmp_path / "cp")
    rows = rows_of(root)
    b = D.load_benchmark("copy-paste", root)
    assert (b.name, b.ap, b.root) == ("copy-paste", "instance", root)
    assert b.database == tuple(r["image"] for r in rows if r["role"] == "reference")
    assert len(b.database) == 9 and [q.name for q in b.queries] == ["a", "b", "c"]
    for q in b.queries:
        mine = [r for r in pasted(rows) if r["instance"] == q.name]
        assert [b.database[i] for i in q.positives] == [r["image"] for r in mine]
        assert [q.positive_boxes[i] for i in q.positives] == [tuple(map(float, box_of(r))) for r in mine]
        qrow = next(r for r in rows if r["image"] == q.image)
        assert qrow["role"] == "query" and q.image.startswith("images/queries/")
        assert q.box == tuple(float(qrow[k]) for k in ("x1", "y1", "x2", "y2"))
        w, h, (x1, y1, x2, y2) = INSTANCES[q.name]
        assert q.box == (float(x1), float(y1), float(x2), float(y2))  # the source query's own box
    soft = build(sources, tmp_path / "cpf", mode="feathered")
    assert D.load_benchmark("copy-paste-feathered", soft).name == "copy-paste-feathered"
    with pytest.raises(InputError, match=r"recipe\.json.*not a copy-paste build.*load it as copy-paste-feathered"):
        D.load_benchmark("copy-paste", soft)


def test_loader_rejects_malformed_files_naming_them(sources, tmp_path):
    root = build(sources, tmp_path / "cp")
    gt = (root / "gt.txt").read_text().splitlines()
    first = gt[0].split()
    (root / "gt.txt").write_text("\n".join([" ".join([first[0], "3", *first[2:]]), *gt[1:]]) + "\n")
    with pytest.raises(ValueError, match=r"gt\.txt, line 1: N=3 but 2"):
        D.load_benchmark("copy-paste", root)
    (root / "recipe.json").write_text("{not json")
    with pytest.raises(InputError, match=r"recipe\.json: not a valid JSON"):
        D.load_benchmark("copy-paste", root)
    (root / "recipe.json").unlink()
    with pytest.raises(D.DatasetMissingError, match=r"copy-paste.*recipe\.json"):
        D.load_benchmark("copy-paste", root)


# (6) errors
def test_errors_for_bad_parameters(sources, tmp_path):
    with pytest.raises(InputError, match=r"12 scenes, but .* = 2 x 3 \+ 7 = 13"):
        plan(sources, distractors=7)
    plan(sources, distractors=6)  # exactly enough
    with pytest.raises(InputError, match=r"instance 'a' has only 5 references .*N=6"):
        plan(sources, references=6)
    for kw in ({"seed": -1}, {"references": 0}, {"distractors": -2}, {"seed": 1.5}):
        with pytest.raises(InputError, match="must be an integer"):
            plan(sources, **kw)
    with pytest.raises(InputError, match="unknown paste mode"):
        CP.build_copy_paste(plan(sources), tmp_path / "x", mode="soft", progress=False)
    with pytest.raises(D.DatasetMissingError, match="paris-landmarks"):
        CP.plan_copy_paste(sources[0], tmp_path / "nowhere")


def test_existing_builds_are_kept_refused_or_forced_and_a_failed_build_leaves_nothing(sources, tmp_path):
    out = build(sources, tmp_path / "cp")
    assert CP.build_copy_paste(plan(sources), out, image_format="png", progress=False) is False  # same recipe: kept
    with pytest.raises(InputError, match="--force"):
        CP.build_copy_paste(plan(sources, seed=3), out, image_format="png", progress=False)
    assert json.loads((out / "recipe.json").read_text())["seed"] == 0
    assert CP.build_copy_paste(plan(sources, seed=3), out, image_format="png", force=True, progress=False)
    assert json.loads((out / "recipe.json").read_text())["seed"] == 3
    broken = plan(sources)
    (tmp_path / "gone").mkdir()
    missing = broken.placements[-1]
    moved = broken.scenes / missing.scene
    moved.rename(tmp_path / "gone" / "s.png")
    try:
        with pytest.raises(Exception, match="scene_"):
            CP.build_copy_paste(broken, tmp_path / "new", progress=False)
    finally:
        (tmp_path / "gone" / "s.png").rename(moved)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cp", "gone"]  # no half build, no temporary left


# (7) the scale constraints
def test_scale_constraints(sources):
    draws, limits = [], set()
    for seed in range(30):
        for p in plan(sources, seed=seed).placements:
            cw, ch = p.crop[2] - p.crop[0], p.crop[3] - p.crop[1]
            x1, y1, x2, y2 = p.box
            w, h = x2 - x1, y2 - y1
            sw, sh = p.scene_size
            share = w * h / (sw * sh)
            assert 0 <= x1 < x2 <= sw and 0 <= y1 < y2 <= sh
            assert CP.SHARE_RANGE[0] <= p.share_drawn <= CP.SHARE_RANGE[1]
            assert w <= CP.MAX_UPSCALE * cw and h <= CP.MAX_UPSCALE * ch and p.scale <= CP.MAX_UPSCALE
            assert abs(w - cw * p.scale) <= 0.5 and abs(h - ch * p.scale) <= 0.5  # aspect ratio kept
            slack = (w + h + 1) / (sw * sh)  # rounding of each side by at most half a pixel
            if p.limit == "share":
                assert abs(share - p.share_drawn) <= slack
            elif p.limit == "upscale":
                assert p.scale == CP.MAX_UPSCALE and share <= p.share_drawn + slack
            else:
                assert p.limit == "fit" and (w == sw or h == sh) and share <= p.share_drawn + slack
            draws.append(p.share_drawn)
            limits.add(p.limit)
    assert limits == {"share", "upscale", "fit"}
    # log-uniform: the median is near sqrt(0.02 * 0.25) = 0.071 (a uniform draw would give 0.135)
    assert 0.05 < float(np.median(draws)) < 0.1


def test_crop_rounds_the_box_outwards_and_clips_it():
    assert CP._crop_of((2.4, 3.6, 10.2, 11.0), (10, 12), "f") == (2, 3, 10, 11)
    with pytest.raises(InputError, match="covers no pixel"):
        CP._crop_of((20.0, 1.0, 30.0, 5.0), (10, 12), "f")


# where the benchmark names matter elsewhere
def test_registry_whitening_distractors_and_experiment():
    assert D.BENCHMARKS["copy-paste"] is CP.load_copy_paste
    assert D.default_root("copy-paste-feathered").name == "copy-paste-feathered"
    assert pca_source("copy-paste") == pca_source("copy-paste-feathered") == "instance-track"
    for source in ("paris-landmarks", "paris6k-subset", "copy-paste-feathered"):
        with pytest.raises(InputError, match=f"cannot be learned on {source}"):
            pca_source("copy-paste", source)
    cfg = load_config(EXPERIMENTS / "copy_paste.toml")
    assert (cfg["task"], cfg["pca"], cfg["compare"], cfg["plot"]["kind"]) == ("instance", "none", "", "recall-iou")
    assert [s.name for s in resolve_benchmarks(cfg)] == ["copy-paste", "copy-paste-feathered"]
    assert cfg["methods"] == ["dasr-star", "dasr", "fixed-box", "gap", "mac", "rmac", "crow", "gem"]
    for item in ("paris-landmarks", "instance-track"):
        scal = {**cfg, "task": "scalability", "distractors": item}
        with mock.patch("dasr.experiments.benchmarks.load_benchmark"), \
                pytest.raises(InputError, match=f"distractors of copy-paste cannot be {item}"):
            check_datasets(scal, resolve_benchmarks(scal))


def test_entry_script_builds_both_modes_and_refuses_a_different_build(sources, tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_copy_paste", EXPERIMENTS.parent / "data" / "make_copy_paste.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)  # type: ignore[union-attr]
    args = ["--instance-track", str(sources[0]), "--scenes", str(sources[1]), "--out", str(tmp_path),
            "--references", "2", "--distractors", "3", "--format", "png", "--quiet"]
    assert script.main(args) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy-paste", "copy-paste-feathered"]
    assert D.load_benchmark("copy-paste-feathered", tmp_path / "copy-paste-feathered").name == "copy-paste-feathered"
    assert script.main([*args, "--seed", "1", "--mode", "hard"]) == 2
    assert "--force" in capsys.readouterr().err
    assert script.main([*args, "--seed", "1", "--mode", "hard", "--force"]) == 0
    assert json.loads((tmp_path / "copy-paste" / "recipe.json").read_text())["seed"] == 1
