"""Running statistics: how each framework keeps the mean and variance BatchNorm uses in eval mode.

In training mode BatchNorm normalizes with the batch's own μ and σ²; it also keeps a running
average of them, which eval mode uses instead.  Every framework keeps that average as

    running ← (1 − w)·running + w·batch                          (w the weight of the new batch)

but they differ in three places, and so their eval-mode layers differ after the same training:

* the weight: PyTorch's ``momentum = 0.1`` *is* w; CS231n's 0.9, Keras' 0.99 and TensorFlow's
  ``ExponentialMovingAverage(decay)`` weigh the *old* value (w = 1 − momentum); cuDNN's
  ``exponentialAverageFactor`` is w, and with w = 1/(1 + n) at the n-th call (n = 0, 1, …) the
  average is the cumulative mean of every batch so far;
* the variance averaged: the biased σ² = (1/M)Σ(x − μ)² the forward normalizes with
  (CS231n's ``np.var``, Keras' ``ops.moments``, ``tf.nn.moments``), or the unbiased
  M/(M − 1)·σ² (PyTorch, cuDNN, TensorFlow's fused kernel);
* where it starts: PyTorch and Keras at (0, 1), CS231n at (0, 0), TensorFlow's moving average of a
  tensor at 0 (without zero-debiasing, the default); cuDNN's first call takes factor 1.

``simulate`` runs every convention on the same batches in exact rational arithmetic (momenta such
as 0.99 are the fractions they stand for), so the differences it shows are the conventions' alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from random import Random


@dataclass(frozen=True)
class Convention:
    """One framework's running-statistics update."""

    name: str
    source: str  # where it comes from
    #: w, the weight of the new batch at call n (0 for the first call); None: cumulative 1/(1+n)
    weight: Fraction | None
    unbiased: bool  # average M/(M−1)·σ² instead of σ²
    start: tuple[Fraction, Fraction]  # (running μ, running σ²) before the first call
    words: str  # the update in words, for tables

    def weight_at(self, call: int) -> Fraction:
        return self.weight if self.weight is not None else Fraction(1, 1 + call)


def conventions(decay: Fraction = Fraction(1, 2)) -> list[Convention]:
    """The five conventions of issue 16; ``decay`` is TensorFlow's ExponentialMovingAverage's."""
    zero, one = Fraction(0), Fraction(1)
    return [
        Convention(
            "tf-ema",
            "tf.train.ExponentialMovingAverage(decay) over tf.nn.moments: shadow = "
            "decay·shadow + (1 − decay)·value; a tensor's shadow starts at 0",
            1 - decay,
            False,
            (zero, zero),
            f"{_num(decay)}·r + {_num(1 - decay)}·batch, biased σ²",
        ),
        Convention(
            "keras",
            "keras.layers.BatchNormalization(momentum=0.99): moving = moving·momentum + "
            "batch·(1 − momentum), variance from ops.moments; starts at (0, 1)",
            Fraction(1, 100),
            False,
            (zero, one),
            "0.99·r + 0.01·batch, biased σ²",
        ),
        Convention(
            "cs231n",
            "CS231n batchnorm_forward: running = momentum·running + (1 − momentum)·batch, "
            "momentum 0.9, np.var; bn_param starts at zeros",
            Fraction(1, 10),
            False,
            (zero, zero),
            "0.9·r + 0.1·batch, biased σ²",
        ),
        Convention(
            "pytorch",
            "torch.nn.BatchNorm (momentum=0.1): running = (1 − momentum)·running + "
            "momentum·batch, unbiased variance; starts at (0, 1)",
            Fraction(1, 10),
            True,
            (zero, one),
            "0.9·r + 0.1·batch, unbiased σ²",
        ),
        Convention(
            "cudnn",
            "cudnnBatchNormalizationForwardTraining, exponentialAverageFactor = 1/(1 + n) at "
            "the n-th call: the cumulative moving average; unbiased variance",
            None,
            True,
            (zero, one),
            "(n·r + batch)/(n + 1), unbiased σ²",
        ),
    ]


def _num(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{float(value):g}"


@dataclass
class Track:
    """One convention's running statistics after each call."""

    convention: Convention
    means: list[Fraction] = field(default_factory=list)
    variances: list[Fraction] = field(default_factory=list)


@dataclass
class Simulation:
    """Every convention run over the same batches of one feature."""

    batches: list[list[Fraction]]
    tracks: list[Track]
    gamma: Fraction
    beta: Fraction
    eps: Fraction
    probe: Fraction  # the input the eval-mode outputs are compared at

    @property
    def steps(self) -> int:
        return len(self.batches)

    def population(self, upto: int | None = None) -> tuple[Fraction, Fraction]:
        """μ and the biased σ² of every value of the first ``upto`` batches (all by default)."""
        values = [v for batch in self.batches[:upto] for v in batch]
        mean = sum(values, Fraction(0)) / len(values)
        return mean, sum(((v - mean) ** 2 for v in values), Fraction(0)) / len(values)

    def eval_output(self, mean: Fraction, var: Fraction) -> float:
        """γ·(probe − μ)/√(σ² + ε) + β, the eval-mode layer at the probe (float: a root)."""
        return float(self.gamma) * float(self.probe - mean) / float(var + self.eps) ** 0.5 + float(
            self.beta
        )


def batch_statistics(batch: Sequence[Fraction], unbiased: bool) -> tuple[Fraction, Fraction]:
    m = len(batch)
    mean = sum(batch, Fraction(0)) / m
    squares = sum(((v - mean) ** 2 for v in batch), Fraction(0))
    return mean, squares / (m - 1 if unbiased else m)


def simulate(
    steps: int = 20,
    batch: int = 8,
    mean: int = 3,
    spread: int = 4,
    seed: int = 0,
    decay: Fraction = Fraction(1, 2),
    gamma: Fraction = Fraction(3, 2),
    beta: Fraction = Fraction(1, 4),
    eps: Fraction = Fraction(1, 100000),
    probe: Fraction | None = None,
) -> Simulation:
    """``steps`` training steps of every convention on the same batches: integers drawn around
    ``mean`` (uniform in mean ± spread, seeded), ``batch`` values each (M = batch, one feature)."""
    if batch < 2:
        raise ValueError("a batch needs two values for the unbiased variance")
    rng = Random(seed)
    batches = [
        [Fraction(mean + rng.randint(-spread, spread)) for _ in range(batch)] for _ in range(steps)
    ]
    tracks = []
    for convention in conventions(decay):
        track = Track(convention)
        run_mean, run_var = convention.start
        for call, values in enumerate(batches):
            w = convention.weight_at(call)
            mu, var = batch_statistics(values, convention.unbiased)
            run_mean = (1 - w) * run_mean + w * mu
            run_var = (1 - w) * run_var + w * var
            track.means.append(run_mean)
            track.variances.append(run_var)
        tracks.append(track)
    return Simulation(
        batches, tracks, gamma, beta, eps, probe if probe is not None else Fraction(mean + spread)
    )


__all__ = ["Convention", "Simulation", "Track", "batch_statistics", "conventions", "simulate"]
