"""The per-image pipeline on an untrained ResNet-50 and small images."""

from __future__ import annotations

import numpy as np
import pytest

from dasr import pooling
from dasr.backbone import build_backbone
from dasr.extractor import Extractor, prepare_input
from dasr.regions import RegionConfig


@pytest.fixture(scope="module")
def backbone():
    return build_backbone("resnet50", weights=None)


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    img = np.full((96, 160, 3), 90, np.uint8)
    img[20:60, 30:80] = rng.integers(0, 255, (40, 50, 3))
    img[50:90, 100:150] = rng.integers(100, 255, (40, 50, 3))
    return img


def test_boxes_in_original_coordinates(backbone, image):
    ex = Extractor(backbone, "dasr-star", RegionConfig(max_side=128, backprop_dtype="float32"))
    out = ex(image, keep_maps=True)
    r = out.regions
    assert out.scale == pytest.approx(128 / 160)
    assert len(r) > 0 and out.features.shape == (len(r), 2048)  # conv5_block1_out of ResNet-50
    assert np.all(r.boxes[:, 0] >= 0) and np.all(r.boxes[:, 2] <= 160 + 1e-3)
    assert np.all(r.boxes[:, 1] >= 0) and np.all(r.boxes[:, 3] <= 96 + 1e-3)
    assert np.all(r.boxes[:, 2] > r.boxes[:, 0])
    assert out.maps.shape == (len(r), 77, 128)
    assert np.all(np.diff(r.scores) <= 0)  # NMS keeps regions by decreasing score


def test_features_are_box_pooled(backbone, image):
    ex = Extractor(backbone, "dasr", RegionConfig(method="dasr", nms_iou=None, max_side=128))
    out = ex(image)
    x, scale, _, acts = ex.forward(image)
    fmap = np.asarray(acts["conv5_block1_out"][0])
    cells = pooling.boxes_to_cells(out.regions.boxes * scale, 32, fmap.shape[:2])
    np.testing.assert_allclose(out.features, pooling.pool_regions(fmap, cells, "avg"), rtol=1e-5)
    box = tuple(float(v) for v in out.regions.boxes[0])
    np.testing.assert_allclose(ex.describe_box(image, box), out.features[0], rtol=1e-5)


def test_nms_reduces_dasr_star(backbone, image):
    none = Extractor(backbone, "dasr-star", RegionConfig(nms_iou=None, max_side=128))(image)
    some = Extractor(backbone, "dasr-star", RegionConfig(nms_iou=0.3, max_side=128))(image)
    assert 0 < len(some.regions) <= len(none.regions)


@pytest.mark.parametrize("method", ["gap", "mac", "rmac", "crow"])
def test_global_methods_give_one_whole_image_region(backbone, image, method):
    out = Extractor(backbone, method, RegionConfig(max_side=128))(image)
    assert len(out.regions) == 1 and out.features.shape == (1, 2048)
    np.testing.assert_allclose(out.regions.boxes[0], [0, 0, 160, 96])


def test_fixed_box_control_uses_seed_centres(backbone, image):
    ex = Extractor(backbone, "fixed-box", RegionConfig(max_side=128), fixed_box_side=64)
    out = ex(image)
    r = out.regions
    centres = np.stack([(r.boxes[:, 0] + r.boxes[:, 2]) / 2, (r.boxes[:, 1] + r.boxes[:, 3]) / 2], 1) * out.scale
    seeds = (r.seeds[:, ::-1] + 0.5) * 32
    inside = (r.boxes[:, 0] > 0) & (r.boxes[:, 1] > 0) & (r.boxes[:, 2] < 160) & (r.boxes[:, 3] < 96)
    np.testing.assert_allclose(centres[inside], seeds[inside], atol=1e-3)
    assert ex.config()["fixed_box_side"] == 64


def test_tiny_and_thin_images_are_padded(backbone):
    x, scale, size = prepare_input(np.zeros((2, 300, 3), np.uint8), 128)
    assert size == (128, 1) and x.shape[1:3] == (32, 128)
    out = Extractor(backbone, "dasr-star", RegionConfig(max_side=128))(np.full((1, 1, 3), 200, np.uint8))
    assert np.all(out.regions.boxes[:, 2] <= 1.0 + 1e-6)


def test_config_records_everything(backbone):
    cfg = Extractor(backbone, "dasr-star", RegionConfig(tau=0.2, backprop_dtype="float32")).config()
    for key in ("backbone", "weights", "method", "feature_layer", "pooling", "max_side", "tau", "nms_iou",
                "input_rule", "strided_conv", "stop_stride", "backprop_dtype", "dasr_version"):
        assert key in cfg
    assert cfg["tau"] == 0.2 and cfg["weights"] == "random" and cfg["backprop_dtype"] == "float32"
    assert "tau" not in Extractor(backbone, "gap").config()


def test_cascade_keeps_exact_regions_of_its_seeds(backbone, image):
    full = Extractor(backbone, "dasr-star", RegionConfig(nms_iou=None, max_side=128, backprop_dtype="float32"))(image)
    ex = Extractor(backbone, "dasr-star", RegionConfig(nms_iou=0.3, max_side=128, cascade_stride=16,
                                                       backprop_dtype="float32"))
    assert ex.coarse_bp.map_stride == 16 and ex.config()["cascade_stride"] == 16
    out = ex(image)
    assert 0 < len(out.regions) <= len(full.regions)
    row = {tuple(s): i for i, s in enumerate(full.regions.seeds.tolist())}
    for seed, box, feat in zip(out.regions.seeds.tolist(), out.regions.boxes, out.features):
        i = row[tuple(seed)]  # each cascade region is the full-map region of its seed
        np.testing.assert_allclose(box, full.regions.boxes[i], rtol=1e-6)
        np.testing.assert_allclose(feat, full.features[i], rtol=1e-5)
    assert "cascade_stride" not in Extractor(backbone, "dasr-star", RegionConfig(max_side=128)).config()
    with pytest.raises(ValueError, match="cascade_stride needs NMS"):
        RegionConfig(nms_iou=None, cascade_stride=16)
