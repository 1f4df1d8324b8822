"""``<store>.skipped.tsv``: the images that could not be processed, one ``image<TAB>reason`` line each.

A line may carry two more fields, ``<TAB>size<TAB>sha256``: the skipped file's size in bytes and
SHA-256 when it could be read (what was skipped, for the record: a skipped image is retried by
every run anyway). Names and reasons are stored as ``text.encode("utf-8", "surrogateescape")``, so
non-UTF-8 file names survive; lines are sorted by image name.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from dasr.store.files import PathLike, atomic_write_bytes, remove, skipped_path
from dasr.store.format import decode_name, encode_name

__all__ = ["clean_reason", "read_skipped", "read_skipped_identity", "write_skipped"]


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
    return {image: reason for image, (reason, _) in _entries(path).items()}


def read_skipped_identity(path: PathLike) -> dict[str, tuple[int, str]]:
    """The (size, SHA-256) recorded for skipped images of ``<store>.skipped.tsv`` that have one.

    Args:
      path: the store path (not the tsv path).

    Returns:
      image -> (size in bytes, hex SHA-256); images skipped without them are absent.
    """
    return {image: ident for image, (_, ident) in _entries(path).items() if ident is not None}


def _entries(path: PathLike) -> dict[str, tuple[str, tuple[int, str] | None]]:
    tsv = skipped_path(path)
    entries: dict[str, tuple[str, tuple[int, str] | None]] = {}
    try:
        data = tsv.read_bytes()
    except FileNotFoundError:
        return entries
    for line in data.splitlines():
        if line:
            image, _, rest = line.partition(b"\t")
            fields = rest.split(b"\t")
            ident = None
            if len(fields) == 3 and fields[1].isdigit() and len(fields[2]) == 64:
                ident = (int(fields[1]), fields[2].decode("ascii"))
            entries[decode_name(image)] = (decode_name(fields[0]), ident)
    return entries


def write_skipped(path: Path, skips: Mapping[str, str],
                  identity: Mapping[str, tuple[int, str]] | None = None) -> None:
    """Replace ``<path>.skipped.tsv`` atomically by ``skips`` (delete it when empty).

    Args:
      path: the store path.
      skips: image -> reason (already cleaned by :func:`clean_reason`).
      identity: image -> (size, SHA-256) of the skipped files that could be read.
    """
    identity = identity or {}
    tsv = skipped_path(path)
    if not skips:
        remove(tsv)  # a stale list from an earlier run would be wrong now
        return
    def tail(image: str) -> bytes:
        return b"\t%d\t%s" % (identity[image][0], identity[image][1].encode("ascii")) if image in identity else b""

    lines = b"".join(encode_name(k) + b"\t" + encode_name(v) + tail(k) + b"\n" for k, v in sorted(skips.items()))
    atomic_write_bytes(tsv, lambda handle: handle.write(lines))
