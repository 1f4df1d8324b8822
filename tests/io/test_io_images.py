"""Tests for dasr.io.images: every fixture is generated in tmp_path with Pillow / numpy / OpenCV."""

from __future__ import annotations

import os
import pickle
import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile

from dasr.io import images
from dasr.io.images import (
    IMAGE_EXTENSIONS,
    IMAGENET_BGR_MEAN,
    MAX_PIXELS,
    ImageError,
    list_images,
    load_image,
    preprocess_caffe,
    resize_long_side,
    resized_size,
    scale_boxes,
)

RED = (200, 40, 60)


def _assert_rgb(arr: np.ndarray, shape_hw: tuple[int, int]) -> None:
    assert arr.dtype == np.uint8
    assert arr.shape == (*shape_hw, 3)
    assert arr.flags["C_CONTIGUOUS"] and arr.flags["WRITEABLE"]


def _assert_colour(pixels: np.ndarray, colour, tol: float) -> None:
    mean = pixels.reshape(-1, 3).astype(float).mean(axis=0)
    assert np.all(np.abs(mean - np.asarray(colour, float)) <= tol), (mean, colour)


def _load_error(path, **kwargs) -> ImageError:
    with pytest.raises(ImageError) as info:
        load_image(path, **kwargs)
    err = info.value
    # The contract of the error: one line, "<path>: <reason>".
    assert str(err) == f"{err.path}: {err.reason}"
    assert err.path == os.fsdecode(path)
    assert "\n" not in str(err)
    return err


# --------------------------------------------------------------------------- formats and modes


@pytest.mark.parametrize(
    "ext, fmt, tol",
    [
        (".jpg", "JPEG", 8),
        (".png", "PNG", 0),
        (".bmp", "BMP", 0),
        (".gif", "GIF", 0),
        (".webp", "WEBP", 8),
        (".tif", "TIFF", 0),
    ],
)
def test_each_format_decodes_to_rgb(tmp_path: Path, ext: str, fmt: str, tol: float) -> None:
    path = tmp_path / f"img{ext}"
    Image.new("RGB", (40, 30), RED).save(path, format=fmt)
    arr = load_image(path)
    _assert_rgb(arr, (30, 40))
    _assert_colour(arr, RED, tol)


def test_grayscale_and_one_bit(tmp_path: Path) -> None:
    Image.new("L", (9, 7), 77).save(tmp_path / "g.png")
    arr = load_image(tmp_path / "g.png")
    _assert_rgb(arr, (7, 9))
    assert np.all(arr == 77)

    bits = np.zeros((6, 10), bool)
    bits[:, 5:] = True
    Image.fromarray(bits).convert("1").save(tmp_path / "b.png")
    arr = load_image(tmp_path / "b.png")
    _assert_rgb(arr, (6, 10))
    assert np.all(arr[:, :5] == 0) and np.all(arr[:, 5:] == 255)


def test_rgba_is_composited_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((4, 3, 4), np.uint8)
    rgba[..., :3] = (10, 20, 30)
    rgba[0, :, 3] = 0  # fully transparent -> white
    rgba[1, :, 3] = 255  # opaque -> colour
    rgba[2:, :, 3] = 128  # half -> blend
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    arr = load_image(tmp_path / "a.png")
    _assert_rgb(arr, (4, 3))
    assert np.all(arr[0] == 255)
    assert np.all(arr[1] == (10, 20, 30))
    expected = np.rint((np.array([10, 20, 30]) * 128 + 255 * 127) / 255)
    assert np.all(np.abs(arr[2:].astype(int) - expected) <= 1)

    la = np.zeros((2, 2, 2), np.uint8)
    la[..., 1] = [[0, 255], [0, 255]]
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    arr = load_image(tmp_path / "la.png")
    assert np.all(arr[:, 0] == 255) and np.all(arr[:, 1] == 0)


def test_palette_with_and_without_transparency(tmp_path: Path) -> None:
    pal = Image.new("P", (6, 2), 1)
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    pal.paste(2, (0, 0, 3, 2))  # left half blue, right half red
    pal.save(tmp_path / "p.png")
    arr = load_image(tmp_path / "p.png")
    _assert_rgb(arr, (2, 6))
    assert np.all(arr[:, :3] == (0, 0, 255)) and np.all(arr[:, 3:] == (255, 0, 0))

    pal.save(tmp_path / "pt.png", transparency=2)  # blue index is transparent -> white
    arr = load_image(tmp_path / "pt.png")
    assert np.all(arr[:, :3] == 255) and np.all(arr[:, 3:] == (255, 0, 0))


def test_cmyk_jpeg_inverted_adobe(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path)  # pure red in CMYK
    with Image.open(path) as check:
        # Pillow writes CMYK JPEGs with the Adobe marker, i.e. the inverted variant.
        assert check.mode == "CMYK" and check.info.get("adobe")
    arr = load_image(path)
    _assert_rgb(arr, (16, 16))
    _assert_colour(arr, (255, 0, 0), 10)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16bit_gray_ramp_is_scaled_not_clipped(tmp_path: Path, fmt: str) -> None:
    ramp = np.linspace(0, 65535, 2000).round().astype(np.uint16)[None, :].repeat(2, axis=0)
    path = tmp_path / f"ramp.{fmt.lower()}"
    Image.fromarray(ramp).save(path, format=fmt)
    with Image.open(path) as check:
        assert check.mode.startswith("I;16")
    arr = load_image(path)
    _assert_rgb(arr, (2, 2000))
    gray = arr[0, :, 0].astype(int)
    assert np.all(arr == arr[..., :1])
    assert gray[0] == 0 and gray[-1] == 255
    assert np.all(np.diff(gray) >= 0)
    assert len(np.unique(gray)) == 256  # the whole range survives; clipping would leave ~2 values
    assert gray[1000] in (127, 128)


def test_16bit_rgb_png(tmp_path: Path) -> None:
    bgr16 = np.zeros((3, 4, 3), np.uint16)
    bgr16[..., 0] = 65535  # blue
    bgr16[..., 1] = 100 * 257
    assert cv2.imwrite(str(tmp_path / "rgb16.png"), bgr16)
    arr = load_image(tmp_path / "rgb16.png")
    _assert_rgb(arr, (3, 4))
    assert np.all(np.abs(arr.astype(int) - (0, 100, 255)) <= 1)


def test_float_tiff(tmp_path: Path) -> None:
    unit = np.array([[0.0, 0.5, 1.0]], np.float32)
    Image.fromarray(unit).save(tmp_path / "unit.tif")
    assert load_image(tmp_path / "unit.tif")[0, :, 0].tolist() == [0, 128, 255]

    wide = np.array([[-5.0, 0.0, 5.0, np.nan]], np.float32)
    Image.fromarray(wide).save(tmp_path / "wide.tif")
    assert load_image(tmp_path / "wide.tif")[0, :, 0].tolist() == [0, 128, 255, 0]


def test_gif_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in [(255, 0, 0), (0, 255, 0)]]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    _assert_colour(load_image(tmp_path / "anim.gif"), (255, 0, 0), 0)


def test_exif_orientation_6_rotates(tmp_path: Path) -> None:
    # Stored 48 wide x 32 high, a red 16x16 block in the stored top-left corner, blue elsewhere.
    stored = np.zeros((32, 48, 3), np.uint8)
    stored[...] = (0, 0, 255)
    stored[:16, :16] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(stored).save(tmp_path / "rot.jpg", exif=exif, quality=95)
    Image.fromarray(stored).save(tmp_path / "plain.jpg", quality=95)

    arr = load_image(tmp_path / "rot.jpg")
    _assert_rgb(arr, (48, 32))
    # Turning the picture clockwise moves its top-left corner to the top-right.
    _assert_colour(arr[2:14, -14:-2], (255, 0, 0), 10)
    _assert_colour(arr[2:14, 2:14], (0, 0, 255), 10)
    _assert_colour(arr[-14:-2, -14:-2], (0, 0, 255), 10)

    plain = load_image(tmp_path / "plain.jpg")
    _assert_rgb(plain, (32, 48))
    _assert_colour(plain[2:14, 2:14], (255, 0, 0), 10)


@pytest.mark.parametrize("size", [(1, 1), (8, 8)])
def test_tiny_images_are_fine(tmp_path: Path, size: tuple[int, int]) -> None:
    Image.new("RGB", size, RED).save(tmp_path / "t.png")
    arr = load_image(tmp_path / "t.png")
    _assert_rgb(arr, size[::-1])
    resized, scale = resize_long_side(arr)
    assert resized.shape == (512, 512, 3) and scale == 512 / size[0]


def test_non_utf8_file_name(tmp_path: Path) -> None:
    name = os.fsencode(tmp_path) + b"/caf\xff.png"
    try:
        Image.new("RGB", (5, 3), RED).save(open(name, "wb"), format="PNG")
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses non-UTF-8 names")
    assert load_image(name).shape == (3, 5, 3)
    as_str = os.fsdecode(name)  # surrogate-escaped str
    assert load_image(as_str).shape == (3, 5, 3)
    missing = os.fsencode(tmp_path) + b"/gone\xfe.jpg"
    err = _load_error(missing)
    assert err.reason == "file not found"


# --------------------------------------------------------------------------- errors


def test_missing_zero_byte_and_directory(tmp_path: Path) -> None:
    assert _load_error(tmp_path / "nope.jpg").reason == "file not found"
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert _load_error(tmp_path / "empty.jpg").reason == "zero-byte file"
    (tmp_path / "dir.jpg").mkdir()
    assert _load_error(tmp_path / "dir.jpg").reason == "is a directory"
    assert "not a directory" in _load_error(tmp_path / "empty.jpg" / "x.jpg").reason


def test_broken_symlink(tmp_path: Path) -> None:
    link = tmp_path / "link.jpg"
    link.symlink_to(tmp_path / "target-that-does-not-exist.jpg")
    assert "broken symbolic link" in _load_error(link).reason


def test_permission_denied(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("running as root: chmod 000 does not stop root from reading the file")
    path = tmp_path / "locked.png"
    Image.new("RGB", (4, 4)).save(path)
    path.chmod(0)
    try:
        assert _load_error(path).reason == "permission denied"
    finally:
        path.chmod(0o644)


@pytest.mark.parametrize(
    "content, hint",
    [
        (b"just some notes, not a picture\n", "text"),
        (b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head></html>\n", "HTML"),
        (bytes(range(256)) * 4, None),
    ],
)
def test_not_an_image(tmp_path: Path, content: bytes, hint: str | None) -> None:
    path = tmp_path / "fake.jpg"
    path.write_bytes(content)
    reason = _load_error(path).reason
    assert reason.startswith("not a recognised image format")
    if hint:
        assert hint in reason


def test_truncated_jpeg(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "half.jpg").write_bytes(data[: len(data) // 2])
    reason = _load_error(tmp_path / "half.jpg").reason
    assert "truncated" in reason and "JPEG" in reason
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_corrupt_png_header(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "ok.png")
    data = bytearray((tmp_path / "ok.png").read_bytes())
    data[12:16] = b"XXXX"  # IHDR chunk type destroyed, PNG signature intact
    (tmp_path / "bad.png").write_bytes(bytes(data))
    assert "PNG" in _load_error(tmp_path / "bad.png").reason


def test_max_pixels_small_limit(tmp_path: Path) -> None:
    Image.new("RGB", (40, 30), RED).save(tmp_path / "s.png")
    reason = _load_error(tmp_path / "s.png", max_pixels=1199).reason
    assert "40 x 30" in reason and "1,199" in reason
    assert load_image(tmp_path / "s.png", max_pixels=1200).shape == (30, 40, 3)
    with pytest.raises(ValueError):
        load_image(tmp_path / "s.png", max_pixels=0)


def test_max_pixels_override_beats_pillow_guard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Our limit governs, not Pillow's global one (which would refuse 1200 > 2 * 100 pixels).
    Image.new("RGB", (40, 30), RED).save(tmp_path / "s.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    assert load_image(tmp_path / "s.png", max_pixels=10_000).shape == (30, 40, 3)


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def test_decompression_bomb_refused_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A valid 20000 x 20000 1-bit PNG of zeros: a few tens of KB on disk, 400 MB once decoded
    # (Pillow keeps mode "1" at one byte per pixel).
    side = 20000
    packer = zlib.compressobj(9)
    rows = (b"\x00" + bytes(side // 8)) * 500
    idat = b"".join(packer.compress(rows) for _ in range(side // 500)) + packer.flush()
    png = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )
    assert len(png) < 200_000
    path = tmp_path / "bomb.png"
    path.write_bytes(png)

    def no_decoding(self):  # any pixel decoding would allocate the 400 MB
        raise AssertionError("load_image decoded pixels of an over-limit image")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    start = time.perf_counter()
    reason = _load_error(path).reason
    assert time.perf_counter() - start < 1.0
    assert "20000 x 20000" in reason and f"{MAX_PIXELS:,}" in reason


def test_image_error_pickles() -> None:
    err = ImageError(b"/x/caf\xff.jpg", "zero-byte file")
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, ImageError)
    assert (back.path, back.reason, str(back)) == (err.path, err.reason, str(err))


# --------------------------------------------------------------------------- resizing and boxes


@pytest.mark.parametrize(
    "shape, expected",
    [
        ((50, 10000, 3), (3, 512, 3)),
        ((10000, 50), (512, 3)),
        ((1, 100000), (1, 512)),
        ((300, 400, 3), (384, 512, 3)),
        ((100, 50, 3), (512, 256, 3)),
        ((20, 30, 1), (341, 512, 1)),
    ],
)
def test_resize_long_side_shapes(shape, expected) -> None:
    resized, scale = resize_long_side(np.zeros(shape, np.uint8))
    assert resized.shape == expected
    assert scale == pytest.approx(512 / max(shape[:2]))
    assert resized_size(*shape[:2], 512) == expected[:2]  # the size, without the pixels


def test_resize_no_upscale_and_identity() -> None:
    small = np.zeros((100, 50, 3), np.uint8)
    out, scale = resize_long_side(small, upscale=False)
    assert out is small and scale == 1.0
    exact = np.zeros((512, 10, 3), np.uint8)
    out, scale = resize_long_side(exact)
    assert out is exact and scale == 1.0
    with pytest.raises(ValueError):
        resize_long_side(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(ValueError):
        resize_long_side(small, 0)


def test_resize_shrinks_with_area_interpolation() -> None:
    # A 1-pixel checkerboard shrunk by exactly 3: INTER_AREA averages 3x3 blocks (4/9 or 5/9 of
    # 255) whereas INTER_LINEAR would land on single source pixels and keep pure 0 / 255.
    board = ((np.indices((1536, 1536)).sum(axis=0) % 2) * 255).astype(np.uint8)
    out, scale = resize_long_side(board)
    assert out.shape == (512, 512) and scale == pytest.approx(1 / 3)
    assert set(np.unique(out).tolist()) <= {113, 142}


def test_scale_boxes_round_trip() -> None:
    image = np.zeros((600, 1000, 3), np.uint8)
    resized, scale = resize_long_side(image)
    original_boxes = np.array([[10, 20, 500, 590], [0, 0, 1000, 600]], np.int64)
    on_resized = scale_boxes(original_boxes, 1 / scale)  # the inverse direction
    assert np.allclose(on_resized, original_boxes * scale)
    assert on_resized[1, 2] == pytest.approx(resized.shape[1])
    back = scale_boxes(on_resized, scale)
    assert back.dtype == np.float64
    assert np.allclose(back, original_boxes)
    assert scale_boxes(np.zeros((0, 4)), 0.5).shape == (0, 4)
    with pytest.raises(ValueError):
        scale_boxes(np.zeros((3, 5)), 0.5)
    with pytest.raises(ValueError):
        scale_boxes(original_boxes, 0.0)


# --------------------------------------------------------------------------- network input


def test_preprocess_caffe_matches_keras() -> None:
    resnet50 = pytest.importorskip("keras.applications.resnet50")
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (2, 7, 5, 3), dtype=np.uint8)
    ours = preprocess_caffe(image)
    theirs = np.asarray(resnet50.preprocess_input(image.copy()))
    assert ours.dtype == np.float32 and ours.shape == image.shape
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(ours[0, 0, 0], image[0, 0, 0, ::-1] - np.float32(IMAGENET_BGR_MEAN))
    with pytest.raises(ValueError):
        preprocess_caffe(np.zeros((4, 4, 4), np.uint8))


# --------------------------------------------------------------------------- listing


def test_list_images(tmp_path: Path) -> None:
    (tmp_path / "sub" / "deep").mkdir(parents=True)
    for rel in ["b.JPG", "a.png", "sub/c.jpeg", "sub/deep/d.TIFF", "sub/e.webp"]:
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / "notes.txt").write_bytes(b"x")
    (tmp_path / "folder.jpg").mkdir()
    (tmp_path / "broken.jpg").symlink_to(tmp_path / "missing.jpg")
    (tmp_path / "sub" / "loop").symlink_to(tmp_path)  # a cycle must not hang or duplicate
    # the broken link is listed so that a reader reports it; the folder named .jpg is not
    assert list_images(tmp_path) == ["a.png", "b.JPG", "broken.jpg", "sub/c.jpeg", "sub/deep/d.TIFF",
                                     "sub/e.webp"]
    assert list_images(os.fsencode(tmp_path)) == list_images(str(tmp_path))
    assert all(ext == ext.lower() and ext.startswith(".") for ext in IMAGE_EXTENSIONS)
    with pytest.raises(FileNotFoundError):
        list_images(tmp_path / "absent")
    with pytest.raises(NotADirectoryError):
        list_images(tmp_path / "a.png")


def test_module_does_not_touch_pillow_globals() -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    assert images.MAX_PIXELS == 178_956_970


# --------------------------------------------------------------------------- read_image: identity, budget


def test_read_image_returns_the_files_size_and_sha256(tmp_path: Path) -> None:
    import hashlib

    from dasr.io.images import read_image

    Image.fromarray(np.full((9, 7, 3), 90, np.uint8)).save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    got = read_image(tmp_path / "a.png", identity=True)
    assert (got.file_size, got.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    np.testing.assert_array_equal(got.pixels, load_image(tmp_path / "a.png"))
    assert (read_image(tmp_path / "a.png").file_size, read_image(tmp_path / "a.png").sha256) == (-1, "")


def test_read_image_reserves_its_need_and_keeps_only_the_pixels(tmp_path: Path) -> None:
    from dasr.io.budget import DecodeBudget
    from dasr.io.images import read_image
    from dasr.io.pixels import decode_need

    Image.fromarray(np.full((30, 40, 4), 90, np.uint8), "RGBA").save(tmp_path / "a.png")
    budget = DecodeBudget(decode_need(40, 30, "RGBA", "PNG"))
    got = read_image(tmp_path / "a.png", budget=budget, ticket=budget.ticket())
    assert budget.free == budget.total - got.pixels.nbytes == budget.total - 40 * 30 * 3
    budget.release(got.pixels.nbytes)
    small = DecodeBudget(decode_need(40, 30, "RGBA", "PNG") - 1)
    err = _load_error_with(lambda: read_image(tmp_path / "a.png", budget=small, ticket=small.ticket()))
    assert "over the decode memory budget" in err.reason and "40 x 30 PNG RGBA" in err.reason
    assert small.free == small.total


def test_a_failed_decode_gives_its_reservation_back(tmp_path: Path) -> None:
    from dasr.io.budget import DecodeBudget
    from dasr.io.images import read_image

    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    budget = DecodeBudget()
    _load_error_with(lambda: read_image(tmp_path / "cut.png", budget=budget, ticket=budget.ticket()))
    assert budget.free == budget.total


def _load_error_with(call) -> ImageError:
    with pytest.raises(ImageError) as info:
        call()
    assert "\n" not in str(info.value)
    return info.value


def test_load_image_refuses_a_need_over_the_default_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dasr.io.pixels import decode_need

    Image.fromarray(np.full((30, 40, 3), 90, np.uint8)).save(tmp_path / "a.png")
    monkeypatch.setattr(images, "DEFAULT_DECODE_BUDGET", decode_need(40, 30, "RGB", "PNG") - 1)
    assert "over the decode memory budget" in _load_error(tmp_path / "a.png").reason
    monkeypatch.setattr(images, "DEFAULT_DECODE_BUDGET", decode_need(40, 30, "RGB", "PNG"))
    assert load_image(tmp_path / "a.png").shape == (30, 40, 3)
