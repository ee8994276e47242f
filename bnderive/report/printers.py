"""What the report printers share: dispatch to ``_print_X`` by the model's class names.

A printer (``report.latex.LatexReport``, ``report.markdown.MarkdownReport``) has one
``_print_X`` method per class X of ``report.model`` (as SymPy's printers do), and one escaping
function for every user string (``text``); mathematics goes through ``mathtex``.  Nothing else
writes a report.
"""

from __future__ import annotations

from typing import Any


class ReportPrinter:
    """``doprint(obj)`` calls ``_print_<class name>`` for the first class in obj's MRO."""

    def doprint(self, obj: Any) -> str:
        return self._print(obj)

    def _print(self, obj: Any) -> str:
        for cls in type(obj).__mro__:
            method = getattr(self, f"_print_{cls.__name__}", None)
            if method is not None:
                return method(obj)
        raise TypeError(f"{type(self).__name__} cannot print a {type(obj).__name__}")

    def text(self, value: object) -> str:  # pragma: no cover - each format defines it
        raise NotImplementedError


__all__ = ["ReportPrinter"]
