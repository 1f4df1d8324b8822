"""End to end on real stores: a colour-statistics stand-in for the network, tiny painted images."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np

from dasr.experiments import run_experiment
from dasr.features.spec import ExtractorSpec
from dasr.regions import Regions

from experiments_helpers import fake_instance_track, fake_paris_landmarks, shipped_config_text, write_config


class ColourExtractor:
    """A stand-in for the network: regions = image quadrants, feature = colour statistics."""

    def __init__(self, method: str):
        self.method = method

    def config(self) -> dict:
        return {"backbone": "colour", "weights": "none", "method": self.method, "feature_layer": "rgb",
                "pooling": "avg", "max_side": 64, "dasr_version": "test"}

    def describe_box(self, image, box) -> np.ndarray:
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        crop = image[max(0, y1):max(y1 + 1, y2), max(0, x1):max(x1 + 1, x2)].reshape(-1, 3).astype(np.float32)
        return np.concatenate([crop.mean(0), crop.std(0) + 1.0, [crop.max(), crop.min() + 1.0]]).astype(np.float32)

    def __call__(self, image, keep_maps: bool = False):
        h, w = image.shape[:2]
        boxes = np.array([[0, 0, w, h]] if self.method in ("gap", "mac", "rmac", "crow") else
                         [[0, 0, w / 2, h / 2], [w / 2, 0, w, h / 2], [0, h / 2, w / 2, h], [w / 2, h / 2, w, h]],
                         np.float32)
        n = len(boxes)
        regions = Regions(boxes, np.ones(n, np.float32), np.zeros((n, 2), np.int32), np.zeros((n, 5), np.float32))
        return SimpleNamespace(regions=regions, features=np.stack([self.describe_box(image, b) for b in boxes]))


def _paint(root: Path, rel: str, colour, rng) -> None:
    img = np.clip(np.asarray(colour)[None, None, :] + rng.normal(0, 12, (48, 64, 3)), 0, 255).astype(np.uint8)
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / rel), img)


def test_end_to_end_with_real_stores(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    track = fake_instance_track(tmp_path / "track", instances=("a", "b", "c", "d"), refs=4)
    landmarks = fake_paris_landmarks(tmp_path / "pl", landmarks=("x", "y", "z"), db=4)
    for root, col in ((track, 1), (landmarks, 1)):
        colours = {}
        for line in (root / "annotations.csv").read_text().splitlines()[1:]:
            rel, group = line.split(",")[:2]
            colours.setdefault(group, rng.uniform(30, 220, 3))
            _paint(root, rel, colours[group], rng)
    monkeypatch.setattr(ExtractorSpec, "build", lambda spec: ColourExtractor(spec.method))
    entry = f'{{ name = "instance-track", root = "{track}", pca_root = "{landmarks}" }}'
    cfg = write_config(tmp_path, f'''name = "e2e"
compare = "table1"
methods = ["dasr-star", "gap"]
benchmarks = [{entry}]
bootstrap = {{ n_boot = 200 }}
''')
    out = run_experiment(cfg, [], quiet=True)
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert float(next(r for r in rows if r["cell"] == "dasr-star" and r["metric"] == "All")["ours"]) > 0.9
    assert (out / "runs" / "instance-track" / "dasr-star" / "results.json").is_file()
    assert (tmp_path / "work" / "instance-track").is_dir() and (tmp_path / "work" / "paris-landmarks").is_dir()
    # `make figures`: plots replotted, Fig. 6 panels drawn from the DASR* run's rankings
    figs = tmp_path / "figs.toml"
    figs.write_text(f'task = "figures"\nexperiments = ["exp"]\nout = "{tmp_path / "figs"}"\n'
                    '[gallery]\nqueries = 2\ntop = 3\n')
    index = (run_experiment(figs, [], quiet=True) / "results.md").read_text()
    panels = sorted((out / "runs" / "instance-track" / "dasr-star").glob("fig6-*.png"))
    assert len(panels) == 2 and all(p.name in index for p in panels)
    assert not list((out / "runs" / "instance-track" / "gap").glob("fig6-*.png"))

    # Table 3's flow on the shipped layout: VLAD over the stores, learned on instance-track.
    cfg3 = write_config(tmp_path, shipped_config_text("table3"))
    out3 = run_experiment(cfg3, [f'benchmarks=[{{ name = "paris-landmarks", root = "{landmarks}", '
                                   f'pca_benchmark = "instance-track", pca_root = "{track}" }}]',
                                   f"out={tmp_path / 'out3'}"], quiet=True)
    r3 = json.loads((out3 / "results.json").read_text())["entries"][0]["result"]
    assert r3["task"] == "image-search" and r3["queries"] == 3 and r3["mean"]["ap"] > 0.8
    # paris-landmarks' database and query images were extracted once, as instance-track's PCA source
    assert [p.name for p in (tmp_path / "work" / "paris-landmarks").glob("dasr-star-*/*.h5")] == ["pca-source.h5"]
