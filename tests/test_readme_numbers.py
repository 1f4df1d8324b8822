"""Every measured number the README quotes comes from a committed report under ``reports/``.

The README's sections that quote measurements ("Method decisions", "What the shipped data shows", "Speed",
"Scale-out", "Robustness", "Tests and benchmarks") are checked; each
decimal number there must appear in one of the committed reports (Markdown/CSV/JSON), which
its make target or script regenerates.  Settings written as ``name = value`` or ``≥ value``
(τ = 0.1, IoU ≥ 0.5) are parameters, not measurements, and are not checked.
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


def measured_numbers(text: str) -> list[str]:
    return [m.group(0).lstrip("+-−") for m in NUMBER.finditer(text)]


def report_text(root: Path) -> str:
    files = [p for p in sorted(root.rglob("*")) if p.suffix in (".md", ".csv", ".json", ".tsv")]
    return "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in files)


@pytest.mark.parametrize("title", SECTIONS)
def test_every_readme_number_is_in_a_committed_report(title):
    numbers = measured_numbers(section((REPO / "README.md").read_text(encoding="utf-8"), title))
    reports = report_text(REPO / "reports")
    missing = sorted({n for n in numbers if not re.search(rf"(?<![\d.]){re.escape(n)}(?!\d)", reports)})
    assert missing == [], f"README {title!r} quotes numbers no report under reports/ holds: {missing}"


def test_the_check_finds_a_number_that_no_report_holds(tmp_path):
    (tmp_path / "r.md").write_text("| DASR* | 0.846 |\n")
    text = "DASR* gets 0.846 mAP and 0.912 on the other set, with τ = 0.1 and IoU ≥ 0.5."
    numbers = measured_numbers(text)
    assert numbers == ["0.846", "0.912"]
    reports = report_text(tmp_path)
    assert [n for n in numbers if n not in reports] == ["0.912"]
