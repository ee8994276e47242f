"""Fuzzing the readers and the command line's options (issue 10): whatever the input, only
bnderive's own errors escape.

Hypothesis draws text built from the pieces each reader knows (so that many inputs get deep into
the grammar, not only past its first token) mixed with arbitrary characters, and asserts that
reading either succeeds or raises a ``BnderiveError`` whose message is one paragraph: never a
RecursionError, a SymPy or lark exception, a MemoryError, and never a hang (the deadline).  The
option fuzz runs the command line in-process on values that are numbers, huge numbers,
non-numbers and NaN, and asserts exit code 2 with a message, or a verdict, never 4.
Examples are bounded so that the module stays a few seconds.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bnderive.cli import main
from bnderive.core import notation as N
from bnderive.errors import BnderiveError
from bnderive.read.forms import form_from_dict
from bnderive.read.latex_reader import parse_equation_line, parse_latex

FUZZ = settings(
    max_examples=120,
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    derandomize=True,  # the same examples in every run: CI failures reproduce
)

# -- pieces of each language --------------------------------------------------------------------
TOML_PIECES = [
    "x[k]", "g[i]", "xhat[k]", "mu", "var", "eps", "gamma", "beta", "M", "dbeta", "i", "k",
    "sum(", "sqrt(", "delta(i, k)", ", k)", "(", ")", "+", "-", "*", "/", "**", "^", "[", "]",
    "0", "1", "2", "0.5", "1e-5", "10", "-3/2", "1e999", "99999999999999999999", "nan", "zoo",
    "__import__", "lambda", ".", ",", "'", "x[-1]", "x[0.5]", "x[0]", " ", "oo", "True",
]  # fmt: skip
LATEX_PIECES = [
    "x_i", "x_{ij}", "x[n][c][h][w]", "\\hat{x}_i", "\\mu", "\\sigma^2", "\\sigma", "\\epsilon",
    "\\gamma", "\\beta", "\\frac{", "}{", "}", "{", "\\sqrt{", "\\sum_{i=1}^{N}", "\\sum_k",
    "\\delta_{ik}", "^{-3/2}", "^{", "^", "_", "(", ")", "\\left(", "\\right)", "[", "]", "+",
    "-", "\\cdot", "\\times", "/", "=", "&=", "N", "M", "m", "1", "2", "0", "10", "0.5",
    "\\frac{\\partial L}{\\partial x_i}", "\\frac{\\partial L}{\\partial \\beta}", "dy_i",
    "\\delta y_i", "g_k", "\\alpha", "\\\\", "\\text{ok}", "σ²", "√", "Σ", "−", ",", ".", " ",
]  # fmt: skip


def built(pieces: list[str], size: int = 30) -> st.SearchStrategy[str]:
    """Text made of the language's pieces and arbitrary characters, up to ``size`` parts."""
    part = st.one_of(st.sampled_from(pieces), st.text(max_size=3))
    return st.lists(part, max_size=size).map("".join)


def deep(opening: str, closing: str, core: str) -> st.SearchStrategy[str]:
    """Nesting 1 to 400 deep: what recursion-based readers die of."""
    return st.integers(1, 400).map(lambda n: opening * n + core + closing * n)


def assert_ours(error: BaseException) -> None:
    assert isinstance(error, BnderiveError), f"{type(error).__name__}: {error}"
    assert str(error).strip(), "an error says what is wrong"


# -- the TOML form reader ---------------------------------------------------------------------
@FUZZ
@given(
    st.one_of(
        built(TOML_PIECES), deep("(", ")", "g[1]"), deep("-", "", "1"), deep("sqrt(", ")", "2")
    )
)
def test_toml_expressions_raise_only_bnderive_errors(text):
    try:
        N.parse(text, where="fuzz")
    except Exception as exc:  # noqa: BLE001 - the assertion is on what escaped
        assert_ours(exc)


TABLE_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8,
)  # fmt: skip


@FUZZ
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "name": st.one_of(st.text(max_size=8), TABLE_VALUES),
            "title": TABLE_VALUES,
            "sources": TABLE_VALUES,
            "conventions": st.one_of(
                st.fixed_dictionaries({}, optional={"variance": TABLE_VALUES, "epsilon": TABLE_VALUES, "training": TABLE_VALUES}),
                TABLE_VALUES,
            ),
            "modes": TABLE_VALUES,
            "order": TABLE_VALUES,
            "equations": st.one_of(
                st.lists(
                    st.fixed_dictionaries(
                        {"defines": st.one_of(st.sampled_from(["dbeta", "dx[i]", "dvar", "h[j]", "k"]), TABLE_VALUES),
                         "expr": st.one_of(built(TOML_PIECES, 12), TABLE_VALUES)},
                        optional={"latex": TABLE_VALUES, "extra": TABLE_VALUES},
                    ),
                    max_size=3,
                ),
                TABLE_VALUES,
            ),
            "colour": TABLE_VALUES,
        },
    )
)  # fmt: skip
def test_toml_forms_raise_only_bnderive_errors(data):
    try:
        form_from_dict(data, "fuzz.toml")
    except Exception as exc:  # noqa: BLE001
        assert_ours(exc)


# -- the LaTeX reader ---------------------------------------------------------------------------
@FUZZ
@given(
    st.one_of(
        built(LATEX_PIECES),
        deep("(", ")", "x_i"),
        deep("{", "}", "1"),
        deep("\\frac{1}{", "}", "2"),
        deep("-", "", "1"),
        deep("\\sqrt{", "}", "2"),
        st.integers(1, 12).map(lambda n: "10^{" * n + "10" + "}" * n),
    )
)
def test_latex_expressions_raise_only_bnderive_errors(text):
    try:
        parse_latex(text, sigma="std")
    except Exception as exc:  # noqa: BLE001
        assert_ours(exc)


@FUZZ
@given(built(LATEX_PIECES), st.booleans())
def test_latex_lines_raise_only_bnderive_errors(text, spatial):
    try:
        parse_equation_line(text, spatial=spatial)
    except Exception as exc:  # noqa: BLE001
        assert_ours(exc)


# -- the command line's options -----------------------------------------------------------------
NUMBERS = st.one_of(
    st.integers(-(10**30), 10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "inf", "-inf", "1e-999999999", "1e999999999", "1/0", "0x10", "", " ",
                     "1_000", "٣", "1e", "--1", "9" * 50, "1,2", "1-2", "2-1", "1-99999999"]),
    st.text(max_size=6),
)  # fmt: skip

#: (command line before the value, the option): cheap commands, so that a valid value that is
#: accepted still finishes quickly; each run is capped by the options' own caps.
OPTIONS = [
    (["check", "staged", "--method", "exact", "--mode", "per-activation"], "--n"),
    (["check", "staged", "--method", "exact"], "--shape"),
    (["check", "staged", "--method", "random", "--mode", "per-activation"], "--m"),
    (["check", "staged", "--method", "random", "--mode", "per-activation"], "--trials"),
    (["check", "staged", "--method", "general"], "--jobs"),
    (["derive"], "--n"),
    (["derive"], "--c"),
    (["derive", "--mode", "spatial"], "--h"),
    (["explain"], "--eps"),
    (["explain"], "--gamma"),
    (["explain"], "--x-mean"),
    (["explain"], "--rtol"),
    (["explain"], "--n"),
    (["explain"], "--seed"),
    (["bench"], "--shape"),
    (["bench", "--shape", "2,2"], "--repeats"),
]


@settings(
    max_examples=80,
    deadline=timedelta(seconds=60),
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
@given(st.sampled_from(OPTIONS), NUMBERS)
def test_options_get_a_verdict_or_a_message_never_a_crash(option, value):
    prefix, name = option
    result = CliRunner().invoke(main, [*prefix, name, value])
    output = result.output
    assert result.exit_code in (0, 1, 2, 3), output
    assert "Traceback" not in output and "bnderive failed" not in output
    if result.exit_code == 2:
        assert "Error" in output


@pytest.mark.parametrize(
    "text",
    ["10^{10^{10^{10}}}", "\\frac{1}{" * 300 + "2" + "}" * 300, "x_{" * 300 + "i" + "}" * 300],
)
def test_known_killers_of_the_latex_reader(text):
    with pytest.raises(BnderiveError):
        parse_latex(text)
