"""Seeds of several images in one backprop chunk (dasr.model.chunks) equal each image's own.

On the tiny net of backprop_reference.py with a dark and a bright image (the authors' rule and
the ``shift`` input rule shift by a minimum, which must be each image's own), on this process's
backend and, in a child process, on JAX.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backprop_reference import OFFSET, tiny_net
from dasr.model import chunks
from dasr.model.backprop import ProbabilityBackprop

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"
# Two images far apart in brightness: a minimum taken over both would shift the bright one by
# the dark one's minimum.
DARK = np.random.default_rng(2).uniform(-100, -50, (16, 16, 3)).astype(np.float32)
BRIGHT = np.random.default_rng(3).uniform(150, 250, (16, 16, 3)).astype(np.float32)
SEEDS = [np.array([[0, 0], [1, 2], [3, 3]]), np.array([[2, 1], [3, 0]])]
# chunk 4: the first chunk holds seeds of both images, the second is padded.
CHUNK = 4
OPTIONS = {"paper": {}, "shift": {"input_rule": "shift"}, "authors": {"rule": "authors"}}


def batch_and_alone(model, options: dict, boxes: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(the two images' seeds through batched chunks, each image's seeds alone), maps or boxes."""
    bp = ProbabilityBackprop(model, "top", input_offset=OFFSET, dtype="float32", **options)
    rule = options.get("rule", "paper")

    def run(x, seeds, image):
        acts = bp.forward(x)
        if boxes:
            return chunks.seed_boxes(bp, bp.prepare(acts), acts["top"], seeds, chunk=CHUNK, rule=rule,
                                     tau=0.1, weighted=False, percentile=None, image=image)[0]
        return chunks.seed_maps(bp, bp.prepare(acts), acts["top"], seeds, chunk=CHUNK, rule=rule, image=image)

    image = np.repeat(np.arange(2, dtype=np.int32), [len(s) for s in SEEDS])
    together = run(np.stack([DARK, BRIGHT]), np.concatenate(SEEDS), image)
    alone = np.concatenate([run(x[None], s, None) for x, s in zip((DARK, BRIGHT), SEEDS)])
    return together, alone


@pytest.fixture(scope="module")
def net():
    return tiny_net()


@pytest.mark.parametrize("case", list(OPTIONS))
def test_batch_maps_equal_each_image_alone(net, case):
    together, alone = batch_and_alone(net, OPTIONS[case])
    assert together.shape == alone.shape == (5, 16, 16)
    peaks = alone.reshape(5, -1).max(1)
    assert peaks[:3].max() > 0 and peaks[3:].max() > 0  # real maps of both images
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-6 * alone.max())


def test_batch_boxes_equal_each_image_alone(net):
    together, alone = batch_and_alone(net, OPTIONS["paper"], boxes=True)
    assert together.shape == (5, 4) and (alone[:, 2] > alone[:, 0]).all()
    np.testing.assert_allclose(together, alone, atol=1e-4)


def test_state_gathered_per_seed_not_shared(net):
    """The bright image's seeds under the dark image's state give other maps (the test can fail)."""
    bp = ProbabilityBackprop(net, "top", input_offset=OFFSET, dtype="float32", rule="authors")
    acts = bp.forward(np.stack([DARK, BRIGHT]))
    state = bp.prepare(acts)
    own = chunks.seed_maps(bp, state, acts["top"], SEEDS[1], chunk=CHUNK, rule="authors", image=[1, 1])
    other = chunks.seed_maps(bp, state, acts["top"], SEEDS[1], chunk=CHUNK, rule="authors", image=[0, 0])
    assert np.abs(own - other).max() > 0.1 * own.max()


CHILD = """
import sys, numpy as np, keras
from backprop_reference import tiny_net_with_weights
from test_model_chunks import OPTIONS, batch_and_alone
data = np.load(sys.argv[1])
model = tiny_net_with_weights([data[f"w{i}"] for i in range(len(data.files))])
out = {case: batch_and_alone(model, options)[0] for case, options in OPTIONS.items()}
out["boxes"] = batch_and_alone(model, OPTIONS["paper"], boxes=True)[0]
np.savez(sys.argv[2], backend=keras.backend.backend(), **out)
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
def test_jax_batch_equals_tensorflow_image_by_image(net, tmp_path):
    """The batched step on JAX (its gather, and its max-pooling transpose with one input per seed)."""
    np.savez(tmp_path / "weights.npz", **{f"w{i}": w for i, w in enumerate(net.get_weights())})
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), str(HERE), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "weights.npz"), str(tmp_path / "out.npz")],
                          cwd=HERE, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    got = np.load(tmp_path / "out.npz")
    assert str(got["backend"]) == "jax"
    for case, options in OPTIONS.items():
        alone = batch_and_alone(net, options)[1]
        np.testing.assert_allclose(got[case], alone, rtol=1e-5, atol=1e-5 * alone.max(), err_msg=case)
    np.testing.assert_allclose(got["boxes"], batch_and_alone(net, OPTIONS["paper"], boxes=True)[1], atol=1e-4)
