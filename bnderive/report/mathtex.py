"""The report's mathematics: re-rendered from what the readers parsed, and checked before use.

A derivation's own LaTeX never reaches a report: the SymPy expressions the reader built from it
are printed again by ``ReportTexPrinter`` (``core.printing.TexPrinter`` with terms in the order
people write them), and the result is checked once more (``safe_math``): printable ASCII only,
balanced braces, and every control sequence from an allow-list of mathematics (SymPy's Greek
letters and accents, fractions, roots, sums).  So ``\\input``, ``\\write18``, ``\\openout``,
``\\catcode`` and their kin cannot reach a TeX engine (or MathJax) through a report, whatever a
symbol is named; an expression that fails the check is shown as escaped Unicode text instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import sympy as sp
from sympy.printing.latex import greek_letters_set, modifier_dict, tex_greek_dictionary

from bnderive.core.printing import TexPrinter, unicode

#: Control sequences of mathematics that a report's formulas may contain.
ALLOWED = frozenset(
    {
        *(name for name in greek_letters_set),
        *(v.lstrip("\\") for v in tex_greek_dictionary.values() if v.startswith("\\")),
        *(
            m.lstrip("\\")
            for f in modifier_dict.values()
            for m in re.findall(r"\\[A-Za-z]+", f("x"))
            if m != "\\mathscr"  # needs mathrsfs, which a report does not load
        ),
        "frac", "partial", "sqrt", "left", "right", "sum", "prod", "cdot", "times", "hat",
        "limits", "mathrm", "mathbb", "mathbf", "operatorname", "delta", "epsilon",
        "varepsilon", "sigma", "mu", "gamma", "beta", "max", "min", "log", "exp", "quad",
        "qquad", "text", "cdots", "ldots", "infty", "neq", "leq", "geq", "equiv", "approx",
        "pm", "mp", "dot", "bar", "tilde", "vec", "lambda", "ell", "dfrac", "tfrac", "middle",
        "langle", "rangle", "lfloor", "rfloor", "lceil", "rceil", "mathit", "mathcal",
        "boldsymbol", "displaystyle",
    }
)  # fmt: skip
#: Control symbols (a backslash and one character) that only typeset: spaces, braces, a bar.
_SYMBOLS = frozenset(",;:! {}|_")

_COMMAND = re.compile(r"\\([A-Za-z]+|.)")
_PRINTABLE = re.compile(r"^[ -~]*$")


class ReportTexPrinter(TexPrinter):
    """The index notation in LaTeX, positive terms first (x_i − μ, not −μ + x_i)."""

    def _as_ordered_terms(self, expr: sp.Expr, order: str | None = None) -> list[sp.Expr]:
        terms = super()._as_ordered_terms(expr, order)
        return [t for t in terms if not t.could_extract_minus_sign()] + [
            t for t in terms if t.could_extract_minus_sign()
        ]


def unsafe_reason(tex: str) -> str | None:
    """Why ``tex`` may not enter a report as mathematics, or None when it may."""
    if not _PRINTABLE.match(tex):
        return "a character outside printable ASCII"
    if re.search(r"(?<!\\)(?:\\\\)*\\$", tex):
        return "a backslash at the end"
    bare = re.sub(r"\\[^A-Za-z]", "", tex)  # control symbols (\{, \,) are checked below
    depth = 0
    for ch in bare:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return "unbalanced braces"
    if depth:
        return "unbalanced braces"
    if re.search(r"[#%$&~]", bare):
        return "a character TeX treats specially (#, %, $, &, ~)"
    for match in _COMMAND.finditer(tex):
        name = match.group(1)
        if len(name) == 1 and not name.isalpha():
            if name not in _SYMBOLS:
                return f"the control symbol \\{name}"
        elif name not in ALLOWED:
            return f"the control sequence \\{name}"
    return None


def safe_math(expr: sp.Basic) -> str | None:
    """``expr`` as LaTeX a report may contain, or None when the printed text fails the check
    (the printers then show it as escaped text)."""
    tex = ReportTexPrinter().doprint(expr)
    return tex if unsafe_reason(tex) is None else None


def line_math(sides: Sequence[sp.Basic | None]) -> tuple[str | None, str]:
    """A parsed line as one formula (``a = b = c``; an unread member is ``\\text{(not read)}``),
    and the same in Unicode for where the formula cannot be used."""
    parts: list[str] = []
    plain: list[str] = []
    ok = True
    for k, side in enumerate(sides):
        if side is None:
            if k:
                parts.append(r"\text{(not read)}")
                plain.append("(not read)")
            continue
        tex = safe_math(side)
        ok = ok and tex is not None
        parts.append(tex or "")
        plain.append(unicode(side))
    if sides and sides[0] is None:
        parts.insert(0, "")
        plain.insert(0, "")
    return ((" = ".join(parts)).strip() if ok and parts else None, " = ".join(plain).strip())


__all__ = ["ALLOWED", "ReportTexPrinter", "line_math", "safe_math", "unsafe_reason"]
