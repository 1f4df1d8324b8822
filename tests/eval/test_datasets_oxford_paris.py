"""Oxford5k / Paris6k loaders on synthetic ground-truth files."""

from __future__ import annotations

from pathlib import Path

import pytest

from dasr.eval import datasets as D
from eval_helpers import touch, write_text


def _oxford_like(root: Path, prefix: str, stem: str) -> None:
    names = [f"{stem}_000001", f"{stem}_000002", f"{stem}_000003", "other_000001", "other_000002"]
    touch(root, *(f"jpg/{n}.jpg" for n in names))
    gt = root / "gt"
    write_text(gt / f"{stem}_1_query.txt", f"{prefix}{stem}_000001 1.5 2.5 100.0 200.0\n")
    write_text(gt / f"{stem}_1_good.txt", f"{stem}_000001\n{stem}_000002\n")
    write_text(gt / f"{stem}_1_ok.txt", f"{stem}_000003\n")
    write_text(gt / f"{stem}_1_junk.txt", "other_000002\n")


def test_oxford5k_gt_files(tmp_path):
    root = tmp_path / "oxford5k"
    _oxford_like(root, "oxc1_", "all_souls")
    b = D.load_benchmark("oxford5k", root)
    assert (b.ap, len(b.database), b.query_in_database) == ("oxford", 5, False)
    (q,) = b.queries
    assert (q.name, q.image, q.box) == ("all_souls_1", "jpg/all_souls_000001.jpg", (1.5, 2.5, 100.0, 200.0))
    assert [b.database[i] for i in q.positives] == [
        "jpg/all_souls_000001.jpg", "jpg/all_souls_000002.jpg", "jpg/all_souls_000003.jpg"]
    assert [b.database[i] for i in q.junk] == ["jpg/other_000002.jpg"]


def test_paris6k_without_prefix_and_dropped_image(tmp_path):
    root = tmp_path / "paris6k"
    _oxford_like(root, "", "paris_defense")
    write_text(root / "gt" / "paris_defense_1_ok.txt", "paris_defense_000003\nparis_defense_000099\n")
    with pytest.warns(UserWarning, match="paris_defense_000099"):
        b = D.load_benchmark("paris6k", root)
    assert len(b.queries[0].positives) == 3


def test_oxford_malformed_query_file(tmp_path):
    root = tmp_path / "oxford5k"
    _oxford_like(root, "oxc1_", "all_souls")
    write_text(root / "gt" / "all_souls_1_query.txt", "oxc1_all_souls_000001 1 2 3\n")
    with pytest.raises(ValueError, match=r"all_souls_1_query\.txt, line 1"):
        D.load_oxford5k(root)
