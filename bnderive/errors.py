"""The exceptions bnderive raises for input it cannot use.

Every one of them is a user error: the CLI prints its message as one paragraph and exits
with code 2.  A message says what failed, where, and how to fix it.  Anything else that escapes
a command is a bug in bnderive: exit code 4 and a request for a bug report (``cli/common.py``).
"""

from __future__ import annotations


class BnderiveError(Exception):
    """Base class: the input could not be used (exit code 2)."""


class SpecError(BnderiveError, ValueError):
    """The configuration (mode, sizes, conventions) is invalid."""


class LimitError(SpecError):
    """A size, count or value is above the cap bnderive sets for it (``core/limits.py``): the
    message names the cap and why it is there."""


class FormError(BnderiveError):
    """A form file could not be read or does not describe a checkable form."""


class InputFileError(FormError):
    """A file the user named cannot be read: missing, not a regular file, too large, binary or
    not UTF-8 (``read/files.py``)."""


class EvaluationError(BnderiveError):
    """An expression could not be evaluated for the requested sizes."""
