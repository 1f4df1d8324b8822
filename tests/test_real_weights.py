"""The few checks that need the real ImageNet weights (fetched once into the cache)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.weights


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from PIL import Image
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(data.chelsea()).save(folder / "chelsea.png")
    Image.fromarray(data.coffee()).save(folder / "coffee.png")
    return folder


def test_classify_cat_and_espresso(photos, capsys):
    from dasr.cli import main

    assert main(["classify", str(photos / "chelsea.png"), str(photos / "coffee.png")]) == 0
    out = capsys.readouterr().out.splitlines()
    cat_top1 = int(out[1].split()[0])
    coffee_top1 = int(out[7].split()[0])
    assert cat_top1 in (281, 282, 285), out[:3]
    assert coffee_top1 == 967, out[6:8]
    assert "espresso" in out[7]


def test_dasr_star_finds_both_objects_side_by_side():
    import cv2
    from skimage import data

    from dasr.backbone import build_backbone
    from dasr.extractor import Extractor

    left = cv2.resize(data.chelsea(), (400, 300))
    right = cv2.resize(data.coffee(), (400, 300))
    image = np.concatenate([left, right], axis=1)  # 800 x 300
    regions = Extractor(build_backbone("resnet50"), "dasr-star")(image).regions
    centres = (regions.boxes[:, 0] + regions.boxes[:, 2]) / 2
    assert (centres < 400).any() and (centres > 400).any()
    assert np.all(regions.boxes[:, 2] <= 800) and np.all(regions.boxes[:, 3] <= 300)
    widths = regions.boxes[:, 2] - regions.boxes[:, 0]
    assert np.all(widths > 0) and np.all(widths < 800)
