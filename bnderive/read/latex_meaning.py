"""The meaning of LaTeX's syntax tree: ``_Meaning``, which reads one line (or one
expression) into bnderive's index notation, and its matrix notation over the batch
(X^T Y, \\mathbf{1}, u · v: ``matrix``).  Its other parts are ``latex_factors``, ``latex_names``,
``latex_indices``, ``latex_sums`` and ``latex_derivatives``.
"""

from __future__ import annotations

from dataclasses import fields

import sympy as sp

from bnderive.core import notation as N
from bnderive.core.limits import power_problem
from bnderive.read.latex_derivatives import _DerivativeReading
from bnderive.read.latex_factors import _FactorReading
from bnderive.read.latex_indices import _IndexReading
from bnderive.read.latex_names import _NameReading
from bnderive.read.latex_results import Ambiguity, Ambiguous, LatexError, NotCheckable, Pos
from bnderive.read.latex_sums import _SumReading
from bnderive.read.latex_syntax import (
    Arguments,
    BigSum,
    Bracket,
    Frac,
    Group,
    Hat,
    Letter,
    Mean,
    Node,
    Num,
    Ones,
    Op,
    Product,
    Relation,
    ScriptArg,
    Scripted,
    Signed,
    Sqrt,
    SumExpr,
    _describe,
    _indicator,
    _ones_vector,
    _render,
    _transposes,
)
from bnderive.read.latex_vocabulary import (
    _BARE,
    _PLACEHOLDER,
    BATCH,
    Dotted,
    Family,
    _Diff,
    _function_name,
    _is_matrix,
    _Item,
    _name_bound,
    _Operator,
    undot,
)
from bnderive.read.matrix import MatrixAlgebra, Shaped, ShapeError


class _Meaning(_FactorReading, _NameReading, _IndexReading, _SumReading, _DerivativeReading):
    """What a syntax tree means in bnderive's index notation (``core/notation.py``), one
    line at a time: its parts are the mixins of ``latex_factors`` (a product), ``latex_names``
    (letters and the post's own names), ``latex_indices`` (index roles, Einstein's convention, δ),
    ``latex_sums`` (Σ) and ``latex_derivatives`` (∂); here, what holds them together: a node's
    value, one factor's value, powers, matrix notation over the batch (``matrix``), the end of a
    line (bound indices named, the line's own element kept)."""

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
        #: matrix notation: how a gradient ∂L/∂V of a column is being read ("c" a column, "r"
        #: a row), and whether the notation being read has one
        self.gradients_as = "c"
        self.plain_gradient = False
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
        ways = ("m", "c", "r")
        if _transposed_ones(node):
            # \mathbf{1}^⊤: a transpose the matrix of ones (symmetric) never needs, and the
            # transpose of a vector that is a column as vectors are (y_i, 1^⊤ y_i): the vector
            ways = ("c",)
            said = (
                r"\mathbf{1} read as the vector of ones, a column: the line transposes it "
                r"(\mathbf{1}^⊤), which only a vector needs"
            )
            if said not in self.notes:
                self.notes.append(said)
        rows: list[sp.Expr] = []  # the readings with the gradients as row vectors
        furthest = start
        self.plain_gradient = False
        for gradients in ("c", "r"):
            self.gradients_as = gradients
            for ones in ways:
                self.fresh, self.ones_as = start, ones
                try:
                    shaped = self.shaped(node, algebra)
                    if gradients == "r" and shaped.kind == "r":
                        # a row vector of gradients, as the post writes them: its elements
                        shaped = algebra.transpose(shaped)
                    (rows if gradients == "r" else readings).append(algebra.value(shaped))
                except ShapeError as exc:
                    problems.append(str(exc))
                furthest = max(furthest, self.fresh)
                if not self.plain_ones:
                    break
            if not self.plain_gradient:
                break
        self.gradients_as = "c"
        self.fresh = start + 6 * (furthest - start) + 1  # fresh past every reading
        if rows and not readings:
            # ∂L/∂ŷ_i (I − …): only gradients written as row vectors (multiplied from the left,
            # as posts with Jacobians write them) give the product a meaning
            said = (
                "∂L/∂… read as a row vector (the gradient multiplied from the left): "
                "as a column the product has no meaning"
            )
            if said not in self.notes:
                self.notes.append(said)
        readings += rows
        if not readings:
            raise self.error(f"matrix notation: {problems[0]}", node.pos, NotCheckable)
        if any(sp.expand(r - readings[0]) != 0 for r in readings[1:]):
            raise self.error(
                "matrix notation: \\mathbf{1} read as the matrix of ones and as a vector of ones "
                "(or a gradient as a column and as a row) gives different values; write "
                "\\mathbf{1}_N for the vector, Σ for the sum",
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
            if isinstance(expr, sp.Indexed) and str(expr.base.label) in _GRADIENTS:
                # ∂L/∂ŷ_i written without an index: a column, or a row (``matrix_value``)
                self.plain_gradient = True
                if self.gradients_as == "r":
                    return algebra.transpose(algebra.leaf(expr))
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


#: the gradients of the layer's arrays as the reader writes them (∂L/∂y, ∂L/∂x̂, ∂L/∂x)
_GRADIENTS = frozenset({"g", "dxhat", "dx"})


def _transposed_ones(node: object) -> bool:
    """Does ``node`` write \\mathbf{1}^⊤ (a plain \\mathbf{1} transposed) anywhere?"""
    if isinstance(node, Scripted) and isinstance(node.base, Ones) and _transposes(node):
        return True
    if isinstance(node, Node):
        return any(_transposed_ones(getattr(node, f.name)) for f in fields(node))
    if isinstance(node, tuple):
        return any(_transposed_ones(item) for item in node)
    return False
