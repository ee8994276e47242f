"""A product, factor by factor: its items cut from the syntax tree (``item``), then
grouped as the post writes them (a function applied to its argument, E[x] and Var[x], the words
of code-style posts, brackets that index an array, the signs and indices written before a
factor), and multiplied (``product``; an operator ∂/∂x_i takes what follows).
"""

from __future__ import annotations

import sympy as sp

from bnderive.read.latex_results import Ambiguity
from bnderive.read.latex_syntax import (
    Bracket,
    Group,
    Hat,
    Letter,
    Macro,
    Node,
    Num,
    Ones,
    Op,
    Product,
    Relation,
    ScriptArg,
    Scripted,
    SumExpr,
    _describe,
    _is_index,
    _label,
    _layer_label,
    _render,
    _short,
)
from bnderive.read.latex_vocabulary import (
    _ARRAY_LETTERS,
    _MEAN_FONTS,
    _WORD_FONTS,
    _WORDS,
    _Diff,
    _function_name,
    _Item,
    _item_text,
    _Operator,
)


class _FactorReading:
    """``_Meaning``'s reading of a product, factor by factor (see this module)."""

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
        \\mathrm{Var}[x], \\operatorname{Var}[x] (or with parentheses, which after the word are
        unambiguous), \\text{var}(x) (parentheses only): its variance (``variance_value``)."""
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
                # \text{var}(y): the variance as a function of the data, in parentheses only;
                # \text{Var}[x^{(k)}] is how posts write the population's variance (the BN
                # paper's whitening, without ε): not the batch's, so it stays a word
                text = prev.name in ("Var", "var") and font == "text" and paren
                word = prev.name == "Var" and font in _WORD_FONTS
                if text or word and (it.kind == "bracket" or paren):
                    out[-1] = _Item("variance", prev.pos, "Var", it.node, prev.sub, it.sup)
                    continue
            out.append(it)
        return out

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
        node = self.column_element(node)
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

    def column_element(self, node: Node) -> Node:
        """(y_i)_t, i a column's letter (``Family.vectors``): element t of the column of
        feature i, read as y_t (the feature is the line's, as every array's here)."""
        if not (
            isinstance(node, Scripted)
            and node.sub is not None
            and isinstance(node.base, Group)
            and node.base.kind == "paren"
            and isinstance(node.base.inner, Scripted)
            and node.base.inner.sup is None
            and node.base.inner.sub is not None
            and isinstance(node.base.inner.base, Letter)
            and not node.base.inner.base.font
        ):
            return node
        inner = node.base.inner
        column = inner.sub.items[0][0] if len(inner.sub.items) == 1 else None
        if not (isinstance(column, Letter) and column.name in self.family.vectors):
            return node
        self.notes.append(
            f"({inner.base.name}_{column.name})_… read as an element of the column "
            f"{inner.base.name}_{column.name} (the feature {column.name})"
        )
        return Scripted(node.pos, inner.base, node.sub, node.sup)

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
