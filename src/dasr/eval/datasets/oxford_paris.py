"""Oxford5k / Paris6k from the original ground-truth text files (good + ok positive, junk ignored),
and ``paris6k-subset``: Paris6k's official lists restricted to the Paris6k images of the shared
paris-landmarks folder."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

from dasr.errors import InputError
from dasr.eval.datasets.common import (Benchmark, DatasetMissingError, Query, bad_line, parse_box,
                                       read_path_list, require_path)

__all__ = ["load_oxford5k", "load_paris6k", "load_paris6k_subset"]


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
    require_path(name, root)
    jpg = require_path(name, root / "jpg")
    gt_dir = _find_gt_dir(name, root)
    database = tuple(f"jpg/{p.name}" for p in sorted(jpg.glob("*.jpg")))
    index = {Path(p).stem: i for i, p in enumerate(database)}
    dropped: set[str] = set()

    def ids(path: Path) -> tuple[int, ...]:
        out = []
        for image in read_path_list(require_path(name, path)):
            if image in index:
                out.append(index[image])
            else:
                dropped.add(image)
        return tuple(dict.fromkeys(out))

    queries = []
    for query_file in sorted(gt_dir.glob("*_query.txt")):
        qname, image, box = _read_query(query_file)
        if image not in index:
            raise DatasetMissingError(name, jpg / f"{image}.jpg", f"query image of {qname} missing")
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


def _read_query(query_file: Path) -> tuple[str, str, tuple[float, float, float, float]]:
    """(query name, image name without extension or ``oxc1_`` prefix, box) of a ``_query.txt``.

    Raises:
        ValueError: not exactly one line ``image x1 y1 x2 y2``, or a bad box.
    """
    qname = query_file.name[: -len("_query.txt")]
    lines = [(n, line.split()) for n, line in enumerate(query_file.read_text(encoding="utf-8").splitlines(), 1)
             if line.strip()]
    if len(lines) != 1 or len(lines[0][1]) != 5:
        raise bad_line(query_file, lines[0][0] if lines else 1, "expected one line 'image x1 y1 x2 y2'")
    line_no, tokens = lines[0]
    image = tokens[0][len("oxc1_"):] if tokens[0].startswith("oxc1_") else tokens[0]
    return qname, image, parse_box(tokens[1:], query_file, line_no)


# Paris6k's images have a long side of 1,024 px (its official boxes are in those pixels); the shared
# copies are resized to a long side of at most 640 px, so the boxes are scaled by long side / 1024.
PARIS6K_LONG_SIDE = 1024


def _image_sizes(name: str, root: Path) -> dict[str, tuple[int, int]]:
    """image -> (width, height) from the paris-landmarks ``annotations.csv``."""
    path = require_path(name, root / "annotations.csv")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    try:
        return {r["image"]: (int(r["width"]), int(r["height"])) for r in rows}
    except (KeyError, ValueError):
        raise bad_line(path, 1, "expected columns image, width, height with integer sizes") from None


def load_paris6k_subset(root: str | Path, check_images: bool = True, gt_root: str | Path | None = None) -> Benchmark:
    """The official Paris6k protocol on the Paris6k images of the shared paris-landmarks folder.

    Database: every ``images/database/**/*.jpg`` under ``root`` (the paris-landmarks folder: 250
    of Paris6k's images under their original names), sorted by path.  Ground truth: the official
    ``paris_120310`` lists (default ``root/../ground-truth/paris6k``), restricted to those images:
    a query is kept when its query image is in the database (its box as published; 12 of the 55);
    positives = its good + ok images present, junk = its junk images present (ignored by the
    AP); the query image stays in the database, as in the official protocol.  ``ap='oxford'``.
    The shared copies are resized (long side <= 640 px, sizes in ``annotations.csv``), so each
    official box is scaled by the copy's long side / :data:`PARIS6K_LONG_SIDE` (every one of the
    12 boxes fits its image's 1,024 px original that way) and clipped to the image.

    Args:
        root: the paris-landmarks folder.
        check_images: accepted for a uniform signature (the database is the folder's listing).
        gt_root: the folder of the official ``<landmark>_<k>_*.txt`` files.

    Raises:
        DatasetMissingError: no images folder, ``annotations.csv`` or ground-truth files.
        ValueError: a malformed ``_query.txt`` or ``annotations.csv``, a query image without its
          size, or no official query whose image is present.
    """
    name = "paris6k-subset"
    root = Path(root)
    folder = require_path(name, root / "images" / "database")
    sizes = _image_sizes(name, root)
    gt_dir = _find_gt_dir(name, Path(gt_root) if gt_root is not None else root.parent / "ground-truth" / "paris6k")
    database = tuple(p.relative_to(root).as_posix() for p in sorted(folder.rglob("*.jpg")))
    index = {Path(p).stem: i for i, p in enumerate(database)}

    def present(path: Path) -> tuple[int, ...]:
        return tuple(dict.fromkeys(index[n] for n in read_path_list(require_path(name, path)) if n in index))

    queries = []
    for query_file in sorted(gt_dir.glob("*_query.txt")):
        qname, image, box = _read_query(query_file)
        if image not in index:
            continue
        positives = tuple(dict.fromkeys(present(gt_dir / f"{qname}_good.txt") + present(gt_dir / f"{qname}_ok.txt")))
        junk = tuple(j for j in present(gt_dir / f"{qname}_junk.txt") if j not in set(positives))
        if not positives:
            continue
        path = database[index[image]]
        if path not in sizes:
            raise InputError(f"{name}: {root / 'annotations.csv'} has no size for query image {path}")
        w, h = sizes[path]
        f = max(w, h) / PARIS6K_LONG_SIDE
        scaled = (min(box[0] * f, w), min(box[1] * f, h), min(box[2] * f, w), min(box[3] * f, h))
        queries.append(Query(name=qname, image=path, box=scaled, positives=positives, junk=junk))
    if not queries:
        raise InputError(f"{name}: no official Paris6k query of {gt_dir} has its image in {folder}")
    return Benchmark(name=name, root=root, database=database, queries=tuple(queries), ap="oxford")


def load_oxford5k(root: str | Path, check_images: bool = True) -> Benchmark:
    """Oxford5k (gt_files_170407, 55 queries); layout in ``_load_oxford_paris``. ``ap='oxford'``."""
    return _load_oxford_paris("oxford5k", root, check_images)


def load_paris6k(root: str | Path, check_images: bool = True) -> Benchmark:
    """Paris6k (paris_120310, 55 queries); layout in ``_load_oxford_paris``. ``ap='oxford'``."""
    return _load_oxford_paris("paris6k", root, check_images)
