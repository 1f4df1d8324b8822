"""instance-track: the shared tracking-derived instance-search set (Instance-160 recipe)."""

from __future__ import annotations

import csv
from pathlib import Path

from dasr.errors import InputError
from dasr.eval.datasets.common import (Benchmark, Box, Query, bad_line, index_of, parse_box, read_gt_txt,
                                       require_images, require_path)

__all__ = ["load_instance_track", "read_instance_track_folder"]


def load_instance_track(root: str | Path, check_images: bool = True) -> Benchmark:
    """The shared tracking-derived instance-search set (Instance-160 recipe).

    :func:`read_instance_track_folder` of ``root`` as ``instance-track`` (``root``: that folder).
    """
    return read_instance_track_folder(root, "instance-track", check_images)


def read_instance_track_folder(root: str | Path, name: str, check_images: bool = True) -> Benchmark:
    """Any folder in the instance-track format, as the benchmark ``name``.

    Database: the ``reference`` rows of ``annotations.csv`` in file order. Queries: the
    ``query`` rows in file order, named by their ``instance``, with the csv box; positives are
    the references that ``gt.txt`` lists for the query, with their csv boxes. Every ``gt.txt``
    line is checked (``N`` matches, every path is an ``annotations.csv`` reference).  Shared by
    the benchmarks built in that format (``copy-paste``, :mod:`dasr.eval.datasets.copy_paste`):
    errors name ``name`` and the returned ``Benchmark.name`` is ``name``.

    Args:
        root: the folder (``annotations.csv``, ``gt.txt``, the images).
        name: the registry name (named in errors, ``Benchmark.name``).
        check_images: also check that every image file exists.

    Returns:
        The benchmark (``ap='instance'``).

    Raises:
        DatasetMissingError: the folder, a file or an image is missing.
        ValueError: a malformed csv row or ``gt.txt`` line (file and line named).
    """
    root = Path(root)
    require_path(name, root)
    csv_path = require_path(name, root / "annotations.csv")
    gt_path = require_path(name, root / "gt.txt")

    boxes: dict[str, Box] = {}
    roles: dict[str, str] = {}
    instance_of: dict[str, str] = {}
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        needed = {"image", "instance", "role", "x1", "y1", "x2", "y2"}
        if not needed <= set(reader.fieldnames or ()):
            raise bad_line(csv_path, 1, f"header lacks {sorted(needed - set(reader.fieldnames or ()))}")
        for row in reader:
            line_no = reader.line_num
            image, role = row["image"], row["role"]
            if role not in ("query", "reference"):
                raise bad_line(csv_path, line_no, f"role {role!r} is neither 'query' nor 'reference'")
            if image in roles:
                raise bad_line(csv_path, line_no, f"image {image!r} listed twice")
            roles[image] = role
            instance_of[image] = row["instance"]
            boxes[image] = parse_box([row[k] for k in ("x1", "y1", "x2", "y2")], csv_path, line_no)

    database = tuple(p for p, r in roles.items() if r == "reference")
    index = index_of(database)
    refs_of: dict[str, tuple[str, ...]] = {}
    for line_no, query, refs in read_gt_txt(gt_path):
        if roles.get(query) != "query":
            raise bad_line(gt_path, line_no, f"query {query!r} is not a 'query' row of annotations.csv")
        if query in refs_of:
            raise bad_line(gt_path, line_no, f"query {query!r} has a second line")
        for ref in refs:
            if roles.get(ref) != "reference":
                raise bad_line(gt_path, line_no, f"reference {ref!r} is not a 'reference' row of annotations.csv")
        refs_of[query] = refs

    queries = []
    for image, role in roles.items():
        if role != "query":
            continue
        if image not in refs_of:
            raise InputError(f"{gt_path}: no line for query {image!r} of annotations.csv")
        positives = tuple(index[r] for r in refs_of[image])
        queries.append(Query(
            name=instance_of[image],
            image=image,
            box=boxes[image],
            positives=positives,
            positive_boxes={i: boxes[database[i]] for i in positives},
        ))
    if check_images:
        require_images(name, root, roles)
    return Benchmark(name=name, root=root, database=database, queries=tuple(queries), ap="instance")
