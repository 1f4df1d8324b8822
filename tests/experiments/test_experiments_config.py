"""Experiment configs: the shipped files, overrides, and the check of every value where it is loaded."""

from __future__ import annotations

import re

import pytest

from dasr.experiments import config as C
from dasr.experiments.benchmarks import resolve_benchmarks
from dasr.experiments.cells import build_cells
from dasr.experiments.paper import load_paper_numbers, paper_benchmarks
from dasr.experiments.paths import results_folder, slug

from experiments_helpers import CONFIGS, EXPERIMENTS


@pytest.mark.parametrize("name", CONFIGS)
def test_shipped_configs_load_and_expand(name):
    cfg = C.load_config(EXPERIMENTS / f"{name}.toml")
    assert cfg["name"] == name and cfg["title"] and cfg["compare"]
    cells = build_cells(cfg)
    specs = resolve_benchmarks(cfg)
    assert cells and specs
    assert all(s.pca_benchmark != s.name for s in specs)
    paper = load_paper_numbers(cfg)
    assert paper_benchmarks(paper, cfg["compare"]) >= {s.name for s in specs}
    shipped = resolve_benchmarks(C.apply_overrides(cfg, ["bench=instance-track"]))
    assert [s.name for s in shipped] == ["instance-track"] and shipped[0].pca_benchmark == "paris-landmarks"


def test_config_contents():
    t1 = C.load_config(EXPERIMENTS / "table1.toml")
    assert [c.method for c in build_cells(t1)] == ["dasr-star", "dasr", "gap", "mac", "rmac", "crow", "fixed-box"]
    layers = build_cells(C.load_config(EXPERIMENTS / "ablation_layers.toml"))
    assert len(layers) == 12 and {c.beta for c in layers} == {"none"} and {c.method for c in layers} == {"dasr"}
    assert {c.backbone for c in layers} == {"resnet50", "vgg16"}
    nms = build_cells(C.load_config(EXPERIMENTS / "ablation_nms.toml"))
    assert [c.effective_beta() for c in nms if c.method == "dasr-star"] == [0.1, 0.2, 0.3, 0.4, 0.5, None]
    t3 = C.load_config(EXPERIMENTS / "table3.toml")
    assert t3["task"] == "image-search" and t3["vlad"]["k"] == 4 and t3["vlad"]["power"] == 0.5 and t3["pca_dim"] == 8192
    figs = C.load_config(EXPERIMENTS / "figures.toml")
    assert figs["task"] == "figures" and figs["experiments"] == CONFIGS
    sc = C.load_config(EXPERIMENTS / "scalability.toml")
    assert sc["task"] == "scalability" and sc["ks"] == [50] and sc["index"]["kind"] in ("exact", "pq", "ivfpq", "opq-ivfpq")


def test_parse_override_values():
    assert C.parse_override("bench=instance-track") == (["bench"], "instance-track")
    assert C.parse_override("pca_dim=512") == (["pca_dim"], 512)
    assert C.parse_override('betas=[0.1, "none"]') == (["betas"], [0.1, "none"])
    assert C.parse_override("keep_going=false") == (["keep_going"], False)
    assert C.parse_override("index.kind=pq") == (["index", "kind"], "pq")
    assert C.parse_override("distractors=/data/flickr 1m") == (["distractors"], "/data/flickr 1m")
    assert C.parse_override("bench_root=") == (["bench_root"], "")
    # the shell or make dropped the quotes of a list of strings
    assert C.parse_override("methods=[dasr, gap]") == (["methods"], ["dasr", "gap"])
    assert C.parse_override("betas=[0.1, none]") == (["betas"], [0.1, "none"])
    with pytest.raises(ValueError, match="inline table"):
        C.parse_override("extractor={max_side=}")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        C.parse_override("bench")
    with pytest.raises(ValueError, match="empty key"):
        C.parse_override("a..b=1")


def test_apply_overrides_nested_and_unknown():
    cfg = C.load_config(EXPERIMENTS / "table1.toml")
    new = C.apply_overrides(cfg, ["bootstrap.n_boot=100", "vlad.k=8", "extractor.stop_stride=8", "tau=0.2"])
    assert new["bootstrap"]["n_boot"] == 100 and new["bootstrap"]["seed"] == 0
    assert new["vlad"] == {"k": 8} and new["extractor"]["stop_stride"] == 8 and new["tau"] == 0.2
    assert cfg["bootstrap"]["n_boot"] == 10000  # the original is untouched
    with pytest.raises(ValueError, match="unknown config key 'bogus'"):
        C.apply_overrides(cfg, ["bogus=1"])
    with pytest.raises(ValueError, match="not a table"):
        C.apply_overrides(cfg, ["tau.x=1"])


@pytest.mark.parametrize("line, key", [
    ("methods = 5", "methods"),
    ("name = 5", "name"),
    ("subsample = -3", "subsample"),
    ("subsample = 0", "subsample"),
    ("subsample = 1.5", "subsample"),
    ("pca_subsample = 0", "pca_subsample"),
    ('pca_subsample = "6"', "pca_subsample"),
    ('query = "crop"', "query"),
    ("query = 3", "query"),
    ('ks = [10, "x"]', "ks"),
    ("ks = [0]", "ks"),
    ("tau = true", "tau"),
    ('keep_going = "yes"', "keep_going"),
    ('pca = "pca"', "pca"),
    ('task = "search"', "task"),
    ('ap_variant = "max"', "ap_variant"),
    ("pca_dim = -1", "pca_dim"),
    ("bench = 3", "bench"),
    ("extractor = 3", "extractor"),
    ("layers = [1]", "layers"),
    ("steps = [-1]", "steps"),
    ("iou_thresholds = [0, 0.5]", "iou_thresholds"),
    ("distractors = 7", "distractors"),
    ('experiments = "table1"', "experiments"),
])
def test_a_value_of_the_wrong_type_names_its_key_in_one_line(tmp_path, line, key):
    path = tmp_path / "bad.toml"
    path.write_text(line + "\n")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: {key} must be ") as err:
        C.load_config(path)
    assert "\n" not in str(err.value)
    # the same value through --set is refused as well, naming the override
    ok = tmp_path / "ok.toml"
    ok.write_text("")
    override = line.replace(" = ", "=", 1)
    with pytest.raises(ValueError, match=rf"--set {re.escape(override)}: {key} must be "):
        C.apply_overrides(C.load_config(ok), [override])


def test_valid_special_values_pass():
    cfg = C.load_config(EXPERIMENTS / "table1.toml")
    for override in ("pca_dim=all", "pca_dim=0", "pca_dim=512", 'distractors=["a", "b"]', "subsample=12",
                     'layers={resnet50 = ["conv4_block6_out"]}'):
        C.apply_overrides(cfg, [override])
    assert C.pca_dim(C.apply_overrides(cfg, ["pca_dim=all"])) is None
    assert C.pca_dim(C.apply_overrides(cfg, ["pca_dim=512"])) == 512


def test_a_folder_is_not_a_config(tmp_path):
    with pytest.raises(ValueError, match="a folder, not a config file"):
        C.load_config(tmp_path)
    with pytest.raises(FileNotFoundError):
        C.load_config(tmp_path / "missing.toml")


@pytest.mark.parametrize("name", ["../../X", "a/b", "..", "."])
def test_the_name_cannot_leave_results(tmp_path, name):
    path = tmp_path / "exp.toml"
    path.write_text(f'name = "{name}"\n')
    with pytest.raises(ValueError, match="name must be a plain folder name"):
        C.load_config(path)
    ok = tmp_path / "ok.toml"
    ok.write_text("")
    with pytest.raises(ValueError, match="name must be a plain folder name"):
        C.apply_overrides(C.load_config(ok), [f"name={name}"])


def test_results_folder_is_under_results_unless_out_is_given(tmp_path):
    path = tmp_path / "t1.toml"
    path.write_text("")
    cfg = C.load_config(path)
    assert cfg["name"] == "t1" and results_folder(cfg).as_posix() == "results/t1"
    assert results_folder(C.apply_overrides(cfg, [f"out={tmp_path / 'elsewhere'}"])) == tmp_path / "elsewhere"


def test_slug():
    assert slug("dasr-star no NMS") == "dasr-star-no-NMS"
    assert slug("../x/y") == "..-x-y" and slug("//") == "x"


@pytest.mark.parametrize("text, key", [('name = "x"\nmethods = 5\n', "methods"), ('name = "x"\ntau = "big"\n', "tau")])
def test_a_config_value_of_the_wrong_type_is_a_user_error_naming_the_key(tmp_path, text, key):
    from dasr.errors import InputError

    (tmp_path / "bad.toml").write_text(text)
    with pytest.raises(InputError, match=rf"bad.toml: {key} must be"):
        C.load_config(tmp_path / "bad.toml")


def test_a_missing_or_binary_config_file_is_a_user_error(tmp_path):
    from dasr.errors import InputError, UserError

    with pytest.raises(UserError, match="nothing.toml: no such config file") as info:
        C.load_config(tmp_path / "nothing.toml")
    assert isinstance(info.value, FileNotFoundError)
    (tmp_path / "binary.toml").write_bytes(b"name = \xff\xfe\n")
    with pytest.raises(InputError, match="binary.toml: not a UTF-8 text file"):
        C.load_config(tmp_path / "binary.toml")
