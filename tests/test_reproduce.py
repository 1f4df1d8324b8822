"""Experiment configs, overrides, the paper-vs-ours report, VLAD image search and scalability (all on fakes)."""

from __future__ import annotations

import csv
import json
import tomllib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from dasr import reproduce as R
from dasr.datasets import Benchmark, DatasetMissingError, Query
from dasr.store import StoreWriter

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
PAPER = EXPERIMENTS / "paper_numbers.toml"
CONFIGS = ["table1", "table2", "table3", "ablation_layers", "ablation_nms", "localization", "scalability"]


# ----------------------------------------------------------------------------- fakes
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


def write_config(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "exp.toml"
    p.write_text(f'paper_numbers = "{PAPER}"\nout = "{tmp_path / "out"}"\nwork = "{tmp_path / "work"}"\n' + text)
    return p


def fake_extractor_factory(calls: list):
    def build(args):
        calls.append(args)
        cfg = {"method": args.method, "layer": args.layer, "beta": args.beta, "no_nms": args.no_nms, "tau": args.tau}
        return SimpleNamespace(method=args.method, config=lambda: dict(cfg))
    return build


QUALITY = {"dasr-star": 0.8, "dasr": 0.7, "gap": 0.5, "mac": 0.45, "rmac": 0.55, "crow": 0.4, "fixed-box": 0.78}


def canned_evaluate(calls: list):
    def evaluate(extractor, benchmark, root=None, *, work, pca, pca_benchmark=None, pca_root=None, pca_dim=None,
                 ks=(10, 20, 50, 100), out=None, progress=True, subsample=1):
        calls.append((extractor.method, benchmark, pca, pca_benchmark))
        base = QUALITY[extractor.method]
        rng = np.random.default_rng(len(extractor.method))
        per_query = []
        for i in range(10):
            ap = float(np.clip(base + rng.normal(0, 0.05), 0, 1))
            row = {"name": f"q{i}.jpg", "ap": ap, "ious": [0.6, 0.3]}
            for k in ks:
                row[f"ap@{k}/truncated"] = ap * min(1.0, k / 100)
                row[f"ap@{k}/min"] = ap
            per_query.append(row)
        keys = [k for k in per_query[0] if k.startswith("ap")]
        return {"benchmark": benchmark, "method": extractor.method, "config": extractor.config(),
                "pca": {"pca": pca, "source": pca_benchmark, "dim": 2048} if pca == "other" else {"pca": "none"},
                "mean": {k: float(np.mean([p[k] for p in per_query])) for k in keys},
                "localization_recall": {"0.5": 0.5}, "regions_per_image": 11.0, "images": 20, "queries": 10,
                "per_query": per_query}
    return evaluate


# ----------------------------------------------------------------------------- configs & paper numbers
@pytest.mark.parametrize("name", CONFIGS)
def test_shipped_configs_load_and_expand(name):
    cfg = R.load_config(EXPERIMENTS / f"{name}.toml")
    assert cfg["name"] == name and cfg["title"] and cfg["compare"]
    cells = R.build_cells(cfg)
    specs = R.resolve_benchmarks(cfg)
    assert cells and specs
    assert all(s.pca_benchmark != s.name for s in specs)
    paper = R.load_paper_numbers(cfg)
    assert R.paper_benchmarks(paper, cfg["compare"]) >= {s.name for s in specs}
    shipped = R.resolve_benchmarks(R.apply_overrides(cfg, ["bench=instance-track"]))
    assert [s.name for s in shipped] == ["instance-track"] and shipped[0].pca_benchmark == "paris-landmarks"


def test_config_contents():
    t1 = R.load_config(EXPERIMENTS / "table1.toml")
    assert [c.method for c in R.build_cells(t1)] == ["dasr-star", "dasr", "gap", "mac", "rmac", "crow", "fixed-box"]
    layers = R.build_cells(R.load_config(EXPERIMENTS / "ablation_layers.toml"))
    assert len(layers) == 12 and {c.beta for c in layers} == {"none"} and {c.method for c in layers} == {"dasr"}
    assert {c.backbone for c in layers} == {"resnet50", "vgg16"}
    nms = R.build_cells(R.load_config(EXPERIMENTS / "ablation_nms.toml"))
    assert [c.effective_beta() for c in nms if c.method == "dasr-star"] == [0.1, 0.2, 0.3, 0.4, 0.5, None]
    t3 = R.load_config(EXPERIMENTS / "table3.toml")
    assert t3["task"] == "image-search" and t3["vlad"]["k"] == 4 and t3["vlad"]["power"] == 0.5 and t3["pca_dim"] == 8192
    figs = R.load_config(EXPERIMENTS / "figures.toml")
    assert figs["task"] == "figures" and figs["experiments"] == CONFIGS
    sc = R.load_config(EXPERIMENTS / "scalability.toml")
    assert sc["task"] == "scalability" and sc["ks"] == [50] and sc["index"]["kind"] in ("exact", "pq", "ivfpq", "opq-ivfpq")


def test_paper_numbers_copied_exactly():
    with open(PAPER, "rb") as f:
        p = tomllib.load(f)
    t1 = p["table1"]
    assert [t1["instance-160"]["DASR*"][c] for c in t1["columns"]] == [0.206, 0.357, 0.614, 0.711, 0.771]
    assert [t1["instance-335"]["DASR"][c] for c in t1["columns"]] == [0.129, 0.227, 0.419, 0.558, 0.699]
    assert t1["instance-160"]["FCIS+XD"]["cited"] and t1["instance-335"]["R-MAC"]["top100"] == 0.315
    assert len(t1["instance-160"]) == len(t1["instance-335"]) == 11
    assert all(t1["instance-160"][m]["dim"] == d for m, d in [("DASR*", 2048), ("BLCF", 336), ("PCL*+SPN", 1024)])
    t2 = p["table2"]["instre"]
    assert (t2["DASR*"]["all"], t2["DASR"]["all"], t2["BLCF-SalGAN"]["all"], t2["FCIS+XD"]["all"]) == (0.647, 0.629, 0.698, 0.067)
    t3 = p["table3"]["methods"]
    assert (t3["DASR+VLAD"]["holidays"], t3["DASR+VLAD"]["oxford5k"], t3["DASR+VLAD"]["paris6k"]) == (0.834, 0.594, 0.690)
    assert "holidays" not in t3["R-MAC"] and "paris6k" not in t3["SIFT+VLAD"] and t3["SIFT+VLAD-intra"]["dim"] == 32536
    assert p["fig4"]["best_layer"] == "Block4_unit1" and p["fig4"]["best_layer_ours"] == "conv5_block1_out"
    assert (p["fig5"]["best_beta"], p["fig5"]["default_beta"], p["fig5"]["regions_per_image_at_default"]) == (0.4, 0.3, 11)
    assert p["fig8"]["regions_total"] == 7014819 and p["fig8"]["distractors"] == 1000000
    assert p["fig8"]["dasr_star_best_at_every_scale"] is True


# ----------------------------------------------------------------------------- overrides
def test_parse_override_values():
    assert R.parse_override("bench=instance-track") == (["bench"], "instance-track")
    assert R.parse_override("pca_dim=512") == (["pca_dim"], 512)
    assert R.parse_override('betas=[0.1, "none"]') == (["betas"], [0.1, "none"])
    assert R.parse_override("keep_going=false") == (["keep_going"], False)
    assert R.parse_override("index.kind=pq") == (["index", "kind"], "pq")
    assert R.parse_override("distractors=/data/flickr 1m") == (["distractors"], "/data/flickr 1m")
    assert R.parse_override("bench_root=") == (["bench_root"], "")
    # the shell or make dropped the quotes of a list of strings
    assert R.parse_override("methods=[dasr, gap]") == (["methods"], ["dasr", "gap"])
    assert R.parse_override("betas=[0.1, none]") == (["betas"], [0.1, "none"])
    with pytest.raises(ValueError, match="inline table"):
        R.parse_override("extractor={max_side=}")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        R.parse_override("bench")
    with pytest.raises(ValueError, match="empty key"):
        R.parse_override("a..b=1")


def test_apply_overrides_nested_and_unknown():
    cfg = R.load_config(EXPERIMENTS / "table1.toml")
    new = R.apply_overrides(cfg, ["bootstrap.n_boot=100", "vlad.k=8", "extractor.stop_stride=8", "tau=0.2"])
    assert new["bootstrap"]["n_boot"] == 100 and new["bootstrap"]["seed"] == 0
    assert new["vlad"] == {"k": 8} and new["extractor"]["stop_stride"] == 8 and new["tau"] == 0.2
    assert cfg["bootstrap"]["n_boot"] == 10000  # the original is untouched
    with pytest.raises(ValueError, match="unknown config key 'bogus'"):
        R.apply_overrides(cfg, ["bogus=1"])
    with pytest.raises(ValueError, match="not a table"):
        R.apply_overrides(cfg, ["tau.x=1"])


def test_extractor_args_from_cli_defaults():
    cfg = R.apply_overrides(R.load_config(EXPERIMENTS / "ablation_nms.toml"), ["extractor.stop_stride=8"])
    cells = {c.label: c for c in R.build_cells(cfg)}
    a = R.extractor_args(cfg, cells["β=0.4"])
    assert (a.method, a.beta, a.no_nms, a.layer, a.stop_stride, a.max_side, a.pooling) == \
        ("dasr-star", 0.4, False, "conv5_block1_out", 8, 512, "avg")
    b = R.extractor_args(cfg, cells["no NMS"])
    assert b.no_nms and b.beta is None
    with pytest.raises(ValueError, match="not a `dasr evaluate` option"):
        R.extractor_args(R.apply_overrides(cfg, ["extractor.bogus=1"]), cells["β=0.4"])


# ----------------------------------------------------------------------------- the run
def test_missing_dataset_stops_before_any_work(tmp_path, monkeypatch):
    import dasr.cli
    import dasr.evaluate

    def boom(*a, **k):
        raise AssertionError("work started before the datasets were checked")

    monkeypatch.setattr(dasr.cli, "build_extractor", boom)
    monkeypatch.setattr(dasr.evaluate, "evaluate", boom)
    monkeypatch.setattr(dasr.evaluate, "ensure_store", boom)
    present = fake_instance_160(tmp_path / "i160")
    cfg = write_config(tmp_path, f'''name = "t"
compare = "table1"
methods = ["dasr-star", "gap"]
pca = "none"
benchmarks = [{{ name = "instance-160", root = "{present}" }}, {{ name = "instance-335", root = "{tmp_path / 'nope'}" }}]
''')
    with pytest.raises(DatasetMissingError, match="instance-335") as err:
        R.run_experiment(cfg, [], quiet=True)
    assert "expected layout" in str(err.value)
    assert not (tmp_path / "out").exists()
    with pytest.raises(DatasetMissingError, match="instre"):  # same through --set bench=
        R.run_experiment(cfg, ["bench=instre", f"bench_root={tmp_path / 'nope'}"], quiet=True)
    sc = write_config(tmp_path, f'''name = "s"
task = "scalability"
compare = "fig8"
pca = "none"
distractors = "{tmp_path / 'no-flickr'}"
benchmarks = [{{ name = "instance-160", root = "{present}" }}]
''')
    with pytest.raises(DatasetMissingError, match="distractors not found"):
        R.run_experiment(sc, [], quiet=True)


def test_side_by_side_report_with_paper_numbers(tmp_path, monkeypatch):
    import dasr.cli
    import dasr.evaluate

    built, evaluated = [], []
    monkeypatch.setattr(dasr.cli, "build_extractor", fake_extractor_factory(built))
    monkeypatch.setattr(dasr.evaluate, "evaluate", canned_evaluate(evaluated))
    root = fake_instance_160(tmp_path / "i160")
    cfg = write_config(tmp_path, f'''name = "t1"
title = "Table 1 test"
compare = "table1"
layers = ["conv5_block1_out"]
methods = ["dasr-star", "dasr", "gap", "rmac"]
pca = "none"
benchmarks = [{{ name = "instance-160", root = "{root}" }}]
bootstrap = {{ reference = {{ method = "dasr-star" }}, n_boot = 500 }}
plot = {{ kind = "bars", metric = "ap" }}
''')
    out = R.run_experiment(cfg, [], quiet=True)
    assert out == tmp_path / "out"
    assert [a.method for a in built] == ["dasr-star", "dasr", "gap", "rmac"]
    assert built[1].no_nms is False and built[1].beta is None  # dasr: cli default (no NMS)
    assert [e[0] for e in evaluated] == ["dasr-star", "dasr", "gap", "rmac"]
    md = (out / "results.md").read_text()
    assert "AP@k definition: **truncated**" in md
    dstar = next(line for line in md.splitlines() if line.startswith("| dasr-star (DASR*)"))
    assert "0.771" in dstar and "0.206" in dstar  # paper's All and Top-10 next to ours
    rows = list(csv.DictReader(open(out / "results.csv")))
    all_row = next(r for r in rows if r["cell"] == "dasr-star" and r["metric"] == "All")
    assert float(all_row["paper"]) == 0.771
    assert float(all_row["difference"]) == pytest.approx(float(all_row["ours"]) - 0.771)
    gap_row = next(r for r in rows if r["cell"] == "gap" and r["metric"] == "All")
    assert gap_row["paper"] == "" and gap_row["note"] == "not in the paper"
    rmac = next(r for r in rows if r["cell"] == "rmac" and r["metric"] == "Top-100")
    assert float(rmac["paper"]) == 0.307
    assert "Paper rows not reimplemented here" in md and "BLCF" in md
    boot = list(csv.DictReader(open(out / "bootstrap.csv")))
    assert {b["other"] for b in boot} == {"dasr", "gap", "rmac"} and all(b["reference"] == "dasr-star" for b in boot)
    assert all(float(b["ci_low"]) <= float(b["mean_difference"]) <= float(b["ci_high"]) for b in boot)
    assert any(b["excludes_zero"] == "True" for b in boot if b["other"] == "gap")
    png = out / "instance-160-ap.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "results.json").read_text())
    assert len(saved["entries"]) == 4

    # The same experiment on the shipped data: no paper number, said so.
    track = fake_instance_track(tmp_path / "track")
    out2 = R.run_experiment(cfg, ["bench=instance-track", f"bench_root={track}", f"out={tmp_path / 'out2'}",
                                  "ap_variant=min"], quiet=True)
    md2 = (out2 / "results.md").read_text()
    assert "n/a (different data)" in md2 and "0.771" not in md2.split("## instance-track")[1].split("##")[0]
    assert "AP@k definition: **min**" in md2
    rows2 = list(csv.DictReader(open(out2 / "results.csv")))
    assert all(r["paper"] in ("n/a (different data)", "") for r in rows2)
    assert evaluated[-1][1] == "instance-track"

    # --set replot=true rewrites the report from results.json without running anything.
    (out / "results.md").unlink()
    monkeypatch.setattr(dasr.evaluate, "evaluate", None)
    R.run_experiment(cfg, ["replot=true"], quiet=True)
    assert "0.771" in (out / "results.md").read_text()
    # ... and a `figures` config does it for every listed experiment that has run.
    figs = tmp_path / "figs.toml"
    figs.write_text(f'task = "figures"\nexperiments = ["exp", "never"]\nout = "{tmp_path / "figs"}"\n')
    (tmp_path / "never.toml").write_text(f'out = "{tmp_path / "never-out"}"\n')
    (out / "instance-160-ap.png").unlink()
    index = (R.run_experiment(figs, [], quiet=True) / "results.md").read_text()
    assert (out / "instance-160-ap.png").is_file() and "instance-160-ap.png" in index and "never: not run yet" in index


def test_failing_cell_is_reported_and_raised_after_the_others(tmp_path, monkeypatch):
    import dasr.cli
    import dasr.evaluate

    monkeypatch.setattr(dasr.cli, "build_extractor", fake_extractor_factory([]))
    good = canned_evaluate([])

    def flaky(extractor, benchmark, *a, **k):
        if extractor.method == "gap":
            raise RuntimeError("boom in gap")
        return good(extractor, benchmark, *a, **k)

    monkeypatch.setattr(dasr.evaluate, "evaluate", flaky)
    root = fake_instance_160(tmp_path / "i160")
    cfg = write_config(tmp_path, f'''name = "t"
compare = "table1"
methods = ["dasr-star", "gap", "dasr"]
pca = "none"
benchmarks = [{{ name = "instance-160", root = "{root}" }}]
''')
    with pytest.raises(R.ExperimentError, match="boom in gap"):
        R.run_experiment(cfg, [], quiet=True)
    md = (tmp_path / "out" / "results.md").read_text()
    assert "## Errors" in md and "| dasr (DASR)" in md


def test_ablation_nms_statements_and_plots(tmp_path, monkeypatch):
    import dasr.cli
    import dasr.evaluate

    monkeypatch.setattr(dasr.cli, "build_extractor", fake_extractor_factory([]))
    good = canned_evaluate([])
    regions = {0.1: 4.0, 0.2: 7.0, 0.3: 11.0, 0.4: 16.0, 0.5: 22.0}

    def ev(extractor, benchmark, *a, **k):
        r = good(extractor, benchmark, *a, **k)
        cfg = extractor.config()
        beta = None if cfg["no_nms"] else cfg["beta"]
        r["regions_per_image"] = regions.get(beta, 8.0 if cfg["method"] == "dasr" else 50.0)
        r["mean"]["ap"] = {0.4: 0.9}.get(beta, 0.7)
        return r

    monkeypatch.setattr(dasr.evaluate, "evaluate", ev)
    root = fake_instance_160(tmp_path / "i160")
    base = (EXPERIMENTS / "ablation_nms.toml").read_text()
    base = base.replace('paper_numbers = "paper_numbers.toml"', "").replace('work = "results/stores"', "")
    cfg = write_config(tmp_path, base)
    out = R.run_experiment(cfg, [f'benchmarks=[{{ name = "instance-160", root = "{root}" }}]', "pca=none",
                                 "bootstrap.n_boot=200"], quiet=True)
    md = (out / "results.md").read_text()
    assert "best β = 0.4" in md and "-> agrees" in md
    assert "11.0 regions/image at β = 0.3" in md
    assert "regions(β = 0.4) / regions(DASR, no NMS) = 2.00" in md
    assert (out / "map-vs-beta.png").is_file() and (out / "regions-vs-beta.png").is_file()


def test_localization_and_layer_reports(tmp_path, monkeypatch):
    import dasr.cli
    import dasr.evaluate

    monkeypatch.setattr(dasr.cli, "build_extractor", fake_extractor_factory([]))
    good = canned_evaluate([])

    def ev(extractor, benchmark, *a, **k):
        r = good(extractor, benchmark, *a, **k)
        if extractor.config()["layer"] == "conv4_block3_out":
            r["mean"]["ap"] = 0.95
        return r

    monkeypatch.setattr(dasr.evaluate, "evaluate", ev)
    root = fake_instance_160(tmp_path / "i160")
    bench = f'benchmarks=[{{ name = "instance-335", root = "{root}" }}]'
    text = (EXPERIMENTS / "localization.toml").read_text().replace('paper_numbers = "paper_numbers.toml"', "")
    out = R.run_experiment(write_config(tmp_path, text.replace('work = "results/stores"', "")),
                           [bench.replace("instance-335", "instance-160"), "pca=none", "bootstrap.n_boot=100"],
                           quiet=True)
    md = (out / "results.md").read_text()
    assert "| dasr-star | 1.000 | 1.000 | 1.000 | 0.500 | 0.500 | 0.500 | 0.000 |" in md  # ious 0.6 and 0.3
    assert "IoU≥0.5" in md and (out / "recall-vs-iou.png").is_file()
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert float(next(r for r in rows if r["metric"] == "recall@iou0.5")["ours"]) == 0.5
    assert float(next(r for r in rows if r["metric"] == "recall@iou0.3")["ours"]) == 1.0

    text = (EXPERIMENTS / "ablation_layers.toml").read_text().replace('paper_numbers = "paper_numbers.toml"', "")
    out = R.run_experiment(write_config(tmp_path, text.replace('work = "results/stores"', "")),
                           [bench.replace("instance-335", "instance-160"), "pca=none", "bootstrap.n_boot=100",
                            f"out={tmp_path / 'layers'}"], quiet=True)
    md = (out / "results.md").read_text()
    assert "best layer resnet50 Block3_unit3" in md and "-> differs" in md
    assert "resnet50 Block4_unit1 - vgg16 block5_conv1" not in md and "resnet50 conv5_block1_out - vgg16 block5_conv1" in md
    assert (out / "instance-160-ap.png").is_file()


# ----------------------------------------------------------------------------- VLAD image search
def _write_store(path: Path, images: list[str], feats: list[np.ndarray], config: dict) -> Path:
    with StoreWriter(path, config, "/fake") as w:
        for i, (img, f) in enumerate(zip(images, feats)):
            n = len(f)
            boxes = np.tile(np.array([[10, 10, 40, 40]], np.float32), (n, 1))
            w.add(img, i, (100, 100), {"boxes": boxes, "scores": np.ones(n, np.float32),
                                       "features": np.asarray(f, np.float32)})
    return path


def _landmark_regions(rng, centers, lm: int, n: int = 4) -> np.ndarray:
    return np.abs(centers[lm] + 0.15 * rng.normal(size=(n, centers.shape[1]))).astype(np.float32)


def _synthetic_search(tmp_path: Path, d: int = 16, n_lm: int = 4, per: int = 5):
    rng = np.random.default_rng(0)
    centers = np.abs(rng.normal(size=(n_lm, d))) * (rng.random((n_lm, d)) > 0.5)
    db_images = [f"db/{lm}/{i}.jpg" for lm in range(n_lm) for i in range(per)]
    db_feats = [_landmark_regions(rng, centers, lm) for lm in range(n_lm) for _ in range(per)]
    db_feats[3] = np.zeros((0, d), np.float32)  # an image without any region
    q_images = [f"q/{lm}.jpg" for lm in range(n_lm)]
    q_feats = [_landmark_regions(rng, centers, lm) for lm in range(n_lm)]
    src_images = [f"src/{i}.jpg" for i in range(30)]
    src_feats = [np.abs(rng.normal(size=(5, d))).astype(np.float32) for _ in src_images]
    cfg = {"method": "dasr-star", "d": d}
    stores = {
        "database": _write_store(tmp_path / "db.h5", db_images, db_feats, cfg),
        "queries": _write_store(tmp_path / "q.h5", q_images, q_feats, cfg),
        "source": _write_store(tmp_path / "src.h5", src_images, src_feats, cfg),
    }
    queries = tuple(Query(name=q, image=q, box=None, positives=tuple(range(lm * per, (lm + 1) * per)))
                    for lm, q in enumerate(q_images))
    bench = Benchmark(name="paris-landmarks", root=tmp_path, database=tuple(db_images), queries=queries, ap="oxford")
    return bench, stores


def test_vlad_image_search_from_stores(tmp_path):
    from dasr.image_search import VladSettings, image_search_from_stores, learn_vlad_model
    from dasr.store import RegionStore

    bench, stores = _synthetic_search(tmp_path)
    db, src, qs = (RegionStore.open(stores[k]) for k in ("database", "source", "queries"))
    settings = VladSettings(k=4, power=0.5, pca_dim=8192)
    model = learn_vlad_model(src, settings)
    assert model["codebook"].shape == (4, 16)
    assert model["dim"] == 29 and "capped at 29" in model["note"]  # 30 learning images: n - 1 components
    r = image_search_from_stores(bench, db, src, qs, settings)
    assert r["dim"] == 29 and r["queries"] == 4 and r["images"] == 20
    assert r["mean"]["ap"] > 0.9, r["mean"]
    assert all(0.0 <= p["ap"] <= 1.0 for p in r["per_query"])
    plain = image_search_from_stores(bench, db, src, qs, VladSettings(pca="none"))
    assert plain["dim"] == 64 and plain["mean"]["ap"] > 0.9
    with pytest.raises(KeyError, match="in no store"):
        image_search_from_stores(bench, db, src, None, settings)


def test_table3_flow_on_shipped_layout(tmp_path, monkeypatch):
    """run_experiment with task image-search: stores come from ensure_store (patched to the fakes)."""
    import dasr.cli
    import dasr.image_search

    bench, stores = _synthetic_search(tmp_path)
    landmarks = fake_paris_landmarks(tmp_path / "pl")
    track = fake_instance_track(tmp_path / "track")
    monkeypatch.setattr(dasr.cli, "build_extractor", fake_extractor_factory([]))
    monkeypatch.setattr(dasr.image_search, "load_benchmark",
                        lambda name, root=None: bench if name == "paris-landmarks" else SimpleNamespace(name=name))
    roles = []

    def ensure(extractor, b, work, role, progress=True):
        roles.append((b.name, role))
        return stores["source" if role == "pca-source" else role]

    monkeypatch.setattr(dasr.image_search, "ensure_store", ensure)
    text = (EXPERIMENTS / "table3.toml").read_text().replace('paper_numbers = "paper_numbers.toml"', "")
    text = text.replace('work = "results/stores"', "")
    cfg = write_config(tmp_path, text)
    out = R.run_experiment(cfg, [f'benchmarks=[{{ name = "paris-landmarks", root = "{landmarks}", '
                                 f'pca_benchmark = "instance-track", pca_root = "{track}" }}]'], quiet=True)
    assert ("instance-track", "pca-source") in roles and ("paris-landmarks", "database") in roles
    assert ("paris-landmarks", "queries") in roles
    md = (out / "results.md").read_text()
    assert "n/a (different data)" in md and "capped at 29" in md and "VLAD" in md
    assert "learned on instance-track" in md and "VLAD codebook learned on instance-track" in md
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert float(next(r for r in rows if r["metric"] == "mAP")["ours"]) > 0.9
    assert (out / "paris-landmarks-ap.png").is_file()


# ----------------------------------------------------------------------------- scalability
def test_scalability_flow_with_distractors(tmp_path, monkeypatch):
    import dasr.cli
    import dasr.evaluate
    from dasr.datasets import load_benchmark

    track = fake_instance_track(tmp_path / "track", instances=("a", "b", "c", "d"))
    landmarks = fake_paris_landmarks(tmp_path / "pl", landmarks=("x", "y", "z"), db=4)
    bench = load_benchmark("instance-track", track)
    rng = np.random.default_rng(1)
    d = 8
    centers = rng.normal(size=(4, d))
    db_feats = [centers[i // 3] + 0.1 * rng.normal(size=(3, d)) for i in range(len(bench.database))]
    distractor_images = [f"dist/{i}.jpg" for i in range(15)]
    dist_feats = [rng.normal(size=(4, d)) for _ in distractor_images]
    cfgd = {"method": "dasr-star"}
    stores = {"instance-track": _write_store(tmp_path / "db.h5", list(bench.database), db_feats, cfgd),
              "paris-landmarks": _write_store(tmp_path / "dist.h5", distractor_images, dist_feats, cfgd)}
    monkeypatch.setattr(dasr.cli, "build_extractor", fake_extractor_factory([]))
    monkeypatch.setattr(dasr.evaluate, "ensure_store", lambda ex, b, work, role, progress=True: stores[b.name])
    monkeypatch.setattr(dasr.evaluate, "query_features",
                        lambda ex, b, cache, progress=True: (centers + 0.05 * rng.normal(size=(4, d))).astype(np.float32))
    text = (EXPERIMENTS / "scalability.toml").read_text().replace('paper_numbers = "paper_numbers.toml"', "")
    cfg = write_config(tmp_path, text.replace('work = "results/stores"', ""))
    out = R.run_experiment(cfg, [f'benchmarks=[{{ name = "instance-track", root = "{track}", pca_root = "{landmarks}" }}]',
                                 f"distractors_root={landmarks}",
                                 "steps=[0, 5, 1000]", 'methods=["dasr-star", "gap"]', "baseline_max_distractors=5",
                                 "index.recall_k=10", "index.k_regions=50", "bootstrap.n_boot=200"], quiet=True)
    saved = json.loads((out / "results.json").read_text())
    results = [e["result"] for e in saved["entries"]]
    dstar = [r for r in results if r["method"] == "dasr-star"]
    assert sorted({r["distractors"] for r in dstar}) == [0, 5, 15]  # 1000 clipped to the 15 available
    assert sorted({r["distractors"] for r in results if r["method"] == "gap"}) == [0, 5]  # capped
    assert {r["search"] for r in dstar} == {"exact", "ann:exact"}  # ivfpq falls back on so few vectors
    assert all(r["recall_vs_exact"]["value"] == pytest.approx(1.0) for r in dstar)
    assert all(r["database_images"] == 12 + r["distractors"] for r in results)
    top = max(dstar, key=lambda r: r["distractors"])
    assert top["distractor_regions"] == 60 and top["regions"] == 36 + 60
    assert dstar[0]["mean"]["ap@50/truncated"] > 0.9
    md = (out / "results.md").read_text()
    assert "7,014,819" in md and "60 DASR* regions for 15 distractor images" in md
    assert "paris-landmarks, which also serves as distractors" in md
    assert (out / "map-vs-database-size.png").is_file() and (out / "recall-vs-database-size.png").is_file()
    assert "0 distractors, exact" in (out / "bootstrap.csv").read_text()


def test_scalability_database_rows_follow_the_subsampled_benchmark(tmp_path):
    from dasr.datasets import Benchmark
    from dasr.evaluate import subsample_database
    from dasr.store import RegionStore

    names = ["d", "a", "c", "b"]  # a whole-benchmark store, in another order
    feats = [np.full((i + 1, 2), i, np.float32) for i in range(4)]  # d: 1 row of 0, a: 2 rows of 1, ...
    store = RegionStore.open(_write_store(tmp_path / "s.h5", names, feats, {"method": "dasr"}))
    bench = subsample_database(Benchmark("t", tmp_path, ("a", "b", "c", "d", "e"), (), "instance"), 2)  # a, c, e
    rows, counts = R._database_rows(store, bench)
    assert counts.tolist() == [2, 3, 0]  # e was never extracted: no regions
    assert rows[:, 0].tolist() == [1, 1, 2, 2, 2]


# ----------------------------------------------------------------------------- end to end (real stores)
class ColourExtractor:
    """A stand-in for the network: regions = image quadrants, feature = colour statistics."""

    def __init__(self, method: str):
        self.method = method

    def config(self) -> dict:
        return {"backbone": "colour", "weights": "none", "method": self.method, "feature_layer": "rgb",
                "pooling": "avg", "max_side": 64, "dasr_version": "test"}

    def describe_box(self, image, box) -> np.ndarray:
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        crop = image[max(0, y1):max(y1 + 1, y2), max(0, x1):max(x1 + 1, x2)].reshape(-1, 3).astype(np.float32)
        return np.concatenate([crop.mean(0), crop.std(0) + 1.0, [crop.max(), crop.min() + 1.0]]).astype(np.float32)

    def __call__(self, image, keep_maps: bool = False):
        from dasr.regions import Regions

        h, w = image.shape[:2]
        boxes = np.array([[0, 0, w, h]] if self.method in ("gap", "mac", "rmac", "crow") else
                         [[0, 0, w / 2, h / 2], [w / 2, 0, w, h / 2], [0, h / 2, w / 2, h], [w / 2, h / 2, w, h]],
                         np.float32)
        n = len(boxes)
        regions = Regions(boxes, np.ones(n, np.float32), np.zeros((n, 2), np.int32), np.zeros((n, 5), np.float32))
        return SimpleNamespace(regions=regions, features=np.stack([self.describe_box(image, b) for b in boxes]))


def _paint(root: Path, rel: str, colour, rng) -> None:
    import cv2

    img = np.clip(np.asarray(colour)[None, None, :] + rng.normal(0, 12, (48, 64, 3)), 0, 255).astype(np.uint8)
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / rel), img)


def test_end_to_end_with_real_stores(tmp_path, monkeypatch):
    import dasr.cli

    rng = np.random.default_rng(3)
    track = fake_instance_track(tmp_path / "track", instances=("a", "b", "c", "d"), refs=4)
    landmarks = fake_paris_landmarks(tmp_path / "pl", landmarks=("x", "y", "z"), db=4)
    for root, col in ((track, 1), (landmarks, 1)):
        colours = {}
        for line in (root / "annotations.csv").read_text().splitlines()[1:]:
            rel, group = line.split(",")[:2]
            colours.setdefault(group, rng.uniform(30, 220, 3))
            _paint(root, rel, colours[group], rng)
    monkeypatch.setattr(dasr.cli, "build_extractor", lambda args: ColourExtractor(args.method))
    entry = f'{{ name = "instance-track", root = "{track}", pca_root = "{landmarks}" }}'
    cfg = write_config(tmp_path, f'''name = "e2e"
compare = "table1"
methods = ["dasr-star", "gap"]
benchmarks = [{entry}]
bootstrap = {{ n_boot = 200 }}
''')
    out = R.run_experiment(cfg, [], quiet=True)
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert float(next(r for r in rows if r["cell"] == "dasr-star" and r["metric"] == "All")["ours"]) > 0.9
    assert (out / "runs" / "instance-track" / "dasr-star" / "results.json").is_file()
    assert (tmp_path / "work" / "instance-track").is_dir() and (tmp_path / "work" / "paris-landmarks").is_dir()
    # `make figures`: plots replotted, Fig. 6 panels drawn from the DASR* run's rankings
    figs = tmp_path / "figs.toml"
    figs.write_text(f'task = "figures"\nexperiments = ["exp"]\nout = "{tmp_path / "figs"}"\n'
                    '[gallery]\nqueries = 2\ntop = 3\n')
    index = (R.run_experiment(figs, [], quiet=True) / "results.md").read_text()
    panels = sorted((out / "runs" / "instance-track" / "dasr-star").glob("fig6-*.png"))
    assert len(panels) == 2 and all(p.name in index for p in panels)
    assert not list((out / "runs" / "instance-track" / "gap").glob("fig6-*.png"))

    # Table 3's flow on the shipped layout: VLAD over the stores, learned on instance-track.
    t3 = (EXPERIMENTS / "table3.toml").read_text().replace('paper_numbers = "paper_numbers.toml"', "")
    cfg3 = write_config(tmp_path, t3.replace('work = "results/stores"', ""))
    out3 = R.run_experiment(cfg3, [f'benchmarks=[{{ name = "paris-landmarks", root = "{landmarks}", '
                                   f'pca_benchmark = "instance-track", pca_root = "{track}" }}]',
                                   f"out={tmp_path / 'out3'}"], quiet=True)
    r3 = json.loads((out3 / "results.json").read_text())["entries"][0]["result"]
    assert r3["task"] == "image-search" and r3["queries"] == 3 and r3["mean"]["ap"] > 0.8
    # paris-landmarks' database and query images were extracted once, as instance-track's PCA source
    assert [p.name for p in (tmp_path / "work" / "paris-landmarks").glob("dasr-star-*/*.h5")] == ["pca-source.h5"]
