"""Reading a pickle that may come from anywhere: only data, never code.

The revisited Oxford / Paris ground truth ships as ``gnd_<name>.pkl``. ``pickle.load`` would run
whatever callable a crafted file names (``os.system`` included), so :func:`load_data_pickle`
resolves only the globals plain data needs: builtin containers and scalars (which pickle
encodes without any global) and numpy arrays, numpy scalars and dtypes, through the very
reconstruct functions numpy's own pickles name.
"""

from __future__ import annotations

import codecs
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["load_data_pickle", "ALLOWED_GLOBALS"]

# The reconstruct functions numpy's pickles name (numpy 2 writes ``numpy._core.multiarray``; older
# files name ``numpy.core.multiarray``): taken from numpy's own reducers, not imported by name.
_RECONSTRUCT = np.zeros(1).__reduce__()[0]
_FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]  # protocol 5 rebuilds contiguous arrays from their bytes
_SCALAR = np.float64(0.0).__reduce__()[0]

ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    **{(module, "_reconstruct"): _RECONSTRUCT for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(module, "scalar"): _SCALAR for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(module, "_frombuffer"): _FROMBUFFER for module in ("numpy.core.numeric", "numpy._core.numeric")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    # Protocol-2 pickles (written by Python 2 or with protocol=2) encode bytes through these.
    ("_codecs", "encode"): codecs.encode,
    ("builtins", "bytes"): bytes,
    ("builtins", "bytearray"): bytearray,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
}


class _DataUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        # Protocol-2 pickles name the builtins by their Python 2 module (pickle's fix_imports,
        # which this method replaces, would map it the same way).
        module = "builtins" if module == "__builtin__" else module
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global {module}.{name} (only data is read)") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refused persistent id (only data is read)")


def load_data_pickle(path: str | Path) -> Any:
    """The data in the pickle file ``path``, refusing anything that is not data.

    Args:
      path: the pickle file.

    Returns:
      The unpickled object (builtin containers and scalars, numpy arrays and scalars).

    Raises:
      pickle.UnpicklingError: the file names a global outside :data:`ALLOWED_GLOBALS` (nothing
        it names is called), is not a pickle, or gives numpy arguments it refuses.
      EOFError: the file ends early.
    """
    with open(path, "rb") as f:
        data = f.read()
    try:
        return _DataUnpickler(io.BytesIO(data)).load()
    except (ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        # An allowed reconstruct function given arguments numpy refuses (e.g. an object array
        # made from raw memory): malformed data, reported as such.
        raise pickle.UnpicklingError(f"malformed data ({type(exc).__name__}: {exc})") from exc
