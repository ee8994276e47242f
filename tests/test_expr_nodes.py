"""Gradients with respect to a sub-expression of the forward pass (``read/expr_nodes.py``,
issue 12): ∂L/∂(γx̂_i) is the gradient of the node γx̂_i once y = γx̂_i + β is rewritten as
y = u + β; defined only when the expression is written once in the forward graph."""

from __future__ import annotations

from pathlib import Path

import pytest
import sympy as sp

from bnderive.core import notation as N
from bnderive.core.spec import Mode, Spec
from bnderive.read.documents import load_document
from bnderive.read.expr_nodes import (
    Forward,
    expression_adjoint,
    expression_partial,
    forward_lines,
)
from bnderive.read.own_graph import GraphUnknown, OwnGraph
from bnderive.verify.every_m import general_check
from bnderive.verify.exact import check_exact_mode
from bnderive.verify.verdict import Status

# The forward lines as dahal (2017) and vishalvatsalya (2019) write them (their equations).
FORWARD = r"""$$
\begin{align}
\mu_B &= \frac{1}{m}\sum_{i=1}^{m} x_i \\
\sigma_B^2 &= \frac{1}{m}\sum_{i=1}^{m} (x_i - \mu_B)^2 \\
\hat{x}_i &= \frac{x_i - \mu_B}{\sqrt{ \sigma_B^2 + \epsilon }} \\
y_i &= %s
\end{align}
$$
"""


def document(tmp_path: Path, backward: str, y: str = r"\gamma \hat{x}_i + \beta"):
    path = tmp_path / "post.md"
    path.write_text(FORWARD % y + "\n$$\n" + backward + "\n$$\n", encoding="utf-8")
    return load_document(path)


def verdicts(form, latex: str) -> set[Status]:
    line = next(line for line in form.lines if latex in line.latex)
    assert line.status == "checked", (line.status, line.reason, line.notes)
    out = set()
    for v in check_exact_mode(form, Mode.PER_ACTIVATION, [3, 4]) + general_check(form):
        if v.equation in line.equations and v.follows is None:
            out.add(v.status)
    return out


def verdict(form, latex: str) -> Status:
    """HOLDS or REFUTED, never both (the proof over every M may leave a refuted line
    undecided: the exact check refutes it)."""
    found = verdicts(form, latex) - {Status.UNDECIDED}
    assert len(found) == 1, found
    return found.pop()


def reason(form, latex: str) -> str:
    line = next(line for line in form.lines if latex in line.latex)
    assert line.status == "not checked", (line.status, line.notes)
    return line.reason


@pytest.mark.parametrize(
    ("rhs", "expected"),
    [
        (r"\frac{\partial L}{\partial y_i}", Status.HOLDS),
        (
            r"\frac{\partial L}{\partial y_i} \frac{\partial y_i}{\partial \gamma \hat{x}_i}",
            Status.HOLDS,
        ),
        (r"\gamma \frac{\partial L}{\partial y_i}", Status.REFUTED),
        (r"\hat{x}_i \frac{\partial L}{\partial y_i}", Status.REFUTED),
    ],
)
def test_the_gradient_of_gamma_xhat_is_that_of_y(tmp_path, rhs, expected):
    latex = r"\frac{\partial L}{\partial \gamma \hat{x}_i} = " + rhs
    form = document(tmp_path, latex)
    assert verdict(form, rhs) == expected
    line = next(line for line in form.lines if rhs in line.latex)
    assert any("taken as a node of the forward graph" in n for n in line.notes)


@pytest.mark.parametrize(("rhs", "expected"), [("1", Status.HOLDS), (r"\gamma", Status.REFUTED)])
def test_a_local_derivative_with_respect_to_the_expression(tmp_path, rhs, expected):
    form = document(tmp_path, r"\frac{\partial y_i}{\partial \gamma \hat{x}_i} = " + rhs)
    assert verdict(form, r"\partial \gamma \hat{x}_i") == expected


def test_used_in_a_chain_rule_for_dgamma(tmp_path):
    right = r"\sum_{i=1}^m \frac{\partial L}{\partial \gamma \hat{x}_i} \hat{x}_i"
    wrong = r"\sum_{i=1}^m \frac{\partial L}{\partial \gamma \hat{x}_i} \gamma"
    form = document(tmp_path, r"\frac{\partial L}{\partial \gamma} = " + right)
    assert verdict(form, right) == Status.HOLDS
    form = document(tmp_path, r"\frac{\partial L}{\partial \gamma} = " + wrong)
    assert verdict(form, wrong) == Status.REFUTED


def test_an_expression_no_forward_line_writes_is_not_checked(tmp_path):
    # γx_i (the hat dropped): no forward line writes it, so x is not guessed to mean x̂
    form = document(
        tmp_path, r"\frac{\partial L}{\partial \gamma x_i} = \frac{\partial L}{\partial y_i}"
    )
    assert "is not written in the forward graph" in reason(form, r"\gamma x_i")


def test_a_refuted_forward_line_does_not_make_a_node(tmp_path):
    # dahal's y_i = γx_i + β is refuted: γx_i is still no node; γx̂_i is (standard graph)
    backward = (
        r"\frac{\partial L}{\partial \gamma x_i} = \frac{\partial L}{\partial y_i} \\"
        "\n"
        r"\frac{\partial L}{\partial \gamma \hat{x}_i} = \frac{\partial L}{\partial y_i} \gamma"
    )
    form = document(tmp_path, backward, y=r"\gamma x_i + \beta")
    assert "is not written in the forward graph" in reason(form, r"\gamma x_i} =")
    assert verdict(form, r"\partial y_i} \gamma") == Status.REFUTED


def test_a_local_derivative_of_an_expression_without_it_is_not_checked(tmp_path):
    # vishalvatsalya's ∂(γx_i + β)/∂(γx̂_i): γx̂_i is not written in γx_i + β
    form = document(
        tmp_path, r"\frac{\partial (\gamma x_i + \beta)}{\partial \gamma \hat{x}_i} = 1"
    )
    assert "is not written in" in reason(form, r"\partial (\gamma x_i")


def test_an_expression_written_twice_is_refused():
    # x_i − μ is in x̂'s line and, at every element, inside σ²'s sum: which one is the node?
    spec = Spec()
    lines = forward_lines(spec, OwnGraph())
    with pytest.raises(GraphUnknown, match="more than once"):
        expression_adjoint(N.x[N.i] - N.mu, lines, {})
    k = sp.Symbol("k", integer=True)
    twice = [Forward("y", N.gamma * N.x[N.i] + sp.sin(N.gamma * N.x[N.i]), True, "test")]
    with pytest.raises(GraphUnknown, match="more than once"):
        expression_partial(N.y[k], N.gamma * N.x[k], twice)


def test_a_scalar_expression_sums_over_the_elements():
    # σ² + ε feeds every x̂_k: ∂L/∂(σ²+ε) = Σ_k ∂L/∂x̂_k (x_k − μ)(−½)(σ²+ε)^{−3/2} = ∂L/∂σ²
    spec = Spec()
    lines = forward_lines(spec, OwnGraph())
    dxhat = sp.IndexedBase("dxhat")[N.i]
    value, _ = expression_adjoint(N.var + N.eps, lines, {"dxhat": dxhat})
    k = sp.Dummy("k", integer=True)
    want = N.reduce_sum(
        sp.IndexedBase("dxhat")[k]
        * (N.x[k] - N.mu)
        * sp.Rational(-1, 2)
        * (N.var + N.eps) ** sp.Rational(-3, 2),
        k,
    )
    assert sp.simplify((value - want).subs(N.M, 3).doit()) == 0  # the sums written out
