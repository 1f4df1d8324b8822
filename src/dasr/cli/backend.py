"""``dasr --backend tensorflow|jax``: the Keras backend, chosen before Keras is imported.

Keras fixes its backend once per process, when it is first imported, from ``KERAS_BACKEND``.
The command line therefore reads ``--backend`` from the arguments before it imports anything
that imports Keras, and sets ``KERAS_BACKEND``; without the option, Keras' own rule applies
(``KERAS_BACKEND``, else TensorFlow).  Only the top-level option counts (``dasr --backend jax
extract ...``), as argparse parses it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from dasr.errors import UserError

BACKENDS = ("tensorflow", "jax")
OPTION = "--backend"


class BackendError(UserError):
    """The requested backend cannot be used in this process."""


def requested_backend(argv: Sequence[str]) -> str | None:
    """The value of the top-level ``--backend`` option (before the subcommand), or None.

    Args:
      argv: the command's arguments (without the program name).

    Returns:
      The backend named, or None when the option is absent or has no value (argparse then
      reports the missing value; an unknown name is refused by :func:`select_backend`).
    """
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == OPTION:
            return argv[i + 1] if i + 1 < len(argv) else None
        if arg.startswith(OPTION + "="):
            return arg[len(OPTION) + 1:]
        if not arg.startswith("-"):
            return None  # the subcommand: its own options are not the top-level one
        i += 1
    return None


def select_backend(backend: str | None) -> None:
    """Make ``backend`` Keras' backend in this process (None: leave Keras' own choice).

    Raises:
      BackendError: the name is not one of :data:`BACKENDS`, or Keras is already loaded in this
        process with another backend (e.g. a caller of :func:`dasr.cli.main` that imported it).
    """
    if backend is None:
        return
    if backend not in BACKENDS:
        raise BackendError(f"--backend {backend}: choose one of {', '.join(BACKENDS)}")
    keras = sys.modules.get("keras")
    if keras is not None:
        loaded = keras.backend.backend()
        if loaded != backend:
            raise BackendError(f"--backend {backend}: Keras is already loaded with the {loaded} backend in this process")
        return
    os.environ["KERAS_BACKEND"] = backend
