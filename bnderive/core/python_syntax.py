"""Python's ``ast.parse``, one call at a time in the whole process.

CPython 3.11 keeps the AST constructor's recursion depth in interpreter-wide state: two threads
building syntax trees at once can corrupt it and raise "SystemError: AST constructor recursion
depth mismatch (before=…, after=…)" (python/cpython#106905; fixed in later versions).
``check-impl DIR`` checks files on a thread pool (``usercode.folder``), and each file's check
parses the user's Python file, form expressions and code lines, so a class of submissions now and
then lost a file to "bnderive failed on this file".  Every parse of bnderive goes through
``parse``, which holds one lock: parsing is a few milliseconds, and the threads are there to
wait on their children, not to parse in parallel.
"""

from __future__ import annotations

import ast
import threading
from typing import Literal

_LOCK = threading.Lock()


def parse(
    source: str, filename: str = "<unknown>", mode: Literal["exec", "eval"] = "exec"
) -> ast.AST:
    """``ast.parse(source, filename, mode)`` under the process's parse lock."""
    with _LOCK:
        return ast.parse(source, filename=filename, mode=mode)
