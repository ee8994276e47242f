"""The LaTeX reader: the grammar, the notation it understands, and its errors.

Expected forms are built from notation.py's symbols and compared with ``sp.expand(a - b) == 0``
(sums are named k, then p for a nested one, as the reader names them), never with simplify.
"""

from __future__ import annotations

import logging

import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bnderive.core import notation as N
from bnderive.core.derive import derive
from bnderive.core.notation import Partial
from bnderive.core.printing import latex
from bnderive.core.spec import Spec
from bnderive.errors import FormError
from bnderive.read.latex_derivatives import DSTD
from bnderive.read.latex_reader import parse_equation_line, parse_latex
from bnderive.read.latex_results import LatexError, NotCheckable
from bnderive.read.latex_syntax import _parser

x, g, xhat, y = N.x, N.g, N.xhat, N.y
i, j, k, n, p = N.i, N.j, N.k, N.n, N.p
M, mu, var, eps, gamma, beta = N.M, N.mu, N.var, N.eps, N.gamma, N.beta
dx, dxhat = sp.IndexedBase("dx"), sp.IndexedBase("dxhat")
dvar, dmu, dgamma, dbeta = sp.symbols("dvar dmu dgamma dbeta")
KD = sp.KroneckerDelta
Big = sp.Symbol("N", integer=True)
NP = sp.Symbol("n'", integer=True)  # n' is an index of its own


def S(f: sp.Expr, index: sp.Symbol = k) -> sp.Expr:
    return N.reduce_sum(f, index)


def same(a: sp.Expr, b: sp.Expr) -> bool:
    return sp.expand(a - b) == 0


EXPRESSIONS = [
    # element arrays, one and two indices, NCHW
    (r"x_i", x[i]),
    (r"x_{i}", x[i]),
    (r"x[i]", x[i]),
    (r"x_{ij}", x[i]),
    (r"x_{i,j}", x[i]),
    (r"h_{kj}", x[k]),
    (r"x[n][c][h][w]", x[n]),
    (r"x[N][C][H][W]", x[Big]),
    (r"x_1", x[1]),
    (r"y_i", y[i]),
    (r"\hat{x}_i", xhat[i]),
    (r"\widehat{x}_i", xhat[i]),
    (r"\hat x_i", xhat[i]),
    (r"\hat{x_i}", xhat[i]),
    (r"\hat{h}_{ij}", xhat[i]),
    (r"\hat{x}", xhat[i]),
    (r"\hat{x}[n][C][h][w]", xhat[n]),
    # statistics and parameters, with batch and feature subscripts
    (r"\mu", mu),
    (r"\mu_B", mu),
    (r"\mu_\mathcal{B}", mu),
    (r"\mu_j", mu),
    (r"\mu[C]", mu),
    (r"\sigma^2", var),
    (r"\sigma_B^2", var),
    (r"\sigma^2_B", var),
    (r"\sigma_j^2", var),
    (r"\sigma^{2}", var),
    (r"\sigma_\mathcal{B}^2", var),
    (r"\sigma^2[C]", var),
    (r"\epsilon", eps),
    (r"\varepsilon", eps),
    (r"eps", eps),
    (r"\gamma", gamma),
    (r"\gamma_j", gamma),
    (r"\gamma[C]", gamma),
    (r"\beta_l", beta),
    # the upstream gradient
    (r"\frac{\partial L}{\partial y_i}", g[i]),
    (r"\frac{\partial \ell}{\partial y_i}", g[i]),
    (r"\frac{\partial \mathcal{L}}{\partial y_i}", g[i]),
    (r"\frac{d\mathcal{L}}{dy_{kl}}", g[k]),
    (r"\frac{dL}{dy_i}", g[i]),
    (r"dL/dy_i", g[i]),
    (r"\delta y", g[i]),
    (r"\delta y_i", g[i]),
    (r"\delta y[n][C][h][w]", g[n]),
    (r"dy_i", g[i]),
    (r"dout", g[i]),
    (r"g_k", g[k]),
    # the adjoints
    (r"\frac{\partial L}{\partial \hat{x}_i}", dxhat[i]),
    (r"\frac{\partial \ell}{\partial \widehat{x}_i}", dxhat[i]),
    (r"\frac{\partial L}{\partial \sigma^2}", dvar),
    (r"\frac{\partial L}{\partial \sigma_B^2}", dvar),
    (r"\frac{\partial L}{\partial \mu_B}", dmu),
    (r"\frac{\partial L}{\partial x_i}", dx[i]),
    (r"\frac{\partial L}{\partial x_j}", dx[j]),
    (r"\mathrm{d}L/\mathrm{d}x_i", dx[i]),
    (r"\frac{d\mathcal{L}}{dh_{ij}}", dx[i]),
    (r"\frac{\partial L}{\partial \gamma}", dgamma),
    (r"\frac{\partial L}{\partial \beta}", dbeta),
    (r"\delta\beta", dbeta),
    (r"\delta\gamma[C]", dgamma),
    (r"\delta\sigma^2[C]", dvar),
    (r"\delta\mu", dmu),
    (r"\delta x[n][C][h][w]", dx[n]),
    (r"\delta\hat{x}_i", dxhat[i]),
    (r"d\hat{x}_i", dxhat[i]),
    (r"dgamma", dgamma),
    (r"dbeta + dmu", dbeta + dmu),
    # sums over the reduction set
    (r"\sum_{i=1}^{N} x_i", S(x[k])),
    (r"\sum_{i=1}^{m} g_i \hat{x}_i", S(g[k] * xhat[k])),
    (r"\sum_k g_k", S(g[k])),
    (r"\sum_{k=1}^{M} g_{k}", S(g[k])),
    (r"\sum\limits_{i=1}^{N} x_i", S(x[k])),
    (r"\sum_{n,h,w} \delta y[n][c][h][w]", S(g[k])),
    (r"\sum_{n=1,h=1,w=1}^{N,H,W} x[n][c][h][w]", S(x[k])),
    (r"\sum_{i=1}^{NHW} x_i", S(x[k])),
    (r"\sum_{n,h,w} \delta y", S(g[k])),
    (r"\sum \delta y \cdot \hat{x}", S(g[k] * xhat[k])),
    (r"\sum_i -2(x_i - \mu)", S(-2 * (x[k] - mu))),
    (r"\sum_k g_k x_k + \mu", S(g[k] * x[k]) + mu),
    (r"\mu + \sum_k g_k x_k", mu + S(g[k] * x[k])),
    (r"\sum_k \sum_p x_k x_p", S(S(x[k] * x[p], p), k)),
    (r"\sum_i x_i - \sum_i g_i", S(x[k]) - S(g[k])),
    (r"x_i \sum_i g_i", x[i] * S(g[k])),
    (r"\sum_{k,l}\frac{d\mathcal{L}}{dy_{kl}}\gamma_l \delta_{jl}", S(g[k] * gamma)),
    # Kronecker deltas
    (r"\delta_{ik}", KD(i, k)),
    (r"\delta_{i,k}", KD(i, k)),
    (r"\sum_k \delta_{ik} g_k", S(KD(i, k) * g[k])),
    # numbers, fractions, roots, powers
    (r"\frac{1}{2}", sp.Rational(1, 2)),
    (r"\frac12", sp.Rational(1, 2)),
    (r"-\frac{1}{2}", sp.Rational(-1, 2)),
    (r"0.5", sp.Rational(1, 2)),
    (r"\frac{-1}{2}", sp.Rational(-1, 2)),
    (r"\sqrt{\sigma^2+\epsilon}", sp.sqrt(var + eps)),
    (r"(\sigma^2+\epsilon)^{-3/2}", (var + eps) ** sp.Rational(-3, 2)),
    (r"(\sigma^2+\epsilon)^{-1.5}", (var + eps) ** sp.Rational(-3, 2)),
    (r"\left(\sigma^2+\epsilon\right)^{-\frac{3}{2}}", (var + eps) ** sp.Rational(-3, 2)),
    (r"\left[x_i - \mu\right]", x[i] - mu),
    (r"x_i^2", x[i] ** 2),
    (r"x_i^{2}", x[i] ** 2),
    # products: explicit and by juxtaposition
    (r"\gamma \cdot \hat{x}_i", gamma * xhat[i]),
    (r"\gamma \times \hat{x}_i", gamma * xhat[i]),
    (r"\gamma * \hat{x}_i", gamma * xhat[i]),
    (r"\gamma(\sigma^2+\epsilon)", gamma * (var + eps)),
    (r"g_k(x_k-\mu)", g[k] * (x[k] - mu)),
    (r"2(x_i-\mu)/N", 2 * (x[i] - mu) / M),
    (r"\frac{1}{N H W}", 1 / M),
    (r"\frac{1}{N\cdot H\cdot W}", 1 / M),
    (r"m \, \mu", M * mu),
    (
        r"\frac{\gamma}{\sqrt{\sigma^2+\epsilon}}\left(g_i - \frac{1}{m}\sum_k g_k\right)",
        gamma / sp.sqrt(var + eps) * (g[i] - S(g[k]) / M),
    ),
    (
        r"\frac{\gamma[C]}{\sqrt{\sigma^2[C]+\epsilon}}\left[\delta y[n][C][h][w] - "
        r"\frac{\delta\beta[C] + \delta\gamma[C]\cdot\hat{x}[n][C][h][w]}{N H W}\right]",
        gamma / sp.sqrt(var + eps) * (g[n] - (dbeta + dgamma * xhat[n]) / M),
    ),
    # Kronecker's delta over the spatial element (n,h,w) and (N,H,W), sums over the batch, primes
    (r"\delta^{n,h,w}_{N,H,W}", KD(n, Big)),
    (r"\delta^{i}_{k}", KD(i, k)),
    (
        r"\sum_{n,h,w} \delta^{n,h,w}_{N,H,W}\, \delta y[n][c][h][w]",
        S(KD(k, Big) * g[k]),
    ),
    (r"\sum_{n=1,h=1,w=1}^{N,H,W} \delta y[n][c][h][w]", S(g[k])),
    (r"\sum_{i\in B} x_i", S(x[k])),
    (r"\sum_{i \in \mathcal{B}} g_i (x_i - \mu)", S(g[k] * (x[k] - mu))),
    (r"\frac{1}{m}\sum_{j \in B} x_j x_i", S(x[k] * x[i]) / M),
    (r"x[n'][c][h'][w'] - x[n][c][h][w]", x[NP] - x[n]),
    (r"\delta_{n n'}", KD(n, NP)),
    (r"\sum_{n',h',w'} g[n'][c][h'][w'] x[n][c][h][w]", S(g[k] * x[n])),
    (r"\sum_{i'} g_{i'} \delta_{i' i}", S(g[k] * KD(k, i))),
]


# Unicode as posts paste it into their LaTeX: each reads as the macro it stands for.
UNICODE = [
    ("γ/√(σ²+ε)", gamma / sp.sqrt(var + eps)),
    ("−2 ∑_k g_k", -2 * S(g[k])),
    ("Σ_k g_k·(x_k − μ)", S(g[k] * (x[k] - mu))),
    ("(σ²+ϵ)^{-3/2}", (var + eps) ** sp.Rational(-3, 2)),
    (r"\frac{∂L}{∂σ²}", sp.Symbol("dvar")),
    ("γ × β ⋅ x_i", gamma * beta * x[i]),
    ("σ_B²", var),
    (r"\sqrt(\sigma^2 + \epsilon)", sp.sqrt(var + eps)),
    (r"\gamma \left\{ g_i - \mu \right\}", gamma * (g[i] - mu)),
]


def test_a_loss_named_f_reads_as_the_loss():
    read = parse_equation_line(
        r"\frac{\partial f}{\partial \gamma} = \sum_i \frac{\partial f}{\partial y_i}\hat{x}_i"
    )
    assert read.defines == "dgamma"
    assert same(read.rhs[0], S(g[k] * xhat[k]))


@pytest.mark.parametrize(("text", "expected"), UNICODE, ids=[t for t, _ in UNICODE])
def test_unicode_reads_as_its_latex(text, expected):
    got = parse_latex(text)
    assert same(got, expected), f"{text!r} read as {got}, expected {expected}"


def test_unicode_errors_keep_their_place():
    with pytest.raises(FormError, match="column 5"):
        parse_latex("γ·μ ½")


def test_at_least_sixty_expressions():
    assert len(EXPRESSIONS) >= 60


@pytest.mark.parametrize(("text", "expected"), EXPRESSIONS, ids=[t for t, _ in EXPRESSIONS])
def test_expression(text, expected):
    got = parse_latex(text)
    assert same(got, expected), f"{text!r} read as {got}, expected {expected}"


def test_the_grammar_is_unambiguous_lalr(caplog):
    """LALR(1) without shift/reduce or reduce/reduce conflicts (lark logs them, resolving
    shift/reduce silently): every text has at most one tree."""
    from importlib import resources

    from lark import Lark, logger

    grammar = (resources.files("bnderive.read") / "latex_grammar.lark").read_text(encoding="utf-8")
    old = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        with caplog.at_level(logging.DEBUG, logger="lark"):
            Lark(grammar, parser="lalr", start=["expression", "line"], debug=True)
    finally:
        logger.setLevel(old)
    assert not [r for r in caplog.records if "conflict" in r.getMessage().lower()]
    assert _parser().options.parser == "lalr"


def test_declared_sigma():
    assert same(parse_latex(r"\sigma", sigma="std"), sp.sqrt(var))
    assert same(parse_latex(r"\sigma^{-3}", sigma="std"), var ** sp.Rational(-3, 2))
    assert same(parse_latex(r"(\sigma+\epsilon)^{-1/2}", sigma="var"), (var + eps) ** -sp.S.Half)
    assert same(parse_latex(r"\frac{\partial L}{\partial \sigma}", sigma="var"), dvar)
    # σ = √σ²: ∂L/∂σ is its own quantity (2σ ∂L/∂σ², given its value by ``documents``)
    assert parse_latex(r"\frac{\partial L}{\partial \sigma}", sigma="std") == DSTD


def test_spatial_mode_refuses_a_lone_n_and_accepts_nhw():
    assert parse_latex(r"\frac{1}{NHW}", spatial=True) == 1 / M
    with pytest.raises(LatexError, match="lone N"):
        parse_latex(r"\frac{1}{N}", spatial=True)
    with pytest.raises(LatexError, match="lone N"):
        parse_latex(r"\sum_{i=1}^{N} x_i", spatial=True)


def test_feature_index_is_dropped_consistently():
    # x_{ij}, μ_j, σ_j², γ_j of one feature j: the feature index disappears everywhere.
    got = parse_latex(r"\gamma_j (x_{ij} - \mu_j)(\sigma_j^2 + \epsilon)^{-1/2}")
    assert same(got, gamma * (x[i] - mu) * (var + eps) ** -sp.S.Half)
    assert not got.has(j)
    # NCHW: the channel goes, the element is the triple (n, h, w), summed as one index.
    got = parse_latex(r"\sum_{n,h,w} x[n][c][h][w] \hat{x}[n][c][h][w]")
    assert same(got, S(x[k] * xhat[k]))


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        (r"x_i + \alpha", r"unknown macro \\alpha", 7),
        (r"x_i + {y_i", "expected '}'", 11),
        (r"x_i}", "unexpected '}'", 4),
        (r"(x_i + y_i", r"expected '\)'", 11),
        (r"z_i", "unknown symbol z", 1),
        (r"\sigma + 1", "declare what σ means", 1),
        (r"x_{ijk}", "3 indices", 1),
        (r"\sum_{i=0}^{N-2} x_i", "N-1 for a sum from 0", 12),
        (r"\sum_{i=2}^{N} x_i", "from anything but 1", 9),
        (r"\sum_{n} x[n][c][h][w]", "only part of the element", 1),
        (r"H x_i", "H alone", 1),
        (r"\sum_l \gamma_l x_{il}", "mix features", 1),
        (r"x_{ij} + x_{ji}", "i is used as feature here but as element at line 1, column 4", 14),
        (r"\partial x_i", "outside a fraction", 1),
        (r"x^23", "TeX reads this as", 3),
        (r"x \\ y", r"line break", 3),
        (r"x = y", "unexpected '='", 3),
        (r"\frac{\partial L}{x_i}", "∂ on one side only", 7),
        (r"\frac{\partial L}{\partial L}", "∂L/∂L", 19),
        (r"L + x_i", "only understood in a derivative", 1),
        (r"x_i +", "unexpected end", 6),
        (r"i + x_i", "index i is used as a value", 1),
        (r"\mathcal{Q}", r"\\mathcal\{Q\} is not understood", 1),
        (r"\text{and}", r"and: a name written as a word that no earlier line defines", 1),
        (r"\hat{y}_i", r"only \\hat\{x\}", 1),
        (r"x \# y", "not understood", 3),
        (r"α^2", "unexpected character 'α'", 1),
        (r"\delta^{n,h}_{N,H,W}", "compares two elements", 1),
        (r"\sum_{i \in B}^{N} x_i", "takes no other limits", 1),
        (r"\sum_{i \in C} x_i", r"only for S = B", 7),
        (r"x' + 1", "unknown symbol x'", 1),
    ],
)
def test_errors_name_the_token_and_its_column(text, message, column):
    with pytest.raises(LatexError, match=message) as info:
        parse_latex(text)
    assert isinstance(info.value, FormError)  # the CLI turns it into exit code 2
    assert info.value.line == 1
    assert info.value.column == column, str(info.value)
    assert f"line 1, column {column}:" in str(info.value)


def test_empty_text_is_an_error():
    with pytest.raises(LatexError, match="empty"):
        parse_latex("   ")


def test_error_positions_are_offset_to_the_file():
    with pytest.raises(LatexError) as info:
        parse_latex(r"x_i + \alpha", line=12, column=5)
    assert (info.value.line, info.value.column) == (12, 11)
    with pytest.raises(LatexError) as info:
        parse_latex("x_i +\n  \\alpha", line=12, column=5)
    assert (info.value.line, info.value.column) == (13, 3)  # later lines keep their own column


def test_a_local_derivative_reads_as_a_partial_until_its_value_is_known():
    got = parse_latex(r"\frac{\partial \sigma^2}{\partial x_i}")
    assert got == Partial(var, x[i], 0)
    op = parse_latex(
        r"\frac{\partial}{\partial \mu}\left[ \frac{x_i - \mu}{\sqrt{\sigma^2+\epsilon}} \right]"
    )
    assert op == Partial((x[i] - mu) / sp.sqrt(var + eps), mu, 0)
    with pytest.raises(NotCheckable, match="does not know u"):
        parse_latex(r"\frac{\partial u}{\partial x_i}")
    with pytest.raises(NotCheckable, match="not a node"):
        parse_latex(r"\frac{\partial L}{\partial istd}")


# -- lines --------------------------------------------------------------------------------------------
def test_equation_line_defines_a_quantity_with_index_i():
    read = parse_equation_line(
        r"\frac{\partial L}{\partial x_j} &= \frac{\partial L}{\partial \hat{x}_j} + \sum_i g_i x_i"
    )
    assert read.defines == "dx" and read.index == i and read.checkable
    # j (the left side's element) became i; the bound i of the sum is not captured.
    assert same(read.rhs[0], dxhat[i] + S(g[k] * x[k]))


def test_equation_line_continuation_and_chains():
    read = parse_equation_line(r"&= \gamma \delta y_j", continues=("dxhat", j))
    assert read.defines == "dxhat" and read.lhs is None
    assert same(read.rhs[0], gamma * g[i])
    chain = parse_equation_line(r"\delta\beta = \sum_k g_k = \sum_i \delta y_i")
    assert chain.defines == "dbeta" and len(chain.rhs) == 2
    assert all(same(r, S(g[k])) for r in chain.rhs)
    with pytest.raises(LatexError, match="continues nothing"):
        parse_equation_line(r"&= x_i")


@pytest.mark.parametrize(
    ("text", "defines", "rhs"),
    [
        (
            r"\frac{\partial \sigma^2}{\partial x_i} = \frac{2(x_i-\mu)}{N}",
            "dvar_dx",
            2 * (x[i] - mu) / M,
        ),
        (r"\frac{\partial \mu_B}{\partial x_j} &= \frac{1}{m}", "dmu_dx", 1 / M),
        (
            r"\frac{\partial \hat{x}_i}{\partial \sigma^2} = -\frac{1}{2}(x_i-\mu)(\sigma^2+\epsilon)^{-3/2}",
            "dxhat_dvar",
            -(x[i] - mu) * (var + eps) ** sp.Rational(-3, 2) / 2,
        ),
        (
            r"\frac{\partial \hat{x}_j}{\partial \mu} = \frac{-1}{\sqrt{\sigma^2+\epsilon}}",
            "dxhat_dmu",
            -1 / sp.sqrt(var + eps),
        ),
    ],
)
def test_equation_line_defines_a_local_derivative(text, defines, rhs):
    read = parse_equation_line(text)
    assert read.kind == "local" and read.defines == defines and read.index == i
    assert read.checkable and same(read.rhs[0], rhs)
    # On a right side the local derivative stays a Partial: the document gives it its value.
    uses = parse_equation_line(
        r"\frac{\partial L}{\partial x_i} = " + text.split("=")[0].strip(" &").replace("_j", "_i")
    )
    assert uses.defines == "dx" and uses.checkable and uses.rhs[0].has(Partial)


def test_what_a_line_is_decides_what_it_is_checked_against():
    local = parse_equation_line(r"\frac{\partial \sigma^2}{\partial \gamma} = 0")
    assert local.kind == "local" and local.defines == "dvar_dgamma" and local.index is None
    forward = parse_equation_line(r"\mu = \frac{1}{m}\sum_i x_i")
    assert forward.kind == "forward" and forward.defines == "mu"
    xhat_line = parse_equation_line(r"\hat{x}_j = \frac{x_j-\mu}{\sqrt{\sigma^2+\epsilon}}")
    assert xhat_line.kind == "forward" and xhat_line.defines == "xhat" and xhat_line.index == i
    name = parse_equation_line(r"t = \frac{1}{\sqrt{\sigma^2+\epsilon}}")
    assert name.kind == "name" and name.defines == "t"
    backwards = parse_equation_line(r"\frac{1}{\sqrt{\sigma^2+\epsilon}} = t")
    assert backwards.kind == "name" and backwards.defines == "t"
    assert same(backwards.rhs[0], 1 / sp.sqrt(var + eps))
    uses = parse_equation_line(
        r"\frac{\partial L}{\partial \mu} = -t\sum_k g_k", names={"t": False}
    )
    assert uses.kind == "adjoint" and same(uses.rhs[0], -sp.Symbol("t") * S(g[k]))
    identity = parse_equation_line(r"\sum_i (x_i - \mu) = 0")
    assert identity.kind == "identity" and identity.rhs[0] == 0
    chain = parse_equation_line(
        r"\frac{\partial L}{\partial x_i} = \frac{\partial L}{\partial \hat{x}_i}"
        r"\frac{\partial \hat{x}_i}{\partial x_i}"
    )
    assert chain.kind == "adjoint" and chain.rhs[0] == dxhat[i] * Partial(xhat[i], x[i], 0)
    jacobian = parse_equation_line(r"\frac{\partial y_k}{\partial x_i} = \gamma \delta_{ik}")
    assert jacobian.kind == "local" and jacobian.contracted  # read as Σ_k g_k (…)
    assert same(jacobian.rhs[0], S(gamma * sp.KroneckerDelta(i, k) * g[k]))
    prose = parse_equation_line(r"\frac{\partial L}{\partial \gamma}")  # a heading's mention
    assert prose.kind == "prose" and "states no value" in prose.reason


def test_a_scalar_with_a_per_element_right_side():
    # ∂L/∂γ = ∂L/∂y_i ∂y_i/∂γ: a claim for every i (a Σ_i missing is refuted, not excused)
    each = parse_equation_line(
        r"\frac{\partial L}{\partial \gamma} = \frac{\partial L}{\partial y_i}\frac{\partial y_i}{\partial \gamma}"
    )
    assert each.kind == "adjoint" and each.per_element and each.index == i
    # the same with vectors written without an index, side by side (or with *), is ambiguous
    # (a dot product, or a Σ forgotten?): not checked
    for op in ("", "*"):
        bare = parse_equation_line(
            r"\frac{\partial L}{\partial \sigma^2} = \frac{\partial L}{\partial \hat{x}} "
            + op
            + r" \frac{\partial \hat{x}}{\partial \sigma^2}"
        )
        assert bare.rhs == (None,) and "dot product" in bare.member_errors[0]
        assert "∂L/∂σ²" in bare.member_errors[0]  # the name as written, not dvar
    # one such member leaves the others checked: ∂L/∂σ² = ∂L/∂x̂ ∂x̂/∂σ² = Σ_k …
    chain = parse_equation_line(
        r"\frac{\partial L}{\partial \sigma^2} = \frac{\partial L}{\partial \hat{x}} "
        r"\frac{\partial \hat{x}}{\partial \sigma^2} = \sum_k \frac{\partial L}{\partial "
        r"\hat{x}_k} \frac{\partial \hat{x}_k}{\partial \sigma^2}"
    )
    assert chain.rhs[0] is None and chain.rhs[1] is not None and not chain.per_element


def test_a_dot_between_two_unindexed_vectors_on_a_scalar_line():
    """a · b with a, b per-element vectors written without an index is Σ_i a_i b_i, as linear
    algebra writes the dot product: read so only where the left side is one number per set (an
    elementwise product there would be a vector), and the line says so."""
    dot = parse_equation_line(
        r"\frac{\partial L}{\partial \sigma^2} = \frac{\partial L}{\partial \hat{x}} \cdot "
        r"\frac{\partial \hat{x}}{\partial \sigma^2} = \sum_k \frac{\partial L}{\partial "
        r"\hat{x}_k} \frac{\partial \hat{x}_k}{\partial \sigma^2}"
    )
    assert same(dot.rhs[0], dot.rhs[1]) and not dot.per_element
    assert any("read as a dot product" in n for n in dot.notes)
    # on a line about every element, · stays the elementwise product it was
    each = parse_equation_line(
        r"\frac{\partial L}{\partial x} = \frac{\partial L}{\partial \hat{x}} \cdot "
        r"\frac{\partial \hat{x}}{\partial \mu}"
    )
    assert each.rhs[0] == dxhat[i] * Partial(xhat[i], mu, 0) and not each.notes
    # ∂x̂/∂x between unindexed arrays with no path through σ² or μ beside it: the Jacobian or
    # each element's own partial? Not checked (Sinai's ∂z/∂x ∂L/∂z, letters.py)
    jacobian = parse_equation_line(
        r"\frac{\partial L}{\partial x} = \frac{\partial L}{\partial \hat{x}} \cdot "
        r"\frac{\partial \hat{x}}{\partial x}"
    )
    assert jacobian.rhs == (None,) and "the Jacobian" in jacobian.member_errors[0]
    # three vectors, a Jacobian ∂x̂/∂x, \times (a cross product) or \odot (elementwise): no dot
    # product, and so not checked
    for text in (
        r"\hat{x} \cdot \hat{x} \cdot \frac{\partial L}{\partial y}",
        r"\frac{\partial L}{\partial \hat{x}} \cdot \frac{\partial \hat{x}}{\partial x}",
        r"\frac{\partial L}{\partial y} \times \hat{x}",
        r"\frac{\partial L}{\partial y} \odot \hat{x}",
        r"\frac{\partial L}{\partial y} \cdot \hat{x} + \hat{x}",
    ):
        line = parse_equation_line(r"\frac{\partial L}{\partial \gamma} = " + text)
        error = line.member_errors[0]
        # (∂x̂/∂x without indices is not checked before that: the Jacobian, or elementwise?)
        assert line.rhs == (None,) and ("dot product" in error or "the Jacobian" in error), text


def test_equation_line_errors():
    with pytest.raises(LatexError, match="free index j"):
        parse_equation_line(r"\frac{\partial L}{\partial x_i} = g_j")
    with pytest.raises(LatexError, match="transpose"):  # a sum's body is index notation
        parse_equation_line(r"\sigma^2 = \frac{1}{N} \sum_k x_k^T x_k")


def test_truth_renders_back_to_itself():
    """display.latex of every adjoint reads back as the same expression (dy is g)."""
    truth = derive(Spec())
    for name in truth.names:
        for expr in (truth[name].expr, truth.inline(name)):
            expr = expr.replace(
                lambda e: isinstance(e, sp.Indexed) and str(e.base.label) == "dy",
                lambda e: g[e.indices[0]],
            )
            assert same(parse_latex(latex(expr)), expr), name


# -- fuzz ---------------------------------------------------------------------------------------------
_TOKENS = [
    "'",
    r"\in",
    "x",
    "y",
    "_",
    "^",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    "i",
    "k",
    "2",
    "1.5",
    "+",
    "-",
    "=",
    "/",
    ",",
    "&",
    " ",
    "\\frac",
    "\\sum",
    "\\sqrt",
    "\\hat",
    "\\partial",
    "\\delta",
    "\\sigma",
    "\\mu",
    "\\gamma",
    "\\cdot",
    "\\left(",
    "\\right)",
    "\\mathcal{L}",
    "\\alpha",
    "σ",
    "²",
    "√",
    "−",
    "Σ",
    "\\\\",
    "L",
    "N",
    "H",
    "W",
    "d",
    "g",
    "h",
    "\\",
    "%",
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.lists(st.sampled_from(_TOKENS), max_size=25).map("".join), st.text()))
def test_reader_raises_nothing_but_latex_error(text):
    for read in (
        lambda: parse_latex(text),
        lambda: parse_latex(text, sigma="std", spatial=True),
        lambda: parse_equation_line(text),
        lambda: parse_equation_line(text, continues=("dx", i)),
    ):
        try:
            result = read()
        except LatexError as exc:
            assert str(exc).strip(), "a LatexError must say what is wrong"
            continue
        assert result is not None


def test_a_lowercase_n_as_the_upper_limit_of_a_sum_is_the_size():
    # \sum_{i=1}^{n} (Sinai 2022 writes \sum^n_r): n is the size M, not an index the line uses
    read = parse_equation_line(r"\mu = \frac{1}{n}\sum^n_r x_r")
    assert read.kind == "forward" and read.rhs[0] == sp.Sum(N.x[N.k], (N.k, 1, N.M)) / N.M
    # an n that is an index elsewhere on the line is an index: not the size
    with pytest.raises(LatexError, match="index n is used as a value"):
        parse_equation_line(r"\mu = \frac{1}{n}\sum_{n=1}^{N} x_n")
