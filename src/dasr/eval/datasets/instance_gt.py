"""Instance-160 / Instance-335: ``gt.txt`` (+ optional ``boxes.txt`` and ``distractors.txt``)."""

from __future__ import annotations

from pathlib import Path

from dasr.eval.datasets.common import (Benchmark, Box, Query, bad_line, index_of, parse_box, read_gt_txt,
                                       read_path_list, require_images, require_path)

__all__ = ["load_instance_160", "load_instance_335"]


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
                raise bad_line(path, line_no, "expected 'path x1 y1 x2 y2 [query]'")
            box = parse_box(tokens[1:5], path, line_no)
            if len(tokens) == 6:
                key = (tokens[5], tokens[0])
                if key in per_query:
                    raise bad_line(path, line_no, f"second box for {tokens[0]!r} and query {tokens[5]!r}")
                per_query[key] = box
            else:
                if tokens[0] in general:
                    raise bad_line(path, line_no, f"second box for {tokens[0]!r}; add the query path "
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
    require_path(name, root)
    gt_path = require_path(name, root / "gt.txt")
    entries = read_gt_txt(gt_path)
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
        database.extend(p for p in dict.fromkeys(read_path_list(distractors_path)) if p not in seen)
    index = index_of(database)

    def box_for(query: str, image: str) -> Box | None:
        return per_query.get((query, image), general.get(image))

    queries = []
    seen_queries: set[str] = set()
    for line_no, query, refs in entries:
        if query in seen_queries:
            raise bad_line(gt_path, line_no, f"query {query!r} has a second line")
        seen_queries.add(query)
        positives = tuple(index[r] for r in refs)
        positive_boxes = None
        if has_boxes:
            positive_boxes = {index[r]: b for r in refs if (b := box_for(query, r)) is not None}
        queries.append(Query(name=query, image=query, box=box_for(query, query),
                             positives=positives, positive_boxes=positive_boxes))
    if check_images:
        require_images(name, root, [*seen_queries, *database])
    return Benchmark(name=name, root=root, database=tuple(database), queries=tuple(queries), ap="instance")


def load_instance_160(root: str | Path, check_images: bool = True) -> Benchmark:
    """Instance-160 (Zhan & Zhao); layout in ``_load_instance_gt``. ``ap='instance'``."""
    return _load_instance_gt("instance-160", root, check_images)


def load_instance_335(root: str | Path, check_images: bool = True) -> Benchmark:
    """Instance-335 (as used by DASR); layout in ``_load_instance_gt``. ``ap='instance'``."""
    return _load_instance_gt("instance-335", root, check_images)
