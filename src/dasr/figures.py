"""Pictures people would rather look at: detections (Figs. 1/3), result panels (Fig. 6), curves."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse, Rectangle

from dasr.errors import InputError
from dasr.io.atomic import atomic_path


def _figure(size: tuple[float, float]) -> Figure:
    """A figure of its own, outside pyplot: no global backend or state is touched, nothing to close."""
    return Figure(figsize=size)


def _save(fig, out: str | os.PathLike) -> Path:
    """Writes ``fig`` to ``out`` (atomically) in the format its name ends with.

    Raises:
      InputError: the name ends in no format matplotlib writes (``fig``, ``fig.``, ``fig.xyz``).
    """
    out = Path(out)
    _, dot, ending = out.name.rpartition(".")
    formats = fig.canvas.get_supported_filetypes()
    if not dot or ending.lower() not in formats:
        raise InputError(f"{out}: a figure's name must end in one of .{', .'.join(sorted(formats))}")
    # The format is named: the temporary file's name says nothing to matplotlib.
    with atomic_path(out, suffix=out.suffix) as tmp:
        fig.savefig(tmp, format=ending.lower(), dpi=110, bbox_inches="tight")
    return out


def detection_figure(image: np.ndarray, extraction, out: str | os.PathLike, max_maps: int = 7) -> Path:
    """Fig. 1/3 style: the activation map over the image, seed maps, ellipses and boxes.

    Args:
      image: the original RGB image.
      extraction: a :class:`dasr.features.extractor.Extraction` made with ``keep_maps=True``.
      out: PNG path.
      max_maps: how many seed maps to show (highest scores first).
    """
    regions, maps = extraction.regions, extraction.maps
    n_maps = 0 if maps is None else min(max_maps, len(maps))
    cols = 2 + n_maps
    fig = _figure((3.2 * cols, 3.4))
    axes = fig.subplots(1, cols, squeeze=False)
    axes = axes[0]
    h, w = image.shape[:2]
    axes[0].imshow(image)
    axes[0].imshow(extraction.activation, cmap="jet", alpha=0.45, extent=(0, w, h, 0), interpolation="bilinear")
    axes[0].set_title("activation map X̄")
    axes[1].imshow(image)
    axes[1].set_title(f"{len(regions)} regions")
    for k, (box, ell) in enumerate(zip(regions.boxes, regions.ellipses)):
        color = matplotlib.colormaps["tab10"](k % 10)
        axes[1].add_patch(Rectangle((box[0], box[1]), box[2] - box[0], box[3] - box[1], fill=False, lw=1.5, ec=color))
        if ell[2] > 0:
            axes[1].add_patch(Ellipse((ell[0], ell[1]), 2 * ell[2], 2 * ell[3], angle=np.degrees(ell[4]),
                                      fill=False, lw=1, ec=color, ls="--"))
    for k in range(n_maps):
        ax = axes[2 + k]
        m = maps[k] / max(float(maps[k].max()), 1e-12)
        mh, mw = m.shape
        ax.imshow(image)
        ax.imshow(m, cmap="magma", alpha=0.7, extent=(0, w, h, 0))
        box = regions.boxes[k]
        ax.add_patch(Rectangle((box[0], box[1]), box[2] - box[0], box[3] - box[1], fill=False, lw=1.5, ec="cyan"))
        ax.set_title(f"seed {tuple(int(v) for v in regions.seeds[k])} s={regions.scores[k]:.2f}", fontsize=8)
    for ax in axes:
        ax.set_axis_off()
    return _save(fig, out)


def results_panel(query_image: np.ndarray, query_box, results: list[tuple[np.ndarray, np.ndarray, float, bool | None]],
                  out: str | os.PathLike, title: str = "") -> Path:
    """Fig. 6 style: the query with its box, then the top-k images with the matched box.

    Args:
      query_image: RGB image.
      query_box: (x1, y1, x2, y2) or None.
      results: (image, matched box, score, relevant or None) per rank.
      out: PNG path.
    """
    cols = 1 + len(results)
    fig = _figure((2.3 * cols, 2.6))
    axes = fig.subplots(1, cols, squeeze=False)
    axes = axes[0]
    axes[0].imshow(query_image)
    if query_box is not None:
        x1, y1, x2, y2 = query_box
        axes[0].add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=2, ec="yellow"))
    axes[0].set_title("query" + (f"\n{title}" if title else ""), fontsize=8)
    for ax, (img, box, score, relevant) in zip(axes[1:], results):
        ax.imshow(img)
        color = "lime" if relevant else ("red" if relevant is not None else "yellow")
        if not np.isnan(box).any():
            ax.add_patch(Rectangle((box[0], box[1]), box[2] - box[0], box[3] - box[1], fill=False, lw=2, ec=color))
        if relevant is not None:
            for side in ax.spines.values():
                side.set_edgecolor(color)
                side.set_linewidth(4)
        ax.set_title(f"{score:.3f}", fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    return _save(fig, out)


def line_plot(series: dict[str, tuple[list, list]], xlabel: str, ylabel: str, out: str | os.PathLike,
              title: str = "", reference: dict[str, tuple[list, list]] | None = None) -> Path:
    """A small line plot; ``reference`` series (the paper's numbers) are drawn dashed."""
    fig = _figure((5.5, 3.8))
    ax = fig.subplots()
    for name, (x, y) in series.items():
        ax.plot(x, y, marker="o", label=name)
    for name, (x, y) in (reference or {}).items():
        ax.plot(x, y, ls="--", marker="x", label=f"{name} (paper)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out)


def bar_plot(values: dict[str, float], ylabel: str, out: str | os.PathLike, title: str = "",
             reference: dict[str, float] | None = None) -> Path:
    """Bars of ``values``; the paper's value (if any) as a black tick on each bar."""
    fig = _figure((max(5, 0.6 * len(values) + 2), 3.8))
    ax = fig.subplots()
    names = list(values)
    ax.bar(range(len(names)), [values[n] for n in names], color="tab:blue", label="ours")
    if reference:
        xs = [i for i, n in enumerate(names) if n in reference]
        ax.scatter(xs, [reference[names[i]] for i in xs], marker="_", s=400, color="black", label="paper", zorder=3)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, out)
