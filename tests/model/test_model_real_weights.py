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


# The objects of the side-by-side picture (x1, y1, x2, y2 in its 800 x 300 pixels, read off the
# picture): the cat's face (eyes, nose, mouth) in the left half, the cup on its saucer in the right.
CAT_FACE = (90, 50, 320, 290)
CUP_AND_SAUCER = (450, 10, 720, 290)


def test_dasr_star_finds_both_objects_side_by_side():
    """Each object holds at least 30% of DASR*'s region centres.

    Measured: ImageNet weights put 7 and 6 of 15 centres on the face and the cup; the seeded random
    network puts 3 of 22 on the face and 18 on the cup's side (its activations follow colour
    contrast, not objects), so this test fails with random weights.
    """
    import cv2
    from skimage import data

    from dasr.features.spec import ExtractorSpec

    left = cv2.resize(data.chelsea(), (400, 300))
    right = cv2.resize(data.coffee(), (400, 300))
    image = np.concatenate([left, right], axis=1)  # 800 x 300
    regions = ExtractorSpec(method="dasr-star").build()(image).regions
    assert np.all(regions.boxes[:, 2] <= 800) and np.all(regions.boxes[:, 3] <= 300)
    widths = regions.boxes[:, 2] - regions.boxes[:, 0]
    assert np.all(widths > 0) and np.all(widths < 800)
    cx = (regions.boxes[:, 0] + regions.boxes[:, 2]) / 2
    cy = (regions.boxes[:, 1] + regions.boxes[:, 3]) / 2
    for x1, y1, x2, y2 in (CAT_FACE, CUP_AND_SAUCER):
        inside = (cx >= x1) & (cx <= x2) & (cy >= y1) & (cy <= y2)
        assert inside.mean() >= 0.3, (inside.sum(), len(inside))
