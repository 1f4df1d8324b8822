"""Instance-160 / Instance-335 loaders on synthetic gt.txt / boxes.txt / distractors.txt."""

from __future__ import annotations

import pytest

from dasr.eval import datasets as D
from eval_helpers import touch, write_text


def test_instance_160_with_boxes_and_distractors(tmp_path):
    root = tmp_path / "i160"
    write_text(root / "gt.txt", "q/1.jpg 2 r/1.jpg r/2.jpg\n\nq/2.jpg 2 r/2.jpg r/3.jpg\n")
    write_text(root / "boxes.txt", "q/1.jpg 1 2 3 4\nr/1.jpg 0 0 5 5\nr/2.jpg 1 1 2 2\n"
           "r/2.jpg 5 5 9 9 q/2.jpg\nq/2.jpg 0 0 1 1\n")
    write_text(root / "distractors.txt", "d/1.jpg\nr/3.jpg\n")
    touch(root, "q/1.jpg", "q/2.jpg", "r/1.jpg", "r/2.jpg", "r/3.jpg", "d/1.jpg")
    b = D.load_benchmark("instance-160", root)
    assert (b.name, b.ap) == ("instance-160", "instance")
    assert b.database == ("r/1.jpg", "r/2.jpg", "r/3.jpg", "d/1.jpg")
    q1, q2 = b.queries
    assert (q1.name, q1.image, q1.box, q1.positives) == ("q/1.jpg", "q/1.jpg", (1.0, 2.0, 3.0, 4.0), (0, 1))
    assert q1.positive_boxes == {0: (0.0, 0.0, 5.0, 5.0), 1: (1.0, 1.0, 2.0, 2.0)}
    # the query-specific box of r/2.jpg wins for q/2; r/3.jpg has no box
    assert q2.positive_boxes == {1: (5.0, 5.0, 9.0, 9.0)}
    assert q2.positives == (1, 2)


def test_instance_335_without_boxes(tmp_path):
    root = tmp_path / "i335"
    write_text(root / "gt.txt", "q.jpg 1 r.jpg\n")
    touch(root, "q.jpg", "r.jpg")
    b = D.load_benchmark("instance-335", root)
    assert b.queries[0].box is None and b.queries[0].positive_boxes is None
    assert b.database == ("r.jpg",)


def test_instance_160_malformed_lines(tmp_path):
    root = tmp_path / "i160"
    write_text(root / "gt.txt", "q.jpg 1 r.jpg\nq2.jpg two r.jpg\n")
    with pytest.raises(ValueError, match=r"gt\.txt, line 2: count N='two'"):
        D.load_instance_160(root, check_images=False)
    write_text(root / "gt.txt", "q.jpg 1 r.jpg\n")
    write_text(root / "boxes.txt", "r.jpg 0 0 1\n")
    with pytest.raises(ValueError, match=r"boxes\.txt, line 1"):
        D.load_instance_160(root, check_images=False)
    write_text(root / "boxes.txt", "r.jpg 0 0 1 1\nr.jpg 0 0 2 2\n")
    with pytest.raises(ValueError, match=r"boxes\.txt, line 2: second box"):
        D.load_instance_160(root, check_images=False)


@pytest.mark.parametrize("ref", ["../../../../etc/passwd", "/etc/passwd", "a/../../x.jpg"])
def test_a_gt_reference_that_leaves_the_dataset_is_refused(tmp_path, ref):
    """A gt.txt line may only name images under the dataset root (never /etc/passwd)."""
    from dasr.errors import InputError
    from dasr.eval.datasets.common import read_gt_txt

    gt = tmp_path / "gt.txt"
    gt.write_text(f"q.jpg 2 a.jpg {ref}\n")
    with pytest.raises(InputError, match="not a path inside the dataset folder"):
        read_gt_txt(gt)
    gt.write_text("q.jpg 2 a.jpg sub/b.jpg\n")
    assert read_gt_txt(gt) == [(1, "q.jpg", ("a.jpg", "sub/b.jpg"))]
