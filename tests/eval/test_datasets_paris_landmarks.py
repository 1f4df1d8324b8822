"""paris-landmarks loader on the shared set."""

from __future__ import annotations

from pathlib import Path

import pytest

from dasr.eval import datasets as D


def _shared(name: str) -> Path:
    root = D.default_root(name, start=Path(__file__).parent)
    if not (root / "annotations.csv").is_file():
        pytest.skip(f"shared data folder for {name} not found")
    return root


def test_paris_landmarks_shared_set():
    root = _shared("paris-landmarks")
    b = D.load_benchmark("paris-landmarks", root)
    assert (b.ap, len(b.database), len(b.queries)) == ("oxford", 250, 24)
    for q in b.queries:
        landmark = q.image.split("/")[2]
        assert q.box is None and q.junk == ()
        assert {b.database[i].split("/")[2] for i in q.positives} == {landmark}
        assert len(q.positives) == 50
