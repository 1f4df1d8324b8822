"""``<store>.skipped.tsv``: the images that could not be processed, one ``image<TAB>reason`` line each.

Names and reasons are stored as ``text.encode("utf-8", "surrogateescape")``, so
non-UTF-8 file names survive; lines are sorted by image name.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from dasr.store.files import PathLike, atomic_write_bytes, remove, skipped_path
from dasr.store.format import decode_name, encode_name

__all__ = ["clean_reason", "read_skipped", "write_skipped"]


def clean_reason(reason: str) -> str:
    """``reason`` on one line: tabs and newlines would break the TSV format."""
    return " ".join(str(reason).replace("\x00", " ").split()) or "unknown"


def read_skipped(path: PathLike) -> dict[str, str]:
    """Read ``<store>.skipped.tsv``.

    Args:
      path: the store path (not the tsv path).

    Returns:
      image -> reason, in file order; empty when there is no such file.
    """
    tsv = skipped_path(path)
    skips: dict[str, str] = {}
    try:
        data = tsv.read_bytes()
    except FileNotFoundError:
        return skips
    for line in data.splitlines():
        if line:
            image, _, reason = line.partition(b"\t")
            skips[decode_name(image)] = decode_name(reason)
    return skips


def write_skipped(path: Path, skips: Mapping[str, str]) -> None:
    """Replace ``<path>.skipped.tsv`` atomically by ``skips`` (delete it when empty).

    Args:
      path: the store path.
      skips: image -> reason (already cleaned by :func:`clean_reason`).
    """
    tsv = skipped_path(path)
    if not skips:
        remove(tsv)  # a stale list from an earlier run would be wrong now
        return
    lines = b"".join(encode_name(k) + b"\t" + encode_name(v) + b"\n" for k, v in sorted(skips.items()))
    atomic_write_bytes(tsv, lambda handle: handle.write(lines))
