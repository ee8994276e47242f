"""The exceptions bnderive raises for input it cannot use.

Every one of them is a user error: the CLI prints its message as one paragraph and exits
with code 2.  A message says what failed, where, and how to fix it.
"""

from __future__ import annotations


class BnderiveError(Exception):
    """Base class: the input could not be used (exit code 2)."""


class SpecError(BnderiveError, ValueError):
    """The configuration (mode, sizes, conventions) is invalid."""


class FormError(BnderiveError):
    """A form file could not be read or does not describe a checkable form."""


class EvaluationError(BnderiveError):
    """An expression could not be evaluated for the requested sizes."""
