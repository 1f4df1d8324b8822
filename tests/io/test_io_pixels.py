"""Tests for dasr.io.pixels: the strip conversion equals a whole-image conversion, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

from dasr.io import pixels
from dasr.io.images import load_image
from dasr.io.pixels import decode_need, orient, to_rgb_uint8


def _whole_image_reference(img: Image.Image) -> np.ndarray:
    """The conversion done on the whole image at once (the rules of dasr.io.images)."""
    mode = img.mode
    if mode.startswith("I;16") or mode == "I" or mode == "F":
        values = np.asarray(img, dtype=np.float64)
        finite = values[np.isfinite(values)]
        if mode != "F" and finite.min() >= 0 and finite.max() <= 65535:
            gray = ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)
        elif mode == "F" and finite.size and finite.min() >= 0 and finite.max() <= 1:
            scaled = np.nan_to_num(np.asarray(img, np.float32) * 255.0, nan=0.0, posinf=255.0, neginf=0.0)
            gray = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
        elif not finite.size:
            gray = np.zeros(values.shape, np.uint8)
        else:
            lo, hi = finite.min(), finite.max()
            scaled = (values - lo) * (255.0 / (hi - lo)) if hi > lo else np.full(values.shape, lo)
            scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
            gray = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.has_transparency_data:
        rgba = np.asarray(img.convert("RGBA")).astype(np.uint32)
        return ((rgba[..., :3] * rgba[..., 3:] + 255 * (255 - rgba[..., 3:]) + 127) // 255).astype(np.uint8)
    return np.asarray(img.convert("RGB"))


def _images() -> dict[str, Image.Image]:
    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, (23, 17, 4), dtype=np.uint8)
    plane = rng.integers(0, 256, (23, 17), dtype=np.uint8)
    floats = rng.normal(0, 5, (23, 17)).astype(np.float32)
    floats[3, 4], floats[5, 6], floats[7, 8] = np.nan, np.inf, -np.inf
    palette = Image.fromarray(plane // 4, "L").convert("P")
    palette.info["transparency"] = 3
    rgb_trns = Image.fromarray(rgba[..., :3], "RGB")
    rgb_trns.info["transparency"] = tuple(int(v) for v in rgba[0, 0, :3])
    return {
        "RGBA": Image.fromarray(rgba, "RGBA"),
        "LA": Image.fromarray(rgba, "RGBA").convert("LA"),
        "P+trns": palette,
        "RGB+trns": rgb_trns,
        "CMYK": Image.frombytes("CMYK", (17, 23), rgba.tobytes()),
        "1": Image.fromarray(plane > 128),
        "I;16": Image.fromarray(plane.astype(np.uint16) * 250),
        "I in 16 bit": Image.fromarray(plane.astype(np.int32) * 200, "I"),
        "I negative": Image.fromarray(plane.astype(np.int32) * -1000 + 7, "I"),
        "F unit": Image.fromarray(plane.astype(np.float32) / 255, "F"),
        "F stretched with nan and inf": Image.fromarray(floats, "F"),
        "F constant": Image.fromarray(np.full((23, 17), 42.0, np.float32), "F"),
        "F all nan": Image.fromarray(np.full((23, 17), np.nan, np.float32), "F"),
    }


@pytest.mark.parametrize("name", list(_images()))
@pytest.mark.parametrize("strip_pixels", [1, 40, 1 << 20])
def test_strips_equal_the_whole_image(monkeypatch, name: str, strip_pixels: int) -> None:
    # strip_pixels = 1 gives one row per strip, 40 two rows (17 px wide), 1 << 20 one strip.
    monkeypatch.setattr(pixels, "STRIP_PIXELS", strip_pixels)
    img = _images()[name]
    got = to_rgb_uint8(img)
    assert got.dtype == np.uint8 and got.shape == (23, 17, 3) and got.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(got, _whole_image_reference(img))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_equals_pillow_exif_transpose(tmp_path, orientation: int) -> None:
    rng = np.random.default_rng(orientation)
    stored = rng.integers(0, 256, (5, 8, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(tmp_path / "o.png", exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "o.png")).convert("RGB"))
    got = load_image(tmp_path / "o.png")
    np.testing.assert_array_equal(got, expected)
    assert got.flags["C_CONTIGUOUS"] and got.flags["WRITEABLE"]
    if orientation in (5, 6, 7, 8):
        assert got.shape == (8, 5, 3)
    np.testing.assert_array_equal(orient(stored, orientation), expected)


def test_decode_need_counts_the_stored_image_and_the_result() -> None:
    slack = decode_need(0, 0, "L", "PNG")
    assert decode_need(1000, 1000, "RGBA", "PNG") == 7_000_000 + slack
    assert decode_need(1000, 1000, "RGB", "JPEG") == 7_000_000 + slack  # Pillow stores RGB in 4 bytes
    assert decode_need(1000, 1000, "L", "PNG") == 4_000_000 + slack
    assert decode_need(1000, 1000, "I;16B", "TIFF") == 5_000_000 + slack
    assert decode_need(1000, 1000, "RGBA", "WEBP") == 17_000_000 + slack
