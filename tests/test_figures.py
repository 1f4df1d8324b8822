"""dasr.figures: a figure is written in the format its name ends with, or refused by name."""

from __future__ import annotations

import sys

import pytest
from matplotlib.figure import Figure

from dasr.errors import InputError
from dasr.figures import _save


@pytest.mark.parametrize("name", ["fig", "fig.", "fig.xyz"])
def test_a_name_without_a_known_format_is_refused_and_nothing_is_written(tmp_path, name):
    with pytest.raises(InputError, match=f"{name}: a figure's name must end in one of .*png"):
        _save(Figure(), tmp_path / name)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name, magic", [("a.png", b"\x89PNG"), ("b.SVG", b"<?xml"), ("c.pdf", b"%PDF")])
def test_the_format_is_the_names_ending(tmp_path, name, magic):
    assert _save(Figure(), tmp_path / name) == tmp_path / name
    assert (tmp_path / name).read_bytes().startswith(magic)


def test_importing_the_figures_touches_no_global_matplotlib_state():
    """A library import must not pick a backend for its user (a notebook keeps its own)."""
    import subprocess

    # The rcParams entry itself (matplotlib.get_backend() would import pyplot to resolve it).
    code = ("import sys, matplotlib; raw = lambda: dict.__getitem__(matplotlib.rcParams, 'backend'); "
            "before = raw(); import dasr.figures; print(before == raw(), 'matplotlib.pyplot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["True", "False"], out.stderr
