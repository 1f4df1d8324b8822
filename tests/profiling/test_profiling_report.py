"""Report formatting of the benchmarks (dasr.profiling.report)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dasr.profiling.report import fmt, markdown, to_jsonable, write_json


def test_fmt_cells():
    assert [fmt(None), fmt("x"), fmt(np.bool_(True)), fmt(1234567), fmt(np.int64(12))] == \
        ["n/a", "x", "True", "1,234,567", "12"]
    assert [fmt(0.0), fmt(12345.6), fmt(123.456), fmt(0.0123456), fmt(1.5, digits=1), fmt(float("inf"))] == \
        ["0", "12,346", "123.5", "0.0123", "2", "inf"]


def test_markdown_pads_columns():
    table = markdown([("a", "long metric", "1", ""), ("bb", "m", "22", "s")])
    assert table.splitlines() == [
        "| section | metric      | value | unit |",
        "|---------|-------------|-------|------|",
        "| a       | long metric | 1     |      |",
        "| bb      | m           | 22    | s    |",
    ]


def test_json_values(tmp_path):
    data = {"a": np.float32(0.5), "b": (np.arange(2), Path("p")), 3: float("nan")}
    assert to_jsonable(data) == {"a": 0.5, "b": [[0, 1], "p"], "3": None}
    write_json(tmp_path / "r.json", data)
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": 0.5, "b": [[0, 1], "p"], "3": None}
