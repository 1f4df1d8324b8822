"""Pictures for ``make figures``: Fig. 1/3-style region pictures and Fig. 6-style result panels.

The panels are drawn from a run's ``rankings.tsv`` (written by :func:`dasr.eval.instance.write_results`),
so nothing is searched again; the region pictures run the extractor on a few query images.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from dasr.errors import InputError
from dasr.eval.datasets import Benchmark
from dasr.experiments.paths import slug
from dasr.figures import detection_figure, results_panel
from dasr.io.images import load_image


def spread(items: list, n: int) -> list:
    """``n`` items evenly spread over ``items`` (all of them when there are fewer)."""
    if n <= 0 or not items:
        return []
    if n >= len(items):
        return list(items)
    return [items[int(round(i))] for i in np.linspace(0, len(items) - 1, n)]


def read_rankings(path: str | os.PathLike) -> dict[str, list[dict]]:
    """``rankings.tsv`` -> query name -> its rows in rank order (image, score, box, relevant).

    Raises:
      ValueError: a row with missing columns.
    """
    out: dict[str, list[dict]] = {}
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        for n, row in enumerate(csv.DictReader(f, delimiter="\t"), 2):
            try:
                out.setdefault(row["query"], []).append({
                    "image": row["image"], "score": float(row["score"]),
                    "box": np.array([float(row[k]) for k in ("x1", "y1", "x2", "y2")], np.float32),
                    "relevant": row["relevant"] == "1"})
            except (KeyError, TypeError, ValueError) as e:
                raise InputError(f"{path}:{n}: bad rankings row ({e})") from None
    return out


def ranking_panels(rankings: str | os.PathLike, bench: Benchmark, out_dir: str | os.PathLike,
                   queries: int = 3, top: int = 10) -> list[Path]:
    """Fig. 6: for ``queries`` queries spread over the benchmark, the query and its top results.

    Each result shows the matched region's box; green / red frames mark relevant / irrelevant
    images.

    Returns:
      The PNG paths (``<out_dir>/fig6-<query>.png``).
    """
    rows = read_rankings(rankings)
    by_name = {q.name: q for q in bench.queries}
    names = spread([name for name in rows if name in by_name], queries)
    out_dir = Path(out_dir)
    written = []
    for name in names:
        q = by_name[name]
        results = [(load_image(bench.root / r["image"]), r["box"], r["score"], r["relevant"]) for r in rows[name][:top]]
        written.append(results_panel(load_image(bench.root / q.image), q.box, results,
                                     out_dir / f"fig6-{slug(name)}.png", title=name))
    return written


def region_pictures(extractor, bench: Benchmark, out_dir: str | os.PathLike, images: int = 3) -> list[Path]:
    """Figs. 1/3: activation map, seed maps, ellipses and boxes of a few query images.

    Returns:
      The PNG paths (``<out_dir>/fig3-<query>.png``).
    """
    out_dir = Path(out_dir)
    written = []
    for q in spread(list(bench.queries), images):
        image = load_image(bench.root / q.image)
        written.append(detection_figure(image, extractor(image, keep_maps=True), out_dir / f"fig3-{slug(q.name)}.png"))
    return written
