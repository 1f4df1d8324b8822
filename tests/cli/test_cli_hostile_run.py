"""tools/hostile_run.py, quick subset: hostile inputs end in one line and exit 2, inputs unchanged."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from conftest import REPO, subprocess_env

SCRIPT = REPO / "tools" / "hostile_run.py"


def _script():
    spec = importlib.util.spec_from_file_location("hostile_run", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_quick_hostile_run_has_no_finding(tmp_path, monkeypatch):
    for key, value in subprocess_env(tmp_path / "home").items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "hostile.md"
    assert _script().main(["--quick", "--out", str(out)]) == 0, out.read_text()
    report = out.read_text()
    hostile = _script()
    for name in hostile.QUICK:
        assert f"| {name} |" in report
    assert ", 0 with findings" in report


def test_the_checks_see_a_traceback_a_wrong_exit_and_a_changed_input(tmp_path):
    """The checks themselves, on commands that misbehave on purpose (no dasr run needed)."""
    hostile = _script()
    (tmp_path / "input.txt").write_text("original\n")
    changes = hostile.Case("changes-input", [], rc=hostile.REFUSED)
    hostile.run_case_command(changes, tmp_path, [
        "python", "-c", "open('input.txt', 'w').write('changed'); import sys; "
        "sys.stderr.write('dasr: error: x\\n'); sys.exit(2)"])
    assert changes.result["findings"] == ["inputs changed: input.txt"]
    crashes = hostile.Case("crashes", [], rc=hostile.REFUSED)
    hostile.run_case_command(crashes, tmp_path, ["python", "-c", "raise ValueError('boom')"])
    assert crashes.result["findings"] == ["exit 1, expected 2", "traceback on stderr"]
    two_lines = hostile.Case("two-lines", [], rc=hostile.REFUSED, stderr_has="needle")
    hostile.run_case_command(two_lines, tmp_path, [
        "python", "-c", "import sys; sys.stderr.write('dasr: error: a\\ndasr: error: b\\n'); sys.exit(2)"])
    assert two_lines.result["findings"] == ["2 'dasr: error:' lines", "message lacks 'needle'"]


def test_an_argparse_refusal_counts_as_one_error_line(tmp_path):
    hostile = _script()
    case = hostile.Case("argparse", [], rc=hostile.REFUSED)
    hostile.run_case_command(case, tmp_path, [
        "python", "-c", "import sys; sys.stderr.write('usage: dasr extract [-h]\\n"
        "dasr extract: error: argument --tau: nan\\n'); sys.exit(2)"])
    assert case.result["findings"] == [] and case.result["message"] == "dasr extract: error: argument --tau: nan"
