"""R-Oxford / R-Paris loaders: the three protocols, the safe pickle, scoring per protocol."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from dasr.eval import datasets as D
from dasr.eval.records import mean_scores
from dasr.eval.scoring import score_query
from eval_helpers import touch


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
    touch(root, *(f"jpg/{n}.jpg" for n in imlist + ["q1", "q2"]))


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


# --- scoring per protocol (what dasr.eval.metrics.revisitop_map computed before it was folded in) ---------

def _write_gnd(root: Path, name: str, gnd: list[dict], imlist: list[str], qimlist: list[str]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"gnd_{name}.pkl", "wb") as f:
        pickle.dump({"imlist": imlist, "qimlist": qimlist, "gnd": gnd}, f)
    touch(root, *(f"jpg/{n}.jpg" for n in imlist + qimlist))


def _protocol_means(root: Path, rankings: list[list[int]]) -> dict[str, float | None]:
    """Mean Oxford AP per protocol through the loader and THE dispatch (None: no query has positives)."""
    out: dict[str, float | None] = {}
    for protocol in D.REVISITOP_PROTOCOLS:
        bench = D.load_benchmark("roxford5k", root, protocol=protocol)
        # the loader leaves out the queries without positives: find each kept one's ranking by name
        by_name = dict(zip(["q1", "q2"], rankings))
        per_query = [score_query(bench, i, by_name[q.name]) for i, q in enumerate(bench.queries)]
        out[protocol] = mean_scores(per_query)["ap"] if per_query else None
    return out


def test_revisitop_protocols_scored_by_hand(tmp_path):
    gnd = [{"easy": [0], "hard": [1], "junk": [2], "bbx": [0, 0, 1, 1]}]
    _write_gnd(tmp_path, "roxford5k", gnd, ["a", "b", "c", "d"], ["q1"])
    out = _protocol_means(tmp_path, [[2, 1, 3, 0]])
    # easy: junk {2, 1} -> list [3, 0], positive 0 at rank 1 -> (0 + 1/2)/2 = 1/4
    assert out["easy"] == pytest.approx(0.25)
    # medium: junk {2} -> [1, 3, 0]: ranks 0 and 2 -> 1/2 + 7/24
    assert out["medium"] == pytest.approx(0.5 + 7 / 24)
    # hard: junk {2, 0} -> [1, 3]: rank 0 -> 1
    assert out["hard"] == pytest.approx(1.0)


def test_revisitop_skips_queries_without_positives(tmp_path):
    gnd = [
        {"easy": [], "hard": [0], "junk": [], "bbx": [0, 0, 1, 1]},
        {"easy": [1], "hard": [], "junk": [], "bbx": [0, 0, 1, 1]},
    ]
    _write_gnd(tmp_path, "roxford5k", gnd, ["a", "b"], ["q1", "q2"])
    out = _protocol_means(tmp_path, [[1, 0], [1, 0]])
    assert out["easy"] == pytest.approx(1.0)  # only query 2, positive at rank 0
    assert out["hard"] == pytest.approx(0.25)  # only query 1, positive at rank 1
    assert out["medium"] == pytest.approx((0.25 + 1.0) / 2)
    empty = tmp_path / "empty"
    _write_gnd(empty, "roxford5k", [{"easy": [], "hard": [], "junk": [], "bbx": [0, 0, 1, 1]}], ["a"], ["q1"])
    assert D.load_benchmark("roxford5k", empty, protocol="easy").queries == ()  # nothing to score


def test_revisitop_length_mismatch(tmp_path):
    _write_gnd(tmp_path, "roxford5k", [], ["a"], ["q1"])
    with pytest.raises(ValueError, match="0 gnd entries for 1 queries"):
        D.load_benchmark("roxford5k", tmp_path)


def test_protocol_is_recorded_and_only_revisited_benchmarks_take_one(tmp_path):
    root = tmp_path / "roxford5k"
    _revisitop(root, "roxford5k")
    assert D.load_benchmark("roxford5k", root, protocol="hard").protocol == "hard"
    assert D.load_benchmark("roxford5k", root).protocol == "medium"
    with pytest.raises(ValueError, match="oxford5k has no protocol"):
        D.load_benchmark("oxford5k", tmp_path, protocol="hard")


# --- the pickle is read as data only ----------------------------------------------------------------

class _Touches:
    """Unpickling this runs ``os.system("touch <path>")`` with the plain ``pickle.load``."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_a_pickle_that_runs_code_is_refused_and_runs_nothing(tmp_path):
    root = tmp_path / "roxford5k"
    _revisitop(root, "roxford5k")
    witness = tmp_path / "pwned"
    with open(root / "gnd_roxford5k.pkl", "wb") as f:
        pickle.dump({"imlist": ["a"], "qimlist": [], "gnd": [], "x": _Touches(witness)}, f)
    with pytest.raises(ValueError, match=r"gnd_roxford5k\.pkl: not a ground-truth pickle.*refused global posix\.system"):
        D.load_benchmark("roxford5k", root)
    assert not witness.exists()
    # the same bytes through the plain pickle.load would have run the command (the test's premise)
    with open(root / "gnd_roxford5k.pkl", "rb") as f:
        pickle.load(f)
    assert witness.exists()


def test_numpy_ground_truth_is_read_in_every_pickle_protocol(tmp_path):
    root = tmp_path / "rparis6k"
    gnd = [{"bbx": np.array([1.5, 2.0, 30.0, 40.0]), "easy": np.array([0, 2], np.int64),
            "hard": np.array([1], np.int32), "junk": np.array([], np.int64)}]
    for protocol in (2, 4, pickle.HIGHEST_PROTOCOL):
        root.mkdir(parents=True, exist_ok=True)
        with open(root / "gnd_rparis6k.pkl", "wb") as f:
            pickle.dump({"imlist": ["a", "b", "c"], "qimlist": ["q"], "gnd": gnd}, f, protocol=protocol)
        touch(root, "jpg/a.jpg", "jpg/b.jpg", "jpg/c.jpg", "jpg/q.jpg")
        (q,) = D.load_benchmark("rparis6k", root).queries
        assert (q.box, q.positives, q.junk) == ((1.5, 2.0, 30.0, 40.0), (0, 2, 1), ())


def test_truncated_pickle_is_a_value_error(tmp_path):
    root = tmp_path / "roxford5k"
    _revisitop(root, "roxford5k")
    data = (root / "gnd_roxford5k.pkl").read_bytes()
    (root / "gnd_roxford5k.pkl").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a ground-truth pickle"):
        D.load_benchmark("roxford5k", root)

