"""Every measured number the README quotes comes from the committed report the README names for it.

The README's sections that quote measurements ("Method decisions", "What the shipped data shows", "Speed",
"Scale-out", "Robustness", "Tests and benchmarks") are checked paragraph by paragraph: each
decimal number of a paragraph must appear in the reports (Markdown/CSV/JSON files, or folders of
them, under ``reports/``) that the paragraph names, or, for a paragraph that names none (a table
under its introduction), that the nearest paragraph before it in the section names.  Settings
written as ``name = value`` or ``≥ value`` (τ = 0.1, IoU ≥ 0.5) and numbers inside `code` (a
command's options) are parameters, not measurements, and are not checked.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ("Method decisions (where the paper is silent)", "What the shipped data shows", "Speed", "Scale-out",
            "Robustness", "Tests and benchmarks")
NUMBER = re.compile(r"(?<![\w.=≥≤<>@/-])(?<![=≥≤<>] )[-+−]?\d+\.\d+")


def section(text: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"README has no section {title!r}"
    return match.group(1)


REPORT = re.compile(r"reports/[\w.\-/]*\w")
CODE = re.compile(r"`[^`]*`")


def measured_numbers(text: str) -> list[str]:
    return [m.group(0).lstrip("+-−") for m in NUMBER.finditer(CODE.sub("", text))]


def named_reports(text: str) -> list[tuple[str, list[str]]]:
    """(paragraph, the reports it names or else the nearest earlier paragraph named) of a section."""
    out, names = [], []
    for paragraph in re.split(r"\n\s*\n", text):
        names = REPORT.findall(paragraph) or names
        out.append((paragraph, names))
    return out


def missing_numbers(paragraph: str, names: list[str], repo: Path) -> list[str]:
    """The paragraph's numbers that none of the reports ``names`` (files or folders under ``repo``) holds."""
    reports = "\n".join(report_text(repo / n) if (repo / n).is_dir() else
                        (repo / n).read_text(encoding="utf-8", errors="replace") if (repo / n).is_file() else ""
                        for n in names)
    return sorted({n for n in measured_numbers(paragraph)
                   if not re.search(rf"(?<![\d.]){re.escape(n)}(?!\d)", reports)})


def report_text(root: Path) -> str:
    files = [p for p in sorted(root.rglob("*")) if p.suffix in (".md", ".csv", ".json", ".tsv")]
    return "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in files)


@pytest.mark.parametrize("title", SECTIONS)
def test_every_readme_number_is_in_the_report_it_names(title):
    problems = []
    for paragraph, names in named_reports(section((REPO / "README.md").read_text(encoding="utf-8"), title)):
        if not measured_numbers(paragraph):
            continue
        if not names:
            problems.append(f"names no report for {measured_numbers(paragraph)}: {paragraph[:60]!r}")
        elif missing := missing_numbers(paragraph, names, REPO):
            problems.append(f"{missing} are not in {names}")
    assert problems == [], f"README {title!r}: " + "; ".join(problems)


def test_the_check_wants_each_number_in_the_report_its_paragraph_names(tmp_path):
    (tmp_path / "reports" / "a").mkdir(parents=True)
    (tmp_path / "reports" / "a" / "r.md").write_text("| DASR* | 0.846 |\n")
    (tmp_path / "reports" / "b.md").write_text("| R-MAC | 0.912 |\n")
    text = ("DASR* gets 0.846 mAP (`reports/a/`) with τ = 0.1, IoU ≥ 0.5 and `--cpus 0.5`.\n\n"
            "| R-MAC | 0.912 |\n\nR-MAC: 0.912 (`reports/b.md`).")
    (para1, names1), (table, names2), (para3, names3) = named_reports(text)
    assert measured_numbers(para1) == ["0.846"] and names1 == ["reports/a"]
    assert missing_numbers(para1, names1, tmp_path) == []
    # the table has no report of its own: the one named above it, which does not hold 0.912
    assert names2 == ["reports/a"] and missing_numbers(table, names2, tmp_path) == ["0.912"]
    assert names3 == ["reports/b.md"] and missing_numbers(para3, names3, tmp_path) == []
