"""Shared fixtures: the form catalogues and an independent brute-force ground truth.

Catalogues (Tangent style): every file in ``derivations/`` is a ``builtin_form`` case,
every ``tests/forms/wrong_*.toml`` a ``wrong_case`` and every ``tests/forms/equivalent_*.toml`` an
``equivalent_case``, so adding a file adds its tests.  A test form file may end with an
``[expect]`` table (what the test expects of it); that table is cut off before the form is read.

The brute force knows nothing of bnderive's graph, derive or evaluate: it writes the whole
forward pass L = Σ g·(γ x̂ + β) over an explicit tensor with plain SymPy symbols, following
DESIGN.md §1, and differentiates it with ``sympy.diff``.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sympy as sp

from bnderive import Form, builtin_forms, load_form
from bnderive.read.corpus import Mutant, Rewrite, corpus

FORMS_DIR = Path(__file__).parent / "forms"
BUILTIN_FORMS = builtin_forms()
WRONG_FILES = sorted(FORMS_DIR.glob("wrong_*.toml"))
EQUIVALENT_FILES = sorted(FORMS_DIR.glob("equivalent_*.toml"))


# -- catalogues -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FormCase:
    """A test form file: the form, and what the test expects of it."""

    path: Path
    form: Form
    expect: dict[str, Any] = field(default_factory=dict)


def load_case(path: Path) -> FormCase:
    text = path.read_text(encoding="utf-8")
    expect = tomllib.loads(text).get("expect", {})
    form_text = text.split("\n[expect]", 1)[0]
    return FormCase(path, load_form(path, form_text), expect)


@pytest.fixture(params=BUILTIN_FORMS, ids=[f.name for f in BUILTIN_FORMS])
def builtin_form(request: pytest.FixtureRequest) -> Form:
    """Each form shipped in derivations/."""
    return request.param


@pytest.fixture(scope="session")
def wrong_form_files() -> list[Path]:
    return WRONG_FILES


@pytest.fixture(scope="session")
def equivalent_form_files() -> list[Path]:
    return EQUIVALENT_FILES


def _with_base(paths: list[Path]) -> list[Path]:
    """The case files whose [expect] table names the form they were made from."""
    return [
        p for p in paths if "base" in tomllib.loads(p.read_text(encoding="utf-8")).get("expect", {})
    ]


@pytest.fixture(params=WRONG_FILES, ids=[p.stem for p in WRONG_FILES])
def wrong_case(request: pytest.FixtureRequest) -> FormCase:
    """A wrong form: a copy of a correct form with one deliberate mistake, or one written from
    scratch."""
    return load_case(request.param)


@pytest.fixture(params=_with_base(WRONG_FILES), ids=[p.stem for p in _with_base(WRONG_FILES)])
def wrong_case_with_base(request: pytest.FixtureRequest) -> FormCase:
    """A wrong form made from a correct one (its [expect] table names the base)."""
    return load_case(request.param)


@pytest.fixture(params=EQUIVALENT_FILES, ids=[p.stem for p in EQUIVALENT_FILES])
def equivalent_case(request: pytest.FixtureRequest) -> FormCase:
    """A correct form written differently from the published ones."""
    return load_case(request.param)


@pytest.fixture(
    params=_with_base(EQUIVALENT_FILES), ids=[p.stem for p in _with_base(EQUIVALENT_FILES)]
)
def equivalent_case_with_base(request: pytest.FixtureRequest) -> FormCase:
    """A correct form rewritten from a published one (its [expect] table names the base)."""
    return load_case(request.param)


# The mutation corpus of the package: adding a mutant or a rewrite adds its tests.
CORPUS = corpus()


@pytest.fixture(params=CORPUS.mutants, ids=[m.id for m in CORPUS.mutants])
def mutant(request: pytest.FixtureRequest) -> Mutant:
    """A correct form with one known mistake put in (bnderive/read/corpus/mistakes.toml)."""
    return request.param


@pytest.fixture(params=CORPUS.rewrites, ids=[r.name for r in CORPUS.rewrites])
def rewrite(request: pytest.FixtureRequest) -> Rewrite:
    """A right form written differently (bnderive/read/corpus/rewrites.toml)."""
    return request.param


# -- brute force ------------------------------------------------------------------------------------
@dataclass
class Layer:
    """One BatchNorm layer over an explicit tensor, every input a plain SymPy symbol.

    ``shape`` is (N, D) or (N, C, H, W); axis 1 is the feature/channel axis in both layouts and
    the statistics of channel c run over every other axis (DESIGN.md §1).
    """

    shape: tuple[int, ...]
    unbiased: bool = False
    eps_inside: bool = True
    training: bool = True

    def __post_init__(self) -> None:
        def name(base: str, pos: tuple[int, ...]) -> str:
            return base + "_" + "_".join(map(str, pos))

        self.x = np.empty(self.shape, dtype=object)
        self.g = np.empty(self.shape, dtype=object)
        for pos in np.ndindex(self.shape):
            self.x[pos] = sp.Symbol(name("X", pos), real=True)
            self.g[pos] = sp.Symbol(name("G", pos), real=True)
        channels = self.shape[1]
        self.gamma = [sp.Symbol(f"Gamma_{c}", real=True) for c in range(channels)]
        self.beta = [sp.Symbol(f"Beta_{c}", real=True) for c in range(channels)]
        self.eps = sp.Symbol("Eps", positive=True)
        self.r = sp.Symbol("R", positive=True)  # stands for √(σ²+ε) (ε inside) or √σ² (outside)
        # eval mode: the running statistics, constants of the graph
        self.running_mean = [sp.Symbol(f"RunMean_{c}", real=True) for c in range(channels)]
        self.running_var = [sp.Symbol(f"RunVar_{c}", positive=True) for c in range(channels)]
        # free stand-ins for μ and σ² of each channel, for the intermediate adjoints
        self.mu_sym = [sp.Symbol(f"MuFree_{c}", real=True) for c in range(channels)]
        self.var_sym = [sp.Symbol(f"VarFree_{c}", positive=True) for c in range(channels)]

    # reduction sets ---------------------------------------------------------------------------
    @property
    def channels(self) -> int:
        return self.shape[1]

    def positions(self, c: int) -> list[tuple[int, ...]]:
        return [pos for pos in np.ndindex(self.shape) if pos[1] == c]

    def m(self, c: int) -> int:
        return len(self.positions(c))

    def channel_symbols(self, c: int) -> set[sp.Symbol]:
        own = {self.x[p] for p in self.positions(c)} | {self.g[p] for p in self.positions(c)}
        return own | {self.gamma[c], self.beta[c]}

    # statistics -------------------------------------------------------------------------------
    def mean(self, c: int) -> sp.Expr:
        xs = [self.x[p] for p in self.positions(c)]
        return sp.Add(*xs) / len(xs)

    def var_of(self, c: int, mu: sp.Expr) -> sp.Expr:
        """σ² as a function of x and a given μ (the graph's σ² = (1/M) Σ (x − μ)²)."""
        xs = [self.x[p] for p in self.positions(c)]
        divisor = len(xs) - 1 if self.unbiased else len(xs)
        return sp.Add(*[(v - mu) ** 2 for v in xs]) / divisor

    def var(self, c: int) -> sp.Expr:
        return self.var_of(c, self.mean(c))

    def stats(self, c: int) -> tuple[sp.Expr, sp.Expr]:
        if self.training:
            return self.mean(c), self.var(c)
        return self.running_mean[c], self.running_var[c]

    # the loss ---------------------------------------------------------------------------------
    def loss_given(self, c: int, mu: sp.Expr, var: sp.Expr) -> sp.Expr:
        """Σ_r g_r (γ x̂_r + β) over channel c, with μ and σ² as given expressions."""
        scale = sp.sqrt(var + self.eps) if self.eps_inside else sp.sqrt(var) + self.eps
        return sp.Add(
            *[
                self.g[p] * (self.gamma[c] * (self.x[p] - mu) / scale + self.beta[c])
                for p in self.positions(c)
            ]
        )

    def loss(self) -> sp.Expr:
        """L over the whole tensor, every channel with its own statistics."""
        return sp.Add(*[self.loss_given(c, *self.stats(c)) for c in range(self.channels)])

    # the gradients ----------------------------------------------------------------------------
    def dx(self) -> np.ndarray:
        L = self.loss()
        out = np.empty(self.shape, dtype=object)
        for pos in np.ndindex(self.shape):
            out[pos] = sp.diff(L, self.x[pos])
        return out

    def dgamma(self) -> list[sp.Expr]:
        L = self.loss()
        return [sp.diff(L, gm) for gm in self.gamma]

    def dbeta(self) -> list[sp.Expr]:
        L = self.loss()
        return [sp.diff(L, b) for b in self.beta]

    def dvar(self, c: int) -> sp.Expr:
        """∂L/∂σ² with x and μ held fixed, at the batch statistics."""
        mu, var = self.mu_sym[c], self.var_sym[c]
        d = sp.diff(self.loss_given(c, mu, var), var)
        return d.xreplace({mu: self.mean(c), var: self.var(c)})

    def dmu(self, c: int) -> sp.Expr:
        """∂L/∂μ with x fixed and σ² = σ²(x, μ) following μ, at the batch mean."""
        mu = self.mu_sym[c]
        d = sp.diff(self.loss_given(c, mu, self.var_of(c, mu)), mu)
        return d.xreplace({mu: self.mean(c)})

    # exact comparison -------------------------------------------------------------------------
    def eliminate(self, expr: sp.Expr, c: int) -> sp.Expr:
        """``expr`` (in this layer's symbols, channel c) with the radical of channel c replaced
        by the positive symbol R.

        ε inside: R = √(σ²+ε), so ε = R² − σ²(x) everywhere; the result is a rational function
        of x, g, γ, β, R and the map (x, R) ↦ (x, ε = R² − σ²(x)) is onto the domain, so it is
        zero exactly when ``expr`` is.  ε outside: R = √σ², a relation R² = σ²(x) that
        ``is_zero`` applies.  Raises if any other radical is left (the comparison would not be
        a proof then).
        """
        mu, var = self.stats(c)
        radicand = var + self.eps if self.eps_inside else var
        mapping = {}
        for node in expr.atoms(sp.Pow):
            e = node.exp
            if isinstance(e, sp.Rational) and e.q == 2 and sp.expand(node.base - radicand) == 0:
                mapping[node] = self.r ** int(e.p)
        out = expr.xreplace(mapping)
        if self.eps_inside:
            out = out.xreplace({self.eps: self.r**2 - var})
        left = [p for p in out.atoms(sp.Pow) if isinstance(p.exp, sp.Rational) and p.exp.q != 1]
        assert not left, f"radicals left after elimination: {left}"
        return out

    def is_zero(self, expr: sp.Expr, c: int) -> bool:
        """Exact: is ``expr`` identically zero on the domain (σ² + ε > 0)?"""
        reduced = sp.cancel(sp.together(self.eliminate(expr, c)))
        if self.eps_inside or reduced == 0:
            return reduced == 0
        # R² = σ²(x): reduce the numerator modulo the relation (σ² is not a square in x for
        # M ≥ 3, so the quotient is a field and a zero remainder is the only way to vanish).
        numerator, _ = sp.fraction(reduced)
        _, var = self.stats(c)
        return sp.expand(sp.rem(sp.expand(numerator), self.r**2 - sp.expand(var), self.r)) == 0


@pytest.fixture(scope="session")
def layer_cls() -> type[Layer]:
    """The brute-force layer class (a fixture, so test modules need not import conftest)."""
    return Layer


@pytest.fixture(scope="session")
def independent():
    """The oracle that shares no code with bnderive (tests/oracle.py): ``independent(form)`` is
    {equation number: True (equal to the brute-force truth), False (different), None (the
    oracle cannot tell)} for every line of a TOML form the truth knows, at float64 points
    (BatchNorm and InstanceNorm by ``conftest.Layer``; LayerNorm, GroupNorm and RMSNorm by
    ``oracle.family_truth``)."""
    import oracle

    truths: dict[tuple, oracle.Truth] = {}

    def judge(form: Form, m: int | None = None, seed: int = 0) -> dict[int, bool | None]:
        m = m or (4 if form.order == 2 else 5)
        key = (oracle.Conventions.of(form), form.order, m)
        if key[0].per_set != "batch":  # LayerNorm, GroupNorm, RMSNorm: γ_k per element
            if key not in truths:
                truths[key] = oracle.family_truth(m, key[0])
            return oracle.judge(form, truths[key], oracle.family_points(m, 3, seed))
        if key not in truths:
            truths[key] = oracle.brute_truth(Layer, m, key[0], form.order)
        return oracle.judge(form, truths[key], oracle.random_points(m, 3, seed))

    return judge
