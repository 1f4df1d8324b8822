"""Fakes of the experiment tests: tiny dataset layouts, stand-in extractors, canned evaluations.

The canned results are real :class:`~dasr.eval.records.SearchResult` records, so a renamed
record field breaks the tests that read it.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from dasr.eval.records import QueryScore, SearchResult, WhiteningInfo, mean_scores
from dasr.store import StoreWriter

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
PAPER = EXPERIMENTS / "paper_numbers.toml"
CONFIGS = ["table1", "table2", "table3", "ablation_layers", "ablation_nms", "localization", "scalability"]
PNG = b"\x89PNG\r\n\x1a\n"


def _touch(root: Path, *paths: str) -> None:
    for p in paths:
        (root / p).parent.mkdir(parents=True, exist_ok=True)
        (root / p).write_bytes(b"")


def fake_instance_track(root: Path, instances=("a", "b", "c"), refs: int = 3) -> Path:
    rows, gt = [], []
    for name in instances:
        rows.append(f"images/{name}/q.jpg,{name},query,100,100,10,10,50,50")
        rr = [f"images/{name}/{i}.jpg" for i in range(refs)]
        rows += [f"{r},{name},reference,100,100,12,12,52,52" for r in rr]
        gt.append(f"images/{name}/q.jpg {refs} " + " ".join(rr))
    root.mkdir(parents=True, exist_ok=True)
    (root / "annotations.csv").write_text("image,instance,role,width,height,x1,y1,x2,y2\n" + "\n".join(rows) + "\n")
    (root / "gt.txt").write_text("\n".join(gt) + "\n")
    _touch(root, *(r.split(",")[0] for r in rows))
    return root


def fake_paris_landmarks(root: Path, landmarks=("x", "y"), db: int = 3) -> Path:
    rows = []
    for lm in landmarks:
        rows.append(f"images/query/{lm}/q.jpg,{lm},query,100,100")
        rows += [f"images/database/{lm}/{i}.jpg,{lm},database,100,100" for i in range(db)]
    root.mkdir(parents=True, exist_ok=True)
    (root / "annotations.csv").write_text("image,landmark,role,width,height\n" + "\n".join(rows) + "\n")
    _touch(root, *(r.split(",")[0] for r in rows))
    return root


def fake_instance_160(root: Path, n_queries: int = 10) -> Path:
    lines = [f"q{i}.jpg 2 r{i}a.jpg r{i}b.jpg" for i in range(n_queries)]
    root.mkdir(parents=True, exist_ok=True)
    (root / "gt.txt").write_text("\n".join(lines) + "\n")
    _touch(root, *[f"q{i}.jpg" for i in range(n_queries)], *[f"r{i}{s}.jpg" for i in range(n_queries) for s in "ab"])
    return root


def write_config(tmp_path: Path, text: str, name: str = "exp.toml") -> Path:
    """A config file in ``tmp_path`` whose paper numbers are the shipped ones and whose outputs stay in tmp."""
    p = tmp_path / name
    p.write_text(f'paper_numbers = "{PAPER}"\nout = "{tmp_path / "out"}"\nwork = "{tmp_path / "work"}"\n' + text)
    return p


def shipped_config_text(name: str) -> str:
    """A shipped config's text without its paper_numbers and work lines (write_config sets them)."""
    text = (EXPERIMENTS / f"{name}.toml").read_text()
    return text.replace('paper_numbers = "paper_numbers.toml"', "").replace('work = "results/stores"', "")


def fake_extractor_factory(calls: list):
    """A stand-in for ``ExtractorSpec.build``: records the spec, builds no network."""
    def build(spec):
        calls.append(spec)
        cfg = {"method": spec.method, "layer": spec.feature_layer, "nms_iou": spec.region.nms_iou,
               "tau": spec.region.tau}
        return SimpleNamespace(method=spec.method, config=lambda: dict(cfg))
    return build


QUALITY = {"dasr-star": 0.8, "dasr": 0.7, "gap": 0.5, "mac": 0.45, "rmac": 0.55, "crow": 0.4, "fixed-box": 0.78}


def canned_result(method: str, benchmark: str, config: dict, pca: str = "none", pca_benchmark: str | None = None,
                  ks=(10, 20, 50, 100), subsample: int = 1, database_images: int = 20) -> SearchResult:
    """A SearchResult of 10 queries whose APs scatter around the method's :data:`QUALITY`."""
    base = QUALITY[method]
    rng = np.random.default_rng(len(method))
    per_query = []
    for i in range(10):
        ap = float(np.clip(base + rng.normal(0, 0.05), 0, 1))
        scores = {"ap": ap}
        for k in ks:
            scores[f"ap@{k}/truncated"] = ap * min(1.0, k / 100)
            scores[f"ap@{k}/min"] = ap
        per_query.append(QueryScore(f"q{i}.jpg", scores, [0.6, 0.3]))
    whitening = (WhiteningInfo("other", pca_benchmark, 2048, 5000, None) if pca == "other"
                 else WhiteningInfo("none", None, None, None, None))
    return SearchResult(task="instance", benchmark=benchmark, method=method, config=config, subsample=subsample,
                        database_images=database_images, queries=len(per_query), pca=whitening,
                        ap_definition="instance", mean=mean_scores(per_query), per_query=per_query,
                        localization_recall={"0.5": 0.5}, regions_per_image=11.0, images_in_store=database_images,
                        seconds={}, store=None)


def canned_evaluate(calls: list):
    """A stand-in for ``dasr.eval.instance.evaluate`` returning :func:`canned_result`."""
    def evaluate(extractor, benchmark, root=None, *, work, pca, pca_benchmark=None, pca_root=None, pca_dim=None,
                 ks=(10, 20, 50, 100), out=None, progress=True, subsample=1, pca_subsample=1, query="box"):
        calls.append((extractor.method, benchmark, pca, pca_benchmark, subsample)
                     + ((pca_subsample, query) if (pca_subsample, query) != (1, "box") else ()))
        return canned_result(extractor.method, benchmark, extractor.config(), pca, pca_benchmark, ks, subsample)
    return evaluate


def write_store(path: Path, images: list[str], feats: list[np.ndarray], config: dict) -> Path:
    with StoreWriter(path, config, "/fake") as w:
        for i, (img, f) in enumerate(zip(images, feats)):
            n = len(f)
            boxes = np.tile(np.array([[10, 10, 40, 40]], np.float32), (n, 1))
            w.add(img, i, (100, 100), {"boxes": boxes, "scores": np.ones(n, np.float32),
                                       "features": np.asarray(f, np.float32)})
    return path
