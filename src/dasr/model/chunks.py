"""Seeds through the probability backprop in chunks: one image's, or several images' at once.

The backprop (:class:`dasr.model.backprop.ProbabilityBackprop`) takes its seeds on the batch
axis.  A chunk of ``chunk`` seeds bounds the memory of one step.  Two ways to cut the seeds:

* one image (``image=None``): the state is that image's; the maps path sends the last chunk as
  it is (the CPU default, whose stores stay bit-identical), the boxes path pads it;
* a batch of images of one input shape (``image``: each seed's row in the batch): the seeds of
  all the images, in order, cut into chunks that may hold several images' seeds; every chunk
  is padded to ``chunk`` rows (zero seeds of image 0: all-zero maps, dropped), so one compiled
  step serves every chunk.
"""

from __future__ import annotations

import keras
import numpy as np

kops = keras.ops


def padded_batch(n: int) -> int:
    """The batch size ``n`` images of one shape are padded to: the next power of two.

    A compiling backend (JAX) compiles once per batch size: powers of two bound the sizes to
    log2(n) + 1 per image shape while padding at most n - 1 blank images.
    """
    return 1 << (n - 1).bit_length()


def seed_probabilities(top, seeds: np.ndarray, rule: str = "paper", image: np.ndarray | None = None):
    """P at the top layer for each seed: the seed's activation vector at its cell, 0 elsewhere.

    The paper approximates P(B_ij) by B_ij at the last conv layer (Section 3.1).  The authors'
    code starts from a 1 at the peak of the channel-mean map, i.e. 1/C on every channel of the
    seed's cell (``rule="authors"``).

    Args:
      top: (B, h, w, C) activations of the top layer (array or backend tensor); B = 1 unless
        ``image`` is given.
      seeds: (S, 2) int (row, col) positions.
      rule: ``paper`` or ``authors``.
      image: None, or (S,) the batch row of ``top`` each seed belongs to.

    Returns:
      (S, h, w, C) backend tensor.
    """
    top = kops.convert_to_tensor(top)
    h, w = top.shape[1], top.shape[2]
    seeds = np.asarray(seeds, np.int64).reshape(-1, 2)
    onehot = np.zeros((len(seeds), h, w, 1), np.float32)
    onehot[np.arange(len(seeds)), seeds[:, 0], seeds[:, 1], 0] = 1.0
    if rule == "authors":
        return kops.convert_to_tensor(np.repeat(onehot, top.shape[3], axis=3) / np.float32(top.shape[3]))
    if image is not None:
        top = kops.take(top, kops.convert_to_tensor(np.asarray(image, np.int32)), axis=0)
    return kops.convert_to_tensor(onehot) * top


def _chunks(top, seeds: np.ndarray, image: np.ndarray | None, chunk: int, rule: str, pad: bool):
    """Yields (P at the top (rows, h, w, C), each row's image or None, real rows n) per chunk.

    ``pad``: every chunk has ``chunk`` rows, the padding zero seeds (no probability: all-zero
    maps) of image 0.
    """
    seeds = np.asarray(seeds, np.int64).reshape(-1, 2)
    for i in range(0, len(seeds), chunk):
        part = seeds[i:i + chunk]
        n = len(part)
        rows = None if image is None else np.asarray(image[i:i + chunk], np.int32)
        probs = seed_probabilities(top, part, rule, rows)
        if pad and n < chunk:
            probs = kops.pad(probs, [[0, chunk - n], [0, 0], [0, 0], [0, 0]])
            rows = None if rows is None else np.concatenate([rows, np.zeros(chunk - n, np.int32)])
        yield probs, rows, n


def seed_maps(bp, state: dict, top, seeds: np.ndarray, *, chunk: int, rule: str,
              image: np.ndarray | None = None) -> np.ndarray:
    """(S, H, W) probability maps of ``seeds``, back-propagated ``chunk`` at a time.

    Args:
      bp: the :class:`~dasr.model.backprop.ProbabilityBackprop`.
      state: its :meth:`prepare` output for the image(s).
      top: (B, h, w, C) top-layer activations of the image(s).
      seeds: (S, 2) (row, col) cells of the top layer.
      chunk: seeds per step.
      rule: the seed rule (:func:`seed_probabilities`).
      image: None (one image) or (S,) each seed's batch row.

    Returns:
      float32 maps, one per seed, in ``seeds``' order; (0, 1, 1) without seeds.
    """
    out = []
    # One image: the last chunk as it is (today's stores, bit for bit); a batch: fixed shapes.
    for probs, rows, n in _chunks(top, seeds, image, max(1, chunk), rule, pad=image is not None):
        out.append(np.asarray(bp.backprop(state, probs, rows))[:n])
    return np.concatenate(out, 0) if out else np.zeros((0, 1, 1), np.float32)


def seed_boxes(bp, state: dict, top, seeds: np.ndarray, *, chunk: int, rule: str, tau: float,
               weighted: bool, percentile: float | None, image: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each seed's Eq. 4 region, computed on the device with its map (never brought back).

    Every step has ``chunk`` rows (the last one padded with zero seeds), so one compiled step
    is reused for every chunk of every image (or batch) of a shape.

    Args:
      bp, state, top, seeds, chunk, rule, image: as in :func:`seed_maps`.
      tau, weighted, percentile: the keep rule (:func:`dasr.model.moments.device_ellipses`).

    Returns:
      (boxes (S, 4) in network-input pixels, ellipses (S, 5), kept (S,)), NumPy float32, not
      clipped to the image.
    """
    parts = []
    for probs, rows, n in _chunks(top, seeds, image, max(1, chunk), rule, pad=True):
        out = bp.backprop_ellipses(state, probs, rows, tau=tau, weighted=weighted, percentile=percentile)
        parts.append([a[:n] for a in out])
    if not parts:
        return np.zeros((0, 4), np.float32), np.zeros((0, 5), np.float32), np.zeros(0, np.float32)
    return tuple(np.concatenate(arrays, 0) for arrays in zip(*parts))
