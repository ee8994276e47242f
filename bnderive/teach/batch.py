"""A tiny batch whose every number is exact: small rationals with √(σ²+ε) rational.

The lesson evaluates bnderive's graph at one reduction set of M values.  Every stage is a
rational function of the inputs except √(σ²+ε); choosing ε = r² − σ² for a rational r makes that
root the rational r, so every number of the forward and backward pass is an exact fraction.  The
inputs are drawn from a seed so that the lesson is the same on every machine:

* x = μ + d with an integer mean μ and distinct nonzero integer deviations d (Σd = 0), so that
  x − μ is a whole number and no x̂ is 0;
* r = p/q with q ≤ 6, the one just above σ = √σ² that leaves the smallest ε = r² − σ² > 0;
* g (the upstream gradient ∂L/∂y) small nonzero integers, three different values at least
  (two for M = 2), with Σg ≠ 0 and Σg·(x−μ) ≠ 0, so that dβ and dγ are not 0 and no term of
  dx vanishes by accident;
* γ ∉ {0, ±1} (γ = 1 hides a missing γ), γ ≠ ±√(σ²+ε), and β ≠ 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from fractions import Fraction
from random import Random
from typing import Any

from bnderive.core.spec import Mode, Spec
from bnderive.errors import SpecError

#: The largest batch the walkthrough shows: its numbers must fit a terminal line.
MAX_N = 6
#: SPATIAL lessons use an (N, 1, 1, 2) input: one channel, M = 2N values.
SPATIAL_HW = (1, 2)

_GAMMAS = (Fraction(2), Fraction(3), Fraction(-2), Fraction(3, 2), Fraction(-3, 2), Fraction(1, 2))
_BETAS = (Fraction(1), Fraction(-1), Fraction(1, 2), Fraction(-1, 2))


@dataclass(frozen=True)
class Batch:
    """One reduction set (channel 0) with exact inputs; ``root`` = √(σ²+ε), rational."""

    spec: Spec
    seed: int
    x: tuple[Fraction, ...]
    g: tuple[Fraction, ...]
    gamma: Fraction
    beta: Fraction
    eps: Fraction
    root: Fraction

    @property
    def m(self) -> int:
        return self.spec.m

    @property
    def mean(self) -> Fraction:
        return sum(self.x, Fraction(0)) / self.m

    @property
    def variance(self) -> Fraction:
        mu = self.mean
        return sum(((v - mu) ** 2 for v in self.x), Fraction(0)) / self.m

    def point(self) -> dict[str, Any]:
        """The inputs as ``core.points.point_env`` takes them (ε given: the root is computed)."""
        zeros = [0] * self.m
        return {
            "x": list(self.x),
            "g": list(self.g),
            "gamma": self.gamma,
            "beta": self.beta,
            "eps": self.eps,
            "ggI": zeros,  # the double backward's inputs: unused by the lesson
            "ggG": 0,
            "ggB": 0,
        }

    def with_inputs(self, **changes: Any) -> Batch:
        """The same batch with some inputs replaced (a weak test's γ = 1, a uniform g, …)."""
        return replace(self, **changes)

    def positions(self) -> list[tuple[int, ...]]:
        return self.spec.positions(0)


def lesson_spec(n: int, mode: Mode | str = Mode.PER_ACTIVATION) -> Spec:
    """The layer of a lesson: (N, 1) in PER_ACTIVATION mode, (N, 1, 1, 2) in SPATIAL mode."""
    mode = Mode.parse(mode)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_N:
        raise SpecError(
            f"--n {n}: the walkthrough shows every number of a tiny batch; use a batch size "
            f"from 1 to {MAX_N} (bnderive derive and bnderive check handle larger ones)."
        )
    if mode is Mode.PER_ACTIVATION:
        return Spec(mode, n=n, c=1)
    return Spec(mode, n=n, c=1, h=SPATIAL_HW[0], w=SPATIAL_HW[1])


def rational_root(variance: Fraction, max_q: int = 6) -> tuple[Fraction, Fraction]:
    """(r, ε): r = p/q (q ≤ max_q) just above √σ² with the smallest ε = r² − σ² > 0."""
    best: tuple[Fraction, Fraction] | None = None
    for q in range(1, max_q + 1):
        p = math.isqrt(math.floor(variance * q * q))
        while Fraction(p, q) ** 2 <= variance:
            p += 1
        r = Fraction(p, q)
        eps = r * r - variance
        if best is None or eps < best[1]:
            best = (r, eps)
    assert best is not None
    return best


def choose_batch(
    n: int = 3, mode: Mode | str = Mode.PER_ACTIVATION, seed: int = 0, max_q: int = 6
) -> Batch:
    """The seeded tiny batch of a lesson (see the module's docstring for what is chosen);
    ``max_q`` bounds the denominator of √(σ²+ε) (larger: a smaller ε)."""
    spec = lesson_spec(n, mode)
    m = spec.m
    rng = Random(seed)
    spread = max(3, (m + 1) // 2 + 1)  # room for M distinct nonzero deviations
    d = _deviations(rng, m, spread)
    mu = rng.randint(-3, 3)
    x = tuple(Fraction(mu + v) for v in d)
    variance = Fraction(sum(v * v for v in d), m)
    root, eps = rational_root(variance, max_q)
    g = _upstream(rng, d)
    # γ/√(σ²+ε) = ±1 would make the scale of dx invisible too.
    gamma = rng.choice([v for v in _GAMMAS if abs(v) != root])
    return Batch(spec, seed, x, g, gamma, rng.choice(_BETAS), eps, root)


def _deviations(rng: Random, m: int, spread: int) -> list[int]:
    """M distinct nonzero integers summing to 0 (just [0] for M = 1)."""
    if m == 1:
        return [0]
    if m == 2:
        a = rng.choice([v for v in range(-spread, spread + 1) if v != 0])
        return [a, -a]
    for _ in range(100_000):
        d = [rng.randint(-spread, spread) for _ in range(m - 1)]
        d.append(-sum(d))
        if 0 not in d and len(set(d)) == m and abs(d[-1]) <= spread + 2:
            return d
    raise AssertionError(f"no deviations for M = {m}")  # pragma: no cover - M ≤ 12 always finds


def _upstream(rng: Random, d: list[int]) -> tuple[Fraction, ...]:
    """Nonzero small integers, not uniform, with Σg ≠ 0 and Σg·d ≠ 0 (M ≥ 2)."""
    m = len(d)
    for _ in range(100_000):
        g = [rng.choice((-3, -2, -1, 1, 2, 3)) for _ in range(m)]
        if m == 1:
            return (Fraction(g[0]),)
        if (
            len(set(g)) >= min(m, 3)
            and sum(g) != 0
            and sum(a * b for a, b in zip(g, d, strict=True)) != 0
        ):
            return tuple(Fraction(v) for v in g)
    raise AssertionError("no upstream gradient")  # pragma: no cover
