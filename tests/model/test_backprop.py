"""Probability backprop against an independent float64 dense-matrix reference."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from backprop_reference import OFFSET, VARIANT_CASES, backprop_maps, reference_maps, tiny_net
from conftest import skip_without_bf16
from tolerances import backprop_bound
from dasr.model.backprop import ProbabilityBackprop
from dasr.model.chunks import seed_probabilities
from dasr.model.graph import UnsupportedLayerError, trace_graph

@pytest.fixture(scope="module")
def net_and_image():
    model = tiny_net()
    image = np.random.default_rng(1).uniform(-10, 200, (16, 16, 3)).astype(np.float32)
    return model, image


def test_matches_float64_reference(net_and_image):
    model, image = net_and_image
    bp = ProbabilityBackprop(model, "top", input_offset=OFFSET, dtype="float32")
    acts = bp.forward(image[None])
    seeds = np.array([[0, 0], [1, 2], [3, 3], [2, 1]])
    got = np.asarray(bp.backprop(bp.prepare(acts), seed_probabilities(acts["top"], seeds)))
    want, masses = reference_maps(model, image, seeds)
    assert got.shape == want.shape == (4, 16, 16)
    bound = backprop_bound("float32")  # nonnegative sums: value by value
    np.testing.assert_allclose(got, want, rtol=bound, atol=1e-6 * want.max())
    # mass is conserved stage by stage in the reference ...
    np.testing.assert_allclose(masses, masses[:, :1] * np.ones_like(masses), rtol=1e-9)
    # ... and end to end in the TensorFlow implementation
    np.testing.assert_allclose(got.sum((1, 2)), masses[:, 0], rtol=bound)
    assert got.min() >= 0


def test_seeds_together_equal_seeds_alone(net_and_image):
    model, image = net_and_image
    bp = ProbabilityBackprop(model, "top", input_offset=OFFSET)
    acts = bp.forward(image[None])
    state = bp.prepare(acts)
    seeds = np.array([[0, 1], [3, 0], [2, 2]])
    together = np.asarray(bp.backprop(state, seed_probabilities(acts["top"], seeds)))
    alone = np.concatenate([np.asarray(bp.backprop(state, seed_probabilities(acts["top"], s[None])))
                            for s in seeds])
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-7 * alone.max())


def test_one_conv_by_hand():
    """A 1-channel 1x2 input, a 1x2 kernel [1, -1] (negative weight ignored), one output."""
    x = keras.Input((1, 2, 1))
    conv = keras.layers.Conv2D(1, (1, 2), use_bias=False, name="conv")
    model = keras.Model(x, conv(x))
    conv.set_weights([np.array([[[[2.0]], [[-1.0]]]])])  # (1, 2, 1, 1)
    bp = ProbabilityBackprop(model, "conv", dtype="float32")
    image = np.array([[[[3.0], [5.0]]]], np.float32)
    acts = bp.forward(image)
    top = np.array([[[[7.0]]]], np.float32)  # P(B) given directly
    got = np.asarray(bp.backprop(bp.prepare(acts), top))
    # W⁺ = [2, 0]; Z = 2*3 = 6; P(A) = A * W⁺ * P/Z = [3*2*7/6, 0]
    np.testing.assert_allclose(got, [[[7.0, 0.0]]], rtol=1e-6)


def test_strided_exact_rule_leaves_gaps_window_does_not():
    x = keras.Input((8, 8, 2))
    conv = keras.layers.Conv2D(2, 1, strides=2, use_bias=False, name="down")
    model = keras.Model(x, keras.layers.ReLU(name="top")(conv(x)))
    conv.set_weights([np.abs(np.random.default_rng(0).normal(size=(1, 1, 2, 2))).astype(np.float32)])
    image = np.random.default_rng(1).uniform(1, 2, (1, 8, 8, 2)).astype(np.float32)
    maps = {}
    for rule_name in ("exact", "window"):
        bp = ProbabilityBackprop(model, "top", strided_conv=rule_name)
        acts = bp.forward(image)
        maps[rule_name] = np.asarray(bp.backprop(bp.prepare(acts), seed_probabilities(acts["top"], [[1, 1]])))[0]
    assert np.count_nonzero(maps["exact"]) == 1  # only the sampled pixel (2, 2)
    assert np.count_nonzero(maps["window"]) == 4  # the whole 2x2 window
    np.testing.assert_allclose(maps["exact"].sum(), maps["window"].sum(), rtol=1e-6)


def test_unsupported_layer_is_named():
    x = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(2, 3, name="c")(x)
    h = keras.layers.Activation("sigmoid", name="squash")(h)
    model = keras.Model(x, h)
    with pytest.raises(UnsupportedLayerError, match="squash"):
        trace_graph(model, "squash")
    h2 = keras.layers.DepthwiseConv2D(3, name="dw")(x)
    with pytest.raises(UnsupportedLayerError, match="dw"):
        trace_graph(keras.Model(x, h2), "dw")


def test_stop_stride_keeps_mass_and_names_options(net_and_image):
    model, image = net_and_image
    bp = ProbabilityBackprop(model, "top", input_offset=OFFSET, stop_stride=2)
    assert bp.map_stride == 2
    acts = bp.forward(image[None])
    top = seed_probabilities(acts["top"], [[1, 1], [2, 3]])
    maps = np.asarray(bp.backprop(bp.prepare(acts), top))
    assert maps.shape == (2, 8, 8)
    np.testing.assert_allclose(maps.sum((1, 2)), np.asarray(top).sum((1, 2, 3)), rtol=1e-5)
    with pytest.raises(ValueError, match="possible stop strides"):
        ProbabilityBackprop(model, "top", stop_stride=3)


@pytest.mark.parametrize("name", ["resnet50", "vgg16"])
def test_real_architectures_trace_and_conserve_mass(name):
    """ResNet-50 and VGG-16 (random weights: the architecture is what is tested)."""
    from dasr.model.backbone import build_backbone

    bb = build_backbone(name, weights="random")
    bp = ProbabilityBackprop(bb.model, bb.top_layer, input_offset=(103.939, 116.779, 123.68), dtype="float32")
    image = np.random.default_rng(0).uniform(-120, 130, (1, 64, 96, 3)).astype(np.float32)
    acts = bp.forward(image)
    top = acts[bb.top_layer]
    assert top.shape[1:3] == (2, 3)
    seeds = np.array([[0, 0], [1, 2]])
    p_top = seed_probabilities(top, seeds)
    maps = np.asarray(bp.backprop(bp.prepare(acts), p_top))
    assert maps.shape == (2, 64, 96)
    assert maps.min() >= 0
    mass = np.asarray(p_top).sum((1, 2, 3))
    np.testing.assert_allclose(maps.sum((1, 2)), mass, rtol=1e-3)


def test_bfloat16_close_to_float32(net_and_image):
    skip_without_bf16()
    model, image = net_and_image
    out = {}
    for dtype in ("float32", "bfloat16"):
        bp = ProbabilityBackprop(model, "top", input_offset=OFFSET, dtype=dtype)
        acts = bp.forward(image[None])
        out[dtype] = np.asarray(bp.backprop(bp.prepare(acts), seed_probabilities(acts["top"], [[2, 2]])))[0]
    a, b = out["float32"] / out["float32"].max(), out["bfloat16"] / out["bfloat16"].max()
    assert np.abs(a - b).max() < 0.05


def test_seed_probabilities_one_hot():
    top = tf.constant(np.arange(2 * 3 * 2, dtype=np.float32).reshape(1, 2, 3, 2))
    p = np.asarray(seed_probabilities(top, np.array([[1, 2]])))
    assert p.shape == (1, 2, 3, 2)
    np.testing.assert_array_equal(p[0, 1, 2], [10, 11])
    assert p.sum() == 21


@pytest.mark.parametrize("case", sorted(VARIANT_CASES))
def test_add_and_maxpool_variants_match_float64_reference(net_and_image, case):
    """Each silent choice of the paper rule against its own dense float64 reference; they differ
    from the default, and only the copy changes the mass (it doubles it at the Add)."""
    model, image = net_and_image
    seeds = np.array([[0, 0], [1, 2], [3, 3], [2, 1]])
    got = backprop_maps(model, image, seeds, cases=(case, "float32"))
    want, masses = reference_maps(model, image, seeds, **VARIANT_CASES[case])
    scale = np.abs(want).max()
    np.testing.assert_allclose(got[case], want, rtol=backprop_bound("float32"), atol=1e-5 * scale)
    assert np.abs(got[case] - got["float32"]).max() > 0.01 * scale
    np.testing.assert_allclose(got[case].sum((1, 2)), masses[:, -1], rtol=1e-4)
    factor = 2.0 if case == "add_copy" else 1.0
    np.testing.assert_allclose(masses[:, 1], factor * masses[:, 0], rtol=1e-9)
