"""Find the wrong line: a published derivation with one known mistake of the corpus put in.

The corpus's mutants are exactly that: a form of ``derivations/`` with one mistake put into its
lines by a text edit (``read/corpus/mistakes.toml``).  A quiz draws one by its seed, shows its
lines, and asks which one is wrong.  The answer is not taken from the edit: bnderive's exact
checker decides every line of the mutant against the ground truth (each line evaluated with the
derivation's own earlier lines, at M = 3 and 4), and the wrong line is the first refuted one,
with the checker's counterexample to show for it.  Lines after it may be refuted too, only
because they use its value; a line before it holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from random import Random

from bnderive.core.spec import Mode, Norm
from bnderive.errors import SpecError
from bnderive.read.corpus import Mutant, corpus
from bnderive.read.derivations import builtin_forms
from bnderive.read.forms import Equation, Form
from bnderive.verify.exact import check_exact_mode
from bnderive.verify.verdict import Status, Verdict

#: The sizes the checker decides the quiz's lines at (exact, a proof for these sizes).
QUIZ_SIZES = (3, 4)


class QuizError(ArithmeticError):
    """The checker refuted no line of a mutant: the quiz has no answer (a bug in the corpus)."""


@cache
def quiz_pool(norm: Norm | str = Norm.BATCH) -> tuple[Mutant, ...]:
    """The mutants a quiz can be drawn from: a first-order published form of ``derivations/``
    of the family ``norm`` with lines edited (not a change of the declared conventions, which
    no line shows).  BatchNorm's pool holds BatchNorm's forms only (the family's mutants are
    not drawn into its quizzes, whose seeds stay as they were); a family's, its own forms'."""
    norm = Norm.parse(norm)
    published = {f.name for f in builtin_forms() if f.order == 1 and f.norm is norm}
    return tuple(m for m in corpus().mutants if m.edited and m.base in published)


@dataclass(frozen=True)
class Quiz:
    seed: int
    mutant: Mutant
    base: Form  # the published form the mistake was put into
    verdicts: tuple[Verdict, ...]  # the exact checker's, one per line
    wrong_line: int  # the first line the checker refuted

    @property
    def form(self) -> Form:
        return self.mutant.form

    @property
    def lines(self) -> tuple[Equation, ...]:
        return self.mutant.form.equations

    def verdict(self, line: int) -> Verdict | None:
        return next((v for v in self.verdicts if v.equation == line and not v.step), None)

    @property
    def wrong(self) -> Equation:
        return self.lines[self.wrong_line - 1]

    @property
    def published(self) -> Equation:
        """The published line the mistake replaced."""
        return self.base.equations[self.wrong_line - 1]

    @property
    def sources(self) -> tuple[str, ...]:
        """Where the mistake is discussed, then where the derivation comes from."""
        seen: list[str] = []
        for s in (*self.mutant.mistake.sources, *self.mutant.sources, *self.base.sources):
            if s not in seen:
                seen.append(s)
        return tuple(seen)


def make_quiz(seed: int = 0, norm: Norm | str = Norm.BATCH) -> Quiz:
    """The quiz of a seed: a mutant drawn from the family's pool, decided line by line by the
    checker."""
    norm = Norm.parse(norm)
    pool = quiz_pool(norm)
    if not pool:
        others = ", ".join(
            f"--norm {n.value}" for n in Norm if n is not Norm.BATCH and quiz_pool(n)
        )
        raise SpecError(
            f"The corpus has no known mistake put into {norm.title}'s published forms, so "
            f"there is no {norm.title} quiz: try {others}, or the lesson without --quiz."
        )
    mutant = pool[Random(seed).randrange(len(pool))]
    base = next(f for f in builtin_forms() if f.name == mutant.base)
    verdicts = tuple(
        v
        for v in check_exact_mode(mutant.form, _mode(mutant.form), QUIZ_SIZES)
        if v.equation is not None
    )
    refuted = [v.equation for v in verdicts if v.status is Status.REFUTED and v.equation]
    if not refuted:
        raise QuizError(
            f"bnderive's checker refuted no line of {mutant.id}; the quiz has no answer. This "
            "is a bug in the corpus: please report it."
        )
    return Quiz(seed, mutant, base, verdicts, min(refuted))


def _mode(form: Form) -> Mode:
    return Mode.PER_ACTIVATION if Mode.PER_ACTIVATION in form.modes else form.modes[0]


@dataclass(frozen=True)
class Grade:
    """The student's answer, judged."""

    answer: int
    right: bool
    wrong_line: int
    about_answer: str  # what the checker says of the line the student chose


def grade(quiz: Quiz, answer: int) -> Grade:
    """Right when ``answer`` is the first refuted line; otherwise say what that line is."""
    if answer == quiz.wrong_line:
        return Grade(answer, True, quiz.wrong_line, "the first line the checker refutes")
    verdict = quiz.verdict(answer)
    if verdict is None or verdict.status is Status.UNCHECKED:
        about = f"line {answer} is a helper definition: it is not compared with the truth"
    elif verdict.status is Status.HOLDS:
        about = f"line {answer} holds: the checker proves it equal to the truth ({verdict.scope})"
    elif verdict.status is Status.REFUTED:
        about = (
            f"line {answer} is refuted too, but only because it uses the value of line "
            f"{quiz.wrong_line}: every line is evaluated with the derivation's own earlier lines"
        )
    else:
        about = f"the checker could not decide line {answer} ({verdict.detail})"
    return Grade(answer, False, quiz.wrong_line, about)


__all__ = ["QUIZ_SIZES", "Grade", "Quiz", "QuizError", "grade", "make_quiz", "quiz_pool"]
