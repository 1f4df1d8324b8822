"""Tests for dasr.io.outputs: figures named for another format, output folders that are files."""

from __future__ import annotations

import pytest

from dasr.io.outputs import OutputPathError, check_output_folder, check_output_path


def test_a_figure_named_for_another_format_is_refused_even_when_new(tmp_path):
    with pytest.raises(OutputPathError, match=r"--figure .*fig.h5: written as .png; give a name ending in .png"):
        check_output_path(tmp_path / "fig.h5", [], (".png",), "--figure", format_from_suffix=True)
    assert check_output_path(tmp_path / "fig.PNG", [], (".png",), "--figure", format_from_suffix=True).name == "fig.PNG"
    for name in ("fig", "fig."):  # no format at all: matplotlib would be left to guess from a temporary name
        with pytest.raises(OutputPathError, match="give a name ending in .png"):
            check_output_path(tmp_path / name, [], (".png",), "--figure", format_from_suffix=True)
    # Without the flag a new file of any name is fine (a JSON file may be called out.txt).
    assert check_output_path(tmp_path / "out.txt", [], (".json",), "--json").name == "out.txt"


def test_an_output_folder_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(OutputPathError, match=r"notes.txt is a file, not a folder"):
        check_output_folder(tmp_path / "notes.txt", "--out")
    with pytest.raises(OutputPathError, match=r"notes.txt is a file, not a folder"):
        check_output_folder(tmp_path / "notes.txt" / "sub", "--out")
    assert check_output_folder(tmp_path / "new" / "sub", "--out") == tmp_path / "new" / "sub"
    assert (tmp_path / "notes.txt").read_text() == "x"


def test_an_input_is_named_as_such_before_its_format(tmp_path):
    (tmp_path / "photo.jpg").write_bytes(b"x")
    with pytest.raises(OutputPathError, match="is one of the command's inputs"):
        check_output_path(tmp_path / "photo.jpg", [tmp_path / "photo.jpg"], (".png",), "--figure",
                          format_from_suffix=True)
