"""TensorFlow's start-up banners, kept off the command's stderr.

TensorFlow's C++ libraries log when they load ("oneDNN custom operations are on", "This
TensorFlow binary is optimized to use...") through absl before its logging is set up, so
``TF_CPP_MIN_LOG_LEVEL`` does not reach them (TensorFlow 2.21), and on CPUs where oneDNN is on by
default (AVX512_VNNI, AVX512_BF16, AMX) each dasr command began with them, twice.  The command
therefore imports TensorFlow, whenever something first imports it, with file descriptor 2 sent to
a temporary file, then writes back every line but those banners: a warning or a crash message
printed during the import still reaches the user.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import sys
import tempfile
from collections.abc import Iterator

__all__ = ["BANNERS", "filtered_stderr", "quiet_tensorflow_import"]

# Lines that say nothing the user can act on (each is matched as a substring of a line).
BANNERS = ("oneDNN custom operations are on", "All log messages before absl::InitializeLog() is called",
           "This TensorFlow binary is optimized to use", "To enable the following instructions:")


@contextlib.contextmanager
def filtered_stderr(drop: tuple[str, ...] = BANNERS) -> Iterator[None]:
    """Within the block, file descriptor 2 (C++ and Python alike) goes to a temporary file; on
    leaving, its lines without any of ``drop`` are written to stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [line for line in held.read().decode(errors="replace").splitlines(keepends=True)
                    if not any(d in line for d in drop)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


class _Loader(importlib.abc.Loader):
    """The real loader of ``tensorflow``, run inside :func:`filtered_stderr`."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def __getattr__(self, name: str):
        return getattr(self.loader, name)  # resources, is_package, ...: the real loader's

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        with filtered_stderr():
            self.loader.exec_module(module)


class _Finder(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` the usual way once, and wraps its loader in :class:`_Loader`."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # one import: the usual finders answer from now on
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader)
        return spec


def quiet_tensorflow_import() -> None:
    """Filter :data:`BANNERS` from stderr while TensorFlow is first imported (by anything) in this process."""
    if "tensorflow" not in sys.modules and not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
