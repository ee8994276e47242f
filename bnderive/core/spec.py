"""The configuration of one BatchNorm layer: reduction mode, sizes, training or eval, conventions.

PER_ACTIVATION (cuDNN's word) normalizes an (N, D) input per feature over the batch: the
reduction set of feature d is {x[n, d] : n}, of size M = N.  SPATIAL normalizes an (N, C, H, W)
input per channel over batch and space: the reduction set of channel c is {x[n, c, h, w]}, of size
M = N·H·W.  Everything downstream works on one reduction set at a time.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass

from bnderive.errors import SpecError


class Mode(enum.Enum):
    PER_ACTIVATION = "per-activation"
    SPATIAL = "spatial"

    @classmethod
    def parse(cls, value: str | Mode) -> Mode:
        if isinstance(value, Mode):
            return value
        key = str(value).strip().lower().replace("_", "-")
        for mode in cls:
            if key == mode.value:
                return mode
        raise SpecError(
            f"Unknown mode {value!r}: use 'per-activation' for (N, D) input "
            "or 'spatial' for (N, C, H, W) input."
        )


@dataclass(frozen=True)
class Spec:
    """What to differentiate.

    ``c`` is the number of features D in PER_ACTIVATION mode and the number of channels C in
    SPATIAL mode; ``h`` and ``w`` are 1 in PER_ACTIVATION mode.

    Conventions (DESIGN.md §1): ``unbiased=False`` is the biased training-mode variance (1/M);
    ``unbiased=True`` uses Bessel's 1/(M-1) in the forward.  ``eps_inside=True`` normalizes by
    √(σ²+ε); ``False`` by √σ² + ε.  ``training=False`` is eval mode: μ and σ² are the running
    statistics, constants of the graph.
    """

    mode: Mode = Mode.PER_ACTIVATION
    n: int = 4
    c: int = 1
    h: int = 1
    w: int = 1
    training: bool = True
    unbiased: bool = False
    eps_inside: bool = True
    #: ε = 0: a post that never writes ε normalizes by √σ² (``epsilon: none``).
    eps_zero: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", Mode.parse(self.mode))
        for name in ("n", "c", "h", "w"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise SpecError(
                    f"Size {name}={value!r} is not an integer: give a whole number ≥ 1."
                )
            if value < 1:
                raise SpecError(f"Size {name}={value} must be at least 1 (a batch needs elements).")
        if self.mode is Mode.PER_ACTIVATION and (self.h, self.w) != (1, 1):
            raise SpecError(
                f"PER_ACTIVATION mode takes (N, D) input, but h={self.h}, w={self.w} were given: "
                "use --mode spatial for (N, C, H, W) input."
            )
        if self.training and self.unbiased and self.m < 2:
            raise SpecError(
                f"The Bessel-corrected variance divides by M-1 = {self.m - 1}: "
                "use at least two elements per reduction set, or the biased variance."
            )

    # -- shape and reduction sets -------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        if self.mode is Mode.PER_ACTIVATION:
            return (self.n, self.c)
        return (self.n, self.c, self.h, self.w)

    @property
    def m(self) -> int:
        """The size M of one reduction set."""
        return self.n * self.h * self.w

    @property
    def reduction_axes(self) -> tuple[int, ...]:
        return (0,) if self.mode is Mode.PER_ACTIVATION else (0, 2, 3)

    def positions(self, channel: int) -> list[tuple[int, ...]]:
        """The positions of one reduction set in the input array, in row-major order."""
        if self.mode is Mode.PER_ACTIVATION:
            return [(n, channel) for n in range(self.n)]
        return [
            (n, channel, h, w)
            for n, h, w in itertools.product(range(self.n), range(self.h), range(self.w))
        ]

    def conventions(self) -> str:
        """'training, biased variance, ε inside √': the conventions in words."""
        return conventions_text(self.training, self.unbiased, self.eps_inside, self.eps_zero)

    def describe(self) -> str:
        dims = "×".join(str(s) for s in self.shape)
        conv = []
        conv.append("training" if self.training else "eval")
        conv.append("unbiased var" if self.unbiased else "biased var")
        if self.eps_zero:
            conv.append("ε = 0")
        else:
            conv.append("ε inside √" if self.eps_inside else "ε outside √")
        return f"{self.mode.value} {dims} (M={self.m}; {', '.join(conv)})"


def conventions_text(
    training: bool, unbiased: bool, eps_inside: bool, eps_zero: bool = False
) -> str:
    """The conventions of a layer or a form in words, as every command prints them."""
    return ", ".join(
        [
            "training" if training else "eval",
            "Bessel variance" if unbiased else "biased variance",
            "ε = 0" if eps_zero else "ε inside √" if eps_inside else "ε outside √",
        ]
    )


def parse_sizes(text: str) -> list[int]:
    """'1-6' → [1..6]; '4,8,16' → [4, 8, 16]; '64' → [64]."""
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(v) for v in part.split("-", 1))
                out.extend(range(lo, hi + 1))
            elif part:
                out.append(int(part))
        except ValueError:
            raise SpecError(
                f"Cannot read the sizes {text!r}: write a range like 1-6 or a list like 4,8,16."
            ) from None
    if not out:
        raise SpecError(f"No sizes in {text!r}: write a range like 1-6 or a list like 4,8,16.")
    return out


def parse_shape(text: str) -> Spec:
    """'8,3' → PER_ACTIVATION (N, D); '2,2,2,3' → SPATIAL (N, C, H, W)."""
    try:
        dims = [int(v) for v in str(text).replace("x", ",").replace("×", ",").split(",")]
    except ValueError:
        raise SpecError(
            f"Cannot read the shape {text!r}: write N,D or N,C,H,W, e.g. 2,2,2,3."
        ) from None
    if len(dims) == 2:
        return Spec(Mode.PER_ACTIVATION, n=dims[0], c=dims[1])
    if len(dims) == 4:
        return Spec(Mode.SPATIAL, n=dims[0], c=dims[1], h=dims[2], w=dims[3])
    raise SpecError(
        f"The shape {text!r} has {len(dims)} dimensions: give N,D (PER_ACTIVATION) or N,C,H,W (SPATIAL)."
    )
