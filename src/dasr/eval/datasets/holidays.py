"""INRIA Holidays: 1,491 images, 500 queries, scored as ``holidays_map.py`` does."""

from __future__ import annotations

import re
from pathlib import Path

from dasr.errors import InputError
from dasr.eval.datasets.common import Benchmark, DatasetMissingError, Query, require_path

__all__ = ["load_holidays"]


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
    require_path(name, root)
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
            raise InputError(f"{folder}: group {group} ({database[members[0]]}) has no other image to find")
        q = members[0]
        queries.append(Query(name=f"{numbers[q]:06d}", image=database[q], box=None,
                             positives=tuple(members[1:])))
    return Benchmark(name=name, root=root, database=database, queries=tuple(queries),
                     ap="holidays", query_in_database=True)
