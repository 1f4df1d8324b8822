"""INRIA Holidays loader: groups, queries, malformed folders."""

from __future__ import annotations

import pytest

from dasr.eval import datasets as D
from eval_helpers import touch


def test_holidays_groups_and_queries(tmp_path):
    root = tmp_path / "holidays"
    touch(root, "jpg/100000.jpg", "jpg/100001.jpg", "jpg/100002.jpg", "jpg/100100.jpg",
           "jpg/100101.jpg", "jpg/readme.txt")
    b = D.load_benchmark("holidays", root)
    assert (b.ap, b.query_in_database) == ("holidays", True)
    assert b.database == ("jpg/100000.jpg", "jpg/100001.jpg", "jpg/100002.jpg", "jpg/100100.jpg", "jpg/100101.jpg")
    q1, q2 = b.queries
    assert (q1.name, q1.image, q1.positives, q1.box) == ("100000", "jpg/100000.jpg", (1, 2), None)
    assert (q2.name, q2.positives) == ("100100", (4,))


def test_holidays_lonely_group_and_empty_folder(tmp_path):
    root = tmp_path / "holidays"
    touch(root, "100000.jpg", "100001.jpg", "100200.jpg")  # images directly in root
    with pytest.raises(ValueError, match="group 1002"):
        D.load_holidays(root)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(D.DatasetMissingError, match="NNNNNN.jpg"):
        D.load_holidays(empty)
