"""Boxes computed on the device with their maps (the GPU path) equal the NumPy path's.

``Extractor(boxes_on_device=True)`` is what a GPU gets by default; here it is forced on the CPU
and compared with the default CPU path (maps brought back, float64 NumPy moments) on an
untrained ResNet-50: the same seeds and regions, boxes to 1e-3 pixel, the same features.
"""

from __future__ import annotations

import numpy as np
import pytest

from dasr.features.extractor import Extractor
from dasr.model.backbone import build_backbone
from dasr.regions import RegionConfig


@pytest.fixture(scope="module")
def backbone():
    return build_backbone("resnet50", weights="random")


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(4)
    img = np.full((120, 200, 3), 80, np.uint8)
    img[10:70, 20:90] = rng.integers(0, 255, (60, 70, 3))
    img[60:115, 120:190] = rng.integers(90, 255, (55, 70, 3))
    return img


@pytest.mark.parametrize("method, rule, extra", [
    ("dasr-star", "paper", {}),
    ("dasr", "paper", {"weighted_moments": True, "tau": 0.3}),
    ("dasr-star", "authors", {"max_side": 256}),  # its peaks skip the border cells: a larger map
    ("dasr-star", "paper", {"cascade_stride": 8, "nms_iou": 0.3}),  # the cascade needs NMS
])
def test_device_boxes_equal_numpy_boxes(backbone, image, method, rule, extra) -> None:
    # seed_chunk 3: several chunks, the last one padded with zero seeds; no NMS: every seed's box.
    region = RegionConfig(method=method, backprop_dtype="float32", seed_chunk=3, rule=rule,
                          **{"max_side": 160, "nms_iou": None, **extra})
    on_host = Extractor(backbone, method, region, boxes_on_device=False)(image)
    on_device = Extractor(backbone, method, region, boxes_on_device=True)(image)
    assert len(on_host.regions) >= 2
    np.testing.assert_array_equal(on_device.regions.seeds, on_host.regions.seeds)
    np.testing.assert_allclose(on_device.regions.boxes, on_host.regions.boxes, atol=1e-3)
    np.testing.assert_allclose(on_device.regions.ellipses[:, :4], on_host.regions.ellipses[:, :4], atol=1e-3)
    np.testing.assert_allclose(on_device.regions.kept_fraction, on_host.regions.kept_fraction, atol=1e-6)
    np.testing.assert_allclose(on_device.features, on_host.features, rtol=1e-5, atol=1e-6)


def test_cpu_default_keeps_maps_on_host(backbone) -> None:
    # No GPU here: the default is today's path, whose stores are bit-identical to earlier ones.
    assert Extractor(backbone, "dasr-star", RegionConfig(max_side=64)).boxes_on_device is False


def test_figures_still_get_maps_on_device_path(backbone, image) -> None:
    ex = Extractor(backbone, "dasr", RegionConfig(method="dasr", max_side=128), boxes_on_device=True)
    out = ex(image, keep_maps=True)
    assert out.maps is not None and out.maps.shape[0] == len(out.regions)
