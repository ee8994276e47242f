"""LaTeX as posts write it, to a small syntax tree: lark's tree of ``latex_grammar.lark`` (an
LALR(1) grammar, ``_parser``) turned into ``Node``s by ``_ToTree``; lark's errors said in words
(the token, its line and column, what was expected: ``_lark_error``); the tree's resource bounds
(``_bounded``, ``latex_bounds``); and what the meaning asks of the tree without knowing what a
letter means: which indices a node uses, its text as written (``_render``, ``_describe``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from typing import Any

from lark import Lark, Token, Transformer, Tree
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)

from bnderive.read.latex_bounds import tree_problem
from bnderive.read.latex_results import LatexError, Pos


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
            applied = self.applied_word(before, found[0].sides[0] if found[0].sides else None)
            if applied is not None:
                return replace(found[0], sides=(applied, *found[0].sides[1:]))
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

    def applied_word(self, before: object, lhs: Node | None) -> Node | None:
        """\\text{var}\\left(y_i\\right) = …: a word in \\text{…} written against the
        parenthesis that starts the left side is a function applied to it (the variance of
        y_i), not a remark before the equation: the left side is the word and its argument.
        A remark is prose (\\text{Then }, \\text{(Mean)}): more than one word, or a space
        before the parenthesis."""
        if not isinstance(before, Token) or before.type != "TEXT" or lhs is None:
            return None
        word = re.fullmatch(r"\\(?:text|textrm|mathrm)\{([A-Za-z]{2,})\}", str(before))
        after = self.text[before.end_pos :] if self.text and before.end_pos is not None else ""
        if word is None or not re.match(r"(\\left\s*)?\(", after):
            return None
        first = lhs.items[0] if isinstance(lhs, Product) else lhs
        base = first.base if isinstance(first, Scripted) else first
        if not (isinstance(base, Group) and base.kind == "paren"):
            return None
        name = Letter(_pos(before), word.group(1), "text")
        rest = lhs.items if isinstance(lhs, Product) else (lhs,)
        return Product(_pos(before), (name, *rest))

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


def _word_font(font: str, name: str) -> bool:
    """\\text{rstd}, \\mathrm{istd}: a word in an upright font, a name (\\mathrm{d} is a letter)."""
    return font in ("text", "mathrm") and len(name) > 1 and name.isalnum()


def unbraced(node: Node) -> Node:
    """``node`` without the braces around it: ``{x}``, ``{{x}}`` are x (braces do not print)."""
    while isinstance(node, Group) and node.kind == "brace":
        node = node.inner
    return node


def _is_word(node: Node, word: str) -> bool:
    """Is ``node`` the letters of ``word`` side by side, with no script (dout)?"""
    node = unbraced(node)
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
