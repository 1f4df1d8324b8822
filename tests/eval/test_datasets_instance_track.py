"""instance-track loader: the shared set and synthetic copies (validation, file and line in errors)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from dasr.eval import datasets as D
from eval_helpers import touch, write_text


def _shared(name: str) -> Path:
    root = D.default_root(name, start=Path(__file__).parent)
    if not (root / "annotations.csv").is_file():
        pytest.skip(f"shared data folder for {name} not found")
    return root


def test_instance_track_shared_set():
    root = _shared("instance-track")
    b = D.load_benchmark("instance-track", root)
    assert (b.name, b.ap, b.query_in_database) == ("instance-track", "instance", False)
    assert len(b.database) == 773 and len(b.queries) == 28
    with open(root / "annotations.csv", newline="") as f:
        rows = {r["image"]: r for r in csv.DictReader(f)}
    gt = {line.split()[0]: line.split()[2:] for line in (root / "gt.txt").read_text().splitlines() if line.strip()}
    for q in b.queries:
        assert rows[q.image]["role"] == "query" and q.name == rows[q.image]["instance"]
        assert [b.database[i] for i in q.positives] == gt[q.image]
        assert q.box == tuple(float(rows[q.image][k]) for k in ("x1", "y1", "x2", "y2"))
        assert set(q.positive_boxes) == set(q.positives)
        i = q.positives[-1]
        assert q.positive_boxes[i] == tuple(float(rows[b.database[i]][k]) for k in ("x1", "y1", "x2", "y2"))
    # every reference is relevant to exactly one query
    assert sorted(i for q in b.queries for i in q.positives) == list(range(773))


_TRACK_HEADER = "image,instance,role,width,height,x1,y1,x2,y2\n"


def _track(tmp_path: Path, gt: str, rows: str | None = None) -> Path:
    root = tmp_path / "instance-track"
    rows = rows if rows is not None else (
        "images/a/0.jpg,a,query,10,10,1,1,5,5\n"
        "images/a/1.jpg,a,reference,10,10,2,2,6,6\n"
        "images/b/0.jpg,b,query,10,10,0,0,3,3\n"
        "images/b/1.jpg,b,reference,10,10,1,2,3,4\n"
        "images/a/2.jpg,a,reference,10,10,0,0,9,9\n"
    )
    write_text(root / "annotations.csv", _TRACK_HEADER + rows)
    write_text(root / "gt.txt", gt)
    for line in rows.splitlines():
        touch(root, line.split(",")[0])
    return root


def test_instance_track_synthetic(tmp_path):
    root = _track(tmp_path, "images/a/0.jpg 2 images/a/1.jpg images/a/2.jpg\nimages/b/0.jpg 1 images/b/1.jpg\n")
    b = D.load_instance_track(root)
    assert b.database == ("images/a/1.jpg", "images/b/1.jpg", "images/a/2.jpg")
    qa, qb = b.queries
    assert (qa.name, qa.positives, qa.box) == ("a", (0, 2), (1.0, 1.0, 5.0, 5.0))
    assert qa.positive_boxes == {0: (2.0, 2.0, 6.0, 6.0), 2: (0.0, 0.0, 9.0, 9.0)}
    assert qb.positives == (1,)


def test_instance_track_count_mismatch_names_file_and_line(tmp_path):
    root = _track(tmp_path, "images/a/0.jpg 2 images/a/1.jpg images/a/2.jpg\nimages/b/0.jpg 2 images/b/1.jpg\n")
    with pytest.raises(ValueError, match=r"gt\.txt, line 2: N=2 but 1"):
        D.load_instance_track(root)


def test_instance_track_unknown_reference(tmp_path):
    root = _track(tmp_path, "images/a/0.jpg 1 images/zz.jpg\nimages/b/0.jpg 1 images/b/1.jpg\n")
    with pytest.raises(ValueError, match=r"line 1: reference 'images/zz.jpg'"):
        D.load_instance_track(root)


def test_instance_track_bad_csv_row(tmp_path):
    rows = "images/a/0.jpg,a,query,10,10,1,1,5,5\nimages/a/1.jpg,a,reference,10,10,2,x,6,6\n"
    root = _track(tmp_path, "images/a/0.jpg 1 images/a/1.jpg\n", rows=rows)
    with pytest.raises(ValueError, match=r"annotations\.csv, line 3: box"):
        D.load_instance_track(root)


def test_instance_track_missing_image(tmp_path):
    root = _track(tmp_path, "images/a/0.jpg 2 images/a/1.jpg images/a/2.jpg\nimages/b/0.jpg 1 images/b/1.jpg\n")
    (root / "images/b/1.jpg").unlink()
    with pytest.raises(D.DatasetMissingError, match="images/b/1.jpg"):
        D.load_instance_track(root)
    assert len(D.load_instance_track(root, check_images=False).database) == 3
