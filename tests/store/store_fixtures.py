"""Fixtures of the store tests that extract (imported by them): one seeded random network, four small images."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import write_collection
from dasr.features.extractor import Extractor
from dasr.model.backbone import build_backbone
from dasr.regions import RegionConfig


@pytest.fixture(scope="module")
def backbone():
    return build_backbone("resnet50", weights="random")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("store") / "images"
    write_collection(folder, seed=5, count=4, sizes=[(96, 72), (72, 96), (120, 60), (100, 75)])
    return folder


@pytest.fixture(scope="module")
def make():
    """``make(backbone, beta=0.3, layer=None, tau=0.1, method="dasr-star")`` -> a 64-px extractor."""
    def build(backbone, beta=0.3, layer=None, tau=0.1, method="dasr-star"):
        region = RegionConfig(max_side=64, nms_iou=beta, tau=tau, backprop_dtype="float32")
        return Extractor(backbone, method, region, feature_layer=layer)

    return build
