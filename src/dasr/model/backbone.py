"""A classifier cut at its last conv layer, with its weights: what every extractor runs on."""

from __future__ import annotations

import os
from dataclasses import dataclass

import keras

from dasr.errors import InputError
from dasr.model.architectures import FEATURE_LAYERS, TOP_LAYER, classifier_model, cut_at_top
from dasr.model.device import enable_compilation_cache
from dasr.model.weights import dasr_home, resolve_weights, weights_fingerprint

# Seed of the untrained test network (``weights="random"``): every process must build the SAME
# random network, or a resumed extraction mixes two networks and a search describes its query
# with another network than the index's.
RANDOM_WEIGHTS_SEED = 0


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
            raise InputError(f"{self.name} has no feature layer {layer!r}; choose from {sorted(strides)}")
        return strides[layer]


def build_backbone(name: str = "resnet50", weights: str | os.PathLike = "imagenet") -> Backbone:
    """Builds a backbone.

    Args:
      name: ``resnet50`` or ``vgg16``.
      weights: ``"imagenet"`` (resolved by :func:`dasr.model.weights.resolve_weights`), a path to a
        ``.weights.h5`` file, or ``"random"`` for an untrained network, seeded with
        :data:`RANDOM_WEIGHTS_SEED` so that every process builds the same one (tests, smoke runs).

    Returns:
      The :class:`Backbone`.

    Raises:
      dasr.model.weights.WeightsError: no ImageNet weight source worked.
    """
    if name not in TOP_LAYER:
        raise InputError(f"unknown backbone {name!r}; choose from {sorted(TOP_LAYER)}")
    # JAX compiles per input shape; its programs are kept across runs (TensorFlow: nothing).
    enable_compilation_cache(dasr_home() / "jax-compilation-cache")
    if weights == "random":
        keras.utils.set_random_seed(RANDOM_WEIGHTS_SEED)
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
