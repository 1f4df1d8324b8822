"""The report reads the records: header lines, the results.json round trip, the bootstrap reference."""

from __future__ import annotations

import pytest

from dasr.errors import InputWarning
from dasr.eval.records import ScalabilityInfo, WhiteningInfo
from dasr.experiments.bootstrap import bootstrap_rows, matches_reference
from dasr.experiments.cells import Cell
from dasr.experiments.config import DEFAULTS
from dasr.experiments.entries import Entry, read_results, save_results
from dasr.experiments.report import benchmark_header, replot

from experiments_helpers import canned_result


def _cfg(**values) -> dict:
    return {**DEFAULTS, "name": "t", "title": "T", **values}


def test_header_reads_the_record_fields():
    r = canned_result("dasr-star", "instance-160", {}, "other", "paris-landmarks", database_images=1234)
    r.queries = 56
    r.notes = ["junk images are removed"]
    assert benchmark_header(r) == ["- whitening: other, learned on paris-landmarks, 2048 dims",
                                   "- 1234 database images, 56 queries", "- note: junk images are removed"]
    r.subsample = 12
    r.pca = WhiteningInfo("none", None, None, None, None)
    assert benchmark_header(r)[:2] == ["- whitening: none", "- 1234 database images (subsampled: 1 in 12), 56 queries"]
    r.vlad = {"k": 4, "codebook_source": "oxford5k"}
    r.pca = WhiteningInfo("other", "oxford5k", 29, 30, None, "capped at 29")
    assert benchmark_header(r)[0] == ("- whitening: other, learned on oxford5k, 29 dims (capped at 29); "
                                      "VLAD codebook learned on oxford5k")
    r.scalability = ScalabilityInfo(1000, 7000, 8000, "exact", 100, 1.0, {}, None)
    assert benchmark_header(r)[1] == "- 234 database images (subsampled: 1 in 12) plus the distractors, 56 queries"


def test_results_json_round_trip_and_replot(tmp_path):
    cfg = _cfg(compare="table1", pca="none", bootstrap={**DEFAULTS["bootstrap"], "n_boot": 100})
    cells = [Cell("dasr-star", "resnet50", None, "default", "dasr-star"), Cell("gap", "resnet50", None, "default", "gap")]
    entries = [Entry("instance-160", True, c, "", canned_result(c.method, "instance-160", {"method": c.method}))
               for c in cells]
    entries.append(Entry("instance-160", True, Cell("rmac", "resnet50", None, "default", "rmac"), "", None,
                         "RuntimeError: boom\ntraceback"))
    save_results(cfg, entries, tmp_path)
    saved, back = read_results(tmp_path)
    assert saved["name"] == "t" and back == entries
    paths = replot(_cfg(compare="table1", plot={"kind": "none"}), {}, tmp_path)
    md = paths["md"].read_text()
    assert "| rmac | error: RuntimeError: boom |" in md and "- instance-160 / rmac: RuntimeError: boom" in md
    assert "- 20 database images, 10 queries" in md and not any(p.suffix == ".png" for p in paths.values())


def test_bootstrap_reference_and_rows():
    star = Cell("dasr-star", "resnet50", None, "default", "d*")
    assert matches_reference(star, {"method": "dasr-star", "beta": 0.3, "layer": "conv5_block1_out"})
    assert not matches_reference(star, {"beta": "none"})
    assert matches_reference(Cell("dasr", "resnet50", None, "default", "d"), {"beta": "none"})  # DASR: no NMS
    with pytest.raises(ValueError, match="unknown key 'bogus'"):
        matches_reference(star, {"bogus": 1})
    a = canned_result("dasr-star", "b", {})
    b = canned_result("gap", "b", {})
    entries = [Entry("b", False, star, "", a), Entry("b", False, Cell("gap", "resnet50", None, "default", "g"), "", b)]
    rows = bootstrap_rows(_cfg(bootstrap={**DEFAULTS["bootstrap"], "n_boot": 200}), entries)
    assert len(rows) == 1 and rows[0]["reference"] == "d*" and rows[0]["other"] == "g" and rows[0]["queries"] == 10
    diffs = [p.ap["ap"] - q.ap["ap"] for p, q in zip(a.per_query, b.per_query)]
    assert rows[0]["mean_difference"] == pytest.approx(sum(diffs) / len(diffs))
    assert rows[0]["ci_low"] <= rows[0]["mean_difference"] <= rows[0]["ci_high"] and rows[0]["excludes_zero"]


def test_a_reference_matching_several_cells_or_none_gives_no_rows_and_says_so():
    """A reference by method alone, in a run with both rules, matches two cells: no silent gap."""
    paper, authors = (Cell("dasr-star", "resnet50", None, "default", label, rule)
                      for label, rule in (("dasr-star", "paper"), ("dasr-star authors", "authors")))
    gap = Cell("gap", "resnet50", None, "default", "gap")
    entries = [Entry("b", False, c, "", canned_result(c.method, "b", {})) for c in (paper, authors, gap)]
    cfg = _cfg(bootstrap={**DEFAULTS["bootstrap"], "n_boot": 50})
    with pytest.warns(InputWarning, match=r"matches 2 cells \(dasr-star, dasr-star authors\) of b: no paired"):
        assert bootstrap_rows(cfg, entries) == []
    with pytest.warns(InputWarning, match="matches no cell of b"):
        assert bootstrap_rows(_cfg(bootstrap={**DEFAULTS["bootstrap"], "reference": {"method": "crow"}}), entries) == []
    rows = bootstrap_rows(_cfg(bootstrap={**DEFAULTS["bootstrap"], "n_boot": 50,
                                          "reference": {"method": "dasr-star", "rule": "paper"}}), entries)
    assert [(r["reference"], r["other"]) for r in rows] == [("dasr-star", "dasr-star authors"), ("dasr-star", "gap")]
