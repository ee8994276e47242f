"""Derivatives: ∂X, dX, δX and what they differentiate (``target``), ∂/∂ fractions as the
loss's adjoints (∂L/∂x_i is dx[i]) or as local derivatives (∂x̂_k/∂σ², kept as
``notation.Partial`` for the document to value), the operator form \\frac{\\partial}{\\partial
x_i} applied to what follows, and the adjoints of a post's own nodes (``OWN_ADJOINT``).
"""

from __future__ import annotations

import sympy as sp

from bnderive.core import notation as N
from bnderive.read.latex_results import Ambiguity, NotCheckable, Pos
from bnderive.read.latex_syntax import (
    BigSum,
    Bracket,
    Frac,
    Group,
    Hat,
    Letter,
    Macro,
    Mean,
    Node,
    Product,
    Sqrt,
    _index_counts,
    _is_word,
    _render,
    _short,
    _word_font,
    unbraced,
)
from bnderive.read.latex_vocabulary import (
    _BARE,
    _LOSS_TARGETS,
    _WORDS,
    LOSS_FONTS,
    _Diff,
    _Item,
    _item_text,
    _Operator,
    undot,
)

#: ∂L/∂σ with σ = √σ² (named so that no code variable, such as a post's dstd, is taken for it)
DSTD = sp.Symbol("∂L/∂σ")  # an element written without index (x̂, δy)

_ELEMENTWISE_ADJOINT = {"x": "dx", "xhat": "dxhat"}

_SCALAR_ADJOINT = {"var": "dvar", "mu": "dmu", "gamma": "dgamma", "beta": "dbeta"}

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


class _DerivativeReading:
    """``_Meaning``'s reading of ∂, d and δ: adjoints, local derivatives."""

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

    def plain(self, v: sp.Expr | _Diff | _Operator) -> sp.Expr:
        if isinstance(v, _Operator):
            raise self.error(
                "\\frac{\\partial}{\\partial …} must be followed by what it differentiates",
                v.pos,
            )
        return self.diff_value(v) if isinstance(v, _Diff) else v

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
            if font in LOSS_FONTS and t.name in self.family.losses:
                # \mathcal{l} beside ∂l: the document's loss letter in another font, the same
                # letter (a post's font slip, or its style for the loss in some lines)
                self.no_sub(t, "the loss")
                said = (
                    f"\\{font}{{{t.name}}} read as the loss {t.name}, the letter the document's "
                    "derivatives write for it (in another font)"
                )
                if said not in self.notes:
                    self.notes.append(said)
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
            if (
                t.name in self.names
                and (not font or _word_font(font, t.name))
                or self.squared_name(t) is not None
            ):
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
        node = unbraced(node)
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
            if word in self.names and not self.names[word]:
                # ∂ istd of a name the document (or its conventions) defines, in italics
                return _Diff(prefix, "name", None, word, first.pos, sp.Symbol(word))
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
