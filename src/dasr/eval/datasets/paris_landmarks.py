"""paris-landmarks: the shared Paris landmark set (whole-image search, folder labels)."""

from __future__ import annotations

import csv
from pathlib import Path

from dasr.eval.datasets.common import Benchmark, Query, bad_line, require_images, require_path

__all__ = ["load_paris_landmarks"]


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
    require_path(name, root)
    csv_path = require_path(name, root / "annotations.csv")
    rows: list[tuple[int, str, str, str]] = []
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        needed = {"image", "landmark", "role"}
        if not needed <= set(reader.fieldnames or ()):
            raise bad_line(csv_path, 1, f"header lacks {sorted(needed - set(reader.fieldnames or ()))}")
        for row in reader:
            if row["role"] not in ("query", "database"):
                raise bad_line(csv_path, reader.line_num, f"role {row['role']!r} is neither 'query' nor 'database'")
            if not row["image"] or not row["landmark"]:
                raise bad_line(csv_path, reader.line_num, "empty image or landmark")
            rows.append((reader.line_num, row["image"], row["landmark"], row["role"]))

    database = tuple(image for _, image, _, role in rows if role == "database")
    landmark_of = {image: lm for _, image, lm, role in rows if role == "database"}
    queries = []
    for line_no, image, landmark, role in rows:
        if role != "query":
            continue
        positives = tuple(i for i, p in enumerate(database) if landmark_of[p] == landmark)
        if not positives:
            raise bad_line(csv_path, line_no, f"landmark {landmark!r} has no database image")
        queries.append(Query(name=image, image=image, box=None, positives=positives))
    if check_images:
        require_images(name, root, (image for _, image, _, _ in rows))
    return Benchmark(name=name, root=root, database=database, queries=tuple(queries), ap="oxford")
