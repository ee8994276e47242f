"""Why a gradient test can lie: weak-test findings for a BatchNorm comparison, computed exactly.

A gradient test compares somebody's backward with a reference (a framework layer, another
function) at some inputs.  Several properties of the *setup* make such a test pass a wrong
backward or fail a right one.  Each is measured here with bnderive's ground truth at the setup's
own inputs, in exact arithmetic (rational inputs; the only irrational number is √(σ²+ε), and
every quantity is p + q·√(σ²+ε) with rational p, q, so "exactly 0" is decided, not rounded):

* **uniform upstream gradient** (a sum or mean loss): the training-mode dx is
  γ/√(σ²+ε)·[g − mean(g) − x̂·mean(g·x̂)], and for g ≡ c the bracket is c − c − x̂·c·mean(x̂) = 0,
  because Σx̂ = 0.  The true dx is exactly 0, and so is the dx of most known mistakes.
* **a batch of two** (M ≤ 2 values per feature or channel): x̂ = ±√(σ²/(σ²+ε)), so
  g − mean(g) and x̂·mean(g·x̂) nearly cancel and the true dx is ε/(σ²+ε) of its scale
  γ·g/√(σ²+ε): a number set by ε, not by the formula.
* **γ = 1**: a backward that forgets γ in dx is exactly right.
* **σ² + ε ≈ 1**: (σ²+ε)^(−1/2), (σ²+ε)^(−1) and (σ²+ε)^(−3/2) nearly agree, so writing σ² where
  σ belongs (or σ² for σ³) changes dx by less than the test's tolerance.
* **eval-mode reference vs a training-mode backward**: in eval mode μ and σ² are the running
  statistics, constants, and dx = γ·g/√(running σ² + ε); a training-mode backward
  differentiates through the batch statistics.  Both right, different numbers.
* **ε mismatch**: the two sides normalize with different ε.

Blind spots (the first four) are measured with a *non-uniform* upstream gradient (the setup's
own when it is not uniform, else a seeded random one), so that each is seen on its own; the
mismatches (the last two) at the setup's own gradient, since that is what the test compares.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from functools import cache
from typing import Any

import gmpy2
import numpy as np
import sympy as sp
from gmpy2 import mpq as _Q

from bnderive.core.derive import derive, inline
from bnderive.core.evaluate import Backend
from bnderive.core.points import point_env
from bnderive.core.spec import Mode, Spec
from bnderive.errors import BnderiveError, EvaluationError
from bnderive.read.corpus import Mutant, corpus
from bnderive.verify.lines import run_lines

LOSSES = ("sum", "mean", "random", "weights")
REFERENCES = ("train", "eval")

#: The true dx counts as vanishing below this fraction of its scale max|γ·g|/√(σ²+ε): there the
#: cancelling terms of the backward (each of the size of the scale) leave a residue that float32
#: rounding (≈ 6e-8 of the scale) and ε decide, not the formula.
TINY = Fraction(1, 1000)

#: Known mistakes of the corpus (``bnderive mutants``), by mutant id: a test that cannot tell
#: one of their dx from the truth cannot catch that mistake.
MISTAKES: tuple[str, ...] = (
    "compact/gamma-missing",
    "compact/variance-for-sigma",
    "kronecker/sigma-for-variance",
    "staged/sign-flip#dvar",
    "staged/half-doubled",
    "staged/bessel-one-place#dx",
    "compact/variance-path-dropped",
    "compact/stats-constant",
)
GAMMA_MISSING = "compact/gamma-missing"
SIGMA_MISTAKES = ("compact/variance-for-sigma", "kronecker/sigma-for-variance")


def mistake_label(ident: str) -> str:
    """How a finding names a mutant: its mistake's title (and variant, where there are several)."""
    mutant = corpus().find(ident)
    assert isinstance(mutant, Mutant), ident
    variant = ident.partition("#")[2]
    return mutant.mistake.title + (f" in {variant}" if variant else "")


@cache
def mistake_dx(ident: str) -> sp.Expr:
    """The mutant's dx[i] as one expression: its earlier lines substituted."""
    form = corpus().find(ident).form  # type: ignore[union-attr]
    earlier = {eq.name: (eq.elementwise, eq.expr) for eq in form.equations if eq.name != "dx"}
    return inline(form.equation("dx").expr, earlier)


class ExplainError(BnderiveError):
    """The setup of a gradient test is not usable (exit code 2)."""


def parse_number(
    text: str | float | int | Fraction, what: str, *, positive: bool = False
) -> Fraction:
    """A decimal or fraction ("1e-5", "0.1", "3/2") as an exact rational; NaN and ∞ refused."""
    if isinstance(text, Fraction):
        value = text
    else:
        try:
            value = Fraction(str(text).strip())
        except (ValueError, ZeroDivisionError):
            raise ExplainError(
                f"{what} = {text!r} is not a finite number: write a decimal or a fraction such "
                "as 1e-5, 0.5 or 3/2."
            ) from None
    if positive and value <= 0:
        raise ExplainError(f"{what} = {text} must be positive: give a value above 0, e.g. 1e-5.")
    return value


# -- the setup ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Setup:
    """A gradient test: the inputs it feeds both sides and how the reference is run.

    ``loss`` names how the test turns the output y into a scalar: ``sum`` (L = Σy, g = 1),
    ``mean`` (L = mean(y), g = 1/size), ``random`` (y.backward(randn), g normal) or ``weights``
    (L = Σ w·y with w uniform in [0, 1)).  x is drawn as x_mean + x_std·z with z standard normal
    (seeded, rounded to three decimals, so exact); with ``x_var`` instead, each feature's draws
    are centred and rescaled to that batch variance (up to a relative 3e-16, the scale being
    the rational value of a double), as a test that standardizes its inputs does.  The
    user's backward is a training-mode one with ε = ``eps``; the reference runs in
    ``reference`` mode with ε = ``reference_eps`` and, in eval mode, the running statistics
    (a fresh layer's 0 and 1 by default).  ``rtol`` is the test's relative tolerance.
    """

    n: int = 4
    features: int = 1
    mode: Mode = Mode.PER_ACTIVATION
    h: int = 1
    w: int = 1
    loss: str = "mean"
    gamma: tuple[Fraction, ...] = (Fraction(1),)
    beta: Fraction = Fraction(0)
    x_mean: Fraction = Fraction(0)
    x_std: Fraction = Fraction(1)
    x_var: Fraction | None = None
    eps: Fraction = Fraction(1, 100000)
    reference_eps: Fraction | None = None
    reference: str = "train"
    running_mean: Fraction = Fraction(0)
    running_var: Fraction = Fraction(1)
    rtol: Fraction = Fraction(1, 100000)
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", Mode.parse(self.mode))
        if self.loss not in LOSSES:
            raise ExplainError(f"Unknown loss {self.loss!r}: use one of {', '.join(LOSSES)}.")
        if self.reference not in REFERENCES:
            raise ExplainError(
                f"Unknown reference mode {self.reference!r}: use train or eval (the mode the "
                "framework layer runs in: model.train() or model.eval())."
            )
        spec = Spec(self.mode, n=self.n, c=self.features, h=self.h, w=self.w)
        if spec.m < 2:
            raise ExplainError(
                f"A batch of N = {self.n} gives M = {spec.m} value per {self.unit}: x − μ = 0, so "
                "x̂ = 0 and every gradient is 0 or undefined (PyTorch refuses it in training: "
                "'Expected more than 1 value per channel'). Use N ≥ 2, better N ≥ 4."
            )
        gammas = tuple(parse_number(v, "γ") for v in self.gamma)
        if len(gammas) not in (1, self.features):
            raise ExplainError(
                f"{len(gammas)} values of γ for {self.features} feature(s): give one value, or "
                "one per feature or channel."
            )
        object.__setattr__(self, "gamma", gammas)
        for name in ("beta", "x_mean", "running_mean"):
            object.__setattr__(self, name, parse_number(getattr(self, name), name))
        for name in ("x_std", "eps", "rtol"):
            object.__setattr__(self, name, parse_number(getattr(self, name), name, positive=True))
        if self.x_var is not None and Fraction(self.x_std) != 1:
            raise ExplainError(
                "x_std and x_var both set the spread of x: give x_std (x drawn with that std) or "
                "x_var (x standardized to that batch variance), not both."
            )
        for name in ("x_var", "reference_eps"):
            if getattr(self, name) is not None:
                value = parse_number(getattr(self, name), name, positive=True)
                object.__setattr__(self, name, value)
        running = parse_number(self.running_var, "running_var")
        if running < 0:
            raise ExplainError(f"running_var = {running} is a variance: give a value ≥ 0.")
        object.__setattr__(self, "running_var", running)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ExplainError(f"seed = {self.seed!r}: give a whole number.")

    @property
    def spec(self) -> Spec:
        """The user's side: a training-mode layer of the setup's shape."""
        return Spec(self.mode, n=self.n, c=self.features, h=self.h, w=self.w)

    @property
    def ref_eps(self) -> Fraction:
        return self.eps if self.reference_eps is None else self.reference_eps

    def gamma_of(self, channel: int) -> Fraction:
        return self.gamma[0] if len(self.gamma) == 1 else self.gamma[channel]

    @property
    def unit(self) -> str:
        return "feature" if self.mode is Mode.PER_ACTIVATION else "channel"

    def describe(self) -> str:
        shape = "×".join(map(str, self.spec.shape))
        gammas = ", ".join(_num(v) for v in self.gamma)
        eps = f"ε = {_num(self.eps)}"
        if self.ref_eps != self.eps:
            eps = f"ε = {_num(self.eps)} (reference {_num(self.ref_eps)})"
        inputs = f"x ~ {_num(self.x_mean)} + {_num(self.x_std)}·N(0,1)"
        if self.x_var is not None:
            inputs = f"x ~ {_num(self.x_mean)} + N(0,1) standardized to σ² = {_num(self.x_var)}"
        ref = f"reference in {self.reference} mode"
        if self.reference == "eval":
            ref += f" (running μ = {_num(self.running_mean)}, σ² = {_num(self.running_var)})"
        return (
            f"{self.mode.value} {shape} (M = {self.spec.m}), {self.loss} loss, γ = {gammas}, "
            f"{eps}, {inputs}, {ref}, rtol {_num(self.rtol)}"
        )


def _num(value: Fraction | float) -> str:
    """A short decimal for a rational the user typed (1/100000 → 1e-05)."""
    q = Fraction(value)
    if q.denominator == 1:
        return str(q.numerator)
    return f"{float(q):.6g}"


# -- the setup's inputs ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Point:
    """Exact inputs of every channel: x and g as lists of Fractions per channel."""

    x: tuple[tuple[Fraction, ...], ...]
    g: tuple[tuple[Fraction, ...], ...]  # the setup's upstream gradient
    probe: tuple[tuple[Fraction, ...], ...]  # non-uniform: the setup's g, or a seeded random g


def _draws(rng: np.random.Generator, m: int, kind: str) -> tuple[Fraction, ...]:
    while True:
        values = rng.standard_normal(m) if kind == "normal" else rng.random(m)
        out = tuple(Fraction(f"{v:.3f}") for v in values)
        if len(set(out)) > 1:  # never uniform by accident
            return out


def make_point(setup: Setup) -> Point:
    """The setup's inputs, drawn from its seed, exact."""
    spec = setup.spec
    rng = np.random.default_rng(setup.seed)
    size = math.prod(spec.shape)
    xs, gs, probes = [], [], []
    for _channel in range(spec.c):
        z = _draws(rng, spec.m, "normal")
        if setup.x_var is not None:
            # Rescale the centred draws to the batch variance x_var: the factor √(x_var/v) is the
            # double nearest to it (relative error ≤ 2⁻⁵³) taken as an exact rational, so x stays
            # rational and σ² = x_var·(1 ± 3e-16).
            mean = sum(z) / len(z)
            v = sum((a - mean) ** 2 for a in z) / len(z)
            s = Fraction(math.sqrt(setup.x_var / v))
            xs.append(tuple(setup.x_mean + (a - mean) * s for a in z))
        else:
            xs.append(tuple(setup.x_mean + setup.x_std * a for a in z))
        if setup.loss == "sum":
            g = (Fraction(1),) * spec.m  # L = Σ y
        elif setup.loss == "mean":
            g = (Fraction(1, size),) * spec.m  # L = mean(y) over every element of y
        elif setup.loss == "random":
            g = _draws(rng, spec.m, "normal")
        else:
            g = _draws(rng, spec.m, "uniform")
        gs.append(g)
        probes.append(g if len(set(g)) > 1 else _draws(rng, spec.m, "normal"))
    return Point(tuple(xs), tuple(gs), tuple(probes))


# -- exact evaluation -----------------------------------------------------------------------------
class Surd:
    """p + q·√a, an element of the field Q(√a) for one rational a > 0 that is not a square.

    At a point with rational x, g, γ, β and ε the only irrational number of the forward and
    backward pass is √(σ²+ε) (σ² the batch variance in training, the running one in eval):
    every quantity is p + q·√a with a = σ²+ε, and {1, √a} is a basis, so a value is zero
    exactly when p = q = 0.  Arithmetic is in gmpy2's rationals; floats only at the end.
    """

    __slots__ = ("p", "q", "a")

    def __init__(self, p: Any, q: Any, a: Any) -> None:
        self.p, self.q, self.a = p, q, a

    def _parts(self, value: Any) -> tuple[Any, Any] | None:
        a = self.a
        if isinstance(value, Surd):
            if value.a != a:
                raise ValueError(f"√{value.a} and √{a} are in different fields")
            return value.p, value.q
        if isinstance(value, int | Fraction) or type(value) is type(_Q(0)):
            return value, 0
        return None  # an array: NumPy applies the operation elementwise

    def __add__(self, other: Any) -> Any:
        parts = self._parts(other)
        if parts is None:
            return NotImplemented
        return Surd(self.p + parts[0], self.q + parts[1], self.a)

    __radd__ = __add__

    def __neg__(self) -> Surd:
        return Surd(-self.p, -self.q, self.a)

    def __sub__(self, other: Any) -> Any:
        parts = self._parts(other)
        if parts is None:
            return NotImplemented
        return Surd(self.p - parts[0], self.q - parts[1], self.a)

    def __rsub__(self, other: Any) -> Any:
        parts = self._parts(other)
        if parts is None:
            return NotImplemented
        return Surd(parts[0] - self.p, parts[1] - self.q, self.a)

    def __mul__(self, other: Any) -> Any:
        parts = self._parts(other)
        if parts is None:
            return NotImplemented
        p, q = parts
        # (p₁ + q₁√a)(p₂ + q₂√a) = p₁p₂ + a·q₁q₂ + (p₁q₂ + q₁p₂)√a
        return Surd(self.p * p + self.a * self.q * q, self.p * q + self.q * p, self.a)

    __rmul__ = __mul__

    def inverse(self) -> Surd:
        # 1/(p + q√a) = (p − q√a)/(p² − a q²); the norm is 0 only for p = q = 0 (a no square).
        norm = self.p * self.p - self.a * self.q * self.q
        if norm == 0:
            raise ZeroDivisionError("division by 0")
        return Surd(self.p / norm, -self.q / norm, self.a)

    def __truediv__(self, other: Any) -> Any:
        if self._parts(other) is None:
            return NotImplemented
        return self * (other.inverse() if isinstance(other, Surd) else 1 / _Q(other))

    def __rtruediv__(self, other: Any) -> Any:
        if self._parts(other) is None:
            return NotImplemented
        return self.inverse() * other

    def __pow__(self, exponent: int) -> Any:
        base = self if exponent >= 0 else self.inverse()
        out: Any = _Q(1)
        for _ in range(abs(int(exponent))):
            out = base * out
        return out

    def __eq__(self, other: object) -> bool:
        parts = self._parts(other)
        if parts is None:
            return NotImplemented
        return bool(self.p == parts[0] and self.q == parts[1])

    def __hash__(self) -> int:
        return hash(self.p) if self.q == 0 else hash((self.p, self.q))

    def __float__(self) -> float:
        return float(to_mpfr(self))

    def __repr__(self) -> str:
        return f"{self.p} + {self.q}·√{self.a}"


def to_mpfr(value: Any) -> Any:
    """A value of Q(√a) rounded to 200 bits: enough that p + q·√a is accurate even when the two
    terms nearly cancel (the cancellation this module measures)."""
    with gmpy2.context(gmpy2.get_context(), precision=200):
        if isinstance(value, Surd):
            return gmpy2.mpfr(value.p) + gmpy2.mpfr(value.q) * gmpy2.sqrt(gmpy2.mpfr(value.a))
        return gmpy2.mpfr(_Q(value))


def _surd_backend(a: Any) -> Backend:
    """bnderive's evaluator over Q(√a): rationals stay gmpy2 rationals, the root of a (or of a
    rational square) is exact, any other root is not in the field and refused."""
    a = _Q(a)
    square = gmpy2.is_square(a.numerator) and gmpy2.is_square(a.denominator)

    def root(value: Any, exponent: sp.Rational) -> Any:
        if isinstance(value, np.ndarray):
            return np.frompyfunc(lambda v: root(v, exponent), 1, 1)(value)
        if isinstance(value, Surd):
            if value.q != 0:
                raise EvaluationError(f"no root of {value} in Q(√{a})")
            value = value.p
        p, q = int(exponent.p), int(exponent.q)
        value = _Q(value)
        if q != 2:
            raise EvaluationError(f"only square roots are evaluated here, not {exponent}")
        if gmpy2.is_square(value.numerator) and gmpy2.is_square(value.denominator):
            r = _Q(gmpy2.isqrt(value.numerator), gmpy2.isqrt(value.denominator))
            return r**p
        if value != a or square:
            raise EvaluationError(f"√{value} is not in Q(√{a})")
        # a^(p/2) = a^((p−1)/2)·√a for odd p (negative p too)
        return Surd(_Q(0), a ** ((p - 1) // 2), a)

    return Backend(
        "surd",
        lambda r: _Q(int(r.p), int(r.q)),
        root,
        lambda arr: np.sum(arr, axis=-1),
    )


Definitions = list[tuple[str, bool, sp.Expr]]


def evaluate_at(
    spec: Spec,
    definitions: Definitions,
    x: Sequence[Fraction],
    g: Sequence[Fraction],
    gamma: Fraction,
    beta: Fraction,
    eps: Fraction,
    running: tuple[Fraction, Fraction] | None = None,
) -> dict[str, Any]:
    """The named quantities of ``definitions`` for one reduction set, exactly, in Q(√(σ²+ε)),
    plus the forward's x̂, σ² and √(σ²+ε) as ``xhat``, ``var`` and ``root``."""
    m = len(x)
    if running is None:
        mean = sum(x, Fraction(0)) / m
        var = sum(((v - mean) ** 2 for v in x), Fraction(0)) / m  # biased: training mode
    else:
        var = running[1]
    backend = _surd_backend(var + eps)
    point: dict[str, Any] = {
        "x": [_Q(v) for v in x],
        "g": [_Q(v) for v in g],
        "ggI": [_Q(0)] * spec.m,
        "gamma": gamma,
        "beta": beta,
        "ggG": 0,
        "ggB": 0,
        "eps": eps,
    }
    if running is not None:
        point["mu"], point["var"] = running
    inst = point_env(spec, 0, point, backend)
    outcome = run_lines(definitions, inst.env)
    if outcome.errors:  # pragma: no cover - ε > 0 keeps every quantity defined
        raise ExplainError(f"the gradient is undefined at this setup: {outcome.errors}")
    values = dict(outcome.values)
    values["xhat"] = list(inst.env.arrays["xhat"])
    values["var"] = inst.env.scalars["var"]
    values["root"] = backend.root(_Q(var + eps), sp.Rational(1, 2))
    return values


def _float(value: Any) -> float:
    return float(to_mpfr(value))


def _size(values: Sequence[Any]) -> float:
    """max |v| over exact values, rounded only at the end."""
    return max(abs(_float(v)) for v in values)


def _is_zero(values: Sequence[Any]) -> bool:
    return all(v == 0 for v in values)  # exact: p = q = 0 in the basis {1, √a}


def _difference(p: Any, q: Any) -> float:
    """|p − q|: exact in one field Q(√a), else (two different roots: two values of ε, or the
    batch and the running variance) from 200-bit roundings, still far below any effect here."""
    fields = {v.a for v in (p, q) if isinstance(v, Surd)}
    if len(fields) <= 1:
        return abs(_float(p - q))
    with gmpy2.context(gmpy2.get_context(), precision=200):
        return abs(float(to_mpfr(p) - to_mpfr(q)))


def _relative(a: Sequence[Any], b: Sequence[Any]) -> float:
    """max |a − b| / max(max |a|, max |b|): 0 when both are 0, at most 2.  The difference is
    taken before rounding, so a tiny difference of large values is not lost."""
    diff = max(_difference(p, q) for p, q in zip(a, b, strict=True))
    return 0.0 if diff == 0 else diff / max(_size(a), _size(b))


# -- findings -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Finding:
    """One property of the setup, measured: flagged when it lets the test lie."""

    name: str
    kind: str  # "blind spot": a wrong backward passes; "mismatch": a right backward fails
    flagged: bool
    sentence: str  # one sentence: the cause and its effect
    effect: float  # the size of the effect, relative as ``relative_to`` says
    relative_to: str
    threshold: float  # flagged when effect ≤ threshold (blind spot) or > threshold (mismatch)
    evidence: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "flagged": self.flagged,
            "sentence": self.sentence,
            "effect": self.effect,
            "relative_to": self.relative_to,
            "threshold": self.threshold,
            "evidence": dict(self.evidence),
        }


@dataclass(frozen=True)
class Explanation:
    """The findings of one setup (and, when code was run, the comparison)."""

    setup: Setup
    findings: tuple[Finding, ...]
    comparison: Comparison | None = None  # when implementation files were run

    @property
    def flagged(self) -> list[Finding]:
        return [f for f in self.findings if f.flagged]

    @property
    def exit_code(self) -> int:
        unexplained = self.comparison is not None and not self.comparison.explained
        return 1 if self.flagged or unexplained else 0

    def to_dict(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "setup": self.setup.describe(),
            "exit_code": self.exit_code,
            "findings": [f.to_dict() for f in self.findings],
        }
        if self.comparison is not None:
            payload["comparison"] = self.comparison.to_dict()
        return payload


@dataclass
class _Channel:
    """Everything measured for one channel."""

    channel: int
    gamma: Fraction
    truth: dict[str, Any]  # training truth at the setup's g, user's ε
    probe: dict[str, Any]  # training truth at the probe g, user's ε
    scale: Any  # max |γ·probe g| / √(σ²+ε)
    setup_scale: Any  # max |γ·g| / √(σ²+ε)
    mistakes: dict[str, list[Any]]  # each mistake's dx at the probe g
    mistakes_setup: dict[str, list[Any]]  # each mistake's dx at the setup's g
    reference: list[Any]  # the reference's dx at the setup's g (its mode, its ε)
    user_at_ref_eps: list[Any]  # the training truth at the setup's g with the reference's ε
    ref_at_user_eps: list[Any]  # the reference's mode at the user's ε


def _measure(setup: Setup, point: Point) -> list[_Channel]:
    spec = setup.spec
    truth = derive(spec).definitions()
    # The truth and every mistake in one pass over the forward: the mistakes' dx are named
    # mistake0, mistake1, ... next to the truth's adjoints.
    names = {name: f"mistake{j}" for j, name in enumerate(MISTAKES)}
    with_mistakes = truth + [(names[k], True, mistake_dx(k)) for k in MISTAKES]
    eval_spec = replace(spec, training=False)
    eval_truth = derive(eval_spec).definitions()
    channels = []
    for c in range(spec.c):
        x, g, probe = point.x[c], point.g[c], point.probe[c]
        gamma, beta = setup.gamma_of(c), setup.beta

        def train(gs: Sequence[Fraction], eps: Fraction, defs: Definitions = truth) -> Any:
            return evaluate_at(spec, defs, x, gs, gamma, beta, eps)  # noqa: B023

        def reference(eps: Fraction) -> list[Any]:
            if setup.reference == "train":
                return list(train(g, eps)["dx"])  # noqa: B023
            running = (setup.running_mean, setup.running_var)
            return list(evaluate_at(eval_spec, eval_truth, x, g, gamma, beta, eps, running)["dx"])  # noqa: B023

        at_setup = train(g, setup.eps, with_mistakes)
        at_probe = at_setup if probe is g else train(probe, setup.eps, with_mistakes)
        root = at_probe["root"]
        channels.append(
            _Channel(
                c,
                gamma,
                at_setup,
                at_probe,
                max(abs(gamma * v) for v in probe) / root,
                max(abs(gamma * v) for v in g) / root,
                {k: list(at_probe[names[k]]) for k in MISTAKES},
                {k: list(at_setup[names[k]]) for k in MISTAKES},
                reference(setup.ref_eps),
                list(train(g, setup.ref_eps)["dx"]),
                reference(setup.eps),
            )
        )
    return channels


def explain(setup: Setup) -> Explanation:
    """Measure every weakness of the setup's gradient test; see the module docstring."""
    point = make_point(setup)
    channels = _measure(setup, point)
    findings = [
        _uniform(setup, point, channels),
        _small(setup, point, channels),
        _gamma(setup, channels),
        _variance(setup, channels),
        _eval(setup, channels),
        _eps(setup, channels),
    ]
    return Explanation(setup, tuple(findings))


def _fmt(value: Any, digits: int = 6) -> str:
    f = _float(value)
    return "0" if f == 0 else f"{f:.{digits}g}"


def share(value: float) -> str:
    """A relative size: a percentage from 1% up, else in scientific notation."""
    if value == 0:
        return "0"
    return f"{value:.0%}" if value >= 0.01 else f"{value:.2g}"


def _uniform(setup: Setup, point: Point, channels: list[_Channel]) -> Finding:
    uniform = all(len(set(g)) == 1 for g in point.g)
    zero = all(_is_zero(ch.truth["dx"]) for ch in channels)
    size = max(_size(ch.truth["dx"]) / _float(ch.setup_scale) for ch in channels)
    # Which known mistakes give the same dx as the truth at the setup's own gradient?
    passing = [
        name
        for name in MISTAKES
        if all(_relative(ch.mistakes_setup[name], ch.truth["dx"]) <= setup.rtol for ch in channels)
    ]
    g0 = point.g[0][0]
    evidence = {
        "g": f"{'uniform' if uniform else 'not uniform'} (g[0] = {g0})",
        "true dx": "exactly 0" if zero else f"max |dx| = {size:.3g} of max |γ·g|/√(σ²+ε)",
        "mistakes that pass": f"{len(passing)} of {len(MISTAKES)}"
        + (f": {', '.join(map(mistake_label, passing))}" if passing else ""),
    }
    if zero:
        sentence = (
            f"The {setup.loss} loss makes the upstream gradient uniform (g = {g0} everywhere), "
            "and for a uniform g the true training dx is exactly 0, so any backward whose dx "
            f"also vanishes passes: {len(passing)} of the {len(MISTAKES)} known mistakes do."
        )
    else:
        sentence = (
            "The upstream gradient is not uniform, so the true dx is not 0 "
            f"(max |dx| is {share(size)} of its scale)."
        )
    return Finding(
        "uniform-gradient",
        "blind spot",
        zero,
        sentence,
        size,
        "max |γ·g|/√(σ²+ε) at the setup's g",
        0.0,
        evidence,
    )


def _small(setup: Setup, point: Point, channels: list[_Channel]) -> Finding:
    m = setup.spec.m
    ratios = [_size(ch.probe["dx"]) / _float(ch.scale) for ch in channels]
    worst = int(np.argmin(ratios))
    ch = channels[worst]
    xhat = ch.probe["xhat"]
    flagged = ratios[worst] <= TINY
    own = point.probe[worst] is point.g[worst]
    which = "the setup's g" if own else "a non-uniform probe g (the setup's g is uniform)"
    # At M = 2 the bracket g − mean(g) − x̂·mean(g·x̂) is ±(g₁ − g₂)/2 · (1 − x̂²) with
    # 1 − x̂² = ε/(σ²+ε): compute that factor to show where the size comes from.
    eps_part = _float(setup.eps / (ch.probe["var"] + setup.eps))
    evidence = {
        "M": str(m),
        "x̂": ", ".join(_fmt(v, 7) for v in xhat[:4]) + (" …" if len(xhat) > 4 else ""),
        "true dx": f"max |dx| = {ratios[worst]:.3g} of max |γ·g|/√(σ²+ε), with {which}",
        "ε/(σ²+ε)": f"{eps_part:.3g}",
    }
    if flagged and m <= 2:
        sentence = (
            f"With N = {setup.n} there are only M = {m} values per {setup.unit}, so "
            f"x̂ = ±{abs(_float(xhat[0])):.7g} and the true dx is O(ε): {share(ratios[worst])} of its "
            f"scale even for a non-uniform g, a residue that ε and rounding decide rather "
            "than the formula."
        )
    elif flagged:
        sentence = (
            f"The upstream gradient is almost a combination of 1 and x̂, which the backward "
            f"projects out, so the true dx is only {share(ratios[worst])} of its scale."
        )
    else:
        sentence = (
            f"M = {m} values per {setup.unit}: the true dx is {share(ratios[worst])} of its "
            "scale, not a cancellation residue."
        )
    return Finding(
        "small-batch",
        "blind spot",
        flagged,
        sentence,
        ratios[worst],
        "max |γ·g|/√(σ²+ε), at a non-uniform g",
        float(TINY),
        evidence,
    )


def _gamma(setup: Setup, channels: list[_Channel]) -> Finding:
    effects = [_relative(ch.mistakes[GAMMA_MISSING], ch.probe["dx"]) for ch in channels]
    worst = int(np.argmin(effects))
    gamma = channels[worst].gamma
    flagged = effects[worst] <= setup.rtol
    evidence = {
        "γ": ", ".join(_num(g) for g in setup.gamma),
        "dx without γ vs true dx": f"relative difference {effects[worst]:.3g}"
        + (" (exactly equal)" if effects[worst] == 0 else ""),
    }
    if flagged:
        same = (
            "gives exactly the true dx"
            if effects[worst] == 0
            else f"differs from the true dx by only {share(effects[worst])}"
        )
        sentence = (
            f"γ = {_num(gamma)}, so a backward that forgets γ in dx {same}, and the test "
            "cannot tell them apart: use γ ∉ {0, ±1}."
        )
    else:
        sentence = f"γ = {_num(gamma)}: forgetting γ changes dx by {share(effects[worst])}."
    return Finding(
        "gamma-one",
        "blind spot",
        flagged,
        sentence,
        effects[worst],
        "the true dx, at a non-uniform g",
        float(setup.rtol),
        evidence,
    )


def _variance(setup: Setup, channels: list[_Channel]) -> Finding:
    effects = []
    for ch in channels:
        effects.append(min(_relative(ch.mistakes[name], ch.probe["dx"]) for name in SIGMA_MISTAKES))
    worst = int(np.argmin(effects))
    ch = channels[worst]
    u = ch.probe["var"] + setup.eps  # σ² + ε, rational
    front, inner = (_relative(ch.mistakes[name], ch.probe["dx"]) for name in SIGMA_MISTAKES)
    flagged = effects[worst] <= setup.rtol
    evidence = {
        "σ² + ε": _fmt(u, 12),
        "(σ²+ε)^(−1/2), ^(−1), ^(−3/2)": ", ".join(
            f"{float(to_mpfr(u) ** e):.9g}" for e in (-0.5, -1, -1.5)
        ),
        "dx with σ² for σ in front": f"relative difference {front:.3g}",
        "dx with σ² for σ³ in dσ²": f"relative difference {inner:.3g}",
    }
    if flagged:
        sentence = (
            f"σ² + ε = {_fmt(u, 9)} ≈ 1, so (σ²+ε)^(−1/2), (σ²+ε)^(−1) and (σ²+ε)^(−3/2) nearly "
            f"agree and mixing up σ and σ² changes dx by only {share(effects[worst])}, "
            f"below the tolerance {_num(setup.rtol)}."
        )
    else:
        sentence = (
            f"σ² + ε = {_fmt(u, 6)}: mixing up σ and σ² changes dx by {share(effects[worst])}, "
            "which the test sees."
        )
    return Finding(
        "variance-near-one",
        "blind spot",
        flagged,
        sentence,
        effects[worst],
        "the true dx, at a non-uniform g",
        float(setup.rtol),
        evidence,
    )


def _eval(setup: Setup, channels: list[_Channel]) -> Finding:
    if setup.reference == "train":
        return Finding(
            "eval-reference",
            "mismatch",
            False,
            "The reference runs in training mode, like the backward under test.",
            0.0,
            "the larger dx",
            float(setup.rtol),
            {"reference": "train"},
        )
    # Both at the reference's ε and the setup's g: what is left is the mode alone.
    effects = [_relative(ch.user_at_ref_eps, ch.reference) for ch in channels]
    worst = int(np.argmax(effects))
    ch = channels[worst]
    flagged = effects[worst] > setup.rtol
    train_dx = ch.user_at_ref_eps
    evidence = {
        "eval dx = γ·g/√(running σ²+ε)": _fmt(ch.reference[0]) + " at entry 0",
        "training dx": ("exactly 0" if _is_zero(train_dx) else _fmt(train_dx[0])) + " at entry 0",
        "running μ, σ²": f"{_num(setup.running_mean)}, {_num(setup.running_var)}",
    }
    sentence = (
        "The reference runs in eval mode, so its dx = γ·g/√(running σ² + ε) treats μ and σ² "
        f"as constants, while a training-mode backward differentiates through the batch "
        f"statistics: the two differ by {share(effects[worst])} of the larger gradient even when "
        "both are right."
    )
    if not flagged:
        sentence = (
            f"The reference runs in eval mode, but at these inputs its dx differs from the "
            f"training dx by only {share(effects[worst])}."
        )
    return Finding(
        "eval-reference",
        "mismatch",
        flagged,
        sentence,
        effects[worst],
        "the larger dx",
        float(setup.rtol),
        evidence,
    )


def _eps(setup: Setup, channels: list[_Channel]) -> Finding:
    mode = "training" if setup.reference == "train" else "eval"
    if setup.ref_eps == setup.eps:
        return Finding(
            "eps-mismatch",
            "mismatch",
            False,
            f"Both sides use ε = {_num(setup.eps)}.",
            0.0,
            "the larger dx",
            float(setup.rtol),
            {"ε": _num(setup.eps)},
        )
    # The reference's mode at either ε, at the setup's g: what is left is ε alone.
    effects = [_relative(ch.ref_at_user_eps, ch.reference) for ch in channels]
    worst = int(np.argmax(effects))
    flagged = effects[worst] > setup.rtol
    evidence = {
        "ε (yours, reference)": f"{_num(setup.eps)}, {_num(setup.ref_eps)}",
        f"{mode} dx at entry 0": f"{_fmt(channels[worst].ref_at_user_eps[0])} vs "
        f"{_fmt(channels[worst].reference[0])}",
    }
    verb = "above" if flagged else "within"
    sentence = (
        f"Your ε = {_num(setup.eps)} and the reference's ε = {_num(setup.ref_eps)} alone change "
        f"the {mode}-mode dx by {share(effects[worst])} of the larger gradient, {verb} the "
        f"tolerance {_num(setup.rtol)}."
    )
    return Finding(
        "eps-mismatch",
        "mismatch",
        flagged,
        sentence,
        effects[worst],
        "the larger dx",
        float(setup.rtol),
        evidence,
    )


# -- running the code: is the observed difference the setup's? ------------------------------------
#: The part of an observed difference the setup does not predict is explained when every entry
#: is within the derived rounding bound of both sides computed in float64 (``precision``); it
#: may be float32 rounding when within that of float32.
OWN, INSIDE = "float64", "float32"


@dataclass(frozen=True)
class Comparison:
    """dx of the user's code against a reference's, at the setup's inputs, in float64, with the
    difference the setup predicts (truth in the user's mode and ε minus truth in the
    reference's mode and ε) taken out.  Differences are absolute: max over the entries."""

    yours: str
    against: str
    observed: float  # max |dx_yours − dx_ref|
    predicted: float  # max |truth_yours − truth_ref|
    parts: dict[str, float]  # the predicted difference split by cause
    unexplained: float  # max |(dx_yours − dx_ref) − (truth_yours − truth_ref)|
    scale: float  # max(max |γ·g|/√(σ²+ε), max |dx| of either side)
    #: max over the entries of the unexplained difference over the rounding bound of both sides,
    #: in float64 and in float32 (≤ 1: within rounding)
    share64: float = 0.0
    share32: float = 0.0
    bound64: float = 0.0  # the largest float64 bound of an entry

    @property
    def explained(self) -> bool:
        return self.share64 <= 1.0

    def sentences(self) -> list[str]:
        parts = ", ".join(f"{k} {v:.6g}" for k, v in self.parts.items())
        out = [
            f"{self.yours} vs {self.against}: max |dx difference| = {self.observed:.6g}; the "
            f"setup predicts {self.predicted:.6g}" + (f" ({parts})" if parts else "") + "."
        ]
        if self.explained:
            left = (
                "Nothing is left over"
                if self.unexplained == 0
                else f"What is left over, {self.unexplained:.2g}, is rounding (within the "
                f"derived float64 rounding bound of both sides, up to {self.bound64:.2g} per "
                "entry)"
            )
            out.append(
                f"{left}: the whole difference comes from the setup, not from a mistake in "
                "either backward."
            )
        elif self.share32 <= 1.0:
            out.append(
                f"{self.unexplained:.6g} ({share(self.unexplained / self.scale)} of the "
                f"gradient's scale {self.scale:.6g}) is not explained by the setup but is no "
                f"larger than float32 rounding: rounding if {self.yours} or the reference computes "
                "in float32, else a small mistake (bnderive check-impl decides)."
            )
        else:
            out.append(
                f"{self.unexplained:.6g} ({share(self.unexplained / self.scale)} of the "
                f"gradient's scale {self.scale:.6g}) is not explained by the setup: a mistake in "
                f"{self.yours} or in the reference (bnderive check-impl finds which entry)."
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "yours": self.yours,
            "against": self.against,
            "observed": self.observed,
            "predicted": self.predicted,
            "parts": dict(self.parts),
            "unexplained": self.unexplained,
            "scale": self.scale,
            "rounding_share": self.share64,
            "explained": self.explained,
        }


def _arrays(setup: Setup, per_channel: Sequence[Sequence[Any]]) -> np.ndarray:
    """Per-channel values as an array of the setup's shape (object dtype)."""
    spec = setup.spec
    out = np.empty(spec.shape, dtype=object)
    for c, values in enumerate(per_channel):
        for p, v in zip(spec.positions(c), values, strict=True):
            out[p] = v
    return out


def _floats(values: np.ndarray) -> np.ndarray:
    return np.vectorize(_float, otypes=[float])(values)


def run_file(
    setup: Setup,
    point: Point,
    path: str,
    training: bool,
    eps: Fraction,
    function: str | None = None,
    timeout: float = 20.0,
) -> np.ndarray:
    """dx of the implementation in ``path`` at the setup's inputs with ``eps``, in training or
    eval mode, in float64, run in the guarded child of ``check-impl`` (its exact run fails on
    the irrational √(σ²+ε) and is not used)."""
    from bnderive.usercode.check_impl import Case, float_results

    spec = replace(setup.spec, training=training)
    c = spec.c
    case = Case(
        spec,
        _arrays(setup, point.x),
        _arrays(setup, point.g),
        tuple(setup.gamma_of(k) for k in range(c)),
        (setup.beta,) * c,
        eps,
        (),
        (setup.running_mean,) * c,
        (setup.running_var,) * c,
    )
    return float_results(path, case, function, timeout)["dx"]


def _rounding(setup: Setup, point: Point, dtype: str, training: bool, eps: Fraction) -> np.ndarray:
    """The derived rounding bound of every entry of dx (``precision.rounding_bounds``) for a
    backward computed in ``dtype`` at the setup's inputs, in training or eval mode."""
    from bnderive.usercode.precision import rounding_bounds

    per_channel = []
    for c in range(setup.spec.c):
        bounds = rounding_bounds(
            np.array([float(v) for v in point.x[c]]),
            np.array([float(v) for v in point.g[c]]),
            float(setup.gamma_of(c)),
            float(setup.beta),
            float(eps),
            dtype,
            training=training,
            running_mean=float(setup.running_mean),
            running_var=float(setup.running_var),
        )
        per_channel.append(list(bounds.dx))
    return _floats(_arrays(setup, per_channel))


def torch_dx(setup: Setup, point: Point) -> np.ndarray:
    """dx of PyTorch's BatchNorm layer in the reference's mode, in float64, with the setup's
    loss: sum → y.sum(), mean → y.mean(), random/weights → (y·g).sum()."""
    try:
        import torch
    except ImportError:
        raise ExplainError(
            "--against torch needs PyTorch: pip install torch (CPU), or compare with the truth "
            "(--against truth) or another file."
        ) from None
    spec = setup.spec
    c = spec.c
    layer_type = torch.nn.BatchNorm1d if spec.mode is Mode.PER_ACTIVATION else torch.nn.BatchNorm2d
    layer = layer_type(c, eps=float(setup.ref_eps), dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([float(setup.gamma_of(k)) for k in range(c)]))
        layer.bias.fill_(float(setup.beta))
        layer.running_mean.fill_(float(setup.running_mean))
        layer.running_var.fill_(float(setup.running_var))
    layer.train(setup.reference == "train")
    x = torch.tensor(_floats(_arrays(setup, point.x)), dtype=torch.float64, requires_grad=True)
    y = layer(x)
    if setup.loss == "sum":
        loss = y.sum()
    elif setup.loss == "mean":
        loss = y.mean()
    else:
        loss = (y * torch.tensor(_floats(_arrays(setup, point.g)), dtype=torch.float64)).sum()
    loss.backward()
    assert x.grad is not None
    return x.grad.detach().numpy().copy()


def compare(
    setup: Setup,
    yours: str,
    against: str = "truth",
    function: str | None = None,
    reference_function: str | None = None,
    timeout: float = 20.0,
) -> Explanation:
    """The findings, plus the user's file run against ``against`` (``truth``: bnderive's exact
    gradient in the reference's mode; ``torch``: PyTorch's layer; or another file) and the
    observed difference split into what the setup predicts and what it does not."""
    explanation = explain(setup)
    point = make_point(setup)
    spec = setup.spec
    eval_spec = replace(spec, training=False)
    truth, eval_truth = derive(spec).definitions(), derive(eval_spec).definitions()
    user_truth, ref_truth, ref_truth_user_mode = [], [], []
    scale = 0.0
    for c in range(spec.c):
        x, g, gamma = point.x[c], point.g[c], setup.gamma_of(c)
        mine = evaluate_at(spec, truth, x, g, gamma, setup.beta, setup.eps)
        user_truth.append(mine["dx"])
        scale = max(scale, _float(max(abs(gamma * v) for v in g) / mine["root"]))
        at_ref_eps = evaluate_at(spec, truth, x, g, gamma, setup.beta, setup.ref_eps)["dx"]
        ref_truth_user_mode.append(at_ref_eps)
        if setup.reference == "train":
            ref_truth.append(at_ref_eps)
        else:
            running = (setup.running_mean, setup.running_var)
            values = evaluate_at(
                eval_spec, eval_truth, x, g, gamma, setup.beta, setup.ref_eps, running
            )
            ref_truth.append(values["dx"])
    t_user = _floats(_arrays(setup, user_truth))
    t_ref = _floats(_arrays(setup, ref_truth))
    t_mid = _floats(_arrays(setup, ref_truth_user_mode))
    dx_yours = run_file(setup, point, yours, True, setup.eps, function, timeout)
    if against == "truth":
        dx_ref, label = t_ref, f"the truth ({setup.reference} mode)"
    elif against == "torch":
        dx_ref, label = torch_dx(setup, point), f"PyTorch ({setup.reference} mode)"
    else:
        training = setup.reference == "train"
        dx_ref = run_file(
            setup, point, against, training, setup.ref_eps, reference_function, timeout
        )
        label = f"{against} ({setup.reference} mode)"
    scale = max(scale, float(np.max(np.abs(dx_ref))), float(np.max(np.abs(dx_yours))))
    scale = scale or 1.0
    parts = {}
    if setup.reference == "eval":
        parts["eval-reference"] = float(np.max(np.abs(t_mid - t_ref)))
    if setup.ref_eps != setup.eps:
        parts["eps-mismatch"] = float(np.max(np.abs(t_user - t_mid)))
    observed = dx_yours - dx_ref
    predicted = t_user - t_ref
    left = np.abs(observed - predicted)
    shares = {}
    for dtype in (OWN, INSIDE):
        bound = _rounding(setup, point, dtype, True, setup.eps) + _rounding(
            setup, point, dtype, setup.reference == "train", setup.ref_eps
        )
        shares[dtype] = (float(np.max(left / bound)), float(np.max(bound)))
    comparison = Comparison(
        yours,
        label,
        float(np.max(np.abs(observed))),
        float(np.max(np.abs(predicted))),
        parts,
        float(np.max(left)),
        scale,
        shares[OWN][0],
        shares[INSIDE][0],
        shares[OWN][1],
    )
    return replace(explanation, comparison=comparison)
