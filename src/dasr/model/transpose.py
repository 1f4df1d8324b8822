"""The backprop's linear maps (forward in ``keras.ops``) and their transposes, per Keras backend.

The probability backprop (:mod:`dasr.model.backprop`) needs, for every convolution and pooling
layer, the layer's linear map ``L`` (positive kernel, no bias) applied to one image's
activations and ``Lᵀ`` applied to a batch of seeds.  ``L`` is written once, in ``keras.ops``;
``Lᵀ`` comes from the backend:

* TensorFlow: the explicit transposed kernels (``conv2d_transpose``, ``AvgPoolGrad``), the ones
  the TensorFlow backprop always used, so that its results stay bit-identical;
* JAX: ``jax.linear_transpose`` of ``L`` itself, so forward and transpose cannot disagree.

:func:`jit` compiles a function the backend's way (``tf.function`` / ``jax.jit``).
"""

from __future__ import annotations

import keras

BACKEND = keras.backend.backend()
if BACKEND == "tensorflow":
    import tensorflow as tf
elif BACKEND == "jax":
    import jax
else:
    raise ImportError(f"the probability backprop runs on the tensorflow or jax Keras backend, not {BACKEND!r}")

ops = keras.ops


# ----------------------------------------------------------------------------- forward maps
def window_pool(x, size, strides, padding: str):
    """All-ones window per channel, as an average.

    Average (not sum) pooling: the rule P(A) = A ⊙ Lᵀ(P(B) ⊘ LA) is unchanged when each output
    row of L is scaled by a positive number, so avg == all-ones window here, also where SAME
    padding excludes border cells from the count.
    """
    return ops.average_pool(x, tuple(size), tuple(strides), padding.lower())


def conv(x, kernel, strides, padding: str, window: bool = False):
    """The convolution with a (positive) kernel; ``window``: subsample by an all-ones
    ``strides`` window first, then the kernel at stride 1 (a 1x1 kernel smaller than its stride)."""
    if window:
        return ops.conv(window_pool(x, strides, strides, "SAME"), kernel, 1, "valid")
    return ops.conv(x, kernel, tuple(strides), padding.lower())


def safe_inverse(z):
    """``1 / z``, and 0 where ``z`` is 0 (Eq. 3's normaliser: a neuron no input excites passes nothing on)."""
    return ops.divide_no_nan(ops.ones_like(z), z)


def image_min(x):
    """Each image's minimum, (B, 1, 1, 1): a batch of images must not share one shift.

    With one image it is the whole tensor's minimum, the same value (a minimum is exact).
    """
    return ops.min(x, axis=(1, 2, 3), keepdims=True)


# ----------------------------------------------------------------------------- transposes
def _batched_like(y, like):
    """The shape of ``like`` (one image's input of the map) with ``y``'s batch (the seeds)."""
    if BACKEND == "tensorflow":
        return tf.concat([tf.shape(y)[:1], tf.shape(like)[1:]], 0)
    return (y.shape[0], *like.shape[1:])


def _jax_transpose(linear, y, like):
    primal = jax.ShapeDtypeStruct(_batched_like(y, like), y.dtype)
    (x,) = jax.linear_transpose(linear, primal)(y)
    return x


def window_pool_transpose(y, like, size, strides, padding: str):
    """Lᵀy of :func:`window_pool`, for a batch ``y`` of outputs; ``like``: one input of the map."""
    if BACKEND == "tensorflow":
        return tf.raw_ops.AvgPoolGrad(orig_input_shape=_batched_like(y, like), grad=y, ksize=[1, *size, 1],
                                      strides=[1, *strides, 1], padding=padding)
    return _jax_transpose(lambda t: window_pool(t, size, strides, padding), y, like)


def conv_transpose(y, kernel, like, strides, padding: str, window: bool = False):
    """Lᵀy of :func:`conv`, for a batch ``y`` of outputs; ``like``: one input of the map."""
    if BACKEND == "tensorflow":
        if window:
            s = strides[0]
            n = tf.shape(y)[:1]
            win_shape = tf.concat([n, (tf.shape(like)[1:3] + s - 1) // s, tf.shape(like)[3:]], 0)
            back = tf.nn.conv2d_transpose(y, kernel, win_shape, 1, "VALID")
            return window_pool_transpose(back, like, strides, strides, "SAME")
        return tf.nn.conv2d_transpose(y, kernel, _batched_like(y, like), strides, padding)
    return _jax_transpose(lambda t: conv(t, kernel, strides, padding, window), y, like)


def max_pool_transpose(y, like, size, strides, padding: str):
    """The ordinary gradient of max pooling at the input ``like``, for a batch ``y``.

    Each output's signal goes to its window's maximum (the authors' rule keeps max pooling's
    gradient).  ``like`` is one image's input (batch 1) or one input per row of ``y`` (the
    seeds of a batch of images, each with its image's input).  TensorFlow: ``MaxPoolGrad`` on
    ``like`` repeated along the seeds; JAX: the vector-Jacobian product at ``like``, mapped
    over the seeds (and over the inputs when there is one per seed).
    """
    if BACKEND == "tensorflow":
        shape = _batched_like(y, like)
        x = tf.broadcast_to(like, shape)
        pooled = tf.nn.max_pool2d(x, size, strides, padding)
        return tf.raw_ops.MaxPoolGrad(orig_input=x, orig_output=pooled, grad=y, ksize=[1, *size, 1],
                                      strides=[1, *strides, 1], padding=padding)

    def pool(t):
        return ops.max_pool(t, tuple(size), tuple(strides), padding.lower())

    if like.shape[0] == 1:
        _, vjp = jax.vjp(pool, like)
        return jax.vmap(lambda row: vjp(row[None])[0][0])(y)
    return jax.vmap(lambda a, row: jax.vjp(pool, a[None])[1](row[None])[0][0])(like, y)


# ----------------------------------------------------------------------------- batches
def take_rows(x, rows, after):
    """``x[rows]`` (a batch's per-image state, one row per seed), computed after ``after``.

    TensorFlow runs an op as soon as its inputs are ready: gathers of the state alone would all
    run when the step starts and hold every layer's gathered state at once; the control
    dependency on the layer's incoming signal ``after`` runs each in its layer's turn.  XLA (JAX)
    fuses the gather into its consumers.
    """
    if BACKEND == "tensorflow":
        with tf.control_dependencies([after]):
            return tf.gather(x, rows, axis=0)
    return ops.take(x, rows, axis=0)


# ----------------------------------------------------------------------------- compilation
def jit(fn):
    """``fn`` compiled by the backend: ``tf.function`` (shapes may vary without retracing) or ``jax.jit``.

    JAX compiles once per input shape; the arguments are arrays or dicts of arrays (weights
    included: nothing is baked in as a constant).
    """
    if BACKEND == "tensorflow":
        return tf.function(fn, reduce_retracing=True)
    return jax.jit(fn)
