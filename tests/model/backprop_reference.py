"""The tiny test network of the backprop tests and its float64 dense-matrix reference backprop.

Shared by tests/model/test_backprop.py, test_backprop_fixture.py, test_backprop_jax.py and
the JAX child process (backprop_child.py), which imports it from this folder.
"""

from __future__ import annotations

import keras
import numpy as np

OFFSET = (10.0, 20.0, 30.0)


def tiny_net(seed: int = 0, kernel_initializer: str = "glorot_uniform") -> keras.Model:
    """Every supported layer type: padded/strided conv, BN, ReLU, max/avg pooling, 1x1 stride-2
    conv, a conv with its own ReLU, residual Add, ZeroPadding2D.

    ``kernel_initializer="zeros"`` builds the architecture only (weights set afterwards): JAX
    compiles every random initializer call, seconds each on a loaded CPU.
    """
    keras.utils.set_random_seed(seed)
    init = {"kernel_initializer": kernel_initializer}
    x = keras.Input((16, 16, 3), name="image")
    h = keras.layers.ZeroPadding2D(1, name="pad1")(x)
    h = keras.layers.Conv2D(4, 3, strides=2, name="c1", **init)(h)
    h = keras.layers.BatchNormalization(name="bn1")(h)
    h = keras.layers.ReLU(name="relu1")(h)
    h = keras.layers.MaxPooling2D(2, strides=1, padding="same", name="p1")(h)
    a = keras.layers.Conv2D(6, 1, strides=2, name="ca", **init)(h)
    a = keras.layers.BatchNormalization(name="bna")(a)
    b = keras.layers.Conv2D(5, 3, padding="same", activation="relu", name="cb1", **init)(h)
    b = keras.layers.AveragePooling2D(2, strides=2, name="cb2")(b)
    b = keras.layers.Conv2D(6, 1, name="cb3", **init)(b)
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
    """Naive float64 convolution, TensorFlow's padding semantics. x (..., H, W, C), k (kh, kw, C, O)."""
    h, w, _ = x.shape[-3:]
    kh, kw, _, o = k.shape
    if padding == "SAME":
        oh, ow = -(-h // stride), -(-w // stride)
        ph = max((oh - 1) * stride + kh - h, 0)
        pw = max((ow - 1) * stride + kw - w, 0)
        x = np.pad(x, ((0, 0),) * (x.ndim - 3) + ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    else:
        oh, ow = (h - kh) // stride + 1, (w - kw) // stride + 1
    out = np.zeros((*x.shape[:-3], oh, ow, o))
    for i in range(oh):
        for j in range(ow):
            patch = x[..., i * stride:i * stride + kh, j * stride:j * stride + kw, :]
            out[..., i, j, :] = np.tensordot(patch, k, axes=([-3, -2, -1], [0, 1, 2]))
    return out


def sum_pool_np(x, size, stride, padding):
    """All-ones window per channel (the paper's pooling rule)."""
    c = x.shape[-1]
    k = np.zeros((size, size, c, c))
    for ch in range(c):
        k[:, :, ch, ch] = 1.0
    return conv_np(x, k, stride, padding)


def dense(fn, in_shape):
    """The matrix of a linear function: its columns are the images of the unit vectors
    (``fn`` maps a batch of inputs (n, *in_shape) at once)."""
    n = int(np.prod(in_shape))
    return fn(np.eye(n).reshape(n, *in_shape)).reshape(n, -1).T


def rule(a, L, p_out):
    """Eq. 2-3: P(A) = A ⊙ L⁺ᵀ(P(B) ⊘ L⁺A), 0 where L⁺A = 0."""
    z = L @ a.ravel()
    y = np.divide(p_out.ravel(), z, out=np.zeros_like(z), where=z != 0)
    return (a.ravel() * (L.T @ y)).reshape(a.shape)


def folded(model, conv, bn, sign=1.0):
    """The positive part of ``sign`` x the conv's kernel with its BN scale folded in (-1: the negated map's)."""
    k = sign * model.get_layer(conv).kernel.numpy().astype(np.float64)
    if bn is None:
        return np.maximum(k, 0)
    layer = model.get_layer(bn)
    g, _, _, v = (w.astype(np.float64) for w in layer.get_weights())
    return np.maximum(k * (g / np.sqrt(v + layer.epsilon)), 0)


REFERENCE_LAYERS = ["pad1", "relu1", "p1", "bna", "cb1", "cb2", "bnb", "top"]


def reference_activations(model, image) -> dict:
    """The tiny net's activations the reference needs, float64, batch axis dropped."""
    acts = keras.Model(model.input, [model.get_layer(n).output for n in REFERENCE_LAYERS])(image[None])
    return {n: np.asarray(a[0], np.float64) for n, a in zip(REFERENCE_LAYERS, acts)}


def cb2_to_p1(model, acts, pb):
    """Branch b below cb3: the average pooling (an all-ones window), then cb1 (3x3 same, its own ReLU)."""
    L = dense(lambda t: sum_pool_np(t, 2, 2, "VALID"), acts["cb1"].shape)
    pb = rule(acts["cb1"], L, pb)
    k1 = folded(model, "cb1", None)
    L = dense(lambda t: conv_np(t, k1, 1, "SAME"), acts["p1"].shape)
    return rule(acts["p1"], L, pb)


def p1_to_relu1(acts, p, maxpool_rule="window"):
    """Max pooling p1 (2x2, stride 1, same): as an all-ones window (``window``), or each output's
    P to its window's first maximum in row-major order (``winner``): P at relu1 (the stride-2 stop)."""
    if maxpool_rule == "window":
        L = dense(lambda t: sum_pool_np(t, 2, 1, "SAME"), acts["relu1"].shape)
        return rule(acts["relu1"], L, p)
    a = acts["relu1"]
    h, w, _ = a.shape
    padded = np.pad(a, ((0, 1), (0, 1), (0, 0)), constant_values=-np.inf)  # 'same': bottom/right
    out = np.zeros_like(a)
    for i in range(h):
        for j in range(w):
            for ch in range(a.shape[2]):
                k = int(np.argmax(padded[i:i + 2, j:j + 2, ch].ravel()))
                out[i + k // 2, j + k % 2, ch] += p[i, j, ch]
    return out


def relu1_to_pixels(model, image, p):
    """c1(+bn1) on the padded RAW image (input rule "raw"), then crop the padding."""
    kc = folded(model, "c1", "bn1")
    raw = np.pad(image.astype(np.float64) + np.asarray(OFFSET), ((1, 1), (1, 1), (0, 0)))
    L = dense(lambda t: conv_np(t, kc, 2, "VALID"), raw.shape)
    return rule(raw, L, p)[1:-1, 1:-1, :]


def ca_matrix(model, acts, sign=1.0):
    """Branch a's 1x1 stride-2 conv as a 2x2 window, averaged (the scale of the one cell the conv
    samples: it matters where the dual sums both branches), then the 1x1 conv (``sign`` -1: negated)."""
    ka = folded(model, "ca", "bna", sign)
    return dense(lambda t: conv_np(sum_pool_np(t, 2, 2, "SAME") / 4.0, ka, 1, "VALID"), acts["p1"].shape)


def reference_maps(model, image, seeds, level="pixels", add_rule="positive-share", maxpool_rule="window"):
    """The whole backprop of ``tiny_net`` in float64 with dense matrices; also the mass per stage.

    ``level="relu1"``: stop at relu1 (the stride-2 stop), one value per 2 pixels.  ``add_rule``:
    the Add split by the branches' positive parts, by their signed shares of the sum
    (``input-share``) or copied into both (``copy``); ``maxpool_rule``: see :func:`p1_to_relu1`."""
    acts = reference_activations(model, image)
    top = acts["top"]
    maps, masses = [], []
    for r, c in seeds:
        p = np.zeros_like(top)
        p[r, c] = top[r, c]
        stage = [p.sum()]
        if add_rule == "copy":
            pa, pb = p.copy(), p.copy()
        else:  # split by the positive contributions, or by the signed ones
            a_in, b_in = acts["bna"], acts["bnb"]
            if add_rule == "positive-share":
                a_in, b_in = np.maximum(a_in, 0), np.maximum(b_in, 0)
            tot = a_in + b_in
            pa = np.divide(p * a_in, tot, out=np.zeros_like(p), where=tot != 0)
            pb = np.divide(p * b_in, tot, out=np.zeros_like(p), where=tot != 0)
        stage.append(pa.sum() + pb.sum())
        # branch b: cb3(+bnb) 1x1 -> avgpool -> cb1(relu) 3x3 same
        k3 = folded(model, "cb3", "bnb")
        L = dense(lambda t: conv_np(t, k3, 1, "VALID"), acts["cb2"].shape)
        pb = cb2_to_p1(model, acts, rule(acts["cb2"], L, pb))
        # branch a: 1x1 stride 2 conv as an all-ones 2x2 window then the 1x1 conv
        pa = rule(acts["p1"], ca_matrix(model, acts), pa)
        p = pa + pb
        stage.append(p.sum())
        p = p1_to_relu1(acts, p, maxpool_rule)
        stage.append(p.sum())
        if level == "pixels":
            p = relu1_to_pixels(model, image, p)
            stage.append(p.sum())
        maps.append(p.sum(-1))
        masses.append(stage)
    return np.stack(maps), np.asarray(masses)


# --------------------------------------------------------------------------- contrastive
def contrastive_reference_maps(model, image, seeds, level="pixels"):
    """The contrastive maps of ``tiny_net`` in float64: the seed's map minus its dual's, EACH taken
    down to ``level`` on its own (the implementation's single signed pass is not assumed), clamped at 0.

    The dual negates the top Add's two convolutions as one linear map: at their inputs
    P̄(A_k) = A_k ⊙ L⁻_kᵀ(P ⊘ Σ_j L⁻_j A_j), L⁻ the negated kernels' positive parts (BN folded).

    Returns:
      (contrastive maps, seed maps, dual maps), each (S, H, W)."""
    acts = reference_activations(model, image)
    primal, _ = reference_maps(model, image, seeds, level)
    l3 = dense(lambda t: conv_np(t, folded(model, "cb3", "bnb", -1.0), 1, "VALID"), acts["cb2"].shape)
    la = ca_matrix(model, acts, -1.0)
    z = l3 @ acts["cb2"].ravel() + la @ acts["p1"].ravel()
    duals = []
    for r, c in seeds:
        p = np.zeros_like(acts["top"])
        p[r, c] = acts["top"][r, c]
        y = np.divide(p.ravel(), z, out=np.zeros_like(z), where=z != 0)
        d_cb2 = (acts["cb2"].ravel() * (l3.T @ y)).reshape(acts["cb2"].shape)
        d_p1 = (acts["p1"].ravel() * (la.T @ y)).reshape(acts["p1"].shape)
        d = p1_to_relu1(acts, cb2_to_p1(model, acts, d_cb2) + d_p1)
        if level == "pixels":
            d = relu1_to_pixels(model, image, d)
        duals.append(d.sum(-1))
    dual = np.stack(duals)
    return np.maximum(primal - dual, 0), primal, dual


# --------------------------------------------------------------------------- the authors' rule
def bn_scale(model, bn):
    """A BatchNormalization's signed per-channel scale γ/sqrt(σ²+ε), float64."""
    layer = model.get_layer(bn)
    g, _, _, v = (w.astype(np.float64) for w in layer.get_weights())
    return g / np.sqrt(v + layer.epsilon)


def authors_rule(a, L, g):
    """PRM's conv: (A - min A) ⊙ L⁺ᵀ(g / (|L⁺(A - min A)| + 1e-10)), 0 where L⁺(A - min A) < 1e-10.

    ``a`` is already shifted by the caller (a padded input is shifted before its padding)."""
    z = L @ a.ravel()
    y = np.where(z < 1e-10, 0.0, g.ravel() / (np.abs(z) + 1e-10))
    return (a.ravel() * (L.T @ y)).reshape(a.shape)


def max_pool_routing(x, size, stride):
    """The Jacobian of a SAME max pooling (stride ``stride``) at ``x`` (h, w, c): each output to the
    first maximum of its window in row-major order (TensorFlow's tie rule)."""
    h, w, c = x.shape
    oh, ow = -(-h // stride), -(-w // stride)
    ph = max((oh - 1) * stride + size - h, 0) // 2
    pw = max((ow - 1) * stride + size - w, 0) // 2
    J = np.zeros((oh * ow * c, h * w * c))
    for i in range(oh):
        for j in range(ow):
            for ch in range(c):
                best, where = -np.inf, None
                for di in range(size):
                    for dj in range(size):
                        r, q = i * stride - ph + di, j * stride - pw + dj
                        if 0 <= r < h and 0 <= q < w and x[r, q, ch] > best:
                            best, where = x[r, q, ch], (r, q)
                J[(i * ow + j) * c + ch, (where[0] * w + where[1]) * c + ch] = 1.0
    return J


def authors_reference_maps(model, image, seeds, strided_conv="window"):
    """The authors' (PRM) backprop of ``tiny_net`` in float64 with dense matrices.

    Seeds are 1/C on every channel of their cell; convs use the raw kernels' positive part on
    their input shifted by its minimum; BN multiplies by its signed scale, ReLUs by their masks,
    max pooling routes to the maximum, average pooling spreads evenly, the Add copies; the map is
    the channel sum clamped at 0."""
    names = ["relu1", "p1", "bna", "cb1", "cb2", "top"]
    acts = keras.Model(model.input, [model.get_layer(n).output for n in names])(image[None])
    acts = {n: np.asarray(a[0], np.float64) for n, a in zip(names, acts)}
    top = acts["top"]

    def pos(name):
        return np.maximum(model.get_layer(name).kernel.numpy().astype(np.float64), 0)

    def shifted(a):
        return a - a.min()

    maps = []
    for r, c in seeds:
        g = np.zeros_like(top)
        g[r, c] = 1.0 / top.shape[-1]
        g = g * (top > 0)  # the top ReLU
        ga, gb = g.copy(), g.copy()  # the Add copies
        gb = gb * bn_scale(model, "bnb")
        a = shifted(acts["cb2"])
        gb = authors_rule(a, dense(lambda t: conv_np(t, pos("cb3"), 1, "VALID"), a.shape), gb)
        avg = dense(lambda t: sum_pool_np(t, 2, 2, "VALID") / 4.0, acts["cb1"].shape)
        gb = (avg.T @ gb.ravel()).reshape(acts["cb1"].shape) * (acts["cb1"] > 0)
        a = shifted(acts["p1"])
        gb = authors_rule(a, dense(lambda t: conv_np(t, pos("cb1"), 1, "SAME"), a.shape), gb)
        ga = ga * bn_scale(model, "bna")
        if strided_conv == "window":
            L = dense(lambda t: conv_np(sum_pool_np(t, 2, 2, "SAME"), pos("ca"), 1, "VALID"), a.shape)
        else:
            L = dense(lambda t: conv_np(t, pos("ca"), 2, "VALID"), a.shape)
        g = authors_rule(a, L, ga) + gb
        J = max_pool_routing(acts["relu1"], 2, 1)
        g = (J.T @ g.ravel()).reshape(acts["relu1"].shape) * (acts["relu1"] > 0)
        g = g * bn_scale(model, "bn1")
        a = np.pad(shifted(image.astype(np.float64)), ((1, 1), (1, 1), (0, 0)))
        g = authors_rule(a, dense(lambda t: conv_np(t, pos("c1"), 2, "VALID"), a.shape), g)[1:-1, 1:-1, :]
        maps.append(np.maximum(g.sum(-1), 0))
    return np.stack(maps)


# --------------------------------------------------------------------------- stored maps
# The configurations whose maps tests/model/data/backprop_maps.npz stores (made by
# make_backprop_fixture.py with the TensorFlow backprop): every kernel set and backend must
# reproduce them within the round-off bounds of tests/tolerances.py.
FIXTURE_CASES = {
    "float32": {},
    "stop2": {"stop_stride": 2},
    "exact": {"strided_conv": "exact"},
    "shift": {"input_rule": "shift"},
    "bfloat16": {"dtype": "bfloat16"},
}
FIXTURE_SEEDS = np.array([[0, 0], [1, 2], [3, 3], [2, 1]])


def tiny_image() -> np.ndarray:
    """The (16, 16, 3) float32 test image (a network input: values around the offset)."""
    return np.random.default_rng(1).uniform(-10, 200, (16, 16, 3)).astype(np.float32)


def tiny_net_with_weights(weights: list[np.ndarray]) -> keras.Model:
    """``tiny_net``'s architecture with given weights (its own initial ones differ per backend)."""
    model = tiny_net(kernel_initializer="zeros")
    model.set_weights(weights)
    return model


# The authors' rule, compared with :func:`authors_reference_maps` (not stored: no older maps exist).
AUTHORS_CASES = {
    "authors": {"rule": "authors", "strided_conv": "window"},
    "authors_exact": {"rule": "authors", "strided_conv": "exact"},
}
# The paper rule's residual-Add and max-pooling variants, compared with :func:`reference_maps`.
VARIANT_CASES = {
    "add_input_share": {"add_rule": "input-share"},
    "add_copy": {"add_rule": "copy"},
    "maxpool_winner": {"maxpool_rule": "winner"},
}
# Contrastive excitation backprop, compared with :func:`contrastive_reference_maps` (not stored either).
CONTRASTIVE_CASES = {
    "contrastive": {"contrastive": True},
    "contrastive_stop2": {"contrastive": True, "stop_stride": 2},
}


def backprop_maps(model: keras.Model, image: np.ndarray, seeds: np.ndarray,
                  cases: tuple[str, ...] = tuple(FIXTURE_CASES)) -> dict[str, np.ndarray]:
    """Maps of ``seeds`` (one chunk) for the configurations ``cases`` of :data:`FIXTURE_CASES`,
    :data:`AUTHORS_CASES` or :data:`CONTRASTIVE_CASES`; a bfloat16 case is left out where the
    backend has no bfloat16 convolution (:func:`dasr.model.device.bf16_unavailable`)."""
    from dasr.model.backprop import ProbabilityBackprop
    from dasr.model.chunks import seed_probabilities
    from dasr.model.device import bf16_unavailable

    out = {}
    for name in cases:
        kwargs = {**FIXTURE_CASES, **AUTHORS_CASES, **CONTRASTIVE_CASES, **VARIANT_CASES}[name]
        if kwargs.get("dtype") == "bfloat16" and bf16_unavailable():
            continue
        bp = ProbabilityBackprop(model, "top", input_offset=OFFSET, **{"dtype": "float32", **kwargs})
        acts = bp.forward(image[None])
        top_probs = seed_probabilities(acts["top"], seeds, kwargs.get("rule", "paper"))
        out[name] = np.asarray(bp.backprop(bp.prepare(acts), top_probs))
    return out
