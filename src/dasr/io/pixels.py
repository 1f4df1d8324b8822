"""Pixel conversion of a decoded Pillow image to 8-bit RGB, in row strips, and its memory need.

``to_rgb_uint8`` never makes a full-size copy other than its ``HxWx3`` uint8 result: every mode
conversion (alpha compositing, 16-bit scaling, float stretching, palette, CMYK) works on strips
of about :data:`STRIP_PIXELS` pixels, cropped from the decoded image one at a time, and the EXIF
orientation is applied to the uint8 result. Decoding plus conversion therefore peaks at the
decoded image (Pillow keeps at most 4 bytes per pixel) plus the result (3 bytes per pixel);
:func:`decode_need` is that number, as :mod:`dasr.io.budget` reserves it. The colour rules
themselves are documented in :mod:`dasr.io.images`.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
from PIL import ExifTags, Image

__all__ = ["STRIP_PIXELS", "decode_need", "exif_orientation", "orient", "to_rgb_uint8"]

# Pixels converted at a time: a strip of 1 Mpx costs a few MB in its widest dtype (float64 for
# stretched float data), negligible next to a large image and still fast for numpy.
STRIP_PIXELS: int = 1 << 20

# Bytes per pixel of Pillow's in-memory storage: 1 for 1/L/P, 2 for the 16-bit grey modes and
# 4 for every other mode (RGB is stored as 32-bit pixels, like RGBA, CMYK, I and F).
_ONE_BYTE_MODES = frozenset({"1", "L", "P"})
# Decoders that hold more full-size buffers while decoding: Pillow's WebP plugin has libwebp
# decode the whole frame into its own buffer and copies it out as bytes before filling the image
# (about 16.3 bytes per pixel measured in all, see reports/robustness/decode-memory.md).
_FORMAT_EXTRA_BYTES_PER_PIXEL = {"WEBP": 10}
# Fixed slack for decoder state (zlib window, libjpeg/libtiff buffers) and the strips in flight;
# the measured peaks of every format stay under the estimate with it.
_SLACK_BYTES = 64 << 20


def decode_need(width: int, height: int, mode: str, fmt: str | None) -> int:
    """Bytes that decoding and converting an image of this header will allocate at most.

    Args:
        width: header width in pixels.
        height: header height in pixels.
        mode: Pillow mode of the opened (not yet decoded) image.
        fmt: Pillow format name (``"PNG"``, ``"WEBP"``...), or None.

    Returns:
        ``width * height * (stored + 3 + extra) + slack``: the decoded image, the RGB result,
        a decoder's own full-size buffer where it has one, and a fixed slack.
    """
    stored = 1 if mode in _ONE_BYTE_MODES else 2 if mode.startswith("I;16") else 4
    extra = _FORMAT_EXTRA_BYTES_PER_PIXEL.get(fmt or "", 0)
    return int(width) * int(height) * (stored + 3 + extra) + _SLACK_BYTES


def _strips(img: Image.Image) -> Iterator[tuple[int, int, Image.Image]]:
    """(first row, end row, cropped strip) over the whole image, top to bottom."""
    width, height = img.size
    rows = max(1, STRIP_PIXELS // max(1, width))
    for y0 in range(0, height, rows):
        y1 = min(height, y0 + rows)
        yield y0, y1, img.crop((0, y0, width, y1))


def _gray16_to_uint8(values: np.ndarray) -> np.ndarray:
    """Map integers in [0, 65535] to [0, 255] with round(v / 257), exact at both ends."""
    return ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """Alpha-blend an ``HxWx4`` uint8 array onto a white background (integer, rounded)."""
    rgb = rgba[..., :3].astype(np.uint32)
    alpha = rgba[..., 3:4].astype(np.uint32)
    out = (rgb * alpha + 255 * (255 - alpha) + 127) // 255
    return out.astype(np.uint8)


def _finite_range(img: Image.Image, dtype) -> tuple[float, float] | None:
    """(min, max) of the finite values of a one-band image, strip by strip; None if none."""
    lo, hi = np.inf, -np.inf
    for _, _, strip in _strips(img):
        values = np.asarray(strip, dtype=dtype)
        finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values.ravel()
        if finite.size:
            lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
    return None if lo > hi else (lo, hi)


def _stretch(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Linearly map [lo, hi] to [0, 255]; NaN -> 0, inf clipped; a constant image keeps lo."""
    values = values.astype(np.float64)
    if hi > lo:
        scaled = (values - lo) * (255.0 / (hi - lo))
    else:
        # A constant image carries no contrast to stretch; keep its value if it is a plausible
        # 8-bit intensity rather than inventing black or white.
        scaled = np.full(values.shape, lo)
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _gray_converter(img: Image.Image):
    """For a high-bit-depth grey mode, the strip -> uint8 function; None for other modes."""
    mode = img.mode
    if mode.startswith("I;16"):
        return lambda strip: _gray16_to_uint8(np.asarray(strip))
    if mode == "I":
        span = _finite_range(img, None)
        if span is not None and span[0] >= 0 and span[1] <= 65535:
            return lambda strip: _gray16_to_uint8(np.asarray(strip))
        lo, hi = span if span is not None else (0.0, 0.0)
        return lambda strip: _stretch(np.asarray(strip), lo, hi)
    if mode == "F":
        span = _finite_range(img, np.float32)
        if span is None:
            return lambda strip: np.zeros((strip.height, strip.width), np.uint8)
        if span[0] >= 0.0 and span[1] <= 1.0:
            def unit(strip: Image.Image) -> np.ndarray:
                values = np.asarray(strip, dtype=np.float32)
                scaled = np.nan_to_num(values * 255.0, nan=0.0, posinf=255.0, neginf=0.0)
                return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
            return unit
        lo, hi = span
        return lambda strip: _stretch(np.asarray(strip, dtype=np.float32), lo, hi)
    return None


def to_rgb_uint8(img: Image.Image) -> np.ndarray:
    """Convert a decoded Pillow image of any supported mode to ``HxWx3`` uint8 RGB, in strips.

    Args:
        img: a loaded Pillow image.

    Returns:
        A new C-contiguous ``(H, W, 3)`` uint8 array; the only full-size allocation.

    Raises:
        ValueError: the pixel mode has no sensible RGB conversion.
    """
    width, height = img.size
    out = np.empty((height, width, 3), np.uint8)
    gray = _gray_converter(img)
    transparent = gray is None and img.has_transparency_data
    for y0, y1, strip in _strips(img):
        if gray is not None:
            out[y0:y1] = gray(strip)[:, :, None]
        elif transparent:
            out[y0:y1] = _composite_on_white(np.asarray(strip.convert("RGBA")))
        else:
            out[y0:y1] = np.asarray(strip.convert("RGB"))
    return out


def exif_orientation(img: Image.Image) -> int:
    """The EXIF orientation (1-8) of an opened image; 1 when absent or unreadable.

    Args:
        img: a Pillow image.

    Returns:
        The tag's value as Pillow's ``ImageOps.exif_transpose`` reads it, or 1.
    """
    try:
        value = img.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # noqa: BLE001 - a damaged EXIF block must not lose the pixels
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def orient(rgb: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation to an ``HxWx3`` array, exactly as ``ImageOps.exif_transpose``.

    Args:
        rgb: the decoded pixels, as stored in the file.
        orientation: the EXIF tag value (1 = as stored).

    Returns:
        A C-contiguous array as a viewer shows the image (``rgb`` itself for orientation 1).
    """
    views = {
        2: lambda a: a[:, ::-1],                     # FLIP_LEFT_RIGHT
        3: lambda a: a[::-1, ::-1],                  # ROTATE_180
        4: lambda a: a[::-1],                        # FLIP_TOP_BOTTOM
        5: lambda a: a.transpose(1, 0, 2),           # TRANSPOSE
        6: lambda a: np.rot90(a, -1),                # ROTATE_270 (clockwise)
        7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),  # TRANSVERSE
        8: lambda a: np.rot90(a, 1),                 # ROTATE_90 (counter-clockwise)
    }
    view = views.get(orientation)
    return rgb if view is None else np.ascontiguousarray(view(rgb))
