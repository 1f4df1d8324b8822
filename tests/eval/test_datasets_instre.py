"""INSTRE loader on a synthetic gnd_instre.mat."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dasr.eval import datasets as D
from eval_helpers import touch


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
    touch(root, *imlist, *qimlist)


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
