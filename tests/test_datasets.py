"""Benchmark loaders: the two shared sets, synthetic copies of every other layout, error messages."""

from __future__ import annotations

import csv
import pickle
from pathlib import Path

import numpy as np
import pytest

from dasr import datasets as D


def _touch(root: Path, *paths: str) -> None:
    for p in paths:
        (root / p).parent.mkdir(parents=True, exist_ok=True)
        (root / p).write_bytes(b"")


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- shared sets ----------------------------------------------------------------------------------

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


def test_paris_landmarks_shared_set():
    root = _shared("paris-landmarks")
    b = D.load_benchmark("paris-landmarks", root)
    assert (b.ap, len(b.database), len(b.queries)) == ("oxford", 250, 24)
    for q in b.queries:
        landmark = q.image.split("/")[2]
        assert q.box is None and q.junk == ()
        assert {b.database[i].split("/")[2] for i in q.positives} == {landmark}
        assert len(q.positives) == 50


# --- instance-track synthetic (validation) ---------------------------------------------------------

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
    _write(root / "annotations.csv", _TRACK_HEADER + rows)
    _write(root / "gt.txt", gt)
    for line in rows.splitlines():
        _touch(root, line.split(",")[0])
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


# --- Instance-160 / 335 --------------------------------------------------------------------------

def test_instance_160_with_boxes_and_distractors(tmp_path):
    root = tmp_path / "i160"
    _write(root / "gt.txt", "q/1.jpg 2 r/1.jpg r/2.jpg\n\nq/2.jpg 2 r/2.jpg r/3.jpg\n")
    _write(root / "boxes.txt", "q/1.jpg 1 2 3 4\nr/1.jpg 0 0 5 5\nr/2.jpg 1 1 2 2\n"
           "r/2.jpg 5 5 9 9 q/2.jpg\nq/2.jpg 0 0 1 1\n")
    _write(root / "distractors.txt", "d/1.jpg\nr/3.jpg\n")
    _touch(root, "q/1.jpg", "q/2.jpg", "r/1.jpg", "r/2.jpg", "r/3.jpg", "d/1.jpg")
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
    _write(root / "gt.txt", "q.jpg 1 r.jpg\n")
    _touch(root, "q.jpg", "r.jpg")
    b = D.load_benchmark("instance-335", root)
    assert b.queries[0].box is None and b.queries[0].positive_boxes is None
    assert b.database == ("r.jpg",)


def test_instance_160_malformed_lines(tmp_path):
    root = tmp_path / "i160"
    _write(root / "gt.txt", "q.jpg 1 r.jpg\nq2.jpg two r.jpg\n")
    with pytest.raises(ValueError, match=r"gt\.txt, line 2: count N='two'"):
        D.load_instance_160(root, check_images=False)
    _write(root / "gt.txt", "q.jpg 1 r.jpg\n")
    _write(root / "boxes.txt", "r.jpg 0 0 1\n")
    with pytest.raises(ValueError, match=r"boxes\.txt, line 1"):
        D.load_instance_160(root, check_images=False)
    _write(root / "boxes.txt", "r.jpg 0 0 1 1\nr.jpg 0 0 2 2\n")
    with pytest.raises(ValueError, match=r"boxes\.txt, line 2: second box"):
        D.load_instance_160(root, check_images=False)


def test_missing_dataset_message_names_path_layout_and_source(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(D.DatasetMissingError) as err:
        D.load_benchmark("instance-160", missing)
    text = str(err.value)
    assert "instance-160" in text and str(missing) in text
    assert "gt.txt" in text and "Zhan" in text
    assert isinstance(err.value, FileNotFoundError)
    with pytest.raises(D.DatasetMissingError, match="download_oxford5k.sh"):
        D.load_benchmark("oxford5k", missing)


# --- INSTRE ----------------------------------------------------------------------------------------

def _save_instre(root: Path, bbx_rows, ok_lists, junk: bool = False) -> None:
    from scipy.io import savemat

    fields = [("ok", object), ("bbx", object)] + ([("junk", object)] if junk else [])
    gnd = np.zeros((1, len(ok_lists)), dtype=fields)
    for i, (ok, bbx) in enumerate(zip(ok_lists, bbx_rows)):
        gnd[0, i]["ok"] = np.array(ok, dtype=np.float64).reshape(1, -1)
        gnd[0, i]["bbx"] = np.array(bbx, dtype=np.float64).reshape(1, -1)
        if junk:
            gnd[0, i]["junk"] = np.array([3], dtype=np.float64)
    imlist = np.array(["INSTRE-S1/a/001.jpg", "INSTRE-S1/a/002.jpg", "INSTRE-S2/b/001.jpg"], dtype=object)
    qimlist = np.array(["INSTRE-S1/a/000.jpg", "INSTRE-S2/b/000.jpg"][: len(ok_lists)], dtype=object)
    root.mkdir(parents=True, exist_ok=True)
    savemat(str(root / "gnd_instre.mat"), {"imlist": imlist.reshape(1, -1), "qimlist": qimlist.reshape(1, -1),
                                           "gnd": gnd})
    _touch(root, *imlist, *qimlist)


def test_instre_from_synthetic_mat(tmp_path):
    root = tmp_path / "instre"
    _save_instre(root, [[10, 20, 30, 40], [1, 2, 3, 4]], [[1, 2], [3]])
    b = D.load_benchmark("instre", root)
    assert (b.ap, len(b.database), len(b.queries)) == ("oxford", 3, 2)
    assert b.database[2] == "INSTRE-S2/b/001.jpg"
    q1, q2 = b.queries
    assert q1.positives == (0, 1) and q2.positives == (2,)  # 1-based -> 0-based; single index squeezed
    assert q1.image == "INSTRE-S1/a/000.jpg" and q1.box == (10.0, 20.0, 30.0, 40.0)
    b2 = D.load_instre(root, bbx_format="xywh", ap="instance")
    assert b2.queries[0].box == (10.0, 20.0, 40.0, 60.0) and b2.ap == "instance"


def test_instre_single_query_and_junk(tmp_path):
    root = tmp_path / "instre"
    _save_instre(root, [[0, 0, 5, 5]], [[1]], junk=True)
    b = D.load_instre(root)
    assert b.queries[0].positives == (0,) and b.queries[0].junk == (2,)


def test_instre_index_out_of_range(tmp_path):
    root = tmp_path / "instre"
    _save_instre(root, [[0, 0, 5, 5]], [[4]])
    with pytest.raises(ValueError, match=r"gnd\(1\)\.ok"):
        D.load_instre(root)


# --- Holidays --------------------------------------------------------------------------------------

def test_holidays_groups_and_queries(tmp_path):
    root = tmp_path / "holidays"
    _touch(root, "jpg/100000.jpg", "jpg/100001.jpg", "jpg/100002.jpg", "jpg/100100.jpg",
           "jpg/100101.jpg", "jpg/readme.txt")
    b = D.load_benchmark("holidays", root)
    assert (b.ap, b.query_in_database) == ("holidays", True)
    assert b.database == ("jpg/100000.jpg", "jpg/100001.jpg", "jpg/100002.jpg", "jpg/100100.jpg", "jpg/100101.jpg")
    q1, q2 = b.queries
    assert (q1.name, q1.image, q1.positives, q1.box) == ("100000", "jpg/100000.jpg", (1, 2), None)
    assert (q2.name, q2.positives) == ("100100", (4,))


def test_holidays_lonely_group_and_empty_folder(tmp_path):
    root = tmp_path / "holidays"
    _touch(root, "100000.jpg", "100001.jpg", "100200.jpg")  # images directly in root
    with pytest.raises(ValueError, match="group 1002"):
        D.load_holidays(root)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(D.DatasetMissingError, match="NNNNNN.jpg"):
        D.load_holidays(empty)


# --- Oxford5k / Paris6k ---------------------------------------------------------------------------

def _oxford_like(root: Path, prefix: str, stem: str) -> None:
    names = [f"{stem}_000001", f"{stem}_000002", f"{stem}_000003", "other_000001", "other_000002"]
    _touch(root, *(f"jpg/{n}.jpg" for n in names))
    gt = root / "gt"
    _write(gt / f"{stem}_1_query.txt", f"{prefix}{stem}_000001 1.5 2.5 100.0 200.0\n")
    _write(gt / f"{stem}_1_good.txt", f"{stem}_000001\n{stem}_000002\n")
    _write(gt / f"{stem}_1_ok.txt", f"{stem}_000003\n")
    _write(gt / f"{stem}_1_junk.txt", "other_000002\n")


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
    _write(root / "gt" / "paris_defense_1_ok.txt", "paris_defense_000003\nparis_defense_000099\n")
    with pytest.warns(UserWarning, match="paris_defense_000099"):
        b = D.load_benchmark("paris6k", root)
    assert len(b.queries[0].positives) == 3


def test_oxford_malformed_query_file(tmp_path):
    root = tmp_path / "oxford5k"
    _oxford_like(root, "oxc1_", "all_souls")
    _write(root / "gt" / "all_souls_1_query.txt", "oxc1_all_souls_000001 1 2 3\n")
    with pytest.raises(ValueError, match=r"all_souls_1_query\.txt, line 1"):
        D.load_oxford5k(root)


# --- Revisited Oxford / Paris ---------------------------------------------------------------------

def _revisitop(root: Path, name: str) -> None:
    imlist = ["a", "b", "c", "d"]
    cfg = {
        "imlist": imlist,
        "qimlist": ["q1", "q2"],
        "gnd": [
            {"bbx": [1, 2, 3, 4], "easy": [0], "hard": [1], "junk": [2]},
            {"bbx": [0, 0, 9, 9], "easy": [], "hard": [3], "junk": []},
        ],
    }
    root.mkdir(parents=True)
    with open(root / f"gnd_{name}.pkl", "wb") as f:
        pickle.dump(cfg, f)
    _touch(root, *(f"jpg/{n}.jpg" for n in imlist + ["q1", "q2"]))


@pytest.mark.parametrize("name", ["roxford5k", "rparis6k"])
def test_revisitop_protocols(tmp_path, name):
    root = tmp_path / name
    _revisitop(root, name)
    medium = D.load_benchmark(name, root)  # default protocol: medium
    assert (medium.name, medium.ap, medium.database[0]) == (name, "oxford", "jpg/a.jpg")
    q1, q2 = medium.queries
    assert (q1.image, q1.box, q1.positives, q1.junk) == ("jpg/q1.jpg", (1.0, 2.0, 3.0, 4.0), (0, 1), (2,))
    assert (q2.positives, q2.junk) == ((3,), ())
    easy = D.load_benchmark(name, root, protocol="easy")
    assert [q.name for q in easy.queries] == ["q1"]  # q2 has no easy positive: left out
    assert (easy.queries[0].positives, easy.queries[0].junk) == ((0,), (2, 1))
    hard = D.load_benchmark(name, root, protocol="hard")
    assert [(q.positives, q.junk) for q in hard.queries] == [((1,), (2, 0)), ((3,), ())]
    with pytest.raises(ValueError, match="protocol"):
        D.load_benchmark(name, root, protocol="extreme")


def test_revisitop_missing_pkl_names_it(tmp_path):
    root = tmp_path / "roxford5k"
    root.mkdir()
    with pytest.raises(D.DatasetMissingError, match="gnd_roxford5k.pkl"):
        D.load_roxford5k(root)


# --- registry and roots -----------------------------------------------------------------------------

def test_registry_and_unknown_name():
    assert set(D.BENCHMARKS) == {"instance-track", "paris-landmarks", "instance-160", "instance-335", "instre",
                                 "holidays", "oxford5k", "paris6k", "roxford5k", "rparis6k"}
    with pytest.raises(ValueError, match="unknown benchmark"):
        D.load_benchmark("ukbench", "/tmp")


def test_default_root(tmp_path, monkeypatch):
    monkeypatch.setenv("DASR_DATA", str(tmp_path / "store"))
    assert D.default_root("holidays") == tmp_path / "store" / "holidays"
    (tmp_path / "shared" / "data" / "instance-track").mkdir(parents=True)
    deep = tmp_path / "main" / "src"
    deep.mkdir(parents=True)
    assert D.default_root("instance-track", start=deep) == (tmp_path / "shared/data/instance-track").resolve()
    # no shared folder above: falls back to $DASR_DATA
    assert D.default_root("paris-landmarks", start=deep) == tmp_path / "store" / "paris-landmarks"


def test_benchmark_rejects_out_of_range_indices(tmp_path):
    with pytest.raises(ValueError, match="outside"):
        D.Benchmark(name="x", root=tmp_path, database=("a",), ap="oxford",
                    queries=(D.Query(name="q", image="q", box=None, positives=(1,)),))


@pytest.mark.parametrize("name", sorted(D.BENCHMARKS))
def test_every_loader_reports_a_missing_root(tmp_path, name):
    # check_images is accepted by every loader, so callers can pass it uniformly
    with pytest.raises(D.DatasetMissingError, match=name):
        D.load_benchmark(name, tmp_path / "absent", check_images=False)
