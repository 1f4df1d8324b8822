"""The library pieces the benchmark scripts stand on: matched IoU of two stores, and the
extractor's pre-NMS boxes (the one code path shared by the pipeline, bench.py and the τ sweep)."""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, textured_image
from dasr.features.spec import ExtractorSpec
from dasr.regions import activation_map, find_seeds


def load_script(name: str, monkeypatch):
    spec = importlib.util.spec_from_file_location(f"{name}_script", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


class FakeStore:
    """The two RegionStore methods region_agreement reads."""

    def __init__(self, boxes: dict[str, list]):
        self.names = sorted(boxes)
        self.boxes = [np.asarray(boxes[n], np.float32).reshape(-1, 4) for n in self.names]

    def index(self, name):
        return self.names.index(name)

    def regions_of(self, i):
        return {"boxes": self.boxes[i]}


def test_region_agreement_by_hand(monkeypatch):
    compare = load_script("compare_modes", monkeypatch)
    faithful = FakeStore({"a": [[0, 0, 10, 10], [20, 20, 30, 30]], "b": [[0, 0, 4, 4]], "c": []})
    other = FakeStore({"a": [[0, 0, 10, 5], [0, 0, 10, 10]], "b": [], "c": [[0, 0, 1, 1]]})
    got = compare.region_agreement(faithful, other, ["a", "b", "c"])
    # a: the first box is matched exactly (1.0), the second by nothing (0); b: no other region (0)
    assert got == compare.RegionAgreement(matched_iou=1 / 3, regions_faithful=1.0, regions_other=1.0, images=3)


@pytest.fixture(scope="module")
def extractor():
    return ExtractorSpec.from_options(method="dasr-star", backbone="vgg16", weights="random", max_side=64,
                                      nms_iou=None, backprop_dtype="float32").build()


def test_boxes_from_maps_is_what_the_pipeline_returns(extractor):
    img = textured_image(np.random.default_rng(3), 80, 60)
    ext = extractor(img, keep_maps=True)
    _, scale, size, acts = extractor.forward(img)
    seeds, _ = find_seeds(activation_map(np.asarray(acts[extractor.backbone.top_layer])), "dasr-star")
    boxes, _, kept = extractor.boxes_from_maps(extractor.seed_maps(acts, seeds), size)
    assert len(ext.regions) == int((kept > 0).sum()) > 0
    np.testing.assert_allclose(ext.regions.boxes, np.clip(boxes[kept > 0] / scale, 0, [80, 60, 80, 60]), rtol=1e-6)
    # another τ changes the boxes, τ = the configuration's does not
    same = extractor.boxes_from_maps(ext.maps, size, tau=extractor.region.tau)[0]
    wide = extractor.boxes_from_maps(ext.maps, size, tau=0.01)[0]
    np.testing.assert_array_equal(same, boxes[kept > 0])
    assert np.all(wide[:, 2] - wide[:, 0] >= same[:, 2] - same[:, 0]) and not np.array_equal(wide, same)


def test_retracing_times_each_new_shape_and_counts_the_collections_shapes(tmp_path, monkeypatch):
    retracing = load_script("retracing", monkeypatch)
    rng = np.random.default_rng(0)
    for folder, (w, h) in (("a", (80, 60)), ("b", (60, 80)), ("c", (80, 40))):
        (tmp_path / "images" / folder).mkdir(parents=True)
        for k in range(2):  # two images of each shape; the script times the first of each folder
            Image.fromarray(textured_image(rng, w, h)).save(tmp_path / "images" / folder / f"{k}.png")
    out = tmp_path / "retracing.json"
    assert retracing.main(["--images", str(tmp_path / "images"), "--n", "3", "--weights", "random", "--max-side", "64",
                           "--method", "dasr", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    summary = report["summary"]
    assert [r["input_shape"] for r in report["per_image"]] == [[48, 64], [64, 48], [32, 64]]
    assert (summary["collection_images"], summary["collection_distinct_shapes"]) == (6, 3)
    assert summary["every_collection_shape_timed"] is True
    extraction = sum(r["again_s"] for r in report["per_image"])
    assert summary["share_of_collection_extraction"] == pytest.approx(
        summary["tracing_s_after_the_first_shape"] / (6 * extraction / 3))
