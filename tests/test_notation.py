"""The index notation reader: exact numbers, known names only, and no code execution."""

from __future__ import annotations

import builtins

import pytest
import sympy as sp

from bnderive import FormError
from bnderive.core import notation as N


def test_arithmetic_sums_and_deltas():
    expr = N.parse("gamma/sqrt(var + eps) * (g[i] - sum(g[k], k)/M)")
    want = N.gamma / sp.sqrt(N.var + N.eps) * (N.g[N.i] - sp.Sum(N.g[N.k], (N.k, 1, N.M)) / N.M)
    assert expr == want
    assert N.parse("delta(i, k)") == sp.KroneckerDelta(N.i, N.k)
    assert N.parse("sum(sum(x[k]*g[l], l), k)") == sp.Sum(
        sp.Sum(N.x[N.k] * N.g[N.l], (N.l, 1, N.M)), (N.k, 1, N.M)
    )


def test_caret_is_a_power_and_integer_division_is_exact():
    assert N.parse("x[i]^2") == N.x[N.i] ** 2
    assert N.parse("1/2") == sp.Rational(1, 2)
    assert N.parse("(var + eps)^(-3/2)") == (N.var + N.eps) ** sp.Rational(-3, 2)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("0.5*x[i]", sp.Rational(1, 2) * N.x[N.i]),
        ("(var + eps)^(-1.5)", (N.var + N.eps) ** sp.Rational(-3, 2)),
        ("(var + eps)**(-0.5)", 1 / sp.sqrt(N.var + N.eps)),
        ("2.0*g[i] - 0.1", 2 * N.g[N.i] - sp.Rational(1, 10)),
    ],
)
def test_floats_become_exact_rationals(text, want):
    expr = N.parse(text)
    assert expr == want
    assert not expr.atoms(sp.Float)


def test_float_exponent_is_a_rational_power():
    expr = N.parse("(var + eps)^(-1.5)")
    assert isinstance(expr, sp.Pow)
    assert expr.exp == sp.Rational(-3, 2) and isinstance(expr.exp, sp.Rational)


def test_aliases_of_published_code():
    assert N.parse("dout[i]") == N.g[N.i]
    assert N.parse("dy[i]") == N.g[N.i]
    assert N.parse("sigma2 + epsilon") == N.var + N.eps


def test_earlier_definitions_are_known_through_extra():
    dbeta = sp.Symbol("dbeta")
    assert N.parse("dbeta/M", extra={"dbeta": dbeta}) == dbeta / N.M
    aux = sp.Symbol("invstd")
    assert N.parse("invstd*g[i]", extra={"invstd": aux}) == aux * N.g[N.i]


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("foo*x[i]", ["foo"]),
        ("gamma*bar + baz", ["bar", "baz"]),
        ("invstd*g[i]", ["invstd"]),  # not defined on an earlier line
        ("z[i]", ["z"]),  # an unknown array, named rather than "not subscriptable"
    ],
)
def test_unknown_names_are_named(text, names):
    with pytest.raises(FormError) as info:
        N.parse(text, where="line 7")
    message = str(info.value)
    assert message.startswith("line 7")
    assert "unknown" in message
    for name in names:
        assert name in message


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("__import__('os')", ("__import__",)),
        ("__import__('os').system('true')", ("unknown function",)),
        ("x.__class__", ("Attribute", "not allowed")),
        ("gamma.func(1)", ("unknown function",)),
        ("(lambda: 0)()", ("unknown function", "lambda")),
        ("lambda: 0", ("Lambda", "not allowed")),
        ("[x for x in ()]", ("not allowed",)),
        ("'text'", ("not a number",)),
        ("exp(x[i])", ("unknown function", "exp")),
        ("sqrt(x=1)", ("unknown function",)),
        ("x[i] if gamma else g[i]", ("not allowed",)),
        ("gamma +", ("cannot read",)),
    ],
)
def test_unsafe_or_unreadable_input_is_rejected(text, words):
    with pytest.raises(FormError) as info:
        N.parse(text)
    for word in words:
        assert word in str(info.value)


def test_rejected_input_is_never_executed(tmp_path, monkeypatch):
    marker = tmp_path / "executed"
    calls = []
    real_import = builtins.__import__

    def spy(name, *args, **kwargs):
        if name in ("os", "pathlib", "subprocess"):
            calls.append(name)
        return real_import(name, *args, **kwargs)

    texts = [
        f"__import__('pathlib').Path({str(marker)!r}).touch()",
        f"(lambda: __import__('pathlib').Path({str(marker)!r}).touch())()",
        f"open({str(marker)!r}, 'w')",
        "__import__('os')",
        "__import__('subprocess')",
    ]
    monkeypatch.setattr(builtins, "__import__", spy)
    for text in texts:
        with pytest.raises(FormError):
            N.parse(text)
    monkeypatch.undo()
    assert not marker.exists()
    assert calls == []


def test_reference_names_the_quantity():
    assert N.reference("dx", N.i) == sp.IndexedBase("dx")[N.i]
    assert N.reference("dvar", None) == sp.Symbol("dvar")
