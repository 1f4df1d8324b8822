"""Child process of tests/model/test_backprop_jax.py: the tiny net's maps on another Keras backend.

Keras fixes its backend per process, so the JAX results are computed here, in a process started
with ``KERAS_BACKEND=jax``, and compared by the parent (running TensorFlow).

Usage: ``KERAS_BACKEND=jax python backprop_child.py FIXTURE.npz OUT.npz``.  Writes the backend's
name and, per configuration of ``backprop_reference.FIXTURE_CASES``, the maps of the fixture's
seeds together (``maps_<case>``, but for a bfloat16 case the backend cannot compute here; also ``AUTHORS_CASES`` and ``CONTRASTIVE_CASES``), the contrastive
device-path boxes (``boxes_contrastive``) and the float32 maps of the first two seeds alone (``alone``).
"""

from __future__ import annotations

import sys

import keras
import numpy as np

from backprop_reference import (AUTHORS_CASES, CONTRASTIVE_CASES, FIXTURE_CASES, OFFSET, backprop_maps,
                                tiny_net_with_weights)
from dasr.model.backprop import ProbabilityBackprop
from dasr.model.chunks import seed_probabilities


def main(fixture: str, out: str) -> None:
    data = np.load(fixture)
    weights = [data[f"weight{i}"] for i in range(sum(k.startswith("weight") for k in data.files))]
    model = tiny_net_with_weights(weights)
    image, seeds = data["image"], data["seeds"]
    together = backprop_maps(model, image, seeds)
    alone = [backprop_maps(model, image, s[None], cases=("float32",))["float32"] for s in seeds[:2]]
    authors = backprop_maps(model, image, seeds, cases=(*AUTHORS_CASES, *CONTRASTIVE_CASES))
    # the device path (maps and Eq. 4 in one compiled step) of the contrastive backprop
    bp = ProbabilityBackprop(model, "top", input_offset=OFFSET, dtype="float32", contrastive=True)
    acts = bp.forward(image[None])
    boxes = bp.backprop_ellipses(bp.prepare(acts), seed_probabilities(acts["top"], seeds), tau=0.1,
                                 weighted=False, percentile=None)[0]
    np.savez(out, backend=keras.backend.backend(),
             **{f"maps_{n}": together[n] for n in FIXTURE_CASES if n in together},
             **{f"maps_{n}": authors[n] for n in (*AUTHORS_CASES, *CONTRASTIVE_CASES)},
             alone=np.concatenate(alone), boxes_contrastive=boxes)


if __name__ == "__main__":
    main(*sys.argv[1:3])
