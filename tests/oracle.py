"""An oracle that shares no code with bnderive: the form's text evaluated by its own interpreter,
the truth by brute-force differentiation.

A soundness test that asks bnderive whether a form is right, and then checks the answer with
bnderive's own evaluation or truth, tests nothing when the shared code is wrong.  This module
reads a form's lines *as written* (the ``expr`` text of a TOML form: arithmetic, ``x[i]``,
``sum(expr, k)``, ``delta(i, k)``, ``sqrt``) with Python's ``ast`` and evaluates them with its own
rules, at float64 points (plain Python floats) or exactly (SymPy numbers: rationals and
radicals).  Nothing of ``bnderive`` is imported.  The truth it is compared with comes from
``conftest.Layer``: the whole loss written out over explicit symbols and differentiated with
``sympy.diff`` (and for the double backward, Φ = Σ ggI·dx + ggG·dγ + ggB·dβ differentiated
again).

The reduction set has M elements, numbered 1..M as the notation numbers them; every
convention of the form (training or eval, Bessel's 1/(M−1), ε inside or outside the root, ε = 0)
is applied here from the form's flags, as DESIGN.md §1 states them.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy as sp

#: Names of the notation that are one input or statistic, and their aliases.
ALIASES = {"dout": "g", "dy": "g", "sigma2": "var", "epsilon": "eps"}
INDICES = set("ijklnpq")


@dataclass(frozen=True)
class Conventions:
    training: bool = True
    unbiased: bool = False
    eps_inside: bool = True
    eps_zero: bool = False
    #: "batch" (one γ, β per set: BatchNorm, InstanceNorm), "layer" (γ_k, β_k per element:
    #: LayerNorm, GroupNorm) or "rms" (γ_k per element, x/√(mean(x²)+ε), no mean, no β)
    per_set: str = "batch"

    @classmethod
    def of(cls, form: Any) -> Conventions:
        norm = form.norm.value
        per_set = "rms" if norm == "rms" else "layer" if norm in ("layer", "group") else "batch"
        return cls(form.training, form.unbiased, form.eps_inside, form.eps_zero, per_set)


@dataclass(frozen=True)
class Arithmetic:
    """How numbers are made and roots taken: float64, or exact SymPy numbers."""

    number: Callable[[Any], Any]
    sqrt: Callable[[Any], Any]


FLOAT64 = Arithmetic(float, math.sqrt)
EXACT = Arithmetic(
    lambda v: sp.Rational(str(v)) if isinstance(v, float) else sp.sympify(v), sp.sqrt
)


class _Interpreter:
    """Evaluates one expression of the notation; indices are bound by the caller and by sums."""

    def __init__(self, values: dict[str, Any], m: int, arithmetic: Arithmetic) -> None:
        self.values, self.m, self.a = values, m, arithmetic

    def run(self, text: str, bound: dict[str, int]) -> Any:
        tree = ast.parse(text.replace("^", "**"), mode="eval")
        return self.node(tree.body, bound)

    def node(self, node: ast.AST, bound: dict[str, int]) -> Any:
        if isinstance(node, ast.Constant):
            return self.a.number(node.value)
        if isinstance(node, ast.Name):
            name = ALIASES.get(node.id, node.id)
            if name in bound:
                return bound[name]
            if name == "M":
                return self.a.number(self.m)
            value = self.values[name]
            if isinstance(value, list):
                raise ValueError(f"{name} is an array: write {name}[i]")
            return value
        if isinstance(node, ast.Subscript):
            name = ALIASES.get(node.value.id, node.value.id)
            position = self.node(node.slice, bound)
            return self.values[name][int(position) - 1]  # the notation numbers from 1
        if isinstance(node, ast.UnaryOp):
            value = self.node(node.operand, bound)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp):
            left, right = self.node(node.left, bound), self.node(node.right, bound)
            op = type(node.op)
            if op is ast.Add:
                return left + right
            if op is ast.Sub:
                return left - right
            if op is ast.Mult:
                return left * right
            if op is ast.Div:
                return left / right
            if op is ast.Pow:
                return self.power(left, right)
        if isinstance(node, ast.Call):
            name, args = node.func.id, node.args
            if name == "sqrt":
                return self.a.sqrt(self.node(args[0], bound))
            if name in ("sum", "Sum"):
                index = args[1].id
                return sum(
                    (self.node(args[0], {**bound, index: k}) for k in range(1, self.m + 1)),
                    start=self.a.number(0),
                )
            if name in ("delta", "KroneckerDelta"):
                same = int(self.node(args[0], bound)) == int(self.node(args[1], bound))
                return self.a.number(1 if same else 0)
            if name == "Rational":
                return self.node(args[0], bound) / self.node(args[1], bound)
        raise ValueError(f"the oracle does not read {ast.dump(node)}")

    def power(self, base: Any, exponent: Any) -> Any:
        if self.a is FLOAT64:
            if base < 0 and exponent != int(exponent):
                raise ValueError("a fractional power of a negative number")
            return base**exponent
        return sp.Pow(base, exponent)


def forward(point: dict[str, Any], m: int, c: Conventions, a: Arithmetic) -> dict[str, Any]:
    """The inputs and the forward pass (μ, σ², x̂, y) at ``point``, by DESIGN.md §1."""
    x = [a.number(v) for v in point["x"]]
    values: dict[str, Any] = {
        "x": x,
        "g": [a.number(v) for v in point["g"]],
        "ggI": [a.number(v) for v in point.get("ggI", [0] * m)],
    }
    for name in ("gamma", "beta", "eps", "ggG", "ggB"):
        raw = point.get(name, 0)
        values[name] = [a.number(v) for v in raw] if isinstance(raw, list) else a.number(raw)
    if c.per_set != "batch":
        return _family_forward(values, x, m, c, a)
    if c.training:
        mu = sum(x, start=a.number(0)) / m
        squares = sum(((v - mu) ** 2 for v in x), start=a.number(0))
        var = squares / (m - 1 if c.unbiased else m)
    else:
        mu, var = a.number(point["mu"]), a.number(point["var"])
    if c.eps_zero:
        values["eps"] = a.number(0)
        scale = a.sqrt(var)
    elif c.eps_inside:
        scale = a.sqrt(var + values["eps"])
    else:
        scale = a.sqrt(var) + values["eps"]
    values.update(mu=mu, var=var, M=a.number(m))
    values["xhat"] = [(v - mu) / scale for v in x]
    values["y"] = [values["gamma"] * h + values["beta"] for h in values["xhat"]]
    return values


def _family_forward(
    values: dict[str, Any], x: list[Any], m: int, c: Conventions, a: Arithmetic
) -> dict[str, Any]:
    """LayerNorm (γ_k, β_k per element) or RMSNorm (x/√(mean(x²)+ε)·γ_k, no mean, no β): one
    sample's set, as Ba et al. and Zhang & Sennrich define them."""
    if c.per_set == "rms":
        ms = sum((v * v for v in x), start=a.number(0)) / m
        scale = a.sqrt(ms + values["eps"]) if c.eps_inside else a.sqrt(ms) + values["eps"]
        values.update(ms=ms, M=a.number(m))
        values["xhat"] = [v / scale for v in x]
        values["y"] = [gk * h for gk, h in zip(values["gamma"], values["xhat"], strict=True)]
        return values
    mu = sum(x, start=a.number(0)) / m
    var = sum(((v - mu) ** 2 for v in x), start=a.number(0)) / m
    scale = a.sqrt(var + values["eps"]) if c.eps_inside else a.sqrt(var) + values["eps"]
    values.update(mu=mu, var=var, M=a.number(m))
    values["xhat"] = [(v - mu) / scale for v in x]
    values["y"] = [
        gk * h + bk
        for gk, h, bk in zip(values["gamma"], values["xhat"], values["beta"], strict=True)
    ]
    return values


def form_lines(
    equations: Sequence[tuple[str, bool, str]], point: dict[str, Any], m: int, c: Conventions,
    a: Arithmetic = FLOAT64,
) -> list[Any]:  # fmt: skip
    """Each line's value at ``point`` (a list of M values for an elementwise line; None where it
    cannot be evaluated), every line seeing the values of the lines before it by name.
    ``equations``: (name, elementwise, text) in order."""
    values = forward(point, m, c, a)
    out: list[Any] = []
    for name, elementwise, text in equations:
        run = _Interpreter(values, m, a).run
        try:
            if elementwise:
                value: Any = [run(text, {"i": i}) for i in range(1, m + 1)]
            else:
                value = run(text, {})
        except (ZeroDivisionError, ValueError, OverflowError):
            value = None
        out.append(value)
        if value is not None:
            values[name] = value
    return out


def text_equations(form: Any) -> list[tuple[str, bool, str]]:
    """A TOML form's lines as written: (the name later lines use, elementwise, the text)."""
    return [(eq.store_name, eq.elementwise, eq.text) for eq in form.equations]


# -- the brute-force truth, as numbers ----------------------------------------------------------
@dataclass
class Truth:
    """The brute-force quantities of one reduction set of M elements, lambdified."""

    m: int
    conventions: Conventions
    functions: dict[str, Callable]
    inputs: Callable[[dict[str, Any]], list[Any]]
    elementwise: dict[str, bool]

    def at(self, name: str, point: dict[str, Any]) -> Any:
        values = self.inputs(point)
        if self.elementwise[name]:
            return [float(f(*values)) for f in self.functions[name]]
        return float(self.functions[name](*values))


def brute_truth(layer_cls: type, m: int, c: Conventions, order: int = 1) -> Truth:
    layer = layer_cls((m, 1), unbiased=c.unbiased, eps_inside=c.eps_inside, training=c.training)
    xs, gs = list(layer.x[:, 0]), list(layer.g[:, 0])
    gamma, beta = layer.gamma[0], layer.beta[0]
    subs = {layer.eps: sp.Integer(0)} if c.eps_zero else {}
    dx = [sp.sympify(d).xreplace(subs) for d in layer.dx()[:, 0]]
    dgamma, dbeta = layer.dgamma()[0].xreplace(subs), layer.dbeta()[0].xreplace(subs)
    exprs: dict[str, Any] = {"dx": dx, "dgamma": dgamma, "dbeta": dbeta}
    exprs["dxhat"] = [gs[k] * gamma for k in range(m)]
    mu, var = layer.stats(0)  # the forward output y ("out"), as DESIGN.md §1 writes it
    scale = sp.sqrt(var + layer.eps) if c.eps_inside else sp.sqrt(var) + layer.eps
    exprs["out"] = [(gamma * (v - mu) / scale + beta).xreplace(subs) for v in xs]
    if c.training:  # σ² with x and μ fixed; μ with x fixed and σ²(x, μ) following it
        exprs["dvar"], exprs["dmu"] = layer.dvar(0).xreplace(subs), layer.dmu(0).xreplace(subs)
    else:  # the running statistics, each with the other fixed
        loss = layer.loss().xreplace(subs)
        exprs["dvar"] = sp.diff(loss, layer.running_var[0])
        exprs["dmu"] = sp.diff(loss, layer.running_mean[0])
    ggi = sp.symbols(f"GGI_0:{m}", real=True)
    ggg, ggb = sp.symbols("GGG GGB", real=True)
    if order == 2:
        phi = sum(a * b for a, b in zip(ggi, dx, strict=True)) + ggg * dgamma + ggb * dbeta
        exprs = {
            "gI": [sp.diff(phi, v) for v in xs],
            "gG": sp.diff(phi, gamma),
            "ggO": [sp.diff(phi, v) for v in gs],
        }
    symbols = [*xs, *gs, *ggi, gamma, beta, ggg, ggb, layer.eps]
    symbols += [layer.running_mean[0], layer.running_var[0]]

    def inputs(point: dict[str, Any]) -> list[Any]:
        return [
            *point["x"], *point["g"], *point.get("ggI", [0.0] * m), point["gamma"],
            point["beta"], point.get("ggG", 0.0), point.get("ggB", 0.0), point.get("eps", 0.0),
            point.get("mu", 0.0), point.get("var", 1.0),
        ]  # fmt: skip

    functions: dict[str, Any] = {}
    elementwise: dict[str, bool] = {}
    for name, expr in exprs.items():
        elementwise[name] = isinstance(expr, list)
        if elementwise[name]:
            functions[name] = [sp.lambdify(symbols, e, "math") for e in expr]
        else:
            functions[name] = sp.lambdify(symbols, expr, "math")
    return Truth(m, c, functions, inputs, elementwise)


def family_truth(m: int, c: Conventions) -> Truth:
    """LayerNorm's or RMSNorm's set of M elements, by brute force: L = Σ g_k·y_k written out over
    explicit symbols and differentiated with ``sympy.diff`` (per element: dγ_i = ∂L/∂γ_i,
    dβ_i = ∂L/∂β_i, the sample's part of the sums over the batch)."""
    xs = sp.symbols(f"X_0:{m}", real=True)
    gs = sp.symbols(f"G_0:{m}", real=True)
    gammas = sp.symbols(f"W_0:{m}", real=True)
    betas = sp.symbols(f"B_0:{m}", real=True)
    eps = sp.Symbol("EPS", positive=True)
    if c.per_set == "rms":
        stat = sum(v * v for v in xs) / m
        centred = list(xs)
        betas_used = [sp.Integer(0)] * m
    else:
        mu = sum(xs) / m
        centred = [v - mu for v in xs]
        stat = sum(v**2 for v in centred) / m
        betas_used = list(betas)
    scale = sp.sqrt(stat + eps) if c.eps_inside else sp.sqrt(stat) + eps
    ys = [w * v / scale + b for w, v, b in zip(gammas, centred, betas_used, strict=True)]
    loss = sum(g * y for g, y in zip(gs, ys, strict=True))
    exprs: dict[str, Any] = {
        "dx": [sp.diff(loss, v) for v in xs],
        "dgamma": [sp.diff(loss, w) for w in gammas],
        "dxhat": [g * w for g, w in zip(gs, gammas, strict=True)],
        "out": ys,
    }
    if c.per_set != "rms":
        exprs["dbeta"] = [sp.diff(loss, b) for b in betas]
    symbols = [*xs, *gs, *gammas, *betas, eps]

    def inputs(point: dict[str, Any]) -> list[Any]:
        beta = point.get("beta", [0.0] * m)
        return [*point["x"], *point["g"], *point["gamma"], *beta, point["eps"]]

    functions = {
        name: [sp.lambdify(symbols, e, "math") for e in expr] for name, expr in exprs.items()
    }
    return Truth(m, c, functions, inputs, {name: True for name in exprs})


def family_points(m: int, count: int, seed: int) -> list[dict[str, Any]]:
    """``random_points`` with one γ_k and β_k per element (γ far from ±1 and not constant)."""
    rng = np.random.default_rng(seed + 1000)
    out = random_points(m, count, seed)
    for point in out:
        point["gamma"] = list(rng.uniform(1.5, 3.0, m) * rng.choice([-1.0, 1.0], m))
        point["beta"] = list(rng.normal(0.0, 1.0, m))
    return out


def random_points(m: int, count: int, seed: int) -> list[dict[str, Any]]:
    """Adversarial float64 points: x off-centre and spread, g not uniform, γ far from ±1,
    σ² far from 1, a running mean and variance for eval mode, double-backward inputs."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        out.append(
            {
                "x": list(rng.normal(3.0, 2.5, m)),
                "g": list(rng.normal(0.0, 1.0, m)),
                "ggI": list(rng.normal(0.0, 1.0, m)),
                "gamma": float(rng.uniform(1.5, 3.0)),
                "beta": float(rng.normal()),
                "ggG": float(rng.normal()),
                "ggB": float(rng.normal()),
                "eps": float(rng.uniform(0.2, 0.6)),
                "mu": float(rng.normal(1.0, 1.0)),
                "var": float(rng.uniform(2.0, 5.0)),
            }
        )
    return out


def close(a: Any, b: Any, rtol: float) -> bool:
    a, b = np.atleast_1d(np.asarray(a, float)), np.atleast_1d(np.asarray(b, float))
    return bool(np.all(np.abs(a - b) <= rtol * (1.0 + np.maximum(np.abs(a), np.abs(b)))))


def judge(form: Any, truth: Truth, points: Sequence[dict[str, Any]]) -> dict[int, bool | None]:
    """For each line of ``form`` the truth knows: True (equal to the truth at every point to
    1e-9), False (different at some point by more than 1e-6), None (could not be evaluated,
    or in between: the oracle does not decide)."""
    c, m = truth.conventions, truth.m
    equations = text_equations(form)
    out: dict[int, bool | None] = {}
    lines_at = [form_lines(equations, p, m, c) for p in points]
    for eq in form.equations:
        if eq.kind != "quantity" or eq.name not in truth.functions:
            continue
        verdicts = set()
        for point, lines in zip(points, lines_at, strict=True):
            mine = lines[eq.number - 1]
            if mine is None:
                verdicts.add(None)
                continue
            true = truth.at(eq.name, point)  # one value against M is compared with each
            if close(mine, true, 1e-9):
                verdicts.add(True)
            else:
                verdicts.add(False if not close(mine, true, 1e-6) else None)
        out[eq.number] = False if False in verdicts else None if None in verdicts else True
    return out
