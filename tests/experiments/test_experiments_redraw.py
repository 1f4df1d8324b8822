"""``task = "figures"``: runs replotted from their results.json; an older layout is listed, not redrawn."""

from __future__ import annotations

import json

import pytest

from dasr.experiments import run_experiment
from dasr.experiments.cells import Cell
from dasr.experiments.entries import ResultsFormatError, read_results

from experiments_helpers import write_config


def _old_layout(folder, cfg_path):
    """A results.json as written before the records: the result is a loose dict."""
    folder.mkdir(parents=True)
    cell = Cell("dasr-star", "resnet50", None, "default", "dasr-star").to_json()
    (folder / "results.json").write_text(json.dumps({"config": {"_path": str(cfg_path)}, "entries": [
        {"benchmark": "instance-160", "paper_data": True, "cell": cell, "group": "",
         "result": {"benchmark": "instance-160", "images": 20, "mean": {"ap": 0.5}}, "error": None}]}))


def test_an_older_results_layout_is_named_not_redrawn(tmp_path):
    exp = write_config(tmp_path, 'compare = "table1"\n', name="exp.toml")
    _old_layout(tmp_path / "out", exp)
    with pytest.raises(ResultsFormatError, match="results.json: not this version's results layout"):
        read_results(tmp_path / "out")
    figs = tmp_path / "figs.toml"
    figs.write_text(f'task = "figures"\nexperiments = ["exp"]\nout = "{tmp_path / "figs"}"\n')
    index = (run_experiment(figs, [], quiet=True) / "results.md").read_text()
    assert "- exp: [out](../out/results.md) not redrawn: " in index and "SearchResult.from_json" in index
    assert not (tmp_path / "out" / "results.md").exists()
