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
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

import sympy as sp
from lark import Lark, Token, Transformer
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)

from bnderive.core import notation as N
from bnderive.errors import FormError


class LatexError(FormError):
    """LaTeX that bnderive cannot read: the message names the token, line, column, expectation."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        self.line = line
        self.column = column
        where = f"line {line}, column {column}: " if line is not None else ""
        super().__init__(where + message)
        self.reason = message


class NotCheckable(LatexError):
    """Understood, but not a value bnderive can check (a local derivative such as ∂σ²/∂x_i)."""


Pos = tuple[int, int]


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


@dataclass(frozen=True)
class LineNode(Node):
    sides: tuple[Node | None, ...]  # the first is None for an `&= …` continuation


def _pos(token: Token) -> Pos:
    return (token.line or 1, token.column or 1)


class _ToTree(Transformer):
    """lark tree → syntax tree (no meaning yet: a letter is a letter)."""

    def expression(self, c: list) -> Node:
        return c[0]

    def line(self, c: list) -> LineNode:
        # [lhs] = rhs [= rhs ...] [, or .]: a side follows each '='; the first may be missing.
        sides: list[Node | None] = [None]
        for item in c:
            if isinstance(item, Token):
                if item.type == "EQ":
                    sides.append(None)
            else:
                sides[-1] = item
        pos = next((s.pos for s in sides if s is not None), (1, 1))
        return LineNode(pos, tuple(sides))

    def sum_expr(self, c: list) -> Node:
        terms: list[tuple[str, Node]] = [("+", c[0])]
        for k in range(1, len(c), 2):
            terms.append((str(c[k]), c[k + 1]))
        return c[0] if len(terms) == 1 else SumExpr(c[0].pos, tuple(terms))

    def signed(self, c: list) -> Node:
        return Signed(_pos(c[0]), str(c[0]), c[1])

    def product(self, c: list) -> Node:
        return c[0] if len(c) == 1 and not isinstance(c[0], Op) else Product(c[0].pos, tuple(c))

    def mulop(self, c: list) -> Op:
        text = str(c[0])
        return Op(_pos(c[0]), "/" if text == "/" else "*")

    def bigsum(self, c: list) -> BigSum:
        sub = sup = None
        if len(c) == 3:
            sub, sup = c[1]
        return BigSum(_pos(c[0]), sub, sup, c[-1])

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

    def script_list(self, c: list) -> list:
        return [x for x in c if not isinstance(x, Token)]

    def script_item(self, c: list) -> tuple[Node, Node | None]:
        return (c[0], c[2] if len(c) == 3 else None)

    def number(self, c: list) -> Num:
        return Num(_pos(c[0]), str(c[0]))

    def letter(self, c: list) -> Letter:
        return Letter(_pos(c[0]), str(c[0]))

    def macro(self, c: list) -> Macro:
        return Macro(_pos(c[0]), str(c[0])[1:])

    def font(self, c: list) -> Node:
        font = str(c[0])[1:]
        letters = "".join(str(t) for t in c[2:-1])
        if len(letters) != 1:
            raise LatexError(
                f"\\{font}{{{letters}}}: only one letter is understood in \\{font}{{…}} "
                "(\\mathcal{L}, \\mathcal{B}, \\mathrm{d}, \\mathbf{x})",
                *_pos(c[0]),
            )
        return Letter(_pos(c[0]), letters, font)

    def hat(self, c: list) -> Hat:
        return Hat(_pos(c[0]), c[1])

    def frac(self, c: list) -> Frac:
        return Frac(_pos(c[0]), c[1], c[2])

    def frac_digits(self, c: list) -> Frac:  # \frac12: one digit each, as TeX reads it
        digits = re.findall(r"[0-9]", str(c[0]))
        pos = _pos(c[0])
        return Frac(pos, Num(pos, digits[0]), Num(pos, digits[1]))

    def sqrt(self, c: list) -> Sqrt:
        return Sqrt(_pos(c[0]), c[1])

    def group(self, c: list) -> Group:
        return Group(_pos(c[0]), c[1], "brace")

    def paren(self, c: list) -> Group:
        return Group(_pos(c[0]), c[1], "paren")

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
            kind: _ascii for kind in ("MACRO", "SUM", "SQRT", "MULOP", "ADDOP", "SUPDIGIT")
        },
    )


#: Unicode that posts paste into their LaTeX, as the LaTeX it stands for.
_UNICODE = {
    "β": "\\beta", "γ": "\\gamma", "δ": "\\delta", "ε": "\\epsilon", "ϵ": "\\epsilon",
    "μ": "\\mu", "σ": "\\sigma", "∂": "\\partial", "∑": "\\sum", "Σ": "\\sum",
    "√": "\\sqrt", "·": "\\cdot", "⋅": "\\cdot", "×": "\\times", "−": "-", "²": "2", "³": "3",
}  # fmt: skip


def _ascii(token: Token) -> Token:
    """A Unicode token with the text of its LaTeX, at the same place."""
    text = _UNICODE.get(str(token))
    return Token.new_borrow_pos(token.type, text, token) if text else token


# -- meaning ------------------------------------------------------------------------------------------
_BARE = sp.Symbol("_bare", integer=True)  # an element written without index (x̂, δy)
_ARRAY_LETTERS = {"x": "x", "h": "x", "y": "y", "g": "g"}
_LOSS_LETTERS = {"L", "E", "J", "f"}  # f: posts that write ∂f/∂x̂ (CS231n notes)
_STATS = {"mu": "mu", "gamma": "gamma", "beta": "beta", "epsilon": "eps", "varepsilon": "eps"}
#: Multi-letter names of code-style posts, read as one symbol (longest first).
_WORDS = ("dxhat", "dgamma", "dbeta", "dout", "dmu", "dvar", "NHW", "eps")
#: Index names of the bound sums, in order of preference (i is the line's own element).
_POOL = ("k", "p", "q", "l", "n", "j", "r", "s", "t", "u", "v")
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
#: Local derivatives a line may define, (of, with respect to) → quantity; all are per element i.
LOCAL_OF = {
    ("var", "x"): "dvar_dx",  # ∂σ²/∂x_i
    ("mu", "x"): "dmu_dx",  # ∂μ/∂x_i
    ("xhat", "var"): "dxhat_dvar",  # ∂x̂_i/∂σ²
    ("xhat", "mu"): "dxhat_dmu",  # ∂x̂_i/∂μ
}
LOCAL_QUANTITIES = frozenset(LOCAL_OF.values())
_SCALAR_ADJOINT = {"var": "dvar", "mu": "dmu", "gamma": "dgamma", "beta": "dbeta"}


@dataclass
class _Item:
    """One factor of a product while its meaning is being worked out."""

    kind: str  # letter | macro | word | bracket | node | op | diff | kron | size
    pos: Pos
    name: str = ""
    node: Node | None = None
    sub: ScriptArg | None = None
    sup: ScriptArg | None = None
    brackets: list[Bracket] = field(default_factory=list)
    target: _Item | None = None  # for diff: what is differentiated
    upper: ScriptArg | None = None  # for kron: the upper element of \delta^{n,h,w}_{N,H,W}


@dataclass(frozen=True)
class _Diff:
    """∂X, dX or δX: a differential (inside a fraction) or, for d and δ, an adjoint."""

    prefix: str  # "partial" | "d" | "delta"
    target: str  # loss | x | y | xhat | var | mu | gamma | beta | std | other
    index: sp.Expr | None
    text: str
    pos: Pos


class _Meaning:
    def __init__(self, sigma: str | None, spatial: bool, line: int, column: int) -> None:
        self.sigma = sigma
        self.spatial = spatial
        self.line0 = line
        self.column0 = column
        self.roles: dict[str, tuple[str, Pos]] = {}  # index name → element | feature
        self.composites: dict[sp.Symbol, tuple[str, ...]] = {}  # (n,h,w) → Symbol("nhw")
        self.fresh = 0
        self.local_ok = False  # a local derivative (∂σ²/∂x_i) is read only as a line's left side

    # -- errors and positions --------------------------------------------------------------------
    def at(self, pos: Pos) -> tuple[int, int]:
        line, column = pos
        return (line + self.line0 - 1, column + (self.column0 - 1 if line == 1 else 0))

    def error(self, message: str, pos: Pos, kind: type[LatexError] = LatexError) -> LatexError:
        return kind(message, *self.at(pos))

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
        if len(names) == 1:
            return self.element_symbol([names[0][0]], names[0][1]), None
        if len(names) == 2:  # x_{ij}: sample i, feature j
            (e, epos), (f, fpos) = names
            self.feature(f, fpos)
            return self.element_symbol([e], epos), f
        if len(names) == 4:  # x[n][c][h][w]: element (n, h, w), channel c
            (n, npos), (c, cpos), (h, _), (w, _) = names
            self.feature(c, cpos)
            return self.element_symbol([n, h, w], npos), c
        raise self.error(
            f"{len(names)} indices: expected one (x_i), two (x_{{ij}}: sample, feature) or four "
            "(x[n][c][h][w])",
            item.pos,
        )

    def feature(self, name: str, pos: Pos) -> None:
        if name.isdigit():
            raise self.error("a feature or channel written as a number is not understood", pos)
        self.role(name, "feature", pos)

    def stat_subscripts(self, item: _Item) -> None:
        """μ_B, μ_\\mathcal{B}, μ_j, μ[C]: the batch marker or a feature, both dropped."""
        names: list[tuple[str, Pos]] = []
        if item.sub is not None:
            names += self.index_names(item.sub)
        for b in item.brackets:
            names += self.index_names(ScriptArg(b.pos, ((b.inner, None),), True))
        for name, pos in names:
            if name != "B":
                self.feature(name, pos)

    # -- values -----------------------------------------------------------------------------------
    def value(self, node: Node) -> sp.Expr:
        got = self.value_or_diff(node)
        if isinstance(got, _Diff):
            return self.diff_value(got)
        return got

    def value_or_diff(self, node: Node) -> sp.Expr | _Diff:
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

    def product(self, nodes: list[Node]) -> sp.Expr | _Diff:
        items = [self.item(n) for n in nodes]
        items = self.words(items)
        items = self.attach_brackets(items)
        items = self.prefixes(items)
        items = self.sizes(items)
        pieces: list[sp.Expr | _Diff] = []
        divide = False
        for it in items:
            if it.kind == "op":
                if it.name == "/":
                    if not pieces or divide:
                        raise self.error("'/' needs something on each side", it.pos)
                    divide = True
                continue
            v = self.diff_of(it) if it.kind == "diff" else self.item_value(it)
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
        if len(pieces) == 1:
            return pieces[0]
        return sp.Mul(*[self.plain(p) for p in pieces])

    def plain(self, v: sp.Expr | _Diff) -> sp.Expr:
        return self.diff_value(v) if isinstance(v, _Diff) else v

    def item(self, node: Node) -> _Item:
        sub = sup = None
        base = node
        if isinstance(node, Scripted):
            base, sub, sup = node.base, node.sub, node.sup
        if isinstance(base, Op):
            return _Item("op", base.pos, base.op)
        if isinstance(base, Letter):
            return _Item("letter", base.pos, base.name, base, sub, sup)
        if isinstance(base, Macro):
            return _Item("macro", base.pos, base.name, base, sub, sup)
        if isinstance(base, Bracket):
            return _Item("bracket", base.pos, "", base, sub, sup)
        return _Item("node", base.pos, "", base, sub, sup)

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

    @staticmethod
    def is_letter(it: _Item, name: str) -> bool:
        return it.kind == "letter" and it.name == name and not it.node.font and it.sub is None

    # -- one factor -------------------------------------------------------------------------------
    def power(self, base: sp.Expr, it: _Item) -> sp.Expr:
        if it.sup is None:
            return base
        return base ** self.exponent(it.sup)

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

    def item_value(self, it: _Item) -> sp.Expr:
        if it.kind == "size":
            self.no_sub(it, "the size N H W")
            return self.power(N.M, it)
        if it.kind == "letter":
            return self.letter_value(it)
        if it.kind == "word":
            return self.word_value(it)
        if it.kind == "macro":
            return self.macro_value(it)
        if it.kind == "kron" and it.upper is not None:
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
        if it.kind == "kron":
            names = self.index_names(it.sub)
            if len(names) != 2 or any(n == "B" for n, _ in names):
                raise self.error(
                    "Kronecker's delta takes two indices, as in \\delta_{ik}", it.sub.pos
                )
            args = []
            for name, _ in names:
                if name.isdigit():
                    args.append(sp.Integer(int(name)))
                else:
                    args.append(sp.Symbol(name, integer=True))
            return self.power(sp.KroneckerDelta(*args), it)
        if it.kind == "bracket":
            self.no_sub(it, "a bracket")
            return self.power(self.value(it.node.inner), it)
        node = it.node
        if isinstance(node, Hat):
            return self.power(self.hat_value(it), it)
        self.no_sub(it, _describe(node))
        if isinstance(node, Num):
            return self.power(sp.Rational(node.text), it)
        if isinstance(node, Group):
            return self.power(self.value(node.inner), it)
        if isinstance(node, Sqrt):
            return self.power(sp.sqrt(self.value(node.arg)), it)
        if isinstance(node, Frac):
            return self.power(self.frac_value(node), it)
        if isinstance(node, BigSum):
            return self.bigsum(node)
        raise self.error(f"{_describe(node)} is not understood here", node.pos)  # pragma: no cover

    def letter_value(self, it: _Item) -> sp.Expr:
        name, font = it.name, it.node.font
        if font == "mathcal" and name == "L" or name in _LOSS_LETTERS and not font:
            raise self.error(
                f"the loss {name} is only understood in a derivative, as in "
                "\\frac{\\partial L}{\\partial x_i}",
                it.pos,
            )
        if font == "mathcal":
            raise self.error(f"\\mathcal{{{name}}} is not understood here", it.pos)
        if name in _ARRAY_LETTERS:
            index, _ = self.array_index(it)
            return self.power(sp.IndexedBase(_ARRAY_LETTERS[name])[index], it)
        if name in ("N", "m", "M"):
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
            "or a macro such as \\mu, \\sigma, \\gamma",
            it.pos,
        )

    def word_value(self, it: _Item) -> sp.Expr:
        name = it.name
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
        if name in _STATS:
            self.stat_subscripts(it)
            return self.power(getattr(N, _STATS[name]), it)
        if name == "sigma":
            self.stat_subscripts(it)
            return self.sigma_value(it)
        if name == "ell":
            raise self.error(
                "the loss \\ell is only understood in a derivative, as in "
                "\\frac{\\partial \\ell}{\\partial x_i}",
                it.pos,
            )
        if name == "sum":  # pragma: no cover - the grammar makes \sum a BigSum
            raise self.error("\\sum without a body", it.pos)
        raise self.error(
            f"unknown macro \\{name}: expected one of \\mu \\sigma \\epsilon \\varepsilon "
            "\\gamma \\beta \\hat \\frac \\sqrt \\sum \\partial \\delta \\cdot \\times \\left \\right",
            it.pos,
        )

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
        inner = self.hat_item(it)
        index, _ = self.array_index(inner)
        return N.xhat[index]

    def hat_item(self, it: _Item) -> _Item:
        """\\hat{x}_i, \\hat{x_i}, \\hat x[n]: the x (or h) under the hat, with its indices."""
        arg = it.node.arg
        inner = self.item(arg) if not isinstance(arg, Product) else None
        if inner is None or inner.kind != "letter" or inner.name not in ("x", "h"):
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
        kind, index = self.target(t)
        return _Diff(it.name, kind, index, _item_text(t), it.pos)

    def target(self, t: _Item) -> tuple[str, sp.Expr | None]:
        if t.kind == "letter":
            font = t.node.font
            if (t.name in _LOSS_LETTERS and not font) or (font == "mathcal" and t.name == "L"):
                self.no_sub(t, "the loss")
                return "loss", None
            if t.name in ("x", "h") and not font:
                return "x", self.array_index(t)[0]
            if t.name == "y" and not font:
                return "y", self.array_index(t)[0]
        if t.kind == "macro":
            if t.name == "ell":
                return "loss", None
            if t.name in ("mu", "gamma", "beta"):
                self.stat_subscripts(t)
                if t.sup is not None:
                    return "other", None
                return t.name, None
            if t.name == "sigma":
                self.stat_subscripts(t)
                exp = self.exponent(t.sup) if t.sup is not None else None
                if self.sigma == "var":
                    return ("var" if exp is None else "other"), None
                if exp == 2:
                    return "var", None
                if exp is None and self.sigma == "std":
                    return "std", None
                if exp is None:
                    self.sigma_value(t)  # raises: σ undeclared
                return "other", None
        if t.kind == "node" and isinstance(t.node, Hat):
            if t.sup is not None:
                return "other", None
            inner = self.hat_item(t)
            return "xhat", self.array_index(inner)[0]
        return "other", None

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
        return self.adjoint(d)

    def adjoint(self, d: _Diff) -> sp.Expr:
        if d.target == "y":
            return N.g[d.index]
        if d.target in _ELEMENTWISE_ADJOINT:
            return sp.IndexedBase(_ELEMENTWISE_ADJOINT[d.target])[d.index]
        if d.target in _SCALAR_ADJOINT:
            return sp.Symbol(_SCALAR_ADJOINT[d.target])
        if d.target == "std":
            raise self.error(
                f"∂L/∂{d.text} with σ the standard deviation is not one of the quantities "
                "bnderive checks (∂L/∂σ² is)",
                d.pos,
                NotCheckable,
            )
        raise self.error(
            f"the gradient with respect to {d.text} is not understood: expected ∂L/∂ of "
            "y, x̂, σ², μ, x, γ or β",
            d.pos,
            NotCheckable if d.target == "other" else LatexError,
        )

    def derivative(self, num: _Diff, den: _Diff) -> sp.Expr:
        local = LOCAL_OF.get((num.target, den.target))
        if local is not None and self.local_ok:
            index = den.index if den.target == "x" else num.index
            return sp.IndexedBase(local)[index if index is not None else _BARE]
        if num.target != "loss":
            raise self.error(
                f"∂{num.text}/∂{den.text} is a local derivative; bnderive checks derivatives of "
                "the loss (∂L/∂x_i, ∂L/∂σ², ...) and does not evaluate local ones",
                num.pos,
                NotCheckable,
            )
        if den.target == "loss":
            raise self.error("∂L/∂L is not a gradient bnderive knows", den.pos)
        return self.adjoint(den)

    def frac_value(self, node: Frac) -> sp.Expr:
        num = self.value_or_diff(node.num)
        den = self.value_or_diff(node.den)
        if isinstance(num, _Diff) and isinstance(den, _Diff):
            return self.derivative(num, den)
        if (
            isinstance(num, _Diff)
            and num.prefix == "partial"
            or (isinstance(den, _Diff) and den.prefix == "partial")
        ):
            d = num if isinstance(num, _Diff) and num.prefix == "partial" else den
            raise self.error(
                "a fraction with ∂ on one side only: expected \\frac{\\partial L}{\\partial x_i}",
                d.pos,
            )
        return self.plain(num) / self.plain(den)

    # -- sums -------------------------------------------------------------------------------------
    def bigsum(self, node: BigSum) -> sp.Expr:
        bound = self.sum_indices(node)
        self.check_upper(node)
        body = self.value(node.body)
        features = [n for n, _ in bound if self.roles.get(n, ("",))[0] == "feature"]
        elements = [(n, p) for n, p in bound if n not in features]
        for name in features:
            body = self.collapse_feature(body, name, node.pos)
        if not elements:
            if features:
                return body
            index = _BARE  # \sum with no limits: the summed element is written bare
        elif len(elements) == 1:
            index = self.element_symbol([elements[0][0]], elements[0][1])
        else:
            names = tuple(n for n, _ in elements)
            match = [s for s, parts in self.composites.items() if set(parts) == set(names)]
            if not match and not any(
                sp.Symbol(name, integer=True) in body.free_symbols for name in names
            ):  # Σ_{n,h,w} δy: the summand names the element bare (or not at all)
                match = [self.element_symbol(list(names), node.pos)]
            if not match:
                raise self.error(
                    f"a sum over {', '.join(names)} of something not indexed by all of them "
                    "(write x[n][c][h][w] in a sum over n, h, w)",
                    node.pos,
                )
            index = match[0]
        if not isinstance(index, sp.Symbol):
            raise self.error("a sum over a number", node.pos)
        if index != _BARE and _BARE in body.free_symbols:
            body = body.xreplace({_BARE: index})  # \sum_{n,h,w} δy: the summed element
        for s, parts in self.composites.items():
            if s != index and s in body.free_symbols and set(parts) & {n for n, _ in elements}:
                raise self.error(
                    f"a sum over {', '.join(n for n, _ in elements)} covers only part of the "
                    f"element ({', '.join(parts)}): write \\sum_{{{','.join(parts)}}}",
                    node.pos,
                )
        self.fresh += 1
        placeholder = sp.Symbol(f"_b{self.fresh}", integer=True)
        return N.reduce_sum(body.xreplace({index: placeholder}), placeholder)

    def sum_indices(self, node: BigSum) -> list[tuple[str, Pos]]:
        if node.sub is None:
            return []
        out: list[tuple[str, Pos]] = []
        for lhs, rhs in node.sub.items:
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
            if rhs is not None and not (isinstance(rhs, Num) and rhs.text == "1"):
                raise self.error(
                    "a sum from anything but 1: only sums over the whole reduction set "
                    "(i = 1..M) are understood",
                    rhs.pos,
                )
            out += names
        if any(n == "B" or n.isdigit() for n, _ in out):
            raise self.error("expected index letters under \\sum, as in \\sum_{i=1}^{N}", node.pos)
        return out

    def check_upper(self, node: BigSum) -> None:
        if node.sup is None:
            return
        items = node.sup.items
        if len(items) == 3 and all(rhs is None for _, rhs in items):
            letters = [lhs.name if isinstance(lhs, Letter) else "" for lhs, _ in items]
            if letters == ["N", "H", "W"]:
                return
        if len(items) == 1 and items[0][1] is None:
            node_up = items[0][0]
            upper = self.value(node_up)
            if upper == N.M:
                return
        raise self.error(
            "the upper limit of a sum must be the size of the reduction set (N, m, M, NHW, or "
            "N,H,W): only sums over the whole set are understood",
            node.sup.pos,
        )

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
        if not _vanishes(without):
            raise self.error(
                f"a sum over the feature index {name} with a term that has no δ linking {name} "
                "to the line's feature: that would mix features, which BatchNorm never does",
                pos,
            )
        out = body.xreplace({d: 1 for d in deltas})
        if l in out.free_symbols:  # pragma: no cover - features are dropped where they appear
            raise self.error(f"the feature index {name} is used outside δ", pos)
        return out

    # -- the end of a line ------------------------------------------------------------------------
    def finish(self, expr: sp.Expr, pos: Pos) -> sp.Expr:
        """Feature deltas resolved, bound indices named k, p, q, ... (never a free index)."""
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
            if isinstance(s, sp.Symbol) and s.is_integer and not s.name.startswith("_b")
        }
        return _name_bound(expr, free | {"i"})

    def element_indices(self, expr: sp.Expr) -> set[sp.Symbol]:
        return {
            s
            for s in expr.free_symbols
            if isinstance(s, sp.Symbol)
            and s.is_integer
            and s != N.M
            and not s.name.startswith("_b")
        }


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


def _item_text(it: _Item) -> str:
    if it.kind == "node" and it.node is not None:
        text = _describe(it.node)
    elif it.kind == "macro":
        text = "\\" + it.name
    elif it.kind == "letter" and it.node is not None:
        text = _describe(it.node)
    else:
        text = it.name
    if it.sup is not None and len(it.sup.items) == 1 and isinstance(it.sup.items[0][0], Num):
        text += "^" + it.sup.items[0][0].text
    if it.sub is not None:
        text += "_" + "".join(_describe(n) for n, _ in it.sub.items)
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
_STARTS |= {"LBRACE", "LPAR", "LSQB", "LCURLY"}
_CLOSERS = {
    "RBRACE": "'}'",
    "RPAR": "')'",
    "RSQB": "']'",
    "RCURLY": "'\\}'",
    "EQ": "'='",
    "$END": "the end",
}


def _expected(names: set[str] | frozenset[str]) -> str:
    """What the parser would have accepted, in words: closers by name, the rest by kind."""
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


def _tree(text: str, start: str, line: int, column: int) -> Node:
    if not text.strip():
        raise LatexError("nothing to read: the text is empty", line, column)
    try:
        tree = _parser().parse(text, start=start)
        return _ToTree().transform(tree)
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
    expr = meaning.value(tree)
    rename = {s: sp.Symbol(parts[0], integer=True) for s, parts in meaning.composites.items()}
    rename[_BARE] = N.i
    expr = expr.xreplace(rename)
    return meaning.finish(expr, tree.pos)


@dataclass(frozen=True)
class LineRead:
    """One line of a derivation as bnderive read it."""

    sides: tuple[sp.Expr | None, ...]  # the first is None for an `&= …` continuation
    defines: str | None  # dx, dvar, ... when the left side is a quantity bnderive checks
    index: sp.Symbol | None  # N.i for an elementwise quantity
    source_index: sp.Expr | None  # the left side's own element index (x_j: j), for continuations
    reason: str = ""  # why the line defines nothing checkable

    @property
    def lhs(self) -> sp.Expr | None:
        return self.sides[0]

    @property
    def rhs(self) -> tuple[sp.Expr | None, ...]:
        return self.sides[1:]

    @property
    def checkable(self) -> bool:
        return self.defines is not None and not self.reason


_QUANTITY_OF_BASE = {"dx": "dx", "dxhat": "dxhat", "g": "dy"}


def parse_equation_line(
    text: str,
    *,
    sigma: str | None = None,
    spatial: bool = False,
    line: int = 1,
    column: int = 1,
    continues: tuple[str | None, sp.Expr | None] | None = None,
) -> LineRead:
    """One line of an align block: ``LHS = RHS [= RHS ...]`` or ``= RHS`` (an ``&=``
    continuation: ``continues`` is (the quantity of the line before or None, its left side's
    element index)).

    When the left side is ∂L/∂x̂_i, ∂L/∂σ², ∂L/∂μ, ∂L/∂x_i, ∂L/∂γ, ∂L/∂β (or ∂L/∂y_i) the line
    defines that quantity and its element index is renamed i.  A left side that is something
    else (∂σ²/∂x_i, a plain expression), or a right side with a local derivative, makes the line
    not checkable: ``reason`` says why.  Anything not understood raises ``LatexError``.
    """
    tree = _tree(text, "line", line, column)
    assert isinstance(tree, LineNode)
    meaning = _Meaning(sigma, spatial, line, column)
    defines: str | None = None
    source: sp.Expr | None = None
    reason = ""
    lhs_node = tree.sides[0]
    lhs: sp.Expr | None = None
    if lhs_node is None:
        if continues is None:
            raise LatexError("a line that starts with '=' continues nothing", line, column)
        defines, source = continues
        if defines is None:
            reason = "continues a line that defines nothing bnderive checks"
    else:
        meaning.local_ok = True
        try:
            lhs = meaning.value(lhs_node)
        except NotCheckable as exc:
            reason = exc.reason
        else:
            defines, source, reason = _quantity(lhs)
        meaning.local_ok = False
    rhs: list[sp.Expr | None] = []
    for node in tree.sides[1:]:
        try:
            rhs.append(meaning.value(node))
        except NotCheckable as exc:
            rhs.append(None)
            reason = reason or exc.reason
    sides: list[sp.Expr | None] = [lhs, *rhs]
    index: sp.Symbol | None = None
    elementwise = defines is not None and (
        defines in LOCAL_QUANTITIES or N.QUANTITIES.get(defines, False)
    )
    rename: dict[sp.Expr, sp.Expr] = {
        s: sp.Symbol(parts[0], integer=True) for s, parts in meaning.composites.items()
    }
    if elementwise and not isinstance(source, sp.Symbol):
        defines, reason = None, reason or "the left side names one entry by number; write x_i"
        elementwise = False
    if elementwise:
        index = N.i
        # x_j on the left: j becomes i everywhere, and an i elsewhere becomes j (a swap renames
        # without capture).
        if source == _BARE:
            rename[_BARE] = N.i
        elif source != N.i:
            rename.update({source: N.i, N.i: source})
    else:
        rename[_BARE] = N.i
    sides = [s.xreplace(rename) if s is not None else None for s in sides]
    if defines is not None:
        allowed = {N.i} if elementwise else set()
        for node, s in zip(tree.sides[1:], sides[1:], strict=True):
            extra = meaning.element_indices(s) - allowed if s is not None else set()
            if extra:
                names = ", ".join(sorted(str(e) for e in extra))
                what = "only the element index i" if elementwise else "no element index"
                raise meaning.error(
                    f"the free index {names} on the right side: the left side has {what}",
                    node.pos,
                )
    sides = [meaning.finish(s, tree.pos) if s is not None else None for s in sides]
    return LineRead(tuple(sides), defines, index, source, reason)


def _quantity(lhs: sp.Expr) -> tuple[str | None, sp.Expr | None, str]:
    if isinstance(lhs, sp.Indexed) and str(lhs.base.label) in _QUANTITY_OF_BASE:
        return _QUANTITY_OF_BASE[str(lhs.base.label)], lhs.indices[0], ""
    if isinstance(lhs, sp.Indexed) and str(lhs.base.label) in LOCAL_QUANTITIES:
        return str(lhs.base.label), lhs.indices[0], ""
    if isinstance(lhs, sp.Symbol) and lhs.name in _SCALAR_ADJOINT.values():
        return lhs.name, None, ""
    return (
        None,
        None,
        "the left side is not one of the quantities bnderive checks (∂L/∂x̂_i, ∂L/∂σ², ∂L/∂μ, "
        "∂L/∂x_i, ∂L/∂γ, ∂L/∂β)",
    )


__all__ = [
    "LatexError",
    "LineRead",
    "NotCheckable",
    "parse_equation_line",
    "parse_latex",
]
