"""Benchmark loaders: one ``Benchmark`` (database + queries + ground truth) per dataset.

Every loader reads the dataset's own annotation files as published, validates them, and
returns the same data model, so the search and evaluation code never sees a dataset format:

* ``Benchmark.database``: image paths relative to ``Benchmark.root``, in a fixed order; every
  index in the ground truth (``Query.positives``, ``Query.junk``, ``Query.positive_boxes``) is
  an index into this tuple.
* ``Query.box``: ``x1, y1, x2, y2`` in the pixels of the image file as stored, or ``None`` for
  a whole-image query.
* ``Benchmark.ap``: which AP the benchmark is scored with (see ``dasr.metrics``):
  ``'instance'`` (AP@k, Instance-160/335 style), ``'oxford'`` (trapezoid, junk removed) or
  ``'holidays'`` (trapezoid, the query itself removed from its own list).

A missing dataset raises ``DatasetMissingError`` (expected path, layout, where it is
published); a malformed annotation raises ``ValueError`` naming the file and line.

Registry names: ``instance-track``, ``paris-landmarks``, ``instance-160``, ``instance-335``,
``instre``, ``holidays``, ``oxford5k``, ``paris6k``, ``roxford5k``, ``rparis6k``.
"""

from __future__ import annotations

import csv
import os
import pickle
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from dasr.metrics import revisitop_positives_junk

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Query:
    """One query of a benchmark.

    Attributes:
        name: a readable, unique id (the query image path, or e.g. ``'all_souls_1'``).
        image: the query image, relative to ``Benchmark.root``.
        box: ``x1, y1, x2, y2`` in the pixels of the stored image; ``None`` = whole image.
        positives: indices into ``Benchmark.database`` of the relevant images.
        junk: indices ignored by the AP (Oxford/Paris junk, revisitop's other difficulty).
        positive_boxes: database index -> ground-truth box of the instance, where known.
    """

    name: str
    image: str
    box: Box | None
    positives: tuple[int, ...]
    junk: tuple[int, ...] = ()
    positive_boxes: dict[int, Box] | None = None


@dataclass(frozen=True)
class Benchmark:
    """A retrieval benchmark: the database, the queries and how it is scored.

    Attributes:
        name: registry name (``'instance-160'``, ``'roxford5k'``, ...).
        root: the folder every path is relative to.
        database: image paths relative to ``root``.
        queries: the queries, in the dataset's own order.
        ap: ``'instance'``, ``'oxford'`` or ``'holidays'`` (see the module docstring).
        query_in_database: the query images are database images and must be dropped from
            their own result list before scoring (Holidays). Oxford5k/Paris6k also contain
            their query images, but their protocol keeps them (they are listed as good), so
            this stays ``False`` there.
    """

    name: str
    root: Path
    database: tuple[str, ...]
    queries: tuple[Query, ...]
    ap: str
    query_in_database: bool = False

    def __post_init__(self) -> None:
        # Catch index errors here once, instead of as wrong scores in the evaluation.
        if self.ap not in ("instance", "oxford", "holidays"):
            raise ValueError(f"{self.name}: unknown ap {self.ap!r}")
        n = len(self.database)
        for q in self.queries:
            for idx in (*q.positives, *q.junk, *(q.positive_boxes or {})):
                if not 0 <= idx < n:
                    raise ValueError(f"{self.name}: query {q.name!r} refers to database index {idx} "
                                     f"outside [0, {n})")


class DatasetMissingError(FileNotFoundError):
    """A dataset (or one of its files) is not where the loader looked.

    The message names the dataset, the expected path, the expected layout and where the
    dataset is published, so that it can be shown to the user as is.
    """

    def __init__(self, dataset: str, path: str | Path, detail: str = "") -> None:
        info = _DATASET_INFO.get(dataset, {"layout": "(unknown dataset)", "source": "(unknown)"})
        self.dataset = dataset
        self.path = Path(path)
        message = (
            f"dataset '{dataset}' not found: {detail or 'missing'}: {path}\n"
            f"expected layout:\n{info['layout']}\n"
            f"where to get it: {info['source']}"
        )
        super().__init__(message)

    def __str__(self) -> str:  # OSError would otherwise print only the first argument oddly
        return str(self.args[0])


_DATASET_INFO: dict[str, dict[str, str]] = {
    "instance-track": {
        "layout": "  <root>/annotations.csv  (image,instance,role,width,height,x1,y1,x2,y2,...)\n"
        "  <root>/gt.txt           (query N ref1 ... refN)\n"
        "  <root>/images/...",
        "source": "the project's shared folder shared/data/instance-track (built from public "
        "tracking benchmarks, see its README.md)",
    },
    "paris-landmarks": {
        "layout": "  <root>/annotations.csv  (image,landmark,role,width,height,...)\n"
        "  <root>/images/database/<landmark>/*.jpg, <root>/images/query/<landmark>/*.jpg",
        "source": "the project's shared folder shared/data/paris-landmarks (see its README.md)",
    },
    "instance-160": {
        "layout": "  <root>/gt.txt          (query N ref1 ... refN, paths relative to <root>)\n"
        "  <root>/boxes.txt       (optional: path x1 y1 x2 y2 [query])\n"
        "  <root>/distractors.txt (optional: one extra database image per line)",
        "source": "no public download known; built by Zhan & Zhao, 'Instance search via instance "
        "level segmentation and feature representation' (FCIS+XD; J. Visual Communication and "
        "Image Representation; arXiv:1806.03576) "
        "and used by Xiao et al. (DASR, ACM TOMM 2022); ask the authors (Wan-Lei Zhao, Xiamen "
        "University). See data/README.md",
    },
    "instance-335": {
        "layout": "  <root>/gt.txt          (query N ref1 ... refN, paths relative to <root>)\n"
        "  <root>/boxes.txt       (optional: path x1 y1 x2 y2 [query])\n"
        "  <root>/distractors.txt (optional: one extra database image per line)",
        "source": "no public download known; used by DASR (Xiao, Zhao et al., ACM TOMM 18(3s), "
        "2022), from the group of Wan-Lei Zhao (Xiamen University), whose DASR code "
        "(github.com/wlzhao22/DASR) ships no data; ask the authors. See data/README.md",
    },
    "instre": {
        "layout": "  <root>/gnd_instre.mat  (imlist, qimlist, gnd(i).ok, gnd(i).bbx)\n"
        "  <root>/INSTRE-S1/..., <root>/INSTRE-S2/..., <root>/INSTRE-M/...",
        "source": "INSTRE (Wang & Jiang); protocol of Iscen et al.; run data/download_instre.sh",
    },
    "holidays": {
        "layout": "  <root>/jpg/NNNNNN.jpg   (1491 images; group = NNNNNN // 100, query = first "
        "of a group)",
        "source": "INRIA Holidays (Jegou et al.); run data/download_holidays.sh",
    },
    "oxford5k": {
        "layout": "  <root>/jpg/*.jpg\n  <root>/gt/<landmark>_<k>_{query,good,ok,junk}.txt "
        "(gt_files_170407)",
        "source": "Oxford Buildings (VGG, Philbin et al.); run data/download_oxford5k.sh",
    },
    "paris6k": {
        "layout": "  <root>/jpg/*.jpg (flat)\n  <root>/gt/<landmark>_<k>_{query,good,ok,junk}.txt "
        "(paris_120310)",
        "source": "Paris Buildings (VGG, Philbin et al.); run data/download_paris6k.sh",
    },
    "roxford5k": {
        "layout": "  <root>/gnd_roxford5k.pkl\n  <root>/jpg/<imlist[i]>.jpg",
        "source": "Revisited Oxford (Radenovic et al., revisitop); run data/download_roxford5k.sh",
    },
    "rparis6k": {
        "layout": "  <root>/gnd_rparis6k.pkl\n  <root>/jpg/<imlist[i]>.jpg (flat)",
        "source": "Revisited Paris (Radenovic et al., revisitop); run data/download_rparis6k.sh",
    },
}

# Data that lives in the project's shared folder rather than under $DASR_DATA.
_SHARED_DATASETS = ("instance-track", "paris-landmarks")


# --- roots --------------------------------------------------------------------------------------

def default_root(name: str, start: str | Path | None = None) -> Path:
    """The folder a dataset is loaded from when no root is given.

    ``instance-track`` and ``paris-landmarks`` live in the project's shared folder: the current
    working directory (or ``start``) and each of its parents are searched for
    ``shared/data/<name>`` (so both ``<repo>/shared/data/<name>`` and the sibling checkout
    layout ``<repo>/../shared/data/<name>`` are found). Every other dataset, and these two
    when no shared folder is found, defaults to ``$DASR_DATA/<name>`` with ``DASR_DATA``
    defaulting to ``~/dasr-data``.

    Args:
        name: registry name.
        start: folder to start the upward search from (default: the current directory).

    Returns:
        The folder (it may not exist; the loader reports that).
    """
    if name in _SHARED_DATASETS:
        here = Path(start if start is not None else Path.cwd()).resolve()
        for folder in (here, *here.parents):
            candidate = folder / "shared" / "data" / name
            if candidate.is_dir():
                return candidate
    return Path(os.environ.get("DASR_DATA", "~/dasr-data")).expanduser() / name


# --- small parsing helpers ------------------------------------------------------------------------

def _require(dataset: str, path: Path, what: str = "missing") -> Path:
    if not path.exists():
        raise DatasetMissingError(dataset, path, what)
    return path


def _bad_line(path: Path, line_no: int, problem: str) -> ValueError:
    return ValueError(f"{path}, line {line_no}: {problem}")


def _parse_box(values: Sequence[str], path: Path, line_no: int) -> Box:
    try:
        x1, y1, x2, y2 = (float(v) for v in values)
    except ValueError:
        raise _bad_line(path, line_no, f"box {' '.join(values)!r} is not four numbers") from None
    if not (x2 >= x1 and y2 >= y1):
        raise _bad_line(path, line_no, f"box {x1, y1, x2, y2} has x2 < x1 or y2 < y1")
    return (x1, y1, x2, y2)


def _read_gt_txt(path: Path) -> list[tuple[int, str, tuple[str, ...]]]:
    """Parses ``query N ref1 ... refN`` lines into ``(line_no, query, refs)``."""
    entries = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            tokens = line.split()
            if not tokens:
                continue
            if len(tokens) < 2:
                raise _bad_line(path, line_no, "expected 'query N ref1 ... refN'")
            try:
                count = int(tokens[1])
            except ValueError:
                raise _bad_line(path, line_no, f"count N={tokens[1]!r} is not an integer") from None
            refs = tuple(tokens[2:])
            if count != len(refs):
                raise _bad_line(path, line_no, f"N={count} but {len(refs)} references follow")
            if len(set(refs)) != len(refs):
                raise _bad_line(path, line_no, "a reference is listed twice")
            entries.append((line_no, tokens[0], refs))
    return entries


def _read_path_list(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [s for s in (line.strip() for line in f) if s]


def _check_images(dataset: str, root: Path, paths: Iterable[str]) -> None:
    missing = [p for p in dict.fromkeys(paths) if not (root / p).is_file()]
    if missing:
        shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise DatasetMissingError(dataset, root / missing[0],
                                  f"{len(missing)} image(s) missing ({shown}); first one")


def _index_of(database: Sequence[str]) -> dict[str, int]:
    return {p: i for i, p in enumerate(database)}


# --- instance-track (shared) ----------------------------------------------------------------------

def load_instance_track(root: str | Path, check_images: bool = True) -> Benchmark:
    """The shared tracking-derived instance-search set (Instance-160 recipe).

    Database: the ``reference`` rows of ``annotations.csv`` in file order. Queries: the
    ``query`` rows in file order, named by their ``instance``, with the csv box; positives are
    the references that ``gt.txt`` lists for the query, with their csv boxes. Every ``gt.txt``
    line is checked (``N`` matches, every path is an ``annotations.csv`` reference).

    Args:
        root: the ``instance-track`` folder.
        check_images: also check that every image file exists.

    Returns:
        The benchmark (``ap='instance'``).

    Raises:
        DatasetMissingError: the folder, a file or an image is missing.
        ValueError: a malformed csv row or ``gt.txt`` line (file and line named).
    """
    name = "instance-track"
    root = Path(root)
    _require(name, root)
    csv_path = _require(name, root / "annotations.csv")
    gt_path = _require(name, root / "gt.txt")

    boxes: dict[str, Box] = {}
    roles: dict[str, str] = {}
    instance_of: dict[str, str] = {}
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        needed = {"image", "instance", "role", "x1", "y1", "x2", "y2"}
        if not needed <= set(reader.fieldnames or ()):
            raise _bad_line(csv_path, 1, f"header lacks {sorted(needed - set(reader.fieldnames or ()))}")
        for row in reader:
            line_no = reader.line_num
            image, role = row["image"], row["role"]
            if role not in ("query", "reference"):
                raise _bad_line(csv_path, line_no, f"role {role!r} is neither 'query' nor 'reference'")
            if image in roles:
                raise _bad_line(csv_path, line_no, f"image {image!r} listed twice")
            roles[image] = role
            instance_of[image] = row["instance"]
            boxes[image] = _parse_box([row[k] for k in ("x1", "y1", "x2", "y2")], csv_path, line_no)

    database = tuple(p for p, r in roles.items() if r == "reference")
    index = _index_of(database)
    refs_of: dict[str, tuple[str, ...]] = {}
    for line_no, query, refs in _read_gt_txt(gt_path):
        if roles.get(query) != "query":
            raise _bad_line(gt_path, line_no, f"query {query!r} is not a 'query' row of annotations.csv")
        if query in refs_of:
            raise _bad_line(gt_path, line_no, f"query {query!r} has a second line")
        for ref in refs:
            if roles.get(ref) != "reference":
                raise _bad_line(gt_path, line_no, f"reference {ref!r} is not a 'reference' row of annotations.csv")
        refs_of[query] = refs

    queries = []
    for image, role in roles.items():
        if role != "query":
            continue
        if image not in refs_of:
            raise ValueError(f"{gt_path}: no line for query {image!r} of annotations.csv")
        positives = tuple(index[r] for r in refs_of[image])
        queries.append(Query(
            name=instance_of[image],
            image=image,
            box=boxes[image],
            positives=positives,
            positive_boxes={i: boxes[database[i]] for i in positives},
        ))
    if check_images:
        _check_images(name, root, roles)
    return Benchmark(name=name, root=root, database=database, queries=tuple(queries), ap="instance")


# --- paris-landmarks (shared) ---------------------------------------------------------------------

def load_paris_landmarks(root: str | Path, check_images: bool = True) -> Benchmark:
    """The shared Paris landmark set (whole-image search, folder labels).

    Database: the ``database`` rows of ``annotations.csv`` in file order. Queries: the
    ``query`` rows (whole image, ``box=None``), named by their image path; positives are the
    database images of the same landmark. No junk.

    Args:
        root: the ``paris-landmarks`` folder.
        check_images: also check that every image file exists.

    Returns:
        The benchmark (``ap='oxford'``).

    Raises:
        DatasetMissingError: the folder, the csv or an image is missing.
        ValueError: a malformed csv row, or a query whose landmark has no database image.
    """
    name = "paris-landmarks"
    root = Path(root)
    _require(name, root)
    csv_path = _require(name, root / "annotations.csv")
    rows: list[tuple[int, str, str, str]] = []
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        needed = {"image", "landmark", "role"}
        if not needed <= set(reader.fieldnames or ()):
            raise _bad_line(csv_path, 1, f"header lacks {sorted(needed - set(reader.fieldnames or ()))}")
        for row in reader:
            if row["role"] not in ("query", "database"):
                raise _bad_line(csv_path, reader.line_num, f"role {row['role']!r} is neither 'query' nor 'database'")
            if not row["image"] or not row["landmark"]:
                raise _bad_line(csv_path, reader.line_num, "empty image or landmark")
            rows.append((reader.line_num, row["image"], row["landmark"], row["role"]))

    database = tuple(image for _, image, _, role in rows if role == "database")
    landmark_of = {image: lm for _, image, lm, role in rows if role == "database"}
    queries = []
    for line_no, image, landmark, role in rows:
        if role != "query":
            continue
        positives = tuple(i for i, p in enumerate(database) if landmark_of[p] == landmark)
        if not positives:
            raise _bad_line(csv_path, line_no, f"landmark {landmark!r} has no database image")
        queries.append(Query(name=image, image=image, box=None, positives=positives))
    if check_images:
        _check_images(name, root, (image for _, image, _, _ in rows))
    return Benchmark(name=name, root=root, database=database, queries=tuple(queries), ap="oxford")


# --- Instance-160 / Instance-335 ------------------------------------------------------------------

def _read_boxes_txt(path: Path) -> tuple[dict[str, Box], dict[tuple[str, str], Box]]:
    """``path x1 y1 x2 y2 [query]`` lines -> (box per image, box per (query, image))."""
    general: dict[str, Box] = {}
    per_query: dict[tuple[str, str], Box] = {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            tokens = line.split()
            if not tokens:
                continue
            if len(tokens) not in (5, 6):
                raise _bad_line(path, line_no, "expected 'path x1 y1 x2 y2 [query]'")
            box = _parse_box(tokens[1:5], path, line_no)
            if len(tokens) == 6:
                key = (tokens[5], tokens[0])
                if key in per_query:
                    raise _bad_line(path, line_no, f"second box for {tokens[0]!r} and query {tokens[5]!r}")
                per_query[key] = box
            else:
                if tokens[0] in general:
                    raise _bad_line(path, line_no, f"second box for {tokens[0]!r}; add the query path "
                                    "as a sixth column to tell instances apart")
                general[tokens[0]] = box
    return general, per_query


def _load_instance_gt(name: str, root: str | Path, check_images: bool = True) -> Benchmark:
    """Instance-160 / Instance-335 from ``gt.txt`` (+ optional ``boxes.txt``, ``distractors.txt``).

    Layout (paths relative to ``root``):

    * ``gt.txt``: one line per query, ``query N ref1 ... refN``.
    * ``boxes.txt`` (optional): ``path x1 y1 x2 y2`` per line, pixels of the stored image; an
      optional sixth column ``query`` restricts the box to that query (for an image that shows
      several instances) and wins over a box without it. The query's own box is the line of
      the query image. Without the file, every box is ``None`` (no localization evaluation).
    * ``distractors.txt`` (optional): one extra database image per line.

    Database: every reference of any line, in first-seen order, then the distractors not
    already in it. Query names are the query image paths.

    Raises:
        DatasetMissingError: the root, ``gt.txt`` or an image is missing.
        ValueError: a malformed line (file and line named).
    """
    root = Path(root)
    _require(name, root)
    gt_path = _require(name, root / "gt.txt")
    entries = _read_gt_txt(gt_path)
    general: dict[str, Box] = {}
    per_query: dict[tuple[str, str], Box] = {}
    boxes_path = root / "boxes.txt"
    has_boxes = boxes_path.is_file()
    if has_boxes:
        general, per_query = _read_boxes_txt(boxes_path)

    database = list(dict.fromkeys(ref for _, _, refs in entries for ref in refs))
    distractors_path = root / "distractors.txt"
    if distractors_path.is_file():
        seen = set(database)
        database.extend(p for p in dict.fromkeys(_read_path_list(distractors_path)) if p not in seen)
    index = _index_of(database)

    def box_for(query: str, image: str) -> Box | None:
        return per_query.get((query, image), general.get(image))

    queries = []
    seen_queries: set[str] = set()
    for line_no, query, refs in entries:
        if query in seen_queries:
            raise _bad_line(gt_path, line_no, f"query {query!r} has a second line")
        seen_queries.add(query)
        positives = tuple(index[r] for r in refs)
        positive_boxes = None
        if has_boxes:
            positive_boxes = {index[r]: b for r in refs if (b := box_for(query, r)) is not None}
        queries.append(Query(name=query, image=query, box=box_for(query, query),
                             positives=positives, positive_boxes=positive_boxes))
    if check_images:
        _check_images(name, root, [*seen_queries, *database])
    return Benchmark(name=name, root=root, database=tuple(database), queries=tuple(queries), ap="instance")


def load_instance_160(root: str | Path, check_images: bool = True) -> Benchmark:
    """Instance-160 (Zhan & Zhao); layout in ``_load_instance_gt``. ``ap='instance'``."""
    return _load_instance_gt("instance-160", root, check_images)


def load_instance_335(root: str | Path, check_images: bool = True) -> Benchmark:
    """Instance-335 (as used by DASR); layout in ``_load_instance_gt``. ``ap='instance'``."""
    return _load_instance_gt("instance-335", root, check_images)


# --- INSTRE ---------------------------------------------------------------------------------------

def _mat_field(record: Any, field: str) -> Any:
    """A field of one MATLAB struct as ``scipy.io.loadmat`` returns it (record or mat_struct)."""
    if isinstance(record, Mapping):
        return record[field]
    if isinstance(record, np.void) or (isinstance(record, np.ndarray) and record.dtype.names):
        return record[field]
    return getattr(record, field)


def _mat_strings(value: Any) -> list[str]:
    return [str(np.asarray(s).ravel()[0]) if np.asarray(s).size else "" for s in np.ravel(value)]


def load_instre(
    root: str | Path,
    bbx_format: str = "xyxy",
    ap: str = "oxford",
    check_images: bool = True,
) -> Benchmark:
    """INSTRE under the protocol of Iscen et al. (``gnd_instre.mat``: 1,250 queries).

    Assumed layout of ``gnd_instre.mat`` (the revisitop-like structure that public loaders
    read; not verified against the file itself here): ``imlist`` (27,293 database image paths
    relative to ``root``, e.g. ``INSTRE-S1/01a_canada_book/001.jpg``), ``qimlist`` (1,250 query
    image paths) and ``gnd``, a 1x1250 struct array with ``ok`` (1-based MATLAB indices into
    ``imlist``) and ``bbx`` (the query box; ``x1 y1 x2 y2`` according to the OS2D loader, which
    notes that the per-image ``.txt`` files use ``x y w h`` instead; pass ``bbx_format='xywh'``
    if a copy differs). An optional ``junk`` field is honoured. Queries are not in the database.

    Args:
        root: the INSTRE folder holding ``gnd_instre.mat`` and the ``INSTRE-*`` folders.
        bbx_format: ``'xyxy'`` or ``'xywh'``: how ``gnd(i).bbx`` is stored.
        ap: ``'oxford'`` (the trapezoid AP of the INSTRE/Holidays package, default) or
            ``'instance'`` (AP@k like Instance-160).
        check_images: also check that every image file exists.

    Returns:
        The benchmark.

    Raises:
        DatasetMissingError: the folder, ``gnd_instre.mat`` or an image is missing.
        ValueError: a missing field, an index outside ``imlist`` or a bad box.
    """
    name = "instre"
    if bbx_format not in ("xyxy", "xywh"):
        raise ValueError(f"bbx_format must be 'xyxy' or 'xywh', got {bbx_format!r}")
    root = Path(root)
    _require(name, root)
    mat_path = _require(name, root / "gnd_instre.mat")
    from scipy.io import loadmat  # local import: scipy is only needed for INSTRE

    mat = loadmat(str(mat_path), squeeze_me=True)
    for key in ("imlist", "qimlist", "gnd"):
        if key not in mat:
            raise ValueError(f"{mat_path}: no variable {key!r}")
    database = tuple(_mat_strings(mat["imlist"]))
    qimlist = _mat_strings(mat["qimlist"])
    gnd = np.atleast_1d(mat["gnd"])
    if len(gnd) != len(qimlist):
        raise ValueError(f"{mat_path}: {len(gnd)} gnd entries for {len(qimlist)} queries")
    n = len(database)
    queries = []
    for i, (qimage, rec) in enumerate(zip(qimlist, gnd)):
        try:
            ok = np.atleast_1d(np.asarray(_mat_field(rec, "ok"), dtype=np.int64)).ravel()
            bbx = np.asarray(_mat_field(rec, "bbx"), dtype=np.float64).ravel()
        except (KeyError, ValueError, AttributeError, IndexError) as exc:
            raise ValueError(f"{mat_path}: gnd({i + 1}) lacks a usable 'ok'/'bbx' field ({exc})") from None
        try:
            junk = np.atleast_1d(np.asarray(_mat_field(rec, "junk"), dtype=np.int64)).ravel()
        except (KeyError, ValueError, AttributeError, IndexError):
            junk = np.zeros(0, dtype=np.int64)
        if bbx.size != 4:
            raise ValueError(f"{mat_path}: gnd({i + 1}).bbx has {bbx.size} values, expected 4")
        for what, idx in (("ok", ok), ("junk", junk)):
            if idx.size and (idx.min() < 1 or idx.max() > n):
                raise ValueError(f"{mat_path}: gnd({i + 1}).{what} has an index outside 1..{n} (1-based)")
        x1, y1, a, b = (float(v) for v in bbx)
        box = (x1, y1, x1 + a, y1 + b) if bbx_format == "xywh" else (x1, y1, a, b)
        queries.append(Query(name=qimage, image=qimage, box=box,
                             positives=tuple(int(j) - 1 for j in ok),
                             junk=tuple(int(j) - 1 for j in junk)))
    if check_images:
        _check_images(name, root, [*qimlist, *database])
    return Benchmark(name=name, root=root, database=database, queries=tuple(queries), ap=ap)


# --- INRIA Holidays -------------------------------------------------------------------------------

_HOLIDAYS_NAME = re.compile(r"^(\d{6})\.jpg$")


def load_holidays(root: str | Path, check_images: bool = True) -> Benchmark:
    """INRIA Holidays: 1,491 images, 500 queries, scored as ``holidays_map.py`` does.

    Images are ``NNNNNN.jpg`` in ``root/jpg`` (or directly in ``root``); other files are
    ignored. A group is ``NNNNNN // 100``; its lowest-numbered image is the query (in the
    official set it is the one with ``NNNNNN % 100 == 0``, which ``holidays_map.py`` treats as
    the query) and the rest of the group are its positives. Every image, queries included, is
    in the database (``query_in_database=True``: the scorer drops the query from its own list).

    Args:
        root: the Holidays folder.
        check_images: accepted for a uniform loader signature; the database is the folder's
            listing, so every image exists.

    Returns:
        The benchmark (``ap='holidays'``).

    Raises:
        DatasetMissingError: no folder or no ``NNNNNN.jpg`` image.
        ValueError: a group with a single image (AP undefined).
    """
    name = "holidays"
    root = Path(root)
    _require(name, root)
    folder = root / "jpg" if (root / "jpg").is_dir() else root
    numbers = sorted(int(m.group(1)) for p in folder.iterdir() if (m := _HOLIDAYS_NAME.match(p.name)))
    if not numbers:
        raise DatasetMissingError(name, folder, "no NNNNNN.jpg image in")
    prefix = "jpg/" if folder != root else ""
    database = tuple(f"{prefix}{n:06d}.jpg" for n in numbers)
    groups: dict[int, list[int]] = {}
    for i, n in enumerate(numbers):
        groups.setdefault(n // 100, []).append(i)
    queries = []
    for group, members in groups.items():
        if len(members) < 2:
            raise ValueError(f"{folder}: group {group} ({database[members[0]]}) has no other image to find")
        q = members[0]
        queries.append(Query(name=f"{numbers[q]:06d}", image=database[q], box=None,
                             positives=tuple(members[1:])))
    return Benchmark(name=name, root=root, database=database, queries=tuple(queries),
                     ap="holidays", query_in_database=True)


# --- Oxford5k / Paris6k ---------------------------------------------------------------------------

def _find_gt_dir(name: str, root: Path) -> Path:
    for candidate in (root / "gt", root / "gt_files_170407", root / "paris_120310", root):
        if candidate.is_dir() and any(candidate.glob("*_query.txt")):
            return candidate
    raise DatasetMissingError(name, root / "gt", "no <landmark>_<k>_query.txt ground-truth file in")


def _load_oxford_paris(name: str, root: str | Path, check_images: bool = True) -> Benchmark:
    """Oxford5k / Paris6k from the original ground-truth text files.

    Layout: ``root/jpg/<image>.jpg`` (flat) and the ground-truth files in ``root/gt`` (also
    accepted: ``root/gt_files_170407``, ``root/paris_120310`` or ``root`` itself). Each query
    ``<landmark>_<k>`` has ``_query.txt`` (one line ``[oxc1_]<image> x1 y1 x2 y2``; the Oxford
    files carry the ``oxc1_`` prefix, the Paris ones do not), ``_good.txt``, ``_ok.txt`` and
    ``_junk.txt`` (one image name per line, no extension). Positives = good + ok, junk = junk.

    Database: every ``.jpg`` in ``jpg/``, sorted by name. Names in the ground truth without an
    image (Paris6k's 20 corrupt files are usually deleted) are dropped with a warning, so such
    a positive no longer counts in the AP's denominator. The query image stays in the database
    and is scored as a positive, as in the official protocol. ``check_images`` is accepted for
    a uniform signature (the database is the folder's listing).

    Raises:
        DatasetMissingError: no root, ``jpg/`` folder, ground-truth file, or query image.
        ValueError: a malformed ``_query.txt``.
    """
    root = Path(root)
    _require(name, root)
    jpg = _require(name, root / "jpg")
    gt_dir = _find_gt_dir(name, root)
    database = tuple(f"jpg/{p.name}" for p in sorted(jpg.glob("*.jpg")))
    index = {Path(p).stem: i for i, p in enumerate(database)}
    dropped: set[str] = set()

    def ids(path: Path) -> tuple[int, ...]:
        out = []
        for image in _read_path_list(_require(name, path)):
            if image in index:
                out.append(index[image])
            else:
                dropped.add(image)
        return tuple(dict.fromkeys(out))

    queries = []
    for query_file in sorted(gt_dir.glob("*_query.txt")):
        qname = query_file.name[: -len("_query.txt")]
        lines = [(n, line.split()) for n, line in enumerate(query_file.read_text(encoding="utf-8").splitlines(), 1)
                 if line.strip()]
        if len(lines) != 1 or len(lines[0][1]) != 5:
            raise _bad_line(query_file, lines[0][0] if lines else 1, "expected one line 'image x1 y1 x2 y2'")
        line_no, tokens = lines[0]
        image = tokens[0][len("oxc1_"):] if tokens[0].startswith("oxc1_") else tokens[0]
        if image not in index:
            raise DatasetMissingError(name, jpg / f"{image}.jpg", f"query image of {qname} missing")
        box = _parse_box(tokens[1:], query_file, line_no)
        good = ids(gt_dir / f"{qname}_good.txt")
        ok = ids(gt_dir / f"{qname}_ok.txt")
        junk = ids(gt_dir / f"{qname}_junk.txt")
        positives = tuple(dict.fromkeys(good + ok))
        positive_set = set(positives)
        queries.append(Query(name=qname, image=database[index[image]], box=box, positives=positives,
                             junk=tuple(j for j in junk if j not in positive_set)))
    if dropped:
        warnings.warn(f"{name}: {len(dropped)} ground-truth image(s) have no file in {jpg} and were "
                      f"dropped (e.g. {sorted(dropped)[0]})", stacklevel=3)
    return Benchmark(name=name, root=root, database=database, queries=tuple(queries), ap="oxford")


def load_oxford5k(root: str | Path, check_images: bool = True) -> Benchmark:
    """Oxford5k (gt_files_170407, 55 queries); layout in ``_load_oxford_paris``. ``ap='oxford'``."""
    return _load_oxford_paris("oxford5k", root, check_images)


def load_paris6k(root: str | Path, check_images: bool = True) -> Benchmark:
    """Paris6k (paris_120310, 55 queries); layout in ``_load_oxford_paris``. ``ap='oxford'``."""
    return _load_oxford_paris("paris6k", root, check_images)


# --- Revisited Oxford / Paris ---------------------------------------------------------------------

REVISITOP_PROTOCOLS: tuple[str, ...] = ("easy", "medium", "hard")


def _load_revisitop(name: str, root: str | Path, protocol: str = "medium", check_images: bool = True) -> Benchmark:
    """R-Oxford / R-Paris from ``gnd_<name>.pkl`` under one revisitop protocol.

    ``gnd_<name>.pkl`` is a dict with ``imlist`` (database names, no extension), ``qimlist``
    (query names) and ``gnd`` (one dict per query: ``bbx``, ``easy``, ``hard``, ``junk``, 0-based
    indices into ``imlist``). Images are ``root/jpg/<name>.jpg``. Per protocol: easy: positives =
    easy, junk = junk + hard; medium: positives = easy + hard, junk = junk; hard: positives =
    hard, junk = junk + easy. Queries without positives under the protocol are left out (the
    revisitop evaluation skips them). ``Benchmark.name`` stays ``name`` (features do not depend
    on the protocol); the query images are not in the database.

    Raises:
        DatasetMissingError: no root, pkl or image.
        ValueError: an unknown protocol or a malformed pkl.
    """
    if protocol not in REVISITOP_PROTOCOLS:
        raise ValueError(f"protocol must be one of {REVISITOP_PROTOCOLS}, got {protocol!r}")
    root = Path(root)
    _require(name, root)
    pkl_path = _require(name, root / f"gnd_{name}.pkl")
    with open(pkl_path, "rb") as f:
        cfg = pickle.load(f)
    if not isinstance(cfg, Mapping) or not {"imlist", "qimlist", "gnd"} <= set(cfg):
        raise ValueError(f"{pkl_path}: expected a dict with 'imlist', 'qimlist' and 'gnd'")
    database = tuple(f"jpg/{n}.jpg" for n in cfg["imlist"])
    if len(cfg["gnd"]) != len(cfg["qimlist"]):
        raise ValueError(f"{pkl_path}: {len(cfg['gnd'])} gnd entries for {len(cfg['qimlist'])} queries")
    n = len(database)
    queries = []
    for i, (qname, g) in enumerate(zip(cfg["qimlist"], cfg["gnd"])):
        if not {"bbx", "easy", "hard", "junk"} <= set(g):
            raise ValueError(f"{pkl_path}: gnd[{i}] lacks one of 'bbx', 'easy', 'hard', 'junk'")
        positives, junk = revisitop_positives_junk(g, protocol)
        if any(not 0 <= j < n for j in (*positives, *junk)):
            raise ValueError(f"{pkl_path}: gnd[{i}] has an index outside [0, {n})")
        if not positives:
            continue
        bbx = [float(v) for v in np.ravel(g["bbx"])]
        if len(bbx) != 4:
            raise ValueError(f"{pkl_path}: gnd[{i}]['bbx'] has {len(bbx)} values, expected 4")
        queries.append(Query(name=str(qname), image=f"jpg/{qname}.jpg", box=tuple(bbx),  # type: ignore[arg-type]
                             positives=tuple(dict.fromkeys(positives)), junk=tuple(dict.fromkeys(junk))))
    if check_images:
        _check_images(name, root, [*(q.image for q in queries), *database])
    return Benchmark(name=name, root=root, database=database, queries=tuple(queries), ap="oxford")


def load_roxford5k(root: str | Path, protocol: str = "medium", check_images: bool = True) -> Benchmark:
    """Revisited Oxford (70 queries, 4,993 images); see ``_load_revisitop``. ``ap='oxford'``."""
    return _load_revisitop("roxford5k", root, protocol, check_images)


def load_rparis6k(root: str | Path, protocol: str = "medium", check_images: bool = True) -> Benchmark:
    """Revisited Paris (70 queries, 6,322 images); see ``_load_revisitop``. ``ap='oxford'``."""
    return _load_revisitop("rparis6k", root, protocol, check_images)


# --- registry -------------------------------------------------------------------------------------

BENCHMARKS: dict[str, Callable[..., Benchmark]] = {
    "instance-track": load_instance_track,
    "paris-landmarks": load_paris_landmarks,
    "instance-160": load_instance_160,
    "instance-335": load_instance_335,
    "instre": load_instre,
    "holidays": load_holidays,
    "oxford5k": load_oxford5k,
    "paris6k": load_paris6k,
    "roxford5k": load_roxford5k,
    "rparis6k": load_rparis6k,
}


def load_benchmark(name: str, root: str | Path | None = None, **options: Any) -> Benchmark:
    """Loads a benchmark by registry name.

    Args:
        name: a key of ``BENCHMARKS``.
        root: the dataset folder; ``None`` uses ``default_root(name)``.
        **options: loader options: ``check_images`` (every loader), ``protocol`` for
            ``roxford5k``/``rparis6k``, ``bbx_format`` and ``ap`` for ``instre``.

    Returns:
        The benchmark.

    Raises:
        ValueError: unknown name or malformed annotations.
        TypeError: an option the loader does not take.
        DatasetMissingError: the dataset is not at ``root``.
    """
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name](default_root(name) if root is None else Path(root), **options)
