"""The one mark of a user error: bad input, not a bug.

Every exception about the user's input (an option, a file, a configuration value, an image)
derives from :class:`UserError`; the command line prints such an error as one line
(``dasr: error: ...``) with exit code 2, and anything else, a bug, with its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input; the message names the file or option and the problem."""


class InputError(UserError, ValueError):
    """A bad value in the user's input: an option, a configuration key, a data file's content.

    A ValueError too, so that library callers may keep catching ValueError.
    """


class InputWarning(UserWarning):
    """A problem with the user's input that the run goes past (the command line prints it as one
    line, ``dasr: warning: ...``)."""
