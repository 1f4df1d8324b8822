"""Image loading, resizing and network preprocessing for DASR.

The paper resizes every database and query image so that its longer side is 512 pixels and
feeds it to an ImageNet-trained ResNet-50 / VGG-16 with the Keras "caffe" preprocessing.
This module provides the three steps as pure functions:

* ``load_image``: any JPEG / PNG / BMP / GIF / WebP / TIFF file -> ``HxWx3`` ``uint8`` RGB,
  EXIF orientation applied, every failure reported as one ``ImageError`` naming the file.
* ``resize_long_side`` / ``scale_boxes``: resize to a fixed long side and map boxes found on the
  resized image back to the original pixel grid.
* ``preprocess_caffe``: RGB -> BGR, minus the ImageNet mean (``keras.applications.resnet50``).

Colour handling chosen here (documented once, applied everywhere):

* Transparency (RGBA, LA, palette or grey/RGB with a ``tRNS`` colour) is composited on WHITE:
  product photos and logos with a transparent background are meant to be seen on a light page,
  and black would invent a dark frame around the object that the CNN would respond to.
* 16-bit grey (Pillow modes ``I;16*``) is scaled with ``round(v / 257)``, so 0 -> 0 and
  65535 -> 255 exactly and the whole range is kept (a plain cast would clip everything above
  255 to white). 16-bit RGB(A) is reduced to 8 bit by Pillow itself (high byte).
* 32-bit integer grey (mode ``I``) whose values fit in [0, 65535] is treated as 16-bit data (that is
  where Pillow produces it: signed 16-bit TIFF, older Pillow's 16-bit PNG); otherwise its
  [min, max] range is stretched to [0, 255].
* Float grey (mode ``F``, e.g. float TIFF): if all finite values lie in [0, 1] they are read as
  normalised intensities (x 255); otherwise [min, max] of the finite values is stretched to
  [0, 255]. NaN becomes 0, +-inf is clipped; a constant image keeps its value, clipped to [0, 255].
* CMYK (including Adobe's inverted CMYK JPEGs, which Pillow detects from the APP14 marker) uses
  Pillow's naive conversion; ICC profiles are not applied anywhere.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import warnings
from dataclasses import dataclass
from pathlib import PurePath
from typing import BinaryIO, Iterable

import cv2
import numpy as np
from PIL import (
    BmpImagePlugin,
    GifImagePlugin,
    Image,
    ImageFile,
    JpegImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    WebPImagePlugin,
)

from dasr.errors import UserError
from dasr.io.budget import DEFAULT_DECODE_BUDGET, DecodeBudget
from dasr.io.pixels import decode_need, exif_orientation, orient, to_rgb_uint8

__all__ = [
    "DecodedImage",
    "IMAGENET_BGR_MEAN",
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "ImageError",
    "list_images",
    "load_image",
    "preprocess_caffe",
    "read_image",
    "resize_long_side",
    "resized_size",
    "scale_boxes",
]

# Refuse images above this many pixels before decoding them. A few-KB PNG or GIF can claim
# 20000 x 20000 pixels and decode to 400 MB per channel (a "decompression bomb"); one such file
# in a crawled database must not take down an indexing run. The value equals the threshold at
# which Pillow itself raises DecompressionBombError (2 * PIL.Image.MAX_IMAGE_PIXELS by default),
# roughly 13400 x 13400, far above anything the paper's 512-pixel pipeline needs.
MAX_PIXELS: int = 178_956_970

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

# Per-channel mean of the ImageNet training set in BGR order, as used by the original Caffe
# ResNet-50 / VGG-16 models and Keras' "caffe" preprocessing mode.
IMAGENET_BGR_MEAN: tuple[float, float, float] = (103.939, 116.779, 123.68)

# Pillow format identifiers tried when opening; the imports above register exactly these. Restricting
# the set means an odd file is never handed to a plugin with external helpers (EPS -> Ghostscript)
# or a rarely exercised parser. "DIB" is headerless BMP data and is deliberately not included.
_PILLOW_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF")
_FORMAT_NAMES = "JPEG, PNG, BMP, GIF, WebP, TIFF"

# Referenced so that linters do not drop the imports: importing a plugin is what registers it.
_PLUGINS = (BmpImagePlugin, GifImagePlugin, JpegImagePlugin, PngImagePlugin, TiffImagePlugin, WebPImagePlugin)

# Pillow header parsers signal "this is not my format after all" with these (Image.open does the same).
_NOT_THIS_FORMAT = (SyntaxError, IndexError, TypeError, struct.error)


class ImageError(UserError):
    """An image file could not be loaded; ``str(e) == f"{path}: {reason}"`` on one line.

    Attributes:
        path: the file name as ``str`` (non-UTF-8 bytes kept as surrogate escapes, like
            ``OSError.filename``, so that ``open(e.path)`` still works).
        reason: what went wrong, e.g. ``"zero-byte file"``.
    """

    def __init__(self, path: str | bytes | os.PathLike, reason: str) -> None:
        self.path: str = os.fsdecode(path)
        self.reason: str = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # type: ignore[override]
        # Exception pickling replays self.args (the single message); rebuild from both fields so
        # that the error survives multiprocessing data loaders.
        return (type(self), (self.path, self.reason))


def _broken_or_missing(path: str | bytes) -> str:
    """Reason text for a path that ``os.stat`` could not find."""
    if os.path.islink(path):
        try:
            target = os.fsdecode(os.readlink(path))
        except OSError:
            return "broken symbolic link"
        return f"broken symbolic link (target {target!r} does not exist)"
    return "file not found"


def _sniff(head: bytes) -> str:
    """Short hint about what a non-image file seems to contain ("" when nothing useful)."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html")) or b"<html" in text[:1024] or b"<head" in text[:1024]:
        return "looks like HTML, e.g. an error page saved in place of the image"
    if text.startswith(b"<?xml") or text.startswith(b"<svg"):
        return "looks like XML/SVG"
    if head and b"\x00" not in head:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as e:
            # A multi-byte character cut at the end of the sample is still text.
            if e.start < len(head) - 4:
                return ""
        return "looks like text"
    return ""


def _identify(fp: BinaryIO, head: bytes) -> ImageFile.ImageFile:
    """Parse the header with the first supported Pillow plugin that accepts the file.

    This is what ``PIL.Image.open`` does, minus its built-in decompression-bomb check: that check
    raises before the size is known and ignores our ``max_pixels`` override, so ``load_image``
    reads the header size here and applies its own limit instead.

    Args:
        fp: binary file object positioned anywhere.
        head: the first bytes of the file (at least 16).

    Returns:
        The opened, not yet decoded, Pillow image.

    Raises:
        ValueError: no plugin recognises the data; the message is the reason for ``ImageError``.
        Image.DecompressionBombError: a plugin applied Pillow's own size guard while parsing.
    """
    hints: list[str] = []
    for fmt in _PILLOW_FORMATS:
        entry = Image.OPEN.get(fmt)
        if entry is None:
            continue
        factory, accept = entry
        verdict = accept(head[:16]) if accept else True
        if isinstance(verdict, str):  # e.g. "WEBP support not installed"
            hints.append(verdict)
            continue
        if not verdict:
            continue
        fp.seek(0)
        try:
            return factory(fp, "")
        except _NOT_THIS_FORMAT as e:
            # The magic number matched but the header is unreadable: say so, it is more useful
            # than "unknown format" for a damaged download.
            raise ValueError(f"corrupt {fmt} header ({e})") from e
        except (OSError, EOFError, ValueError) as e:
            raise ValueError(f"corrupt or truncated {fmt} header ({e})") from e
    sniffed = _sniff(head)
    extra = "; ".join(h for h in [sniffed, *hints] if h)
    reason = f"not a recognised image format (supported: {_FORMAT_NAMES})"
    raise ValueError(f"{reason}; {extra}" if extra else reason)


@dataclass
class DecodedImage:
    """An image read by :func:`read_image`.

    Attributes:
        pixels: ``(H, W, 3)`` uint8 RGB, upright (see :func:`load_image`).
        file_size: the file's size in bytes (what was read), or -1 when not asked for.
        sha256: hex SHA-256 of the file's bytes, or "" when not asked for.
    """

    pixels: np.ndarray
    file_size: int = -1
    sha256: str = ""


def _hash_file(fp: BinaryIO, fspath: str | bytes) -> tuple[int, str]:
    """(size, hex SHA-256) of an open file, read in 1 MiB chunks; leaves ``fp`` at the start."""
    digest = hashlib.sha256()
    size = 0
    try:
        while chunk := fp.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
        fp.seek(0)
    except OSError as e:
        raise ImageError(fspath, f"read error ({e.strerror or e})") from None
    return size, digest.hexdigest()


def _open_regular(fspath: str | bytes) -> BinaryIO:
    """Open an image file for reading, with one clear reason for each way it cannot be."""
    # stat first: it gives distinct, clear reasons, and opening a FIFO would block forever.
    try:
        info = os.stat(fspath)
    except FileNotFoundError:
        raise ImageError(fspath, _broken_or_missing(fspath)) from None
    except NotADirectoryError:
        raise ImageError(fspath, "file not found (a parent path component is not a directory)") from None
    except PermissionError:
        raise ImageError(fspath, "permission denied") from None
    except OSError as e:
        raise ImageError(fspath, e.strerror or str(e)) from None
    if stat.S_ISDIR(info.st_mode):
        raise ImageError(fspath, "is a directory")
    if not stat.S_ISREG(info.st_mode):
        raise ImageError(fspath, "not a regular file")
    if info.st_size == 0:
        raise ImageError(fspath, "zero-byte file")
    try:
        return open(fspath, "rb")
    except PermissionError:
        raise ImageError(fspath, "permission denied") from None
    except OSError as e:
        raise ImageError(fspath, e.strerror or str(e)) from None


def _decode(img: ImageFile.ImageFile, fspath: str | bytes) -> np.ndarray:
    """Decode the pixels of an opened image and convert them (strips, then orientation)."""
    try:
        # Our own limit already passed; Pillow's second guard (TIFF tiles) must not warn.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img.load()
    except MemoryError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageError(fspath, f"too large: {e}") from None
    except Exception as e:  # noqa: BLE001 - Pillow decoders raise many unrelated types
        raise ImageError(fspath, f"corrupt or truncated {img.format} data ({e})") from None
    orientation = exif_orientation(img)
    try:
        rgb = to_rgb_uint8(img)
    except ValueError as e:
        raise ImageError(fspath, f"unsupported pixel mode {img.mode!r} ({e})") from None
    img.close()  # the decoded pixels go before the oriented copy is made
    return orient(rgb, orientation)


def read_image(path: str | bytes | os.PathLike, *, max_pixels: int = MAX_PIXELS,
               budget: DecodeBudget | None = None, ticket: int | None = None,
               identity: bool = False) -> DecodedImage:
    """Decode an image file (see :func:`load_image`), optionally within a memory budget.

    Memory: decoding and conversion allocate at most :func:`dasr.io.pixels.decode_need` bytes
    (the decoded image, at most 4 bytes per pixel, plus the 3-byte RGB result); every colour
    conversion works in row strips and the EXIF orientation is applied to the result. An image
    whose need is over the budget (without one: :data:`DEFAULT_DECODE_BUDGET`, 1.5 GiB, which
    every legal image fits except a WebP over about 90 megapixels) is refused before decoding.

    Args:
        path: file name as ``str``, ``bytes`` or ``os.PathLike``.
        max_pixels: refuse images whose header claims more pixels (see :func:`load_image`).
        budget: reserve the decode's need in this budget before decoding (waiting for room, in
            ``ticket`` order). On success all but ``pixels.nbytes`` is given back; the caller
            releases ``pixels.nbytes`` once it is done with the pixels.
        ticket: the place in ``budget``'s queue (required with ``budget``); the caller settles it.
        identity: also return the file's size and SHA-256, read from the same open file as the
            pixels (the page cache serves the decode's second read).

    Returns:
        A :class:`DecodedImage`.

    Raises:
        ImageError: as :func:`load_image`, and when the decode needs more than the whole budget.
        ValueError: ``max_pixels`` is not a positive integer, or a budget without a ticket.
    """
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive integer, got {max_pixels!r}")
    if budget is not None and ticket is None:
        raise ValueError("a decode budget needs the ticket of this decode")
    fspath = os.fspath(path)
    size, digest = -1, ""
    with _open_regular(fspath) as fp:
        if identity:
            size, digest = _hash_file(fp, fspath)
        try:
            head = fp.read(1024)
        except OSError as e:
            raise ImageError(fspath, f"read error ({e.strerror or e})") from None
        if not head:  # the file was emptied between stat and read
            raise ImageError(fspath, "zero-byte file")
        try:
            img = _identify(fp, head)
        except ValueError as e:
            raise ImageError(fspath, str(e)) from None
        except Image.DecompressionBombError as e:
            raise ImageError(fspath, f"too large: {e}") from None

        with img:
            width, height = img.size
            if width < 1 or height < 1:
                raise ImageError(fspath, f"image has an empty size {width} x {height}")
            if width * height > max_pixels:
                raise ImageError(
                    fspath,
                    f"image too large: {width} x {height} = {width * height:,} pixels exceeds the "
                    f"limit of {max_pixels:,} pixels (decompression-bomb guard; pass a larger "
                    "max_pixels to allow it)",
                )
            need = decode_need(width, height, img.mode, img.format)
            total = budget.total if budget is not None else DEFAULT_DECODE_BUDGET
            if need > total or (budget is not None and not budget.acquire(ticket, need)):
                raise ImageError(fspath, f"needs {need / 2**20:,.0f} MiB to decode ({width} x {height} "
                                         f"{img.format} {img.mode}), over the decode memory budget of "
                                         f"{total / 2**20:,.0f} MiB")
            if budget is None:
                return DecodedImage(_decode(img, fspath), size, digest)
            try:
                pixels = _decode(img, fspath)
            except BaseException:
                budget.release(need)
                raise
            budget.release(need - pixels.nbytes)
            return DecodedImage(pixels, size, digest)


def load_image(path: str | bytes | os.PathLike, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode an image file to an ``HxWx3`` uint8 RGB array, upright as a viewer shows it.

    Supports JPEG, PNG, BMP, GIF and WebP (first frame) and TIFF (first page), in any of Pillow's
    pixel modes; see the module docstring for how alpha, 16-bit, float and CMYK data are mapped
    to 8-bit RGB. The EXIF orientation tag is applied (as ``ImageOps.exif_transpose`` does) so
    that phone photos are not processed lying on their side; an unreadable EXIF block is ignored.
    The whole image is decoded here, at full resolution (boxes found on it are in the file's own
    pixel coordinates), so truncated or corrupt data fails now rather than later (Pillow's
    ``ImageFile.LOAD_TRUNCATED_IMAGES`` is left at its default, False). Peak memory: the decoded
    image plus the result, at most 7 bytes per pixel (WebP 17) plus 64 MiB, and never over
    :data:`dasr.io.budget.DEFAULT_DECODE_BUDGET` (1.5 GiB; a larger need is refused), see
    :func:`read_image`.

    Args:
        path: file name as ``str``, ``bytes`` (non-UTF-8 names work) or ``os.PathLike``.
        max_pixels: refuse images whose header claims more than this many pixels (W x H),
            before any pixel data is decoded. Defaults to ``MAX_PIXELS``; raise it for huge
            scans. Tiny images (even 1 x 1) are accepted.

    Returns:
        A writable, C-contiguous ``(H, W, 3)`` uint8 array in RGB order.

    Raises:
        ImageError: the file is missing, a broken symlink, a directory or other non-regular file,
            unreadable, empty, not in a supported format, corrupt or truncated, or too large.
        ValueError: ``max_pixels`` is not a positive integer.
    """
    return read_image(path, max_pixels=max_pixels).pixels


def resized_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(height, width) of an image of that size after :func:`resize_long_side` (with upscaling)."""
    scale = max_side / max(height, width)
    if height >= width:
        return int(max_side), max(1, int(width * scale + 0.5))
    return max(1, int(height * scale + 0.5)), int(max_side)


def resize_long_side(
    image: np.ndarray, max_side: int = 512, *, upscale: bool = True
) -> tuple[np.ndarray, float]:
    """Resize so that the longer side equals ``max_side``, keeping the aspect ratio.

    The shorter side is ``round(short * scale)`` (half up) and at least 1 pixel, so extreme
    panoramas survive. Shrinking uses ``cv2.INTER_AREA`` (averages, no aliasing); enlarging uses
    ``cv2.INTER_LINEAR``. Because of that rounding the short side's true factor can differ
    slightly from ``scale``; ``scale`` is exact for the long side.

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` array of a dtype OpenCV can resize (uint8, float32...).
        max_side: target length of the longer side in pixels; the paper uses 512.
        upscale: if False, images whose long side is already ``<= max_side`` are returned as is.

    Returns:
        ``(resized, scale)`` with ``scale = new_long / old_long``; a coordinate on the resized
        image maps back with ``original = resized / scale`` (see ``scale_boxes``). When no resize
        is needed the input array itself is returned (not a copy) with scale 1.0.

    Raises:
        ValueError: bad shape, empty image or ``max_side < 1``.
    """
    if isinstance(max_side, bool) or not isinstance(max_side, (int, np.integer)) or max_side < 1:
        raise ValueError(f"max_side must be a positive integer, got {max_side!r}")
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) or (H, W, C) array, got shape {image.shape}")
    height, width = image.shape[:2]
    if height < 1 or width < 1:
        raise ValueError(f"cannot resize an empty image of shape {image.shape}")
    long_side = max(height, width)
    if long_side == max_side or (not upscale and long_side <= max_side):
        return image, 1.0

    scale = max_side / long_side
    new_h, new_w = resized_size(height, width, max_side)
    interpolation = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    # OpenCV rejects negative strides / odd views, and drops a trailing channel axis of size 1.
    resized = cv2.resize(np.ascontiguousarray(image), (new_w, new_h), interpolation=interpolation)
    if image.ndim == 3 and resized.ndim == 2:
        resized = resized[:, :, None]
    return resized, float(scale)


def scale_boxes(boxes: np.ndarray, scale: float) -> np.ndarray:
    """Map ``(x1, y1, x2, y2)`` boxes from a resized image back to the original one.

    ``resize_long_side`` returns ``scale = new / old``, so resized coordinates are divided by it.
    The opposite direction (original -> resized) is ``scale_boxes(boxes, 1 / scale)``, i.e.
    ``boxes * scale``. No rounding or clipping is done: the caller decides whether boxes are
    pixel-edge or pixel-centre coordinates.

    Args:
        boxes: ``(n, 4)`` array-like of ``x1, y1, x2, y2``; ``n`` may be 0.
        scale: the factor returned by ``resize_long_side`` (positive, finite).

    Returns:
        A new float array of shape ``(n, 4)`` (float64 for integer input, else the input dtype).

    Raises:
        ValueError: wrong shape or non-positive / non-finite scale.
    """
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be positive and finite, got {scale!r}")
    boxes = np.asarray(boxes)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape (n, 4), got {boxes.shape}")
    if not np.issubdtype(boxes.dtype, np.floating):
        boxes = boxes.astype(np.float64)
    return boxes / boxes.dtype.type(scale)


def preprocess_caffe(image_rgb_uint8: np.ndarray) -> np.ndarray:
    """Keras "caffe" preprocessing of ResNet-50 / VGG-16: RGB -> BGR, minus the ImageNet mean.

    Identical to ``keras.applications.resnet50.preprocess_input`` (channels-last), without
    importing TensorFlow and without modifying the input. Pixels are not divided by 255.

    Args:
        image_rgb_uint8: ``(..., 3)`` array in RGB order, 0-255 range (e.g. from ``load_image``);
            a leading batch axis is allowed.

    Returns:
        A new C-contiguous float32 array of the same shape, in BGR order, mean-subtracted.

    Raises:
        ValueError: the last axis does not have 3 channels.
    """
    image = np.asarray(image_rgb_uint8)
    if image.ndim < 1 or image.shape[-1] != 3:
        raise ValueError(f"expected an array with 3 channels last (RGB), got shape {image.shape}")
    bgr = image[..., ::-1].astype(np.float32)
    return np.ascontiguousarray(bgr - np.asarray(IMAGENET_BGR_MEAN, dtype=np.float32))


def list_images(folder: str | bytes | os.PathLike, *, extensions: Iterable[str] = IMAGE_EXTENSIONS) -> list[str]:
    """All image files under ``folder``, recursively, as sorted relative POSIX paths.

    Files are selected by extension, case-insensitively (``.JPG`` counts). Symbolic links to
    files and directories are followed; a broken link with an image name is listed (so that
    whoever reads it reports it), anything else that is not a regular file (e.g. a FIFO) is
    not; a directory reached twice (symlink cycle or two links to the same place) is listed once.

    Args:
        folder: the root directory.
        extensions: accepted suffixes including the dot; defaults to ``IMAGE_EXTENSIONS``.

    Returns:
        Paths relative to ``folder`` with ``/`` separators, sorted by code point, e.g.
        ``["a/1.jpg", "b.PNG"]``. Non-UTF-8 names appear with surrogate escapes (``os.fsdecode``).

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        NotADirectoryError: ``folder`` is not a directory.
        OSError: a subdirectory cannot be read (rather than silently missing its images).
    """
    root = os.fsdecode(os.fspath(folder))
    if not os.path.exists(root):
        raise FileNotFoundError(f"{root}: no such directory")
    if not os.path.isdir(root):
        raise NotADirectoryError(f"{root}: not a directory")
    suffixes = tuple(e.lower() for e in extensions)

    def _raise(error: OSError) -> None:
        raise error

    found: list[str] = []
    visited: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, onerror=_raise, followlinks=True):
        st = os.stat(dirpath)
        key = (st.st_dev, st.st_ino)
        if key in visited:
            dirnames[:] = []  # already walked: a cycle or a second link to the same directory
            continue
        visited.add(key)
        for name in filenames:
            if not name.lower().endswith(suffixes):
                continue
            full = os.path.join(dirpath, name)
            # A broken symlink with an image name is listed, so that an extraction reports it
            # (load_image says "broken symbolic link"); FIFOs and sockets are not images.
            if not (os.path.isfile(full) or os.path.islink(full)):
                continue
            found.append(PurePath(os.path.relpath(full, root)).as_posix())
    return sorted(found)
