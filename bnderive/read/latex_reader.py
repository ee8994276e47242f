"""Reading derivations as posts write them: LaTeX to bnderive's index notation.

``latex.lark`` is the syntax (an unambiguous LALR(1) grammar); a lark ``Transformer`` turns its
tree into a small syntax tree, and ``_Meaning`` gives that tree its mathematical meaning in the
notation of ``notation.py``.  Nothing is dropped: an unknown macro, a letter that means nothing
here, a sum over part of the reduction set are ``LatexError`` naming the token, its line and
column and what was expected.  (SymPy's ``parse_latex`` reads ``\\hat{x}_i`` as ``hat*x`` and
``g_k(x_k-\\mu)`` as a function call; see DESIGN.md §7.)

What the notation means (one reduction set at a time, DESIGN.md §1):

* ``x_i``, ``h_i``, ``x[i]``, ``x_{ij}``, ``h_{kj}``, ``x[n][c][h][w]`` are input elements: ``x[i]``.
  With two indices the second is the feature (PER_ACTIVATION, ``x_{ij}``: sample i, feature j);
  with four the second is the channel (SPATIAL, NCHW) and the element of the reduction set is the
  triple (n, h, w).  Features never mix (μ_j, σ_j², γ_j belong to feature j alone), so the
  feature index is dropped, consistently: ``x_{ij}`` → ``x[i]``, ``\\gamma_j`` → ``gamma``, and a
  sum over a feature index l is the term at l = j, which needs δ_jl in every term of the summand
  (otherwise the line would mix features, an error).
* ``y_i`` is the output; ``\\hat{x}_i`` (``\\widehat``, ``\\hat{h}``) is ``xhat[i]``; a bare ``x``
  or ``\\hat{x}`` is the element the line is about, or inside a sum the summed element.
* ``\\mu``, ``\\mu_B``, ``\\mu_\\mathcal{B}``, ``\\mu_j``, ``\\mu[C]`` are ``mu``; ``\\sigma^2`` (with the
  same subscripts) is ``var``; a bare ``\\sigma`` must be declared (``sigma="std"``: σ = √σ²,
  ``sigma="var"``: σ is the variance, as some posts write it); ``\\epsilon``, ``\\varepsilon`` are
  ``eps``; ``\\gamma``, ``\\beta`` the parameters.
* ``N``, ``m``, ``M``, ``NHW`` (also ``N H W``, ``N\\cdot H\\cdot W``) are the size M of the
  reduction set: in PER_ACTIVATION M = N; in SPATIAL M = N·H·W, so with ``spatial=True`` a lone
  ``N`` (the batch size) is refused.
* Gradients: ``\\frac{\\partial L}{\\partial y_i}`` (also ``\\ell``, ``\\mathcal{L}``, ``d`` for
  ``\\partial``, ``dL/dy``), ``\\delta y``, ``dy``, ``dout`` are ``g[i]``; ∂L/∂x̂_i, ∂L/∂σ², ∂L/∂μ,
  ∂L/∂x_i, ∂L/∂γ, ∂L/∂β (and ``\\delta\\beta``, ``dgamma``, ...) are the adjoints ``dxhat[i]``,
  ``dvar``, ``dmu``, ``dx[i]``, ``dgamma``, ``dbeta``.  A derivative of something other than the
  loss (∂σ²/∂x_i) is understood but not checkable: ``NotCheckable``.
* ``\\sum_{i=1}^{N}``, ``\\sum_i``, ``\\sum_{n,h,w}``, ``\\sum_{n=1,h=1,w=1}^{N,H,W}`` are Σ over the
  reduction set, over a fresh index; the body is the rest of the product (``\\sum_i a_i b_i + c``
  is (Σ a b) + c); so is ``\\sum_{i \\in B}`` (``\\mathcal{B}``: the batch).  ``\\delta_{ik}`` is
  δ_ik; ``\\delta^{n,h,w}_{N,H,W}`` is δ over the spatial elements (n,h,w) and (N,H,W).  A primed
  letter (``n'``) is an index of its own.  ``^{-3/2}`` and ``^{-1.5}`` are the same exact power.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources
from typing import Any

import sympy as sp
from lark import Lark, Token, Transformer, Tree
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)

from bnderive.core import notation as N
from bnderive.core.limits import expression_problem, power_problem
from bnderive.core.notation import Partial
from bnderive.errors import FormError
from bnderive.read.latex_bounds import tree_problem
from bnderive.read.matrix import MatrixAlgebra, Shaped, ShapeError


class LatexError(FormError):
    """LaTeX that bnderive cannot read: the message names the token, line, column, expectation."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        self.line = line
        self.column = column
        where = f"line {line}, column {column}: " if line is not None else ""
        super().__init__(where + message)
        self.reason = message
        #: a line whose right side is not read but whose left side is: what the left side says
        #: (the rows that continue the line compare with it)
        self.partial: LineRead | None = None


class NotCheckable(LatexError):
    """Understood, but not a value bnderive can check (a local derivative such as ∂σ²/∂x_i)."""


Pos = tuple[int, int]


@dataclass(frozen=True)
class Ambiguity:
    """A scope the notation leaves open, found while reading (the Σ's body, braces around a
    sum, what \\frac{\\partial}{\\partial x_i} applies to): the question, each reading in
    words, how to write it so that it reads one way.  ``blanks``: per reading, the places in the
    text (its braces) that reading does without: it is the text read again without them, the
    other readings are chosen at ``(kind, pos)`` (``_Meaning.choose``)."""

    kind: str
    pos: Pos
    question: str
    labels: tuple[str, ...]
    fix: str
    blanks: tuple[tuple[Pos, ...], ...] = ()

    @property
    def message(self) -> str:
        return f"{self.question}? {self.fix}"


class Ambiguous(LatexError):
    """A scope met while reading that has more than one reading (``Ambiguity``):
    ``parse_equation_line`` reads the line once per reading."""

    def __init__(self, ambiguity: Ambiguity, line: int, column: int) -> None:
        super().__init__(ambiguity.message, line, column)
        self.ambiguity = ambiguity


@dataclass(frozen=True)
class Readings:
    """A member of a line that reads more than one way: its value under each reading (None:
    not read that way, ``errors`` says why), each reading in words, the question and the fix."""

    question: str
    labels: tuple[str, ...]
    values: tuple[sp.Expr | None, ...]
    errors: tuple[str, ...]
    fix: str


# -- the syntax tree --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Node:
    pos: Pos


@dataclass(frozen=True)
class Num(Node):
    text: str


@dataclass(frozen=True)
class Letter(Node):
    name: str
    font: str = ""  # mathcal, mathrm, ... ('' for none)


@dataclass(frozen=True)
class Macro(Node):
    name: str  # without the backslash


@dataclass(frozen=True)
class Hat(Node):
    arg: Node


@dataclass(frozen=True)
class Frac(Node):
    num: Node
    den: Node


@dataclass(frozen=True)
class Sqrt(Node):
    arg: Node


@dataclass(frozen=True)
class Group(Node):  # {…}, (…): grouping only
    inner: Node
    kind: str  # "brace" | "paren"
    close: Pos | None = None  # where a plain {…} closes (its braces do not print)


@dataclass(frozen=True)
class Arguments(Node):  # (x, \varepsilon): the arguments of a function of several variables
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Bracket(Node):  # […]: grouping, or an index after an array (x[n])
    inner: Node


@dataclass(frozen=True)
class ScriptArg(Node):
    items: tuple[tuple[Node, Node | None], ...]  # {a, b=c}: (a, None), (b, c)
    braced: bool


@dataclass(frozen=True)
class Scripted(Node):
    base: Node
    sub: ScriptArg | None
    sup: ScriptArg | None


@dataclass(frozen=True)
class Op(Node):
    op: str  # "*" or "/"
    dot: bool = False  # written \cdot (·, ⋅): between two vectors, their dot product


@dataclass(frozen=True)
class Product(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Signed(Node):
    sign: str
    term: Node


@dataclass(frozen=True)
class SumExpr(Node):
    terms: tuple[tuple[str, Node], ...]


@dataclass(frozen=True)
class BigSum(Node):
    sub: ScriptArg | None
    sup: ScriptArg | None
    body: Node
    scoped: bool = False  # its body is one reading of an open scope (``sum_scope``)


@dataclass(frozen=True)
class Relation(Node):  # k = i, k == i, k \ne i: an Iverson bracket [k = i] or a sum's exclusion
    lhs: Node
    op: str  # "eq" | "ne"
    rhs: Node
    bracket: str = ""  # the bracket written around it: LSQB [k = i], LPAR (k \ne i), LCURLY


@dataclass(frozen=True)
class Mean(Node):  # \overline{x_k}, \bar{x}: x̄, the mean of the reduction set
    arg: Node


@dataclass(frozen=True)
class Ones(Node):  # \mathbb{1}, \mathbf{1}_N, \vec{1}: one (the indicator, or a vector of ones)
    vector: bool = False  # \vec{1}: certainly the vector


@dataclass(frozen=True)
class Range:
    """``, k \\in \\{1,\\dots,D\\}`` after an equation: where the index ``letter`` runs, as
    written (``body``, the text between the braces); ``_index_ranges`` says what it means."""

    pos: Pos
    letter: str
    body: str


@dataclass(frozen=True)
class LineNode(Node):
    sides: tuple[Node | None, ...]  # the first is None for an `&= …` continuation; () for prose
    ranges: tuple[Range, ...] = ()  # the `, k \in \{…\}` written after it
    #: a \text{…} written with it that states a relation (\text{for $k \neq i$}): a condition
    conditions: tuple[str, ...] = ()


def _pos(token: Token) -> Pos:
    return (token.line or 1, token.column or 1)


#: A relation in a \text{…} written with an equation (for $k \neq i$, if k = i, for k < i): the
#: text states a condition on the line, not a remark (``_index_ranges``).
_RELATION = re.compile(
    r"(?<![-<=])(?:=|<|>)(?![->])|[≠≤≥∈∉]|\\(?:ne|neq|le|leq|ge|geq|lt|gt|in|notin)(?![a-zA-Z])"
)


class _ToTree(Transformer):
    """lark tree → syntax tree (no meaning yet: a letter is a letter)."""

    def __init__(self, text: str = "") -> None:
        super().__init__()
        self.text = text  # the line, for the ranges written after it (``range_tail``)

    def expression(self, c: list) -> Node:
        return c[0]

    def line(self, c: list) -> LineNode:
        # annotations, then [lhs] = rhs [= rhs ...], then , . ? or \text{…}: the equation, or
        # nothing (a prose line, \text{…} alone).
        found = [item for item in c if isinstance(item, LineNode)]
        ranges = tuple(item for item in c if isinstance(item, Range))
        if found:
            at = c.index(found[0])
            before = c[at - 1] if at > 0 else None
            conditions = tuple(
                str(t)
                for t in c
                if isinstance(t, Token) and t.type == "TEXT" and _RELATION.search(str(t))
            )
            if ranges or conditions:
                found[0] = replace(found[0], ranges=ranges, conditions=conditions)
            if (
                found[0].sides
                and found[0].sides[0] is None
                and isinstance(before, Token)
                and before.type == "TEXT"
            ):
                # \text{rstd} = …: the text is the left side (a name written as text), not a
                # remark before a row that continues the line above
                word = re.fullmatch(
                    r"\\(?:text|textrm|mbox)\s*\{\s*([A-Za-z][A-Za-z0-9]*)\s*\}", str(before)
                )
                if word is not None:
                    name = Letter(_pos(before), word.group(1), "text")
                    return replace(found[0], sides=(name, *found[0].sides[1:]))
                raise LatexError(
                    f"{before} = …: a left side written in \\text{{…}} is a name of the post's "
                    "own only when it is one word (\\text{rstd} = …)",
                    *_pos(before),
                )
            return found[0]
        token = next((t for t in c if isinstance(t, Token)), None)
        if token is None:
            token = next(
                (
                    t
                    for item in c
                    if isinstance(item, Tree)
                    for t in item.scan_values(lambda v: isinstance(v, Token))
                ),
                None,
            )
        return LineNode(_pos(token) if token is not None else (1, 1), ())

    boxed_line = braced_line = line  # \boxed{A = B}, \color{red}{A = B}: the equation inside

    def expression_line(self, c: list) -> LineNode:
        # an expression without '=' (a heading's ∂L/∂γ, a row of a matrix): it states nothing
        node = next(item for item in c if isinstance(item, Node))
        return LineNode(node.pos, (node,))

    def paren_note(self, c: list) -> None:
        return None  # (\text{Because …}): a remark

    def annotation(self, c: list) -> Token:
        return c[0]

    def tail(self, c: list) -> Token:
        return c[0]

    def equation(self, c: list) -> LineNode:
        # [lhs] = rhs [= rhs ...]: a side follows each '='; the first may be missing.
        sides: list[Node | None] = [None]
        for item in c:
            if isinstance(item, Token):
                if item.type == "EQ":
                    sides.append(None)
            else:
                sides[-1] = item
        pos = next((s.pos for s in sides if s is not None), (1, 1))
        return LineNode(pos, tuple(sides))

    def layout(self, c: list) -> Node:
        # \underbrace{X}_{note}, \overbrace{X}^{note}: X (the note is a comment)
        return c[1]

    def layout_group(self, c: list) -> Node:
        # \boxed{X}, \mathop{X}: X, grouped
        return Group(_pos(c[0]), c[2], "brace")

    def note(self, c: list) -> None:
        return None

    def note_body(self, c: list) -> None:
        return None

    def note_mark(self, c: list) -> None:
        return None

    def text_d(self, c: list) -> Letter:
        return Letter(_pos(c[0]), "d", "mathrm")  # \text{d}: the upright differential

    def font_number(self, c: list) -> Node:
        text = str(c[2])
        if text != "1":
            raise LatexError(
                f"{c[0]}{{{text}}}: only the indicator (or vector of ones) \\mathbb{{1}} is "
                "understood with a number",
                *_pos(c[0]),
            )
        return Ones(_pos(c[0]))

    def vec(self, c: list) -> Node:
        arg = c[1]
        if isinstance(arg, Num) and arg.text == "1":
            return Ones(_pos(c[0]), vector=True)  # \vec{1}: the vector of ones
        return arg  # \vec{x} is x: the arrays are vectors already

    def relation(self, c: list) -> Relation:
        op = "ne" if c[1].type == "NEQ" else "eq"
        return Relation(c[0].pos, c[0], op, c[2])

    def relation_group(self, c: list) -> Relation:
        return replace(c[1], bracket=c[0].type)

    def sum_expr(self, c: list) -> Node:
        terms: list[tuple[str, Node]] = [("+", c[0])]
        for k in range(1, len(c), 2):
            terms.append((str(c[k]), c[k + 1]))
        return c[0] if len(terms) == 1 else SumExpr(c[0].pos, tuple(terms))

    def signed(self, c: list) -> Node:
        return Signed(_pos(c[0]), str(c[0]), c[1])

    signed_factor = signed

    def product(self, c: list) -> Node:
        return c[0] if len(c) == 1 and not isinstance(c[0], Op) else Product(c[0].pos, tuple(c))

    def mulop(self, c: list) -> Op:
        text = str(c[0]).strip()
        return Op(_pos(c[0]), "/" if text == "/" else "*", text in ("\\cdot", "·", "⋅"))

    def bigsum(self, c: list) -> BigSum:
        sub = sup = None
        first = c[0]  # \mathop before \sum: the sum starts there
        c = [item for item in c if not (isinstance(item, Token) and item.type == "MATHOP")]
        if len(c) == 3:
            sub, sup = c[1]
        return BigSum(_pos(first), sub, sup, c[-1])

    def sum_limits(self, c: list) -> tuple[ScriptArg | None, ScriptArg | None]:
        return self.script(c)

    def factor(self, c: list) -> Node:
        if len(c) == 1:
            return c[0]
        sub, sup = c[1]
        return Scripted(c[0].pos, c[0], sub, sup)

    def script(self, c: list) -> tuple[ScriptArg | None, ScriptArg | None]:
        sub = sup = None
        k = 0
        while k < len(c):
            if c[k].type == "SUPDIGIT":  # σ² is σ^2
                pos = _pos(c[k])
                sup = ScriptArg(pos, ((Num(pos, str(c[k])), None),), False)
                k += 1
            elif c[k].type == "SUB":
                sub, k = c[k + 1], k + 2
            else:
                sup, k = c[k + 1], k + 2
        return sub, sup

    def arg(self, c: list) -> ScriptArg:
        if len(c) == 3:  # { script_list }
            return ScriptArg(_pos(c[0]), tuple(c[1]), True)
        return ScriptArg(_pos(c[0]), ((_token_node(c[0]), None),), False)

    def font_arg(self, c: list) -> ScriptArg:
        return ScriptArg(_pos(c[0]), ((self.font(c), None),), False)

    def text_arg(self, c: list) -> ScriptArg:
        """x^{\\text{bn}}: the label, kept as a Letter in the font "text"."""
        token = next(t for t in c if t.type == "TEXT")
        label = re.sub(r"^\\[a-z]+\s*\{|\}$", "", str(token)).strip()
        return ScriptArg(_pos(token), ((Letter(_pos(token), label, "text"), None),), False)

    def range_tail(self, c: list) -> Range:
        """``, k \\in \\{1,\\dots,D\\}``: where an index runs (read by ``_index_ranges``)."""
        letter, opening, closing = c[1], c[2], c[-1]
        body = self.text[opening.end_pos : closing.start_pos] if self.text else "?"
        return Range(_pos(letter), str(letter), body)

    def script_list(self, c: list) -> list:
        return [x for x in c if not isinstance(x, Token)]

    def script_item(self, c: list) -> tuple[Node, Node | None]:
        if len(c) == 3 and c[1].type == "NEQ":  # \sum_{j \ne i}: an exclusion
            return (Relation(c[0].pos, c[0], "ne", c[2]), None)
        return (c[0], c[2] if len(c) == 3 else None)

    def number(self, c: list) -> Num:
        return Num(_pos(c[0]), str(c[0]))

    def letter(self, c: list) -> Letter:
        return Letter(_pos(c[0]), str(c[0]))

    def macro(self, c: list) -> Macro:
        return Macro(_pos(c[0]), str(c[0])[1:])

    def font(self, c: list) -> Node:
        # \mathcal{L}, \mathrm{d}; a word (\mathrm{istd}) is refused where it is used
        font = str(c[0])[1:]
        letters = "".join(str(t) for t in c[2:-1])
        return Letter(_pos(c[0]), letters, font)

    def hat(self, c: list) -> Hat:
        return Hat(_pos(c[0]), c[1])

    def bar(self, c: list) -> Mean:
        return Mean(_pos(c[0]), c[1])

    def frac(self, c: list) -> Frac:
        return Frac(_pos(c[0]), c[1], c[2])

    def frac_digits(self, c: list) -> Frac:  # \frac12: one digit each, as TeX reads it
        digits = re.findall(r"[0-9]", str(c[0]))
        pos = _pos(c[0])
        return Frac(pos, Num(pos, digits[0]), Num(pos, digits[1]))

    def sqrt(self, c: list) -> Sqrt:
        return Sqrt(_pos(c[0]), c[1])

    def group(self, c: list) -> Group:
        return Group(_pos(c[0]), c[1], "brace", _pos(c[2]))

    def paren(self, c: list) -> Group:
        return Group(_pos(c[0]), c[1], "paren")

    def arguments(self, c: list) -> Arguments:
        return Arguments(_pos(c[0]), tuple(n for n in c[1:-1] if isinstance(n, Node)))

    def bracket(self, c: list) -> Bracket:
        return Bracket(_pos(c[0]), c[1])

    def farg(self, c: list) -> Node:
        if len(c) == 3:
            return c[1]
        return _token_node(c[0])


def _token_node(token: Token) -> Node:
    pos = _pos(token)
    if token.type == "NUMBER":
        return Num(pos, str(token))
    if token.type == "LETTER":
        return Letter(pos, str(token))
    return Macro(pos, str(token)[1:])


@lru_cache(maxsize=1)
def _parser() -> Lark:
    grammar = (resources.files("bnderive.read") / "latex_grammar.lark").read_text(encoding="utf-8")
    return Lark(
        grammar,
        parser="lalr",
        start=["expression", "line"],
        propagate_positions=True,
        lexer_callbacks={
            kind: _ascii for kind in ("MACRO", "SUM", "SQRT", "MULOP", "ADDOP", "SUPDIGIT", "NEQ")
        },
    )


#: Unicode that posts paste into their LaTeX, as the LaTeX it stands for.
_UNICODE = {
    "β": "\\beta", "γ": "\\gamma", "δ": "\\delta", "ε": "\\epsilon", "ϵ": "\\epsilon",
    "μ": "\\mu", "σ": "\\sigma", "∂": "\\partial", "∑": "\\sum", "Σ": "\\sum",
    "√": "\\sqrt", "·": "\\cdot", "⋅": "\\cdot", "×": "\\times", "−": "-", "²": "2", "³": "3",
    "⊙": "\\odot", "≠": "\\ne",
}  # fmt: skip


def _ascii(token: Token) -> Token:
    """A Unicode token with the text of its LaTeX, at the same place."""
    text = _UNICODE.get(str(token))
    return Token.new_borrow_pos(token.type, text, token) if text else token


# -- meaning ------------------------------------------------------------------------------------------
_OWN_MU = "μ"  # LayerNorm's μ_{bh} that a post defines as its own (``_Meaning.own_mu``)
_ONES = "_ones"  # the base of a ones tensor 1_h while a line is read (Einstein's notation)
_BARE = sp.Symbol("_bare", integer=True)
#: ∂L/∂σ with σ = √σ² (named so that no code variable, such as a post's dstd, is taken for it)
DSTD = sp.Symbol("∂L/∂σ")  # an element written without index (x̂, δy)
_AFFINE = ("gamma", "beta")
_ROLE_TEXT = {"gamma": "γ", "beta": "β", "y": "y", "xhat": "x̂", "x": "x"}
_OVER_BATCH = -1  # check_limits: a LayerNorm sum up to the batch size (over the samples)
_PLACEHOLDER = re.compile(r"_b\d+")  # a sum's index until the line is read
_ARRAY_LETTERS = {"x": "x", "h": "x", "y": "y", "g": "g", "X": "x", "Y": "y"}
_LOSS_LETTERS = {"L", "E", "J", "f"}  # f: posts that write ∂f/∂x̂ (CS231n notes)
#: Letters that name the loss in ∂C/∂x, ∂l/∂y (a cost C, a loss l): only as what ∂ acts on.
_LOSS_TARGETS = _LOSS_LETTERS | {"C", "l"}
_STATS = {"mu": "mu", "gamma": "gamma", "beta": "beta", "epsilon": "eps", "varepsilon": "eps"}
#: LaTeX's own macros (not a post's): an unknown one is not said to be defined elsewhere.
_LATEX_OWN = frozenset(
    "text textrm textit textbf mbox operatorname mathrm mathbf mathit alpha zeta eta theta "
    "iota kappa lambda nu xi pi rho tau upsilon phi chi psi omega Gamma Delta Theta Lambda Xi "
    "Pi Phi Psi Omega varphi vartheta in notin dots ldots cdots vdots ddots infty to mapsto "
    "rightarrow Rightarrow leftarrow forall exists langle rangle log ln exp max min sin cos "
    "tanh le leq ge geq approx sim propto nabla circ star pm mp lim int prod".split()
)
#: Multi-letter names of code-style posts, read as one symbol (longest first).
_WORDS = ("dxhat", "dgamma", "dbeta", "dout", "dmu", "dvar", "NHW", "eps")
#: Index names of the bound sums, in order of preference (i is the line's own element).
_POOL = ("k", "p", "q", "l", "n", "j", "r", "s", "t", "u", "v")
#: Letters a line may not define as a name of its own: they mean something already.
_RESERVED = set(_ARRAY_LETTERS) | _LOSS_TARGETS | {"N", "M", "m", "H", "W", "d", "i", "T"}
QUANTITY_LATEX = {
    "dy": r"\frac{\partial L}{\partial y_i}",
    "dxhat": r"\frac{\partial L}{\partial \hat{x}_i}",
    "dvar": r"\frac{\partial L}{\partial \sigma^2}",
    "dmu": r"\frac{\partial L}{\partial \mu}",
    "dx": r"\frac{\partial L}{\partial x_i}",
    "dgamma": r"\frac{\partial L}{\partial \gamma}",
    "dbeta": r"\frac{\partial L}{\partial \beta}",
}
_ELEMENTWISE_ADJOINT = {"x": "dx", "xhat": "dxhat"}
#: The fonts of E in E[x] (the mean) and of a word such as Var in \\operatorname{Var}[x].
_MEAN_FONTS = ("", "mathbb", "mathrm", "operatorname")
_WORD_FONTS = ("mathrm", "operatorname")
_SCALAR_ADJOINT = {"var": "dvar", "mu": "dmu", "gamma": "dgamma", "beta": "dbeta"}
#: The nodes of the graph a local derivative ∂A/∂B may name, and their symbols (by target kind).
_NODE_BASE = {"x": N.x, "xhat": N.xhat, "y": N.y}
_NODE_SCALAR = {"mu": N.mu, "var": N.var, "gamma": N.gamma, "beta": N.beta}


class Dotted(sp.Function):
    """a · b for two per-element vectors written without an index (``_Meaning.dot_product``):
    ``elementwise`` is a_i b_i, ``summed`` Σ_i a_i b_i.  The line decides (``undot``)."""

    nargs = 2

    @classmethod
    def eval(cls, elementwise: sp.Expr, summed: sp.Expr) -> None:  # noqa: ARG003
        return None  # stays as written until the line decides


def undot(expr: sp.Expr, summed: bool = False) -> sp.Expr:
    """``expr`` with every ``Dotted`` read elementwise, or as the dot product (``summed``)."""
    if not expr.has(Dotted):
        return expr
    return expr.replace(lambda e: isinstance(e, Dotted), lambda e: e.args[1 if summed else 0])


def _part_size(it: _Item) -> str | None:
    """N_s (or {N_s}, as MathType braces it): the letter s of the size N_s; None otherwise."""
    sub, node = it.sub, it.node
    if it.kind == "node" and it.sub is None:
        while isinstance(node, Group) and node.kind == "brace":
            node = node.inner
        if not isinstance(node, Scripted) or node.sup is not None:
            return None
        sub, node = node.sub, node.base
    elif it.kind != "letter":
        return None
    if not (isinstance(node, Letter) and node.name == "N" and not node.font and sub is not None):
        return None
    if len(sub.items) != 1 or sub.items[0][1] is not None:
        return None
    index = sub.items[0][0]
    if not isinstance(index, Letter) or index.font:
        return None
    return index.name


def _is_matrix(piece: sp.Expr) -> bool:
    """∂x̂/∂x written without an index: a Jacobian (a matrix), no vector of a dot product."""
    return any(_BARE in p.args[1].free_symbols for p in piece.atoms(Partial))


@dataclass
class _Item:
    """One factor of a product while its meaning is being worked out."""

    kind: str  # letter | macro | word | bracket | node | op | diff | kron | size | mean | variance
    pos: Pos
    name: str = ""
    node: Node | None = None
    sub: ScriptArg | None = None
    sup: ScriptArg | None = None
    brackets: list[Bracket] = field(default_factory=list)
    target: _Item | None = None  # for diff: what is differentiated
    upper: ScriptArg | None = None  # for kron: the upper element of \delta^{n,h,w}_{N,H,W}
    dot: bool = False  # for op: written \cdot


@dataclass(frozen=True)
class _Diff:
    """∂X, dX or δX: a differential (inside a fraction) or, for d and δ, an adjoint."""

    prefix: str  # "partial" | "d" | "delta"
    target: str  # loss | x | y | xhat | var | mu | gamma | beta | std | name | expr | other | none
    index: sp.Expr | None
    text: str  # what is differentiated, as written (for messages)
    pos: Pos
    value: sp.Expr | None = None  # its value: the node (x[k], var, ...) or the expression
    feature: str | None = None  # the feature (channel) index it names, if any (h_{kl}: l)

    @property
    def operator(self) -> bool:
        """A lone ∂ (or d) in a numerator: \\frac{\\partial}{\\partial x_i} acts on what follows."""
        return self.target == "none"


@dataclass(frozen=True)
class _Operator:
    """\\frac{\\partial}{\\partial x_i}: the derivative of the factor that follows."""

    wrt: _Diff
    pos: Pos


@dataclass(frozen=True)
class LetterRole:
    """A letter of the post's own that means a quantity of the layer (``role``: gamma, beta,
    y, xhat, x) on the lines ``start`` ≤ line < ``end`` (``end`` None: to the end), as the
    forward line at ``source`` writes it; ``role`` None: what it means there is not said
    (``reason``), so a line that uses it is not read."""

    letter: str
    role: str | None
    start: int
    end: int | None
    reason: str = ""
    source: int = 0

    def holds_at(self, line: int) -> bool:
        return self.start <= line and (self.end is None or line < self.end)


@dataclass(frozen=True)
class Family:
    """What the document's normalization makes of the notation.  BatchNorm (the default): γ and
    β are one number per set, N, m, M are the set's size.  LayerNorm (``layer``): the set is the
    features of one sample, so γ_i, β_i (and a bare γ) are per element, ∂L/∂γ_i is per element
    (this set's part of it), ``sizes`` are the letters that mean the number of features (D, H,
    C, and N when the post writes no other), ``batch`` the letter of the batch size: a sum up to
    it runs over the samples, which is what ∂L/∂γ_i and ∂L/∂β_i sum (this set's term) and what
    no other quantity may mix (a δ must pick one sample)."""

    layer: bool = False
    sizes: frozenset[str] = frozenset({"N", "m", "M"})
    batch: str | None = None
    #: The document writes sums as Einstein does: an index repeated in a term of a side and
    #: not free on the left side is summed over the set (``_Meaning.side_value``).
    einstein: bool = False
    #: LayerNorm: the letters the document writes as the sample of x_{bh} (never as a
    #: feature): a lone subscript b (m_b, v_b) names the sample, which is dropped.
    samples: frozenset[str] = frozenset()
    #: BatchNorm: the letters the document writes as the channel of its statistics (μ_c, σ_c²)
    #: and first of an array's two indices, never second: x_{c,i} is channel c, element i.
    channels: frozenset[str] = frozenset()
    #: The letters the document writes as an element of an array (x_i, x_{c,i}'s i): N_i, the
    #: number of values i takes, is the size of the set.
    elements: frozenset[str] = frozenset()
    #: BatchNorm: the two letters (s, k) that with a channel c index the document's x_{s,c,k}
    #: (``documents._parts``): an element is the pair (s, k), the set's size is N_s × N_k and
    #: Σ_s Σ_k is the sum over the set.
    parts: frozenset[tuple[str, str]] = frozenset()
    #: (k, i) when the document sums over k ≠ i (Σ_{k≠i}): its ∂y_k/∂x_i lines are read for
    #: k ≠ i, the diagonal written apart.
    apart: frozenset[tuple[str, str]] = frozenset()
    #: The post's own letters for the layer's roles, learned from its forward line
    #: (``letters.letter_roles``: Sinai's a, b, Z for γ, β, y), each over the lines it holds.
    letters: tuple[LetterRole, ...] = ()
    #: (line, y or xhat): forward lines whose left side names the output as a function of the
    #: input, \text{LayerNorm}(x) (``letters.forward_roles``).
    outputs: tuple[tuple[int, str], ...] = ()
    #: Letters the document writes only as a superscript on its layer's symbols (Z^l, μ^{(l)}):
    #: a layer label, never a power (the letter is no number, size or index anywhere else), so
    #: x_r^l is x_r (``documents._layer_labels``).
    labels: frozenset[str] = frozenset()
    #: Einstein's convention read off tensor notation (δ_k^i): only an index written exactly
    #: twice in a term is summed (three times is no contraction, and stays a free index).
    pairs: bool = False


BATCH = Family()


class _Meaning:
    def __init__(
        self,
        sigma: str | None,
        spatial: bool,
        line: int,
        column: int,
        names: dict[str, bool] | None = None,
        family: Family = BATCH,
        aliases: dict[str, str] | None = None,
    ) -> None:
        self.sigma = sigma
        #: Names whose definition (checked equal to it when read) is the layer's y or x̂: in a
        #: derivative they are that node (∂L/∂x^{bn}_j is ∂L/∂y_j).
        self.aliases: dict[str, str] = dict(aliases or {})
        self.family = family
        #: LayerNorm: the line is about ∂L/∂γ_i or ∂L/∂β_i, whose sums over the batch are this
        #: sample's term
        self.batch_sum_ok = False
        self.spatial = spatial
        self.line0 = line
        self.column0 = column
        self.roles: dict[str, tuple[str, Pos]] = {}  # index name → element | feature
        self.composites: dict[sp.Symbol, tuple[str, ...]] = {}  # (n,h,w) → Symbol("nhw")
        self.fresh = 0
        #: Names earlier lines of the document defined (t = 1/√(σ²+ε)): elementwise or not.
        self.names: dict[str, bool] = dict(names or {})
        #: The left side may be a name of its own (t, v, R): read it as a new name.
        self.define_ok = False
        #: The line's own element index as written (x_i on the left: "i"), once known.
        self.line_element: str | None = None
        #: A lowercase n is the size of the set when the line uses no index n (\frac{1}{n}).
        self.size_n = False
        self.target_feature: str | None = None  # the feature of the last target() read
        self.new_name: tuple[str, sp.Expr | None] | None = None
        #: matrix notation: how \\mathbf{1} alone is being read ("m" matrix, "c" vector), and
        #: whether the notation being read has one
        self.ones_as = "m"
        self.plain_ones = False
        self.in_sum = 0  # inside the body of a Σ (no matrix notation there)
        #: What the reading assumed, said with the line (Σ_{i=0}^{N} read over the whole set).
        self.notes: list[str] = []
        #: ∂x̂/∂x, ∂y/∂x between arrays written without an index, met in the member being read
        self.bare_jacobians: list[str] = []
        self.dot_texts: dict[sp.Expr, str] = {}  # each ``Dotted`` as the line writes it
        #: Letters that are a column's feature on this line (x̂_j = (x_j − μ_j)/…: ``_columns``).
        self.columns: set[str] = set()
        #: Einstein's convention: the indices free on the left side, as written (never summed).
        self.keep: set[str] = set()
        #: The reading taken at each open scope met so far ((kind, pos) → reading): set by
        #: ``parse_equation_line``, which reads a line once per reading (``Ambiguity``).
        self.choices: dict[tuple[str, Pos], int] = {}

    # -- errors and positions --------------------------------------------------------------------
    def at(self, pos: Pos) -> tuple[int, int]:
        line, column = pos
        return (line + self.line0 - 1, column + (self.column0 - 1 if line == 1 else 0))

    def error(self, message: str, pos: Pos, kind: type[LatexError] = LatexError) -> LatexError:
        return kind(message, *self.at(pos))

    def choose(self, ambiguity: Ambiguity) -> int:
        """The reading to take at an open scope: the one chosen for this reading of the line,
        else ``Ambiguous`` (the line is then read once per reading)."""
        chosen = self.choices.get((ambiguity.kind, ambiguity.pos))
        if chosen is None:
            raise Ambiguous(ambiguity, *self.at(ambiguity.pos))
        return chosen

    # -- index roles ------------------------------------------------------------------------------
    def role(self, name: str, role: str, pos: Pos) -> None:
        seen = self.roles.get(name)
        if seen is None:
            self.roles[name] = (role, pos)
        elif seen[0] != role:
            line, column = self.at(seen[1])
            raise self.error(
                f"the index {name} is used as {role} here but as {seen[0]} at line {line}, "
                f"column {column}; features never mix, so an index is one or the other",
                pos,
            )

    def element_symbol(self, names: list[str], pos: Pos) -> sp.Expr:
        if len(names) == 1:
            name = names[0]
            if name.isdigit():
                return sp.Integer(int(name))
            self.role(name, "element", pos)
            return sp.Symbol(name, integer=True)
        for name in names:
            if name.isdigit():
                raise self.error("an element (n, h, w) with a number in it is not understood", pos)
            self.role(name, "element", pos)
        sym = sp.Symbol("".join(names), integer=True)
        self.composites[sym] = tuple(names)
        return sym

    def index_names(self, arg: ScriptArg) -> list[tuple[str, Pos]]:
        """{ij}, {i,j}, i, 1, {n,h,w} → the index names in order."""
        out: list[tuple[str, Pos]] = []
        for node, eq in arg.items:
            if eq is not None:
                raise self.error("'=' in an index: only sums take i=1", eq.pos)
            parts = node.items if isinstance(node, Product) else (node,)
            for part in parts:
                while isinstance(part, Group) and part.kind == "brace":
                    part = part.inner  # y_{c,{\rm{i}}}: MathType braces an upright index
                if isinstance(part, Letter) and not part.font:
                    out.append((part.name, part.pos))
                elif isinstance(part, Num) and part.text.isdigit():
                    out.append((part.text, part.pos))
                elif isinstance(part, Letter) and part.font == "mathcal" and part.name == "B":
                    out.append(("B", part.pos))
                else:
                    raise self.error(
                        f"{_describe(part)} is not an index: expected letters or a number, "
                        "as in x_i, x_{ij}, x[n][c][h][w]",
                        part.pos,
                    )
        return out

    def array_index(self, item: _Item) -> tuple[sp.Expr, str | None]:
        """The element (and the feature name, dropped) of x_i, x_{ij}, x[n][c][h][w], x."""
        names: list[tuple[str, Pos]] = []
        if item.sub is not None:
            names += self.index_names(item.sub)
        for b in item.brackets:
            names += self.index_names(ScriptArg(b.pos, ((b.inner, None),), True))
        if any(n == "B" for n, _ in names):
            raise self.error("the subscript B (the batch) belongs to μ_B and σ_B²", item.pos)
        if not names:
            return _BARE, None
        if len(names) == 1 and names[0][0] in self.columns:
            # x_j next to μ_j on a line with no other index: the column of feature j (its
            # element is the line's, written bare)
            self.feature(*names[0])
            self.notes.append(
                f"{names[0][0]} read as the feature: an array with it as its only index is that "
                f"feature's column (a statistic subscripted {names[0][0]} has no element)"
            )
            return _BARE, names[0][0]
        if len(names) == 1:
            return self.element_symbol([names[0][0]], names[0][1]), None
        if len(names) == 2:  # x_{ij}: sample i, feature j (LayerNorm x_{bh}: sample b, feature h)
            (e, epos), (f, fpos) = names
            if self.family.layer or (e in self.family.channels and f not in self.family.channels):
                # LayerNorm's x_{bh}: sample b, feature h; a channel first, x_{c,i}: channel c
                (e, epos), (f, fpos) = (f, fpos), (e, epos)
            self.feature(f, fpos)
            return self.element_symbol([e], epos), f
        if len(names) == 3 and self.family.layer:  # dy_{b,s,i}: sample (b, s), feature i
            for name, pos in names[:2]:
                self.feature(name, pos)
            return self.element_symbol([names[2][0]], names[2][1]), names[0][0]
        if len(names) == 3 and not self.family.layer:
            # x_{s,c,k}: channel c (a statistic's subscript), element (s, k) (``Family.parts``)
            channel = [(n, p) for n, p in names if n in self.family.channels]
            rest = tuple(n for n, _ in names if n not in self.family.channels)
            if len(channel) == 1 and rest in self.family.parts:
                self.feature(*channel[0])
                return self.element_symbol(list(rest), names[0][1]), channel[0][0]
        if len(names) == 4:  # x[n][c][h][w]: element (n, h, w), channel c
            (n, npos), (c, cpos), (h, _), (w, _) = names
            self.feature(c, cpos)
            return self.element_symbol([n, h, w], npos), c
        raise self.error(
            f"{len(names)} indices: expected one (x_i), two (x_{{ij}}: sample, feature), four "
            "(x[n][c][h][w]) or three with a channel the statistics are subscripted with "
            "(x_{s,c,k} beside μ_c)",
            item.pos,
        )

    def sample_subscript(self, sub: ScriptArg) -> bool:
        """LayerNorm's m_b: the subscript is a letter the document writes as the sample of
        x_{bh} (``Family.samples``), so the name is one number per sample."""
        if not self.family.layer:
            return False
        names = self.index_names(sub)
        return len(names) == 1 and names[0][0] in self.family.samples

    def feature(self, name: str, pos: Pos) -> None:
        if name.isdigit():
            raise self.error("a feature or channel written as a number is not understood", pos)
        self.role(name, "feature", pos)

    def stat_subscripts(self, item: _Item) -> str | None:
        """μ_B, μ_\\mathcal{B}, μ_j, μ[C]: the batch marker or a feature, both dropped; the
        feature's name, if one is written."""
        names: list[tuple[str, Pos]] = []
        if item.sub is not None:
            names += self.index_names(item.sub)
        for b in item.brackets:
            names += self.index_names(ScriptArg(b.pos, ((b.inner, None),), True))
        feature = None
        for name, pos in names:
            if name != "B":
                self.feature(name, pos)
                feature = name
        return feature

    # -- values -----------------------------------------------------------------------------------
    def value(self, node: Node) -> sp.Expr:
        got = self.value_or_diff(node)
        if isinstance(got, _Diff):
            return self.diff_value(got)
        if isinstance(got, _Operator):
            raise self.error(
                f"\\frac{{\\partial}}{{\\partial {got.wrt.text}}} with nothing after it to "
                "differentiate",
                got.pos,
            )
        return got

    def side_value(self, node: Node) -> sp.Expr:
        """One side of an equation.  Under Einstein's convention (``Family.einstein``) each of its
        terms is summed over every index it writes twice or more that is not free on the left
        side (``keep``): an element index over the set, a sample index (LayerNorm's b of
        x_{bh}) by the δ that picks the sample; then the ones tensors 1_h are ones."""
        if not self.family.einstein:
            return self.value(node)
        terms = node.terms if isinstance(node, SumExpr) else (("+", node),)
        total = sp.Integer(0)
        for sign, term in terms:
            value = self.einstein_term(term, self.value(term))
            total = total + (-value if sign in ("-", "−") else value)
        return total.replace(_is_ones, lambda _: sp.Integer(1))

    def einstein_term(self, term: Node, value: sp.Expr) -> sp.Expr:
        counts = _index_counts(term)
        summed = []
        for name in sorted(counts):
            if counts[name] < 2 or name in self.keep or self.family.pairs and counts[name] != 2:
                continue
            role = self.roles.get(name, ("",))[0]
            symbol = sp.Symbol(name, integer=True)
            if role == "element" and symbol in value.free_symbols:
                value = self.sum_value(value, [(name, term.pos)], term.pos, [], None)
                summed.append(name)
            elif role == "feature" and self.family.layer:
                deltas = [d for d in value.atoms(sp.KroneckerDelta) if symbol in d.args]
                if deltas:
                    value = self.collapse_feature(value, name, term.pos)
                    summed.append(name)
            elif role == "feature":  # BatchNorm: Σ_j over features would mix them
                value = self.collapse_feature(value, name, term.pos)
                summed.append(name)
        if summed:
            self.notes.append(
                "repeated indices summed (Einstein's convention): "
                + ", ".join(f"Σ_{n}" for n in summed)
            )
        return value

    def iverson(self, node: Relation) -> sp.Expr:
        """[k = i], 1(k == i), \\mathbb{1}[k = i]: Kronecker's δ_ki; [k \\ne i]: 1 − δ_ki."""
        sides = []
        for part in (node.lhs, node.rhs):
            names = self.index_names(ScriptArg(part.pos, ((part, None),), True))
            if len(names) != 1 or names[0][0] == "B":
                raise self.error(
                    "a bracket [k = i] compares two indices: expected one index letter (or "
                    "number) on each side",
                    part.pos,
                )
            name, pos = names[0]
            sides.append(
                sp.Integer(int(name)) if name.isdigit() else self.element_symbol([name], pos)
            )
        delta = sp.KroneckerDelta(*sides)
        return delta if node.op == "eq" else 1 - delta

    def value_or_diff(self, node: Node) -> sp.Expr | _Diff | _Operator:
        if self.matrix_notation(node):  # R^T R, (I - \frac{1}{N}\mathbf{1}) X: ``matrix``
            return self.matrix_value(node)
        if isinstance(node, Group) and node.kind == "brace":
            return self.value_or_diff(node.inner)  # {{\\partial L}}: braces only group
        if isinstance(node, Relation):
            return self.iverson(node)
        if isinstance(node, SumExpr):
            total = sp.Integer(0)
            for sign, term in node.terms:
                v = self.value(term)
                total = total + (-v if sign == "-" else v)
            return total
        if isinstance(node, Signed):
            v = self.value(node.term)
            return -v if node.sign == "-" else v
        if isinstance(node, Product):
            return self.product(list(node.items))
        if isinstance(node, BigSum):
            return self.bigsum(node)
        return self.product([node])

    # -- matrix notation over the batch (``matrix``) ----------------------------------------------
    def matrix_notation(self, node: Node) -> bool:
        """Does ``node`` write matrix notation: a transpose (X^T, \\hat{X}^\\top), the identity I
        (a letter no line defined), or the matrix of ones \\mathbf{1} (not the indicator
        \\mathbf{1}[i = k])?  Sums keep index notation: their bodies are not looked into."""
        if self.in_sum:
            return False
        if isinstance(node, Scripted) and self.einstein_ones(node):
            return False  # 1_h under Einstein's convention: index notation (``ones_tensor``)
        if isinstance(node, Scripted) and _indicator(node.base, node.sub) is not None:
            return False  # \mathbb{1}_{i=j}: the indicator, not the matrix of ones
        if isinstance(node, Scripted):
            return _transposes(node) or self.matrix_notation(node.base)
        if isinstance(node, Letter):
            return node.name == "I" and not (node.font or self.define_ok or "I" in self.names)
        if isinstance(node, Ones):
            return not node.vector
        if isinstance(node, Product):
            items = node.items
            return any(
                self.matrix_notation(n)
                and not (
                    isinstance(n, Ones)
                    and k + 1 < len(items)
                    and isinstance(items[k + 1], Relation)
                )
                for k, n in enumerate(items)
            )
        children: tuple[Node, ...] = ()
        if isinstance(node, (Group, Bracket)):
            children = (node.inner,)
        elif isinstance(node, SumExpr):
            children = tuple(term for _, term in node.terms)
        elif isinstance(node, Signed):
            children = (node.term,)
        elif isinstance(node, Frac):
            children = (node.num, node.den)
        return any(self.matrix_notation(n) for n in children)

    def matrix_value(self, node: Node) -> sp.Expr:
        """The value of matrix notation in index form (``matrix.MatrixAlgebra``); notation whose
        shapes do not decide its meaning is understood but not checked.  \\mathbf{1} alone is
        the matrix of ones in one post and a vector of ones (a column, or a row) in another:
        each reading is tried, and the notation is read only when those with a meaning agree."""
        start = self.fresh

        def fresh() -> sp.Symbol:
            self.fresh += 1
            return sp.Symbol(f"_b{self.fresh}", integer=True)

        algebra = MatrixAlgebra(_BARE, fresh)
        readings: list[sp.Expr] = []
        problems: list[str] = []
        self.plain_ones = False
        for ones in ("m", "c", "r"):
            self.fresh, self.ones_as = start, ones
            try:
                readings.append(algebra.value(self.shaped(node, algebra)))
            except ShapeError as exc:
                problems.append(str(exc))
            if not self.plain_ones:
                break
        self.fresh = start + 3 * (self.fresh - start) + 1  # fresh past every reading
        if not readings:
            raise self.error(f"matrix notation: {problems[0]}", node.pos, NotCheckable)
        if any(sp.expand(r - readings[0]) != 0 for r in readings[1:]):
            raise self.error(
                "matrix notation: \\mathbf{1} read as the matrix of ones and as a vector of ones "
                "gives different values; write \\mathbf{1}_N for the vector, Σ for the sum",
                node.pos,
                NotCheckable,
            )
        return readings[0]

    def shaped(self, node: Node, algebra: MatrixAlgebra) -> Shaped:
        """One part of matrix notation with its shape: what holds none is read as usual (an
        element at the bare index is a column, the rest a number per channel)."""
        if _ones_vector(node):
            return algebra.ones("c")
        if not self.matrix_notation(node):
            expr = self.value(node)
            if self.element_indices(expr) - {_BARE}:
                raise ShapeError(
                    f"{_describe(node)} has an index of its own: an element, not a vector"
                )
            return algebra.leaf(expr)
        if isinstance(node, (Group, Bracket)):
            return self.shaped(node.inner, algebra)
        if isinstance(node, SumExpr):
            total: Shaped | None = None
            for sign, term in node.terms:
                v = self.shaped(term, algebra)
                v = Shaped(v.kind, -v.expr) if sign in ("-", "−") else v
                total = v if total is None else algebra.add(total, v)
            assert total is not None
            return total
        if isinstance(node, Signed):
            v = self.shaped(node.term, algebra)
            return Shaped(v.kind, -v.expr) if node.sign in ("-", "−") else v
        if isinstance(node, Product):
            return self.shaped_product(node, algebra)
        if isinstance(node, Frac):
            return algebra.divide(self.shaped(node.num, algebra), self.shaped(node.den, algebra))
        if isinstance(node, Scripted) and _transposes(node):
            inner = Scripted(node.pos, node.base, node.sub, None) if node.sub else node.base
            return algebra.transpose(self.shaped(inner, algebra))
        if isinstance(node, Scripted) and node.sub is None and node.sup is not None:
            return algebra.power(self.shaped(node.base, algebra), self.exponent(node.sup))
        if isinstance(node, Letter):
            return algebra.identity()
        if isinstance(node, Ones):  # \\mathbf{1} alone: both readings (``matrix_value``)
            self.plain_ones = True
            return algebra.ones(self.ones_as)
        raise ShapeError(f"{_describe(node)} is not understood in matrix notation")

    def shaped_product(self, node: Product, algebra: MatrixAlgebra) -> Shaped:
        """Factors side by side (or with \\cdot, *, /): the matrix product, left to right."""
        out: Shaped | None = None
        divide = False
        items = list(node.items)
        for k in range(len(items) - 1, 0, -1):  # c(R) I: the name c(R) is one factor
            name = _function_name(items[k - 1], items[k])
            if name is not None and name in self.names:
                items[k - 1 : k + 1] = [Letter(items[k - 1].pos, name)]
        for item in items:
            if isinstance(item, Op):
                divide = item.op == "/"
                continue
            if isinstance(item, Relation):
                raise ShapeError("an indicator [i = k] among matrices")
            v = self.shaped(item, algebra)
            if out is None:
                out = v
            else:
                out = algebra.divide(out, v) if divide else algebra.multiply(out, v)
            divide = False
        assert out is not None
        return out

    def product(self, nodes: list[Node]) -> sp.Expr | _Diff | _Operator:
        self.invisible_braces(nodes)
        self.ambiguous_ones(nodes)
        self.conditions_or_indicators(nodes)
        items = [self.item(n) for n in nodes]
        items = self.text_words(items)
        items = self.index_typed_after(items)
        items = self.words(items)
        items = self.attach_brackets(items)
        items = self.feature_superscripts(items)
        items = self.applications(items)
        items = self.functions(items)
        items = self.expectations(items)
        items = self.prefixes(items)
        items = self.sizes(items)
        pieces: list[sp.Expr | _Diff | _Operator] = []
        divide = False
        operator: _Operator | None = None
        operand = 0  # where the factors the operator acts on begin in ``pieces``
        operand_text = ""
        operand_items: list[_Item] = []  # what the operator acts on, written as nodes
        grouped = False  # the operand begins with a bracket group: (x_i − μ) in ∂/∂x_i (x_i − μ) s
        dots: set[int] = set()  # the pieces written right after a \cdot
        for it in items:
            if it.kind == "op":
                dots.add(len(pieces) if it.dot else -1 if it.name == "/" else -2)  # -1: a quotient
                if it.name == "/":
                    if not pieces or divide or len(pieces) == operand and operator is not None:
                        raise self.error("'/' needs something on each side", it.pos)
                    divide = True
                continue
            v = self.diff_of(it) if it.kind == "diff" else self.item_value(it)
            if isinstance(v, _Operator):
                if divide or operator is not None:
                    raise self.error(
                        "\\frac{\\partial}{\\partial …} must be followed by what it differentiates",
                        it.pos,
                    )
                if len(items) == 1:
                    return v  # the operator alone: the product it stands in applies it
                operator, operand = v, len(pieces)
                continue
            if operator is not None and len(pieces) == operand:
                operand_text = _describe(it.node) if it.node else it.name
                grouped = isinstance(it.node, Bracket) or (
                    isinstance(it.node, Group) and it.node.kind == "paren"
                )
            if operator is not None and it.node is not None:
                operand_items.append(it)
            if divide:
                last = pieces[-1]
                if isinstance(last, _Diff) and isinstance(v, _Diff):
                    pieces[-1] = self.derivative(last, v)
                else:
                    pieces[-1] = self.plain(last) / self.plain(v)
                divide = False
            else:
                pieces.append(v)
        if divide:
            raise self.error("'/' needs something on each side", items[-1].pos)
        if operator is not None:
            if len(pieces) == operand:
                raise self.error(
                    "\\frac{\\partial}{\\partial …} must be followed by what it differentiates",
                    operator.pos,
                )
            # \frac{\partial}{\partial x_i} f g: the derivative of the whole product that follows
            # (of f·g, not f alone), as ∂/∂x (f g) reads; a group right after it: ``operator_scope``
            if grouped and len(pieces) > operand + 1:
                grouped = self.operator_scope(operator, operand_items) == 0
            end = operand + 1 if grouped else len(pieces)
            of = sp.Mul(*[self.plain(p) for p in pieces[operand:end]])
            text = operand_text + (" …" if end - operand > 1 else "")
            local = self.local(of, text, operator.wrt, operator.pos)
            acted = [it.node for it in operand_items[: 1 if grouped else None] if it.node]
            sample = self.operator_sample(local, operator, acted)
            pieces = [*pieces[:operand], sample, *pieces[end:]]
        if len(pieces) == 1:
            return pieces[0]
        plain = [self.plain(p) for p in pieces]
        return self.dot_product(plain, dots if operator is None else {-1}, nodes)

    def dot_product(self, pieces: list[sp.Expr], dots: set[int], nodes: list[Node]) -> sp.Expr:
        """∂L/∂x̂ · ∂x̂/∂μ: two per-element vectors written without an index (x[_BARE]) side by
        side, joined by \\cdot and with no other vector in the product (``dots``: the pieces
        written after a \\cdot; -1 there, a quotient or an operator), are the dot product
        Σ_i a_i b_i of linear algebra's notation when the line is about one number per set
        (``_scalar_line``); on any other line the product is read elementwise, as before.  The
        product is ``Dotted(elementwise, summed)`` until the line decides.  A quotient, an
        operator's operand, *, \\times, \\odot and juxtaposition are never read as a dot
        product (\\times is the cross product, \\odot the elementwise one)."""
        value = sp.Mul(*pieces)
        bare = [k for k, p in enumerate(pieces) if _BARE in p.free_symbols]
        if (
            -1 in dots
            or self.in_sum
            or len(bare) != 2
            or bare[1] != bare[0] + 1
            or bare[1] not in dots
            or self.element_indices(value) != {_BARE}
            or any(_is_matrix(pieces[k]) for k in bare)
        ):
            return value
        summed = self.sum_value(value, [], nodes[0].pos, [], None)
        dotted = Dotted(value, summed)
        self.dot_texts[dotted] = " ".join(_render(n) for n in nodes)
        return dotted

    def operator_scope(self, operator: _Operator, operand: list[_Item]) -> int:
        """∂/∂x_i (x_i − μ) s: a bracket group right after the operator, and more factors after
        it.  The group may be its argument, as a function's is ((∂(x_i − μ)/∂x_i)·s, the quotient
        rule's f'g as the post dsse_bn_backprop_doubts writes it: 0), or the operator may act
        on the whole product, as ∂/∂x (f g) reads (1): both are readings (``Ambiguity``)."""
        group = _short(_item_text(operand[0]))
        whole = _short(" ".join(_item_text(it) for it in operand))
        wrt = operator.wrt.text
        return self.choose(
            Ambiguity(
                "operator",
                operator.pos,
                f"∂/∂{wrt} followed by a group and more factors: does it apply to the group "
                "alone or to the whole product after it",
                (f"∂/∂{wrt} applies to {group} alone", f"∂/∂{wrt} applies to {whole}"),
                f"Write \\frac{{\\partial}}{{\\partial {wrt}}} inside the bracket it applies to, "
                "or a bracket around the whole product",
            )
        )

    def operator_sample(self, local: sp.Expr, operator: _Operator, operand: list[Node]) -> sp.Expr:
        """LayerNorm's \\frac{\\partial}{\\partial \\sigma_p}(… σ_b …): what is differentiated is
        at one sample b and the derivative is taken at sample p, so it is δ_bp times the
        derivative within one sample (samples never mix), as ∂y_{bh}/∂σ_p is.  Only when the
        operand writes a single sample index."""
        wrt = operator.wrt.feature
        if not self.family.layer or wrt is None:
            return local
        written = {n for node in operand for n in _index_counts(node) if n in self.family.samples}
        if len(written) != 1 or wrt in written:
            return local
        (sample,) = written
        self.feature(sample, operator.pos)
        return (
            sp.KroneckerDelta(sp.Symbol(sample, integer=True), sp.Symbol(wrt, integer=True)) * local
        )

    def feature_superscripts(self, items: list[_Item]) -> list[_Item]:
        """x^{(k)}, \\gamma^{(k)}, \\widehat{x}^{(k)}: the paper's feature index k, as a
        superscript in parentheses; features never mix, so it is dropped (as x_{ik}'s k is)."""
        for it in items:
            sup = it.sup
            if sup is None or len(sup.items) != 1 or sup.items[0][1] is not None:
                continue
            node = sup.items[0][0]
            if not (isinstance(node, Group) and node.kind == "paren"):
                continue
            inner = node.inner
            if not (isinstance(inner, Letter) and not inner.font and inner.name.isalpha()):
                continue
            stat = it.kind == "macro" and it.name in ("mu", "gamma", "beta", "sigma")
            if self.indexable(it) or stat or (it.kind == "letter" and it.name in "xhXyY"):
                self.feature(inner.name, inner.pos)
                it.sup = None
        return items

    def conditions_or_indicators(self, nodes: list[Node]) -> None:
        """``… (1 + x̂_k x̂_i) \\quad (k \\neq i)``: the indicator [k ≠ i] times what comes
        before, or the condition "for k ≠ i" of the line?  Square brackets are Iverson's, and
        ``1(k == i)``, ``\\mathbb{1}(k = i)``, ``\\delta(i = k)`` name the indicator; a relation
        in round (or curly) brackets after anything else is not read."""
        for k, node in enumerate(nodes):
            if not isinstance(node, Relation) or node.bracket not in ("LPAR", "LCURLY"):
                continue
            before = nodes[k - 1] if k > 0 else None
            named = (
                (isinstance(before, Num) and before.text == "1")
                or isinstance(before, Ones)
                or (isinstance(before, Macro) and before.name == "delta")
            )
            if before is not None and not named:
                op = "\\ne" if node.op == "ne" else "="
                raise self.error(
                    f"a relation in parentheses after an expression ({_render(node.lhs)} {op} "
                    f"{_render(node.rhs)}): the indicator [{_render(node.lhs)} {op} "
                    f"{_render(node.rhs)}] times it, or a condition of the line (for …)? Write "
                    "[k \\ne i] for the indicator, \\text{for $k \\ne i$} for a condition",
                    node.pos,
                )

    def ambiguous_ones(self, nodes: list[Node]) -> None:
        """\\mathbf{1} alone is the vector of ones in one post and the matrix of ones (1 X is
        Σ_k x_k) in another; \\mathbf{1}_N, \\vec{1} and the indicator \\mathbb{1}[k = i] are
        not ambiguous."""
        for k, node in enumerate(nodes):
            if isinstance(node, Ones) and node.pos is not None:
                following = nodes[k + 1] if k + 1 < len(nodes) else None
                if not isinstance(following, Relation) and not getattr(node, "vector", False):
                    raise self.error(
                        "\\mathbf{1} alone: the vector of ones or the matrix of ones (1 X = Σ_k "
                        "x_k)? write \\mathbf{1}_N or \\vec{1} for the vector, Σ for the sum",
                        node.pos,
                    )

    def invisible_braces(self, nodes: list[Node]) -> None:
        """Braces do not print: `{a - b} c` shows as a − b c, which means a − (b·c), while the
        braces group a − b.  A braced sum next to another factor (or under an exponent) has the
        two readings (``Ambiguity``): the braces' grouping, and the line as printed (read again
        without the braces).  Braces that print (\\boxed{…}) are grouping only."""
        for node in nodes:
            base, sup = (node.base, node.sup) if isinstance(node, Scripted) else (node, None)
            if not (
                isinstance(base, Group)
                and base.kind == "brace"
                and isinstance(base.inner, SumExpr)
                and (len(nodes) > 1 or sup is not None)
            ):
                continue
            message = (
                "braces {…} around a sum next to another factor: braces do not print, so "
                "`{a - b} c` reads as a − b·c on the page but groups a − b here"
            )
            fix = "write parentheses (or \\left( … \\right)) for the grouping you mean"
            if base.close is None:  # pragma: no cover - \\boxed, \\mathop print or are no group
                raise self.error(f"{message}; {fix}", base.pos)
            inner = _short(_render(base.inner))
            ambiguity = Ambiguity(
                "braces",
                base.pos,
                message,
                (
                    f"the braces group {inner}",
                    f"as printed, without the braces around {inner}",
                ),
                fix[0].upper() + fix[1:],
                ((), (base.pos, base.close)),
            )
            self.choose(ambiguity)  # the printed reading is the text without the braces

    def applications(self, items: list[_Item]) -> list[_Item]:
        """μ(x), σ²(x): the statistic of x, written as a function of the input (the group holds
        the bare array x alone); anything else in the parentheses is a product, as usual.
        BN_{γ,β}(x_i) is y_i (Ioffe & Szegedy's name of the transform with its parameters)."""
        out: list[_Item] = []
        for it in items:
            prev = out[-1] if out else None
            output = self.transform_output(out, it)
            if output is not None:
                out[len(out) - (2 if out[-1].name == "N" else 1) :] = [output]
                continue
            if (
                prev is not None
                and prev.kind == "macro"
                and prev.name in ("mu", "sigma")
                and it.kind == "node"
                and isinstance(it.node, Group)
                and it.node.kind == "paren"
                and it.sub is None
                and it.sup is None
                and isinstance(it.node.inner, Letter)
                and it.node.inner.name in ("x", "X", "h")
                and not it.node.inner.font
            ):
                continue  # μ(x) is μ
            out.append(it)
        return out

    def functions(self, items: list[_Item]) -> list[_Item]:
        """c(R): a name of the post's own written with its argument (Yeh's c(R) = (σ²+ε)^{-1/2}).
        A left side that defines it, and later uses with the same argument, read it as one
        name ``c(R)``; with another argument (c(D)), or for a name defined without one (t(R) is
        t·R), it stays a product."""
        out: list[_Item] = []
        for it in items:
            prev = out[-1] if out else None
            name = _function_name(prev.node if prev else None, it.node) if prev else None
            if (
                name is not None
                and prev is not None
                and prev.kind == "letter"
                and prev.sub is None
                and prev.sup is None
                and not prev.brackets
                and it.sub is None
                and (name in self.names or self.define_ok and prev.name not in self.names)
            ):
                out[-1] = _Item("letter", prev.pos, name, Letter(prev.pos, name), None, it.sup)
                continue
            out.append(it)
        return out

    def transform_output(self, before: list[_Item], it: _Item) -> _Item | None:
        """``BN_{\\gamma,\\beta}(x_i)`` (also ``\\mathrm{BN}_{\\gamma,\\beta}``): the output y_i of
        the transform the paper names so.  Without the subscript γ, β the name is not the
        output's (a post may write BN(y) for the normalization alone): not read as y."""
        if not (
            it.kind == "node"
            and isinstance(it.node, Group)
            and it.node.kind == "paren"
            and it.sub is None
            and it.sup is None
            and before
        ):
            return None
        name = before[-1]
        if name.name == "N" and len(before) > 1 and before[-2].name == "B":
            first = before[-2]
            if first.sub is not None or first.sup is not None or first.node.font:  # type: ignore[union-attr]
                return None
        elif name.name != "BN":
            return None
        if name.kind != "letter" or name.sup is not None or name.sub is None:
            return None
        params = [a for a, b in name.sub.items if b is None and isinstance(a, Macro)]
        if len(name.sub.items) != 2 or {m.name for m in params} != {"gamma", "beta"}:
            return None
        inner = it.node.inner
        sub = None
        if isinstance(inner, Scripted) and inner.sup is None:
            inner, sub = inner.base, inner.sub
        if not (isinstance(inner, Letter) and inner.name in ("x", "X", "h") and not inner.font):
            return None
        return _Item("letter", name.pos, "y", Letter(inner.pos, "y"), sub, None)

    def expectations(self, items: list[_Item]) -> list[_Item]:
        """E[x], \\mathbb{E}[x], \\mathrm{E}[x], \\operatorname{E}[x]: the mean over the set;
        \\mathrm{Var}[x], \\operatorname{Var}[x] (or with parentheses, which after the word
        are unambiguous): its variance E[(x − E[x])²], the mean of the squared deviations."""
        out: list[_Item] = []
        for it in items:
            prev = out[-1] if out else None
            if (
                it.sub is None
                and prev is not None
                and prev.kind == "letter"
                and prev.sup is None
                and not prev.brackets
            ):
                font = prev.node.font
                if it.kind == "bracket" and prev.name == "E" and font in _MEAN_FONTS:
                    out[-1] = _Item("mean", prev.pos, "E", it.node, prev.sub, it.sup)
                    continue
                paren = it.kind == "node" and isinstance(it.node, Group) and it.node.kind == "paren"
                if prev.name == "Var" and font in _WORD_FONTS and (it.kind == "bracket" or paren):
                    out[-1] = _Item("variance", prev.pos, "Var", it.node, prev.sub, it.sup)
                    continue
            out.append(it)
        return out

    def plain(self, v: sp.Expr | _Diff | _Operator) -> sp.Expr:
        if isinstance(v, _Operator):
            raise self.error(
                "\\frac{\\partial}{\\partial …} must be followed by what it differentiates",
                v.pos,
            )
        return self.diff_value(v) if isinstance(v, _Diff) else v

    def item(self, node: Node) -> _Item:
        if (
            isinstance(node, Scripted)
            and node.sup is None
            and isinstance(node.base, Group)
            and node.base.kind == "brace"
            and isinstance(node.base.inner, Scripted)
            and node.base.inner.sub is None
        ):
            # {\sigma ^2}_c (MathType): braces do not print, so it is \sigma_c^2
            inner = node.base.inner
            node = Scripted(node.pos, inner.base, node.sub, inner.sup)
        sub = sup = None
        base = node
        if isinstance(node, Scripted):
            base, sub, sup = node.base, node.sub, node.sup
        label = _layer_label(sup, self.family.labels)
        if label is not None and isinstance(base, (Letter, Macro)):
            # μ^l, x_r^{(l)}: the layer the post labels its symbols with, not a power
            sup = None
            self.notes.append(
                f"^{label} read as a layer label (the post writes it on every symbol)"
            )
        if isinstance(base, Op):
            return _Item("op", base.pos, base.op, dot=base.dot)
        if isinstance(base, Letter) and not base.font:
            base = self.own_letter(base)  # the post's a, b, Z for γ, β, y (Family.letters)
        if isinstance(base, Letter):
            label = _label(sup)
            if label is not None and not base.font:
                # x^{\text{bn}}: a quantity of its own, named with its label (a name a line of
                # the post defines before it is used, as any name of the post's own)
                name = f"{base.name}^{label}"
                return _Item("letter", base.pos, name, Letter(base.pos, name), sub, None)
            return _Item("letter", base.pos, base.name, base, sub, sup)
        if isinstance(base, Macro):
            return _Item("macro", base.pos, base.name, base, sub, sup)
        if isinstance(base, Bracket):
            return _Item("bracket", base.pos, "", base, sub, sup)
        return _Item("node", base.pos, "", base, sub, sup)

    def output_side(self, lhs: Node) -> Node:
        """The left side of a forward line that names the output as a function of the input
        (``Family.outputs``: \\text{LayerNorm}(x) = w ⊙ … + b): y (or x̂) at the argument's
        element."""
        role = dict(self.family.outputs).get(self.line0)
        if role is None:
            return lhs
        group = lhs.items[-1] if isinstance(lhs, Product) else lhs
        if not isinstance(group, Group) or group.kind != "paren":
            return lhs  # pragma: no cover - letters.forward_roles found this shape
        arg = group.inner
        sub = arg.sub if isinstance(arg, Scripted) else None
        pos = lhs.pos
        base: Node = Letter(pos, "y") if role == "y" else Hat(pos, Letter(pos, "x"))
        self.notes.append(
            f"its left side, a function of the input, read as {_ROLE_TEXT[role]} (the right "
            "side is the layer's forward line)"
        )
        return Scripted(pos, base, sub, None) if sub is not None else base

    def own_letter(self, letter: Letter) -> Node:
        """The node a letter of the post's own stands for on this line (``Family.letters``):
        γ, β, y, x̂ or x; the letter itself when it has no such meaning here.  A letter whose
        meaning on this line is not said (two forward lines give it two) is not read."""
        for role in self.family.letters:
            if role.letter != letter.name or not role.holds_at(self.line0):
                continue
            if role.role is None:
                raise self.error(role.reason, letter.pos)
            pos = letter.pos
            if role.start > 0:
                said = f"{letter.name} read as {_ROLE_TEXT[role.role]} (line {role.source})"
                if said not in self.notes:
                    self.notes.append(said)
            if role.role in ("gamma", "beta"):
                return Macro(pos, role.role)
            if role.role == "xhat":
                return Hat(pos, Letter(pos, "x"))
            return Letter(pos, role.role)
        return letter

    def index_typed_after(self, items: list[_Item]) -> list[_Item]:
        """``xi`` typed for x_i (Costa 2016): an index letter right after an array letter that has
        no index of its own.  An index is never a value, so x·i means nothing and the post's x_i
        is the only reading; the line says so."""
        out: list[_Item] = []
        for it in items:
            prev = out[-1] if out else None
            if (
                prev is not None
                and prev.kind == "letter"
                and prev.name in ("x", "h", "X")
                and not prev.node.font  # type: ignore[union-attr]
                and prev.sub is None
                and prev.sup is None
                and not prev.brackets
                and it.kind == "letter"
                and it.name in ("i", "j", "k")
                and not it.node.font  # type: ignore[union-attr]
                and it.sub is None
                and it.name not in self.names
            ):
                sub = ScriptArg(it.pos, ((Letter(it.pos, it.name), None),), False)
                out[-1] = _Item("letter", prev.pos, prev.name, prev.node, sub, it.sup)
                self.notes.append(
                    f"{prev.name}{it.name} read as {prev.name}_{it.name} (an index is never a value)"
                )
                continue
            out.append(it)
        return out

    def text_words(self, items: list[_Item]) -> list[_Item]:
        """\\text{rstd} inside maths (\\text then the braced word, as the grammar reads it in a
        product): one word, a name of the post's own (``word_name``)."""
        out: list[_Item] = []
        for it in items:
            prev = out[-1] if out else None
            if (
                prev is not None
                and prev.kind == "macro"
                and prev.name in ("text", "textrm", "mbox", "operatorname")
                and prev.sub is None
                and prev.sup is None
                and it.kind == "node"
                and isinstance(it.node, Group)
                and it.node.kind == "brace"
            ):
                inner = it.node.inner
                letters = list(inner.items) if isinstance(inner, Product) else [inner]
                if all(isinstance(n, Letter) and not n.font for n in letters):
                    word = "".join(n.name for n in letters if isinstance(n, Letter))
                    node = Letter(prev.pos, word, "text")
                    out[-1] = _Item("letter", prev.pos, word, node, it.sub, it.sup)
                    continue
            out.append(it)
        return out

    def words(self, items: list[_Item]) -> list[_Item]:
        """dout, dgamma, NHW, ...: runs of letters that name one thing."""
        out: list[_Item] = []
        k = 0
        while k < len(items):
            for word in _WORDS:
                run = items[k : k + len(word)]
                if (
                    len(run) == len(word)
                    and all(it.kind == "letter" and not it.node.font for it in run)
                    and "".join(it.name for it in run) == word
                    and all(it.sub is None and it.sup is None for it in run[:-1])
                ):
                    last = run[-1]
                    kind = "size" if word == "NHW" else "word"
                    out.append(_Item(kind, run[0].pos, word, last.node, last.sub, last.sup))
                    k += len(word)
                    break
            else:
                out.append(items[k])
                k += 1
        return out

    def indexable(self, it: _Item) -> bool:
        if it.kind == "letter":
            return it.name in _ARRAY_LETTERS
        if it.kind == "word":
            return it.name in ("dout", "dxhat", "dgamma", "dbeta", "dmu", "dvar")
        if it.kind == "macro":
            return it.name in ("mu", "sigma", "gamma", "beta")
        return it.kind == "node" and isinstance(it.node, Hat)

    def attach_brackets(self, items: list[_Item]) -> list[_Item]:
        """x[n][c][h][w], \\gamma[C]: a bracket holding one index right after an array."""
        out: list[_Item] = []
        for it in items:
            prev = out[-1] if out else None
            if (
                it.kind == "bracket"
                and prev is not None
                and self.indexable(prev)
                and it.sub is None
                and _is_index(it.node.inner)
                and (prev.sup is None or prev.name == "sigma")
            ):
                prev.brackets.append(it.node)
                if it.sup is not None:
                    if prev.sup is not None:
                        raise self.error("two exponents on one symbol", it.pos)
                    prev.sup = it.sup
                continue
            out.append(it)
        return out

    def prefixes(self, items: list[_Item]) -> list[_Item]:
        """d, ∂, δ before what they act on; δ with a subscript is Kronecker's delta."""
        out: list[_Item] = []
        k = 0
        while k < len(items):
            it = items[k]
            prefix = None
            if it.kind == "letter" and it.name == "d" and it.node.font in ("", "mathrm"):
                prefix = "d"
            elif it.kind == "macro" and it.name == "partial":
                prefix = "partial"
            elif it.kind == "macro" and it.name == "delta":
                nxt = items[k + 1] if k + 1 < len(items) else None
                if (
                    it.sub is None
                    and it.sup is None
                    and nxt is not None
                    and isinstance(nxt.node, Relation)
                ):  # \delta(i=l): Kronecker's delta written as a function of the relation
                    out.append(nxt)
                    k += 2
                    continue
                if it.sub is not None:
                    # \delta^{n,h,w}_{N,H,W}: a Kronecker delta over two elements, upper and lower
                    upper = it.sup if it.sup is not None else None
                    out.append(_Item("kron", it.pos, "delta", it.node, it.sub, upper=upper))
                    k += 1
                    continue
                prefix = "delta"
            if prefix is None:
                out.append(it)
                k += 1
                continue
            if it.sub is not None or it.sup is not None:
                raise self.error(
                    f"{_item_text(it)} with a script: expected {_item_text(it)} followed by what "
                    "it differentiates, as in \\partial x_i, dy_i, \\delta\\beta",
                    it.pos,
                )
            nxt = items[k + 1] if k + 1 < len(items) else None
            if nxt is None or nxt.kind in ("op", "diff"):
                raise self.error(
                    f"{_item_text(it)} must be followed by what it differentiates "
                    "(\\partial L, \\partial x_i, dy_i, \\delta\\gamma)",
                    it.pos,
                )
            out.append(_Item("diff", it.pos, prefix, target=nxt))
            k += 2
        return out

    def sizes(self, items: list[_Item]) -> list[_Item]:
        """N H W (with or without \\cdot) is M; so are N, m, M alone."""
        out: list[_Item] = []
        k = 0
        while k < len(items):
            it = items[k]
            got = self.part_sizes(items, k)
            if got is not None:
                out.append(got[0])
                k = got[1]
                continue
            if self.is_letter(it, "N"):
                seq = [it]
                j = k + 1
                for want in ("H", "W"):
                    if j < len(items) and items[j].kind == "op" and items[j].name == "*":
                        j += 1
                    if j < len(items) and self.is_letter(items[j], want):
                        seq.append(items[j])
                        j += 1
                    else:
                        break
                if len(seq) == 3:
                    out.append(_Item("size", it.pos, "NHW", seq[-1].node, seq[-1].sub, seq[-1].sup))
                    k = j
                    continue
            out.append(it)
            k += 1
        return out

    def part_sizes(self, items: list[_Item], k: int) -> tuple[_Item, int] | None:
        """N_s × N_k (or N_s N_k, N_s \\cdot N_k), each maybe in braces, for the two letters
        of an element (s, k) of x_{s,c,k} (``Family.parts``): the number of (s, k), the size
        of the set; the item, and where the items after it begin.  N_s alone is no size."""
        first = _part_size(items[k])
        if first is None or not self.family.parts:
            return None
        j = k + 1
        if j < len(items) and items[j].kind == "op" and items[j].name == "*":
            j += 1
        second = _part_size(items[j]) if j < len(items) else None
        if second is None or (first, second) not in self.family.parts | {
            (b, a) for a, b in self.family.parts
        }:
            return None
        return _Item("size", items[k].pos, f"N_{first} N_{second}", sup=items[j].sup), j + 1

    @staticmethod
    def is_letter(it: _Item, name: str) -> bool:
        return it.kind == "letter" and it.name == name and not it.node.font and it.sub is None

    # -- one factor -------------------------------------------------------------------------------
    def power(self, base: sp.Expr, it: _Item) -> sp.Expr:
        if it.sup is None:
            return base
        exponent = self.exponent(it.sup)
        problem = power_problem(base, exponent)  # 10^{10^{10}} is refused, not computed
        if problem:
            raise self.error(problem.rstrip("."), it.sup.pos)
        return base**exponent

    def exponent(self, sup: ScriptArg) -> sp.Expr:
        if len(sup.items) != 1 or sup.items[0][1] is not None:
            raise self.error("an exponent is one expression, as in ^{-3/2}", sup.pos)
        node = sup.items[0][0]
        if not sup.braced and isinstance(node, Num) and len(node.text) > 1:
            raise self.error(
                f"^{node.text}: TeX reads this as ^{{{node.text[0]}}}{node.text[1:]}; "
                f"write ^{{{node.text}}}",
                node.pos,
            )
        return self.value(node)

    def no_sub(self, it: _Item, what: str) -> None:
        if it.sub is not None:
            raise self.error(f"{what} takes no subscript here", it.sub.pos)

    def item_value(self, it: _Item) -> sp.Expr | _Operator:
        if it.kind == "mean":
            return self.power(self.mean_value(it), it)
        if it.kind == "variance":
            return self.power(self.variance_value(it), it)
        if it.kind == "size":
            self.no_sub(it, "the size N H W")
            return self.power(N.M, it)
        if it.kind == "letter":
            return self.letter_value(it)
        if it.kind == "word":
            return self.word_value(it)
        if it.kind == "macro":
            return self.macro_value(it)
        if it.kind == "kron":
            return self.kron_value(it)
        if it.kind == "bracket":
            self.no_sub(it, "a bracket")
            return self.power(self.value(it.node.inner), it)
        node = it.node
        if isinstance(node, Hat):
            return self.power(self.hat_value(it), it)
        relation = _indicator(node, it.sub)
        if relation is not None:  # 1_{i = j}, \mathbb{1}_{i=j}: the indicator, δ_ij
            return self.power(self.iverson(relation), it)
        if isinstance(node, Ones):
            if it.sub is not None and self.family.einstein and not self.is_size(it.sub):
                return self.power(self.ones_tensor(it.sub), it)
            if it.sub is not None:  # \mathbf{1}_N: the vector of N ones
                self.size_subscript(it.sub)
            return self.power(sp.Integer(1), it)
        self.no_sub(it, _describe(node))
        if isinstance(node, Num):
            return self.power(sp.Rational(node.text), it)
        if isinstance(node, Group):
            return self.power(self.value(node.inner), it)
        if isinstance(node, Sqrt):
            return self.power(sp.sqrt(self.value(node.arg)), it)
        if isinstance(node, Frac):
            got = self.frac_value(node)
            if isinstance(got, _Operator):
                if it.sup is not None:
                    raise self.error("an exponent on \\frac{\\partial}{\\partial …}", it.pos)
                return got
            return self.power(got, it)
        if isinstance(node, BigSum):
            return self.bigsum(node)
        if isinstance(node, Relation):
            return self.power(self.iverson(node), it)
        if isinstance(node, Mean):  # x̄: the mean of the set, μ
            return self.power(self.overline_value(node), it)
        if isinstance(node, Signed):  # a · −b
            value = self.value(node.term)
            return -value if node.sign in ("-", "−") else value
        if isinstance(node, Arguments):
            raise self.error(
                "(a, b): the arguments of a function of several variables (istd(x, ε)), which "
                "bnderive does not read; write the function's value",
                node.pos,
            )
        raise self.error(f"{_describe(node)} is not understood here", node.pos)  # pragma: no cover

    def kron_value(self, it: _Item) -> sp.Expr:
        """Kronecker's delta: two indices (\\delta_{ik}), or upper and lower ones comparing two
        elements (\\delta^{n,h,w}_{N,H,W}, \\delta^{i}_{k})."""
        if it.upper is not None:
            upper, lower = self.index_names(it.upper), self.index_names(it.sub)
            if (
                len(upper) != len(lower)
                or len(upper) not in (1, 3)
                or any(n == "B" or n.isdigit() for n, _ in upper + lower)
            ):
                raise self.error(
                    "a Kronecker delta with upper and lower indices compares two elements: "
                    "\\delta^{n,h,w}_{N,H,W} (or \\delta^{i}_{k}); for two indices write "
                    "\\delta_{ik}",
                    it.pos,
                )
            return sp.KroneckerDelta(
                self.element_symbol([n for n, _ in upper], upper[0][1]),
                self.element_symbol([n for n, _ in lower], lower[0][1]),
            )
        names = self.index_names(it.sub)
        if len(names) != 2 or any(n == "B" for n, _ in names):
            raise self.error("Kronecker's delta takes two indices, as in \\delta_{ik}", it.sub.pos)
        args = []
        for name, _ in names:
            if name.isdigit():
                args.append(sp.Integer(int(name)))
            else:
                args.append(sp.Symbol(name, integer=True))
        return self.power(sp.KroneckerDelta(*args), it)

    def overline_value(self, node: Mean) -> sp.Expr:
        """x̄: the mean of the set, μ (\\overline{x_k}: the mean of feature k)."""
        inner = self.item(node.arg)
        if inner.kind != "letter" or inner.name not in ("x", "h", "X") or inner.node.font:
            raise self.error(
                f"\\overline{{{_describe(node.arg)}}}: only x̄ (the mean of x) is understood",
                node.pos,
            )
        if inner.sub is not None:
            for name, pos in self.index_names(inner.sub):
                self.feature(name, pos)
        return N.mu

    def letter_value(self, it: _Item) -> sp.Expr:
        name, font = it.name, it.node.font
        if _word_font(font, name):
            return self.word_name(it)
        if font and len(name) > 1:
            raise self.error(
                f"\\{font}{{{name}}}: only one letter is understood in \\{font}{{…}} "
                "(\\mathcal{L}, \\mathcal{B}, \\mathrm{d}, \\mathbf{x})",
                it.pos,
            )
        if font == "mathcal" and name == "L" or name in _LOSS_LETTERS and not font:
            raise self.error(
                f"the loss {name} is only understood in a derivative, as in "
                "\\frac{\\partial L}{\\partial x_i}",
                it.pos,
            )
        if font == "mathcal":
            raise self.error(f"\\mathcal{{{name}}} is not understood here", it.pos)
        self.no_transpose(it)
        if name in _ARRAY_LETTERS:
            index, _ = self.array_index(it)
            return self.power(sp.IndexedBase(_ARRAY_LETTERS[name])[index], it)
        if not font and name in self.names:  # a name an earlier line defined (t, v, R)
            if self.names[name]:
                index, _ = self.array_index(it)
                return self.power(sp.IndexedBase(name)[index], it)
            self.stat_subscripts(it)
            return self.power(sp.Symbol(name), it)
        if self.define_ok and not font and not self.reserved(name) and not it.brackets:
            # the left side names something of its own: t = 1/√(σ²+ε), R_i = x_i − μ
            self.define_ok = False
            if it.sup is not None:
                raise self.error(f"a name with an exponent ({name}^…) cannot be defined", it.pos)
            if it.sub is not None and self.sample_subscript(it.sub):
                self.stat_subscripts(it)  # m_b, v_b: one number per sample b (LayerNorm)
                index = None
            else:
                index = self.array_index(it)[0] if it.sub is not None else None
            self.new_name = (name, index)
            return sp.IndexedBase(name)[index] if index is not None else sp.Symbol(name)
        if name == self.family.batch and not font:
            raise self.error(
                f"{name}, the batch size, in a LayerNorm line: its statistics are over the "
                "features of one sample, so only a sum over the batch (∂L/∂γ_i, ∂L/∂β_i) "
                "takes it",
                it.pos,
            )
        if name in self.family.sizes or (name == "n" and self.size_n):
            if it.sub is not None and self.counts_elements(it.sub):
                return self.power(N.M, it)  # N_i: how many values i takes, the set's size
            self.no_sub(it, f"the size {name}")
            if name == "N" and self.spatial:
                raise self.error(
                    "a lone N in SPATIAL mode: the reduction set of a channel has N·H·W "
                    "elements; write NHW (or N H W) for its size",
                    it.pos,
                )
            return self.power(N.M, it)
        if name in ("H", "W"):
            raise self.error(
                f"{name} alone is not a size bnderive knows: write N H W (the size of the "
                "reduction set in SPATIAL mode)",
                it.pos,
            )
        if name == "d":
            raise self.error("d must be followed by what it differentiates, as in dy_i", it.pos)
        if name in "ijklnpqrstuvwcC":
            raise self.error(
                f"the index {name} is used as a value; indices go in subscripts (x_{name})", it.pos
            )
        raise self.error(
            f"unknown symbol {name}: expected x, y, g, h (arrays), N, m, M (the size), "
            "a macro such as \\mu, \\sigma, \\gamma, or a name an earlier line defines "
            f"({name} = …)",
            it.pos,
        )

    def reserved(self, name: str) -> bool:
        """A letter that cannot be a name of the post's own; m is BatchNorm's size, but a
        LayerNorm post that writes its size otherwise (1/H) may name its mean m_b."""
        if name == "m" and self.family.layer and "m" not in self.family.sizes:
            return False
        return name in _RESERVED

    def name_sample(self, it: _Item) -> str | None:
        """The sample a name of the post's own is written at (m_b: b; μ_{bh}: b), so that
        ∂m_b/∂x_{pq} carries δ_bp as ∂y_{bh}/∂x_{pq} does (LayerNorm's samples never mix)."""
        if it.sub is None or not self.family.layer:
            return None
        names = self.index_names(it.sub)
        if len(names) == 1 and names[0][0] in self.family.samples:
            return names[0][0]
        if len(names) == 2:
            return names[0][0]
        return None

    def own_mu_written(self, it: _Item) -> bool:
        return (
            self.family.layer
            and it.sub is not None
            and len(self.index_names(it.sub)) == 2
            and bool(self.names.get(_OWN_MU))
        )

    def own_mu(self, it: _Item) -> sp.Expr | None:
        """LayerNorm's μ_{bh}: μ with a sample and an element index is not the mean (one
        number per sample) but a post's own name (Levy-Kramer's centred input x_{bh} − m_b),
        defined by a line μ_{bh} = … and used after it as written."""
        if not self.family.layer or it.sub is None or len(self.index_names(it.sub)) != 2:
            return None
        if self.define_ok:
            self.define_ok = False
            index, _ = self.array_index(it)
            self.new_name = (_OWN_MU, index)
            return sp.IndexedBase(_OWN_MU)[index]
        if self.names.get(_OWN_MU):
            index, _ = self.array_index(it)
            return self.power(sp.IndexedBase(_OWN_MU)[index], it)
        raise self.error(
            f"{_item_text(it)}: μ with an element index is not the mean (one number per "
            "sample); a name of the post's own needs the line that defines it first (μ_{bh} = …)",
            it.pos,
        )

    def word_name(self, it: _Item) -> sp.Expr:
        """\\text{rstd}, \\mathrm{istd}: a name of the post's own written as a word, defined by a
        line before it is used (as a one-letter name is)."""
        name = it.name
        self.no_transpose(it)
        if name in self.names:
            if self.names[name]:
                index, _ = self.array_index(it)
                return self.power(sp.IndexedBase(name)[index], it)
            self.stat_subscripts(it)
            return self.power(sp.Symbol(name), it)
        if self.define_ok and not it.brackets and it.sup is None:
            self.define_ok = False
            index = self.array_index(it)[0] if it.sub is not None else None
            self.new_name = (name, index)
            return sp.IndexedBase(name)[index] if index is not None else sp.Symbol(name)
        raise self.error(
            f"{name}: a name written as a word that no earlier line defines "
            f"(\\{it.node.font}{{{name}}} = … before it is used; prose goes outside the maths)",
            it.pos,
        )

    def no_transpose(self, it: _Item) -> None:
        sup = it.sup
        if (
            sup is not None
            and len(sup.items) == 1
            and isinstance(sup.items[0][0], Letter)
            and sup.items[0][0].name == "T"
        ):
            raise self.error(
                f"{_item_text(it)}: a transpose (matrix notation) is not understood; write the "
                "sums with indices (Σ_k a_k b_k)",
                it.pos,
            )

    def counts_elements(self, sub: ScriptArg) -> bool:
        """N_i: a size subscripted with a letter the document writes as an element index
        (``Family.elements``) and that is no feature on this line."""
        if len(sub.items) != 1 or sub.items[0][1] is not None:
            return False
        node = sub.items[0][0]
        while isinstance(node, Group) and node.kind == "brace":
            node = node.inner
        if not isinstance(node, Letter) or node.font or node.name not in self.family.elements:
            return False
        return self.roles.get(node.name, ("element",))[0] == "element"

    def is_size(self, sub: ScriptArg) -> bool:
        return (
            len(sub.items) == 1
            and isinstance(sub.items[0][0], Letter)
            and not sub.items[0][0].font
            and (sub.items[0][0].name in ("N", "m", "M") or sub.items[0][0].name.isupper())
        )

    def einstein_ones(self, node: Scripted) -> bool:
        """\\mathbf{1}_h with an index under Einstein's convention (not \\mathbf{1}_N, a size)."""
        return (
            self.family.einstein
            and isinstance(node.base, Ones)
            and node.sub is not None
            and node.sup is None
            and not self.is_size(node.sub)
        )

    def ones_tensor(self, sub: ScriptArg) -> sp.Expr:
        """\\mathbf{1}_h in Einstein's notation: ones indexed by h, which broadcast (1_h m_b) or,
        with h repeated, sum (1_h x_{bh} = Σ_h x_{bh}); 1_b over LayerNorm's samples is 1."""
        names = self.index_names(sub)
        if len(names) != 1 or names[0][0] == "B" or names[0][0].isdigit():
            raise self.error("a ones tensor takes one index, as in \\mathbf{1}_h", sub.pos)
        name, pos = names[0]
        if self.family.layer and name in self.family.samples:
            self.feature(name, pos)
            return sp.Integer(1)
        return sp.IndexedBase(_ONES)[self.element_symbol([name], pos)]

    def size_subscript(self, sub: ScriptArg) -> None:
        """\\mathbf{1}_N: the subscript of a vector of ones is the size of the set."""
        if len(sub.items) == 1 and isinstance(sub.items[0][0], Letter):
            if sub.items[0][0].name in ("N", "m", "M") and not sub.items[0][0].font:
                return
        raise self.error("expected the size N (or m, M) under a vector of ones", sub.pos)

    def word_value(self, it: _Item) -> sp.Expr:
        name = it.name
        if name in ("dgamma", "dbeta") and self.family.layer:
            index, _ = self.array_index(it)
            return self.power(sp.IndexedBase(name)[index], it)
        if name == "eps":
            self.no_sub(it, "eps")
            return self.power(N.eps, it)
        if name in ("dout", "dxhat"):
            index, _ = self.array_index(it)
            base = N.g if name == "dout" else sp.IndexedBase("dxhat")
            return self.power(base[index], it)
        self.stat_subscripts(it)
        return self.power(sp.Symbol(name), it)

    def macro_value(self, it: _Item) -> sp.Expr:
        name = it.name
        if name in ("gamma", "beta") and self.family.layer:
            return self.power(self.affine_value(it), it)
        own = self.own_mu(it) if name == "mu" else None
        if own is not None:
            return own
        if name in _STATS:
            self.stat_subscripts(it)
            return self.power(getattr(N, _STATS[name]), it)
        if name == "sigma":
            self.stat_subscripts(it)
            exponent = self.exponent(it.sup) if it.sup is not None else None
            if exponent != 2 and "sigma" in self.names:  # σ as a line of the post defined it
                return self.power(sp.Symbol("sigma"), it)
            if self.define_ok and it.sup is None and self.sigma in ("std", None):
                # σ = √(σ² + ε): the post says what its σ is; a name from here on
                self.define_ok = False
                self.new_name = ("sigma", None)
                return sp.Symbol("sigma")
            return self.sigma_value(it)
        if name == "ell":
            raise self.error(
                "the loss \\ell is only understood in a derivative, as in "
                "\\frac{\\partial \\ell}{\\partial x_i}",
                it.pos,
            )
        if name == "sum":  # pragma: no cover - the grammar makes \sum a BigSum
            raise self.error("\\sum without a body", it.pos)
        own = (
            ""
            if name in _LATEX_OWN
            else (
                ", and this file does not define it (a \\newcommand or \\def in the file is "
                "expanded; a macro the post defines elsewhere is not)"
            )
        )
        raise self.error(
            f"unknown macro \\{name}{own}: expected "
            "one of \\mu \\sigma \\epsilon \\varepsilon \\gamma \\beta \\hat \\frac \\sqrt \\sum "
            "\\partial \\delta \\cdot \\times \\left \\right",
            it.pos,
        )

    def affine_value(self, it: _Item) -> sp.Expr:
        """LayerNorm's γ_i, β_h, γ: one per element (a bare one is the element of its context,
        as a bare x is)."""
        index, _ = self.array_index(it)
        return sp.IndexedBase(it.name)[index]

    def sigma_value(self, it: _Item) -> sp.Expr:
        exp = self.exponent(it.sup) if it.sup is not None else None
        if self.sigma == "var":  # σ is the variance itself
            return N.var if exp is None else N.var**exp
        if self.sigma == "std":  # σ = √σ²
            return sp.sqrt(N.var) if exp is None else N.var ** (exp / 2)
        if exp == 2:
            return N.var
        raise self.error(
            "\\sigma without ^2: declare what σ means (front matter `sigma: std` when σ is the "
            "standard deviation √σ², `sigma: var` when σ is the variance)",
            it.pos,
        )

    def hat_value(self, it: _Item) -> sp.Expr:
        self.no_transpose(it)
        inner = self.hat_item(it)
        index, _ = self.array_index(inner)
        return N.xhat[index]

    def hat_item(self, it: _Item) -> _Item:
        """\\hat{x}_i, \\hat{x_i}, \\hat x[n]: the x (or h) under the hat, with its indices."""
        arg = it.node.arg
        inner = self.item(arg) if not isinstance(arg, Product) else None
        if inner is None or inner.kind != "letter" or inner.name not in ("x", "h", "X"):
            raise self.error(
                f"\\hat{{{_describe(arg)}}}: only \\hat{{x}} and \\hat{{h}} are understood", it.pos
            )
        if inner.sup is not None:
            raise self.error("an exponent inside \\hat{…}", inner.sup.pos)
        if inner.sub is not None and it.sub is not None:
            raise self.error("indices both inside and outside \\hat{…}", it.sub.pos)
        return _Item(
            "letter",
            it.pos,
            inner.name,
            inner.node,
            inner.sub or it.sub,
            None,
            list(it.brackets),
        )

    # -- differentials and derivatives ------------------------------------------------------------
    def diff_of(self, it: _Item) -> _Diff:
        t = it.target
        self.target_feature = None
        kind, index, value = self.target(t)
        return _Diff(it.name, kind, index, _item_text(t), it.pos, value, self.target_feature)

    def target(self, t: _Item) -> tuple[str, sp.Expr | None, sp.Expr | None]:
        """What a differential acts on: (kind, element index, value).  The kinds: the loss, a
        node of the graph (x, y, xhat, mu, var, gamma, beta; std for σ = √σ²), a name an earlier
        line defined, or other (something bnderive does not know)."""
        if t.kind == "letter":
            font = t.node.font
            if (t.name in _LOSS_TARGETS and not font) or (font == "mathcal" and t.name == "L"):
                self.no_sub(t, "the loss")
                return "loss", None, None
            if t.name in ("x", "h", "X") and not font:
                self.no_transpose(t)
                index, self.target_feature = self.array_index(t)
                return "x", index, self.power(N.x[index], t)
            if t.name in ("y", "Y") and not font:
                self.no_transpose(t)
                index, self.target_feature = self.array_index(t)
                return "y", index, self.power(N.y[index], t)
            if t.name in self.aliases and not font:
                # a name the post defined as the layer's y (or x̂), as the line that defines it
                # was checked to say: that node
                node = self.aliases[t.name]
                index, self.target_feature = self.array_index(t)
                base = N.y if node == "y" else N.xhat
                return node, index, self.power(base[index], t)
            if t.name in self.names and (not font or _word_font(font, t.name)):
                self.target_feature = self.name_sample(t)
                return "name", None, self.letter_value(t)
        if t.kind == "macro" and t.name == "mu" and self.own_mu_written(t):
            # ∂μ_{pq} of the post's own μ_{bh}: its sample p is the feature of the derivative
            value = self.macro_value(t)
            index, self.target_feature = self.array_index(t)
            return "name", None, value
        if t.kind == "macro":
            if t.name in ("ell", "L"):  # \ell, and \L as posts define it (\mathcal{L})
                return "loss", None, None
            if t.name in ("gamma", "beta") and self.family.layer:
                index, self.target_feature = self.array_index(t)
                value = self.power(self.affine_value(t), t)
                return (t.name if t.sup is None else "expr"), index, value
            if t.name in ("mu", "gamma", "beta"):
                self.target_feature = self.stat_subscripts(t)
                value = self.macro_value(t)
                return (t.name if t.sup is None else "expr"), None, value
            if t.name == "sigma" and t.sup is None and "sigma" in self.names:
                # ∂σ_p of the post's own σ (σ_b = √(v_b + ε)): a name, at sample p
                self.target_feature = self.stat_subscripts(t)
                return "name", None, sp.Symbol("sigma")
            if t.name == "sigma":
                self.target_feature = self.stat_subscripts(t)
                exp = self.exponent(t.sup) if t.sup is not None else None
                value = self.sigma_value(t)  # raises when σ is undeclared
                if value == N.var:
                    return "var", None, value
                if exp is None and self.sigma == "std":
                    return "std", None, value
                return "expr", None, value
        if t.kind == "node" and isinstance(t.node, Hat):
            inner = self.hat_item(t)
            index, self.target_feature = self.array_index(inner)
            value = self.hat_value(t)
            return ("xhat" if t.sup is None else "expr"), index, self.power(value, t)
        if t.kind == "node" and isinstance(t.node, Mean) and t.sub is None:
            # ∂x̄_k/∂x_{lk}: the mean of the set is μ
            value = self.item_value(t)
            return ("mu" if t.sup is None else "expr"), None, value
        if t.kind in ("node", "bracket") and isinstance(
            t.node, Group | Bracket | Frac | Sqrt | BigSum
        ):
            # ∂(γx̂ + β)/∂x̂_k, ∂ Σ_i (x_i − μ)²/∂x_j: an expression, differentiated as written
            return "expr", None, self.item_value(t)
        return "other", None, None

    def differential(self, node: Node) -> _Diff | None:
        """The numerator or denominator of a fraction when it is a differential: ∂L, dy_{kl},
        ∂x̂_k, ∂(γx̂ + β), ∂ \\frac{1}{m}\\sum x_i, a lone ∂ (an operator); None otherwise.
        What follows the ∂ (or d, δ) is all of it: ∂ istd is one unknown name, not ∂i·s·t·d."""
        while isinstance(node, Group) and node.kind == "brace":
            node = node.inner
        nodes = list(node.items) if isinstance(node, Product) else [node]
        first = nodes[0]
        if isinstance(first, Letter) and first.name == "d" and first.font in ("", "mathrm"):
            prefix = "d"
            # dout, dxhat, dgamma: a code-style word, not a differential
            letters = "".join(n.name for n in nodes if isinstance(n, Letter) and not n.font)
            if any(letters.startswith(w) for w in _WORDS if w.startswith("d")) and all(
                isinstance(n, Letter) for n in nodes[: len(letters)]
            ):
                return None
        elif isinstance(first, Macro) and first.name in ("partial", "part"):
            prefix = "partial"
        elif isinstance(first, Macro) and first.name == "delta":
            prefix = "delta"
        else:
            return None
        rest = nodes[1:]
        if len(rest) == 1:  # ∂{x_{c,i}}, as MathType braces what follows the ∂: the braces group
            while isinstance(rest[0], Group) and rest[0].kind == "brace":
                rest = (
                    list(rest[0].inner.items)
                    if isinstance(rest[0].inner, Product)
                    else [rest[0].inner]
                )
                if len(rest) != 1:
                    break
        if not rest:
            return _Diff(prefix, "none", None, "", first.pos)
        text = " ".join(_render(n) for n in rest)
        items = self.attach_brackets(self.words([self.item(n) for n in rest]))
        if len(items) == 1:
            self.target_feature = None
            kind, index, value = self.target(items[0])
            return _Diff(prefix, kind, index, text, first.pos, value, self.target_feature)
        if all(isinstance(n, Letter) and not n.font for n in rest):
            word = "".join(n.name for n in rest)  # a word: istd, xcorrected
            return _Diff(prefix, "other", None, word, first.pos)
        value = undot(self.value(Product(rest[0].pos, tuple(rest))))
        return _Diff(prefix, "expr", None, text, first.pos, value)

    def diff_value(self, d: _Diff) -> sp.Expr:
        """dy_i, δy, δβ, d\\hat{x}_i: the adjoint itself (∂ needs a fraction)."""
        if d.prefix == "partial":
            raise self.error(
                f"\\partial {d.text} outside a fraction: write \\frac{{\\partial L}}{{\\partial "
                f"{d.text}}}",
                d.pos,
            )
        if d.target == "loss":
            raise self.error(
                f"d{d.text} alone: the differential of the loss belongs in dL/dx", d.pos
            )
        if d.target == "none":
            raise self.error(f"{d.prefix} must be followed by what it differentiates", d.pos)
        return self.adjoint(d)

    def adjoint(self, d: _Diff) -> sp.Expr:
        if d.target == "y":
            return N.g[d.index]
        if d.target in _ELEMENTWISE_ADJOINT:
            return sp.IndexedBase(_ELEMENTWISE_ADJOINT[d.target])[d.index]
        if d.target in ("gamma", "beta") and self.family.layer:
            return sp.IndexedBase(_SCALAR_ADJOINT[d.target])[d.index]
        if d.target in _SCALAR_ADJOINT:
            return sp.Symbol(_SCALAR_ADJOINT[d.target])
        if d.target == "std":  # σ = √σ²: its gradient is 2σ ∂L/∂σ² (``documents``)
            return DSTD
        own = _own_node(d.value) if d.target == "name" else None
        if own is not None:  # ∂L/∂σ_p of the post's σ: worked out in the post's graph
            if isinstance(own, sp.Indexed):
                return sp.IndexedBase(OWN_ADJOINT + str(own.base.label))[own.indices[0]]
            return sp.Symbol(OWN_ADJOINT + own.name)
        if d.target == "expr" and d.value is not None:
            # ∂C/∂(γx̂_i): a sub-expression of the forward pass as a node (``expr_nodes``)
            return N.ExprAdjoint(d.value)
        if d.target in ("other", "expr", "name"):
            raise self.error(
                f"∂L/∂{d.text}: a gradient with respect to {d.text}, which is not a node of "
                "the layer's graph (y, x̂, σ², μ, x, γ, β)",
                d.pos,
                NotCheckable,
            )
        raise self.error(  # pragma: no cover - every kind is handled above
            f"the gradient with respect to {d.text} is not understood", d.pos
        )

    def derivative(self, num: _Diff, den: _Diff) -> sp.Expr | _Operator:
        if den.target in ("loss", "none"):
            raise self.error(
                f"∂{num.text}/∂{den.text or '?'} is not a derivative bnderive knows", den.pos
            )
        if num.target == "none":
            return _Operator(den, num.pos)  # \frac{\partial}{\partial x_i}: acts on what follows
        if num.target == "loss":
            return self.adjoint(den)
        local = self.local(num.value, num.text, den, num.pos)
        if num.feature and den.feature and num.feature != den.feature:
            # ∂y_{kl}/∂h_{ij}: zero unless l = j (features never mix), δ_lj
            local = (
                sp.KroneckerDelta(
                    sp.Symbol(num.feature, integer=True), sp.Symbol(den.feature, integer=True)
                )
                * local
            )
        return local

    def local(self, of: sp.Expr | None, text: str, den: _Diff, pos: Pos) -> sp.Expr:
        """∂(of)/∂(den): a local derivative, left as ``Partial`` until its value is worked out
        (``derive.partial_value``) with the document's conventions."""
        if of is not None:
            of = undot(of)  # ∂(a · b)/∂x̂_k: a, b at the element ∂ names
        if of is None:
            raise self.error(
                f"∂{text}/∂{den.text}: bnderive does not know {text}; the nodes of the graph are "
                "x, μ, σ², x̂, y, γ, β (and names earlier lines define)",
                pos,
                NotCheckable,
            )
        if den.target in ("x", "y", "xhat", "mu", "var", "gamma", "beta") and den.value is not None:
            wrt = den.value
            if isinstance(wrt, sp.Pow):
                wrt = wrt.base  # pragma: no cover - a node with an exponent is "expr"
            if den.target == "x" and wrt == N.x[_BARE] and _BARE in of.free_symbols:
                # ∂x̂/∂x between arrays without an index: beside the paths through σ² and μ
                # (Calvin Feng's ∂L/∂x̂·∂x̂/∂x + ∂L/∂σ²·∂σ²/∂x + …) each element's own
                # partial; alone (Sinai's ∂z/∂x ∂L/∂z) the Jacobian? (``_read_right``)
                self.bare_jacobians.append(f"∂{text}/∂{den.text}")
            if isinstance(wrt, sp.Indexed) and _BARE in of.free_symbols:
                # ∂(γx̂ + β)/∂x̂_k: what is differentiated is about the element k
                of = of.xreplace({_BARE: wrt.indices[0]})
            return N.Partial(of, wrt, sp.Integer(0))
        own = _own_node(den.value) if den.target == "name" else None
        if own is not None:  # ∂σ_b/∂v_p: in the post's graph (``documents``), v held as a node
            return N.Partial(of, own, sp.Integer(0))
        if den.target == "expr" and den.value is not None:
            # ∂y_i/∂(γx̂_i): with respect to a sub-expression of the forward pass (``expr_nodes``)
            return N.Partial(of, N.ExprNode(den.value), sp.Integer(0))
        raise self.error(
            f"∂{text}/∂{den.text}: a derivative with respect to {den.text}, which is not a node "
            "of the layer's graph (x, μ, σ², x̂, y, γ, β)",
            den.pos,
            NotCheckable,
        )

    def frac_value(self, node: Frac) -> sp.Expr | _Operator:
        num = self.differential(node.num)
        den = self.differential(node.den)
        if num is None and den is not None and _is_word(node.num, "dout"):
            # \frac{dout}{dx_{lk}}: dout names ∂L/∂out; over a differential, and without an
            # element of out, it is the loss's differential (as in code, dout/dvar_j)
            self.notes.append(
                f"dout/d{den.text} read as ∂L/∂{den.text}: dout names the derivative of the loss"
            )
            num = _Diff("d", "loss", None, "out", node.num.pos)
        if num is not None and den is not None:
            return self.derivative(num, den)
        if (
            num is not None
            and num.prefix == "partial"
            or den is not None
            and den.prefix == "partial"
        ):
            d = num if num is not None and num.prefix == "partial" else den
            assert d is not None
            raise self.error(
                "a fraction with ∂ on one side only: expected \\frac{\\partial L}{\\partial x_i}",
                d.pos,
            )
        top = self.diff_value(num) if num is not None else self.plain(self.value_or_diff(node.num))
        bottom = (
            self.diff_value(den) if den is not None else self.plain(self.value_or_diff(node.den))
        )
        return top / bottom

    # -- sums -------------------------------------------------------------------------------------
    def bigsum(self, node: BigSum) -> sp.Expr:
        narrow = self.sum_scope(node)
        if narrow is not None:  # the sum covers its first factor only: Σ(…) · the rest
            return self.value(narrow)
        self.in_sum += 1  # a sum's body is index notation: no matrix notation inside
        try:
            return self.bigsum_value(node)
        finally:
            self.in_sum -= 1

    def bigsum_value(self, node: BigSum) -> sp.Expr:
        both = self.part_sum(node)
        if both is not None:
            return both
        bound, excluded = self.sum_indices(node)
        explicit = self.check_limits(node)
        if explicit == _OVER_BATCH:
            return self.batch_sum(node, bound, excluded)
        body = self.value(node.body)
        return self.sum_value(body, bound, node.pos, excluded, explicit)

    def part_sum(self, node: BigSum) -> sp.Expr | None:
        """Σ_{s=1}^{N_s} Σ_{k=1}^{N_k} over the two letters of an element (s, k) of x_{s,c,k}
        (``Family.parts``): one sum over the set, each index up to its own N; None for any
        other sum."""
        inner = node.body
        if not self.family.parts or not isinstance(inner, BigSum):
            return None
        outer_bound, outer_out = self.sum_indices(node)
        inner_bound, inner_out = self.sum_indices(inner)
        if outer_out or inner_out or len(outer_bound) != 1 or len(inner_bound) != 1:
            return None
        pair = (outer_bound[0][0], inner_bound[0][0])
        if pair not in self.family.parts and pair[::-1] not in self.family.parts:
            return None
        for one, (letter, _) in ((node, outer_bound[0]), (inner, inner_bound[0])):
            top = one.sup.items[0][0] if one.sup is not None and len(one.sup.items) == 1 else None
            limit = _part_size(_Item("node", one.pos, node=top)) if top is not None else None
            if self.lower_limit(one) != 1 or limit != letter:
                raise self.error(
                    f"a sum over {letter}, a part of the element ({', '.join(pair)}), is "
                    f"understood from 1 to N_{letter} only (the number of values {letter} takes)",
                    one.pos,
                )
        body = self.value(inner.body)
        return self.sum_value(body, outer_bound + inner_bound, node.pos, [], None)

    def batch_sum(
        self, node: BigSum, bound: list[tuple[str, Pos]], excluded: list[sp.Expr]
    ) -> sp.Expr:
        """LayerNorm's Σ_{b=1}^{N} over the samples: its index names the sample (a set), and one
        set's view of ∂L/∂γ_i = Σ_b g_{bi} x̂_{bi} is its own term; any other quantity is one
        sample's, so the sum needs a δ that picks it (as a sum over BatchNorm's features)."""
        if excluded or len(bound) > 1:
            raise self.error("a sum over the batch leaves no sample out", node.pos)
        for name, pos in bound:
            self.feature(name, pos)
        body = undot(self.value(node.body))
        if self.batch_sum_ok:
            return body
        for name, _ in bound:
            body = self.collapse_feature(body, name, node.pos)
        return body

    def sum_scope(self, node: BigSum) -> Product | None:
        """\\sum_{i=1}^m (g_i (x_i - μ)) \\frac{2}{m}(x_i - μ) on a line about x_i: the sum's
        index is the line's own element, and a factor after the first uses it.  Whether that
        factor is inside the sum (as the notation reads: the body is the rest of the product)
        or is the line's x_i cannot be told: each is a reading (``Ambiguity``), the sum covering
        all of the product, or its factors up to one of them (each place after which a factor
        uses i).  A reading of the second kind is returned as the product Σ(first ones) · rest."""
        if (
            self.line_element is None
            or not isinstance(node.body, Product)
            or node.sub is None
            or node.scoped
        ):
            return None
        element = self.line_element
        if element not in {n for n, _ in self.sum_indices(node)[0]}:
            return None
        items = node.body.items
        factors = [k for k, n in enumerate(items) if not isinstance(n, Op)]
        cuts = [
            k
            for k in factors[1:]
            if any(_uses_index(n, element) for n in items[k:] if not isinstance(n, Op))
        ]
        if not cuts:
            return None
        labels = [f"the sum covers {_short(_render(node.body))} (its {element} throughout)"]
        for k in cuts:
            head = [n for n in items[:k] if not isinstance(n, Op) or n is not items[k - 1]]
            labels.append(
                f"the sum covers {_short(_render(Product(node.pos, tuple(head))))} only, and "
                f"{_short(_render(Product(items[k].pos, items[k:])))} after it is the line's "
                f"{element}"
            )
        ambiguity = Ambiguity(
            "sum",
            node.pos,
            f"the sum's index {element} is also the line's element {element}, and a factor "
            f"after the first uses it: is it inside the sum or the line's {element}",
            tuple(labels),
            "Rename the sum's index, or group its body",
        )
        chosen = self.choose(ambiguity)
        if chosen == 0:
            return None
        k = cuts[chosen - 1]
        if isinstance(items[k - 1], Op):
            k -= 1  # Σ a \\cdot b, Σ a / b: the operator joins the sum to what follows
        body = items[0] if k == 1 else Product(items[0].pos, items[:k])
        inner = BigSum(node.pos, node.sub, node.sup, body, scoped=True)
        return Product(node.pos, (inner, *items[k:]))

    def mean_value(self, it: _Item) -> sp.Expr:
        """E[x] over the batch: (1/M) Σ, the element inside written bare or with the index of
        E_i (E_B, E_{\\mathcal{B}} name the batch)."""
        bound: list[tuple[str, Pos]] = []
        if it.sub is not None:
            bound = [(n, p) for n, p in self.index_names(it.sub) if n != "B"]
        body = self.value(it.node.inner)
        return self.sum_value(body, bound, it.pos, [], None) / N.M

    def variance_value(self, it: _Item) -> sp.Expr:
        """Var[x]: the mean of the squared deviations from the mean, (1/M) Σ_k (x_k − E[x])²
        (the variance of the set's values, the biased σ²; Var_i names the summed index as
        E_i does)."""
        bound: list[tuple[str, Pos]] = []
        if it.sub is not None:
            bound = [(n, p) for n, p in self.index_names(it.sub) if n != "B"]
        body = self.value(it.node.inner)
        mean = self.sum_value(body, bound, it.pos, [], None) / N.M
        return self.sum_value((body - mean) ** 2, bound, it.pos, [], None) / N.M

    def sum_value(
        self,
        body: sp.Expr,
        bound: list[tuple[str, Pos]],
        pos: Pos,
        excluded: list[sp.Expr],
        explicit: int | None,
    ) -> sp.Expr:
        """Σ over the reduction set of ``body``, over the ``bound`` indices (an element, or the
        spatial triple); ``excluded`` elements left out (Σ_{j≠i} f(j) = Σ_j f(j) − f(i));
        ``explicit``: the sum runs over the elements 1..explicit only, written out."""
        body = undot(body)  # Σ_i (a · b): a and b are the summed element's, not vectors
        features = [n for n, _ in bound if self.roles.get(n, ("",))[0] == "feature"]
        elements = [(n, p) for n, p in bound if n not in features]
        for name in features:
            body = self.collapse_feature(body, name, pos)
        if not elements:
            if features:
                return body
            free = sorted(self.element_indices(body) - {_BARE}, key=str)
            if _BARE not in body.free_symbols and len(free) == 1:
                index = free[0]  # \sum (x_i - \mu): no limits, the sum is over the index written
            else:
                index = _BARE  # \sum with no limits: the summed element is written bare
        elif len(elements) == 1:
            index = self.element_symbol([elements[0][0]], elements[0][1])
        else:
            names = tuple(n for n, _ in elements)
            match = [s for s, parts in self.composites.items() if set(parts) == set(names)]
            if not match and not any(
                sp.Symbol(name, integer=True) in body.free_symbols for name in names
            ):  # Σ_{n,h,w} δy: the summand names the element bare (or not at all)
                match = [self.element_symbol(list(names), pos)]
            if not match:
                raise self.error(
                    f"a sum over {', '.join(names)} of something not indexed by all of them "
                    "(write x[n][c][h][w] in a sum over n, h, w)",
                    pos,
                )
            index = match[0]
        if not isinstance(index, sp.Symbol):
            raise self.error("a sum over a number", pos)
        if index != _BARE and _BARE in body.free_symbols:
            body = body.xreplace({_BARE: index})  # \sum_{n,h,w} δy: the summed element
        for s, parts in self.composites.items():
            if s != index and s in body.free_symbols and set(parts) & {n for n, _ in elements}:
                raise self.error(
                    f"a sum over {', '.join(n for n, _ in elements)} covers only part of the "
                    f"element ({', '.join(parts)}): write \\sum_{{{','.join(parts)}}}",
                    pos,
                )
        if explicit is not None:
            # Σ_{i=1}^{2}: the elements 1 and 2 only, written out (elements by number)
            return sp.Add(*[body.xreplace({index: sp.Integer(k)}) for k in range(1, explicit + 1)])
        self.fresh += 1
        placeholder = sp.Symbol(f"_b{self.fresh}", integer=True)
        total = N.reduce_sum(body.xreplace({index: placeholder}), placeholder)
        for other in excluded:
            if other == index:
                raise self.error("a sum that leaves out its own index", pos)
            total -= body.xreplace({index: other})  # Σ_{j≠i} f(j) = Σ_j f(j) − f(i)
        return total

    def sum_indices(self, node: BigSum) -> tuple[list[tuple[str, Pos]], list[sp.Expr]]:
        """The indices a sum binds, and the elements it leaves out (\\sum_{j \\ne i})."""
        if node.sub is None:
            return [], []
        out: list[tuple[str, Pos]] = []
        excluded: list[tuple[str, str, Pos]] = []
        for lhs, rhs in node.sub.items:
            if isinstance(lhs, Relation):  # j \ne i: leave element i out
                if lhs.op != "ne":  # pragma: no cover - the grammar makes '=' an item pair
                    raise self.error("expected j \\ne i", lhs.pos)
                left = self.index_names(ScriptArg(lhs.pos, ((lhs.lhs, None),), True))
                right = self.index_names(ScriptArg(lhs.pos, ((lhs.rhs, None),), True))
                if len(left) != 1 or len(right) != 1:
                    raise self.error("a sum leaves out one element: write j \\ne i", lhs.pos)
                excluded.append((left[0][0], right[0][0], lhs.pos))
                if not any(n == left[0][0] for n, _ in out):
                    out += left
                continue
            if _is_member(lhs):  # \sum_{i \in B}: over the batch, the whole reduction set
                if len(node.sub.items) > 1 or node.sup is not None:
                    raise self.error(
                        "a sum over i \\in B takes no other limits: write \\sum_{i \\in B}",
                        node.pos,
                    )
                lhs = lhs.items[0]
            elif isinstance(lhs, Product) and any(
                isinstance(f, Macro) and f.name == "in" for f in lhs.items
            ):
                raise self.error(
                    "a sum over i \\in S is understood only for S = B or \\mathcal{B} (the "
                    "batch: the whole reduction set)",
                    lhs.pos,
                )
            names = self.index_names(ScriptArg(lhs.pos, ((lhs, None),), True))
            if rhs is not None and not (isinstance(rhs, Num) and rhs.text in ("0", "1")):
                raise self.error(
                    "a sum from anything but 1 (or 0, to N−1): only sums over the whole "
                    "reduction set are understood",
                    rhs.pos,
                )
            if any(n == name for name, _ in names for n, _ in out):
                continue  # \sum_{j=1, j \ne i}: j named twice
            out += names
        if any(n == "B" or n.isdigit() for n, _ in out):
            raise self.error("expected index letters under \\sum, as in \\sum_{i=1}^{N}", node.pos)
        bound = {n for n, _ in out}
        drop: list[sp.Expr] = []
        for name, other, pos in excluded:
            if name not in bound:  # pragma: no cover - added to out above
                raise self.error(f"{name} \\ne {other}: {name} is not the sum's index", pos)
            if other.isdigit():
                drop.append(sp.Integer(int(other)))
            else:
                drop.append(self.element_symbol([other], pos))
        return out, drop

    def check_limits(self, node: BigSum) -> int | None:
        """The upper limit is the size of the set (N, m, M, NHW or N,H,W; N−1 when the sum
        starts at 0): None.  A small number n (\\sum_{i=1}^{2}) is a sum over elements 1..n,
        written out: n."""
        lower = self.lower_limit(node)
        if node.sup is None:
            if lower == 0:
                raise self.error("a sum from 0 needs its upper limit (N-1)", node.pos)
            return None
        items = node.sup.items
        if len(items) == 3 and all(rhs is None for _, rhs in items) and lower == 1:
            letters = [lhs.name if isinstance(lhs, Letter) else "" for lhs, _ in items]
            if letters == ["N", "H", "W"]:
                return None
        if len(items) == 1 and items[0][1] is None:
            top = items[0][0]
            if (
                isinstance(top, Letter)
                and not top.font
                and top.name == self.family.batch
                and lower == 1
            ):
                return _OVER_BATCH
            if self.other_batch_size(top, lower):
                # Σ_{s=1}^{L} over a sequence (dy_{b,s,i}): another dimension of the samples
                self.notes.append(
                    f"Σ up to {top.name} read as a sum over the samples (the set's size is "
                    f"{', '.join(sorted(self.family.sizes - {'M'}))})"
                )
                return _OVER_BATCH
            upper = self.value(top)
            if upper == N.M - 1 + lower:
                return None
            if lower == 0 and upper == N.M:
                # Σ_{i=0}^{N}: N + 1 terms of a set of N; the post means the whole set (the
                # same sum with 1/N is its mean), so it is read so, and the line says it
                top_text = _render(top)
                self.notes.append(
                    f"Σ from 0 to {top_text} read as the sum over the whole set (a sum from 0 "
                    f"ends at {top_text}−1)"
                )
                return None
            if lower == 1 and upper.is_Integer and 1 <= int(upper) <= 8:
                return int(upper)
        raise self.error(
            "the upper limit of a sum must be the size of the reduction set (N, m, M, NHW, or "
            "N,H,W; N-1 for a sum from 0): only sums over the whole set are understood",
            node.sup.pos,
        )

    def other_batch_size(self, top: Node, lower: int) -> bool:
        """LayerNorm's Σ_{s=1}^{L} next to Σ_{b=1}^{N}: an upper-case letter that is no size
        of the set (the post writes its features' number otherwise, 1/D) is a dimension of the
        samples, as the batch is (a sequence's length L, time T); its index must then name the
        sample in what is summed (x_{b,s,i}: a role the reader checks)."""
        return (
            self.family.layer
            and lower == 1
            and isinstance(top, Letter)
            and not top.font
            and len(top.name) == 1
            and top.name.isupper()
            and top.name not in self.family.sizes
            and self.family.batch is not None
        )

    def lower_limit(self, node: BigSum) -> int:
        if node.sub is None:
            return 1
        for _, rhs in node.sub.items:
            if isinstance(rhs, Num) and rhs.text == "0":
                return 0
        return 1

    def collapse_feature(self, body: sp.Expr, name: str, pos: Pos) -> sp.Expr:
        """Σ_l over a feature l: features never mix, so each term must carry δ_jl; the sum is
        then the term at l = j, and with the feature index dropped that is the term with δ = 1."""
        l = sp.Symbol(name, integer=True)
        deltas = [d for d in body.atoms(sp.KroneckerDelta) if l in d.args]
        for d in deltas:
            for a in d.args:
                if a != l and isinstance(a, sp.Symbol):
                    self.feature(a.name, pos)
        without = body.xreplace({d: 0 for d in deltas})
        if not _vanishes(without) and self.family.layer:
            raise self.error(
                f"a sum over the samples ({name}) with a term that has no δ picking one sample: "
                "LayerNorm's quantities are one sample's (only ∂L/∂γ_i and ∂L/∂β_i sum over "
                "the batch)",
                pos,
            )
        if not _vanishes(without):
            raise self.error(
                f"a sum over the feature index {name} with a term that has no δ linking {name} "
                "to the line's feature: that would mix features, which BatchNorm never does "
                "(statistics over the features of one sample are Layer Normalization, which "
                "bnderive does not model yet)",
                pos,
            )
        out = body.xreplace({d: 1 for d in deltas})
        if l in out.free_symbols:  # pragma: no cover - features are dropped where they appear
            raise self.error(f"the feature index {name} is used outside δ", pos)
        return out

    # -- the end of a line ------------------------------------------------------------------------
    def finish(self, expr: sp.Expr, pos: Pos) -> sp.Expr:
        """Feature deltas resolved, bound indices named k, p, q, ... (never a free index); a
        dot product the line did not decide on is read elementwise (``undot``)."""
        expr = undot(expr)
        for d in list(expr.atoms(sp.KroneckerDelta)):
            roles = [self.roles.get(str(a), ("element",))[0] for a in d.args]
            if "feature" in roles:
                if d.args[0] != d.args[1]:
                    raise self.error(
                        f"δ between the features {d.args[0]} and {d.args[1]}: features never "
                        "mix, so a line is about one feature",
                        pos,
                    )
        free = {
            s.name
            for s in expr.free_symbols
            if isinstance(s, sp.Symbol) and s.is_integer and not _PLACEHOLDER.fullmatch(s.name)
        }
        return _name_bound(expr, free | {"i"})

    def element_indices(self, expr: sp.Expr) -> set[sp.Symbol]:
        return {
            s
            for s in expr.free_symbols
            if isinstance(s, sp.Symbol)
            and s.is_integer
            and s != N.M
            and not _PLACEHOLDER.fullmatch(s.name)
        }


def _function_name(head: Node | None, arg: Node | None) -> str | None:
    """``c(R)`` for a letter c (not an array, the loss or a size) followed by one letter in
    parentheses: the name of a function of the post's own, with its argument."""
    if not (
        isinstance(head, Letter)
        and (not head.font or _word_font(head.font, head.name))
        and head.name not in _RESERVED
        and isinstance(arg, Group)
        and arg.kind == "paren"
        and isinstance(arg.inner, Letter)
        and not arg.inner.font
    ):
        return None
    return f"{head.name}({arg.inner.name})"


def _indicator(base: Node, sub: ScriptArg | None) -> Relation | None:
    """The comparison of an indicator written with a subscript, 1_{i = j}, \\mathbb{1}_{i=j},
    1_{i \\ne j}: a one (the number, or the indicator's 1) whose subscript is one comparison of
    two indices (Kronecker's δ_ij, or 1 − δ_ij); None for anything else (1_N is still refused)."""
    is_one = (isinstance(base, Num) and base.text == "1") or isinstance(base, Ones)
    if not is_one or sub is None or len(sub.items) != 1:
        return None
    lhs, rhs = sub.items[0]
    if isinstance(lhs, Relation) and rhs is None:
        return lhs
    if rhs is not None and not isinstance(lhs, Relation):
        return Relation(lhs.pos, lhs, "eq", rhs)
    return None


def _transposes(node: Scripted) -> bool:
    """X^T, X^\\top, X^{\\mathsf{T}}, X^\\intercal: a transpose."""
    sup = node.sup
    if sup is None or len(sup.items) != 1 or sup.items[0][1] is not None:
        return False
    mark = sup.items[0][0]
    if isinstance(mark, Letter):
        return mark.name == "T" and mark.font in ("", "mathsf", "mathrm")
    return isinstance(mark, Macro) and mark.name in ("top", "intercal")


def _ones_vector(node: Node) -> bool:
    """\\mathbf{1}_N, \\vec{1}: the vector of ones (a column)."""
    if isinstance(node, Scripted) and node.sup is None:
        return isinstance(node.base, Ones) and node.sub is not None
    return isinstance(node, Ones) and node.vector


def _is_member(node: Node) -> bool:
    """``i \\in B`` or ``i \\in \\mathcal{B}`` under a sum: the index runs over the batch."""
    if not isinstance(node, Product) or len(node.items) != 3:
        return False
    index, member, batch = node.items
    return (
        isinstance(index, Letter)
        and not index.font
        and isinstance(member, Macro)
        and member.name == "in"
        and isinstance(batch, Letter)
        and batch.name == "B"
        and batch.font in ("", "mathcal")
    )


def _uses_index(node: Any, name: str) -> bool:
    """Does a syntax tree write the index ``name`` in a subscript or bracket (x_i, δ_{ik})?"""
    if isinstance(node, ScriptArg):
        return any(
            _letters(a, name) or (b is not None and _letters(b, name)) for a, b in node.items
        )
    if isinstance(node, Scripted):
        return (
            (node.sub is not None and _uses_index(node.sub, name))
            or (node.sup is not None and _uses_index(node.sup, name))
            or _uses_index(node.base, name)
        )
    if isinstance(node, Bracket):
        return _letters(node.inner, name) or _uses_index(node.inner, name)
    if isinstance(node, BigSum):  # \sum_{i=1}^{n}: the upper limit is a size, not an index
        return (node.sub is not None and _uses_index(node.sub, name)) or _uses_index(
            node.body, name
        )
    if isinstance(node, Node):
        return any(
            _uses_index(getattr(node, f), name)
            for f in ("inner", "arg", "num", "den", "body", "term", "lhs", "rhs", "sub", "sup")
            if getattr(node, f, None) is not None
        ) or any(
            _uses_index(n, name)
            for f in ("items", "terms", "sides")
            for n in (getattr(node, f, ()) or ())
            for n in ((n[1],) if isinstance(n, tuple) else (n,))
            if n is not None
        )
    return False


def _index_counts(node: Any) -> dict[str, int]:
    """How many times each index letter is written in the subscripts of a syntax tree (x_{bh},
    δ_{hq}, \\mathbf{1}_h): what Einstein's convention sums over when it is written twice."""
    counts: dict[str, int] = {}

    def visit(n: Any) -> None:
        if isinstance(n, Scripted):
            delta = isinstance(n.base, Macro) and n.base.name == "delta"
            for script in (n.sub, n.sup if delta else None):  # δ_k^i: both are indices
                for item, _ in script.items if script is not None else ():
                    parts = item.items if isinstance(item, Product) else (item,)
                    for part in parts:
                        if isinstance(part, Letter) and not part.font and part.name.isalpha():
                            counts[part.name] = counts.get(part.name, 0) + 1
            visit(n.base)
            return
        if isinstance(n, Node):
            for f in ("inner", "arg", "num", "den", "body", "term", "lhs", "rhs"):
                child = getattr(n, f, None)
                if child is not None:
                    visit(child)
            for f in ("items", "terms"):
                for child in getattr(n, f, ()) or ():
                    visit(child[1] if isinstance(child, tuple) else child)

    visit(node)
    return counts


#: ∂L/∂v for a name v of the post's own (σ_b, v_b, μ_{bh}) while a line is read: its value is
#: worked out in the post's graph (``documents._Builder.own_adjoint``).
OWN_ADJOINT = "own:∂L/∂"  # (DSTD is ∂L/∂σ of the layer's own σ = √σ²)


def _own_node(value: sp.Expr | None) -> sp.Expr | None:
    """A name of the post's own as a node: the symbol (σ) or the element (μ[h]), not a power."""
    if isinstance(value, sp.Symbol) and not value.is_integer:
        return value
    if isinstance(value, sp.Indexed) and len(value.indices) == 1:
        return value
    return None


def _is_ones(expr: sp.Expr) -> bool:
    """1_h, the ones tensor of Einstein's notation, while a line is read (then it is 1)."""
    return isinstance(expr, sp.Indexed) and str(expr.base.label) == _ONES


def _letters(node: Any, name: str) -> bool:
    if isinstance(node, Letter):
        return node.name == name or (len(node.name) > 1 and name in node.name)
    if isinstance(node, Product):
        return any(_letters(n, name) for n in node.items)
    return False


def _is_index(node: Node) -> bool:
    return (
        isinstance(node, Letter) and not node.font or isinstance(node, Num) and node.text.isdigit()
    )


def _vanishes(expr: sp.Expr) -> bool:
    """Is expr identically zero, sums included (a sum of zero is zero)?"""
    expr = expr.replace(
        lambda e: isinstance(e, sp.Sum) and _vanishes(e.function), lambda e: sp.Integer(0)
    )
    return sp.expand(expr) == 0


def name_bound(expr: sp.Expr) -> sp.Expr:
    """``expr`` with every summation index renamed k, p, q, ... (never a free index): for
    expressions built after reading (a local derivative's value, a truth substituted in)."""
    free = {
        s.name
        for s in expr.free_symbols
        if isinstance(s, sp.Symbol) and s.is_integer and not isinstance(s, sp.Dummy)
    }
    return _name_bound(expr, free | {"i"})


def _name_bound(expr: sp.Expr, taken: set[str]) -> sp.Expr:
    """Give each sum's placeholder index the first free name of k, p, q, ... (nested sums get
    different names; sibling sums share them, so Σ_k g_k − Σ_k g_k x̂_k reads as posts write it).
    SymPy merges Σ_a Σ_b into one Sum with two limits, innermost first: name the outer first."""
    if isinstance(expr, sp.Sum):
        body = expr.function
        limits = []
        inner = set(taken)
        for placeholder, lower, upper in reversed(expr.limits):
            name = next(n for n in _POOL if n not in inner)
            inner.add(name)
            index = sp.Symbol(name, integer=True)
            body = body.xreplace({placeholder: index})
            limits.append((index, lower, upper))
        return sp.Sum(_name_bound(body, inner), *reversed(limits))
    if not expr.args or not expr.has(sp.Sum):
        return expr
    return expr.func(*[_name_bound(a, taken) for a in expr.args])


def _columns(tree: Node) -> set[str]:
    """The letters j of a line that writes a statistic μ_j, σ_j², γ_j, β_j of feature j and an
    array with j as its only index (x_j, \\hat{x}_j, y_j: the column of feature j, as a post writes
    "for each feature x_j"), when no array of the line has an element index of its own: there
    j can only be the feature (a statistic has no element), and the arrays are whole columns,
    read elementwise."""
    stats: set[str] = set()
    arrays: list[tuple[str, ...]] = []

    def single(sub: ScriptArg | None) -> tuple[str, ...]:
        """The index letters of a subscript: {ij} and {i,j} are two, j one."""
        if sub is None:
            return ()
        out: list[str] = []
        for item, _ in sub.items:
            parts = item.items if isinstance(item, Product) else (item,)
            out += [_render(part) for part in parts]
        return tuple(out)

    def walk(node: Any, outer: ScriptArg | None = None) -> None:
        if isinstance(node, Scripted):
            base = node.base
            if isinstance(base, Macro) and base.name in ("mu", "sigma", "gamma", "beta"):
                stats.update(single(node.sub))
            elif isinstance(base, Letter) and base.name in _ARRAY_LETTERS and not base.font:
                arrays.append(single(node.sub))
            elif isinstance(base, Hat):
                walk(base.arg, node.sub)
                return
        elif isinstance(node, Letter) and node.name in _ARRAY_LETTERS and not node.font:
            arrays.append(single(outer))
            return
        if isinstance(node, Node) or isinstance(node, tuple | list):
            children = node if isinstance(node, tuple | list) else vars(node).values()
            for child in children:
                if isinstance(child, Node | tuple | list):
                    walk(child)

    walk(tree)
    indexed = [a for a in arrays if a]
    if not arrays or any(len(a) != 1 or a[0] not in stats for a in indexed):
        return set()  # an array with an element index of its own (x_i beside x_j, μ_j)
    return {a[0] for a in indexed}


def _word_font(font: str, name: str) -> bool:
    """\\text{rstd}, \\mathrm{istd}: a word in an upright font, a name (\\mathrm{d} is a letter)."""
    return font in ("text", "mathrm") and len(name) > 1 and name.isalnum()


def _is_word(node: Node, word: str) -> bool:
    """Is ``node`` the letters of ``word`` side by side, with no script (dout)?"""
    while isinstance(node, Group) and node.kind == "brace":
        node = node.inner
    items = list(node.items) if isinstance(node, Product) else [node]
    return len(items) == len(word) and all(
        isinstance(n, Letter) and not n.font and n.name == c
        for n, c in zip(items, word, strict=True)
    )


def _layer_label(sup: ScriptArg | None, labels: frozenset[str]) -> str | None:
    """The letter of ^l, ^{l} or ^{(l)} when the document writes it as a layer label."""
    if not labels or sup is None or len(sup.items) != 1 or sup.items[0][1] is not None:
        return None
    node = sup.items[0][0]
    if isinstance(node, Group) and node.kind == "paren":
        node = node.inner
    if isinstance(node, Letter) and not node.font and node.name in labels:
        return node.name
    return None


def _label(sup: ScriptArg | None) -> str | None:
    """The label of x^{\\text{bn}} (also x^{\\mathrm{bn}}: a word, not a power): bn."""
    if sup is None or len(sup.items) != 1 or sup.items[0][1] is not None:
        return None
    node = sup.items[0][0]
    if isinstance(node, Letter) and (
        node.font == "text" or node.font == "mathrm" and len(node.name) > 1
    ):
        if re.fullmatch(r"[A-Za-z]+", node.name):
            return node.name
    return None


def _describe(node: Node) -> str:
    if isinstance(node, Letter):
        return f"\\{node.font}{{{node.name}}}" if node.font else node.name
    if isinstance(node, Macro):
        return "\\" + node.name
    if isinstance(node, Num):
        return node.text
    if isinstance(node, Frac):
        return "\\frac"
    if isinstance(node, Sqrt):
        return "\\sqrt"
    if isinstance(node, Hat):
        return "\\hat"
    if isinstance(node, BigSum):
        return "\\sum"
    if isinstance(node, Group):
        return "a group" if node.kind == "brace" else "a parenthesis"
    if isinstance(node, Bracket):
        return "a bracket"
    if isinstance(node, Scripted):
        return _describe(node.base)
    return "an expression"


def _short(text: str, most: int = 64) -> str:
    """A rendered piece of a line for a message: whole when short, else its start and end."""
    text = " ".join(text.split())
    return text if len(text) <= most else f"{text[: most // 2 - 2]} … {text[-(most // 2 - 2) :]}"


def _render(node: Node | ScriptArg | None) -> str:
    """A node as LaTeX, close to how it was written: for messages that quote a name
    ("∂y_{kl}/∂h_{ij}"), never re-parsed."""
    if node is None:
        return ""
    if isinstance(node, ScriptArg):
        parts = [_render(a) + (f"={_render(b)}" if b is not None else "") for a, b in node.items]
        text = ",".join(parts)
        return f"{{{text}}}" if node.braced and len(text) > 1 else text
    if isinstance(node, Letter):
        return f"\\{node.font}{{{node.name}}}" if node.font else node.name
    if isinstance(node, Macro):
        return "\\" + node.name
    if isinstance(node, Num):
        return node.text
    if isinstance(node, Ones):
        return "\\mathbf{1}"
    if isinstance(node, Hat):
        return f"\\hat{{{_render(node.arg)}}}"
    if isinstance(node, Mean):
        return f"\\overline{{{_render(node.arg)}}}"
    if isinstance(node, Frac):
        return f"\\frac{{{_render(node.num)}}}{{{_render(node.den)}}}"
    if isinstance(node, Sqrt):
        return f"\\sqrt{{{_render(node.arg)}}}"
    if isinstance(node, Group):
        inner = _render(node.inner)
        return f"{{{inner}}}" if node.kind == "brace" else f"({inner})"
    if isinstance(node, Bracket):
        return f"[{_render(node.inner)}]"
    if isinstance(node, Scripted):
        text = _render(node.base)
        if node.sub is not None:
            text += "_" + _render(node.sub)
        if node.sup is not None:
            text += "^" + _render(node.sup)
        return text
    if isinstance(node, Op):
        return "/" if node.op == "/" else "\\cdot"
    if isinstance(node, Product):
        return " ".join(_render(n) for n in node.items)
    if isinstance(node, Signed):
        return node.sign + _render(node.term)
    if isinstance(node, SumExpr):
        out = _render(node.terms[0][1])
        for sign, term in node.terms[1:]:
            out += f" {sign} {_render(term)}"
        return out
    if isinstance(node, BigSum):
        text = "\\sum"
        if node.sub is not None:
            text += "_" + _render(node.sub)
        if node.sup is not None:
            text += "^" + _render(node.sup)
        return f"{text} {_render(node.body)}"
    if isinstance(node, Relation):
        op = "=" if node.op == "eq" else "\\ne"
        return f"{_render(node.lhs)} {op} {_render(node.rhs)}"
    return "an expression"  # pragma: no cover


def _item_text(it: _Item) -> str:
    """An item as written (\\hat{x}_{k}, \\sigma^2, y_{kl}), for messages."""
    if it.kind in ("node", "letter", "bracket") and it.node is not None:
        text = _render(it.node)
    elif it.kind == "macro":
        text = "\\" + it.name
    else:
        text = it.name
    for b in it.brackets:
        text += _render(b)
    if it.sub is not None:
        text += "_" + _render(it.sub)
    if it.sup is not None:
        text += "^" + _render(it.sup)
    return text


# -- errors from lark ---------------------------------------------------------------------------------
_READABLE = {
    "RBRACE": "'}'",
    "LBRACE": "'{'",
    "RPAR": "')'",
    "LPAR": "'('",
    "RSQB": "']'",
    "LSQB": "'['",
    "RCURLY": "'\\}'",
    "LCURLY": "'\\{'",
    "EQ": "'='",
    "ADDOP": "'+' or '-'",
    "SLASH": "'/'",
    "MULOP": "\\cdot, \\times or *",
    "SUB": "'_'",
    "SUP": "'^'",
    "COMMA": "','",
    "DOT": "'.'",
    "EQEQ": "'=='",
    "NEQ": "\\ne",
    "NUMBER": "a number",
    "LETTER": "a letter",
    "MACRO": "a macro",
    "FRAC": "\\frac",
    "FRAC_DIGITS": "\\frac",
    "SQRT": "\\sqrt",
    "SUM": "\\sum",
    "HAT": "\\hat",
    "FONT": "\\mathcal",
    "$END": "the end",
}


_STARTS = {"NUMBER", "LETTER", "MACRO", "FRAC", "FRAC_DIGITS", "SQRT", "SUM", "HAT", "FONT"}
_STARTS |= {"LBRACE", "LPAR", "LSQB", "LCURLY", "BOXED", "MATHOP", "OVERBRACE", "UNDERBRACE"}
_STARTS |= {"TEXT_D", "VEC", "BAR"}
#: Terminals of annotations: never what a message says is missing.
_QUIET = {"NOTE_OPEN", "TEXT", "LABEL", "QUESTION", "SEMICOLON"}
_CLOSERS = {
    "RBRACE": "'}'",
    "RPAR": "')'",
    "RSQB": "']'",
    "RCURLY": "'\\}'",
    "EQ": "'='",
    "$END": "the end",
}


def _expected(names: set[str] | frozenset[str]) -> str:
    """What the parser would have accepted, in words: closers by name, the rest by kind.
    Annotations (\\text{…}, a trailing '?') and the relations of an Iverson bracket ([k = i])
    are left out of the list when a closing bracket is what is missing."""
    names = set(names) - _QUIET
    if names & {"RBRACE", "RPAR", "RSQB", "RCURLY"}:
        names -= {"EQ", "EQEQ", "NEQ"}
    words = [_CLOSERS[n] for n in sorted(names) if n in _CLOSERS]
    if names & _STARTS:
        words.append("an expression (a number, a letter, a macro, a group)")
    if names & {"ADDOP", "MULOP", "SLASH", "SUB", "SUP"}:
        words.append("an operator")
    rest = names - _STARTS - set(_CLOSERS) - {"ADDOP", "MULOP", "SLASH", "SUB", "SUP"}
    others = sorted(_READABLE.get(n, n) for n in rest)
    return " or ".join(words + others) or "nothing more"


def _lark_error(exc: UnexpectedInput, text: str, line0: int, column0: int) -> LatexError:
    line, column = exc.line, exc.column
    if line is None or line < 1:
        line, column = _end_of(text)
    at_line = line + line0 - 1
    at_column = column + (column0 - 1 if line == 1 else 0)
    if isinstance(exc, UnexpectedCharacters):
        char = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
        rest = text[exc.pos_in_stream : exc.pos_in_stream + 2]
        if rest == "\\\\":
            return LatexError(
                "a line break \\\\ inside one expression: a document's lines are split at \\\\ "
                "before they are read",
                at_line,
                at_column,
            )
        elif char == "\\":
            macro = re.match(r"\\.", text[exc.pos_in_stream :])
            message = f"the macro {macro.group(0) if macro else char!r} is not understood"
        else:
            message = f"unexpected character {char!r}"
        return LatexError(message + f"; expected {_expected(exc.allowed)}", at_line, at_column)
    if isinstance(exc, UnexpectedToken):
        token = exc.token
        if token.type == "$END":
            message = "unexpected end of the line"
            at_line, at_column = _end_of(text)
            at_line += line0 - 1
            if at_line == line0:
                at_column += column0 - 1
        else:
            message = f"unexpected {str(token)!r}"
        return LatexError(f"{message}; expected {_expected(exc.expected)}", at_line, at_column)
    if isinstance(exc, UnexpectedEOF):
        at_line, at_column = _end_of(text)
        return LatexError(
            f"unexpected end of the line; expected {_expected(set(exc.expected))}",
            at_line + line0 - 1,
            at_column,
        )
    return LatexError(str(exc), at_line, at_column)  # pragma: no cover


def _end_of(text: str) -> tuple[int, int]:
    lines = text.split("\n")
    return len(lines), len(lines[-1]) + 1


@lru_cache(maxsize=4096)
def line_tree(text: str, line: int, column: int) -> Node:
    """The syntax tree of one line (``_tree``), kept: the reader and ``letters`` (which looks
    for the post's forward line first) parse the same lines, and a tree is immutable."""
    return _tree(text, "line", line, column)


def _tree(text: str, start: str, line: int, column: int) -> Node:
    if not text.strip():
        raise LatexError("nothing to read: the text is empty", line, column)
    try:
        tree = _parser().parse(text, start=start)
        _bounded(tree, line, column)
        return _ToTree(text).transform(tree)
    except UnexpectedInput as exc:
        raise _lark_error(exc, text, line, column) from None
    except VisitError as exc:
        if isinstance(exc.orig_exc, LatexError):
            err = exc.orig_exc
            if err.line is not None:
                at_line = err.line + line - 1
                at_column = err.column + (column - 1 if err.line == 1 else 0)
                raise type(err)(err.reason, at_line, at_column) from None
            raise err from None
        raise  # pragma: no cover - a bug in the transformer, not bad input


def _bounded(tree: Any, line: int, column: int) -> None:
    """The caps of ``latex_bounds`` (size, nesting, numbers), before the tree is transformed."""
    found = tree_problem(tree)
    if found:
        message, token = found
        at_line = (token.line or 1) if token is not None else 1
        at_column = (token.column or 1) if token is not None else 1
        at_column += column - 1 if at_line == 1 else 0
        raise LatexError(message.rstrip("."), at_line + line - 1, at_column)


def _bounded_value(meaning: Any, expr: sp.Expr, pos: Pos) -> sp.Expr:
    """A finished side within the caps on numbers, sums and degree (``limits``)."""
    problem = expression_problem(expr)
    if problem:
        raise meaning.error(f"this cannot be checked: {problem.rstrip('.')}", pos)
    return expr


# -- the public interface -----------------------------------------------------------------------------
def parse_latex(
    text: str,
    *,
    sigma: str | None = None,
    spatial: bool = False,
    line: int = 1,
    column: int = 1,
) -> sp.Expr:
    """One LaTeX expression in bnderive's index notation (see the module docstring).

    ``sigma`` declares a bare σ (``"std"`` or ``"var"``); ``spatial`` refuses a lone N (the
    batch size is not M in SPATIAL mode); ``line``/``column`` place the text in its file, for
    the error messages.  A free element index keeps its name (``x_j`` → ``x[j]``); a bare array
    is element i; an element (n, h, w) is named n.
    """
    tree = _tree(text, "expression", line, column)
    meaning = _Meaning(sigma, spatial, line, column)
    meaning.size_n = not _uses_index(tree, "n")
    expr = meaning.value(tree)
    rename = {s: sp.Symbol(parts[0], integer=True) for s, parts in meaning.composites.items()}
    rename[_BARE] = N.i
    expr = expr.xreplace(rename)
    return _bounded_value(meaning, meaning.finish(expr, tree.pos), tree.pos)


@dataclass(frozen=True)
class LineRead:
    """One line of a derivation as bnderive read it.

    ``kind`` says what the left side is: ``adjoint`` (∂L/∂x̂_i, ∂L/∂σ², ... and ∂L/∂y_i),
    ``local`` (a local derivative ∂x̂_k/∂σ², ∂y_k/∂x_i, ∂(γx̂ + β)/∂x̂_k), ``forward`` (μ, σ², x̂_i,
    y_i of the forward graph), ``name`` (a name of the post's own: t = 1/√(σ²+ε)), ``identity``
    (any other expression: each right side must equal it), ``prose`` (\\text{…} alone) or
    ``none`` (nothing checkable; ``reason`` says why).  Right sides keep local derivatives as
    ``notation.Partial``: the document gives them their values.
    """

    sides: tuple[sp.Expr | None, ...]  # the first is None for an `&= …` continuation
    defines: str | None  # dx, dvar, mu, dxhat_dvar, t, ... (None for identities)
    index: sp.Symbol | None  # N.i for an elementwise quantity
    source_index: sp.Expr | None  # the left side's own element index (x_j: j), for continuations
    reason: str = ""  # why the line defines nothing checkable
    kind: str = "adjoint"
    #: A scalar quantity (∂L/∂γ) whose right side has a free element index: a claim for every i.
    per_element: bool = False
    #: ∂y_k/∂x_i and other two-index quantities: both sides read as Σ_k g_k·(…) (see below).
    contracted: bool = False
    #: Why a member of the right side (None in ``sides``) was not read or cannot be checked.
    member_errors: tuple[str, ...] = ()
    #: The two features of a line like ∂ĥ_{kl}/∂h_{ij} (read at l = j), for its continuations.
    cross: tuple[str, str] | None = None
    #: ∂y_k/∂x_i: the index k (as written) the line is contracted over, for its continuations.
    contract_over: sp.Expr | None = None
    #: ``node`` (the gradient of a node of the post's own, read from code): its true value,
    #: worked out in the post's graph, and the lines of that graph it went through.
    value: sp.Expr | None = None
    uses: tuple[int, ...] = ()
    #: code: the name later lines know this line's value by (``dxnorm_dmean = …`` is checked as
    #: ∂x̂_i/∂μ and then used as the post computed it)
    stores: str | None = None
    #: ``node``: the post's own node whose gradient the line states, as written (sq for dsq)
    node: str = ""
    #: What the reading assumed, for the output (Σ_{i=0}^{N} read over the whole set).
    notes: tuple[str, ...] = ()
    #: Einstein's convention: the indices free on the left side, for the rows that continue it.
    keep: tuple[str, ...] = ()
    #: Per member, its readings when it reads more than one way (``Readings``; None for one
    #: that reads one way); empty when every member does.
    readings: tuple[Readings | None, ...] = ()

    @property
    def lhs(self) -> sp.Expr | None:
        return self.sides[0] if self.sides else None

    @property
    def rhs(self) -> tuple[sp.Expr | None, ...]:
        return self.sides[1:]

    @property
    def checkable(self) -> bool:
        return self.kind not in ("prose", "none") and not self.reason

    @property
    def continues(self) -> tuple:
        """What an `&= …` line after this one continues: (kind, quantity, element index, the
        two features of a two-feature line or None)."""
        kind = self.kind if not self.reason else "none"
        return (kind, self.defines, self.source_index, self.cross, self.contract_over, self.keep)


_QUANTITY_OF_BASE = {"dx": "dx", "dxhat": "dxhat", "g": "dy", "dgamma": "dgamma", "dbeta": "dbeta"}
_FORWARD_BASE = {"xhat": "xhat", "y": "y"}
_NODE_NAMES = {"x": "x", "xhat": "xhat", "y": "y", "mu": "mu", "var": "var", "gamma": "gamma"}
_NODE_NAMES["beta"] = "beta"


def parse_equation_line(
    text: str,
    *,
    sigma: str | None = None,
    spatial: bool = False,
    line: int = 1,
    column: int = 1,
    continues: tuple | None = None,
    names: dict[str, bool] | None = None,
    family: Family = BATCH,
    aliases: dict[str, str] | None = None,
) -> LineRead:
    """One line of an align block: ``LHS = RHS [= RHS ...]`` or ``= RHS`` (an ``&=``
    continuation: ``continues`` is ``LineRead.continues`` of the line before; the older pair
    (quantity, element index) is accepted too).  ``names`` are the names earlier lines defined
    (name → elementwise); ``family`` how the normalization reads the notation (``Family``).

    The left side decides the kind of line (see ``LineRead``) and its element index is renamed
    i.  Two-index local derivatives (∂y_k/∂x_i: a Jacobian) are contracted with the upstream
    gradient: Σ_k g_k ∂y_k/∂x_i = Σ_k g_k (right side).  Since g is free, the contracted sides
    are equal for every g exactly when the Jacobians are equal entry by entry.  Anything not
    understood raises ``LatexError``; something understood but not checkable (∂L/∂(γx̂_i), a
    derivative with respect to a name bnderive does not know) leaves ``reason`` set; a member
    of the right side that cannot be read or checked is None, with its reason.

    A scope the notation leaves open (``Ambiguity``: the Σ's body, braces around a sum, what
    ∂/∂x_i applies to) is read every way: a member whose value differs between the readings
    holds each of them (``LineRead.readings``), to be checked each, and the line holds only if
    every reading does.
    """
    options = dict(
        sigma=sigma, spatial=spatial, line=line, column=column, continues=continues,
        names=names, family=family, aliases=aliases,
    )  # fmt: skip
    try:
        return _parse_line(text, {}, **options)
    except Ambiguous as exc:
        return _read_every_way(text, exc, options)


def _parse_line(
    text: str,
    choices: dict[tuple[str, Pos], int],
    *,
    sigma: str | None,
    spatial: bool,
    line: int,
    column: int,
    continues: tuple | None,
    names: dict[str, bool] | None,
    family: Family,
    aliases: dict[str, str] | None,
) -> LineRead:
    """One reading of a line (``parse_equation_line``), the open scopes met taken as
    ``choices`` says; one it does not say is ``Ambiguous``."""
    tree = line_tree(text, line, column)
    assert isinstance(tree, LineNode)
    if not tree.sides:
        return LineRead((), None, None, None, "prose, not an equation", "prose")
    if len(tree.sides) == 1:
        return LineRead(
            (), None, None, None, "an expression without '=': it states no value", "prose"
        )
    meaning = _Meaning(sigma, spatial, line, column, names, family, aliases)
    meaning.choices = choices
    meaning.size_n = not _uses_index(tree, "n")
    if not family.layer:
        meaning.columns = _columns(tree)
    state = _LineState(tree, list(tree.sides[1:]))
    _read_left(state, meaning, continues, line, column)
    unread = _read_right(state, meaning)
    _sizes_only(state)
    _element_index(state, meaning)
    _no_other_free_index(state, meaning)
    _index_ranges(state, meaning)
    _contract_jacobian(state, meaning)
    read = state.result(meaning)
    if unread is not None:
        unread.partial = read  # what the left side says: the rows that continue it
        raise unread
    return read


#: At most this many readings of one line; a line with more is not read, with the first
#: scope's question.
_MOST_READINGS = 6


def _read_every_way(text: str, first: Ambiguous, options: dict[str, Any]) -> LineRead:
    """The line read once per reading of each open scope it has (nested ones too), merged into
    one ``LineRead`` (``_merged``)."""
    done: list[tuple[tuple[str, ...], LineRead | LatexError]] = []
    met = [first.ambiguity]
    pending: list[tuple[str, dict, tuple[str, ...], Ambiguity]] = [(text, {}, (), first.ambiguity)]
    while pending:
        source, choices, labels, ambiguity = pending.pop(0)
        for k, label in enumerate(ambiguity.labels):
            blanks = ambiguity.blanks[k] if ambiguity.blanks else ()
            chosen = dict(choices)
            if blanks:
                variant = _blanked(source, blanks)
            else:
                variant = source
                chosen[(ambiguity.kind, ambiguity.pos)] = k
            try:
                read: LineRead | LatexError = _parse_line(variant, chosen, **options)
            except Ambiguous as nested:
                pending.append((variant, chosen, (*labels, label), nested.ambiguity))
                met.append(nested.ambiguity)
                continue
            except LatexError as exc:
                read = exc
            done.append(((*labels, label), read))
        if len(done) + 2 * len(pending) > _MOST_READINGS:
            raise LatexError(first.reason, first.line, first.column) from None
    return _merged(done, first, met)


def _blanked(text: str, places: tuple[Pos, ...]) -> str:
    """``text`` with the one character at each (line, column) replaced by a space (a reading
    without those braces; every other position stays where it was)."""
    lines = text.split("\n")
    for row, column in places:
        chars = lines[row - 1]
        lines[row - 1] = chars[: column - 1] + " " + chars[column:]
    return "\n".join(lines)


def _line_shape(read: LineRead) -> tuple:
    """What a line is apart from its members: readings of a line must agree on it."""
    return (
        read.lhs, read.defines, read.index, read.source_index, read.reason, read.kind,
        read.per_element, read.contracted, read.cross, read.contract_over, read.keep,
        len(read.rhs),
    )  # fmt: skip


def _merged(
    done: list[tuple[tuple[str, ...], LineRead | LatexError]],
    first: Ambiguous,
    met: list[Ambiguity],
) -> LineRead:
    """One ``LineRead`` of the readings of a line: each member the same in every reading is
    that value; one that differs is its ``Readings``.  A line that no reading reads, or whose
    readings differ in what the line is (its left side, its kind), is not read: the first
    scope's question (or the one reason every reading gives)."""
    errors = [r for _, r in done if isinstance(r, LatexError)]
    if len(errors) == len(done) and len({e.reason for e in errors}) == 1:
        raise errors[0]  # not read, whichever way the scope is read
    question = "; ".join(dict.fromkeys(a.question for a in met))
    fix = " ".join(dict.fromkeys(a.fix for a in met))
    unread = LatexError(f"{question}? {fix}", first.line, first.column)
    reads = [r if isinstance(r, LineRead) else r.partial for _, r in done]
    known = [r for r in reads if r is not None]
    if not known or any(_line_shape(r) != _line_shape(known[0]) for r in known):
        raise unread
    if len(errors) == len(done):
        unread.partial = known[0]
        raise unread
    base = known[0]
    sides: list[sp.Expr | None] = [base.lhs]
    member_errors: list[str] = []
    readings: list[Readings | None] = []
    for k in range(len(base.rhs)):
        values: list[sp.Expr | None] = []
        why: list[str] = []
        for r, (_, raw) in zip(reads, done, strict=True):
            values.append(r.rhs[k] if r is not None else None)
            error = r.member_errors[k] if r is not None and k < len(r.member_errors) else ""
            why.append(error or (str(raw) if isinstance(raw, LatexError) else ""))
        if all(v is None for v in values):
            sides.append(None)
            member_errors.append(next((w for w in why if w), unread.reason))
            readings.append(None)
        elif all(v is not None for v in values) and all(v == values[0] for v in values):
            sides.append(values[0])
            member_errors.append("")
            readings.append(None)
        else:
            words = tuple("; ".join(labels) for labels, _ in done)
            sides.append(next(v for v in values if v is not None))
            member_errors.append("")
            readings.append(Readings(question, words, tuple(values), tuple(why), fix))
    notes = [n for r in known for n in r.notes]
    if not any(readings):
        notes.append(f"{question}: read each way, the line says the same")
    return replace(
        base,
        sides=tuple(sides),
        member_errors=tuple(member_errors),
        notes=tuple(dict.fromkeys(notes)),
        readings=tuple(readings) if any(readings) else (),
    )


@dataclass
class _LineState:
    """One line while ``parse_equation_line`` reads it, step by step."""

    tree: LineNode
    rhs_nodes: list[Node]
    lhs_node: Node | None = None
    kind: str = "none"
    defines: str | None = None
    source: sp.Expr | None = None  # the left side's element index as written
    reason: str = ""
    cross: tuple[str, str] | None = None  # ∂y_{kl}/∂h_{ij}: the two features l, j
    contract_over: sp.Expr | None = None  # ∂y_k/∂x_i: k, as written
    sides: list[sp.Expr | None] = field(default_factory=list)
    member_errors: list[str] = field(default_factory=list)
    index: sp.Symbol | None = None
    per_element: bool = False
    contracted: bool = False
    elementwise: bool = False
    rename: dict[sp.Expr, sp.Expr] = field(default_factory=dict)
    keep: tuple[str, ...] = ()  # Einstein's convention: the left side's free indices

    def result(self, meaning: _Meaning) -> LineRead:
        pos = self.tree.pos
        sides = [meaning.finish(s, pos) if s is not None else None for s in self.sides]
        sides = [_bounded_value(meaning, s, pos) if s is not None else None for s in sides]
        if self.kind == "none" and not self.reason:
            self.reason = "the left side is not something bnderive checks"
        return LineRead(
            tuple(sides),
            self.defines,
            self.index,
            self.source,
            self.reason,
            self.kind,
            self.per_element,
            self.contracted,
            tuple(self.member_errors),
            self.cross,
            self.contract_over if self.contracted else None,
            notes=tuple(dict.fromkeys(meaning.notes)),
            keep=self.keep,
        )


def _read_left(
    state: _LineState, meaning: _Meaning, continues: tuple | None, line: int, column: int
) -> None:
    """The left side (or, for an `&= …` row, what the line before said): the kind of line,
    the quantity, its element index."""
    tree = state.tree
    lhs_node = tree.sides[0]
    lhs: sp.Expr | None = None
    if lhs_node is None:
        if continues is None:
            raise LatexError("a line that starts with '=' continues nothing", line, column)
        if len(continues) == 2:  # (quantity, element index), as older callers pass it
            quantity, source = continues
            continued = "adjoint" if quantity in N.QUANTITIES else "none"
            continues = (continued, quantity, source)
        state.kind, state.defines, state.source = continues[:3]
        state.cross = continues[3] if len(continues) > 3 else None
        state.contract_over = continues[4] if len(continues) > 4 else None
        meaning.keep = set(continues[5]) if len(continues) > 5 else set()
        if state.cross is not None:
            for name in state.cross:
                meaning.feature(name, tree.pos)
        if state.kind == "none":
            state.reason = "continues a line that defines nothing bnderive checks"
    elif (
        len(state.rhs_nodes) == 1
        and _new_name_node(state.rhs_nodes[0], meaning.names)
        and not _new_name_node(lhs_node, meaning.names)
    ):
        # \frac{1}{\sqrt{\sigma^2+\epsilon}} = t: a name defined the other way round
        lhs_node, state.rhs_nodes = state.rhs_nodes[0], [lhs_node]
    if lhs_node is not None:
        lhs_node = meaning.output_side(lhs_node)
    state.lhs_node = lhs_node
    if lhs_node is not None:
        # a name is defined by a left side that is a lone symbol (t, R_i, σ), never by a symbol
        # inside an expression (∂((x − μ)/σ)/∂x_j uses σ, it does not define it)
        base = lhs_node.base if isinstance(lhs_node, Scripted) else lhs_node
        meaning.define_ok = isinstance(base, Letter | Macro) or (
            isinstance(lhs_node, Product)
            and len(lhs_node.items) == 2
            and _function_name(*lhs_node.items) is not None
        )
        try:
            lhs = meaning.side_value(lhs_node)
        except NotCheckable as exc:
            state.reason = exc.reason
        else:
            lhs, state.cross = _features_apart(lhs, meaning, lhs_node.pos)
            state.kind, state.defines, state.source, state.reason = _classify(lhs, meaning)
        meaning.define_ok = False
    meaning.batch_sum_ok = meaning.family.layer and state.defines in ("dgamma", "dbeta")
    if lhs_node is not None:  # Einstein's convention: the indices free on the left side
        meaning.keep = {n for n, c in _index_counts(lhs_node).items() if c == 1}
    state.keep = tuple(sorted(meaning.keep))
    source = state.source
    if isinstance(source, sp.Symbol) and source != _BARE and state.kind in ("adjoint", "forward"):
        meaning.line_element = source.name
    state.sides = [lhs]


def _read_right(state: _LineState, meaning: _Meaning) -> LatexError | None:
    """Each member of the right side; one not read (or not checkable) is None with its reason
    and the others are read.  A line whose only member is not read is not read (the error,
    returned: raised once the left side is known)."""
    for node in state.rhs_nodes:
        try:
            meaning.bare_jacobians = []
            value = meaning.side_value(node)
            _no_bare_jacobian(value, meaning, node.pos)
            if state.cross is not None:
                value = _same_feature(value, state.cross, meaning, node.pos)
            state.sides.append(value)
            state.member_errors.append("")
        except Ambiguous:
            raise  # the line is read once per reading (``parse_equation_line``)
        except LatexError as exc:
            state.sides.append(None)
            state.member_errors.append(
                str(exc) if not isinstance(exc, NotCheckable) else exc.reason
            )
    rhs = state.sides[1:]
    if rhs and all(r is None for r in rhs) and len(rhs) == 1:
        first = _first_error(state.rhs_nodes, meaning)
        if first is not None and not isinstance(first, NotCheckable):
            return first
    return None


def _no_bare_jacobian(value: sp.Expr, meaning: _Meaning, pos: Pos) -> None:
    """A member that writes ∂x̂/∂x (or ∂y/∂x) between arrays without an index and no path
    through σ² or μ beside it (Sinai's ∂z/∂x ∂L/∂z): the Jacobian times a vector, or each
    element's own partial?  The two differ, so it is not checked.  Beside ∂σ²/∂x or ∂μ/∂x the
    post sums the paths of its graph, and ∂x̂/∂x is each element's own partial."""
    if not meaning.bare_jacobians:
        return
    paths = {
        p.args[0]
        for p in value.atoms(N.Partial)
        if isinstance(p.args[1], sp.Indexed) and p.args[1].base == N.x
    }
    if paths & {N.var, N.mu}:
        return
    raise meaning.error(
        f"{meaning.bare_jacobians[0]} between arrays written without an index, and no path "
        "through σ² or μ beside it: the Jacobian (a matrix, ∂·_k/∂x_i) or each element's own "
        "derivative ∂·_i/∂x_i? The two differ; write the indices",
        pos,
        NotCheckable,
    )


def _sizes_only(state: _LineState) -> None:
    """N_i = N_s × N_k: every side read as the set's size M.  The line says how the post counts
    the set, which is what the reading of its sizes assumed: nothing to check."""
    if state.kind == "identity" and len(state.sides) > 1 and all(s == N.M for s in state.sides):
        state.kind = "none"
        state.reason = state.reason or (
            "every side is read as the set's size M: the line says how the post counts the set, "
            "which the reading of its sizes assumes, not a value to check"
        )


def _element_index(state: _LineState, meaning: _Meaning) -> None:
    """The line's element: the left side's index becomes i (a Jacobian's two indices: the
    line is contracted over the first); a scalar quantity with an indexed right side is a claim
    for every i; a member that is a vector written bare on a scalar line is not checked."""
    lhs = state.sides[0]
    rename = state.rename
    rename.update({s: sp.Symbol(parts[0], integer=True) for s, parts in meaning.composites.items()})
    state.elementwise = state.source is not None
    if state.kind == "local" and lhs is not None:
        of_index, wrt_index = _local_indices(lhs, meaning)
        if of_index is not None and wrt_index is not None and of_index != wrt_index:
            state.contracted = True  # ∂y_k/∂x_i: Σ_k g_k (…), the line's element i
            state.source, state.contract_over = wrt_index, of_index
        else:
            state.source = of_index if of_index is not None else wrt_index
        state.elementwise = state.source is not None
    elif state.kind in ("local", "identity") and state.contract_over is not None:
        state.contracted = True  # the continuation of a Jacobian's (a two-index) line
    if state.kind == "identity" and lhs is not None:
        free = sorted(meaning.element_indices(lhs), key=str)
        if len(free) == 2:
            # δ_ij − 1/n = …: two free indices, a matrix entry; contracted over the first as a
            # Jacobian's line is (equal for every g exactly when equal entry by entry)
            state.contracted = True
            state.contract_over, free = free[0], free[1:]
        if len(free) > 1:
            state.kind = "none"
            state.reason = state.reason or (
                f"the left side has the free indices {', '.join(map(str, free))}: a matrix "
                "identity, which bnderive does not check"
            )
        state.source = free[0] if free else None
        state.elementwise = state.source is not None
    if state.elementwise and not isinstance(state.source, sp.Symbol):
        state.kind = "none"
        state.reason = state.reason or "the left side names one entry by number; write x_i"
        state.elementwise = False
    if state.elementwise:
        if meaning.family.layer and state.source != _BARE:
            # LayerNorm's y_i = γ x̂_i + β: a bare γ or β (outside a sum) is the line's element's
            bare = {sp.IndexedBase(a)[_BARE]: sp.IndexedBase(a)[state.source] for a in _AFFINE}
            state.sides = [s.xreplace(bare) if s is not None else None for s in state.sides]
        # x_j on the left: j becomes i everywhere, and an i elsewhere becomes j (a swap renames
        # without capture).
        if state.source == _BARE:
            rename[_BARE] = N.i
        elif state.source != N.i:
            rename.update({state.source: N.i, N.i: state.source})
        state.index = N.i
    else:
        _scalar_line(state, meaning)
        rename[_BARE] = N.i
    state.sides = [undot(s).xreplace(rename) if s is not None else None for s in state.sides]


def _scalar_line(state: _LineState, meaning: _Meaning) -> None:
    """A line about one number per set (∂L/∂σ², μ, a scalar local derivative): a member that is
    a vector written without an index (∂L/∂y · ∂y/∂σ²: is the Σ_i missing, or implied?) is not
    checked; an indexed member makes the line a claim for every i (∂L/∂γ = ∂L/∂y_i ∂y_i/∂γ: a
    Σ_i missing is refuted)."""
    kind = state.kind
    if kind not in ("adjoint", "forward", "local", "name", "identity") or state.reason:
        return
    if kind in ("adjoint", "local", "forward"):
        per_set = "sample" if meaning.family.layer else "channel"
        _dot_products(state, meaning, per_set)
        for k, s in enumerate(state.sides[1:], start=1):
            if s is not None and _BARE in meaning.element_indices(s):
                state.sides[k] = None
                state.member_errors[k - 1] = (
                    f"{_what(kind, state.defines)} is one number per {per_set}, but this is a "
                    "per-element vector written without an index: is it a sum Σ_i (a dot "
                    "product) or is the sum missing? Write Σ_i, or the index"
                )
        if all(s is None for s in state.sides[1:]):
            return  # each member says why; the rows that continue the line still can be checked
    free_rhs = set().union(*(meaning.element_indices(s) for s in state.sides[1:] if s is not None))
    if free_rhs:
        state.per_element = True  # a claim for every i
        state.index = N.i


def _dot_products(state: _LineState, meaning: _Meaning, per_set: str) -> None:
    """On a line about one number per set, a member whose vectors written without an index are
    all in dot products (∂L/∂x̂ · ∂x̂/∂μ, ``_Meaning.dot_product``) is read with them summed,
    and says so; a member with any other such vector keeps them all elementwise (and is not
    checked: ``_scalar_line``)."""
    for k, s in enumerate(state.sides[1:], start=1):
        if s is None or not s.has(Dotted):
            continue
        summed = undot(s, summed=True)
        if _BARE in meaning.element_indices(summed):
            continue
        state.sides[k] = summed
        for dotted in sorted(s.atoms(Dotted), key=str):
            written = meaning.dot_texts.get(dotted, "a · b")
            meaning.notes.append(
                f"{written} read as a dot product Σ_i: · between two per-element vectors "
                f"written without an index, on a line about one number per {per_set}"
            )


_WHOLE_RANGE = re.compile(
    r"(?:1,(?:2,)?(?:DOTS),(?P<top>[A-Za-z]+)|0,(?:1,)?(?:DOTS),(?P<last>[A-Za-z]+)-1)".replace(
        "DOTS", r"\\[lc]?dots|\.\.\.|…"
    )
)


def _index_ranges(state: _LineState, meaning: _Meaning) -> None:
    """``, k \\in \\{1,\\dots,D\\}`` after the equation.  The whole range of an index, as the
    check reads it, is said with a note: an element index over the set's size (N, m, M), or
    a feature (a sample in LayerNorm) over a size that is not the set's.  Any other range
    (``\\{1,\\dots,i-1\\}``, ``\\{2,\\dots,N\\}``, ``\\{1, 2\\}``) says the line holds for part
    of the index's values only, which the check does not model: the line is not checked,
    and says why (dropped, a wrong line true only there would be refuted for the rest).  A
    letter the line does not use restricts nothing: a note.  A ``\\text{…}`` with the equation
    that states a relation (``\\text{for $k \\neq i$}``) is a condition of the same kind: not
    checked, with the text."""
    for text in state.tree.conditions:
        if not state.reason:
            state.reason = (
                f"{text}: a condition written with the equation, which the check does not "
                "model (it reads the line for every value of its indices)"
            )
    for written in state.tree.ranges:
        letter, body = written.letter, written.body.strip()
        text = re.sub(r"\\[,;:! ]|\s|~", "", body)
        whole = _WHOLE_RANGE.fullmatch(text)
        size = (whole.group("top") or whole.group("last")) if whole else None
        role = meaning.roles.get(letter, ("",))[0]
        the_set = size in meaning.family.sizes
        if not role and letter not in meaning.family.samples:
            meaning.notes.append(f"{letter} ∈ {{{body}}}: {letter} is in none of its members")
        elif size is not None and role == "element" and the_set:
            meaning.notes.append(f"{letter} ∈ {{{body}}}: the whole set, as {letter} is read")
        elif size is not None and role != "element" and not the_set:
            meaning.notes.append(
                f"{letter} ∈ {{{body}}}: every {letter} up to {size}, each checked apart"
            )
        elif not state.reason:
            state.reason = (
                f"{letter} ∈ {{{body}}}: the line is said for these values of {letter} only, "
                f"which the check does not model (it reads {letter} over its whole range)"
            )


def _no_other_free_index(state: _LineState, meaning: _Meaning) -> None:
    """An elementwise line's members have no free index but i (and a Jacobian's k)."""
    if not (state.elementwise or state.per_element) or state.kind == "none":
        return
    members = list(zip(state.rhs_nodes, state.sides[1:], strict=True))
    written = {v: k for k, v in state.rename.items()}  # the indices as the line writes them
    line_index = written.get(N.i, N.i)
    for k, (node, s) in enumerate(members, start=1):
        extra = meaning.element_indices(s) - {N.i} if s is not None else set()
        if state.contracted and state.contract_over is not None:
            extra -= {state.rename.get(state.contract_over, state.contract_over)}
        if extra:
            names_text = ", ".join(
                sorted(
                    "(an element written without index)" if e == _BARE else str(written.get(e, e))
                    for e in extra
                )
            )
            shown = "i" if line_index == _BARE else str(line_index)
            error = meaning.error(
                f"the free index {names_text} on the right side: the left side has only "
                f"the element index {shown}",
                node.pos,
            )
            if len(members) == 1:
                raise error
            # one member of a chain with a stray index (a sum's index left dangling after
            # it): that member is not read, the others are
            state.sides[k] = None
            state.member_errors[k - 1] = str(error)


def _contract_jacobian(state: _LineState, meaning: _Meaning) -> None:
    """∂y_k/∂x_i = …: every side contracted with g over k (``_contract``)."""
    if not state.contracted:
        return
    assert state.contract_over is not None
    over = state.rename.get(state.contract_over, state.contract_over)
    written = (str(state.contract_over), str(state.source))
    if written in meaning.family.apart and state.source is not None:
        # the post sums ∂y_k/∂x_i over k ≠ i only (Σ_{k≠i}, the diagonal apart): its k ≠ i
        # entries are what it states, so they are compared, and the line says so
        element = state.rename.get(state.source, state.source)
        state.sides = [
            (1 - sp.KroneckerDelta(over, element)) * s if s is not None else None
            for s in state.sides
        ]
        meaning.notes.append(
            f"read for {written[0]} ≠ {written[1]} only: the post sums this Jacobian over "
            f"{written[0]} ≠ {written[1]} (Σ_{{{written[0]}≠{written[1]}}}) and its diagonal apart"
        )
    sides = _contract(state.sides, meaning, over)
    if isinstance(sides, str):
        state.kind, state.reason = "none", sides
        state.sides = [None] * len(state.sides)
    else:
        state.sides = sides


def _features_apart(
    lhs: sp.Expr, meaning: _Meaning, pos: Pos
) -> tuple[sp.Expr, tuple[str, str] | None]:
    """∂ĥ_{kl}/∂h_{ij} is δ_lj·(∂ĥ_k/∂h_i): a line about two features l and j.  Features never
    mix, so such a line says something only for l = j: the left side without δ, and the two
    features (each right side must vanish for l ≠ j, ``_same_feature``)."""
    deltas = [
        d
        for d in lhs.atoms(sp.KroneckerDelta)
        if all(meaning.roles.get(str(a), ("",))[0] == "feature" for a in d.args)
        and d.args[0] != d.args[1]
    ]
    if not deltas or not isinstance(lhs, sp.Mul):
        return lhs, None
    if len(deltas) > 1:  # pragma: no cover - a left side names two features at most
        raise meaning.error("a left side about more than two features", pos)
    d = deltas[0]
    return lhs.xreplace({d: sp.Integer(1)}), (str(d.args[0]), str(d.args[1]))


def _same_feature(value: sp.Expr, cross: tuple[str, str], meaning: _Meaning, pos: Pos) -> sp.Expr:
    """A right side of a two-feature line: zero for l ≠ j (every term carries δ_lj), then read
    at l = j."""
    a, b = (sp.Symbol(n, integer=True) for n in cross)
    deltas = [d for d in value.atoms(sp.KroneckerDelta) if set(d.args) == {a, b}]
    if not _vanishes(value.xreplace({d: sp.Integer(0) for d in deltas})):
        raise meaning.error(
            f"the right side is not zero for {cross[0]} ≠ {cross[1]} (a term without "
            f"δ_{cross[0]}{cross[1]}): features never mix, which BatchNorm's derivative says",
            pos,
        )
    return value.xreplace({d: sp.Integer(1) for d in deltas})


def _first_error(nodes: list[Node], meaning: _Meaning) -> LatexError | None:
    try:
        meaning.side_value(nodes[0])
    except LatexError as exc:
        return exc
    return None


_WRITTEN = {"dvar": "σ²", "dmu": "μ", "dgamma": "γ", "dbeta": "β", "dx": "x_i", "dxhat": "x̂_i"}


def _what(kind: str, defines: str | None) -> str:
    """A quantity as a post writes it, for messages (∂L/∂σ², not ∂L/∂dvar)."""
    if kind == "adjoint" and defines is not None:
        return f"∂L/∂{_WRITTEN.get(defines, defines)}"
    return defines or "the left side"


def _new_name_node(node: Node | None, names: dict[str, bool]) -> bool:
    """A lone letter that means nothing yet: the name a line defines (t, v)."""
    return (
        isinstance(node, Letter)
        and not node.font
        and node.name not in _RESERVED
        and node.name not in names
    )


def _classify(lhs: sp.Expr, meaning: _Meaning) -> tuple[str, str | None, sp.Expr | None, str]:
    """(kind, quantity, element index, reason) of a line from its left side."""
    if isinstance(lhs, sp.Indexed) and str(lhs.base.label) in _QUANTITY_OF_BASE:
        return "adjoint", _QUANTITY_OF_BASE[str(lhs.base.label)], lhs.indices[0], ""
    if isinstance(lhs, sp.Symbol) and lhs.name in _SCALAR_ADJOINT.values():
        return "adjoint", lhs.name, None, ""
    if isinstance(lhs, N.Partial):
        return "local", _local_name(lhs), None, ""
    if lhs in (N.mu, N.var):
        return "forward", lhs.name, None, ""
    if isinstance(lhs, sp.Indexed) and str(lhs.base.label) in _FORWARD_BASE:
        return "forward", str(lhs.base.label), lhs.indices[0], ""
    if meaning.new_name is not None:
        name, index = meaning.new_name
        if lhs == (sp.IndexedBase(name)[index] if index is not None else sp.Symbol(name)):
            return "name", name, index, ""
    if isinstance(lhs, sp.Indexed) and str(lhs.base.label) == "x":
        return "none", None, None, "the left side is an input x_i: it has no value to check"
    if (
        lhs.has(N.Partial)
        or any(isinstance(a, sp.Symbol) and a.name in N.QUANTITIES for a in lhs.free_symbols)
        or lhs.atoms(sp.Indexed)
        or lhs.free_symbols
    ):
        return "identity", None, None, ""
    return "identity", None, None, ""


def _local_name(p: N.Partial) -> str:
    """dxhat_dvar, dvar_dx, dy_dx, ...: the quantity a local derivative line defines."""

    def node(expr: sp.Expr) -> str:
        if isinstance(expr, sp.Indexed):
            return str(expr.base.label)
        if isinstance(expr, sp.Symbol):
            return expr.name
        return "(expr)"

    return f"d{node(p.of)}_d{node(p.wrt)}"


def _local_indices(p: sp.Expr, meaning: _Meaning) -> tuple[sp.Expr | None, sp.Expr | None]:
    """The element indices of ∂A/∂B: A's (the free ones of an expression) and B's."""
    assert isinstance(p, N.Partial)
    wrt = p.wrt.indices[0] if isinstance(p.wrt, sp.Indexed) else None
    free = sorted(meaning.element_indices(p.of), key=str)
    if isinstance(p.of, sp.Indexed):
        of = p.of.indices[0]
    elif len(free) == 1:
        of = free[0]
    elif not free:
        of = None
    else:
        raise meaning.error("a local derivative of an expression with several free indices", (1, 1))
    return of, wrt


def _contract(sides: list[sp.Expr | None], meaning: _Meaning, k: sp.Expr) -> list | str:
    """Σ_k g_k·(side) for a two-index line (∂y_k/∂x_i = …, k the first index): equal for every
    g exactly when equal entry by entry, since g is free.  A side that has g or an adjoint in it
    (then the contraction could hide a difference) is not contracted: the reason why."""
    for s in sides:
        if s is None:
            continue
        if (
            s.atoms(sp.Indexed)
            and any(str(a.base.label) in ("g", "dx", "dxhat") for a in s.atoms(sp.Indexed))
            or any(a.name in N.QUANTITIES for a in s.free_symbols if isinstance(a, sp.Symbol))
        ):
            return (
                "a two-index quantity (a Jacobian) written with the upstream gradient or an "
                "adjoint in it: bnderive checks Jacobians through Σ_k g_k (…), which needs "
                "them free of g"
            )
    meaning.fresh += 1
    bound = sp.Symbol(f"_b{meaning.fresh}", integer=True)
    return [
        N.reduce_sum((N.g[bound] * s.xreplace({k: bound})), bound) if s is not None else None
        for s in sides
    ]


__all__ = [
    "LatexError",
    "LineRead",
    "Partial",
    "name_bound",
    "NotCheckable",
    "DSTD",
    "parse_equation_line",
    "parse_latex",
]
