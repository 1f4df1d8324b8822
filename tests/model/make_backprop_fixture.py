"""Writes tests/model/data/backprop_maps.npz: the tiny net's weights, image, seeds and maps.

Run once (``.venv/bin/python tests/model/make_backprop_fixture.py``) with the TensorFlow
backprop; the stored maps are what every kernel set must keep giving within round-off
(tests/tolerances.py).  Rerunning it overwrites the reference: do not, unless the
method is meant to change.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

from backprop_reference import FIXTURE_SEEDS, backprop_maps, tiny_image, tiny_net  # noqa: E402

FIXTURE = Path(__file__).with_name("data") / "backprop_maps.npz"


def main() -> None:
    model = tiny_net()
    weights = model.get_weights()
    image = tiny_image()
    maps = backprop_maps(model, image, FIXTURE_SEEDS)
    FIXTURE.parent.mkdir(exist_ok=True)
    np.savez_compressed(FIXTURE, image=image, seeds=FIXTURE_SEEDS,
                        **{f"weight{i}": w for i, w in enumerate(weights)},
                        **{f"maps_{name}": m for name, m in maps.items()})
    print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size} bytes): {sorted(maps)}")


if __name__ == "__main__":
    main()
