"""ImageNet classification of an image with the whole classifier (proof that the weights are real)."""

from __future__ import annotations

import cv2
import keras
import numpy as np

from dasr.io.images import preprocess_caffe, resize_long_side

# The classifiers were trained on 224x224 crops.
CLASSIFY_SIDE = 224


def class_probabilities(model: keras.Model, backbone: str, image_rgb: np.ndarray) -> np.ndarray:
    """(1000,) class probabilities of an RGB uint8 image.

    ResNet-50's global pooling takes any size (long side 224 keeps the aspect ratio); VGG-16's
    dense top needs exactly 224x224.
    """
    if backbone == "vgg16":
        x = cv2.resize(image_rgb, (CLASSIFY_SIDE, CLASSIFY_SIDE), interpolation=cv2.INTER_AREA)
    else:
        x = resize_long_side(image_rgb, CLASSIFY_SIDE)[0]
    # The ResNet-50 classifier is built on an input tensor, so Keras expects a list of inputs.
    return np.asarray(model([preprocess_caffe(x)[None]], training=False))[0]
