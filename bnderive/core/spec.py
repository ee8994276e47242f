"""The configuration of one normalization layer: family, layout, sizes, training or eval, conventions.

Every member of the family normalizes *reduction sets* of the input: statistics over a set R,
then an affine map whose parameters are indexed over axes A.  For BatchNorm (the default),
PER_ACTIVATION (cuDNN's word) normalizes an (N, D) input per feature over the batch: the
reduction set of feature d is {x[n, d] : n}, of size M = N.  SPATIAL normalizes an (N, C, H, W)
input per channel over batch and space: the reduction set of channel c is {x[n, c, h, w]}, of size
M = N·H·W.  The relatives (``Norm``) choose other sets:

    family     reduction set R (one per …)                  γ, β indexed like    within a set
    batch      all but the channel axis (per channel)       the channel          one γ
    layer      the last k axes (per sample)                 the last k axes      γ_k per element
    instance   H, W (per sample and channel)                the channel          one γ
    group      C/G channels × H, W (per sample and group)   the channel          γ_k per element
    rms        the last k axes (per sample), no mean        the last k axes      γ_k per element

Everything downstream works on one reduction set at a time; what distinguishes the families
there is only whether γ is one number or one per element, and whether the mean is subtracted.
"""

from __future__ import annotations

import enum
import itertools
import math
from dataclasses import dataclass

from bnderive.core.limits import EXACT_TOTAL_M, SIZE, too_large
from bnderive.errors import SpecError


class Norm(enum.Enum):
    """The normalization family: which elements share statistics (see the module docstring)."""

    BATCH = "batch"
    LAYER = "layer"
    INSTANCE = "instance"
    GROUP = "group"
    RMS = "rms"

    @classmethod
    def parse(cls, value: str | Norm) -> Norm:
        if isinstance(value, Norm):
            return value
        key = str(value).strip().lower().replace("_", "-").removesuffix("norm").rstrip("-")
        for norm in cls:
            if key == norm.value:
                return norm
        raise SpecError(
            f"Unknown normalization {value!r}: use batch, layer, instance, group or rms."
        )

    @property
    def title(self) -> str:
        """'BatchNorm', 'LayerNorm', ...: the layer's usual name."""
        return {
            Norm.BATCH: "BatchNorm",
            Norm.LAYER: "LayerNorm",
            Norm.INSTANCE: "InstanceNorm",
            Norm.GROUP: "GroupNorm",
            Norm.RMS: "RMSNorm",
        }[self]

    @property
    def centred(self) -> bool:
        """Is the mean subtracted?  RMSNorm divides by √(mean(x²)+ε) and has no μ."""
        return self is not Norm.RMS

    @property
    def affine_per_element(self) -> bool:
        """Does γ (and β) take a value per element of a reduction set?  LayerNorm's and RMSNorm's
        are indexed like the normalized axes; GroupNorm's per channel, and a group holds several
        channels.  BatchNorm's and InstanceNorm's are one number per set (per channel)."""
        return self in (Norm.LAYER, Norm.GROUP, Norm.RMS)

    @property
    def has_beta(self) -> bool:
        """RMSNorm (as PyTorch's ``nn.RMSNorm`` and Zhang & Sennrich define it) has no shift."""
        return self is not Norm.RMS

    @property
    def per_set(self) -> str:
        """The per-set mathematics it shares with other families: 'batch' (one γ, centred),
        'layer' (γ per element, centred) or 'rms' (γ per element, no mean)."""
        if not self.centred:
            return "rms"
        return "layer" if self.affine_per_element else "batch"


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
    SPATIAL mode; ``h`` and ``w`` are 1 in PER_ACTIVATION mode.  For the other families ``mode``
    is the layout only: PER_ACTIVATION is an (N, D) input, SPATIAL an (N, C, H, W) one.
    ``norm`` is the family (BatchNorm by default); ``groups`` is GroupNorm's G (it divides C);
    ``last_axes`` is the k of LayerNorm and RMSNorm, which normalize over the last k axes
    (None: every axis but the batch axis, as ``nn.LayerNorm(x.shape[1:])`` does).

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
    norm: Norm = Norm.BATCH
    groups: int = 1
    last_axes: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", Mode.parse(self.mode))
        object.__setattr__(self, "norm", Norm.parse(self.norm))
        if self.norm is not Norm.BATCH:
            self._check_family()
        for name in ("n", "c", "h", "w"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise SpecError(
                    f"Size {name}={value!r} is not an integer: give a whole number ≥ 1."
                )
            if value < 1:
                raise SpecError(f"Size {name}={value} must be at least 1 (a batch needs elements).")
            SIZE.check(value, f"{name} = {value:,}")
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

    def _check_family(self) -> None:
        """The sizes and conventions the family's layer accepts (called for non-BatchNorm)."""
        title = self.norm.title
        if not self.training:
            raise SpecError(
                f"{title} has no running statistics: it normalizes each sample by its own, in "
                "training and in eval alike. Eval mode (--eval) is BatchNorm's."
            )
        if self.norm in (Norm.INSTANCE, Norm.GROUP) and self.mode is not Mode.SPATIAL:
            raise SpecError(
                f"{title} takes (N, C, H, W) input (statistics over H, W"
                + (" and the channels of a group" if self.norm is Norm.GROUP else "")
                + "): give --mode spatial (for (N, C, L) input use H = 1)."
            )
        if self.norm is Norm.GROUP:
            if isinstance(self.groups, bool) or not isinstance(self.groups, int):
                raise SpecError(f"groups={self.groups!r} is not an integer: give G ≥ 1.")
            if self.groups < 1 or self.c % self.groups:
                raise SpecError(
                    f"GroupNorm needs G groups that divide the C = {self.c} channels; "
                    f"G = {self.groups} does not: choose --groups among "
                    f"{', '.join(str(g) for g in range(1, self.c + 1) if self.c % g == 0)}."
                )
        elif self.groups != 1:
            raise SpecError(f"--groups belongs to GroupNorm (--norm group), not to {title}.")
        ndim = len(self.shape)
        if self.norm in (Norm.LAYER, Norm.RMS):
            k = self.last_axes
            if k is not None and (
                isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < ndim
            ):
                raise SpecError(
                    f"{title} normalizes over the last k axes of the {ndim}-D input, "
                    f"1 ≤ k ≤ {ndim - 1}; k = {k!r} is not one of them."
                )
        elif self.last_axes is not None:
            raise SpecError(
                f"The number of normalized axes belongs to LayerNorm and RMSNorm, not to {title}."
            )
        if self.norm is Norm.RMS and self.unbiased:
            raise SpecError(
                "RMSNorm has no mean and no variance: it divides by √(mean(x²)+ε), so Bessel's "
                "correction (--unbiased) does not apply."
            )

    # -- shape and reduction sets -------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        if self.mode is Mode.PER_ACTIVATION:
            return (self.n, self.c)
        return (self.n, self.c, self.h, self.w)

    @property
    def normalized_axes(self) -> int:
        """LayerNorm's and RMSNorm's k: how many trailing axes one reduction set spans."""
        return self.last_axes if self.last_axes is not None else len(self.shape) - 1

    @property
    def m(self) -> int:
        """The size M of one reduction set."""
        if self.norm is Norm.BATCH:
            return self.n * self.h * self.w
        if self.norm is Norm.INSTANCE:
            return self.h * self.w
        if self.norm is Norm.GROUP:
            return self.c // self.groups * self.h * self.w
        return math.prod(self.shape[-self.normalized_axes :])

    @property
    def sets(self) -> int:
        """How many reduction sets the input has (BatchNorm: one per channel)."""
        return math.prod(self.shape) // self.m

    @property
    def reduction_axes(self) -> tuple[int, ...]:
        """The axes one reduction set spans (GroupNorm: of the (N, G, C/G, H, W) view)."""
        if self.norm is Norm.BATCH:
            return (0,) if self.mode is Mode.PER_ACTIVATION else (0, 2, 3)
        if self.norm is Norm.INSTANCE:
            return (2, 3)
        if self.norm is Norm.GROUP:
            return (2, 3, 4)
        ndim = len(self.shape)
        return tuple(range(ndim - self.normalized_axes, ndim))

    @property
    def affine_shape(self) -> tuple[int, ...]:
        """The shape of γ and β: one per channel, or (LayerNorm, RMSNorm) the normalized shape."""
        if self.norm in (Norm.LAYER, Norm.RMS):
            return self.shape[-self.normalized_axes :]
        return (self.c,)

    def affine_index(self, position: tuple[int, ...]) -> tuple[int, ...]:
        """The index into γ and β that the element at ``position`` is scaled and shifted by."""
        if self.norm in (Norm.LAYER, Norm.RMS):
            return tuple(position[-self.normalized_axes :])
        return (position[1],)

    def positions(self, channel: int) -> list[tuple[int, ...]]:
        """The positions of one reduction set in the input array, in row-major order.

        ``channel`` numbers the sets: the channel (BatchNorm), the sample (LayerNorm over every
        axis but the batch), (sample, channel) as n·C + c (InstanceNorm), (sample, group) as
        n·G + g (GroupNorm); in general the row-major index of the axes a set does not span."""
        if self.norm is Norm.BATCH:
            if self.mode is Mode.PER_ACTIVATION:
                return [(n, channel) for n in range(self.n)]
            return [
                (n, channel, h, w)
                for n, h, w in itertools.product(range(self.n), range(self.h), range(self.w))
            ]
        if not 0 <= channel < self.sets:
            raise SpecError(f"Reduction set {channel} is outside 0..{self.sets - 1}.")
        if self.norm is Norm.INSTANCE:
            n, c = divmod(channel, self.c)
            return [(n, c, h, w) for h, w in itertools.product(range(self.h), range(self.w))]
        if self.norm is Norm.GROUP:
            n, g = divmod(channel, self.groups)
            per = self.c // self.groups
            return [
                (n, c, h, w)
                for c, h, w in itertools.product(
                    range(g * per, (g + 1) * per), range(self.h), range(self.w)
                )
            ]
        k = self.normalized_axes
        lead = _unravel(channel, self.shape[:-k])
        return [lead + rest for rest in itertools.product(*(range(s) for s in self.shape[-k:]))]

    def set_label(self, channel: int) -> str:
        """Reduction set ``channel`` in words: 'channel 0', 'sample 1', 'sample 1, group 0'."""
        if self.norm is Norm.BATCH:
            return f"channel {channel}"
        if self.norm is Norm.INSTANCE:
            n, c = divmod(channel, self.c)
            return f"sample {n}, channel {c}"
        if self.norm is Norm.GROUP:
            n, g = divmod(channel, self.groups)
            return f"sample {n}, group {g}"
        lead = _unravel(channel, self.shape[: -self.normalized_axes])
        names = ("sample", "channel", "row")
        return ", ".join(f"{names[a]} {v}" for a, v in enumerate(lead))

    def conventions(self) -> str:
        """'training, biased variance, ε inside √': the conventions in words."""
        return conventions_text(
            self.training, self.unbiased, self.eps_inside, self.eps_zero, norm=self.norm
        )

    def describe(self) -> str:
        dims = "×".join(str(s) for s in self.shape)
        conv = []
        if self.norm is not Norm.BATCH:
            # The relatives have no train/eval distinction: each sample has its own statistics.
            conv.append("no mean" if not self.norm.centred else "")
            conv.append(
                "" if not self.norm.centred else "unbiased var" if self.unbiased else "biased var"
            )
            conv.append(
                "ε = 0" if self.eps_zero else "ε inside √" if self.eps_inside else "ε outside √"
            )
            groups = f", G={self.groups}" if self.norm is Norm.GROUP else ""
            over = ""
            if self.norm in (Norm.LAYER, Norm.RMS) and self.normalized_axes != len(self.shape) - 1:
                over = f", last {self.normalized_axes} axes"
            words = ", ".join(c for c in conv if c)
            return f"{self.norm.value} {dims}{groups}{over} (M={self.m}; {words})"
        conv.append("training" if self.training else "eval")
        conv.append("unbiased var" if self.unbiased else "biased var")
        if self.eps_zero:
            conv.append("ε = 0")
        else:
            conv.append("ε inside √" if self.eps_inside else "ε outside √")
        return f"{self.mode.value} {dims} (M={self.m}; {', '.join(conv)})"


def _unravel(index: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The row-major position with flat index ``index`` in an array of ``shape``."""
    out = []
    for size in reversed(shape):
        index, rest = divmod(index, size)
        out.append(rest)
    return tuple(reversed(out))


def conventions_text(
    training: bool,
    unbiased: bool,
    eps_inside: bool,
    eps_zero: bool = False,
    norm: Norm = Norm.BATCH,
) -> str:
    """The conventions of a layer or a form in words, as every command prints them.  The
    relatives of BatchNorm have no eval mode (each sample has its own statistics), and RMSNorm
    no mean and no variance."""
    words = [
        "training" if training else "eval",
        "Bessel variance" if unbiased else "biased variance",
        "ε = 0" if eps_zero else "ε inside √" if eps_inside else "ε outside √",
    ]
    if norm is not Norm.BATCH:
        words = words[1:] if norm.centred else ["no mean", words[2]]
    return ", ".join(words)


def parse_sizes(text: str) -> list[int]:
    """'1-6' → [1..6]; '4,8,16' → [4, 8, 16]; '64' → [64]."""
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        try:
            bounds = [int(v) for v in part.split("-", 1)] if part else []
        except ValueError:
            raise SpecError(
                f"Cannot read the sizes {text!r}: write a range like 1-6 or a list like 4,8,16."
            ) from None
        if len(bounds) == 2:
            lo, hi = bounds
            # bounded before it is expanded: 1-100000000 is not a list of 10^8 sizes
            if hi - lo + 1 > EXACT_TOTAL_M.limit:
                raise too_large(f"The number of sizes in {part}", f"{hi - lo + 1:,}", EXACT_TOTAL_M)
            out.extend(range(lo, hi + 1))
        else:
            out.extend(bounds)
        if len(out) > EXACT_TOTAL_M.limit:
            raise too_large(f"The number of sizes in {text}", f"{len(out):,}", EXACT_TOTAL_M)
    if not out:
        raise SpecError(f"No sizes in {text!r}: write a range like 1-6 or a list like 4,8,16.")
    return out


def parse_shape(text: str, norm: Norm | str = Norm.BATCH, groups: int = 1) -> Spec:
    """'8,3' → PER_ACTIVATION (N, D); '2,2,2,3' → SPATIAL (N, C, H, W); of the family ``norm``."""
    norm = Norm.parse(norm)
    try:
        dims = [int(v) for v in str(text).replace("x", ",").replace("×", ",").split(",")]
    except ValueError:
        raise SpecError(
            f"Cannot read the shape {text!r}: write N,D or N,C,H,W, e.g. 2,2,2,3."
        ) from None
    if len(dims) == 2:
        return Spec(Mode.PER_ACTIVATION, n=dims[0], c=dims[1], norm=norm, groups=groups)
    if len(dims) == 4:
        return Spec(
            Mode.SPATIAL, n=dims[0], c=dims[1], h=dims[2], w=dims[3], norm=norm, groups=groups
        )
    raise SpecError(
        f"The shape {text!r} has {len(dims)} dimensions: give N,D (PER_ACTIVATION) or N,C,H,W (SPATIAL)."
    )


def layer_sizes(
    spatial: bool,
    c: int | None = None,
    h: int | None = None,
    w: int | None = None,
    norm: Norm = Norm.BATCH,
    groups: int = 1,
) -> tuple[int, int, int]:
    """(C, H, W) with the defaults ``derive`` and ``explain`` share for sizes left out: H = W = 2
    for SPATIAL input (1 for PER_ACTIVATION); C = 1, except where one reduction set would hold a
    single element: LayerNorm and RMSNorm on (N, D) take D = 3, GroupNorm 2·G channels."""
    if c is None:
        c = 1
        if norm in (Norm.LAYER, Norm.RMS) and not spatial:
            c = 3
        elif norm is Norm.GROUP:
            c = 2 * groups
    if not spatial:
        return c, 1, 1
    return c, 2 if h is None else h, 2 if w is None else w
