"""dasr.figures: a figure is written in the format its name ends with, or refused by name."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

from dasr.errors import InputError
from dasr.figures import _save


@pytest.mark.parametrize("name", ["fig", "fig.", "fig.xyz"])
def test_a_name_without_a_known_format_is_refused_and_nothing_is_written(tmp_path, name):
    with pytest.raises(InputError, match=f"{name}: a figure's name must end in one of .*png"):
        _save(plt.figure(), tmp_path / name)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name, magic", [("a.png", b"\x89PNG"), ("b.SVG", b"<?xml"), ("c.pdf", b"%PDF")])
def test_the_format_is_the_names_ending(tmp_path, name, magic):
    assert _save(plt.figure(), tmp_path / name) == tmp_path / name
    assert (tmp_path / name).read_bytes().startswith(magic)
