"""The authors' resize (short side truncated, Pillow's bilinear) beside the project's."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dasr.io.images import resize_long_side
from dasr.io.resize import authors_size, resize_for_network, resize_truncate_bilinear


def test_the_short_side_is_truncated_not_rounded():
    # 200 * 256 / 300 = 170.67: the authors' code keeps 170, the project's rounding 171.
    assert authors_size(200, 300, 256) == (170, 256)
    assert resize_long_side(np.zeros((200, 300, 3), np.uint8), 256)[0].shape[:2] == (171, 256)
    assert authors_size(300, 200, 256) == (256, 170)  # portrait
    assert authors_size(100, 100, 64) == (64, 64)  # square: their else branch
    assert authors_size(1, 5000, 512) == (1, 512)  # never 0 rows


def test_truncate_bilinear_is_pillows_bilinear_at_that_size():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    out, scale = resize_truncate_bilinear(image, 256)
    want = np.asarray(Image.fromarray(image).resize((256, 170), Image.BILINEAR))
    np.testing.assert_array_equal(out, want)
    assert scale == pytest.approx(256 / 300)
    # Not OpenCV's area filter: the two differ on a noise image.
    assert np.abs(out[:, :, 0].astype(int) - resize_long_side(image, 256)[0][:170, :, 0].astype(int)).max() > 10
    # Enlarging too: the long side always becomes max_side, as in their code.
    assert resize_truncate_bilinear(image[:50, :60], 256)[0].shape == (213, 256, 3)


def test_resize_for_network_dispatches_by_rule():
    image = np.zeros((200, 300, 3), np.uint8)
    assert resize_for_network(image, 256, "round-area")[0].shape[:2] == (171, 256)
    assert resize_for_network(image, 256, "truncate-bilinear")[0].shape[:2] == (170, 256)
    with pytest.raises(ValueError, match="unknown resize rule"):
        resize_for_network(image, 256, "nearest")
