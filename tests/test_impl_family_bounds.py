"""The family's derived rounding bound (``precision.layer_bounds``): LayerNorm, InstanceNorm,
GroupNorm and RMSNorm results that cannot run exactly are decided in float within it, as
BatchNorm's are (issue 13)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bnderive.cli import main
from bnderive.core.layer import exact_point, layer_truth
from bnderive.core.spec import Mode, Norm, Spec
from bnderive.usercode.norm_impl import check_norm_impl
from bnderive.usercode.precision import layer_bounds

FAMILY = Path(__file__).parent / "impls_family"
ENV = {"COLUMNS": "200", "FORCE_COLOR": None, "TERM": "dumb", "NO_COLOR": "1"}
SPECS = [
    Spec(Mode.PER_ACTIVATION, n=3, c=6, norm=Norm.LAYER),
    Spec(Mode.SPATIAL, n=2, c=4, h=2, w=2, norm=Norm.GROUP, groups=2),
    Spec(Mode.SPATIAL, n=2, c=3, h=2, w=3, norm=Norm.INSTANCE),
    Spec(Mode.PER_ACTIVATION, n=3, c=5, norm=Norm.RMS),
]


def reference(spec: Spec, x, g, gamma, beta, eps, dtype, one_pass: bool) -> dict[str, np.ndarray]:
    """A plain implementation of the family in ``dtype`` (two-pass or one-pass variance), set by
    set, written apart from bnderive's truth."""
    t = np.dtype(dtype).type
    beta = np.zeros(spec.affine_shape) if beta is None else beta
    x, g, gamma, beta = (np.asarray(a, dtype=float).astype(dtype) for a in (x, g, gamma, beta))
    eps = t(eps)
    out, dx = np.zeros(spec.shape, dtype), np.zeros(spec.shape, dtype)
    dgamma, dbeta = np.zeros(spec.affine_shape, dtype), np.zeros(spec.affine_shape, dtype)
    for s in range(spec.sets):
        pos = spec.positions(s)
        at = [spec.affine_index(p) for p in pos]
        xs, gs = np.array([x[p] for p in pos]), np.array([g[p] for p in pos])
        gk, bk = np.array([gamma[a] for a in at]), np.array([beta[a] for a in at])
        centred = spec.norm.centred
        mu = xs.mean() if centred else t(0)
        var = (xs * xs).mean() - mu * mu if one_pass else ((xs - mu) ** 2).mean()
        inv = t(1) / np.sqrt(var + eps)
        xh = (xs - mu) * inv
        h = gs * gk
        d = inv * (h - (h.mean() if centred else t(0)) - xh * (h * xh).mean())
        for k, (p, a) in enumerate(zip(pos, at, strict=True)):
            out[p], dx[p] = gk[k] * xh[k] + bk[k], d[k]
            dgamma[a] += gs[k] * xh[k]
            dbeta[a] += gs[k]
    found = {"out": out, "dx": dx, "dgamma": dgamma}
    if spec.norm.has_beta:
        found["dbeta"] = dbeta
    return found


@pytest.mark.parametrize("spec", SPECS, ids=[s.norm.value for s in SPECS])
def test_rounding_stays_within_the_bound_and_mistakes_do_not(spec):
    """float32 and float64 results of two algorithms, at inputs with a large mean (one-pass
    cancellation), stay within the bound; γ left out of dx̂ (a mistake) is far outside it."""
    worst = 0.0
    for seed in range(12):
        p = exact_point(spec, seed)
        # the variance is shift-invariant, so the roots stay rational (RMSNorm's mean square is
        # not: its inputs as drawn)
        for offset in (0, 300, 2000) if spec.norm.centred else (0,):
            x = p["x"] + offset
            truth = layer_truth(spec, x, p["g"], p["gamma"], p["beta"], p["eps"])
            for dtype in ("float32", "float64"):
                bound = layer_bounds(spec, x, p["g"], p["gamma"], p["beta"], float(p["eps"]), dtype)
                for one_pass in (False, True):
                    got = reference(spec, x, p["g"], p["gamma"], p["beta"], p["eps"], dtype,
                                    one_pass)  # fmt: skip
                    for q in truth:
                        error = np.abs(got[q].astype(float) - truth[q].astype(float))
                        assert np.all(error <= bound[q]), (spec.norm, seed, offset, dtype, q)
                        worst = max(worst, float(np.max(error / np.maximum(bound[q], 1e-300))))
            ones = np.ones(spec.affine_shape)
            wrong = layer_truth(spec, x, p["g"], ones, p["beta"], p["eps"], "float")["dx"]
            gap = np.abs(wrong.astype(float) - truth["dx"].astype(float))
            b64 = layer_bounds(spec, x, p["g"], p["gamma"], p["beta"], float(p["eps"]), "float64")
            assert np.any(gap > 2 * b64["dx"])
    assert worst > 1e-3  # the bound is not vacuous: rounding reaches a visible share of it


def _floats_only(tmp_path: Path, name: str, text: str) -> Path:
    """The file with x made float64 on entry (the code then never runs on exact numbers)."""
    path = tmp_path / name
    path.write_text(
        text.replace(
            'eps = ln_param.get("eps", 1e-5)\n',
            'eps = ln_param.get("eps", 1e-5)\n    x = x.astype(float)\n',
        ),  # fmt: skip
        encoding="utf-8",
    )
    return path


def test_a_float_only_layernorm_is_decided_within_the_bound(tmp_path):
    text = (FAMILY / "cs231n_layernorm.py").read_text(encoding="utf-8")
    path = _floats_only(tmp_path, "ln_float.py", text)
    report = check_norm_impl(path, "layer")
    for v in report.verdicts:
        assert (v.status.value, v.method) == ("holds", "numeric"), (v.quantity, v.detail)
        assert "within the derived rounding bound of LayerNorm" in v.detail
        assert "evidence, not a proof" in v.detail
    result = CliRunner().invoke(main, ["check-impl", str(path), "--norm", "layer"], env=ENV)
    assert result.exit_code == 0, result.output
    assert "✓ holds: 4 hold" in result.output


def test_a_float_result_beyond_the_bound_is_refuted_and_one_within_it_agrees():
    from bnderive.usercode.norm_impl import _bounded, _Bounds, _Row, make_family_case

    spec = Spec(Mode.PER_ACTIVATION, n=3, c=4, norm=Norm.LAYER)
    case = make_family_case(spec, 5)
    want = layer_truth(spec, case.x, case.g, case.gamma, case.beta, case.eps)["dx"]
    truth = want.astype(float)
    b64 = layer_bounds(spec, case.x, case.g, case.gamma, case.beta, float(case.eps), "float64")
    b32 = layer_bounds(spec, case.x, case.g, case.gamma, case.beta, float(case.eps), "float32")
    for shift, outcome in ((0.5 * b64["dx"], "agrees"), (3 * b32["dx"], "refuted"),
                           (3 * b64["dx"], "open")):  # fmt: skip
        row = _Row("layernorm_backward", "dx")
        run = {"float": {"layernorm_backward": {"dx": truth + shift}}, "dtypes": {}}
        decided = _bounded(row, _Bounds(case), "dx", want, run, "no exact run")
        got = "refuted" if row.refuted else "agrees" if row.numeric else "open"
        assert (got, decided) == (outcome, outcome != "open"), shift
        if row.refuted:
            assert row.refuted.method == "numeric"
            assert "beyond the derived rounding bound of float32" in row.refuted.detail


ROOT = 'eps = ln_param.get("eps", 1e-5)\n'
ROOT32 = 'eps = ln_param.get("eps", 1e-5)\n    x = x.astype(np.float32)\n'  # x rounded to float32


def test_float32_rounding_beyond_float64s_bound_is_not_decided(tmp_path):
    """The right LayerNorm with x rounded to float32 on entry: beyond float64's bound, within
    float32's, so neither holds nor refuted."""
    text = (FAMILY / "cs231n_layernorm.py").read_text(encoding="utf-8")
    assert ROOT in text
    path = tmp_path / "ln_float32_x.py"
    path.write_text(text.replace(ROOT, ROOT32), encoding="utf-8")
    rows = {v.quantity: v for v in check_norm_impl(path, "layer").verdicts}
    assert rows["out"].status.value == "undecided", rows["out"].detail
    assert "beyond float64's rounding bound but within float32's" in rows["out"].detail
    assert rows["dbeta"].status.value == "holds"  # Σ dy does not see x


def test_rmsnorm_is_decided_too(tmp_path):
    """RMSNorm's chain without the mean: the right code computed through an irrational √2 (no
    exact run) holds numerically; its root rounded to float32 is beyond float64's bound and
    within float32's, so not decided."""
    text = (FAMILY / "rmsnorm_functional.py").read_text(encoding="utf-8")
    root = "rstd = 1 / np.sqrt(ms + eps)"
    assert root in text
    path = tmp_path / "rms_sqrt2.py"
    path.write_text(text.replace(root, "rstd = np.sqrt(2) / np.sqrt(2 * (ms + eps))"),
                    encoding="utf-8")  # fmt: skip
    result = CliRunner().invoke(main, ["check-impl", str(path), "--norm", "rms"], env=ENV)
    assert result.exit_code == 0, result.output
    for v in check_norm_impl(path, "rms").verdicts:
        assert (v.status.value, v.method) == ("holds", "numeric"), v.detail
        assert "within the derived rounding bound of RMSNorm at 3 of 3 shapes" in v.detail
    path = tmp_path / "rms_float32.py"
    path.write_text(text.replace(root, "rstd = 1 / np.sqrt(ms + eps).astype(np.float32)"),
                    encoding="utf-8")  # fmt: skip
    for v in check_norm_impl(path, "rms").verdicts:
        assert v.status.value == "undecided", v.detail
        assert "beyond float64's rounding bound but within float32's" in v.detail


# -- it is the documented propagation ------------------------------------------------------------
def _chain(xs, hs, eh, eps, u, centred=True):
    """BatchNorm's table (precision's docstring) for one set with h = γ·g in the place of g and
    γ = 1, transcribed element by element: x̂, its first-order error, and dx's bound; RMSNorm's
    (``centred`` False) without the mean: μ = 0 exactly, and no mean of h in dx."""
    m = len(xs)
    ex = [u * abs(v) for v in xs]
    mu = sum(xs) / m if centred else 0.0
    e_mu = (m + 1) * u * sum(abs(v) for v in xs) / m + sum(ex) / m if centred else 0.0
    xc = [v - mu for v in xs]
    e_xc = [ex[k] + e_mu + u * (abs(xs[k]) + abs(mu)) for k in range(m)]
    var = sum(c * c for c in xc) / m
    two_pass = sum(2 * abs(xc[k]) * e_xc[k] for k in range(m)) / m + (m + 2) * u * var
    one_pass = (
        (m + 2) * u * sum(v * v for v in xs) / m
        + 2 * sum(abs(xs[k]) * ex[k] for k in range(m)) / m
        + 2 * abs(mu) * e_mu
        + 2 * u * mu * mu
    )
    s = var + eps
    e_s = max(two_pass, one_pass) + u * abs(eps) + u * s
    r = math.sqrt(s)
    e_ir = (e_s / (2 * r) + u * r) / r**2 + u / r
    xh = [c / r for c in xc]
    e_xh = [e_xc[k] / r + abs(xc[k]) * e_ir + u * abs(xh[k]) for k in range(m)]
    dbeta, dgamma = sum(hs), sum(hs[k] * xh[k] for k in range(m))
    e_dbeta = sum(eh) + m * u * sum(abs(v) for v in hs)
    e_dgamma = sum(
        eh[k] * abs(xh[k]) + abs(hs[k]) * e_xh[k] + u * abs(hs[k] * xh[k]) for k in range(m)
    ) + m * u * sum(abs(hs[k] * xh[k]) for k in range(m))
    dx = []
    mean, e_mean = (dbeta / m, e_dbeta / m) if centred else (0.0, 0.0)
    for k in range(m):
        a = hs[k] - mean - xh[k] * dgamma / m
        e_a = (
            eh[k]
            + e_mean
            + (e_xh[k] * abs(dgamma) + abs(xh[k]) * e_dgamma) / m
            + 3 * u * (abs(hs[k]) + abs(mean) + abs(xh[k] * dgamma) / m)
        )
        e = (u / r + e_ir) * abs(a) + e_a / r
        dx.append(2 * (e + 2 * u * abs(a / r)))
    return xh, e_xh, dx


def documented(spec, x, g, gamma, beta, eps, u):
    """``layer_bounds``' docstring, transcribed: each set's chain, out per element, dγ and dβ
    summed over the elements sharing γ (K terms: (K − 1)·u·Σ|term| for the sum)."""
    out, dx = {}, {}
    dgamma, dbeta, terms_g, terms_b, count = {}, {}, {}, {}, {}
    for s in range(spec.sets):
        pos = spec.positions(s)
        at = [spec.affine_index(p) for p in pos]
        xs = [float(x[p]) for p in pos]
        gs = [float(g[p]) for p in pos]
        gk = [float(gamma[a]) for a in at]
        bk = [float(beta[a]) if beta is not None else 0.0 for a in at]
        hs = [gk[k] * gs[k] for k in range(len(pos))]
        eh = [3 * u * abs(h) for h in hs]
        xh, e_xh, e_dx = _chain(xs, hs, eh, eps, u, spec.norm.centred)
        for k, (p, a) in enumerate(zip(pos, at, strict=True)):
            e = (abs(gk[k]) * e_xh[k] + u * abs(gk[k] * xh[k]) + u * abs(bk[k])
                 + 2 * u * (abs(gk[k] * xh[k]) + abs(bk[k])))  # fmt: skip
            out[p], dx[p] = 2 * e, e_dx[k]
            term = u * abs(gs[k]) * abs(xh[k]) + abs(gs[k]) * e_xh[k] + u * abs(gs[k] * xh[k])
            dgamma[a] = dgamma.get(a, 0.0) + term
            terms_g[a] = terms_g.get(a, 0.0) + abs(gs[k] * xh[k])
            dbeta[a] = dbeta.get(a, 0.0) + u * abs(gs[k])
            terms_b[a] = terms_b.get(a, 0.0) + abs(gs[k])
            count[a] = count.get(a, 0) + 1
    return {
        "out": out,
        "dx": dx,
        "dgamma": {a: 2 * (dgamma[a] + (count[a] - 1) * u * terms_g[a]) for a in dgamma},
        "dbeta": {a: 2 * (dbeta[a] + (count[a] - 1) * u * terms_b[a]) for a in dbeta},
    } | ({} if spec.norm.has_beta else {"dbeta": {}})


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("spec", SPECS, ids=[s.norm.value for s in SPECS])
def test_the_bound_is_the_documented_propagation(spec, dtype):
    u = {"float16": 2.0**-11, "float32": 2.0**-24, "float64": 2.0**-53}[dtype]
    for seed in (3, 8):
        p = exact_point(spec, seed)
        x = p["x"] + 40 * seed  # a mean away from 0
        got = layer_bounds(spec, x, p["g"], p["gamma"], p["beta"], float(p["eps"]), dtype)
        want = documented(spec, x, p["g"], p["gamma"], p["beta"], float(p["eps"]), u)
        assert set(got) == ({"out", "dx", "dgamma", "dbeta"} if spec.norm.has_beta
                            else {"out", "dx", "dgamma"})  # fmt: skip
        for q in got:
            for where, value in want[q].items():
                assert math.isclose(got[q][where], value, rel_tol=1e-12), (q, where)
