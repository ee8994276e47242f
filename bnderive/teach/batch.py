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

The relatives of BatchNorm (``choose_family_batch``) normalize one sample's set: LayerNorm and
RMSNorm the D = n features of a (1, n) input, InstanceNorm the W = n values of a (1, 1, 1, n)
input, GroupNorm one group of two channels of a (1, 4, 1, n) input with G = 2 (M = 2n).  Their γ
(and β) take one value per element (GroupNorm: per channel, so the two channels' values), drawn
so that they are not all equal (a γ that is the same for every element hides γ taken out of a
sum); RMSNorm's x has no mean to subtract, its root is √(ms + ε) with ms = (1/M) Σ x², and it has
no β.  BatchNorm's batches (``choose_batch``) are drawn exactly as before: the seeds of its
lessons do not change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from fractions import Fraction
from random import Random
from typing import Any

from bnderive.core.spec import Mode, Norm, Spec
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
    gamma: Fraction | tuple[Fraction, ...]  # one per element where the family's γ is
    beta: Fraction | tuple[Fraction, ...] | None  # None: RMSNorm has no shift
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

    @property
    def statistic(self) -> Fraction:
        """What is under the root with ε: σ², or RMSNorm's mean square (1/M) Σ x²."""
        if self.spec.norm.centred:
            return self.variance
        return sum((v * v for v in self.x), Fraction(0)) / self.m

    def point(self) -> dict[str, Any]:
        """The inputs as ``core.points.point_env`` takes them (ε given: the root is computed)."""
        zeros = [0] * self.m
        point: dict[str, Any] = {
            "x": list(self.x),
            "g": list(self.g),
            "gamma": _listed(self.gamma),
            "beta": _listed(self.beta),
            "eps": self.eps,
            "ggI": zeros,  # the double backward's inputs: unused by the lesson
            "ggG": 0,
            "ggB": 0,
        }
        if self.beta is None:
            del point["beta"]
        return point

    def with_inputs(self, **changes: Any) -> Batch:
        """The same batch with some inputs replaced (a weak test's γ = 1, a uniform g, …)."""
        return replace(self, **changes)

    def positions(self) -> list[tuple[int, ...]]:
        return self.spec.positions(0)


def _listed(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


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


# -- the relatives of BatchNorm ---------------------------------------------------------------------
#: GroupNorm's lesson: a (1, 4, 1, n) input in G = 2 groups: set 0 is channels 0 and 1.
GROUP_CHANNELS, GROUP_GROUPS = 4, 2


def family_spec(n: int, norm: Norm | str) -> Spec:
    """The layer of a family's lesson (see the module's docstring); BatchNorm's is ``lesson_spec``."""
    norm = Norm.parse(norm)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_N:
        raise SpecError(
            f"--n {n}: the walkthrough shows every number of a tiny set; use a size from 1 to "
            f"{MAX_N} (bnderive derive --norm {norm.value} handles larger ones)."
        )
    if norm is Norm.BATCH:
        return lesson_spec(n)
    if norm in (Norm.LAYER, Norm.RMS):
        return Spec(Mode.PER_ACTIVATION, n=1, c=n, norm=norm)
    if norm is Norm.INSTANCE:
        return Spec(Mode.SPATIAL, n=1, c=1, h=1, w=n, norm=norm)
    return Spec(Mode.SPATIAL, n=1, c=GROUP_CHANNELS, h=1, w=n, norm=norm, groups=GROUP_GROUPS)


def choose_family_batch(n: int, norm: Norm | str, seed: int = 0, max_q: int = 6) -> Batch:
    """The seeded tiny set of a family's lesson: set 0 of ``family_spec(n, norm)``."""
    spec = family_spec(n, norm)
    m, fam = spec.m, spec.norm
    rng = Random(seed)
    spread = max(3, (m + 1) // 2 + 1)
    if fam.centred:
        d = _deviations(rng, m, spread)
        mu = rng.randint(-3, 3)
        x = tuple(Fraction(mu + v) for v in d)
    else:  # RMSNorm: distinct nonzero values; nothing is subtracted
        d = _distinct_nonzero(rng, m, spread)
        x = tuple(Fraction(v) for v in d)
    gamma = _family_gamma(rng, spec)
    g = _family_upstream(rng, d, gamma)
    beta: Fraction | tuple[Fraction, ...] | None = None
    if fam.has_beta:
        beta = (
            _per_element(rng, spec, _BETAS, distinct=False)
            if fam.affine_per_element
            else rng.choice(_BETAS)
        )
    batch = Batch(spec, seed, x, g, gamma, beta, Fraction(0), Fraction(0))
    root, eps = rational_root(batch.statistic, max_q)
    if not fam.affine_per_element:  # one γ: keep γ/√(σ²+ε) ≠ ±1, as BatchNorm's lesson does
        while abs(batch.gamma) == root:  # type: ignore[arg-type]
            batch = replace(batch, gamma=rng.choice(_GAMMAS))
    return replace(batch, eps=eps, root=root)


def _distinct_nonzero(rng: Random, m: int, spread: int) -> list[int]:
    values = [v for v in range(-spread, spread + 1) if v != 0]
    return rng.sample(values, m)


def _per_element(
    rng: Random, spec: Spec, choices: tuple[Fraction, ...], distinct: bool
) -> tuple[Fraction, ...]:
    """One value per element of set 0, as the family indexes γ: per element (LayerNorm,
    RMSNorm) or per channel (GroupNorm: the set's channels, each over its H·W elements);
    with ``distinct``, not all the same (for M ≥ 2)."""
    per = spec.h * spec.w if spec.norm is Norm.GROUP else 1
    count = spec.m // per
    for _ in range(1000):
        values = [rng.choice(choices) for _ in range(count)]
        if not distinct or count < 2 or len(set(values)) > 1:
            return tuple(v for v in values for _ in range(per))
    raise AssertionError("no γ")  # pragma: no cover


def _family_gamma(rng: Random, spec: Spec) -> Fraction | tuple[Fraction, ...]:
    if spec.norm.affine_per_element:
        return _per_element(rng, spec, _GAMMAS, distinct=True)
    return rng.choice(_GAMMAS)


def _family_upstream(
    rng: Random, d: list[int], gamma: Fraction | tuple[Fraction, ...]
) -> tuple[Fraction, ...]:
    """Nonzero small integers, not uniform, with Σγg ≠ 0 and Σγg·d ≠ 0 (d: x − μ, or x): the
    sums of every family's dx (γ inside them where it is per element) are not 0 by accident."""
    m = len(d)
    scale = gamma if isinstance(gamma, tuple) else (gamma,) * m
    for _ in range(100_000):
        g = [rng.choice((-3, -2, -1, 1, 2, 3)) for _ in range(m)]
        if m == 1:
            return (Fraction(g[0]),)
        weighted = [s * v for s, v in zip(scale, g, strict=True)]
        if (
            len(set(g)) >= min(m, 3)
            and sum(weighted) != 0
            and sum(a * b for a, b in zip(weighted, d, strict=True)) != 0
        ):
            return tuple(Fraction(v) for v in g)
    raise AssertionError("no upstream gradient")  # pragma: no cover


def square_mean_square(m: int, seed: int, spread: int = 9) -> tuple[Fraction, ...]:
    """M distinct nonzero integers whose mean square is the square of a rational (M·Σx² is a
    perfect square): RMSNorm's √ms is then rational, as a layer with ε outside the root needs."""
    rng = Random(seed)
    for _ in range(100_000):
        x = _distinct_nonzero(rng, m, spread)
        total = m * sum(v * v for v in x)
        if math.isqrt(total) ** 2 == total:
            return tuple(Fraction(v) for v in x)
    raise AssertionError(f"no square mean square for M = {m}")  # pragma: no cover
