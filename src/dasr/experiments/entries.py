"""One line of an experiment's results: a benchmark, a cell, a group, and its result or error.

An experiment's ``results.json`` is ``{"config": <the config>, "entries": [Entry.to_json(), ...]}``;
the report (:mod:`dasr.experiments.report`) and ``--set replot=true`` read it back with
:func:`read_results`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dasr.errors import InputError
from dasr.eval.records import SearchResult
from dasr.experiments.cells import Cell
from dasr.io.atomic import atomic_write_bytes

__all__ = ["Entry", "ResultsFormatError", "save_results", "read_results"]


class ResultsFormatError(InputError):
    """A results.json that is not this version's layout (e.g. written before the records existed)."""


@dataclass
class Entry:
    """One cell on one benchmark (a scalability cell gives one entry per step and search).

    Attributes:
      benchmark: the searched benchmark.
      paper_data: whether the benchmark is the paper's (else paper numbers are n/a).
      cell: the extractor configuration.
      group: the entries compared with each other in the bootstrap (``""``, or e.g.
        ``"1000 distractors, exact"``).
      result: the result (None: the cell failed).
      error: the failure, ``"Type: message"`` (None: it ran).
    """

    benchmark: str
    paper_data: bool
    cell: Cell
    group: str = ""
    result: SearchResult | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.result is not None

    def to_json(self) -> dict:
        return {"benchmark": self.benchmark, "paper_data": self.paper_data, "cell": self.cell.to_json(),
                "group": self.group, "result": self.result.to_json() if self.result is not None else None,
                "error": self.error}

    @classmethod
    def from_json(cls, d: dict) -> Entry:
        """The inverse of :meth:`to_json`.

        Raises:
          KeyError / ValueError: a missing key, or a result that is not a
            :class:`~dasr.eval.records.SearchResult` (see its ``from_json``).
        """
        return cls(d["benchmark"], bool(d["paper_data"]), Cell.from_json(d["cell"]), d["group"],
                   SearchResult.from_json(d["result"]) if d["result"] is not None else None, d["error"])


def save_results(cfg: dict, entries: list[Entry], out: Path) -> Path:
    """Writes ``<out>/results.json`` (atomically): the config and every entry so far."""
    path = out / "results.json"
    atomic_write_bytes(path, json.dumps({"config": dict(cfg), "entries": [e.to_json() for e in entries]},
                                        indent=1, default=str).encode())
    return path


def read_results(out: Path) -> tuple[dict, list[Entry]]:
    """``<out>/results.json`` -> (the config it was run with, its entries).

    Raises:
      FileNotFoundError: no results.json (the experiment never ran there).
      ResultsFormatError: a file of another layout (names the file and what is wrong).
    """
    path = out / "results.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    try:
        return data["config"], [Entry.from_json(e) for e in data["entries"]]
    except (KeyError, TypeError, ValueError) as e:
        raise ResultsFormatError(f"{path}: not this version's results layout ({type(e).__name__}: {e})") from None
