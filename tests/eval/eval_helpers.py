"""Small builders shared by the tests of dasr.eval: empty image files, text files, tiny stores."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dasr.store import StoreWriter


def touch(root: Path, *paths: str) -> None:
    """Empty files at ``root/<path>`` (the loaders only check that images exist)."""
    for p in paths:
        (root / p).parent.mkdir(parents=True, exist_ok=True)
        (root / p).write_bytes(b"")


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def write_store(path: Path, images: list[str], feats: list[np.ndarray], config: dict,
                boxes: list[np.ndarray] | None = None) -> Path:
    """A finished region store: image ``i`` gets the rows ``feats[i]`` (boxes: the given ones or 10-40)."""
    with StoreWriter(path, config, "/fake") as w:
        for i, (img, f) in enumerate(zip(images, feats)):
            n = len(f)
            b = boxes[i] if boxes is not None else np.tile(np.array([[10, 10, 40, 40]], np.float32), (n, 1))
            w.add(img, i, (100, 100), {"boxes": np.asarray(b, np.float32), "scores": np.ones(n, np.float32),
                                       "features": np.asarray(f, np.float32)})
    return path
