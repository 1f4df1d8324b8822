"""The loaders and the Oxford AP on the OFFICIAL ground-truth files (shared/data/ground-truth).

* Oxford5k (``gt_files_170407``) and Paris6k (``paris_120310``): 55 queries each with their box,
  parsed from the published files; the Oxford-protocol AP of :func:`dasr.eval.scoring.score_query`
  agrees to 1e-6 with the benchmark's own ``compute_ap.cpp`` (compiled here with g++) on
  rankings of the real lists.
* INSTRE (``gnd_instre.mat`` of Iscen et al.): 1,250 queries, 27,293 images, the S1/S2/M split
  sizes, the 1-based indices and the ``bbx`` box order.

Everything skips when the shared folder (or g++) is absent. No image is needed: the loaders are
given empty files named as the images.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from dasr.eval import datasets as D
from dasr.eval.scoring import score_query
from eval_helpers import touch


def _ground_truth() -> Path:
    here = Path(__file__).resolve()
    for folder in here.parents:
        candidate = folder / "shared" / "data" / "ground-truth"
        if candidate.is_dir():
            return candidate
    pytest.skip("shared/data/ground-truth not found")


def _names(path: Path) -> list[str]:
    return [s for s in path.read_text(encoding="utf-8").split() if s]


@pytest.fixture(scope="module", params=["oxford5k", "paris6k"])
def oxford_like(request, tmp_path_factory):
    """(benchmark, gt folder): the official files with an empty image for every name they list."""
    name = request.param
    gt = _ground_truth() / name
    if not gt.is_dir():
        pytest.skip(f"{gt} not found")
    root = tmp_path_factory.mktemp(name)
    (root / "gt").symlink_to(gt, target_is_directory=True)
    listed = set()
    for f in gt.glob("*.txt"):
        words = _names(f)
        listed.update(words[:1] if f.name.endswith("_query.txt") else words)
    images = {w[len("oxc1_"):] if w.startswith("oxc1_") else w for w in listed}
    # a few images no list names (the negatives of every query)
    images |= {f"negative_{i:06d}" for i in range(40)}
    touch(root, *(f"jpg/{n}.jpg" for n in images))
    return D.load_benchmark(name, root), gt


def test_official_oxford_paris_queries_and_boxes(oxford_like):
    bench, gt = oxford_like
    assert len(bench.queries) == 55 and bench.ap == "oxford"
    landmarks = Counter(q.name.rsplit("_", 1)[0] for q in bench.queries)
    assert len(landmarks) == 11 and set(landmarks.values()) == {5}  # 11 landmarks x 5 queries
    for q in bench.queries:
        words = _names(gt / f"{q.name}_query.txt")
        assert q.box == tuple(float(v) for v in words[1:5]) and q.box[0] < q.box[2] and q.box[1] < q.box[3]
        assert Path(q.image).stem == words[0].removeprefix("oxc1_")
        good_ok = set(_names(gt / f"{q.name}_good.txt")) | set(_names(gt / f"{q.name}_ok.txt"))
        assert {Path(bench.database[i]).stem for i in q.positives} == good_ok
        assert {Path(bench.database[i]).stem for i in q.junk} == set(_names(gt / f"{q.name}_junk.txt"))
    if bench.name == "oxford5k":
        q = bench.queries[0]
        assert (q.name, q.image, q.box) == ("all_souls_1", "jpg/all_souls_000013.jpg", (136.5, 34.1, 648.5, 955.7))
    else:
        q = next(q for q in bench.queries if q.name == "defense_1")
        assert (q.image, q.box) == ("jpg/paris_defense_000605.jpg", (130.0, 17.0, 843.0, 732.0))


@pytest.fixture(scope="module")
def compute_ap(tmp_path_factory) -> Path:
    """The benchmark's own ``compute_ap.cpp``, compiled from the shared folder (not copied into the project)."""
    source = _ground_truth() / "oxford5k" / "compute_ap.cpp"
    if not source.is_file() or shutil.which("g++") is None:
        pytest.skip("compute_ap.cpp or g++ not available")
    exe = tmp_path_factory.mktemp("compute_ap") / "compute_ap"
    subprocess.run(["g++", "-O2", str(source), "-o", str(exe)], check=True, capture_output=True)
    return exe


def _ranking(bench, q, kind: int, rng) -> np.ndarray:
    """0: the shuffled database; 1: a good ranking (positives early, junk among them); 2: a poor one."""
    n = len(bench.database)
    pos, junk = np.array(q.positives), np.array(q.junk, np.int64)
    rest = np.setdiff1d(np.arange(n), np.concatenate([pos, junk]))
    good = np.concatenate([rng.permutation(np.concatenate([pos, junk, rest[:20]])), rng.permutation(rest[20:])])
    poor = np.concatenate([rng.permutation(rest[:200]), rng.permutation(np.concatenate([pos, junk, rest[200:]]))])
    return [rng.permutation(n), good, poor][kind]


def test_oxford_ap_agrees_with_compute_ap_cpp(oxford_like, compute_ap, tmp_path):
    bench, gt = oxford_like
    rng = np.random.default_rng(0)
    aps = []
    for qi, q in enumerate(bench.queries):  # one ranking per query (the oracle costs a process each)
        order = _ranking(bench, q, qi % 3, rng)
        listing = tmp_path / f"{q.name}.txt"
        listing.write_text("".join(f"{Path(bench.database[i]).stem}\n" for i in order), encoding="utf-8")
        oracle = float(subprocess.run([str(compute_ap), str(gt / q.name), str(listing)], check=True,
                                      capture_output=True, text=True).stdout)
        ours = score_query(bench, qi, order).ap["ap"]
        assert ours == pytest.approx(oracle, abs=1e-6), (q.name, qi % 3)
        aps.append(ours)
    assert len(aps) == 55
    assert min(aps) < 0.3 and max(aps) > 0.7  # the rankings span poor to good APs, not one easy case
    assert min(aps) < 0.3 < 0.7 < max(aps)  # the rankings span poor to good APs, not one easy case


def test_official_instre_split_indices_and_box_order():
    root = _ground_truth() / "instre"
    if not (root / "gnd_instre.mat").is_file():
        pytest.skip("gnd_instre.mat not found")
    bench = D.load_benchmark("instre", root, check_images=False)
    assert (len(bench.database), len(bench.queries), bench.ap) == (27293, 1250, "oxford")
    assert Counter(p.split("/")[0] for p in bench.database) == {"INSTRE-S1": 10511, "INSTRE-S2": 11559,
                                                                 "INSTRE-M": 5223}
    assert Counter(q.image.split("/")[0] for q in bench.queries) == {"INSTRE-S1": 500, "INSTRE-S2": 500,
                                                                     "INSTRE-M": 250}
    assert not set(q.image for q in bench.queries) & set(bench.database)  # queries are not database images
    # 1-based -> 0-based: the first query (a Canada book) finds 001.jpg .. 096.jpg of its own folder first
    q = bench.queries[0]
    assert q.image == "INSTRE-S1/01a_canada_book/013.jpg"
    assert [bench.database[i] for i in q.positives[:2]] == ["INSTRE-S1/01a_canada_book/001.jpg",
                                                            "INSTRE-S1/01a_canada_book/002.jpg"]
    # a single-object query's single-object positives are exactly its folder (an off-by-one index
    # would pull the neighbouring folder's first or last image in)
    folders: dict[str, set[int]] = {}
    for i, p in enumerate(bench.database):
        folders.setdefault(p.rsplit("/", 1)[0], set()).add(i)
    single_object = 0
    for q in bench.queries:
        if q.image.startswith("INSTRE-M"):
            continue
        single = {i for i in q.positives if not bench.database[i].startswith("INSTRE-M")}
        assert single == folders[q.image.rsplit("/", 1)[0]], q.name
        single_object += 1
    assert single_object == 1000
    # bbx is x1 y1 x2 y2: every box has x1 < x2 and y1 < y2 and lies within INSTRE's 1000-pixel
    # images (largest corner 999, 995), whereas read as x y w h, 600 boxes would reach past x = 1000.
    boxes = np.array([q.box for q in bench.queries])
    assert np.all(boxes[:, 0] < boxes[:, 2]) and np.all(boxes[:, 1] < boxes[:, 3])
    assert boxes[:, 2:].max(axis=0).tolist() == [999.0, 995.0]
    assert int(np.sum(boxes[:, 0] + boxes[:, 2] > 1000)) == 600
