"""``task = "figures"`` (``make figures``): every run of the listed experiments redrawn, plus the pictures.

Every results folder of an experiment (:func:`dasr.experiments.paths.result_folders`) is
replotted from its ``results.json``; instance-search runs also get Fig. 6 panels from the
rankings of the ``[gallery]`` method; and Figs. 1/3 region pictures are drawn for a few query
images of ``gallery.pictures_benchmark`` (this runs the network on those images only).
"""

from __future__ import annotations

import os
from pathlib import Path

from dasr.eval.datasets import load_benchmark
from dasr.experiments import gallery
from dasr.experiments.benchmarks import resolve_benchmarks
from dasr.experiments.config import load_config
from dasr.experiments.entries import ResultsFormatError, read_results
from dasr.experiments.paper import load_paper_numbers
from dasr.experiments.paths import result_folders, run_folder
from dasr.experiments.report import replot
from dasr.features.spec import ExtractorSpec
from dasr.io.atomic import atomic_write_bytes

__all__ = ["redraw_all", "gallery_panels"]


def gallery_panels(folder: Path, pics: dict) -> list[Path]:
    """Fig. 6 panels of one instance-search run, from its ``pics['method']`` cells' rankings.

    Returns:
      The PNG paths (next to each cell's ``rankings.tsv``; none for a cell without one).
    """
    config, entries = read_results(folder)
    roots = {spec.name: spec.root for spec in resolve_benchmarks(config)}
    written = []
    for entry in entries:
        if entry.result is None or entry.cell.method != pics["method"]:
            continue
        run = run_folder(folder, entry.benchmark, entry.cell.label)
        if (run / "rankings.tsv").is_file():
            bench = load_benchmark(entry.benchmark, roots.get(entry.benchmark))
            written += gallery.ranking_panels(run / "rankings.tsv", bench, run, int(pics["queries"]), int(pics["top"]))
    return written


def redraw_all(cfg: dict, out: Path, quiet: bool = False) -> Path:
    """Redraws every run of ``cfg['experiments']``, adds the pictures, and indexes them in ``<out>/results.md``.

    Args:
      cfg: a ``figures`` config (its ``experiments`` are config names next to its file).
      out: the index's folder.
      quiet: no "wrote ..." lines.

    Returns:
      ``out``.
    """
    here = Path(cfg["_path"]).parent
    pics = cfg["gallery"]
    lines = [f"# {cfg['title'] or 'Figures'}", ""]
    out.mkdir(parents=True, exist_ok=True)
    for name in cfg["experiments"]:
        path = here / f"{name}.toml"
        sub = load_config(path)
        folders = result_folders(sub)
        if not folders:
            lines.append(f"- {name}: not run yet (`dasr reproduce {path}`)")
            continue
        paper = load_paper_numbers(sub)
        for folder in folders:
            rel = Path(os.path.relpath(folder, out))
            try:
                replot(sub, paper, folder)
            except ResultsFormatError as e:  # an older version's run: listed, not redrawn
                lines.append(f"- {name}: [{folder.name}]({(rel / 'results.md').as_posix()}) not redrawn: {e}")
                continue
            if not quiet:
                print(f"wrote {folder}/results.md (replotted)")
            pngs = list(folder.glob("*.png"))
            pngs += gallery_panels(folder, pics) if sub["task"] == "instance" else []
            lines.append(f"- {name}: [{folder.name}]({(rel / 'results.md').as_posix()})")
            lines += [f"  ![{p.stem}]({Path(os.path.relpath(p, out)).as_posix()})" for p in sorted(set(pngs))]
    if pics["pictures_benchmark"] and int(pics["pictures"]) > 0:
        bench = load_benchmark(pics["pictures_benchmark"])
        extractor = ExtractorSpec(method=pics["method"], weights=cfg["weights"]).build()
        written = gallery.region_pictures(extractor, bench, out, int(pics["pictures"]))
        lines += ["", f"Figs. 1/3: {pics['method']} regions of {bench.name} query images", ""]
        lines += [f"![{p.stem}]({p.name})" for p in written]
    atomic_write_bytes(out / "results.md", ("\n".join(lines) + "\n").encode())
    if not quiet:
        print(f"wrote {out}/results.md")
    return out
