"""The ImageNet classifiers DASR is built on: Keras ResNet-50 (v1) and VGG-16, untrained.

Only architectures here (no weights): :mod:`dasr.model.weights` fills them, and
:mod:`dasr.model.backbone` cuts them at their last conv layer.  ResNet-50 is cut at
``conv5_block3_out`` (stride 32) with ``conv4_block1_out`` ... ``conv5_block3_out`` reachable by
name; VGG-16 at ``block5_pool`` (stride 32) with ``block5_conv1..3`` (stride 16).
"""

from __future__ import annotations

import os

import keras

TOP_LAYER = {"resnet50": "conv5_block3_out", "vgg16": "block5_pool"}

# Layers whose maps can describe a region (the paper's Fig. 4), with their stride.
FEATURE_LAYERS = {
    "resnet50": {
        **{f"conv4_block{i}_out": 16 for i in range(1, 7)},
        **{f"conv5_block{i}_out": 32 for i in range(1, 4)},
    },
    "vgg16": {f"block5_conv{i}": 16 for i in range(1, 4)},
}
# Channels of each feature layer: a region descriptor's dimension before any PCA.
FEATURE_CHANNELS = {
    "resnet50": {**{f"conv4_block{i}_out": 1024 for i in range(1, 7)},
                 **{f"conv5_block{i}_out": 2048 for i in range(1, 4)}},
    "vgg16": {f"block5_conv{i}": 512 for i in range(1, 4)},
}
DEFAULT_FEATURE_LAYER = {"resnet50": "conv5_block1_out", "vgg16": "block5_conv3"}


def resnet50_classifier() -> keras.Model:
    """Keras' ResNet-50 with its top, untrained, on a variable-size input."""
    return keras.applications.ResNet50(weights=None, input_tensor=keras.Input((None, None, 3)))


def classifier_model(backbone: str, weights_path: str | os.PathLike | None = None,
                     keras_imagenet: bool = False) -> keras.Model:
    """The whole classifier (with top) on a variable-size input.

    Args:
      backbone: ``resnet50`` or ``vgg16``.
      weights_path: a Keras 3 ``.weights.h5`` to load, or None for random weights.
      keras_imagenet: load Keras' own ImageNet download instead (needs the internet).
    """
    if backbone == "resnet50":
        if keras_imagenet:
            ref = keras.applications.ResNet50(weights="imagenet")
            model = resnet50_classifier()
            model.set_weights(ref.get_weights())
            return model
        model = resnet50_classifier()
    elif backbone == "vgg16":
        # VGG-16's top is Flatten + Dense: only the fixed 224x224 input carries it.
        model = keras.applications.VGG16(weights="imagenet" if keras_imagenet else None)
    else:
        raise ValueError(f"unknown backbone {backbone!r}")
    if weights_path is not None:
        model.load_weights(weights_path)
    return model


def cut_at_top(model: keras.Model, backbone: str) -> keras.Model:
    """The convolutional part of ``model``, up to ``TOP_LAYER[backbone]``."""
    return keras.Model(model.input, model.get_layer(TOP_LAYER[backbone]).output, name=f"{backbone}_conv")
