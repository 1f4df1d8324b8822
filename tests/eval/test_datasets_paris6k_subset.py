"""paris6k-subset: the official Paris6k lists on the shared paris-landmarks images (real files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dasr.errors import InputError
from dasr.eval import datasets as D
from dasr.eval.datasets.common import default_root
from dasr.eval.pca_source import pca_source
from eval_helpers import touch, write_text

ROOT = default_root("paris6k-subset")
needs_shared = pytest.mark.skipif(not (ROOT / "images" / "database").is_dir() or not
                                  (ROOT.parent / "ground-truth" / "paris6k").is_dir(),
                                  reason="shared/data/paris-landmarks or ground-truth/paris6k not found")


@needs_shared
def test_real_counts():
    b = D.load_benchmark("paris6k-subset")
    assert b.root == ROOT and b.ap == "oxford"
    assert len(b.database) == 250
    names = [q.name for q in b.queries]
    assert names == ["defense_4", "defense_5", "eiffel_3", "invalides_2", "invalides_5", "louvre_1", "louvre_2",
                     "louvre_3", "louvre_4", "moulinrouge_2", "moulinrouge_5", "triomphe_5"]
    counts = {q.name: len(q.positives) for q in b.queries}
    assert all(32 <= n <= 48 for name, n in counts.items() if name != "triomphe_5")
    assert counts["triomphe_5"] == 3
    for q in b.queries:
        assert q.image in b.database and b.database.index(q.image) in q.positives  # the query stays in
        assert not set(q.junk) & set(q.positives)
        assert q.box is not None and q.positive_boxes is None


@needs_shared
def test_real_boxes_are_scaled_to_the_resized_copies():
    """defense_4's official box is 8 104 707 913 on its 1,024 px original; its copy is 523 x 640."""
    q = next(q for q in D.load_benchmark("paris6k-subset").queries if q.name == "defense_4")
    f = 640 / 1024
    assert q.box == pytest.approx((8 * f, 104 * f, 707 * f, 913 * f))


def test_whitening_is_never_learned_on_its_own_images():
    assert pca_source("paris6k-subset") == "instance-track"


def _tiny(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "paris-landmarks"
    touch(root, "images/database/a/paris_a_000001.jpg", "images/database/a/paris_a_000002.jpg",
          "images/database/b/paris_b_000001.jpg")
    write_text(root / "annotations.csv", "image,landmark,role,width,height\n"
               "images/database/a/paris_a_000001.jpg,a,database,640,480\n"
               "images/database/a/paris_a_000002.jpg,a,database,480,640\n"
               "images/database/b/paris_b_000001.jpg,b,database,640,480\n")
    gt = tmp_path / "ground-truth" / "paris6k"
    write_text(gt / "a_1_query.txt", "paris_a_000001 100 200 1024 768\n")
    write_text(gt / "a_1_good.txt", "paris_a_000001\nparis_a_000009\n")   # 000009: not in the subset
    write_text(gt / "a_1_ok.txt", "paris_a_000002\n")
    write_text(gt / "a_1_junk.txt", "paris_b_000001\n")
    write_text(gt / "b_1_query.txt", "paris_b_000007 0 0 10 10\n")        # query image absent: dropped
    for kind in ("good", "ok", "junk"):
        write_text(gt / f"b_1_{kind}.txt", "paris_b_000001\n")
    return root, gt


def test_restricts_the_official_lists(tmp_path):
    root, _ = _tiny(tmp_path)
    b = D.load_benchmark("paris6k-subset", root)
    assert b.database == ("images/database/a/paris_a_000001.jpg", "images/database/a/paris_a_000002.jpg",
                          "images/database/b/paris_b_000001.jpg")
    (q,) = b.queries
    assert (q.name, q.image, q.positives, q.junk) == ("a_1", b.database[0], (0, 1), (2,))
    assert q.box == pytest.approx((62.5, 125.0, 640.0, 480.0))


def test_no_query_present_is_refused(tmp_path):
    root, gt = _tiny(tmp_path)
    (gt / "a_1_query.txt").unlink()
    with pytest.raises(InputError, match="no official Paris6k query"):
        D.load_benchmark("paris6k-subset", root)


def test_missing_ground_truth_is_named(tmp_path):
    root, gt = _tiny(tmp_path)
    for f in gt.iterdir():
        f.unlink()
    with pytest.raises(D.DatasetMissingError):
        D.load_benchmark("paris6k-subset", root)
