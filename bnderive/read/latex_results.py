"""What reading LaTeX gives: a line as read (``LineRead``), a member read more than one way
(``Readings``), and what stops a reading: ``LatexError`` (with its line and column),
``NotCheckable`` (understood, but no value to check), ``Ambiguous`` (a scope the notation
leaves open, its ``Ambiguity``: the question, each reading, the fix).
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from bnderive.errors import FormError


class LatexError(FormError):
    """LaTeX that bnderive cannot read: the message names the token, line, column, expectation."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        self.line = line
        self.column = column
        where = f"line {line}, column {column}: " if line is not None else ""
        super().__init__(where + message)
        self.reason = message
        #: a line whose right side is not read but whose left side is: what the left side says
        #: (the rows that continue the line compare with it)
        self.partial: LineRead | None = None


class NotCheckable(LatexError):
    """Understood, but not a value bnderive can check (a local derivative such as ∂σ²/∂x_i)."""


Pos = tuple[int, int]


@dataclass(frozen=True)
class Ambiguity:
    """A scope the notation leaves open, found while reading (the Σ's body, braces around a
    sum, what \\frac{\\partial}{\\partial x_i} applies to): the question, each reading in
    words, how to write it so that it reads one way.  ``blanks``: per reading, the places in the
    text (its braces) that reading does without: it is the text read again without them, the
    other readings are chosen at ``(kind, pos)`` (``_Meaning.choose``)."""

    kind: str
    pos: Pos
    question: str
    labels: tuple[str, ...]
    fix: str
    blanks: tuple[tuple[Pos, ...], ...] = ()

    @property
    def message(self) -> str:
        return f"{self.question}? {self.fix}"


class Ambiguous(LatexError):
    """A scope met while reading that has more than one reading (``Ambiguity``):
    ``parse_equation_line`` reads the line once per reading."""

    def __init__(self, ambiguity: Ambiguity, line: int, column: int) -> None:
        super().__init__(ambiguity.message, line, column)
        self.ambiguity = ambiguity


@dataclass(frozen=True)
class Readings:
    """A member of a line that reads more than one way: its value under each reading (None:
    not read that way, ``errors`` says why), each reading in words, the question and the fix."""

    question: str
    labels: tuple[str, ...]
    values: tuple[sp.Expr | None, ...]
    errors: tuple[str, ...]
    fix: str


@dataclass(frozen=True)
class LineRead:
    """One line of a derivation as bnderive read it.

    ``kind`` says what the left side is: ``adjoint`` (∂L/∂x̂_i, ∂L/∂σ², ... and ∂L/∂y_i),
    ``local`` (a local derivative ∂x̂_k/∂σ², ∂y_k/∂x_i, ∂(γx̂ + β)/∂x̂_k), ``forward`` (μ, σ², x̂_i,
    y_i of the forward graph), ``name`` (a name of the post's own: t = 1/√(σ²+ε)), ``identity``
    (any other expression: each right side must equal it), ``prose`` (\\text{…} alone) or
    ``none`` (nothing checkable; ``reason`` says why).  Right sides keep local derivatives as
    ``notation.Partial``: the document gives them their values.
    """

    sides: tuple[sp.Expr | None, ...]  # the first is None for an `&= …` continuation
    defines: str | None  # dx, dvar, mu, dxhat_dvar, t, ... (None for identities)
    index: sp.Symbol | None  # N.i for an elementwise quantity
    source_index: sp.Expr | None  # the left side's own element index (x_j: j), for continuations
    reason: str = ""  # why the line defines nothing checkable
    kind: str = "adjoint"
    #: A scalar quantity (∂L/∂γ) whose right side has a free element index: a claim for every i.
    per_element: bool = False
    #: ∂y_k/∂x_i and other two-index quantities: both sides read as Σ_k g_k·(…) (see below).
    contracted: bool = False
    #: Why a member of the right side (None in ``sides``) was not read or cannot be checked.
    member_errors: tuple[str, ...] = ()
    #: The two features of a line like ∂ĥ_{kl}/∂h_{ij} (read at l = j), for its continuations.
    cross: tuple[str, str] | None = None
    #: ∂y_k/∂x_i: the index k (as written) the line is contracted over, for its continuations.
    contract_over: sp.Expr | None = None
    #: ``node`` (the gradient of a node of the post's own, read from code): its true value,
    #: worked out in the post's graph, and the lines of that graph it went through.
    value: sp.Expr | None = None
    uses: tuple[int, ...] = ()
    #: code: the name later lines know this line's value by (``dxnorm_dmean = …`` is checked as
    #: ∂x̂_i/∂μ and then used as the post computed it)
    stores: str | None = None
    #: ``node``: the post's own node whose gradient the line states, as written (sq for dsq)
    node: str = ""
    #: What the reading assumed, for the output (Σ_{i=0}^{N} read over the whole set).
    notes: tuple[str, ...] = ()
    #: Einstein's convention: the indices free on the left side, for the rows that continue it.
    keep: tuple[str, ...] = ()
    #: Per member, its readings when it reads more than one way (``Readings``; None for one
    #: that reads one way); empty when every member does.
    readings: tuple[Readings | None, ...] = ()

    @property
    def lhs(self) -> sp.Expr | None:
        return self.sides[0] if self.sides else None

    @property
    def rhs(self) -> tuple[sp.Expr | None, ...]:
        return self.sides[1:]

    @property
    def checkable(self) -> bool:
        return self.kind not in ("prose", "none") and not self.reason

    @property
    def continues(self) -> tuple:
        """What an `&= …` line after this one continues: (kind, quantity, element index, the
        two features of a two-feature line or None)."""
        kind = self.kind if not self.reason else "none"
        return (kind, self.defines, self.source_index, self.cross, self.contract_over, self.keep)
