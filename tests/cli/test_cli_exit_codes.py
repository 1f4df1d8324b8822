"""One exit-code convention for every command: 0 done, 2 refused (one line), 1 a bug (traceback)."""

from __future__ import annotations

import pytest

from conftest import FAST
from dasr.features.extractor import Extractor


@pytest.fixture()
def bad_image(tmp_path):
    p = tmp_path / "broken.jpg"
    p.write_bytes(b"\xff\xd8\xff this is not a JPEG")
    return p


def test_detect_refuses_an_unreadable_image_but_does_the_others(dasr_cli, sample_images, bad_image):
    rc, stdout, stderr = dasr_cli("detect", sample_images / "img00.jpg", bad_image, *FAST)
    assert rc == 2
    assert "img00.jpg" in stdout  # the readable image was still done
    assert stderr.count("\n") == 1 and stderr.startswith("dasr: error: ") and "broken.jpg" in stderr


def test_classify_refuses_an_unreadable_image_with_exit_code_2(dasr_cli, bad_image):
    rc, stdout, stderr = dasr_cli("classify", bad_image, "--weights", "random")
    assert rc == 2 and stderr.startswith("dasr: error: ") and "broken.jpg" in stderr


def test_classify_and_weights_honour_random(dasr_cli, sample_images):
    rc, stdout, _ = dasr_cli("weights", "--weights", "random")
    assert rc == 0 and stdout.startswith("random:") and ".h5" not in stdout
    rc, stdout, _ = dasr_cli("classify", sample_images / "img00.jpg", "--weights", "random", "--top", "2")
    assert rc == 0 and "?" in stdout  # no ImageNet class names for an untrained network


def test_extract_of_nothing_readable_exits_2(dasr_cli, tmp_path, bad_image):
    folder = tmp_path / "only-bad"
    folder.mkdir()
    bad_image.rename(folder / "broken.jpg")
    rc, stdout, stderr = dasr_cli("extract", folder, "--out", tmp_path / "s.h5", *FAST, "--quiet")
    assert rc == 2 and "no image could be extracted" in stderr
    assert stderr.splitlines()[-1].startswith("dasr: error: ")


@pytest.mark.parametrize("argv", [
    ("search", "--index", "x.h5", "--query", "q.jpg", "--top", "0"),
    ("search", "--index", "x.h5", "--query", "q.jpg", "--top", "-5"),
    ("detect", "q.jpg", "--max-seeds", "0"),
    ("detect", "q.jpg", "--tau", "nan"),
    ("detect", "q.jpg", "--tau", "1"),
    ("detect", "q.jpg", "--beta", "0"),
    ("detect", "q.jpg", "--cascade-stride", "0"),
    ("detect", "q.jpg", "--fixed-box-side", "nan"),
    ("detect", "q.jpg", "--max-side", "16"),
    ("extract", "d", "--out", "s.h5", "--limit", "-1"),
    ("extract", "d", "--out", "s.h5", "--images-per-step", "0"),
    ("evaluate", "--benchmark", "instance-track", "--subsample", "-3"),
    ("evaluate", "--benchmark", "instance-track", "--pca-subsample", "0"),
    ("evaluate", "--benchmark", "instance-track", "--query", "crop"),
])
def test_a_numeric_option_out_of_range_is_refused_before_any_work(dasr_cli, argv):
    rc, stdout, stderr = dasr_cli(*argv)
    assert rc == 2 and stdout == ""
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("dasr ") and "error: argument --" in last


def test_a_bug_is_not_disguised_as_a_user_error(dasr_cli, sample_images, monkeypatch):
    """An internal error propagates (the process exits 1 with its traceback), never exit 2."""
    def broken(self, image, keep_maps=False):
        raise RuntimeError("a bug in the backprop")

    monkeypatch.setattr(Extractor, "__call__", broken)
    with pytest.raises(RuntimeError, match="a bug in the backprop"):
        dasr_cli("detect", sample_images / "img00.jpg", *FAST)


def test_debug_shows_the_traceback_of_a_refusal(dasr_cli, tmp_path, monkeypatch):
    missing = tmp_path / "missing.h5"
    rc, _, stderr = dasr_cli("merge", missing, "--out", tmp_path / "m.h5")
    assert rc == 2 and stderr.startswith("dasr: error: ")
    with pytest.raises(Exception, match="missing.h5"):
        dasr_cli("--debug", "merge", missing, "--out", tmp_path / "m.h5")
    monkeypatch.setenv("DASR_DEBUG", "1")
    with pytest.raises(Exception, match="missing.h5"):
        dasr_cli("merge", missing, "--out", tmp_path / "m.h5")


@pytest.mark.parametrize("flag", ["--json", "--figure"])
def test_detect_never_writes_over_its_input_image(dasr_cli, sample_images, tmp_path, flag):
    image = tmp_path / "photo.jpg"
    image.write_bytes((sample_images / "img00.jpg").read_bytes())
    before = image.read_bytes()
    rc, _, stderr = dasr_cli("detect", image, *FAST, flag, image)
    assert rc == 2 and "inputs" in stderr
    assert image.read_bytes() == before


def test_whiten_never_writes_over_the_index(dasr_cli, sample_images, other_images, tmp_path):
    index, other = tmp_path / "i.h5", tmp_path / "o.h5"
    for folder, out in ((sample_images, index), (other_images, other)):
        assert dasr_cli("extract", folder, "--out", out, *FAST, "--method", "gap", "--quiet")[0] == 0
    before = index.read_bytes()
    rc, _, stderr = dasr_cli("whiten", "--index", index, "--learn-from", other, "--out", index)
    assert rc == 2 and "inputs" in stderr and index.read_bytes() == before
    text = tmp_path / "notes.txt"
    text.write_text("mine")
    rc, _, stderr = dasr_cli("whiten", "--index", index, "--learn-from", other, "--out", text)
    assert rc == 2 and "not .npz" in stderr and text.read_text() == "mine"


def test_contrastive_flag_reaches_the_extractor_spec() -> None:
    from dasr.cli.options import spec_from_args
    from dasr.cli.parser import build_parser

    parser = build_parser()
    on = spec_from_args(parser.parse_args(["detect", "x.jpg", "--contrastive", "--stop-stride", "16"]))
    off = spec_from_args(parser.parse_args(["detect", "x.jpg"]))
    assert (on.region.contrastive, on.region.stop_stride) == (True, 16)
    assert off.region.contrastive is False


def test_images_per_step_is_refused_with_ray_and_used_locally(dasr_cli, sample_images, tmp_path):
    rc, _, stderr = dasr_cli("extract", sample_images, "--out", tmp_path / "r.h5", *FAST, "--engine", "ray",
                             "--images-per-step", "2")
    assert rc == 2 and "--images-per-step is for the local engine" in stderr
    rc, stdout, _ = dasr_cli("extract", sample_images, "--out", tmp_path / "s.h5", *FAST, "--quiet",
                             "--images-per-step", "4")
    assert rc == 0 and "6 extracted" in stdout


@pytest.mark.parametrize("argv, option", [
    (("extract", "", "--out", "s.h5"), "images"),
    (("extract", "d", "--out", ""), "--out"),
    (("detect", "q.jpg", "--json", ""), "--json"),
    (("search", "--index", "", "--query", "q.jpg"), "--store/--index"),
    (("merge", "", "--out", "m.h5"), "shards"),
])
def test_an_empty_value_is_refused_by_name_before_any_work(dasr_cli, argv, option):
    # Path("") is the current folder: `dasr extract ""` extracted it, silently.
    rc, stdout, stderr = dasr_cli(*argv)
    assert rc == 2 and stdout == ""
    assert stderr.strip().splitlines()[-1].endswith(f"error: argument {option}: an empty value names nothing; give one")


def test_the_library_refuses_an_empty_collection_path():
    from dasr.errors import InputError
    from dasr.store.extract import read_image_list

    with pytest.raises(InputError, match="empty path"):
        read_image_list("")
