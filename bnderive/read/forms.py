"""Forms: derivations as data.  One TOML file per published derivation.

A form file names its source, its conventions and its equations in order.  Each equation
*defines* a quantity (``dx[i]``, ``dvar``, ...) by a machine-checkable expression in the index
notation of ``notation.py`` and keeps the LaTeX as published, for display::

    name = "compact"
    title = "Compact form"
    sources = ["Author, Title, URL"]

    [conventions]          # optional; these are the defaults
    variance = "biased"    # or "unbiased" (Bessel's 1/(M-1) in the forward)
    epsilon = "inside"     # or "outside" (√σ² + ε)
    training = true        # false: eval mode, μ and σ² are the running statistics

A form of one of BatchNorm's relatives says so: ``norm = "layer"`` (or ``instance``, ``group``,
``rms``); its γ and β are then ``gamma[k]``, ``beta[k]`` where they vary within a reduction set
(LayerNorm, GroupNorm, RMSNorm), and RMSNorm's statistic is ``ms`` (see ``notation``).

    [[equations]]
    defines = "dbeta"
    latex = '\\frac{\\partial L}{\\partial \\beta} = \\sum_i \\frac{\\partial L}{\\partial y_i}'
    expr = "sum(g[k], k)"

Later equations may use the quantities defined before them.  A quantity that is not one of
dy, dxhat, dvar, dmu, dx, dgamma, dbeta is an auxiliary definition: usable, not checked.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sympy as sp

from bnderive.core import notation as N
from bnderive.core.limits import EQUATIONS, measure
from bnderive.core.spec import Mode, Norm, Spec, conventions_text
from bnderive.errors import BnderiveError, FormError
from bnderive.read.files import read_text

_DEFINES = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_]*)\s*(?:\[\s*([a-z])\s*\])?\s*$")


#: What an equation is (``Equation.kind``):
#: ``quantity``   compared with the truth of ``name`` (an auxiliary definition when the truth has
#:                no such quantity); its value is what later lines mean by ``name``.
#: ``definition`` a name of the derivation's own (t = 1/√(σ²+ε)): used by later lines, no verdict.
#: ``reference``  what a later ``checked`` equation must equal (μ of the forward graph, the true
#:                local derivative, the left side of an identity): never reported by itself.
#: ``checked``    compared with its reference equation (``Form.references``), not with a truth.
KINDS = ("quantity", "definition", "reference", "checked")


@dataclass(frozen=True)
class Equation:
    number: int  # 1-based position in the form
    name: str  # the quantity it defines
    index: sp.Symbol | None  # the free index of an elementwise quantity
    expr: sp.Expr
    text: str  # the expression as written in the file
    latex: str
    kind: str = "quantity"

    @property
    def elementwise(self) -> bool:
        return self.index is not None

    @property
    def stored(self) -> bool:
        """Does a later line see this value under ``name``?  References and checked equations
        are stored under a private name: a forward definition (μ = …) never replaces μ, so a
        later line uses it as written only where it holds (then it is μ)."""
        return self.kind in ("quantity", "definition")

    @property
    def store_name(self) -> str:
        return self.name if self.stored else f"_{self.kind}{self.number}"

    @property
    def label(self) -> str:
        return f"{self.name}[{self.index}]" if self.index is not None else self.name


@dataclass(frozen=True)
class ReadingGroup:
    """A member of a document's line that reads more than one way (a scope its notation leaves
    open: the Σ's body, braces around a sum, what ∂/∂x_i applies to): the equation of each
    reading, in the order of ``labels`` (each reading in words), the ``question`` and how to
    write the line so that it reads one way (``fix``).  Its verdict is that of every reading
    (``verify.readings``): holds only if each holds, refuted only if each is refuted."""

    equations: tuple[int, ...]
    question: str
    labels: tuple[str, ...]
    fix: str


@dataclass(frozen=True)
class Form:
    name: str
    title: str
    sources: tuple[str, ...]
    equations: tuple[Equation, ...]
    unbiased: bool = False
    eps_inside: bool = True
    training: bool = True
    modes: tuple[Mode, ...] = (Mode.PER_ACTIVATION, Mode.SPATIAL)
    description: str = ""
    path: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)
    order: int = 1  # 2: a double backward (gI, gG, ggO)
    eps_zero: bool = False  # ε = 0: a post that never writes ε normalizes by √σ²
    norm: Norm = Norm.BATCH  # the family the form is a derivation for

    def conventions(self) -> str:
        """'training, biased variance, ε inside √': the form's conventions in words."""
        return conventions_text(
            self.training, self.unbiased, self.eps_inside, self.eps_zero, norm=self.norm
        )

    def spec(self, base: Spec) -> Spec:
        """``base`` with this form's conventions.  A base of the same per-set mathematics keeps
        its family (a LayerNorm form checked as GroupNorm); otherwise the form's family is used,
        with the base's layout and sizes."""
        norm = base.norm if base.norm.per_set == self.norm.per_set else self.norm
        same = norm is base.norm
        mode = base.mode
        if not same and mode not in self.modes:  # InstanceNorm, GroupNorm: (N, C, H, W) only
            mode = self.modes[0]
        return Spec(
            mode=mode,
            n=base.n,
            c=base.c,
            h=base.h,
            w=base.w,
            training=self.training,
            unbiased=self.unbiased,
            eps_inside=self.eps_inside,
            eps_zero=self.eps_zero,
            norm=norm,
            groups=base.groups if same else 1,
            last_axes=base.last_axes if same else None,
        )

    def equation(self, name: str) -> Equation:
        for eq in self.equations:
            if eq.name == name:
                return eq
        raise KeyError(name)


def load_form(path: str | Path, text: str | None = None, norm: Norm | None = None) -> Form:
    """Read one form file; every problem is a ``FormError`` naming the file and the equation.

    ``norm`` is the family the caller expects (``--norm``): a file without a ``norm`` key is
    read as that family; a file that names a family of other per-set mathematics is an error."""
    path = Path(path)
    where = str(path)
    if text is None:
        text = read_text(path, "a form file (TOML; `bnderive forms --example` prints one)")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FormError(
            f"{where}: not valid TOML ({exc}). See `bnderive forms --example` for the format."
        ) from None
    return form_from_dict(data, where, norm)


def form_from_dict(data: dict, where: str, norm: Norm | None = None) -> Form:
    """A form from the parsed TOML table ``data``; ``where`` names it in error messages.
    ``norm``: see ``load_form``."""

    def need(key: str, kind: type) -> object:
        if key not in data:
            raise FormError(f"{where}: the key {key!r} is missing.")
        if not isinstance(data[key], kind):
            raise FormError(f"{where}: {key!r} must be a {kind.__name__}.")
        return data[key]

    _known_keys(data, _KEYS, where, "key", "bnderive forms --example")
    name = str(need("name", str))
    if not name.strip() or len(name) > 200:
        raise FormError(f"{where}: name = {name[:60]!r}; give a name of 1 to 200 characters.")
    title = _text(data, "title", name, where)
    description = _text(data, "description", "", where)
    sources = _texts(data, "sources", where)
    notes = _texts(data, "notes", where)
    variance, epsilon, training, family = _conventions_and_family(data, where, norm)
    modes = _modes(data, where, family, norm)
    order = data.get("order", 1)
    if order not in (1, 2) or isinstance(order, bool):
        raise FormError(f"{where}: order = {order!r}; use 1 (backward) or 2 (double backward).")
    if order == 2 and family is not Norm.BATCH:
        raise FormError(f"{where}: the double backward (order = 2) is derived for BatchNorm only.")
    raw_equations = need("equations", list)
    if not raw_equations:
        raise FormError(f"{where}: the form has no equations; add [[equations]] tables.")
    if len(raw_equations) > EQUATIONS.limit:
        raise FormError(f"{where}: " + EQUATIONS.message(f"{len(raw_equations):,}"))
    equations: list[Equation] = []
    defined: dict[str, sp.Basic] = {}
    known = N.quantities(family.affine_per_element, family.centred)
    degrees: dict[object, float] = {}
    for number, entry in enumerate(raw_equations, start=1):
        at = f"{where}, equation {number}"
        eq = _equation(number, entry, at, family, known, defined)
        bounded_equation(number, eq.name, eq.index, eq.expr, eq.text, degrees, at)
        equations.append(eq)
        defined[eq.name] = sp.IndexedBase(eq.name) if eq.index is not None else sp.Symbol(eq.name)
    return Form(
        name=name,
        title=title,
        sources=sources,
        equations=tuple(equations),
        unbiased=variance == "unbiased",
        eps_inside=epsilon == "inside",
        training=training,
        modes=modes,
        description=description,
        path=where,
        notes=notes,
        order=order,
        norm=family,
    )


def _conventions_and_family(
    data: dict, where: str, expected: Norm | None
) -> tuple[str, str, bool, Norm]:
    """(variance, epsilon, training, the family) of a form's table; ``expected`` is the family
    the caller expects (``load_form``'s ``norm``)."""
    conventions = data.get("conventions", {})
    if not isinstance(conventions, dict):
        raise FormError(f"{where}: [conventions] must be a table.")
    _known_keys(conventions, _CONVENTION_KEYS, f"{where}, [conventions]", "convention", "")
    variance = conventions.get("variance", "biased")
    epsilon = conventions.get("epsilon", "inside")
    training = conventions.get("training", True)
    if variance not in ("biased", "unbiased"):
        raise FormError(
            f"{where}: conventions.variance is {variance!r}; use 'biased' or 'unbiased'."
        )
    if epsilon not in ("inside", "outside"):
        raise FormError(f"{where}: conventions.epsilon is {epsilon!r}; use 'inside' or 'outside'.")
    if not isinstance(training, bool):
        raise FormError(f"{where}: conventions.training must be true or false.")
    try:
        norm = Norm.parse(data.get("norm", expected.value if expected else "batch"))
    except Exception as exc:
        raise FormError(f"{where}: norm: {exc}") from None
    if expected is not None and norm.per_set != expected.per_set:
        raise FormError(
            f'{where}: the form is a derivation for {norm.title} (norm = "{norm.value}"), '
            f"not for {expected.title}: check it with --norm {norm.value}."
        )
    if expected is not None:
        norm = expected
    if norm is not Norm.BATCH and not training:
        raise FormError(
            f"{where}: conventions.training = false is BatchNorm's eval mode; {norm.title} "
            "normalizes every sample by its own statistics and has no eval mode."
        )
    if norm is Norm.RMS and variance == "unbiased":
        raise FormError(f"{where}: RMSNorm has no variance; conventions.variance does not apply.")
    return variance, epsilon, training, norm


def _modes(data: dict, where: str, norm: Norm, expected: Norm | None) -> tuple[Mode, ...]:
    """The layouts a form is checked in (InstanceNorm and GroupNorm: SPATIAL only)."""
    # InstanceNorm and GroupNorm take (N, C, H, W) input only.
    spatial_only = norm in (Norm.INSTANCE, Norm.GROUP)
    modes_raw = data.get("modes", ["spatial"] if spatial_only else ["per-activation", "spatial"])
    if not isinstance(modes_raw, list) or not modes_raw:
        raise FormError(f'{where}: modes must be a list such as ["per-activation", "spatial"].')
    try:
        modes = tuple(Mode.parse(m) for m in modes_raw)
    except BnderiveError as exc:
        raise FormError(f"{where}: modes: {exc}") from None
    if spatial_only and expected is not None:  # a LayerNorm form checked as GroupNorm
        modes = (Mode.SPATIAL,)
    if spatial_only and Mode.PER_ACTIVATION in modes:
        raise FormError(f'{where}: {norm.title} takes (N, C, H, W) input: modes = ["spatial"].')
    return modes


def _equation(
    number: int,
    entry: Any,
    at: str,
    norm: Norm,
    known: dict[str, bool],
    defined: dict[str, sp.Basic],
) -> Equation:
    """One [[equations]] table, read as data: the quantity it defines (and its index) and its
    expression, which may use the quantities ``defined`` by the lines before it."""
    if not isinstance(entry, dict) or "defines" not in entry or "expr" not in entry:
        raise FormError(f"{at}: each [[equations]] table needs 'defines' and 'expr'.")
    _known_keys(entry, _EQUATION_KEYS, at, "key", "")
    if not isinstance(entry["expr"], str) or not isinstance(entry.get("latex", ""), str):
        raise FormError(f'{at}: expr (and latex) must be a string, e.g. expr = "sum(g[k], k)".')
    match = _DEFINES.match(str(entry["defines"]))
    if not match:
        raise FormError(
            f"{at}: defines = {entry['defines']!r}; write a name, with [i] when the quantity "
            "has one value per element (e.g. 'dx[i]', 'dvar')."
        )
    qname, index_name = match.group(1), match.group(2)
    index = sp.Symbol(index_name, integer=True) if index_name else None
    if qname in known and known[qname] != (index is not None):
        want = f"{qname}[i]" if known[qname] else qname
        raise FormError(
            f"{at}: {qname} is {'per element' if known[qname] else 'one value per channel'}; write defines = {want!r}."
        )
    inputs = {"x", "g", "xhat", "y", "mu", "var", "gamma", "beta", "eps", "M", "ms"}
    # The double backward's inputs too: the evaluator memoizes sums over inputs, so a line
    # that redefined ggB would make later sums read a stale value (a false "holds").
    inputs |= {"ggI", "ggG", "ggB"}
    if qname in inputs:
        raise FormError(f"{at}: {qname} is an input or a forward stage and cannot be redefined.")
    if qname in _RESERVED:
        raise FormError(
            f"{at}: {qname} is {'an index letter' if len(qname) == 1 else 'a name of the notation'}"
            " and cannot be defined; choose another name."
        )
    expr = N.parse(
        str(entry["expr"]),
        where=at,
        extra=defined,
        per_element_affine=norm.affine_per_element,
        centred=norm.centred,
    )
    if index is not None and index != N.i:
        if N.i in expr.atoms(sp.Symbol):  # renaming would clash with (or capture into) i
            raise FormError(
                f"{at}: the line defines {qname}[{index}] but also uses i; write the free "
                "index as i, or rename the other index."
            )
        expr = expr.xreplace({index: N.i})
        index = N.i
    free = sorted(str(s) for s in expr.free_symbols if s in _INDICES and s != index)
    if free:
        raise FormError(
            f"{at}: the index {', '.join(free)} in {entry['expr']!r} is neither summed over "
            f"(sum(…, {free[0]})) nor the element the line defines"
            + (f" ({qname}[i])" if index is not None else f" ({qname} has none)")
            + "."
        )
    return Equation(number, qname, index, expr, str(entry["expr"]), str(entry.get("latex", "")))


_KEYS = (
    "name", "title", "sources", "description", "conventions", "norm", "modes", "order",
    "equations", "notes",
)  # fmt: skip
_CONVENTION_KEYS = ("variance", "epsilon", "training")
_EQUATION_KEYS = ("defines", "expr", "latex")
_INDICES = frozenset(N.INDICES)
#: Names a line may not define: they mean something in every expression.
_RESERVED = frozenset({str(s) for s in N.INDICES} | set(N.FUNCTIONS) | set(N.ALIASES))


def _known_keys(table: dict, known: tuple[str, ...], where: str, what: str, example: str) -> None:
    """An unknown key is an error, like an unknown front-matter key of a derivation: a typo
    (``varaince``) must not silently leave a default in place."""
    unknown = [k for k in table if k not in known]
    if unknown:
        hint = f" (`{example}` prints a complete form)" if example else ""
        raise FormError(
            f"{where}: unknown {what} {unknown[0]!r}; the known ones are {', '.join(known)}{hint}."
        )


def _text(data: dict, key: str, default: str, where: str) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise FormError(f"{where}: {key} must be a string.")
    return value


def _texts(data: dict, key: str, where: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FormError(f"{where}: {key} must be a list of strings.")
    return tuple(value)


def bounded_equation(
    number: int,
    name: str,
    index: sp.Symbol | None,
    expr: sp.Expr,
    text: str,
    degrees: dict[object, float],
    at: str = "",
) -> None:
    """The caps of ``limits.measure`` on one more equation of a form, with the quantities that
    earlier lines define counted at their own degree, since checking substitutes them: a chain
    of helpers h2 = h1**16, h3 = h2**16, … is refused here, not expanded for ever later.
    ``degrees`` (quantity → degree) is updated with this line's."""
    where = at or f"equation {number}"
    if number > EQUATIONS.limit:
        raise FormError(f"{where}: " + EQUATIONS.message(f"{number:,}"))
    found = measure(expr, known=degrees)
    if isinstance(found, str):
        raise FormError(
            f"{where}: {text!r} cannot be checked with the lines before it: {found.rstrip('.')}."
        )
    degrees[sp.IndexedBase(name) if index is not None else sp.Symbol(name)] = found[0]
