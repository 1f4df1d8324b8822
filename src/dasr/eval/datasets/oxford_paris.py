"""Oxford5k / Paris6k from the original ground-truth text files (good + ok positive, junk ignored)."""

from __future__ import annotations

import warnings
from pathlib import Path

from dasr.eval.datasets.common import (Benchmark, DatasetMissingError, Query, bad_line, parse_box,
                                       read_path_list, require_path)

__all__ = ["load_oxford5k", "load_paris6k"]


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
        qname = query_file.name[: -len("_query.txt")]
        lines = [(n, line.split()) for n, line in enumerate(query_file.read_text(encoding="utf-8").splitlines(), 1)
                 if line.strip()]
        if len(lines) != 1 or len(lines[0][1]) != 5:
            raise bad_line(query_file, lines[0][0] if lines else 1, "expected one line 'image x1 y1 x2 y2'")
        line_no, tokens = lines[0]
        image = tokens[0][len("oxc1_"):] if tokens[0].startswith("oxc1_") else tokens[0]
        if image not in index:
            raise DatasetMissingError(name, jpg / f"{image}.jpg", f"query image of {qname} missing")
        box = parse_box(tokens[1:], query_file, line_no)
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
