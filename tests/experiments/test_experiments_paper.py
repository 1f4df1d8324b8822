"""paper_numbers.toml: checked against the paper's own tables, for consistency, and for what reports look up."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from dasr.eval.datasets import BENCHMARKS
from dasr.experiments.cells import Cell
from dasr.experiments.config import DEFAULTS
from dasr.experiments.paper import metric_columns, paper_benchmarks, paper_row, paper_value

from experiments_helpers import PAPER

with open(PAPER, "rb") as _f:
    NUMBERS = tomllib.load(_f)
# The paper's text (Markdown; its tables are tab-separated), outside the repository.
PAPER_TEXT = Path("/work/shared/paper/dasr-paper.md")
ROW_KEYS = {"dim", "cited", "bold", "off_the_shelf"}


def _paper_table(caption_start: str) -> list[list[str]]:
    """The tab-separated rows (header first) of the paper's table whose caption starts so."""
    lines = PAPER_TEXT.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(caption_start))
    rows = []
    for line in lines[start + 1:]:
        if not line.strip():
            if rows:
                break
            continue
        rows.append(line.split("\t"))
    return rows


def _row_name(cell: str) -> tuple[str, bool]:
    """``'FCIS+XD [40] <sup>‡</sup>'`` -> (``'FCIS+XD'``, cited)."""
    cited = "‡" in cell or "†" in cell
    name = re.sub(r"<sup>.*?</sup>|\[\d+\]|[†‡]", "", cell).strip()
    return name, cited


def _value(cell: str) -> tuple[float | None, bool]:
    """``'<b>0.614</b>'`` -> (0.614, bold); ``'-'`` -> (None, False)."""
    bold = "<b>" in cell
    text = re.sub(r"</?b>", "", cell).strip().replace(",", "")
    return (None if text == "-" else float(text)), bold


def _check_row(ours: dict, paper_cells: list[str], columns: list[str], cited: bool, where: str) -> None:
    dim, _ = _value(paper_cells[0])
    assert ours["dim"] == dim, where
    bold = []
    for col, cell in zip(columns, paper_cells[1:]):
        value, is_bold = _value(cell)
        if value is None:
            assert col not in ours, f"{where} {col}: '-' in the paper"
        else:
            assert ours[col] == value, f"{where} {col}"
        if is_bold:
            bold.append(col)
    assert ours.get("bold", []) == bold, where
    assert bool(ours.get("cited")) == cited, where


@pytest.mark.skipif(not PAPER_TEXT.is_file(), reason="the paper's text is not on this machine")
def test_table1_is_the_papers_table():
    rows = _paper_table("Table 1.")
    assert rows[0] == ["Method", "Dim.", "Top-10", "Top-20", "Top-50", "Top-100", "All"]
    t1 = NUMBERS["table1"]
    body = rows[1:]
    assert len(body) == 22  # Instance-160, then Instance-335
    for bench, part in (("instance-160", body[:11]), ("instance-335", body[11:])):
        assert list(t1[bench]) == [_row_name(r[0])[0] for r in part], bench
        for r in part:
            name, cited = _row_name(r[0])
            _check_row(t1[bench][name], r[1:], t1["columns"], cited, f"table1 {bench} {name}")


@pytest.mark.skipif(not PAPER_TEXT.is_file(), reason="the paper's text is not on this machine")
def test_table2_is_the_papers_table():
    rows = _paper_table("Table 2.")
    assert rows[0] == ["Method", "off-the-shelf", "Dim.", "All"]
    t2 = NUMBERS["table2"]["instre"]
    assert list(t2) == [_row_name(r[0])[0] for r in rows[1:]]
    for r in rows[1:]:
        name, cited = _row_name(r[0])
        assert t2[name]["off_the_shelf"] == r[1], name
        _check_row(t2[name], r[2:], NUMBERS["table2"]["columns"], cited, f"table2 {name}")


@pytest.mark.skipif(not PAPER_TEXT.is_file(), reason="the paper's text is not on this machine")
def test_table3_is_the_papers_table():
    rows = _paper_table("Table 3.")
    assert rows[0] == ["Method", "Dim.", "Holidays", "Oxford5k", "Paris6k"]
    t3 = NUMBERS["table3"]["methods"]
    assert list(t3) == [_row_name(r[0])[0] for r in rows[1:]]
    for r in rows[1:]:
        name, cited = _row_name(r[0])
        _check_row(t3[name], r[1:], NUMBERS["table3"]["columns"], cited, f"table3 {name}")


@pytest.mark.skipif(not PAPER_TEXT.is_file(), reason="the paper's text is not on this machine")
def test_figure_statements_are_in_the_papers_text():
    text = PAPER_TEXT.read_text(encoding="utf-8")
    fig8 = NUMBERS["fig8"]
    assert f"{fig8['regions_total']:,} regions are detected in total" in text
    assert "one million distract" in text and fig8["distractors"] == 1_000_000
    assert "codebook size is fixed to 4" in text and "power-law normalization with factor 0.5" in text


def test_rows_are_fractions_with_known_keys():
    for section in ("table1", "table2"):
        sec = NUMBERS[section]
        assert len(sec["columns"]) == len(sec["column_titles"])
        for bench, rows in ((k, v) for k, v in sec.items() if isinstance(v, dict)):
            assert bench in BENCHMARKS, bench
            for name, row in rows.items():
                assert set(row) <= set(sec["columns"]) | ROW_KEYS, (section, bench, name)
                values = [row[c] for c in sec["columns"] if c in row]
                assert all(0 < v < 1 for v in values), (section, bench, name)
                # Top-k grows towards All with k (the mAP over a longer prefix of the ranking).
                assert values == sorted(values), (section, bench, name)
                assert set(row.get("bold", [])) <= set(sec["columns"])
    t3 = NUMBERS["table3"]
    assert set(t3["columns"]) <= set(BENCHMARKS)
    for name, row in t3["methods"].items():
        assert set(row) <= set(t3["columns"]) | ROW_KEYS, name
        assert all(0 < row[c] < 1 for c in t3["columns"] if c in row), name


def test_every_row_a_report_looks_up_exists():
    """Each of our methods the paper names has its row (and every column) wherever the paper reports it."""
    names = NUMBERS["method_names"]
    cfg = {**DEFAULTS, "name": "t", "task": "instance"}
    for section in ("table1", "table2"):
        cfg["compare"] = section
        for bench in paper_benchmarks(NUMBERS, section):
            for method, row_name in names.items():
                cell = Cell(method, "resnet50", "conv5_block1_out", "default")
                name, row = paper_row(cfg, NUMBERS, bench, cell)
                assert name == row_name
                paper_dim = NUMBERS[section][bench][row_name].get("dim")
                if paper_dim not in (None, 2048):
                    # The paper's 512-d VGG-16 baselines are no row for a ResNet-50 cell.
                    assert row is None, (section, bench, method)
                    continue
                assert row is not None, (section, bench, method)
                cols = metric_columns({**cfg, "ks": [10, 20, 50, 100]} if section == "table1" else
                                      {**cfg, "ks": []}, bench)
                assert all(paper_value(row, p, bench, NUMBERS[section]) is not None for _, _, p in cols), \
                    (section, bench, method)
    # Table 3 is DASR* encoded with VLAD: the config names the row.
    cfg3 = {**DEFAULTS, "name": "t3", "task": "image-search", "compare": "table3",
            "paper_methods": {"dasr-star": "DASR+VLAD"}}
    for bench in paper_benchmarks(NUMBERS, "table3"):
        _, row = paper_row(cfg3, NUMBERS, bench, Cell("dasr-star", "resnet50", None, "default"))
        assert paper_value(row, bench, bench, NUMBERS["table3"]) is not None, bench
    # Only the paper's standard configuration has a paper row.
    assert paper_row(cfg3, NUMBERS, "holidays", Cell("dasr-star", "resnet50", None, 0.4)) == (None, None)
    assert paper_row(cfg3, NUMBERS, "holidays", Cell("dasr-star", "vgg16", None, "default")) == (None, None)


def test_the_shipped_configs_name_the_paper_rows():
    t3 = tomllib.loads((PAPER.parent / "table3.toml").read_text())
    assert t3["paper_methods"]["dasr-star"] in NUMBERS["table3"]["methods"]
    fig4 = NUMBERS["fig4"]
    assert fig4["layer_names"][fig4["best_layer"]] == fig4["best_layer_ours"]
    assert NUMBERS["fig5"]["default_beta"] == 0.3 and NUMBERS["fig5"]["best_beta"] == 0.4


def test_a_resnet_baseline_is_not_compared_with_the_papers_vgg_row():
    """The paper's R-MAC/CroW rows are 512-d VGG-16: a 2048-d ResNet-50 cell gets no Δ against them."""
    cfg = {**DEFAULTS, "name": "t", "task": "instance", "compare": "table1"}
    for method in ("rmac", "crow"):
        assert NUMBERS["table1"]["instance-160"][NUMBERS["method_names"][method]]["dim"] == 512
        name, row = paper_row(cfg, NUMBERS, "instance-160", Cell(method, "resnet50", None, "default"))
        assert name is not None and row is None
    _, row = paper_row(cfg, NUMBERS, "instance-160", Cell("dasr-star", "resnet50", None, "default"))
    assert row is not None and row["dim"] == 2048
