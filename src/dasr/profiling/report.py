"""Writing a benchmark's report: number formatting, the Markdown table, JSON-safe values."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dasr.io.atomic import atomic_write_bytes

TABLE_HEAD = ("section", "metric", "value", "unit")


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: ``n/a`` for None, thousands separators for integers and large values,
    ``digits`` significant digits below 100, one decimal from 100 to 1000."""
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    v = float(value)
    if not math.isfinite(v):
        return str(v)
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.1f}"
    return f"{v:.{digits}g}"


def markdown(rows: Sequence[Sequence[str]], head: Sequence[str] = TABLE_HEAD) -> str:
    """A Markdown table with padded columns."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(head)]

    def line(cells):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def to_jsonable(value: Any) -> Any:
    """``value`` with numpy scalars and arrays as Python values, paths as strings, tuples as
    lists and non-finite floats as None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: Path, data: dict) -> None:
    """``data`` as indented JSON, written atomically."""
    atomic_write_bytes(path, (json.dumps(to_jsonable(data), indent=1) + "\n").encode())
