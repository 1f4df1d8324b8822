"""The authors' rule (``rule="authors"``, PRM's peak backprop) against an independent float64 reference."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from backprop_reference import AUTHORS_CASES, authors_reference_maps, backprop_maps, tiny_image, tiny_net
from dasr.model.backprop import ProbabilityBackprop
from dasr.model.chunks import seed_probabilities
from dasr.model.graph import trace_graph

SEEDS = np.array([[0, 0], [1, 2], [3, 3], [2, 1]])


@pytest.fixture(scope="module")
def net():
    return tiny_net()


@pytest.mark.parametrize("case,strided", [("authors", "window"), ("authors_exact", "exact")])
def test_matches_float64_reference(net, case, strided):
    image = tiny_image()
    got = backprop_maps(net, image, SEEDS, cases=(case,))[case]
    want = authors_reference_maps(net, image, SEEDS, strided)
    assert got.shape == want.shape == (4, 16, 16)
    assert want.max() > 0 and 0 < (want > 0).mean() < 1  # a real map, partly clamped at 0
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * want.max())


def test_differs_from_paper_rule(net):
    """Not the paper's rule under another name: the maps differ."""
    maps = backprop_maps(net, tiny_image(), SEEDS, cases=("float32", "authors"))
    a = maps["authors"] / maps["authors"].max()
    p = maps["float32"] / maps["float32"].max()
    assert np.abs(a - p).max() > 0.1


def test_one_conv_by_hand():
    """Input [3, 5, 4], kernel [2, -1 -> 0 ... ] : the input is shifted by its minimum 3."""
    x = keras.Input((1, 3, 1))
    conv = keras.layers.Conv2D(1, (1, 2), use_bias=False, name="conv")
    model = keras.Model(x, conv(x))
    conv.set_weights([np.array([[[[2.0]], [[1.0]]]])])
    bp = ProbabilityBackprop(model, "conv", dtype="float32", rule="authors")
    acts = bp.forward(np.array([[[[3.0], [5.0], [4.0]]]], np.float32))
    got = np.asarray(bp.backprop(bp.prepare(acts), np.array([[[[7.0], [10.0]]]], np.float32)))
    # A - min = [0, 2, 1]; Z = [2*0 + 1*2, 2*2 + 1*1] = [2, 5]; y = [3.5, 2]
    # Wᵀy = [2*3.5, 1*3.5 + 2*2, 1*2] = [7, 7.5, 2]; times (A - min): [0, 15, 2]
    np.testing.assert_allclose(got, [[[0.0, 15.0, 2.0]]], rtol=1e-6)


def test_bn_sign_and_relu_mask_by_hand():
    """BN multiplies by its signed scale, a ReLU by its mask, the map is clamped at 0."""
    x = keras.Input((1, 2, 1))
    conv = keras.layers.Conv2D(2, 1, use_bias=False, name="conv")
    bn = keras.layers.BatchNormalization(epsilon=0.0, name="bn")
    h = bn(conv(x))
    model = keras.Model(x, keras.layers.ReLU(name="top")(h))
    conv.set_weights([np.array([[[[1.0, 1.0]]]])])
    bn.set_weights([np.array([-2.0, 1.0]), np.zeros(2), np.zeros(2), np.ones(2)])  # scale -2 and 1
    bp = ProbabilityBackprop(model, "top", dtype="float32", rule="authors")
    acts = bp.forward(np.array([[[[-1.0], [1.0]]]], np.float32))
    # forward: conv = [-1, 1] on both channels; BN: ch0 [2, -2], ch1 [-1, 1]; ReLU masks ch0 [1, 0], ch1 [0, 1]
    top = np.ones((1, 1, 2, 2), np.float32)
    got = np.asarray(bp.backprop(bp.prepare(acts), top))
    # after mask and BN: at col 0 g = [-2, 0], at col 1 g = [0, 1]; conv: A - min = [0, 2], Z = A - min
    # col 0: y = -2 / 0 -> 0 (Z < eps); col 1: y = 1/2 -> back 1/2 * (A - min) = 1 at col 1
    np.testing.assert_allclose(got, [[[0.0, 1.0]]], rtol=1e-6)
    acts = bp.forward(np.array([[[[1.0], [-1.0]]]], np.float32))
    # conv [1, -1]; BN ch0 [-2, 2] mask [0, 1]; ch1 [1, -1] mask [1, 0]; g col0 = [0, 1], col1 = [-2, 0]
    # A - min = [2, 0]: col 0 gets 1/2 * 2 = 1; col 1 has Z = 0 -> 0
    np.testing.assert_allclose(np.asarray(bp.backprop(bp.prepare(acts), top)), [[[1.0, 0.0]]], rtol=1e-6)


def test_negative_total_is_clamped():
    """A negative BN scale on the only path makes the whole map negative: clamped to 0."""
    x = keras.Input((1, 2, 1))
    conv = keras.layers.Conv2D(1, 1, use_bias=False, name="conv")
    bn = keras.layers.BatchNormalization(epsilon=0.0, name="top")
    model = keras.Model(x, bn(conv(x)))
    conv.set_weights([np.array([[[[1.0]]]])])
    bn.set_weights([np.array([-1.0]), np.zeros(1), np.zeros(1), np.ones(1)])
    bp = ProbabilityBackprop(model, "top", dtype="float32", rule="authors")
    acts = bp.forward(np.array([[[[1.0], [3.0]]]], np.float32))
    got = np.asarray(bp.backprop(bp.prepare(acts), np.ones((1, 1, 2, 1), np.float32)))
    np.testing.assert_array_equal(got, np.zeros((1, 1, 2), np.float32))


def test_add_copies_and_max_pool_routes():
    """Add: both branches get the full signal; max pooling: only the window's maximum."""
    x = keras.Input((1, 2, 1))
    pooled = keras.layers.MaxPooling2D((1, 2), name="pool")(x)
    model = keras.Model(x, keras.layers.Add(name="top")([pooled, pooled]))
    ops, _ = trace_graph(model, "top", rule="authors")
    assert [op.kind for op in ops] == ["maxpool", "add"]
    bp = ProbabilityBackprop(model, "top", dtype="float32", rule="authors")
    acts = bp.forward(np.array([[[[2.0], [5.0]]]], np.float32))
    got = np.asarray(bp.backprop(bp.prepare(acts), np.full((1, 1, 1, 1), 3.0, np.float32)))
    np.testing.assert_allclose(got, [[[0.0, 6.0]]])  # 3 + 3 (both branches), all to the maximum


def test_seed_is_one_over_c_on_every_channel():
    top = np.arange(2 * 3 * 4, dtype=np.float32).reshape(1, 2, 3, 4)
    p = np.asarray(seed_probabilities(top, np.array([[1, 2], [0, 0]]), rule="authors"))
    assert p.shape == (2, 2, 3, 4)
    np.testing.assert_allclose(p[0, 1, 2], [0.25] * 4)
    np.testing.assert_allclose(p[1, 0, 0], [0.25] * 4)
    assert p[0].sum() == pytest.approx(1.0) and p[1].sum() == pytest.approx(1.0)


@pytest.mark.parametrize("name,kinds", [("resnet50", {"conv", "scale", "relu", "maxpool", "add", "pad"}),
                                        ("vgg16", {"conv", "maxpool"})])
def test_real_architecture_traces(name, kinds):
    """ResNet-50 and VGG-16 (random weights): every layer is handled; maps are non-negative and not empty."""
    from dasr.model.backbone import build_backbone

    bb = build_backbone(name, weights="random")
    bp = ProbabilityBackprop(bb.model, bb.top_layer, dtype="float32", rule="authors")
    assert kinds <= {op.kind for op in bp.ops} and "posscale" not in {op.kind for op in bp.ops}
    assert name == "resnet50" or all(op.relu for op in bp.ops if op.kind == "conv")  # VGG: ReLU inside the conv
    image = np.random.default_rng(0).uniform(-120, 130, (1, 64, 96, 3)).astype(np.float32)
    acts = bp.forward(image)
    maps = np.asarray(bp.backprop(bp.prepare(acts), seed_probabilities(acts[bb.top_layer], [[0, 0], [1, 2]], "authors")))
    assert maps.shape == (2, 64, 96) and maps.min() >= 0 and (maps.reshape(2, -1).max(1) > 0).all()


def test_unknown_rule_is_refused(net):
    with pytest.raises(ValueError, match="rule must be one of"):
        trace_graph(net, "top", rule="guess")


def test_authors_cases_cover_both_strided_rules():
    assert {c.get("strided_conv", "window") for c in AUTHORS_CASES.values()} == {"window", "exact"}
