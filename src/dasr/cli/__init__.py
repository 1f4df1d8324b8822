"""The ``dasr`` command: argparse only (:mod:`~dasr.cli.parser`, :mod:`~dasr.cli.options`), then
library calls (:mod:`~dasr.cli.commands`); the library never imports this package.

Errors: a user error (:class:`dasr.errors.UserError` and the library's input errors) is one line,
``dasr: error: ...``, exit code 2; ``--debug`` (or ``DASR_DEBUG=1``) shows its traceback too.  Any
other exception is a bug and ends the command with its traceback (exit code 1).

Interruption: Ctrl-C (exit code 130) and SIGTERM (143, what batch schedulers and ``kill`` send)
unwind the same way, so the images already extracted are written to the store's parts and the
same command resumes; only SIGKILL loses the images of the last ``flush_seconds``.
"""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
import warnings

from dasr.cli.backend import requested_backend, select_backend
from dasr.cli.quiet import quiet_tensorflow_import
from dasr.errors import InputWarning, UserError

# TensorFlow's start-up chatter buries the output people came for.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is: every ``except``/``finally`` that saves work on
    Ctrl-C saves it on SIGTERM too."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    # signal.signal works only in the main thread; a caller running main() elsewhere keeps its own.
    if threading.current_thread() is not threading.main_thread():
        return _main(argv)
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return _main(argv)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _one_line_input_warnings(default):
    """``warnings.showwarning`` that prints an :class:`InputWarning` as one line, like the errors,
    and hands any other warning to ``default``."""
    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, InputWarning):
            print(f"dasr: warning: {message}", file=file or sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)
    return show


def _main(argv: list[str] | None) -> int:
    # Image names that are not valid UTF-8 are str with surrogate escapes; a strict stdout (any
    # UTF-8 locale but C/POSIX) would fail on them: print their original bytes instead, like ls.
    if isinstance(sys.stdout, io.TextIOWrapper) and sys.stdout.errors == "strict":
        sys.stdout.reconfigure(errors="surrogateescape")
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv or os.environ.get("DASR_DEBUG", "") not in ("", "0")
    try:
        # Keras reads its backend when first imported: the library comes after the choice.
        select_backend(requested_backend(argv))
    except UserError as e:
        if debug:
            raise
        print(f"dasr: error: {e}", file=sys.stderr)
        return 2
    if not debug:  # TensorFlow's own start-up logs only with --debug
        quiet_tensorflow_import()
    from dasr.cli.parser import build_parser
    from dasr.eval.datasets import DatasetMissingError
    from dasr.model.weights import WeightsError

    args = build_parser().parse_args(argv)
    debug = args.debug or debug
    previous_show = warnings.showwarning
    warnings.showwarning = _one_line_input_warnings(previous_show)
    try:
        return args.func(args)
    except UserError as e:
        if debug:
            raise
        multi_line = isinstance(e, (DatasetMissingError, WeightsError))
        msg = str(e) if multi_line else (str(e).splitlines() or [type(e).__name__])[0]
        print(f"dasr: error: {msg}", file=sys.stderr)
        return 2
    except Terminated:
        print("dasr: terminated (run the same command again to resume)", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("dasr: interrupted (run the same command again to resume)", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = previous_show

