"""MAC counts of dasr.profiling.flops against hand counts on tiny Keras models."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from dasr.model.backprop import ProbabilityBackprop
from dasr.profiling.flops import BackpropWork, backprop_macs, forward_macs, layer_shapes, ops_above_stop


def test_forward_conv_strided_conv_grouped_conv_and_dense():
    x = keras.Input((8, 8, 2), name="image")
    # 3x3, 2 -> 4 channels, stride 1, "same" padding: output 8x8x4, 8*8*4*2*9 MACs
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c3x3")(x)
    # grouped 3x3, 4 -> 4 channels in 2 groups ("same"): each output sees 2 inputs: 8*8*4*2*9
    h = keras.layers.Conv2D(4, 3, padding="same", groups=2, name="grouped")(h)
    # 1x1, stride 2, 4 -> 3 channels ("valid"): output 4x4x3, 4*4*3*4 MACs
    h = keras.layers.Conv2D(3, 1, strides=2, name="c1x1s2")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    # dense 3 -> 5: 15 MACs
    h = keras.layers.Dense(5, name="fc")(h)
    model = keras.Model(x, h)
    shapes = layer_shapes(model, 8, 8)
    assert shapes["image"] == (1, 8, 8, 2)
    assert shapes["c3x3"] == (1, 8, 8, 4) and shapes["c1x1s2"] == (1, 4, 4, 3) and shapes["fc"] == (1, 5)
    assert forward_macs(model, shapes) == 8 * 8 * 4 * 2 * 9 + 8 * 8 * 4 * 2 * 9 + 4 * 4 * 3 * 4 + 3 * 5
    # another input size: the counts follow the shapes (12x16 -> 1x1 conv output 6x8)
    shapes = layer_shapes(model, 12, 16)
    assert forward_macs(model, shapes) == 2 * (12 * 16 * 4 * 2 * 9) + 6 * 8 * 3 * 4 + 3 * 5


def chain_net() -> keras.Model:
    """8x8x2 -> 3x3 conv 2->4 (same, ReLU) -> 2x2 max pool stride 2 -> 1x1 stride-2 conv 4->3 -> ReLU."""
    keras.utils.set_random_seed(0)
    x = keras.Input((None, None, 2), name="image")
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(x)
    h = keras.layers.MaxPooling2D(2, strides=2, name="p1")(h)
    h = keras.layers.Conv2D(3, 1, strides=2, name="c2")(h)
    return keras.Model(x, keras.layers.ReLU(name="top")(h))


def test_backprop_of_one_seed_by_hand():
    model = chain_net()
    shapes = layer_shapes(model, 8, 8)
    bp = ProbabilityBackprop(model, "top")
    work = backprop_macs(bp.ops, shapes, bp.map_stride)
    # c1: transposed 3x3 conv, 8*8 outputs x 4 channels x 2 inputs x 9 taps = 4608
    # c2: 1x1 conv at the 2x2 output: 2*2*4*3 = 48; its stride-2 all-ones window: 2*2 outputs x
    #     2*2 cells x 4 channels = 64 adds; p1: 4*4 outputs x 2*2 cells x 4 channels = 256 adds
    assert work == BackpropWork(conv_macs=4608 + 48, pool_macs=64 + 256,
                                # P/Z on each output + A*back on each input, per conv/pool
                                elementwise=(8 * 8 * 4 + 8 * 8 * 2) + (4 * 4 * 4 + 8 * 8 * 4) + (2 * 2 * 3 + 4 * 4 * 4))
    assert work.macs == 4656 + 320


def test_stopped_backprop_counts_only_the_ops_above_the_stop():
    model = chain_net()
    shapes = layer_shapes(model, 8, 8)
    bp = ProbabilityBackprop(model, "top", stop_stride=2)
    assert bp.map_stride == 2
    # stops at p1's output (stride 2): only c2 and its window run
    assert backprop_macs(bp.ops, shapes, bp.map_stride) == BackpropWork(48, 64, 2 * 2 * 3 + 4 * 4 * 4)
    # stopped at the top's own stride nothing is back-propagated through a conv or a pool
    assert backprop_macs(bp.ops, shapes, 4).macs == 0
    with pytest.raises(ValueError, match="strides there are: \\[1, 2, 4\\]"):
        ops_above_stop(bp.ops, 3)


def test_residual_branches_above_the_stop_are_counted_the_op_below_is_not():
    keras.utils.set_random_seed(0)
    x = keras.Input((8, 8, 2), name="image")
    c0 = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu", name="c0")(x)  # 4x4x4
    a = keras.layers.Conv2D(4, 1, name="ca")(c0)
    b = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="cb1")(c0)
    b = keras.layers.Conv2D(4, 1, name="cb2")(b)
    top = keras.layers.ReLU(name="top")(keras.layers.Add(name="add")([a, b]))
    model = keras.Model(x, top)
    shapes = layer_shapes(model, 8, 8)
    branches = 4 * 4 * 4 * 4 + 4 * 4 * 4 * 4 * 9 + 4 * 4 * 4 * 4  # ca + cb1 + cb2
    stopped = ProbabilityBackprop(model, "top", stop_stride=2)
    # the stride-2 tensors are c0, the branches, add and top; the lowest one all paths cross is c0
    assert sorted(op.name for op in ops_above_stop(stopped.ops, 2)) == ["add", "ca", "cb1", "cb2", "top"]
    work = backprop_macs(stopped.ops, shapes, stopped.map_stride)
    assert (work.conv_macs, work.pool_macs) == (branches, 0)
    full = ProbabilityBackprop(model, "top")
    assert backprop_macs(full.ops, shapes).conv_macs == branches + 4 * 4 * 4 * 2 * 9  # + c0


def test_counts_match_the_shapes_the_network_really_computes():
    model = chain_net()
    out = np.asarray(model(np.zeros((1, 12, 20, 2), np.float32)))
    assert layer_shapes(model, 12, 20)["top"] == out.shape == (1, 3, 5, 3)
