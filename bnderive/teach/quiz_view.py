"""The quiz in the terminal: the derivation line by line, then the verdict and the explanation.

Every line is printed from the expression bnderive read (``TeachUnicodePrinter``), the edited
one like the others, so that nothing but the mathematics gives the wrong line away.  The
explanation shows the line beside the published one, the mistake's name, what is wrong and
what is right (from the corpus), the exact checker's counterexample, and the sources.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.text import Text

from bnderive.core.notation import reference
from bnderive.read.forms import Equation
from bnderive.teach.printers import unicode
from bnderive.teach.quiz import QUIZ_SIZES, Grade, Quiz

FORMULA = "bold cyan"
DIM = "dim"


def _line(eq: Equation, label: str | None = None) -> Text:
    text = Text(label if label is not None else f"{eq.number}. ")
    text.append(unicode(reference(eq.name, eq.index)), FORMULA)
    text.append(f" = {unicode(eq.expr)}")
    return text


def _indent(renderable: RenderableType, columns: int = 2) -> Padding:
    return Padding(renderable, (0, 0, 0, columns))


def question(quiz: Quiz) -> RenderableType:
    base = quiz.base
    parts: list[RenderableType] = [
        Text("Find the wrong line", style="bold"),
        Text(
            f"The {base.name} derivation of derivations/ ({base.title}; "
            f"{quiz.form.conventions()}) with one known mistake put in (quiz seed "
            f"{quiz.seed}). Each line may use the lines before it; x̂ᵢ = (xᵢ − μ)/√(σ² + ε), "
            "gᵢ = ∂L/∂yᵢ, M values in the reduction set.",
            style=DIM,
        ),
        Text(""),
        _indent(Group(*(_line(eq) for eq in quiz.lines))),
    ]
    return Group(*parts)


def explanation(quiz: Quiz, result: Grade) -> RenderableType:
    mutant, wrong = quiz.mutant, quiz.wrong
    if result.right:
        head = Text(f"✓ Right: line {quiz.wrong_line} is the wrong one.", style="bold green")
    else:
        head = Text(
            f"✗ Not line {result.answer}: {result.about_answer}. The wrong line is "
            f"{quiz.wrong_line}.",
            style="bold red",
        )
    body: list[RenderableType] = [
        _line(wrong, f"{'line ' + str(wrong.number) + ':':<11}"),
        _line(quiz.published, "published: "),
        Text(""),
    ]
    mistake = Text("The mistake: ", style="bold")
    mistake.append(f"{mutant.mistake.title} ({mutant.mistake.name})", style="")
    body.append(mistake)
    body.append(Text(f"what is wrong: {mutant.explanation}"))
    body.append(Text(f"what is right: {mutant.mistake.fix}"))
    verdict = quiz.verdict(quiz.wrong_line)
    if verdict is not None and verdict.counterexample is not None:
        c = verdict.counterexample
        sizes = " and ".join(str(n) for n in QUIZ_SIZES)
        body.append(Text(""))
        body.append(
            Text(
                f"bnderive's exact check ({_size_name(quiz)} = {sizes}) refutes line "
                f"{quiz.wrong_line}, and "
                "every line before it holds:",
                style="bold",
            )
        )
        point = Text("; ".join(f"{k} = {v}" for k, v in c.inputs.items()))
        body.append(_indent(Group(point, Text(f"{c.entry}: truth {c.truth}, this line {c.form}"))))
    if quiz.sources:
        body.append(Text(""))
        body.append(Text("Sources:", style="bold"))
        body += [_indent(Text(f"- {s}", style=DIM)) for s in quiz.sources]
    return Group(Text(""), head, Text(""), _indent(Group(*body)))


def _size_name(quiz: Quiz) -> str:
    """BatchNorm's quiz sizes are batch sizes N; a family's are the sizes M of one set."""
    return "N" if quiz.form.norm.value == "batch" else "M"


__all__ = ["explanation", "question"]
