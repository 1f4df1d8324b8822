"""run_experiment on canned evaluations: dataset checks first, the paper-vs-ours report, failures, figure statements."""

from __future__ import annotations

import csv
import json

import pytest

import dasr.eval.instance
from dasr.eval.datasets import DatasetMissingError
from dasr.experiments import ExperimentError, run_experiment
from dasr.features.spec import ExtractorSpec

from experiments_helpers import (EXPERIMENTS, canned_evaluate, fake_extractor_factory, fake_instance_160,
                                 fake_instance_track, write_config)


def test_missing_dataset_stops_before_any_work(tmp_path, monkeypatch):
    import dasr.eval.instance

    def boom(*a, **k):
        raise AssertionError("work started before the datasets were checked")

    monkeypatch.setattr(ExtractorSpec, "build", boom)
    monkeypatch.setattr(dasr.eval.instance, "evaluate", boom)
    monkeypatch.setattr(dasr.eval.instance, "benchmark_store", boom)
    present = fake_instance_160(tmp_path / "i160")
    cfg = write_config(tmp_path, f'''name = "t"
compare = "table1"
methods = ["dasr-star", "gap"]
pca = "none"
benchmarks = [{{ name = "instance-160", root = "{present}" }}, {{ name = "instance-335", root = "{tmp_path / 'nope'}" }}]
''')
    with pytest.raises(DatasetMissingError, match="instance-335") as err:
        run_experiment(cfg, [], quiet=True)
    assert "expected layout" in str(err.value)
    assert not (tmp_path / "out").exists()
    with pytest.raises(DatasetMissingError, match="instre"):  # same through --set bench=
        run_experiment(cfg, ["bench=instre", f"bench_root={tmp_path / 'nope'}"], quiet=True)
    sc = write_config(tmp_path, f'''name = "s"
task = "scalability"
compare = "fig8"
pca = "none"
distractors = "{tmp_path / 'no-flickr'}"
benchmarks = [{{ name = "instance-160", root = "{present}" }}]
''')
    with pytest.raises(DatasetMissingError, match="distractors not found"):
        run_experiment(sc, [], quiet=True)


def _canned_instance_160(tmp_path, monkeypatch):
    """Fake extractors and canned evaluations on a fake Instance-160: (built, evaluated, root)."""
    import dasr.eval.instance

    built, evaluated = [], []
    monkeypatch.setattr(ExtractorSpec, "build", fake_extractor_factory(built))
    monkeypatch.setattr(dasr.eval.instance, "evaluate", canned_evaluate(evaluated))
    return built, evaluated, fake_instance_160(tmp_path / "i160")


def test_the_learning_sample_and_the_query_kind_reach_every_cell(tmp_path, monkeypatch):
    """``pca_subsample`` (the whitening's learning sample) and ``query`` reach each cell's evaluation."""
    built, evaluated, root = _canned_instance_160(tmp_path, monkeypatch)
    cfg = write_config(tmp_path, f'''name = "t1"
methods = ["dasr-star", "gap"]
pca_benchmark = "instance-track"
benchmarks = [{{ name = "instance-160", root = "{root}" }}]
bootstrap = {{ reference = {{ method = "dasr-star" }}, n_boot = 100 }}
''')
    run_experiment(cfg, ["pca_subsample=6", 'query="image"'], quiet=True)
    assert [(e[0], e[2], e[3], e[5], e[6]) for e in evaluated] == [("dasr-star", "other", "instance-track", 6, "image"),
                                                                   ("gap", "other", "instance-track", 6, "image")]


def test_side_by_side_report_with_paper_numbers(tmp_path, monkeypatch):
    built, evaluated, root = _canned_instance_160(tmp_path, monkeypatch)
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
    out = run_experiment(cfg, [], quiet=True)
    assert out == tmp_path / "out"
    assert [a.method for a in built] == ["dasr-star", "dasr", "gap", "rmac"]
    assert built[0].region.nms_iou == 0.3 and built[1].region.nms_iou is None  # each method's default β
    assert [e[0] for e in evaluated] == ["dasr-star", "dasr", "gap", "rmac"]
    md = (out / "results.md").read_text()
    assert "AP@k definition: **truncated**" in md
    assert "- 20 database images, 10 queries" in md  # read from the SearchResult's fields
    dstar = next(line for line in md.splitlines() if line.startswith("| dasr-star (DASR*)"))
    assert "0.771" in dstar and "0.206" in dstar  # paper's All and Top-10 next to ours
    rows = list(csv.DictReader(open(out / "results.csv")))
    all_row = next(r for r in rows if r["cell"] == "dasr-star" and r["metric"] == "All")
    assert float(all_row["paper"]) == 0.771
    assert float(all_row["difference"]) == pytest.approx(float(all_row["ours"]) - 0.771)
    gap_row = next(r for r in rows if r["cell"] == "gap" and r["metric"] == "All")
    assert gap_row["paper"] == "" and gap_row["note"] == "not in the paper"
    # The paper's R-MAC row is 512-d VGG-16: no difference against this ResNet-50 cell.
    rmac = next(r for r in rows if r["cell"] == "rmac" and r["metric"] == "Top-100")
    assert rmac["paper"] == "" and rmac["difference"] == "" and rmac["note"] == "the paper's row is another network (512-d)"
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
    out2 = run_experiment(cfg, ["bench=instance-track", f"bench_root={track}", f"out={tmp_path / 'out2'}",
                                  "ap_variant=min"], quiet=True)
    md2 = (out2 / "results.md").read_text()
    assert "n/a (different data)" in md2 and "0.771" not in md2.split("## instance-track")[1].split("##")[0]
    assert "AP@k definition: **min**" in md2
    rows2 = list(csv.DictReader(open(out2 / "results.csv")))
    assert all(r["paper"] in ("n/a (different data)", "") for r in rows2)
    assert evaluated[-1][1] == "instance-track"

    # --set replot=true rewrites the report from results.json without running anything.
    (out / "results.md").unlink()
    monkeypatch.setattr(dasr.eval.instance, "evaluate", None)
    run_experiment(cfg, ["replot=true"], quiet=True)
    assert "0.771" in (out / "results.md").read_text()
    # ... and a `figures` config does it for every listed experiment that has run.
    figs = tmp_path / "figs.toml"
    figs.write_text(f'task = "figures"\nexperiments = ["exp", "never"]\nout = "{tmp_path / "figs"}"\n')
    (tmp_path / "never.toml").write_text(f'out = "{tmp_path / "never-out"}"\n')
    (out / "instance-160-ap.png").unlink()
    index = (run_experiment(figs, [], quiet=True) / "results.md").read_text()
    assert (out / "instance-160-ap.png").is_file() and "instance-160-ap.png" in index and "never: not run yet" in index


def test_failing_cell_is_reported_and_raised_after_the_others(tmp_path, monkeypatch):
    import dasr.eval.instance

    monkeypatch.setattr(ExtractorSpec, "build", fake_extractor_factory([]))
    good = canned_evaluate([])

    def flaky(extractor, benchmark, *a, **k):
        if extractor.method == "gap":
            raise RuntimeError("boom in gap")
        return good(extractor, benchmark, *a, **k)

    monkeypatch.setattr(dasr.eval.instance, "evaluate", flaky)
    root = fake_instance_160(tmp_path / "i160")
    cfg = write_config(tmp_path, f'''name = "t"
compare = "table1"
methods = ["dasr-star", "gap", "dasr"]
pca = "none"
benchmarks = [{{ name = "instance-160", root = "{root}" }}]
''')
    with pytest.raises(ExperimentError, match="boom in gap"):
        run_experiment(cfg, [], quiet=True)
    md = (tmp_path / "out" / "results.md").read_text()
    assert "## Errors" in md and "| dasr (DASR)" in md


def test_ablation_nms_statements_and_plots(tmp_path, monkeypatch):
    import dasr.eval.instance

    monkeypatch.setattr(ExtractorSpec, "build", fake_extractor_factory([]))
    good = canned_evaluate([])
    regions = {0.1: 4.0, 0.2: 7.0, 0.3: 11.0, 0.4: 16.0, 0.5: 22.0}

    def ev(extractor, benchmark, *a, **k):
        r = good(extractor, benchmark, *a, **k)
        cfg = extractor.config()
        beta = cfg["nms_iou"] if cfg["method"] == "dasr-star" else None
        r.regions_per_image = regions.get(beta, 8.0 if cfg["method"] == "dasr" else 50.0)
        r.mean["ap"] = {0.4: 0.9}.get(beta, 0.7)
        return r

    monkeypatch.setattr(dasr.eval.instance, "evaluate", ev)
    root = fake_instance_160(tmp_path / "i160")
    base = (EXPERIMENTS / "ablation_nms.toml").read_text()
    base = base.replace('paper_numbers = "paper_numbers.toml"', "").replace('work = "results/stores"', "")
    cfg = write_config(tmp_path, base)
    out = run_experiment(cfg, [f'benchmarks=[{{ name = "instance-160", root = "{root}" }}]', "pca=none",
                                 "bootstrap.n_boot=200"], quiet=True)
    md = (out / "results.md").read_text()
    assert "best β = 0.4" in md and "-> agrees" in md
    assert "11.0 regions/image at β = 0.3" in md
    assert "regions(β = 0.4) / regions(DASR, no NMS) = 2.00" in md
    assert (out / "map-vs-beta.png").is_file() and (out / "regions-vs-beta.png").is_file()


def test_localization_and_layer_reports(tmp_path, monkeypatch):
    import dasr.eval.instance

    monkeypatch.setattr(ExtractorSpec, "build", fake_extractor_factory([]))
    good = canned_evaluate([])

    def ev(extractor, benchmark, *a, **k):
        r = good(extractor, benchmark, *a, **k)
        if extractor.config()["layer"] == "conv4_block3_out":
            r.mean["ap"] = 0.95
        return r

    monkeypatch.setattr(dasr.eval.instance, "evaluate", ev)
    root = fake_instance_160(tmp_path / "i160")
    bench = f'benchmarks=[{{ name = "instance-335", root = "{root}" }}]'
    text = (EXPERIMENTS / "localization.toml").read_text().replace('paper_numbers = "paper_numbers.toml"', "")
    out = run_experiment(write_config(tmp_path, text.replace('work = "results/stores"', "")),
                           [bench.replace("instance-335", "instance-160"), "pca=none", "bootstrap.n_boot=100"],
                           quiet=True)
    md = (out / "results.md").read_text()
    assert "| dasr-star | 1.000 | 1.000 | 1.000 | 0.500 | 0.500 | 0.500 | 0.000 |" in md  # ious 0.6 and 0.3
    assert "IoU≥0.5" in md and (out / "recall-vs-iou.png").is_file()
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert float(next(r for r in rows if r["metric"] == "recall@iou0.5")["ours"]) == 0.5
    assert float(next(r for r in rows if r["metric"] == "recall@iou0.3")["ours"]) == 1.0

    text = (EXPERIMENTS / "ablation_layers.toml").read_text().replace('paper_numbers = "paper_numbers.toml"', "")
    out = run_experiment(write_config(tmp_path, text.replace('work = "results/stores"', "")),
                           [bench.replace("instance-335", "instance-160"), "pca=none", "bootstrap.n_boot=100",
                            f"out={tmp_path / 'layers'}"], quiet=True)
    md = (out / "results.md").read_text()
    assert "best layer resnet50 Block3_unit3" in md and "-> differs" in md
    assert "resnet50 Block4_unit1 - vgg16 block5_conv1" not in md and "resnet50 conv5_block1_out - vgg16 block5_conv1" in md
    assert (out / "instance-160-ap.png").is_file()


def test_subsample_reaches_the_evaluation_and_the_report(tmp_path, monkeypatch):
    import dasr.eval.instance

    evaluated = []
    monkeypatch.setattr(ExtractorSpec, "build", fake_extractor_factory([]))
    monkeypatch.setattr(dasr.eval.instance, "evaluate", canned_evaluate(evaluated))
    root = fake_instance_160(tmp_path / "i160")
    cfg = write_config(tmp_path, f'''name = "t"
compare = "table1"
pca = "none"
benchmarks = [{{ name = "instance-160", root = "{root}" }}]
''')
    out = run_experiment(cfg, ["subsample=3"], quiet=True)
    assert [e[4] for e in evaluated] == [3]
    assert "- 20 database images (subsampled: 1 in 3), 10 queries" in (out / "results.md").read_text()
    saved = json.loads((out / "results.json").read_text())
    assert saved["entries"][0]["result"]["subsample"] == 3 and saved["config"]["subsample"] == 3
