"""R-MAC's region whitening: learned on another folder's region vectors, applied per region by the
extractor, recorded in the store's configuration, refused where it does not apply."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from conftest import FAST
from dasr.errors import InputError
from dasr.features import pooling
from dasr.features.extractor import Extractor
from dasr.features.rmac_whitening import learn_rmac_whitening
from dasr.features.spec import ExtractorSpec, extractor_for_store
from dasr.features.whitening import learn_pca_whitening, load_whitening, save_whitening
from dasr.io.images import list_images, load_image
from dasr.model.backbone import build_backbone
from dasr.regions import RegionConfig
from dasr.store import RegionStore


@functools.cache
def backbone():
    return build_backbone("resnet50", weights="random")


def plain(max_side=64):
    return Extractor(backbone(), "rmac", RegionConfig(max_side=max_side))


def test_learned_on_every_region_vector_of_the_folder(tmp_path, other_images):
    out = tmp_path / "w.npz"
    params = learn_rmac_whitening(plain(), other_images, out, progress=False)
    loaded, meta = load_whitening(out)
    ex = plain()
    vectors = np.concatenate([ex.rmac_region_vectors(load_image(other_images / n)) for n in list_images(other_images)])
    want = learn_pca_whitening(vectors)
    np.testing.assert_allclose(params["projection"], want["projection"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(loaded["mean"], want["mean"])
    assert meta["regions"] == len(vectors) and meta["images"] == len(list_images(other_images))
    assert meta["config"]["method"] == "rmac" and meta["kind"] == "rmac-regions"
    # A region vector is an l2-normalised MAC of one grid cell range: unit norm or zero.
    norms = np.linalg.norm(vectors, axis=1)
    assert np.all((np.abs(norms - 1) < 1e-6) | (norms == 0))


def test_the_extractor_whitens_each_region_before_the_sum(tmp_path, sample_images, other_images):
    out = tmp_path / "w.npz"
    params = learn_rmac_whitening(plain(), other_images, out, dim=8, progress=False)
    whitened = Extractor(backbone(), "rmac", RegionConfig(max_side=64), rmac_whitening=str(out))
    image = load_image(sample_images / list_images(sample_images)[0])
    vec = whitened(image).features[0]
    x, scale, size, acts = plain().forward(image)
    fmap = pooling.valid_part(plain().feature_map(acts), size, plain().stride)
    regions = pooling.rmac_region_vectors(fmap)
    w = (regions - params["mean"]) @ params["projection"]
    want = (w / np.linalg.norm(w, axis=1, keepdims=True)).sum(axis=0)
    assert vec.shape == (8,)
    np.testing.assert_allclose(vec, want, rtol=1e-4, atol=1e-5)
    assert not np.allclose(plain()(image).features[0][:8], vec)
    cfg = whitened.config()
    assert cfg["rmac_whitening"] == str(out) and len(cfg["rmac_whitening_digest"]) == 16
    assert "rmac_whitening" not in plain().config()
    # A query box is described the same way: the whole image as a box gives the image's vector.
    h, w_ = image.shape[:2]
    np.testing.assert_allclose(whitened.describe_box(image, (0, 0, w_, h)), vec, rtol=1e-4, atol=1e-5)


def test_refused_where_it_does_not_apply(tmp_path, other_images):
    with pytest.raises(InputError, match="only with method rmac"):
        Extractor(backbone(), "gap", RegionConfig(max_side=64), rmac_whitening=str(tmp_path / "w.npz"))
    with pytest.raises(InputError, match="only with method rmac"):
        ExtractorSpec.from_options(method="mac", rmac_whitening="w.npz", weights="random")
    with pytest.raises(InputError, match="no such whitening file"):
        Extractor(backbone(), "rmac", RegionConfig(max_side=64), rmac_whitening=str(tmp_path / "missing.npz"))
    with pytest.raises(InputError, match="plain rmac extractor"):
        learn_rmac_whitening(Extractor(backbone(), "mac", RegionConfig(max_side=64)), other_images,
                             tmp_path / "x.npz", progress=False)
    three = tmp_path / "three.npz"
    save_whitening(three, {"mean": np.zeros(3), "projection": np.eye(3), "eigenvalues": np.ones(3)})
    with pytest.raises(InputError, match=r"three\.npz: whitens 3-d region vectors, but conv5_block1_out has 2048"):
        Extractor(backbone(), "rmac", RegionConfig(max_side=64), rmac_whitening=str(three))(
            np.full((64, 64, 3), 100, np.uint8))


def test_a_store_made_with_it_rebuilds_its_extractor_and_notices_a_changed_file(tmp_path, dasr_cli,
                                                                                  sample_images, other_images):
    w = tmp_path / "w.npz"
    rc, stdout, stderr = dasr_cli("whiten-rmac", other_images, *FAST, "--pca-dim", "8", "--out", w, "--quiet")
    assert rc == 0 and "R-MAC region whitening 2048 -> 8" in stdout, stderr
    rc, _, stderr = dasr_cli("extract", sample_images, "--out", tmp_path / "r.h5", *FAST, "--quiet",
                             "--method", "rmac", "--rmac-whitening", w)
    assert rc == 0, stderr
    store = RegionStore.open(tmp_path / "r.h5")
    assert store.features.shape[1] == 8
    query = sample_images / list_images(sample_images)[0]
    rc, stdout, stderr = dasr_cli("search", "--index", tmp_path / "r.h5", "--query", query, "--pca", "none",
                                  "--json", *FAST[:2])
    assert rc == 0, stderr
    assert extractor_for_store(store.config, "random").config()["rmac_whitening_digest"] == \
        store.config["rmac_whitening_digest"]
    # The file changed since the extraction (the tests' extractor cache would hide a rewrite: the
    # store's record says another digest instead).
    with pytest.raises(InputError, match="the R-MAC region whitening differs from the one the index was extracted"):
        extractor_for_store({**store.config, "rmac_whitening_digest": "0" * 16}, "random")
    rc, _, stderr = dasr_cli("whiten-rmac", tmp_path / "nowhere", *FAST, "--out", tmp_path / "n.npz")
    assert rc == 2 and stderr.count("\n") == 1 and "not a folder of images" in stderr
