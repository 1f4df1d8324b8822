"""The benchmark registry, default roots, the data model's checks and the missing-dataset message."""

from __future__ import annotations

import pytest

from dasr.eval import datasets as D


def test_registry_and_unknown_name():
    assert set(D.BENCHMARKS) == {"instance-track", "paris-landmarks", "instance-160", "instance-335", "instre",
                                 "holidays", "oxford5k", "paris6k", "paris6k-subset", "roxford5k", "rparis6k",
                                 "copy-paste", "copy-paste-feathered"}
    with pytest.raises(ValueError, match="unknown benchmark"):
        D.load_benchmark("ukbench", "/tmp")


@pytest.mark.parametrize("name", sorted(D.BENCHMARKS))
def test_every_loader_reports_a_missing_root(tmp_path, name):
    # check_images is accepted by every loader, so callers can pass it uniformly
    with pytest.raises(D.DatasetMissingError, match=name):
        D.load_benchmark(name, tmp_path / "absent", check_images=False)


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
