"""The ImageNet classifiers DASR is built on, cut at their last convolutional layer.

A :class:`Backbone` is a Keras functional model from the (variable-size) input image to the
last conv layer whose block outputs stay reachable by name: ResNet-50 is cut at
``conv5_block3_out`` (stride 32) with ``conv4_block1_out`` ... ``conv5_block3_out``; VGG-16 at
``block5_pool`` (stride 32) with ``block5_conv1..3`` (stride 16).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import keras

from dasr.weights import resolve_weights, weights_fingerprint

TOP_LAYER = {"resnet50": "conv5_block3_out", "vgg16": "block5_pool"}

# Layers whose maps can describe a region (the paper's Fig. 4), with their stride.
FEATURE_LAYERS = {
    "resnet50": {
        **{f"conv4_block{i}_out": 16 for i in range(1, 7)},
        **{f"conv5_block{i}_out": 32 for i in range(1, 4)},
    },
    "vgg16": {f"block5_conv{i}": 16 for i in range(1, 4)},
}
DEFAULT_FEATURE_LAYER = {"resnet50": "conv5_block1_out", "vgg16": "block5_conv3"}


@dataclass
class Backbone:
    """A classifier cut at its last conv layer.

    Attributes:
      name: ``resnet50`` or ``vgg16``.
      model: Keras model, input (None, None, 3) caffe-preprocessed, output ``top_layer``.
      top_layer: the layer whose channel mean is the activation map (seeds live there).
      weights_id: fingerprint of the weights (``random`` for untrained test networks).
    """

    name: str
    model: keras.Model
    top_layer: str
    weights_id: str

    def stride(self, layer: str) -> int:
        """Pixels of the input per cell of ``layer``'s map."""
        strides = FEATURE_LAYERS[self.name]
        if layer == self.top_layer:
            return 32
        if layer not in strides:
            raise ValueError(f"{self.name} has no feature layer {layer!r}; choose from {sorted(strides)}")
        return strides[layer]


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


def build_backbone(name: str = "resnet50", weights: str | os.PathLike | None = "imagenet") -> Backbone:
    """Builds a backbone.

    Args:
      name: ``resnet50`` or ``vgg16``.
      weights: ``"imagenet"`` (resolved by :func:`dasr.weights.resolve_weights`), a path to a
        ``.weights.h5`` file, or None for random weights (tests).

    Returns:
      The :class:`Backbone`.

    Raises:
      dasr.weights.WeightsError: no ImageNet weight source worked.
    """
    if name not in TOP_LAYER:
        raise ValueError(f"unknown backbone {name!r}; choose from {sorted(TOP_LAYER)}")
    if weights is None:
        path, weights_id = None, "random"
    else:
        path = resolve_weights(name, None if weights == "imagenet" else weights)
        weights_id = weights_fingerprint(path)
    if name == "vgg16":
        conv = keras.applications.VGG16(weights=None, include_top=False, input_shape=(None, None, 3))
        if path is not None:
            full = classifier_model("vgg16", path)
            for layer in conv.layers:
                if layer.get_weights():
                    layer.set_weights(full.get_layer(layer.name).get_weights())
        return Backbone(name, conv, TOP_LAYER[name], weights_id)
    full = classifier_model(name, path)
    return Backbone(name, cut_at_top(full, name), TOP_LAYER[name], weights_id)
