"""Letters, macros and words as values: the arrays and their elements (x_i, x̂_i, y_i), the
statistics (μ, σ², σ as the post declares it, ε, γ, β), the words of code-style posts, and the
post's own letters: a name an earlier line defined (t = 1/√(σ²+ε)), a new name on the left side,
LayerNorm's μ_{bh} that a post defines as its own.
"""

from __future__ import annotations

import dataclasses

import sympy as sp

from bnderive.core import notation as N
from bnderive.read.latex_syntax import (
    Group,
    Hat,
    Letter,
    Macro,
    Node,
    Product,
    Scripted,
    _describe,
    _word_font,
)
from bnderive.read.latex_vocabulary import (
    _ARRAY_LETTERS,
    _LATEX_OWN,
    _LOSS_LETTERS,
    _OWN_MU,
    _RESERVED,
    _ROLE_TEXT,
    _STATS,
    LOSS_FONTS,
    _Item,
    _item_text,
)


class _NameReading:
    """``_Meaning``'s reading of letters, macros, words and the post's own names."""

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
        if (
            font == "mathcal"
            and name == "L"
            or name in _LOSS_LETTERS
            and not font
            or font in LOSS_FONTS
            and name in self.family.losses
        ):
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
        squared = self.squared_name(it)
        if squared is not None:  # s^2, a name an earlier line defined for the whole power
            return self.named_value(squared, dataclasses.replace(it, sup=None))
        if not font and name in self.names:  # a name an earlier line defined (t, v, R)
            if self.names[name]:
                index, _ = self.array_index(it)
                return self.power(sp.IndexedBase(name)[index], it)
            self.stat_subscripts(it)
            return self.power(sp.Symbol(name), it)
        if self.define_ok and not font and not self.reserved(name) and not it.brackets:
            # the left side names something of its own: t = 1/√(σ²+ε), R_i = x_i − μ
            self.define_ok = False
            if it.sup is not None and self.exponent_is_two(it) and it.sub is None:
                # s^2 = (1/N) Σ (x_k − x̄)²: a variance named with its exponent.  The name is the
                # whole power s^2, one symbol: s itself is not defined (√ of it is not assumed)
                squared = f"{name}^2"
                self.new_name = (squared, None)
                return sp.Symbol(squared)
            if it.sup is not None:
                raise self.error(
                    f"a name with an exponent ({name}^…) cannot be defined (only a letter "
                    "squared, with no subscript: s^2 = …, a name for the whole power)",
                    it.pos,
                )
            if it.sub is not None and self.sample_subscript(it.sub):
                self.stat_subscripts(it)  # m_b, v_b: one number per sample b (LayerNorm)
                index = None
            else:
                index = self.array_index(it)[0] if it.sub is not None else None
            self.new_name = (name, index)
            return sp.IndexedBase(name)[index] if index is not None else sp.Symbol(name)
        if not font and f"{name}^2" in self.names:
            raise self.error(
                f"{_item_text(it)}: the post defines {name}^2 (a name for the whole power), not "
                f"{name}; {name} is not assumed to be √({name}^2): write {name}^2, or define "
                f"{name} with a line of its own",
                it.pos,
            )
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

    def exponent_is_two(self, it: _Item) -> bool:
        """Is the item's exponent exactly 2 (s^2, s^{2})?"""
        return it.sup is not None and self.exponent(it.sup) == 2

    def squared_name(self, it: _Item) -> str | None:
        """``s^2`` when the item is s^2 (no font) and an earlier line defined the name s^2."""
        if it.node is None or it.node.font or f"{it.name}^2" not in self.names:
            return None
        return f"{it.name}^2" if self.exponent_is_two(it) else None

    def named_value(self, name: str, it: _Item) -> sp.Expr:
        """The value of a name an earlier line defined, at the item's element if it is one per
        element (t, v_i, R_i, s^2)."""
        if self.names[name]:
            index, _ = self.array_index(it)
            return self.power(sp.IndexedBase(name)[index], it)
        self.stat_subscripts(it)
        return self.power(sp.Symbol(name), it)

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
                "expanded; a file of the post's macros is read with --preamble FILE)"
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
