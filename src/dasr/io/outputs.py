"""Where a command may write: never over one of its own inputs, nor over a file of another kind.

A command that writes ``--json out.json`` over the photo it reads, or a whitening file over the
index it whitens, destroys data the user cannot get back.  Every output path is checked here
before any work starts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from dasr.errors import UserError


class OutputPathError(UserError, ValueError):
    """An output path that would destroy an input or a file of another kind (names both)."""


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_output_path(out: str | os.PathLike, inputs: Iterable[str | os.PathLike], suffixes: tuple[str, ...],
                      what: str, overwrite_other_kind: bool = False, format_from_suffix: bool = False) -> Path:
    """``out`` itself, if writing there destroys no input and no file of another kind.

    Args:
      out: the output path.
      inputs: the command's input files.
      suffixes: the file name endings this output may have (lower case, e.g. ``(".json",)``);
        an existing file with another ending is of another kind.
      what: the output's name in the messages (``--json``, ``--figure``, ...).
      overwrite_other_kind: allow replacing an existing file of another kind.
      format_from_suffix: the writer picks the format from the name (matplotlib's figures): a
        name with another ending is refused even when no such file exists.

    Raises:
      OutputPathError: ``out`` is an input, a folder, an existing file of another kind, or (with
        ``format_from_suffix``) a name with another ending.
    """
    out = Path(out)
    for inp in inputs:
        if _same_file(out, Path(inp)):
            raise OutputPathError(f"{what} {out}: is one of the command's inputs; choose another file")
    if format_from_suffix and not out.name.lower().endswith(suffixes):
        raise OutputPathError(f"{what} {out}: written as {'/'.join(suffixes)}; give a name ending in "
                              f"{suffixes[0]}")
    if out.is_dir():
        raise OutputPathError(f"{what} {out}: is a folder; give a file name")
    if out.exists() and not out.name.lower().endswith(suffixes) and not overwrite_other_kind:
        raise OutputPathError(f"{what} {out}: an existing file that is not {'/'.join(suffixes)}; "
                              "refusing to replace it (remove it or choose another name)")
    if out.parent != Path("") and out.parent.exists() and not out.parent.is_dir():
        raise OutputPathError(f"{what} {out}: {out.parent} is not a folder")
    return out


def check_output_folder(out: str | os.PathLike, what: str) -> Path:
    """``out`` itself, if it is a folder or can become one (nothing else of that name is in the way).

    Args:
      out: the output folder.
      what: the option's name in the messages (``--out``).

    Raises:
      OutputPathError: ``out`` or one of its parents is an existing file.
    """
    out = Path(out)
    for folder in (out, *out.parents):
        if folder.exists() and not folder.is_dir():
            raise OutputPathError(f"{what} {out}: {folder} is a file, not a folder; choose another folder")
    return out
