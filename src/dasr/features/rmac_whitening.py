"""R-MAC's own regional PCA-whitening (Tolias et al., ICLR 2016), learned on another collection.

Tolias et al. whiten every R-MAC region vector before summing them, with a PCA-whitening learned
on the region vectors of an independent collection (Paris6k for Oxford5k, and back). Without it
R-MAC is handicapped against methods whose regions are whitened: :func:`learn_rmac_whitening`
learns it on a folder of images with an ``rmac`` extractor, and an extractor given the file
(``rmac_whitening``) applies it (:func:`dasr.features.pooling.rmac`). The file is an ordinary
whitening file (:func:`dasr.features.whitening.save_whitening`) whose metadata records the
extractor's configuration and the images it was learned on.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from dasr.errors import InputError
from dasr.features.whitening import learn_pca_whitening, save_whitening
from dasr.io.images import ImageError, list_images, load_image

if TYPE_CHECKING:  # the network is imported by whoever builds the extractor, not by the command line
    from dasr.features.extractor import Extractor

__all__ = ["learn_rmac_whitening"]


def learn_rmac_whitening(extractor: Extractor, folder: str | os.PathLike, out: str | os.PathLike,
                         dim: int | None = None, names: Sequence[str] | None = None,
                         progress: bool = True) -> dict:
    """Learns the PCA-whitening of R-MAC region vectors on a folder's images and saves it.

    Args:
      extractor: an ``rmac`` extractor without a region whitening (its network, layer and input
        size are the ones the whitening is for).
      folder: the images of ANOTHER collection than the ones it will describe.
      out: destination ``.npz`` (atomic).
      dim: output dimension (None: every component with non-negligible variance).
      names: the images to use, relative to ``folder`` (None: every image under it).
      progress: show a bar.

    Returns:
      The whitening parameters.

    Raises:
      InputError: not an rmac extractor, or fewer than two region vectors (an undecodable image
        is reported on stderr and skipped).
    """
    if extractor.method != "rmac" or extractor.rmac_whitening is not None:
        raise InputError("the R-MAC region whitening is learned with a plain rmac extractor "
                         f"(got {extractor.method}{' with a region whitening' if extractor.rmac_whitening else ''})")
    names = list_images(folder) if names is None else list(names)
    vectors, used = [], 0
    for name in tqdm(names, desc="R-MAC regions", unit="img", disable=not progress):
        try:
            image = load_image(os.path.join(os.fspath(folder), name))
        except ImageError as e:
            print(f"skipped: {e}", file=sys.stderr)
            continue
        vectors.append(extractor.rmac_region_vectors(image))
        used += 1
    x = np.concatenate(vectors) if vectors else np.zeros((0, 0))
    if len(x) < 2:
        raise InputError(f"{folder}: needs at least 2 R-MAC region vectors to learn a whitening, has {len(x)}")
    params = learn_pca_whitening(x, dim=dim, progress=progress)
    save_whitening(out, params, {"learned_from": os.fspath(folder), "images": used, "regions": int(len(x)),
                                 "config": extractor.config(), "kind": "rmac-regions"})
    return params
