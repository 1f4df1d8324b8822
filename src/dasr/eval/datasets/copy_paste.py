"""copy-paste: instance-track's instances pasted onto real scenes, so no reference shares the query's background.

On instance-track every frame of a video shares its background, so a global descriptor can win
by matching the scene. Here (``data/make_copy_paste.py``, ``make copy-paste``):

* each instance-track query keeps its own frame and box (the file is copied byte for byte);
* each of ``N`` reference frames of that instance (default :data:`DEFAULT_REFERENCES` = 8, the
  middle frame of each of ``N`` equal stretches of its references in ``gt.txt`` order: the object
  seen along its whole track, and not the first reference, a few frames after the query) gives
  its ground-truth crop (the box rounded outwards to whole pixels, clipped to the frame), pasted
  at a random position and scale onto a different real scene: a paris-landmarks photo
  (database and query photos alike, each scene used at most once overall);
* ``M`` further scenes with nothing pasted are distractors (default :data:`DEFAULT_DISTRACTORS` =
  40): ``reference`` rows of the pseudo-instance :data:`DISTRACTOR_INSTANCE`, which no ``gt.txt``
  line lists, with a whole-image box. 28 x 8 + 40 = 264 of the 274 scenes.

The annotated box of a reference is the pasted rectangle, exactly, in the output image's pixels
(pixel-edge convention: ``x2 - x1`` is the pasted width in pixels), in both paste modes.

Constants, each fixed from a reason (none tuned on results):

* :data:`SHARE_RANGE` = (0.02, 0.25), the pasted area as a share of the scene, drawn
  log-uniformly (size is a scale quantity: every factor within the range is equally likely): an
  instance is an object in a scene, as in the Instance-160 frames, never filling it (at most a
  quarter of the area, half of each side) and never vanishing (2% of a 512 x 384 network input is
  about 4 cells of the stride-32 feature map).
* :data:`MAX_UPSCALE` = 2: enlarging invents no detail; a tracker box of a few pixels blown up
  further becomes a blur unlike any real object, so tiny crops stay small (the share is then
  below the drawn one; the ``limit`` column says ``upscale``).
* The aspect ratio is kept, and a crop that would not fit the scene is shrunk until it does
  (``limit`` = ``fit``). The position is uniform over every position where the crop lies
  wholly inside the scene (no centre bias that a centre-weighted pooling would profit from).
* Resizing: ``cv2.INTER_AREA`` when shrinking, ``cv2.INTER_LINEAR`` when enlarging, as
  :func:`dasr.io.images.resize_long_side` does.
* Paste modes (:data:`MODES`): ``hard`` (plain rectangle) and ``feathered``: alpha ramps
  linearly from 0 at the crop's edge to 1 at ``feather`` px inside (pixel centres), with
  ``feather`` = :data:`FEATHER_FRACTION` (8%) of the pasted box's shorter side, at least
  :data:`MIN_FEATHER_PX` (2) px, and at most the distance from the edge to the middle pixel's
  centre (``ceil(short / 2) - 0.5``: a box a few pixels wide keeps an opaque core). Reason: a
  sharp rectangle edge is a strong, artificial gradient that could attract saliency seeds and
  boxes to the paste boundary instead of the object; a band of 8% stays mostly within the slack
  of a tracking box around its object, so the instance itself stays opaque. Both modes use the same placements
  (same seed, same ``annotations.csv``); only the blending differs, so their results are paired.
* Images written: JPEG, quality :data:`JPEG_QUALITY` (95, Pillow's default chroma subsampling),
  for the pasted references AND the distractors (decoded and re-encoded the same way), so every
  database image has the same encoding history and nothing but the paste tells a reference from
  a distractor; q95 stays well above the source frames' own compression. PNG is available
  (``image_format='png'``, lossless, used by the tests).
* Randomness: ``numpy.random.default_rng(seed)``: one permutation of the scenes (the first
  ``28 N`` receive the references in query / reference order, the next ``M`` are distractors),
  then three uniforms per reference (share, x, y), in that order.

Registered as two benchmarks (stores and reports are keyed by benchmark name, so neither mixes
with instance-track's): ``copy-paste`` (hard) and ``copy-paste-feathered``, loaded from
``default_root(name)``. Whitening: the scenes ARE paris-landmarks (and paris6k-subset) photos, so
learning the whitening there leaks; :mod:`dasr.eval.pca_source` refuses those sources.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dasr.errors import InputError
from dasr.eval.datasets.common import Benchmark, bad_line, require_path, stays_inside
from dasr.eval.datasets.instance_track import load_instance_track, read_instance_track_folder

__all__ = ["BENCHMARK_OF_MODE", "DEFAULT_DISTRACTORS", "DEFAULT_REFERENCES", "DISTRACTOR_INSTANCE", "FIELDS",
           "FEATHER_FRACTION", "IMAGE_FORMATS", "JPEG_QUALITY", "MAX_UPSCALE", "MIN_FEATHER_PX", "MODES",
           "SCENE_COLLECTIONS", "SHARE_RANGE", "CopyPastePlan", "Placement", "build_copy_paste", "compose",
           "feather_alpha", "feather_width", "load_copy_paste", "load_copy_paste_feathered", "plan_copy_paste",
           "recipe_of"]

DEFAULT_REFERENCES = 8
DEFAULT_DISTRACTORS = 40
SHARE_RANGE: tuple[float, float] = (0.02, 0.25)
MAX_UPSCALE = 2.0
FEATHER_FRACTION = 0.08
MIN_FEATHER_PX = 2.0
JPEG_QUALITY = 95
MODES: tuple[str, ...] = ("hard", "feathered")
IMAGE_FORMATS: tuple[str, ...] = ("jpg", "png")
BENCHMARK_OF_MODE: dict[str, str] = {"hard": "copy-paste", "feathered": "copy-paste-feathered"}
DISTRACTOR_INSTANCE = "distractor"
# The collections whose images a copy-paste build holds (its scenes; its queries and crops come
# from instance-track): none of them may serve as its distractors.
SCENE_COLLECTIONS: tuple[str, ...] = ("paris-landmarks", "paris6k-subset")
FIELDS: tuple[str, ...] = ("image", "instance", "role", "width", "height", "x1", "y1", "x2", "y2", "source_image",
                           "crop_x1", "crop_y1", "crop_x2", "crop_y2", "scene", "scale", "share", "share_drawn",
                           "limit")

IntBox = tuple[int, int, int, int]


@dataclass(frozen=True)
class Placement:
    """One pasted reference.

    Attributes:
        instance: the instance (its query's ``instance``).
        source: the instance-track reference frame, relative to the instance-track folder.
        source_size: its ``(width, height)``.
        crop: the rectangle taken from it, ``x1, y1, x2, y2`` in whole pixels (end exclusive).
        scene: the scene image, relative to the scenes folder.
        scene_size: the scene's ``(width, height)``.
        box: the pasted rectangle in the scene, ``x1, y1, x2, y2`` in whole pixels (end exclusive).
        scale: the resize factor of the crop (both sides, before rounding).
        share_drawn: the drawn share of the scene's area (the box's share where ``limit`` is ``'share'``).
        limit: what set the scale: ``'share'``, ``'upscale'`` (:data:`MAX_UPSCALE`) or ``'fit'``.
        image: the output image, relative to the built folder.
    """

    instance: str
    source: str
    source_size: tuple[int, int]
    crop: IntBox
    scene: str
    scene_size: tuple[int, int]
    box: IntBox
    scale: float
    share_drawn: float
    limit: str
    image: str


@dataclass(frozen=True)
class CopyPastePlan:
    """Everything a build writes, decided from the annotations and the seed alone.

    Attributes:
        seed, references, distractors: the recipe's parameters.
        instance_track, scenes: the source folders.
        queries: ``(instance, image, width, height, box)`` of each instance-track query, in order.
        placements: the pasted references, query by query, ``references`` each.
        distractor_scenes: ``(scene image, (width, height))`` of each distractor, in order.
        sources_sha256: sha256 of the source annotation files (``instance-track/annotations.csv``, ...).
    """

    seed: int
    references: int
    distractors: int
    instance_track: Path
    scenes: Path
    queries: tuple[tuple[str, str, int, int, tuple[float, float, float, float]], ...]
    placements: tuple[Placement, ...]
    distractor_scenes: tuple[tuple[str, tuple[int, int]], ...]
    sources_sha256: dict[str, str]


def _sizes(dataset: str, csv_path: Path, roles: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    """image -> (width, height) of an annotations.csv, in file order (errors name file and line)."""
    out: dict[str, tuple[int, int]] = {}
    with open(require_path(dataset, csv_path), newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"image", "role", "width", "height"} - set(reader.fieldnames or ())
        if missing:
            raise bad_line(csv_path, 1, f"header lacks {sorted(missing)}")
        for row in reader:
            image, role = row["image"], row["role"]
            if role not in roles:
                raise bad_line(csv_path, reader.line_num, f"role {role!r} is none of {roles}")
            if image in out or not stays_inside(image):
                raise bad_line(csv_path, reader.line_num, f"image {image!r} listed twice or outside the folder")
            w, h = (int(v) if v.isdigit() and int(v) > 0 else 0 for v in (row["width"], row["height"]))
            if not (w and h):
                raise bad_line(csv_path, reader.line_num, "width/height are not positive integers")
            out[image] = (w, h)
    return out


def _crop_of(box: tuple[float, float, float, float], size: tuple[int, int], image: str) -> IntBox:
    """The ground-truth box rounded outwards to whole pixels, clipped to the frame."""
    w, h = size
    x1, y1 = max(0, math.floor(box[0])), max(0, math.floor(box[1]))
    x2, y2 = min(w, math.ceil(box[2])), min(h, math.ceil(box[3]))
    if x2 <= x1 or y2 <= y1:
        raise InputError(f"{image}: its box {box} covers no pixel of the {w}x{h} frame")
    return (x1, y1, x2, y2)


def _place(crop: IntBox, scene_size: tuple[int, int], u: np.ndarray) -> tuple[IntBox, float, float, str]:
    """The pasted rectangle of ``crop`` in a scene from three uniforms (share, x, y)."""
    cw, ch = crop[2] - crop[0], crop[3] - crop[1]
    sw, sh = scene_size
    lo, hi = SHARE_RANGE
    share = math.exp(math.log(lo) + float(u[0]) * (math.log(hi) - math.log(lo)))
    bounds = {"share": math.sqrt(share * sw * sh / (cw * ch)), "upscale": MAX_UPSCALE, "fit": min(sw / cw, sh / ch)}
    limit = min(bounds, key=lambda k: bounds[k])  # ties: the first (share, then upscale)
    scale = bounds[limit]
    w = min(sw, max(1, round(cw * scale)))
    h = min(sh, max(1, round(ch * scale)))
    x = min(sw - w, int(float(u[1]) * (sw - w + 1)))
    y = min(sh - h, int(float(u[2]) * (sh - h + 1)))
    return (x, y, x + w, y + h), scale, share, limit


def plan_copy_paste(instance_track: str | Path, scenes: str | Path, *, seed: int = 0,
                    references: int = DEFAULT_REFERENCES, distractors: int = DEFAULT_DISTRACTORS) -> CopyPastePlan:
    """Decides every placement of a build from the annotation files and ``seed`` (no image is read).

    Args:
        instance_track: the instance-track folder (``annotations.csv``, ``gt.txt``, images).
        scenes: the paris-landmarks folder (``annotations.csv``: image, role, width, height).
        seed: the random seed (a non-negative integer).
        references: ``N``, the references pasted per query.
        distractors: ``M``, the scenes kept without a paste.

    Returns:
        The plan.

    Raises:
        InputError: a bad parameter, ``N`` above an instance's reference count, fewer scenes than
            ``N * queries + M``, an instance named like the distractors, a box covering no pixel.
        DatasetMissingError: a source folder, annotation file or image is missing.
        ValueError: a malformed annotation file (file and line named).
    """
    for key, value, low in (("seed", seed, 0), ("references (N)", references, 1), ("distractors (M)", distractors, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InputError(f"{key} must be an integer >= {low}, got {value!r}")
    track_root, scene_root = Path(instance_track), Path(scenes)
    track = load_instance_track(track_root)
    frame = _sizes("instance-track", track_root / "annotations.csv", ("query", "reference"))
    scene_sizes = _sizes("paris-landmarks", scene_root / "annotations.csv", ("database", "query"))
    names = [q.name for q in track.queries]
    if len(set(names)) != len(names) or DISTRACTOR_INSTANCE in names:
        raise InputError(f"{track_root / 'annotations.csv'}: the queries' instances must be unique and none may be "
                         f"called {DISTRACTOR_INSTANCE!r}")
    for q in track.queries:
        if len(q.positives) < references:
            raise InputError(f"instance {q.name!r} has only {len(q.positives)} references in "
                             f"{track_root / 'gt.txt'}; N={references} references per instance is too many")
    needed = references * len(track.queries) + distractors
    if needed > len(scene_sizes):
        raise InputError(f"{scene_root / 'annotations.csv'}: {len(scene_sizes)} scenes, but N x queries + M = "
                         f"{references} x {len(track.queries)} + {distractors} = {needed} are needed (each scene is "
                         "used once)")
    rng = np.random.default_rng(seed)
    scene_list = list(scene_sizes)
    order = [scene_list[i] for i in rng.permutation(len(scene_list))[:needed]]
    placements = []
    for qi, q in enumerate(track.queries):
        n = len(q.positives)
        for k in range(references):
            idx = q.positives[(2 * k + 1) * n // (2 * references)]  # the middle of stretch k
            ref, scene = track.database[idx], order[qi * references + k]
            size = scene_sizes[scene]
            crop = _crop_of((q.positive_boxes or {})[idx], frame[ref], ref)
            box, scale, share, limit = _place(crop, size, rng.random(3))
            placements.append(Placement(q.name, ref, frame[ref], crop, scene, size, box, scale, share, limit,
                                        f"images/references/{q.name}/{q.name}_{k:02d}"))
    queries = tuple((q.name, q.image, *frame[q.image], q.box) for q in track.queries)  # type: ignore[misc]
    distractor_scenes = tuple((s, scene_sizes[s]) for s in order[len(placements):])
    sha = {f"{name}/{f}": hashlib.sha256((folder / f).read_bytes()).hexdigest() for name, folder, f in
           (("instance-track", track_root, "annotations.csv"), ("instance-track", track_root, "gt.txt"),
            ("paris-landmarks", scene_root, "annotations.csv"))}
    return CopyPastePlan(seed, references, distractors, track_root, scene_root, queries, tuple(placements),
                         distractor_scenes, sha)


def feather_width(w: int, h: int) -> float:
    """The feather (px) of a ``w`` x ``h`` box: 8% of its shorter side, >= 2 px, <= ``ceil(short / 2) - 0.5``.

    The upper bound is the distance from the edge to the centre of the middle pixel, so that the
    middle pixels of a narrow box still get alpha 1 (:func:`feather_alpha`).
    """
    short = min(w, h)
    return min(max(MIN_FEATHER_PX, FEATHER_FRACTION * short), (short + 1) // 2 - 0.5)


def feather_alpha(w: int, h: int, feather: float) -> np.ndarray:
    """``h x w`` float32 alpha: ``distance of the pixel centre to the nearest edge / feather``, clipped to [0, 1]."""
    dx = np.minimum(np.arange(w) + 0.5, w - np.arange(w) - 0.5)
    dy = np.minimum(np.arange(h) + 0.5, h - np.arange(h) - 0.5)
    return np.clip(np.minimum(dy[:, None], dx[None, :]) / feather, 0.0, 1.0).astype(np.float32)


def compose(scene: np.ndarray, crop: np.ndarray, box: IntBox, mode: str) -> np.ndarray:
    """The scene with ``crop`` resized to ``box`` and pasted there.

    Args:
        scene: ``H x W x 3`` uint8.
        crop: ``h x w x 3`` uint8 (resized with INTER_AREA when shrinking, INTER_LINEAR when growing).
        box: ``x1, y1, x2, y2`` inside the scene, end exclusive.
        mode: ``'hard'`` (rectangle) or ``'feathered'`` (:func:`feather_alpha`).

    Returns:
        A new ``H x W x 3`` uint8 array.

    Raises:
        InputError: an unknown mode or a box outside the scene.
    """
    import cv2

    if mode not in MODES:
        raise InputError(f"unknown paste mode {mode!r}; known: {', '.join(MODES)}")
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    if not (0 <= x1 < x2 <= scene.shape[1] and 0 <= y1 < y2 <= scene.shape[0]):
        raise InputError(f"box {box} is not inside the {scene.shape[1]}x{scene.shape[0]} scene")
    shrink = w * h < crop.shape[0] * crop.shape[1]
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    resized = cv2.resize(np.ascontiguousarray(crop), (w, h), interpolation=interpolation)
    out = scene.copy()
    if mode == "hard":
        out[y1:y2, x1:x2] = resized
    else:
        alpha = feather_alpha(w, h, feather_width(w, h))[:, :, None]
        blend = alpha * resized.astype(np.float32) + (1.0 - alpha) * scene[y1:y2, x1:x2].astype(np.float32)
        out[y1:y2, x1:x2] = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
    return out


def recipe_of(plan: CopyPastePlan, mode: str, image_format: str = "jpg") -> dict[str, Any]:
    """The ``recipe.json`` of a build: its parameters, constants and the sources' sha256 (no path)."""
    return {"benchmark": BENCHMARK_OF_MODE[mode], "mode": mode, "seed": plan.seed, "references": plan.references,
            "distractors": plan.distractors, "queries": len(plan.queries), "share_range": list(SHARE_RANGE),
            "share_sampling": "log-uniform", "max_upscale": MAX_UPSCALE,
            "feather": {"fraction_of_shorter_side": FEATHER_FRACTION, "min_px": MIN_FEATHER_PX,
                        "max": "ceil(shorter side / 2) - 0.5 (an opaque core)", "applies": mode == "feathered"},
            "reference_choice": "middle frame of each of N equal stretches of the gt.txt references",
            "crop": "ground-truth box rounded outwards to whole pixels, clipped to the frame",
            "resize": "cv2.INTER_AREA shrinking, cv2.INTER_LINEAR growing, aspect ratio kept",
            "image_format": image_format, "jpeg_quality": JPEG_QUALITY if image_format == "jpg" else None,
            "rng": "numpy.random.default_rng(seed): permutation of the scenes, then (share, x, y) per reference",
            "sources_sha256": dict(sorted(plan.sources_sha256.items()))}


def _encode(image: np.ndarray, image_format: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    if image_format == "jpg":
        Image.fromarray(image).save(buf, format="JPEG", quality=JPEG_QUALITY)
    else:
        Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def _read(path: Path, size: tuple[int, int]) -> np.ndarray:
    from dasr.io.images import load_image

    image = load_image(path)
    if (image.shape[1], image.shape[0]) != tuple(size):
        raise InputError(f"{path}: decoded as {image.shape[1]}x{image.shape[0]}, but its annotations.csv says "
                         f"{size[0]}x{size[1]}")
    return image


def _rows(plan: CopyPastePlan, ext: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for instance, image, w, h, box in plan.queries:
        rows.append({"image": f"images/queries/{image.removeprefix('images/')}", "instance": instance, "role": "query",
                     "width": w, "height": h, **dict(zip(("x1", "y1", "x2", "y2"), map(str, box))),
                     "source_image": image})
        for p in (p for p in plan.placements if p.instance == instance):
            sw, sh = p.scene_size
            area = (p.box[2] - p.box[0]) * (p.box[3] - p.box[1])
            rows.append({"image": p.image + ext, "instance": instance, "role": "reference", "width": sw, "height": sh,
                         **dict(zip(("x1", "y1", "x2", "y2"), p.box)), "source_image": p.source,
                         **dict(zip(("crop_x1", "crop_y1", "crop_x2", "crop_y2"), p.crop)), "scene": p.scene,
                         "scale": f"{p.scale:.6f}", "share": f"{area / (sw * sh):.6f}",
                         "share_drawn": f"{p.share_drawn:.6f}",
                         "limit": p.limit})
    for k, (scene, (sw, sh)) in enumerate(plan.distractor_scenes):
        rows.append({"image": f"images/distractors/{DISTRACTOR_INSTANCE}_{k:03d}{ext}", "instance": DISTRACTOR_INSTANCE,
                     "role": "reference", "width": sw, "height": sh, "x1": 0, "y1": 0, "x2": sw, "y2": sh,
                     "scene": scene})
    return rows


def _readme(recipe: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The built folder's README.md: what it holds, then the recipe and its reasons (this module's docstring)."""
    refs = sum(r["role"] == "reference" and r["instance"] != DISTRACTOR_INSTANCE for r in rows)
    fmt = f"JPEG quality {JPEG_QUALITY}" if recipe["image_format"] == "jpg" else "PNG (lossless)"
    recipe_text = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", (__doc__ or "\n").split("\n", 1)[1]).replace("``", "`")
    return f"""# {recipe['benchmark']}: instance-track instances pasted onto paris-landmarks scenes

Built by `data/make_copy_paste.py` (`dasr.eval.datasets.copy_paste`).

- Seed {recipe['seed']}, {recipe['mode']} paste; {recipe['queries']} queries, {refs} pasted references (N={recipe['references']} per query), {recipe['distractors']} distractors.
- Pasted references and distractors are written as {fmt}; queries are copied from their source files.
- Every parameter is in `recipe.json` (with the sha256 of the source annotation files).

- `annotations.csv`: image,instance,role,width,height,x1,y1,x2,y2 (the instance-track columns), then provenance:
  source_image (instance-track frame), crop_x1..crop_y2 (the rectangle taken from it), scene (paris-landmarks
  photo), scale, share (pasted area / scene area), share_drawn, limit (what set the scale).
- `gt.txt`: `query N ref1 ... refN`, as instance-track; the distractors are in no line.
- Licences: those of instance-track (academic research use) and paris-landmarks (research use).

## Recipe
{recipe_text}"""


def _write_build(plan: CopyPastePlan, folder: Path, mode: str, image_format: str, recipe: bytes,
                 progress: bool) -> None:
    from tqdm import tqdm

    ext = "." + image_format
    rows = _rows(plan, ext)
    by_image = {p.image + ext: p for p in plan.placements}
    distractor = dict(zip((r["image"] for r in rows if r["instance"] == DISTRACTOR_INSTANCE), plan.distractor_scenes))
    for row in tqdm(rows, desc=BENCHMARK_OF_MODE[mode], unit="image", disable=not progress):
        dst = folder / row["image"]
        dst.parent.mkdir(parents=True, exist_ok=True)
        if row["role"] == "query":
            shutil.copyfile(plan.instance_track / row["source_image"], dst)
        elif row["image"] in by_image:
            p = by_image[row["image"]]
            x1, y1, x2, y2 = p.crop
            source = _read(plan.instance_track / p.source, p.source_size)
            scene = _read(plan.scenes / p.scene, p.scene_size)
            dst.write_bytes(_encode(compose(scene, source[y1:y2, x1:x2], p.box, mode), image_format))
        else:
            scene_name, size = distractor[row["image"]]
            dst.write_bytes(_encode(_read(plan.scenes / scene_name, size), image_format))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    (folder / "annotations.csv").write_text(text.getvalue(), encoding="utf-8")
    gt = []
    for instance, *_ in plan.queries:
        refs = [r["image"] for r in rows if r["instance"] == instance and r["role"] == "reference"]
        query = next(r["image"] for r in rows if r["instance"] == instance and r["role"] == "query")
        gt.append(" ".join([query, str(len(refs)), *refs]))
    (folder / "gt.txt").write_text("\n".join(gt) + "\n", encoding="utf-8")
    (folder / "recipe.json").write_bytes(recipe)
    (folder / "README.md").write_text(_readme(json.loads(recipe), rows), encoding="utf-8")


def build_copy_paste(plan: CopyPastePlan, out: str | Path, *, mode: str = "hard", image_format: str = "jpg",
                     force: bool = False, progress: bool = True) -> bool:
    """Writes the benchmark folder of ``plan`` in one paste ``mode``, crash-safely.

    Everything is written into a temporary sibling of ``out`` (``.<name>.tmp-<hex>``), which is
    renamed onto ``out`` at the end: a crash leaves no half-built folder under the final name.
    An existing ``out`` with the same ``recipe.json`` is kept as it is (the build is
    deterministic); any other existing, non-empty ``out`` is refused unless ``force``.

    Args:
        plan: the placements (:func:`plan_copy_paste`).
        out: the folder to create.
        mode: ``'hard'`` or ``'feathered'``.
        image_format: ``'jpg'`` (quality :data:`JPEG_QUALITY`) or ``'png'`` for the written images.
        force: replace a different existing build (or any other content of ``out``).
        progress: show a progress bar over the images.

    Returns:
        True when the folder was written, False when the same build was already there.

    Raises:
        InputError: an unknown mode or format, ``out`` holding something else (without
            ``force``), an image whose decoded size differs from its annotation.
        OSError: a write failed (``out`` is then left as it was).
    """
    from dasr.io.atomic import fsync_dir, temp_sibling

    if mode not in MODES:
        raise InputError(f"unknown paste mode {mode!r}; known: {', '.join(MODES)}")
    if image_format not in IMAGE_FORMATS:
        raise InputError(f"unknown image format {image_format!r}; known: {', '.join(IMAGE_FORMATS)}")
    out = Path(out)
    recipe = (json.dumps(recipe_of(plan, mode, image_format), indent=2, sort_keys=True) + "\n").encode()
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    old = out.is_dir() and any(out.iterdir())
    if old and not force:
        existing = out / "recipe.json"
        if existing.is_file() and existing.read_bytes() == recipe:
            return False
        raise InputError(f"{out}: holds another build or other files (its recipe.json differs or is missing); "
                         "pass --force (force=True) to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(out)
    tmp.mkdir()
    try:
        _write_build(plan, tmp, mode, image_format, recipe, progress)
        if out.is_dir():
            trash = temp_sibling(out)
            out.rename(trash)
            tmp.rename(out)
            shutil.rmtree(trash)
        else:
            tmp.rename(out)
        fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return True


def load_copy_paste(root: str | Path, check_images: bool = True, *, feathered: bool = False) -> Benchmark:
    """A copy-paste build (:func:`build_copy_paste`) as the benchmark ``copy-paste`` or ``copy-paste-feathered``.

    The folder is read as instance-track is
    (:func:`~dasr.eval.datasets.instance_track.read_instance_track_folder`): database = the
    ``reference`` rows in file order (the distractors included), queries = the ``query`` rows,
    positives from ``gt.txt``, boxes from ``annotations.csv``. Its ``recipe.json`` must name the
    paste mode asked for, so that one mode's build never runs (and is cached) under the other's name.

    Args:
        root: the built folder.
        check_images: also check that every image file exists.
        feathered: load it as ``copy-paste-feathered`` (else ``copy-paste``, the hard paste).

    Returns:
        The benchmark (``ap='instance'``, ``name`` the registered name).

    Raises:
        DatasetMissingError: the folder, ``recipe.json``, an annotation file or an image is missing.
        ValueError: a malformed ``recipe.json`` (or one of the other mode), csv row or ``gt.txt``
            line (file and line named).
    """
    mode = "feathered" if feathered else "hard"
    name = BENCHMARK_OF_MODE[mode]
    root = Path(root)
    require_path(name, root)
    recipe_path = require_path(name, root / "recipe.json",
                               "missing (not a copy-paste build; make one with data/make_copy_paste.py)")
    try:
        recipe = json.loads(recipe_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{recipe_path}: not a valid JSON recipe ({e})") from None
    built = recipe.get("mode") if isinstance(recipe, dict) else None
    if built != mode:
        other = BENCHMARK_OF_MODE.get(built, "") if isinstance(built, str) else ""
        raise InputError(f"{recipe_path}: mode {built!r}, not {mode!r}: this folder is not a {name} build"
                         + (f" (load it as {other})" if other else ""))
    return read_instance_track_folder(root, name, check_images)


def load_copy_paste_feathered(root: str | Path, check_images: bool = True) -> Benchmark:
    """``load_copy_paste(root, check_images, feathered=True)``: the registry's ``copy-paste-feathered``."""
    return load_copy_paste(root, check_images, feathered=True)
