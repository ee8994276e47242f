"""The caps: how large an input bnderive accepts, and why.  One place for all of them.

Every cap is checked before any work starts, and a value above it is a ``LimitError`` (exit
code 2) whose message names the cap and the measured cost behind it, so that a user knows what
to do instead.  The costs were measured on the 2-core, 23 GB development machine (DESIGN.md §7);
each cap sits where the work stops taking seconds and starts taking minutes or gigabytes.  The
caps also bound what a hostile file can make bnderive do: a form, a derivation or an option
can make it work for seconds, never for hours, and never make it run out of memory.

The README's "Security model" section lists them; ``tests/test_hostile.py`` checks each one.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

from bnderive.errors import LimitError


@dataclass(frozen=True)
class Cap:
    """A cap: the largest value bnderive accepts for ``what``, ``why``, and what to do instead."""

    what: str
    limit: int
    why: str
    instead: str = ""
    unit: str = ""  # how the limit reads ("1 MiB"), when not as a plain number

    @property
    def shown(self) -> str:
        return self.unit or f"{self.limit:,}"

    def check(self, value: int, shown: str | None = None) -> None:
        """Raise ``LimitError`` when ``value`` is above the cap."""
        if value > self.limit:
            raise LimitError(self.message(shown if shown is not None else f"{value:,}"))

    def message(self, shown: str) -> str:
        text = f"{self.what} is {shown}, above the cap of {self.shown}: {self.why}."
        return text + (f" {self.instead}" if self.instead else "")


# -- check ------------------------------------------------------------------------------------------
EXACT_M = Cap(
    "M for the exact method",
    1024,
    "an exact check at M = 1024 takes about 5 s and 0.4 GB per form, at M = 4096 over "
    "2 minutes and 5.6 GB",
    "Use --method random for large M (--m).",
)
EXACT_TOTAL_M = Cap(
    "The sum of M over the exact sizes and shapes",
    4096,
    "each size is a separate exact check and the time adds up (four checks at M = 1024 take "
    "about 20 s per form)",
    "Give fewer sizes, e.g. --n 1-8,64,1024.",
)
EXACT_CHANNELS = Cap(
    "The number of features or channels of an exact shape",
    64,
    "every channel is checked in its own symbols (C = 1024 takes 20 s per form); channels "
    "never mix, so C = 2 already shows that",
    "Use C ≤ 64.",
)
RANDOM_M = Cap(
    "M for the randomized method (--m)",
    65536,
    "a refuted line's counterexample is searched in exact rationals, which at M = 65536 takes "
    "about 6 s and 0.6 GB and grows with M (M = 2^20: 100 s, 8 GB)",
    "The default M = 4096 already exercises every path of the graph.",
)
TRIALS = Cap(
    "--trials",
    100,
    "every trial is one more pass over every line (100 trials of all built-in forms take about "
    "15 s); 3 trials already bound the chance of a wrong 'holds' below 10^-27",
)
JOBS = Cap(
    "--jobs",
    16,
    "each worker is a forked copy of bnderive (about 0.1 to 0.5 GB); more workers than cores "
    "only add memory",
    "Leave --jobs out for one per core (at most 2).",
)

# -- derive, explain, bench ---------------------------------------------------------------------------
SIZE = Cap(
    "A size",
    1_000_000,
    "no BatchNorm layer has a dimension that large, and the caps on M and on the number of "
    "elements below are far smaller",
)
DERIVE_M = Cap(
    "M = N·H·W for derive",
    256,
    "derive prints the value for channel 0 in full: at M = 256 that is 77 kB of text and "
    "about 4 s, at M = 4096 1.4 MB and 80 s",
    "Use --general for the derivation for every M.",
)
EXPLAIN_M = Cap(
    "M = N·H·W for explain",
    4096,
    "explain evaluates the exact gradient element by element (M = 16384 takes 20 s)",
)
EXPLAIN_CHANNELS = Cap(
    "The number of features or channels for explain",
    64,
    "each feature is evaluated exactly on its own (1024 features take 40 s) and features never mix",
)
EXPLAIN_ELEMENTS = Cap(
    "N·C·H·W for explain",
    8192,
    "explain evaluates every element exactly (8192 elements take about 10 s, 16384 about 20 s)",
)
BENCH_ELEMENTS = Cap(
    "The number of elements of a bench shape",
    2**25,
    "bench holds about ten arrays of the shape at once: 2^25 elements are 256 MiB per float64 "
    "array, about 2.7 GB in all",
    unit="2^25 = 33,554,432",
)
BENCH_REPEATS = Cap(
    "--repeats",
    1000,
    "each round runs every candidate once (a round of the default shapes takes about a second)",
)
TORCH_THREADS = Cap("--torch-threads", 256, "more threads than that is no machine's core count")

# -- stability ----------------------------------------------------------------------------------------
STABILITY_M = Cap(
    "M for the stability study (--m, --max-m)",
    65536,
    "the exact reference is computed in rationals, which takes about 2 s per point at "
    "M = 65536 and grows with M; the float results of a larger set add no new fact",
    "The default M sweep goes to 4096.",
)

# -- readers ------------------------------------------------------------------------------------------
FILE_BYTES = Cap(
    "The file's size",
    1 << 20,
    "a form or a derivation is text of a few kilobytes (the longest real derivation bnderive "
    "was tried on has 11 kB); a larger file is not one",
    unit="1 MiB",
)
SOURCE_BYTES = Cap(
    "The file's size",
    1_000_000,
    "a BatchNorm layer is a few kilobytes of Python (the longest real implementation bnderive "
    "was tried on has 9 kB); a larger file is not one",
    unit="1 MB",
)
NOTEBOOK_BYTES = Cap(
    "The notebook's size",
    16 << 20,
    "a notebook carries its outputs (plots as base64) besides the derivation; 16 MiB is far "
    "more than a lesson's",
    unit="16 MiB",
)
EQUATIONS = Cap(
    "The number of equations",
    200,
    "every equation is checked by every method; published derivations have at most a few dozen",
)
EXPRESSION_CHARACTERS = Cap(
    "The expression's length in characters",
    4000,
    "the longest expression of the built-in forms and the corpus has 136",
)
EXPRESSION_NODES = Cap(
    "The number of operations and operands in the expression",
    2000,
    "the largest expression of the built-in forms and the corpus has 122; each one is "
    "evaluated at every size",
)
EXPRESSION_DEPTH = Cap(
    "The nesting depth of the expression",
    100,
    "the deepest expression of the built-in forms and the corpus is 12 levels (a sum of n "
    "terms, read left to right, is n levels deep)",
)
LATEX_TOKENS = Cap(
    "The number of tokens on one line",
    2000,
    "the longest line of the published derivations bnderive knows has 247",
)
LATEX_DEPTH = Cap(
    "The nesting depth of the line's syntax tree",
    150,
    "brackets, fractions, roots, scripts and signs nest; the deepest published line bnderive "
    "knows is 31 levels deep",
)
SUM_NESTING = Cap(
    "The nesting of sums (a Σ inside a Σ)",
    3,
    "each nested sum multiplies the work by M; published derivations nest at most 2",
)
EXPONENT = Cap(
    "The exponent's numerator or denominator",
    16,
    "the derivations use powers such as 2, 3, -1/2 and -3/2; a power is expanded when an "
    "expression is checked, and a large one never finishes",
)
DEGREE = Cap(
    "The degree of the expression (its exponents multiplied through nested powers)",
    32,
    "a form's expression is expanded exactly at every size; the built-in forms have degree "
    "at most 6.5",
)
NUMBER_DIGITS = Cap(
    "The number of digits of a number",
    40,
    "exact constants of a derivation have a few digits (0.09999999999999998 has 17)",
)
DECIMAL_EXPONENT = Cap(
    "The decimal exponent of a number",
    30,
    "ε = 1e-5 is usual and 1e-30 is already below any float32's reach; 1e-999999999 would be "
    "a number with a billion digits",
)


def too_large(what: str, shown: str, cap: Cap) -> LimitError:
    """The error for ``what`` (its words replace the cap's own) being ``shown``, above ``cap``."""
    text = f"{what} is {shown}, above the cap of {cap.shown}: {cap.why}."
    return LimitError(text + (f" {cap.instead}" if cap.instead else ""))


# -- numbers given as text ------------------------------------------------------------------------
_DECIMAL = re.compile(
    r"[+-]?(?P<int>[0-9]*)(?:\.(?P<frac>[0-9]*))?(?:[eE](?P<exp>[+-]?[0-9]+))?", re.ASCII
)


def parse_decimal(text: str, what: str) -> Fraction:
    """A decimal (``1e-5``, ``0.1``, ``-3``) or a fraction (``3/2``) as an exact rational, bounded
    before it is built: at most ``NUMBER_DIGITS`` digits and a decimal exponent of at most
    ``DECIMAL_EXPONENT`` (``Fraction("1e-999999999")`` alone would build a billion-digit number).
    NaN, ∞ and anything else is a ``LimitError`` naming ``what``."""
    raw = str(text).strip()
    parts = raw.split("/")
    if len(parts) > 2 or not raw:
        raise LimitError(_not_a_number(what, raw))
    values = []
    for part in parts:
        match = _DECIMAL.fullmatch(part.strip())
        if not match or not (match["int"] or match["frac"]):
            raise LimitError(_not_a_number(what, raw))
        digits = len((match["int"] or "").lstrip("0") + (match["frac"] or ""))
        if digits > NUMBER_DIGITS.limit:
            raise too_large(
                f"{what} = {raw[:40]}…: the number of digits", f"{digits:,}", NUMBER_DIGITS
            )
        exponent = match["exp"] or "0"
        if len(exponent.lstrip("+-0")) > 6 or abs(int(exponent)) > DECIMAL_EXPONENT.limit:
            shown = exponent.lstrip("+-")
            raise too_large(
                f"{what} = {raw}: the size of the decimal exponent", shown, DECIMAL_EXPONENT
            )
        values.append(Fraction(part.strip()))
    if len(values) == 2:
        if values[1] == 0:
            raise LimitError(f"{what} = {raw} divides by zero: give a finite number.")
        return values[0] / values[1]
    return values[0]


def _not_a_number(what: str, raw: str) -> str:
    return (
        f"{what} = {raw!r} is not a finite number: write a decimal or a fraction such as 1e-5, "
        "0.5 or 3/2."
    )


def check_float(value: float, what: str, low: float, high: float) -> float:
    """A finite float within [low, high] (click's FloatRange lets NaN through)."""
    if not math.isfinite(value) or not low <= value <= high:
        raise LimitError(f"{what} is {value}; give a finite number from {low:g} to {high:g}.")
    return value


# -- expressions ------------------------------------------------------------------------------------
#: How many digits a number in an expression may have, and their bits.
_RESULT_DIGITS = 100  # well inside float64's range (10^308): a diagnosis compares in floats too
_RESULT_BITS = int(_RESULT_DIGITS * math.log2(10)) + 1
#: The nodes of a SymPy expression read from one line (the readers' own caps keep it far below).
_EXPRESSION_NODES = 50_000


def _bits(value: object) -> int:
    """The bits of a SymPy rational's numerator and denominator together."""
    p, q = getattr(value, "p", 0), getattr(value, "q", 1)
    return int(p).bit_length() + int(q).bit_length()


def power_problem(base: object, exponent: object) -> str | None:
    """Why ``base ** exponent`` must not be built, or None.  SymPy evaluates a power of two
    numbers at once (``10**10**10`` is a ten-billion-digit integer): the exponent must be a
    number of size at most ``EXPONENT`` (numerator and denominator), and a number raised to it
    must stay below 100 digits."""
    import sympy as sp

    if not isinstance(exponent, sp.Basic) or not exponent.is_Number:
        return None  # symbolic: nothing is evaluated now; expression_problem decides
    if not exponent.is_Rational:
        return f"the exponent {exponent} is not an exact number"
    if abs(int(exponent.p)) > EXPONENT.limit or int(exponent.q) > EXPONENT.limit:
        # say which part is too large ("size 1/100, above the cap of 16" read as if 1/100 > 16)
        p, q = abs(int(exponent.p)), int(exponent.q)
        if q == 1:
            head = f"the exponent is {exponent}"
        elif p > EXPONENT.limit:
            head = f"the numerator of the exponent {exponent} is {p}"
        else:
            head = f"the denominator of the exponent {exponent} is {q}"
        return f"{head}, above the cap of {EXPONENT.shown}: {EXPONENT.why}"
    if isinstance(base, sp.Basic) and base.is_Rational:
        if _bits(base) * abs(exponent) > _RESULT_BITS:
            return (
                f"the power ({base})^({exponent}) would have more than {_RESULT_DIGITS} digits; "
                "a derivation's constants are small"
            )
    return None


def expression_problem(expr: object) -> str | None:
    """Why an expression read from a form or a derivation must not be checked, or None
    (``measure``)."""
    found = measure(expr)
    return found if isinstance(found, str) else None


def measure(
    expr: object, degree_cap: float | None = None, known: dict[object, float] | None = None
) -> str | tuple[float, int]:
    """(degree, nesting of sums) of an expression, or why it must not be checked.  An expression
    read from a form or a derivation read from a form or a derivation must not be checked, or None: it is
    is bounded in size, in its numbers (at most 100 digits), in the nesting of its sums
    (``SUM_NESTING``) and in its degree (``DEGREE``: exponents multiplied through nested powers
    and products, since checking expands it exactly; ``known`` gives the degree of quantities
    that earlier lines define, which checking substitutes).  Walked without recursion."""
    import sympy as sp

    degree: dict[object, float] = {}
    sums: dict[object, int] = {}
    stack: list[tuple[object, bool]] = [(expr, False)]
    seen = 0
    while stack:
        node, ready = stack.pop()
        if not isinstance(node, sp.Basic):
            degree[node], sums[node] = 0.0, 0
            continue
        if not ready:
            if node in degree:
                continue
            seen += 1
            if seen > _EXPRESSION_NODES:
                return f"the expression has more than {_EXPRESSION_NODES:,} parts"
            stack.append((node, True))
            stack.extend((arg, False) for arg in node.args)
            continue
        args = node.args
        depth = max((sums.get(a, 0) for a in args), default=0)
        if isinstance(node, sp.Sum):
            depth += 1
            if depth > SUM_NESTING.limit:
                return SUM_NESTING.message(str(depth))
        sums[node] = depth
        if node in (sp.nan, sp.zoo, sp.oo, -sp.oo):
            return f"it has the value {node} (a division by zero, or not a finite number)"
        if node is sp.I:
            return "it has the imaginary unit (the root of a negative number)"
        if node.is_Number:
            if not node.is_Rational:
                return f"it has the number {node}, which is not exact"
            if _bits(node) > _RESULT_BITS:
                return f"it has a number of more than {_RESULT_DIGITS} digits"
            d = 0.0
        elif known and node in known:  # a quantity an earlier line defines: its degree
            d = known[node]
        elif isinstance(node, sp.Symbol):
            d = 0.0 if node.is_integer else 1.0  # indices and M are numbers when evaluated
        elif isinstance(node, sp.Indexed):
            d = known.get(node.base, 1.0) if known else 1.0
        elif isinstance(node, sp.Mul):
            d = sum(degree.get(a, 0.0) for a in args)
        elif isinstance(node, sp.Pow):
            base, exponent = args
            if exponent.is_Number:
                d = degree.get(base, 0.0) * abs(float(exponent))
            elif degree.get(base, 0.0) == 0 and degree.get(exponent, 0.0) == 0:
                d = 0.0
            else:
                return f"the exponent {exponent} is not a number"
        elif isinstance(node, sp.Sum):
            d = degree.get(args[0], 0.0)
        elif isinstance(node, (sp.KroneckerDelta, sp.Tuple, sp.IndexedBase, sp.Idx)):
            d = 0.0
        else:  # Add, and any function of its arguments
            d = max((degree.get(a, 0.0) for a in args), default=0.0)
        if d > (DEGREE.limit if degree_cap is None else degree_cap):
            return DEGREE.message(f"{d:g}")
        degree[node] = d
    return degree.get(expr, 0.0), sums.get(expr, 0)
