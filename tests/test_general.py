"""The every-M rewrite: its steps, and that it proves right forms and never wrong ones."""

from __future__ import annotations

from pathlib import Path

import pytest
import sympy as sp

from bnderive.core import notation as N
from bnderive.core.spec import Mode, Spec
from bnderive.read.derivations import builtin_forms
from bnderive.read.forms import load_form
from bnderive.verify.every_m import _Reducer, general_check, prove
from bnderive.verify.verdict import Status

x, g, i, j, k, l, M, mu, var = N.x, N.g, N.i, N.j, N.k, N.l, N.M, N.mu, N.var


def rewrite(expr, spec=None):
    return _Reducer(spec or Spec()).rewrite(expr)


def test_constant_summand_is_m_times_it():
    assert rewrite(N.reduce_sum(N.gamma * mu, k)) == M * N.gamma * mu


def test_delta_picks_one_element():
    assert rewrite(N.reduce_sum(sp.KroneckerDelta(i, k) * g[k] * x[k], k)) == g[i] * x[i]


def test_renamed_indices_are_one_reduction():
    a = rewrite(N.reduce_sum(g[k] * x[k], k))
    b = rewrite(N.reduce_sum(g[l] * x[l], l))
    assert a == b and a.is_Symbol


def test_index_free_factors_move_out():
    assert rewrite(N.reduce_sum(N.gamma * x[i] * g[k], k)) == N.gamma * x[i] * rewrite(
        N.reduce_sum(g[k], k)
    )


def test_forward_reductions_are_replaced_by_statistics():
    assert rewrite(N.reduce_sum(x[k], k)) == M * mu
    assert sp.expand(rewrite(N.reduce_sum((x[k] - mu) ** 2, k)) - M * var) == 0
    bessel = Spec(n=3, unbiased=True)
    assert sp.expand(rewrite(N.reduce_sum(x[k] ** 2, k), bessel) - ((M - 1) * var + M * mu**2)) == 0


def test_eval_mode_knows_no_relation_between_x_and_running_mean():
    assert rewrite(N.reduce_sum(x[k], k), Spec(training=False)) != M * mu


def test_reduction_keeps_outer_index_dependence():
    inner = rewrite(N.reduce_sum(1 / (1 + x[k] ** 2 + x[j] ** 2), k))
    assert j in inner.free_symbols
    outer = rewrite(N.reduce_sum(N.reduce_sum(1 / (1 + x[k] ** 2 + x[j] ** 2), k), j))
    assert outer != M * inner  # an outer sum must not treat the inner one as constant
    assert outer.is_Symbol and outer.name.startswith("Σ[Σ[")


@pytest.fixture(params=builtin_forms(), ids=lambda f: f.name)
def form(request):
    return request.param


@pytest.mark.parametrize("mode", list(Mode))
def test_every_builtin_line_is_proved_for_all_m(form, mode):
    verdicts = general_check(form, Spec(mode))
    assert verdicts
    assert all(v.status in (Status.HOLDS, Status.UNCHECKED) for v in verdicts)
    assert all(v.scope == "all M" for v in verdicts)


CAFFE = "gamma/sqrt(var+eps)*(g[i] - sum(g[k],k)/M - xhat[i]*sum(g[k]*xhat[k],k)/M)"


def one_line(tmp_path: Path, expr: str, conventions: str = ""):
    path = tmp_path / "f.toml"
    path.write_text(
        f"name='f'\n{conventions}\n[[equations]]\ndefines='dx[i]'\nexpr='{expr}'\n",
        encoding="utf-8",
    )
    return load_form(path)


@pytest.mark.parametrize(
    "expr",
    [
        CAFFE,
        "gamma*(var+eps)**(-0.5)*(g[i] - sum(g[k],k)/M - xhat[i]*sum(g[k]*xhat[k],k)/M)",
        "gamma/sqrt(var+eps)*sum(g[k]*(delta(i,k) - 1/M - xhat[i]*xhat[k]/M), k)",
        "gamma/sqrt(sum(x[k]**2,k)/M - mu**2 + eps)*(g[i] - sum(g[k],k)/M)"
        " - gamma*(x[i]-mu)/(var+eps)**(3/2)*sum(g[k]*(x[k]-mu),k)/M",
        CAFFE + " + sum(sum(g[k]*(x[l]-mu), l), k)",
    ],
)
def test_equivalent_rewrites_are_proved(tmp_path, expr):
    (verdict,) = general_check(one_line(tmp_path, expr))
    assert verdict.status is Status.HOLDS, verdict.residual


@pytest.mark.parametrize(
    "expr",
    [
        CAFFE.replace("gamma/", "1/"),  # γ dropped
        CAFFE.replace("- xhat[i]", "+ xhat[i]"),  # a sign flipped
        CAFFE.replace("sum(g[k],k)/M", "sum(g[k],k)/(M-1)"),  # 1/(M-1) in one place
        "gamma*g[i]/sqrt(var+eps)",  # statistics treated as constants
        "gamma/sqrt(var+eps)*(g[i] - sum(g[k],k)/M)",  # right only for uniform g
        "gamma/sqrt(var+eps)*(g[i] - sum(g[k],k)/M - (x[i]-mu)/(var+eps)*sum(g[k]*xhat[k],k)/M)",
        CAFFE + " + sum(sum(g[l]/(1+x[k]**2+x[l]**2), l), k) - M*sum(g[l]/(1+2*x[l]**2), l)",
    ],
)
def test_wrong_forms_are_never_proved(tmp_path, expr):
    (verdict,) = general_check(one_line(tmp_path, expr))
    assert verdict.status is Status.UNDECIDED
    assert verdict.residual and verdict.residual != "0"


def test_eps_outside_convention_is_proved_against_its_own_truth(tmp_path):
    form = one_line(
        tmp_path,
        "gamma/(sqrt(var)+eps)*(g[i] - sum(g[k],k)/M)"
        " - gamma*(x[i]-mu)/(sqrt(var)*(sqrt(var)+eps)**2)*sum(g[k]*(x[k]-mu),k)/M",
        "[conventions]\nepsilon='outside'",
    )
    (verdict,) = general_check(form)
    assert verdict.status is Status.HOLDS, verdict.residual


def test_prove_reports_leftover():
    result = prove(g[i], 2 * g[i], Spec())
    assert not result.zero and result.leftover == -g[i]
