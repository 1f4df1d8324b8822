"""The README's main job (``make demo``): DASR* against its controls on the bundled demo collection.

Three methods search the demo's 4 instances (``data/demo``, an instance-track style folder):
DASR* (salient regions), the fixed-box control (boxes of one size at the same seeds: what the
region shapes add) and global average pooling (one descriptor per image: what a global method
gets, and that it localises nothing).  The table gives mAP@k and the localization recall of the
returned boxes; a results panel and the regions of the first query are drawn; the last line is
the command that opens the search page on DASR*'s index.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from dasr.eval.datasets import load_benchmark
from dasr.eval.instance import align_rankings, evaluate, format_table
from dasr.eval.records import SearchResult
from dasr.features.spec import ExtractorSpec
from dasr.figures import detection_figure, results_panel
from dasr.io.images import load_image
from dasr.search import SearchIndex
from dasr.store import RegionStore

DEMO_METHODS = ("dasr-star", "fixed-box", "gap")
DEMO_BENCHMARK = "instance-track"
PANEL_RESULTS = 7


@dataclass(frozen=True)
class DemoReport:
    """What the demo produced.

    Attributes:
      results: one evaluation per method of :data:`DEMO_METHODS`, in that order.
      table: the Markdown table of ``results`` (mAP@k, mAP, loc@0.5, regions/img).
      panel: the results panel of the first query (DASR*).
      regions_figure: DASR*'s regions of the first query image.
      serve_command: the command that opens the search page on DASR*'s index.
      out: the folder of the stores, results and figures.
    """

    results: list[SearchResult]
    table: str
    panel: Path
    regions_figure: Path
    serve_command: str
    out: Path

    def lines(self) -> list[str]:
        """What ``dasr demo`` prints, the page's command last."""
        out = self.results[0]
        return [self.table,
                f"figure: {self.panel}",
                f"figure: {self.regions_figure}",
                "results: " + ", ".join(f"{self.out / r.method / 'results.json'}" for r in self.results)
                + f" (AP@k: truncated; DASR* regions/image {out.regions_per_image:.1f})",
                f"search page: {self.serve_command}"]


def serve_command(store: str | os.PathLike, root: str | os.PathLike) -> str:
    """``dasr serve`` on a demo store, with the benchmark's relevance marks (no whitening: the
    demo learns none)."""
    return shlex.join(["dasr", "serve", "--store", os.fspath(store), "--pca", "none",
                       "--benchmark", DEMO_BENCHMARK, "--benchmark-root", os.fspath(root)])


def run_demo(spec: ExtractorSpec, root: str | os.PathLike = "data/demo", out: str | os.PathLike = "results/demo",
             progress: bool = True) -> DemoReport:
    """Evaluates DASR*, the fixed-box control and GAP on the demo collection and draws the first query.

    Args:
      spec: the extractor settings (backbone, weights, region options); its method is replaced
        by each of :data:`DEMO_METHODS` in turn.
      root: the demo collection (an instance-track style folder).
      out: where the stores (``stores/``), each method's ``results.json`` and the figures go.
      progress: show progress bars.

    Returns:
      The :class:`DemoReport`.

    Raises:
      dasr.eval.datasets.DatasetMissingError: ``root`` is not an instance-track style folder.
      dasr.model.weights.WeightsError: the weights cannot be found.
    """
    out = Path(out)
    bench = load_benchmark(DEMO_BENCHMARK, root)
    results, extractors = [], {}
    for method in DEMO_METHODS:
        extractors[method] = spec.replace(method=method).build()
        # The demo is too small to learn a whitening on another collection: raw features.
        results.append(evaluate(extractors[method], DEMO_BENCHMARK, root, work=out / "stores", pca="none",
                                out=out / method, progress=progress))
    extractor = extractors["dasr-star"]
    store = results[0].store
    index = SearchIndex(RegionStore.open(store))
    q = bench.queries[0]
    qimg = load_image(bench.root / q.image)
    # Store rows -> benchmark images, as the evaluation maps them (a skipped image shifts rows).
    ranking = align_rankings([index.search(index.describe(extractor.describe_box(qimg, q.box)))],
                             index.store, bench)[0].top(PANEL_RESULTS)
    panel = [(load_image(bench.root / bench.database[i]), b, float(s), bool(i in q.positives))
             for i, s, b in zip(ranking.order, ranking.scores, ranking.boxes)]
    panel_path = results_panel(qimg, q.box, panel, out / "search-panel.png", title=q.name)
    regions_path = detection_figure(qimg, extractor(qimg, keep_maps=True), out / "regions.png")
    return DemoReport(results, format_table(results), panel_path, regions_path,
                      serve_command(store, root), out)
