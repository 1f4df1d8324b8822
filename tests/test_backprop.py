"""Probability backprop against an independent float64 dense-matrix reference."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from dasr.backprop import (ProbabilityBackprop, UnsupportedLayerError, resolve_dtype, seed_probabilities,
                           trace_graph)

OFFSET = (10.0, 20.0, 30.0)


def tiny_net(seed: int = 0) -> keras.Model:
    """Every supported layer type: padded/strided conv, BN, ReLU, max/avg pooling, 1x1 stride-2
    conv, a conv with its own ReLU, residual Add, ZeroPadding2D."""
    keras.utils.set_random_seed(seed)
    x = keras.Input((16, 16, 3), name="image")
    h = keras.layers.ZeroPadding2D(1, name="pad1")(x)
    h = keras.layers.Conv2D(4, 3, strides=2, name="c1")(h)
    h = keras.layers.BatchNormalization(name="bn1")(h)
    h = keras.layers.ReLU(name="relu1")(h)
    h = keras.layers.MaxPooling2D(2, strides=1, padding="same", name="p1")(h)
    a = keras.layers.Conv2D(6, 1, strides=2, name="ca")(h)
    a = keras.layers.BatchNormalization(name="bna")(a)
    b = keras.layers.Conv2D(5, 3, padding="same", activation="relu", name="cb1")(h)
    b = keras.layers.AveragePooling2D(2, strides=2, name="cb2")(b)
    b = keras.layers.Conv2D(6, 1, name="cb3")(b)
    b = keras.layers.BatchNormalization(name="bnb")(b)
    h = keras.layers.Add(name="add")([a, b])
    h = keras.layers.Activation("relu", name="top")(h)
    model = keras.Model(x, h)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            # one negative gamma: folding must flip that channel's weight signs
            layer.set_weights([np.r_[-0.5, rng.uniform(0.5, 2, c - 1)], rng.normal(0, 0.1, c),
                               rng.normal(0, 0.1, c), rng.uniform(0.5, 2, c)])
    return model


# --------------------------------------------------------------------------- reference
def conv_np(x, k, stride, padding):
    """Naive float64 convolution, TensorFlow's padding semantics. x (H,W,C), k (kh,kw,C,O)."""
    h, w, _ = x.shape
    kh, kw, _, o = k.shape
    if padding == "SAME":
        oh, ow = -(-h // stride), -(-w // stride)
        ph = max((oh - 1) * stride + kh - h, 0)
        pw = max((ow - 1) * stride + kw - w, 0)
        x = np.pad(x, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    else:
        oh, ow = (h - kh) // stride + 1, (w - kw) // stride + 1
    out = np.zeros((oh, ow, o))
    for i in range(oh):
        for j in range(ow):
            patch = x[i * stride:i * stride + kh, j * stride:j * stride + kw, :]
            out[i, j] = np.tensordot(patch, k, axes=([0, 1, 2], [0, 1, 2]))
    return out


def sum_pool_np(x, size, stride, padding):
    """All-ones window per channel (the paper's pooling rule)."""
    c = x.shape[-1]
    k = np.zeros((size, size, c, c))
    for ch in range(c):
        k[:, :, ch, ch] = 1.0
    return conv_np(x, k, stride, padding)


def dense(fn, in_shape):
    """The matrix of a linear function, column by column."""
    n = int(np.prod(in_shape))
    cols = [fn(np.eye(n)[i].reshape(in_shape)).ravel() for i in range(n)]
    return np.stack(cols, 1)


def rule(a, L, p_out):
    """Eq. 2-3: P(A) = A ⊙ L⁺ᵀ(P(B) ⊘ L⁺A), 0 where L⁺A = 0."""
    z = L @ a.ravel()
    y = np.divide(p_out.ravel(), z, out=np.zeros_like(z), where=z != 0)
    return (a.ravel() * (L.T @ y)).reshape(a.shape)


def folded(model, conv, bn):
    k = model.get_layer(conv).kernel.numpy().astype(np.float64)
    if bn is None:
        return np.maximum(k, 0)
    layer = model.get_layer(bn)
    g, _, _, v = (w.astype(np.float64) for w in layer.get_weights())
    return np.maximum(k * (g / np.sqrt(v + layer.epsilon)), 0)


def reference_maps(model, image, seeds):
    """The whole backprop of ``tiny_net`` in float64 with dense matrices; also the mass per stage."""
    names = ["pad1", "relu1", "p1", "bna", "cb1", "cb2", "bnb", "top"]
    acts = keras.Model(model.input, [model.get_layer(n).output for n in names])(image[None])
    acts = {n: np.asarray(a[0], np.float64) for n, a in zip(names, acts)}
    top = acts["top"]
    maps, masses = [], []
    for r, c in seeds:
        p = np.zeros_like(top)
        p[r, c] = top[r, c]
        stage = [p.sum()]
        # Add: split by positive contributions
        a_pos, b_pos = np.maximum(acts["bna"], 0), np.maximum(acts["bnb"], 0)
        tot = a_pos + b_pos
        pa = np.divide(p * a_pos, tot, out=np.zeros_like(p), where=tot > 0)
        pb = np.divide(p * b_pos, tot, out=np.zeros_like(p), where=tot > 0)
        stage.append(pa.sum() + pb.sum())
        # branch b: cb3(+bnb) 1x1 -> avgpool -> cb1(relu) 3x3 same
        k3 = folded(model, "cb3", "bnb")
        L = dense(lambda t: conv_np(t, k3, 1, "VALID"), acts["cb2"].shape)
        pb = rule(acts["cb2"], L, pb)
        L = dense(lambda t: sum_pool_np(t, 2, 2, "VALID"), acts["cb1"].shape)
        pb = rule(acts["cb1"], L, pb)
        k1 = folded(model, "cb1", None)
        L = dense(lambda t: conv_np(t, k1, 1, "SAME"), acts["p1"].shape)
        pb = rule(acts["p1"], L, pb)
        # branch a: 1x1 stride 2 conv as an all-ones 2x2 window then the 1x1 conv
        ka = folded(model, "ca", "bna")
        L = dense(lambda t: conv_np(sum_pool_np(t, 2, 2, "SAME"), ka, 1, "VALID"), acts["p1"].shape)
        pa = rule(acts["p1"], L, pa)
        p = pa + pb
        stage.append(p.sum())
        # max pooling as an all-ones window
        L = dense(lambda t: sum_pool_np(t, 2, 1, "SAME"), acts["relu1"].shape)
        p = rule(acts["relu1"], L, p)
        stage.append(p.sum())
        # c1(+bn1) on the padded RAW image (input rule "raw"), then crop the padding
        kc = folded(model, "c1", "bn1")
        raw = np.pad(image.astype(np.float64) + np.asarray(OFFSET), ((1, 1), (1, 1), (0, 0)))
        L = dense(lambda t: conv_np(t, kc, 2, "VALID"), raw.shape)
        p = rule(raw, L, p)[1:-1, 1:-1, :]
        stage.append(p.sum())
        maps.append(p.sum(-1))
        masses.append(stage)
    return np.stack(maps), np.asarray(masses)


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
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * want.max())
    # mass is conserved stage by stage in the reference ...
    np.testing.assert_allclose(masses, masses[:, :1] * np.ones_like(masses), rtol=1e-9)
    # ... and end to end in the TensorFlow implementation
    np.testing.assert_allclose(got.sum((1, 2)), masses[:, 0], rtol=1e-5)
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
    from dasr.backbone import build_backbone

    bb = build_backbone(name, weights=None)
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
    model, image = net_and_image
    out = {}
    for dtype in ("float32", "bfloat16"):
        bp = ProbabilityBackprop(model, "top", input_offset=OFFSET, dtype=dtype)
        acts = bp.forward(image[None])
        out[dtype] = np.asarray(bp.backprop(bp.prepare(acts), seed_probabilities(acts["top"], [[2, 2]])))[0]
    a, b = out["float32"] / out["float32"].max(), out["bfloat16"] / out["bfloat16"].max()
    assert np.abs(a - b).max() < 0.05
    assert resolve_dtype("float32") == "float32"
    assert resolve_dtype("auto") in ("float32", "bfloat16")


def test_seed_probabilities_one_hot():
    top = tf.constant(np.arange(2 * 3 * 2, dtype=np.float32).reshape(1, 2, 3, 2))
    p = np.asarray(seed_probabilities(top, np.array([[1, 2]])))
    assert p.shape == (1, 2, 3, 2)
    np.testing.assert_array_equal(p[0, 1, 2], [10, 11])
    assert p.sum() == 21
