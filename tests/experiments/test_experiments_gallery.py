"""Fig. 6 panels from a rankings file and Fig. 1/3 pictures (stand-in extractor)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from dasr.experiments import gallery
from dasr.eval.datasets import Benchmark, Query
from dasr.regions import Regions

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def bench(tmp_path):
    rng = np.random.default_rng(0)
    names = [f"db{i}.png" for i in range(4)] + ["qa.png", "qb.png", "qc.png"]
    for name in names:
        Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(tmp_path / name)
    queries = tuple(Query(n, f"{n}.png", (5, 5, 30, 30), positives=(i,)) for i, n in enumerate(("qa", "qb", "qc")))
    return Benchmark("toy", tmp_path, tuple(names[:4]), queries, "instance")


def test_spread():
    assert gallery.spread(list(range(10)), 3) == [0, 4, 9]  # round(4.5) = 4
    assert gallery.spread([1, 2], 5) == [1, 2] and gallery.spread([1, 2], 0) == []


def test_ranking_panels(bench, tmp_path, monkeypatch):
    tsv = tmp_path / "rankings.tsv"
    lines = ["query\trank\timage\tscore\tx1\ty1\tx2\ty2\trelevant"]
    for qi, q in enumerate(bench.queries):
        for rank, img in enumerate(bench.database, 1):
            lines.append(f"{q.name}\t{rank}\t{img}\t{1 / rank:.3f}\t1\t2\t20\t30\t{int(rank - 1 == qi)}")
    tsv.write_text("\n".join(lines) + "\n")
    rows = gallery.read_rankings(tsv)
    assert list(rows) == ["qa", "qb", "qc"] and rows["qb"][1]["relevant"] and not rows["qb"][0]["relevant"]
    drawn = []
    draw = gallery.results_panel

    def results_panel(query_image, box, results, out, title):
        drawn.append((query_image, box, results, title))
        return draw(query_image, box, results, out, title=title)

    monkeypatch.setattr(gallery, "results_panel", results_panel)
    out = gallery.ranking_panels(tsv, bench, tmp_path / "panels", queries=2, top=3)
    assert [p.name for p in out] == ["fig6-qa.png", "fig6-qc.png"]
    assert all(p.read_bytes()[:8] == PNG for p in out)
    # What each panel shows: the query's own picture and box, then its first `top` results in rank
    # order, each with its image's pixels, its box, its score and whether it is relevant.
    assert [d[3] for d in drawn] == ["qa", "qc"]
    for (query_image, box, results, _), qi, name in zip(drawn, (0, 2), ("qa", "qc")):
        np.testing.assert_array_equal(query_image, np.asarray(Image.open(tmp_path / f"{name}.png")))
        assert box == (5, 5, 30, 30) and len(results) == 3
        for rank, (pixels, rbox, score, relevant) in enumerate(results, 1):
            np.testing.assert_array_equal(pixels, np.asarray(Image.open(tmp_path / f"db{rank - 1}.png")))
            np.testing.assert_array_equal(rbox, [1, 2, 20, 30])
            assert score == pytest.approx(round(1 / rank, 3)) and relevant == (rank - 1 == qi)
    tsv.write_text(lines[0] + "\nqa\t1\tdb0.png\tnot-a-number\t1\t2\t3\t4\t1\n")
    with pytest.raises(ValueError, match="rankings.tsv:2: bad rankings row"):
        gallery.read_rankings(tsv)


def test_region_pictures(bench, tmp_path):
    seen = []

    def extractor(image, keep_maps=False):
        seen.append((image.shape, keep_maps))
        regions = Regions(np.array([[5, 5, 30, 30]], np.float32), np.ones(1, np.float32), np.zeros((1, 2), np.int32),
                          np.array([[17, 17, 12, 10, 0.3]], np.float32))
        return SimpleNamespace(regions=regions, maps=np.random.default_rng(1).random((1, 40, 60)),
                               activation=np.ones((2, 2), np.float32))

    out = gallery.region_pictures(extractor, bench, tmp_path / "pics", images=2)
    assert [p.name for p in out] == ["fig3-qa.png", "fig3-qc.png"]
    assert seen == [((40, 60, 3), True)] * 2 and all(p.read_bytes()[:8] == PNG for p in out)
