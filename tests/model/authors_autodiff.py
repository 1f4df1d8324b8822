"""A second implementation of the authors' detector, by their code's mechanism, for the tests.

The authors' code (wlzhao22/DASR, PRM's peak backprop) patches every convolution's forward
(``pr_conv2d``) and lets the framework's own gradient do the rest.  This module does the same on
the Keras network with TensorFlow's gradient tape: each ``Conv2D`` is run as ``pr_conv2d``
(:func:`_pr_conv`), every other layer as itself, and the map of a peak is the gradient of the
channel-mean map at that peak with respect to the network input, summed over channels and
clamped at 0.  Its resize, peaks, 95th percentile, ellipse and NMS are written here from their
code too (``calculate_resized_w_h``, ``peak_stimulation``, ``estimate_ellipse``, ``nms``), so it
shares nothing with :mod:`dasr` but the network.  TensorFlow backend only.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

EPS = 1e-10
BGR_MEAN = np.array([103.939, 116.779, 123.68], np.float32)


@tf.custom_gradient
def _pre_hook(x, offset):
    """Their ``PreHook``: the identity; backward multiplies by the input shifted by ``offset``."""
    def grad(g):
        return (x - offset) * g, tf.zeros_like(offset)
    return tf.identity(x), grad


@tf.custom_gradient
def _post_hook(response, norm):
    """Their ``PostHook``: forwards ``response``; backward sends ``g / norm`` to ``norm`` (0 where norm < eps)."""
    def grad(g):
        out = g / (tf.abs(norm) + EPS)
        return tf.zeros_like(response), tf.where(norm < EPS, tf.zeros_like(out), out)
    return tf.identity(response), grad


def _pr_conv(conv: keras.layers.Conv2D, pad):
    """``pr_conv2d`` for a Keras ``Conv2D``; ``pad``: the ZeroPadding2D before it (torch pads inside the conv)."""
    kernel = tf.constant(np.asarray(conv.kernel))
    bias = tf.constant(np.asarray(conv.bias)) if conv.use_bias else None
    strides, padding = list(conv.strides), conv.padding.upper()
    paddings = [[0, 0], list(pad[0]), list(pad[1]), [0, 0]] if pad is not None else None

    def run(x):
        offset = tf.stop_gradient(tf.reduce_min(x))
        hooked = _pre_hook(x, offset)
        padded = tf.pad(x, paddings) if paddings else x
        response = tf.nn.conv2d(padded, kernel, strides, padding)
        if bias is not None:
            response = response + bias
        shifted = hooked - offset
        shifted = tf.pad(shifted, paddings) if paddings else shifted  # zeros in the shifted space
        norm = tf.nn.conv2d(shifted, tf.nn.relu(kernel), strides, padding)
        out = _post_hook(tf.stop_gradient(response), norm)
        return conv.activation(out)  # a fused ReLU keeps its ordinary gradient, as a torch ReLU module

    return run


def _feeding(layer):
    """The operation whose output ``layer`` takes (its first input)."""
    return layer._inbound_nodes[0].input_tensors[0]._keras_history.operation


class AutodiffAuthors:
    """The authors' backprop on ``model`` up to ``top`` through patched convolutions.

    Args:
      model: a Keras functional model (TensorFlow backend).
      top: the layer whose channel mean is the map the peaks are found on.
    """

    def __init__(self, model: keras.Model, top: str):
        self.model = keras.Model(model.input, model.get_layer(top).output)
        self.pads = {}
        for layer in self.model.layers:
            if isinstance(layer, keras.layers.Conv2D):
                before = _feeding(layer)
                if isinstance(before, keras.layers.ZeroPadding2D):
                    self.pads[layer.name] = before.padding
        self.folded_pads = {_feeding(self.model.get_layer(n)).name for n in self.pads}

    def _operation(self, op):
        if isinstance(op, keras.layers.Conv2D):
            return _pr_conv(op, self.pads.get(op.name))
        if op.name in self.folded_pads:
            return lambda x: x  # the padding happens inside the patched conv
        return op

    def top_map(self, x: np.ndarray) -> np.ndarray:
        """(h, w) channel mean of the top layer for a (1, H, W, 3) input."""
        return np.asarray(tf.reduce_mean(self.model([x]), axis=-1))[0]

    def peak_maps(self, x: np.ndarray, peaks: np.ndarray) -> np.ndarray:
        """(S, H, W): for each peak, the input gradient summed over channels, clamped at 0."""
        x = tf.constant(x)
        maps = []
        for r, c in peaks:
            with tf.GradientTape() as tape:
                tape.watch(x)
                top = self.model._run_through_graph([x], operation_fn=self._operation)
                target = tf.reduce_mean(top, axis=-1)[0, int(r), int(c)]
            maps.append(np.maximum(np.asarray(tf.reduce_sum(tape.gradient(target, x), axis=-1))[0], 0))
        return np.stack(maps) if maps else np.zeros((0, *x.shape[1:3]), np.float32)


# ----------------------------------------------------------------------------- their pipeline
def resized_w_h(w: int, h: int, max_length: int = 512) -> tuple[int, int, float]:
    """Their ``calculate_resized_w_h``."""
    if w > h:
        rate = w / max_length
        return max_length, int(h / rate), rate
    rate = h / max_length
    return int(w / rate), max_length, rate


def network_input(image_rgb: np.ndarray, max_length: int) -> tuple[np.ndarray, float]:
    """Resized as theirs (torchvision's Resize on a PIL image = Pillow's bilinear), then the Keras
    network's own preprocessing (caffe: BGR, ImageNet mean subtracted)."""
    h, w = image_rgb.shape[:2]
    new_w, new_h, rate = resized_w_h(w, h, max_length)
    resized = np.asarray(Image.fromarray(image_rgb).resize((new_w, new_h), Image.BILINEAR), np.float32)
    return (resized[..., ::-1] - BGR_MEAN)[None], rate


def peaks(amap: np.ndarray, mean_filter: bool) -> tuple[np.ndarray, np.ndarray]:
    """Their ``peak_stimulation``: a cell is a peak when a 3x3 max pooling padded with -inf picks its
    index (the first maximum of the window in row-major order); border cells dropped; with
    ``mean_filter`` (DASR), only those >= the map's mean; in their scan order (row-major)."""
    h, w = amap.shape
    padded = np.pad(amap.astype(np.float64), 1, constant_values=-np.inf)
    found, scores = [], []
    for r in range(h):
        for c in range(w):
            window = padded[r:r + 3, c:c + 3].ravel()
            if int(np.argmax(window)) != 4:  # np.argmax returns the first maximum, as torch's max_pool2d
                continue
            if r in (0, h - 1) or c in (0, w - 1):
                continue
            if mean_filter and amap[r, c] < amap.mean():
                continue
            found.append((r, c))
            scores.append(float(amap[r, c]))
    return np.array(found, np.int64).reshape(-1, 2), np.array(scores)


def estimate_ellipse(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Their ``estimate_ellipse``: integer [x_min, y_min, x_max, y_max] in resized pixel indices."""
    points = np.stack([rows, cols], axis=-1).astype(np.float64)
    mu = points.mean(axis=0)
    d = points - mu
    cov = d.T @ d / len(d)
    values = 2 * np.sqrt(np.linalg.eig(cov)[0])
    angle = math.atan2(cov[1, 0] + cov[0, 1], cov[1, 1] - cov[0, 0]) / 2
    minor, major = np.sort(values.flatten())[-2:]
    ux, uy = major * np.cos(angle), major * np.sin(angle)
    vx, vy = minor * np.cos(angle + np.pi / 2), minor * np.sin(angle + np.pi / 2)
    half_w, half_h = np.sqrt(ux ** 2 + vx ** 2), np.sqrt(uy ** 2 + vy ** 2)
    y_min, y_max = np.clip(np.array([-half_h, half_h], dtype=np.int32) + int(mu[0]), 0, shape[0] - 1)
    x_min, x_max = np.clip(np.array([-half_w, half_w], dtype=np.int32) + int(mu[1]), 0, shape[1] - 1)
    return np.array([x_min, y_min, x_max, y_max])


def nms(dets: np.ndarray, thres: float) -> list[int]:
    """Their ``nms`` (py-faster-rcnn's: +1 areas, keeps IoU <= thres)."""
    x1, y1, x2, y2, scores = dets.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(int(i))
        w = np.maximum(np.minimum(x2[i], x2[order[1:]]) - np.maximum(x1[i], x1[order[1:]]) + 1.0, 0.0)
        h = np.maximum(np.minimum(y2[i], y2[order[1:]]) - np.maximum(y1[i], y1[order[1:]]) + 1.0, 0.0)
        inter = w * h
        order = order[np.where(inter / (areas[i] + areas[order[1:]] - inter) <= thres)[0] + 1]
    return keep


def detect(net: AutodiffAuthors, image_rgb: np.ndarray, max_length: int, dasr_star: bool = True) -> dict:
    """Their whole detector on one image: boxes (original pixels, integers) after NMS 0.3 (DASR*)
    or without NMS (DASR), with each peak's map and box before NMS."""
    x, rate = network_input(image_rgb, max_length)
    amap = net.top_map(x)
    found, scores = peaks(amap, mean_filter=not dasr_star)
    keep = scores > 0
    found, scores = found[keep], scores[keep]
    maps = net.peak_maps(x, found)
    sites = []
    for prm in maps:
        kept = np.where(prm < np.percentile(prm, 95), 0, prm)
        rows, cols = np.nonzero(kept)
        site = estimate_ellipse(rows, cols, prm.shape)
        sites.append([int(v * rate) for v in site])
    sites = np.array(sites, np.float64).reshape(-1, 4)
    kept_rows = nms(np.c_[sites, scores], 0.3) if dasr_star and len(sites) else list(range(len(sites)))
    return {"input": x, "rate": rate, "amap": amap, "peaks": found, "scores": scores, "maps": maps,
            "sites": sites, "boxes": sites[kept_rows], "kept": kept_rows}
