"""Contrastive excitation backprop (dasr.model.contrast) against float64 references and by hand."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from backprop_reference import (CONTRASTIVE_CASES, backprop_maps, contrastive_reference_maps, dense,
                                conv_np, rule, tiny_image, tiny_net)
from dasr.model.backprop import ProbabilityBackprop
from dasr.model.chunks import seed_probabilities

SEEDS = np.array([[0, 0], [1, 2], [3, 3], [2, 1]])


@pytest.fixture(scope="module")
def tiny():
    return tiny_net(), tiny_image()


@pytest.mark.parametrize("case", list(CONTRASTIVE_CASES))
def test_matches_float64_reference(tiny, case):
    """The single signed pass equals the seed's map minus the dual's, each taken down on its own;
    the tiny net's top is an Add of TWO convolutions, both negated under one normaliser."""
    model, image = tiny
    level = "relu1" if CONTRASTIVE_CASES[case].get("stop_stride") == 2 else "pixels"
    got = backprop_maps(model, image, SEEDS, cases=(case,))[case]
    want, primal, dual = contrastive_reference_maps(model, image, SEEDS, level)
    assert got.shape == want.shape == ((4, 16, 16) if level == "pixels" else (4, 8, 8))
    # the reference is not degenerate: the dual carries the seed's mass (less where its normaliser
    # is 0 on a channel of the seed), and the contrast is neither the seed's map nor zero
    assert np.all(dual.sum((1, 2)) <= primal.sum((1, 2)) * (1 + 1e-9))
    assert np.isclose(dual.sum((1, 2)), primal.sum((1, 2)), rtol=1e-9).sum() >= 2
    assert np.abs(want - primal).max() > 0.1 * primal.max() and want.max() > 0.1 * primal.max()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * want.max())


def test_off_is_the_paper_map(tiny):
    model, image = tiny
    on = backprop_maps(model, image, SEEDS, cases=("contrastive",))["contrastive"]
    off = backprop_maps(model, image, SEEDS, cases=("float32",))["float32"]
    assert not np.allclose(on, off)


def _one_conv(kernel: np.ndarray, width: int) -> keras.Model:
    x = keras.Input((1, width, kernel.shape[2]))
    conv = keras.layers.Conv2D(kernel.shape[3], kernel.shape[:2], use_bias=False, name="conv")
    model = keras.Model(x, conv(x))
    conv.set_weights([kernel.astype(np.float32)])
    return model


def _maps(model, image, top_probs, **kwargs):
    bp = ProbabilityBackprop(model, model.layers[-1].name, dtype="float32", contrastive=True, **kwargs)
    acts = bp.forward(image)
    return np.asarray(bp.backprop(bp.prepare(acts), np.asarray(top_probs, np.float32)))


def test_one_conv_by_hand():
    """A 1x2 kernel [2, -1] on pixels [3, 5], P = 7: the seed's W⁺ = [2, 0] puts 7 on pixel 0, the
    dual's W⁻ = [0, 1] puts 7 on pixel 1; the difference [7, -7] clamps to [7, 0]."""
    model = _one_conv(np.array([2.0, -1.0]).reshape(1, 2, 1, 1), 2)
    got = _maps(model, np.array([[[[3.0], [5.0]]]], np.float32), [[[[7.0]]]])
    np.testing.assert_allclose(got, [[[7.0, 0.0]]], rtol=1e-6)


def test_dual_equal_to_the_seed_cancels_by_hand():
    """Kernel [w, -w] over two channels of each pixel: W⁺ sends P to channel 0, W⁻ the same P to
    channel 1 of the same pixels, so the channel sums agree and the contrastive map is 0."""
    kernel = np.array([[1.5, -1.5], [0.5, -0.5]]).reshape(1, 2, 2, 1)  # (kh, kw, C_in, C_out)
    model = _one_conv(kernel, 2)
    image = np.array([[[[2.0, 2.0], [4.0, 4.0]]]], np.float32)  # the channels equal: W⁺A = W⁻A
    got = _maps(model, image, [[[[3.0]]]])
    np.testing.assert_allclose(got, 0.0, atol=1e-6)
    # the seed's map alone is not 0 (the cancellation is the dual's doing)
    bp = ProbabilityBackprop(model, "conv", dtype="float32")
    plain = np.asarray(bp.backprop(bp.prepare(bp.forward(image)), np.full((1, 1, 1, 1), 3.0, np.float32)))
    assert plain.max() > 1.0


def test_identity_shortcut_gets_nothing_from_the_dual():
    """ReLU(Add(conv3x3(x), x)), ResNet's top block in small: the dual negates the conv AND the
    identity, whose negation has no positive weight, so all of the dual's P goes through W⁻."""
    rng = np.random.default_rng(3)
    x = keras.Input((4, 4, 2), name="image")
    conv = keras.layers.Conv2D(2, 3, padding="same", use_bias=False, name="c")
    top = keras.layers.ReLU(name="top")(keras.layers.Add(name="add")([conv(x), x]))
    model = keras.Model(x, top)
    kernel = rng.normal(0, 1, (3, 3, 2, 2))
    conv.set_weights([kernel.astype(np.float32)])
    image = rng.uniform(0.5, 2.0, (1, 4, 4, 2)).astype(np.float32)
    bp = ProbabilityBackprop(model, "top", dtype="float32", contrastive=True)
    acts = bp.forward(image)
    seeds = np.argwhere(np.ones((4, 4)))  # every cell
    got = np.asarray(bp.backprop(bp.prepare(acts), seed_probabilities(acts["top"], seeds)))
    # float64 reference: the paper's Add split for the seed, one negated layer for the dual
    a = image[0].astype(np.float64)
    c = conv_np(a, kernel, 1, "SAME")
    out = np.maximum(c + a, 0)
    lpos = dense(lambda t: conv_np(t, np.maximum(kernel, 0), 1, "SAME"), a.shape)
    lneg = dense(lambda t: conv_np(t, np.maximum(-kernel, 0), 1, "SAME"), a.shape)
    tot = np.maximum(c, 0) + a
    want, wrong = [], []
    for r, q in seeds:
        p = np.zeros_like(out)
        p[r, q] = out[r, q]
        primal = rule(a, lpos, p * np.maximum(c, 0) / tot) + p * a / tot
        want.append(np.maximum((primal - rule(a, lneg, p)).sum(-1), 0))
        # wrong: the dual keeps the seed's Add split (its shortcut share as a positive identity)
        dual = rule(a, lneg, p * np.maximum(c, 0) / tot) + p * a / tot
        wrong.append(np.maximum((primal - dual).sum(-1), 0))
    want, wrong = np.stack(want), np.stack(wrong)
    assert np.abs(want - wrong).max() > 0.1 * want.max()  # the test tells the two apart
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * want.max())


def test_refusals_name_the_reason(tiny):
    model, _ = tiny
    with pytest.raises(ValueError, match="paper's rule only"):
        ProbabilityBackprop(model, "top", rule="authors", contrastive=True)
    with pytest.raises(ValueError, match="stops above"):
        ProbabilityBackprop(model, "top", stop_stride=4, contrastive=True)
    x = keras.Input((8, 8, 3))
    pooled = keras.layers.MaxPooling2D(2, name="top")(x)
    with pytest.raises(ValueError, match="no convolution"):
        ProbabilityBackprop(keras.Model(x, pooled), "top", contrastive=True)


@pytest.mark.parametrize("name", ["resnet50", "vgg16"])
def test_real_architectures(name):
    """ResNet-50 (the top Add with its identity shortcut) and VGG-16 (block5_conv3 below
    block5_pool), random weights: the contrast runs, clamps, differs from the paper's map and
    composes with stop_stride 16."""
    from dasr.model.backbone import build_backbone

    bb = build_backbone(name, weights="random")
    image = np.random.default_rng(0).uniform(-120, 130, (1, 64, 96, 3)).astype(np.float32)
    maps = {}
    for key, kwargs in {"paper": {}, "contrastive": {"contrastive": True},
                        "stop16": {"contrastive": True, "stop_stride": 16}}.items():
        bp = ProbabilityBackprop(bb.model, bb.top_layer, input_offset=(103.939, 116.779, 123.68), dtype="float32",
                                 **kwargs)
        acts = bp.forward(image)
        maps[key] = np.asarray(bp.backprop(bp.prepare(acts), seed_probabilities(acts[bb.top_layer], [[0, 0], [1, 2]])))
    assert maps["contrastive"].shape == (2, 64, 96) and maps["stop16"].shape == (2, 4, 6)
    assert maps["contrastive"].min() >= 0 and maps["contrastive"].max() > 0
    assert maps["contrastive"].sum() < maps["paper"].sum()  # the dual's mass was taken off
    assert maps["stop16"].min() >= 0 and maps["stop16"].max() > 0
