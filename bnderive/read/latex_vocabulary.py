"""What the notation's letters and words mean before a line is read: the arrays (x, h, y, g),
the loss's letters, the statistics' macros, the words of code-style posts, the letters a line
may not define; the pieces a product is read into (``_Item``, a differential ``_Diff``, an
operator ``_Operator``, a dot product ``Dotted``); the normalization's reading of it all
(``Family``, BatchNorm's ``BATCH``); and the renaming of bound indices (``name_bound``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import sympy as sp

from bnderive.core.notation import Partial
from bnderive.read.latex_results import Pos
from bnderive.read.latex_syntax import (
    Bracket,
    Group,
    Letter,
    Node,
    ScriptArg,
    Scripted,
    _render,
    _word_font,
    unbraced,
)

# -- meaning ------------------------------------------------------------------------------------------
_OWN_MU = "μ"  # LayerNorm's μ_{bh} that a post defines as its own (``_Meaning.own_mu``)
_ONES = "_ones"  # the base of a ones tensor 1_h while a line is read (Einstein's notation)
_BARE = sp.Symbol("_bare", integer=True)

_AFFINE = ("gamma", "beta")
_ROLE_TEXT = {"gamma": "γ", "beta": "β", "y": "y", "xhat": "x̂", "x": "x"}
_OVER_BATCH = -1  # check_limits: a LayerNorm sum up to the batch size (over the samples)
_PLACEHOLDER = re.compile(r"_b\d+")  # a sum's index until the line is read
_ARRAY_LETTERS = {"x": "x", "h": "x", "y": "y", "g": "g", "X": "x", "Y": "y"}
_LOSS_LETTERS = {"L", "E", "J", "f"}  # f: posts that write ∂f/∂x̂ (CS231n notes)
#: Letters that name the loss in ∂C/∂x, ∂l/∂y (a cost C, a loss l): only as what ∂ acts on.
_LOSS_TARGETS = _LOSS_LETTERS | {"C", "l"}
#: The fonts a post may write its loss letter in elsewhere (\\mathcal{l} beside ∂l, \\mathbf{L}
#: beside ∂L): the same letter, so the same loss, when the document's derivatives write that
#: letter plainly as the loss (``Family.losses``).  \\mathbb (sets) and \\operatorname are not.
LOSS_FONTS = frozenset({"mathcal", "mathrm", "mathbf", "mathit", "boldsymbol", "bm", "mathsf"})
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
#: The fonts of E in E[x] (the mean) and of a word such as Var in \\operatorname{Var}[x].
_MEAN_FONTS = ("", "mathbb", "mathrm", "operatorname")
_WORD_FONTS = ("mathrm", "operatorname")


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
        node = unbraced(node)
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
    #: (line, member): a member of a forward line's chain that names the output as a function
    #: of the input, \hat{y} = BN(y) = …: another name of its left side, nothing to check.
    named: tuple[tuple[int, int], ...] = ()
    #: Letters the document subscripts a whole column with (tfjgeorge's y_i, i the feature):
    #: it transposes y_i (y_i^⊤) or indexes it again ((y_i)_t), and never sums over i
    #: (``documents._column_letters``); x_i is then the column, read elementwise.
    vectors: frozenset[str] = frozenset()
    #: Letters the document writes only as a superscript on its layer's symbols (Z^l, μ^{(l)}):
    #: a layer label, never a power (the letter is no number, size or index anywhere else), so
    #: x_r^l is x_r (``documents._layer_labels``).
    labels: frozenset[str] = frozenset()
    #: Einstein's convention read off tensor notation (δ_k^i): only an index written exactly
    #: twice in a term is summed (three times is no contraction, and stays a free index).
    pairs: bool = False
    #: The loss letters the document's derivatives write plainly (∂l/∂x, dL/dx, ∂ℓ as l,
    #: ∂\\mathcal{L} as L; ``documents._loss_letters``): the same letter in another font
    #: (\\mathcal{l}, \\mathbf{L}) is that loss too.
    losses: frozenset[str] = frozenset()


BATCH = Family()


def _function_name(head: Node | None, arg: Node | None) -> str | None:
    """``c(R)`` for a letter c (not an array, the loss or a size) followed by one letter in
    parentheses: the name of a function of the post's own, with its argument (never the
    variance, \\text{var}(x), \\mathrm{Var}(x): σ², ``latex_factors.expectations``)."""
    if not (
        isinstance(head, Letter)
        and (not head.font or _word_font(head.font, head.name))
        and head.name not in _RESERVED
        and not (head.font and head.name in ("var", "Var"))
        and isinstance(arg, Group)
        and arg.kind == "paren"
        and isinstance(arg.inner, Letter)
        and not arg.inner.font
    ):
        return None
    return f"{head.name}({arg.inner.name})"


def _is_ones(expr: sp.Expr) -> bool:
    """1_h, the ones tensor of Einstein's notation, while a line is read (then it is 1)."""
    return isinstance(expr, sp.Indexed) and str(expr.base.label) == _ONES


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
