"""The lesson as a Jupyter notebook a class runs (nbformat 4).

The same lesson as the terminal walkthrough (``teach.lesson``), in cells:

* Markdown cells with the mathematics in ``$$`` blocks (``TeachLatexPrinter``) and bnderive's
  exact numbers beside it;
* code cells in NumPy (``NumPyPrinter``) that compute the same numbers in float64 and compare
  them with the exact ones (``check``), so a student sees both and every cell is a test;
* an exercise cell (``%%writefile``) where the student writes ``batchnorm_backward``, and a check
  cell that runs bnderive's checker for implementations on it and prints the verdict, with the
  known mistake it matches.

Two printer classes write the cells, one ``_print_X`` method per piece of the lesson (SymPy's
``Printer`` dispatches on the class of any object): ``NotebookMarkdown`` and ``NotebookCode``.
nbformat is imported only when a notebook is written (the ``teach`` extra).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sympy as sp
from sympy.printing.printer import Printer
from sympy.printing.str import StrPrinter

from bnderive import __version__
from bnderive.core.derive import derive
from bnderive.core.notation import reference
from bnderive.core.spec import Mode, Norm, Spec
from bnderive.errors import BnderiveError
from bnderive.read.corpus import Mutant, corpus
from bnderive.read.forms import Form
from bnderive.teach.batch import Batch
from bnderive.teach.exercise import EXERCISE_FILE, FUNCTION, template
from bnderive.teach.graph_view import LEAVES, pad, picture
from bnderive.teach.lesson import (
    GAMMA_MISSING,
    SIGMA_FOR_VARIANCE,
    ZERO_TERM_DROPPED,
    BackwardStep,
    FormRun,
    ForwardStep,
    Lesson,
    Trap,
)
from bnderive.teach.printers import (
    Value,
    as_sympy,
    is_exact_decimal,
    latex,
    latex_decimal,
    latex_value,
    numpy,
    unicode,
)

#: How the check cell reaches bnderive's checker for implementations (the library function).
CHECKER = "from bnderive import check_impl"

#: Python names of the lesson's forward steps.
_VARIABLE = {"mu": "mu", "xmu": "xmu", "var": "var", "root": "root", "xhat": "xhat", "y": "y"}


class NotebookError(BnderiveError):
    """The notebook cannot be written (nbformat missing, the path unusable): exit code 2."""


# -- pieces the printers print ---------------------------------------------------------------------
@dataclass(frozen=True)
class Picture:
    """The forward graph of a lesson, drawn (``graph_view``)."""

    lesson: Lesson


@dataclass(frozen=True)
class FormFunction:
    """A form (or the chain rule, or a mutant) as a NumPy function of the inputs."""

    name: str  # a Python identifier
    doc: str
    definitions: tuple[tuple[str, bool, sp.Expr], ...]


@dataclass(frozen=True)
class Inputs:
    """The lesson's batch as the notebook's first code cell sets it up."""

    batch: Batch


@dataclass(frozen=True)
class Exercise:
    mode: Mode
    spec: Spec | None = None  # a family's lesson: its layer (None: BatchNorm's)


@dataclass(frozen=True)
class CheckCell:
    mode: Mode
    spec: Spec | None = None


def function_name(ident: str) -> str:
    """'compact/gamma-missing' → 'compact_gamma_missing'."""
    return re.sub(r"\W+", "_", ident).strip("_")


def form_function(form: Form, name: str | None = None) -> FormFunction:
    source = form.sources[0] if form.sources else form.path
    return FormFunction(
        name or function_name(form.name),
        f"{form.name}: {form.title}. {source}",
        tuple((eq.name, eq.elementwise, eq.expr) for eq in form.equations),
    )


# -- exact values in code ----------------------------------------------------------------------------
class ExactLiteral(StrPrinter):
    """An exact value as Python code: F(-1, 3), or a list of them (F is fractions.Fraction)."""

    def _print_Rational(self, expr: sp.Rational) -> str:
        return f"F({expr.p})" if expr.q == 1 else f"F({expr.p}, {expr.q})"

    _print_Integer = _print_Rational

    def _print_Tuple(self, expr: sp.Tuple) -> str:
        return "[" + ", ".join(self._print(v) for v in expr) + "]"


def literal(value: Value) -> str:
    return ExactLiteral().doprint(as_sympy(value))


def array(value: Value) -> str:
    """A float64 array (or number) holding an exact input, as NumPy code."""
    values = value if isinstance(value, tuple) else (value,)
    items = ", ".join(numpy(sp.Rational(v.numerator, v.denominator)) for v in values)
    return f"np.array([{items}], dtype=float)" if isinstance(value, tuple) else items


def _affine_inputs(b: Batch) -> list[str]:
    """The Inputs cell's γ, β, ε line: RMSNorm has no β (None: ``forward`` does not read it)."""
    beta = "None  # RMSNorm has no shift" if b.beta is None else array(b.beta)
    if b.beta is None:
        return [f"gamma, eps = {array(b.gamma)}, {array(b.eps)}", f"beta = {beta}"]
    return [f"gamma, beta, eps = {array(b.gamma)}, {beta}, {array(b.eps)}"]


#: The forward stages in words, for the docstring of ``forward``.
_WORDS = {"mu": "μ", "var": "σ²", "ms": "ms", "xhat": "x̂", "y": "y"}


def _closed_forms(count: int) -> str:
    words = {1: "One closed form", 2: "Two closed forms", 3: "Three closed forms"}
    return words.get(count, f"{count} closed forms")


def family_size(spec: Spec) -> int:
    """The --n of a family's lesson: the size of its set's last axis."""
    return spec.shape[-1]


# -- Markdown ---------------------------------------------------------------------------------------
def _math_value(value: Value) -> str:
    text = latex_value(value)
    values = value if isinstance(value, tuple) else (value,)
    if any(v.denominator != 1 for v in values):
        sign = "=" if is_exact_decimal(value) else r"\approx"
        text += f" {sign} {latex_decimal(value)}"
    return text


def _definition(lhs: sp.Expr, formula: sp.Expr) -> str:
    """'lhs = formula', or just the formula where it is its own name (x_i − μ)."""
    return latex(formula) if formula == lhs else f"{latex(lhs)} = {latex(formula)}"


class NotebookMarkdown(Printer):
    """The lesson's Markdown cells: prose, and the mathematics in ``$$`` blocks."""

    printmethod = "_bnderive_notebook_markdown"

    def _print_Lesson(self, lesson: Lesson) -> str:
        b = lesson.batch
        if b.spec.norm is not Norm.BATCH:
            return self._family_lesson(lesson)
        return "\n".join(
            [
                "# BatchNorm's backward pass on a tiny batch, every number exact",
                "",
                f"A lesson generated by bnderive {__version__} (`bnderive teach --notebook "
                f"--n {b.spec.n} --mode {b.spec.mode.value} --seed {b.seed}`): the forward "
                "pass, the backward pass by the chain rule, the three published closed forms "
                "and the traps, on one batch whose numbers are exact fractions. bnderive "
                "computed every number in exact rational arithmetic from its own graph and "
                "ground truth; each code cell recomputes them in NumPy (float64) and `check` "
                "compares the two.",
                "",
                f"Layout: {b.spec.describe()}. One reduction set: "
                + (
                    "the batch of one feature."
                    if b.spec.mode is Mode.PER_ACTIVATION
                    else "the N·H·W values of one channel."
                ),
                "",
                f"$$x = {latex_value(b.x)}, \\quad g = \\frac{{\\partial L}}{{\\partial y}} = "
                f"{latex_value(b.g)}$$",
                "",
                f"$$\\gamma = {latex_value(b.gamma)}, \\quad \\beta = {latex_value(b.beta)}, "
                f"\\quad \\epsilon = {latex_value(b.eps)}$$",
                "",
                f"ε is chosen so that $\\sqrt{{\\sigma^2 + \\epsilon}} = {latex_value(b.root)}$ "
                "is rational: then every number below is a fraction.",
            ]
        )

    def _family_lesson(self, lesson: Lesson) -> str:
        b = lesson.batch
        norm = b.spec.norm
        radicand = r"\sigma^2" if norm.centred else r"\mathrm{ms}"
        affine = [f"\\gamma = {latex_value(b.gamma)}"]
        if b.beta is not None:
            affine.append(f"\\beta = {latex_value(b.beta)}")
        affine.append(f"\\epsilon = {latex_value(b.eps)}")
        return "\n".join(
            [
                f"# {norm.title}'s backward pass on a tiny set, every number exact",
                "",
                f"A lesson generated by bnderive {__version__} (`bnderive teach --notebook "
                f"--norm {norm.value} --n {family_size(b.spec)} --seed {b.seed}`): the forward "
                "pass of one reduction set, the backward pass by the chain rule, the family's "
                "published closed forms and its known mistakes, on one set whose numbers are "
                "exact fractions. bnderive computed every number in exact rational arithmetic "
                "from its own graph and ground truth; each code cell recomputes them in NumPy "
                "(float64) and `check` compares the two.",
                "",
                f"Layout: {b.spec.describe()}. One reduction set: {b.spec.set_label(0)}.",
                "",
                f"$$x = {latex_value(b.x)}, \\quad g = \\frac{{\\partial L}}{{\\partial y}} = "
                f"{latex_value(b.g)}$$",
                "",
                "$$" + ", \\quad ".join(affine) + "$$",
                "",
                f"ε is chosen so that $\\sqrt{{{radicand} + \\epsilon}} = {latex_value(b.root)}$ "
                "is rational: then every number below is a fraction.",
            ]
        )

    def _print_Picture(self, pic: Picture) -> str:
        steps = {s.name: s for s in pic.lesson.forward}
        rows = []
        for row in picture(pic.lesson.graph):
            step = steps.get(row.node)
            if step is not None:
                rows.append(f"{row.lanes}  {unicode(step.lhs)} = {unicode(step.formula)}")
            else:
                rows.append(f"{row.lanes}  {pad(row.name, 3)}{LEAVES.get(row.node, 'input')}")
        return "\n".join(
            [
                "## 1. The forward pass",
                "",
                "bnderive's forward graph (the one it differentiates): each node reads the nodes "
                "whose lanes run into it.",
                "",
                "```text",
                *rows,
                "```",
            ]
        )

    def _print_ForwardStep(self, step: ForwardStep, number: int = 0) -> str:
        return "\n".join(
            [
                f"**{number}. {step.meaning}**",
                "",
                f"$${_definition(step.lhs, step.formula)}$$",
                "",
                f"At the batch: ${_math_value(step.value)}$",
            ]
        )

    def _print_BackwardStep(self, step: BackwardStep, number: int = 0) -> str:
        lines = [f"**{number}. {latex(step.lhs).join(['$', '$'])}**: {step.meaning}", ""]
        if latex(step.chain) != latex(step.lhs):
            lines += [f"$${latex(step.lhs)} = {latex(step.chain)}$$", ""]
            lines.append(f"$$= {latex(step.formula)}$$")
        else:
            lines.append(f"$${latex(step.lhs)} = {latex(step.formula)}$$")
        if len(step.paths) > 1:
            lines.append("")
            for path in step.paths:
                lines.append(f"* through ${latex(path.product)}$: ${_math_value(path.value)}$")
        lines += ["", f"At the batch: ${_math_value(step.value)}$"]
        return "\n".join(lines)

    def _print_FormRun(self, run: FormRun) -> str:
        form = run.form
        lines = [f"### `{form.name}`: {form.title}", ""]
        if form.sources:
            lines += [f"*{form.sources[0]}*", ""]
        for line in run.lines:
            eq = line.equation
            lines.append(f"$${latex(reference(eq.name, eq.index))} = {latex(eq.expr)}$$")
            mark = "✓ the chain rule's value" if line.agrees else "✗ differs from the chain rule"
            lines.append(f"= ${_math_value(line.value)}$ {mark}")
            lines.append("")
        return "\n".join(lines).rstrip()

    def _print_Trap(self, trap: Trap, label: str = "") -> str:
        lines = [f"### {label}. {trap.title}", "", trap.setup, ""]
        for row in trap.rows:
            value = f" ${_math_value(row.value)}$" if row.value is not None else ""
            note = ""
            if row.note:
                note = f" ({row.note})" if row.value is not None else f" {row.note}"
            lines.append(f"* {row.label}:{value}{note}")
        lines += ["", f"**{trap.moral}**"]
        if trap.sources:
            lines += ["", f"*Source: {trap.sources[0]}*"]
        return "\n".join(lines)

    def _family_exercise(self, spec: Spec) -> str:
        fn = family_function(spec)
        return "\n".join(
            [
                "## 5. Exercise: write the backward pass",
                "",
                f"Write `{fn}` for one reduction set of {spec.norm.title}, as 1-D arrays (the "
                "template says what it takes and returns). Any of the forms above will do; "
                "recompute the statistics from `x` inside the function. Running the cell saves "
                f"it to `{family_exercise_file(spec)}` (`%%writefile`), where the next cell "
                "reads it.",
            ]
        )

    def _print_Exercise(self, exercise: Exercise) -> str:
        if exercise.spec is not None and exercise.spec.norm is not Norm.BATCH:
            return self._family_exercise(exercise.spec)
        shape = "(N, D)" if exercise.mode is Mode.PER_ACTIVATION else "(N, C, H, W)"
        return "\n".join(
            [
                "## 5. Exercise: write the backward pass",
                "",
                f"Write `{FUNCTION}(x, gamma, beta, dout, eps)` for input of shape {shape} in "
                "training mode: it returns `dx, dgamma, dbeta`. Any of the forms above will do; "
                "recompute μ, σ² and x̂ from `x` inside the function. Running the cell saves it "
                f"to `{EXERCISE_FILE}` (`%%writefile`), where the next cell's checker reads it.",
            ]
        )

    def _print_CheckCell(self, cell: CheckCell) -> str:
        if cell.spec is not None and cell.spec.norm is not Norm.BATCH:
            return (
                "Run the check: your function at the lesson's set, against bnderive's exact "
                "values, and at a random set (γ far from 1, an uneven `dout`) against the chain "
                "rule above, in float64. That is a test at two sets, not a proof (bnderive's "
                "exact checker for implementations, `bnderive check-impl`, is BatchNorm's "
                "here). A wrong dx equal to a known mistake of the corpus is named."
            )
        return "\n".join(
            [
                "Run the check: bnderive runs your file in a separate process on exact rational "
                "inputs (γ ∉ {0, ±1}, σ² far from 1, an uneven `dout`, several batch sizes) and "
                "compares dx, dγ, dβ with its exact gradient. A wrong result comes with a "
                "counterexample and, when it matches one, the name of the known mistake.",
            ]
        )


# -- code -------------------------------------------------------------------------------------------
class NotebookCode(Printer):
    """The lesson's code cells: NumPy, float64, each number compared with bnderive's exact one."""

    printmethod = "_bnderive_notebook_code"

    def __init__(self, lesson: Lesson) -> None:
        super().__init__()
        self.lesson = lesson
        #: What ``forward`` returns: the graph's stages but L ("mu, var, xhat, y").
        self.stages = ", ".join(s.name for s in lesson.graph.stages if s.name != "L")

    def _print_Inputs(self, inputs: Inputs) -> str:
        b = inputs.batch
        return "\n".join(
            [
                "from fractions import Fraction as F",
                "",
                "import numpy as np",
                "",
                f"x = {array(b.x)}  # one reduction set",
                f"g = {array(b.g)}  # ∂L/∂y, the upstream gradient",
                *_affine_inputs(b),
                "M = x.size",
                "",
                "",
                "def check(name, value, exact):",
                '    """Print a float64 result beside bnderive\'s exact value; fail if they',
                '    differ by more than float64 rounding."""',
                "    want = np.array(exact, dtype=float)",
                "    ok = np.allclose(value, want, rtol=1e-12, atol=1e-12)",
                "    shown = np.round(np.asarray(value, dtype=float), 6).tolist()",
                "    text = ', '.join(map(str, exact)) if isinstance(exact, list) else str(exact)",
                "    text = f'[{text}]' if isinstance(exact, list) else text",
                "    print(f\"{name} = {shown}   exact: {text}   {'✓' if ok else '✗ DIFFERS'}\")",
                "    assert ok, name",
            ]
        )

    def _print_ForwardStep(self, step: ForwardStep) -> str:
        name = _VARIABLE.get(step.name, step.name)
        return "\n".join(
            [
                f"{name} = {numpy(step.formula)}",
                f'check("{unicode(step.lhs)}", {name}, {literal(step.value)})',
            ]
        )

    def _print_BackwardStep(self, step: BackwardStep) -> str:
        lines = []
        if len(step.paths) > 1:
            for path in step.paths:
                lines.append(f"# through {unicode(path.product)}: {numpy(path.expr)}")
        lines.append(f"{step.name} = {numpy(step.formula)}")
        lines.append(f'check("{unicode(step.lhs)}", {step.name}, {literal(step.value)})')
        return "\n".join(lines)

    def _print_FormFunction(self, fn: FormFunction) -> str:
        body = ["M = x.size", f"{self.stages} = forward(x, gamma, beta, eps)"]
        for name, _elementwise, expr in fn.definitions:
            body.append(f"{name} = {numpy(expr)}")
        names = list(dict.fromkeys(name for name, _e, _x in fn.definitions))
        body.append("return dict(" + ", ".join(f"{n}={n}" for n in names) + ")")
        return "\n".join(
            [
                f"def {fn.name}(x, g, gamma, beta, eps):",
                f'    """{fn.doc}"""',
                *("    " + line for line in body),
            ]
        )

    def _print_FormRun(self, run: FormRun) -> str:
        name = function_name(run.form.name)
        lines = [
            self._print(form_function(run.form)),
            "",
            "",
            f"out = {name}(x, g, gamma, beta, eps)",
        ]
        for line in run.lines:
            eq = line.equation
            if line.truth is not None:
                lines.append(
                    f'check("{run.form.name} {eq.name}", out["{eq.name}"], {literal(line.value)})'
                )
        return "\n".join(lines)

    def _print_Trap(self, trap: Trap) -> str:
        return getattr(self, "_trap_" + trap.key.replace("-", "_"))(trap)

    def _trap_zero_term(self, trap: Trap) -> str:
        dropped = function_name(ZERO_TERM_DROPPED)
        return "\n".join(
            [
                f"dropped = {dropped}(x, g, gamma, beta, eps)",
                'check("Σ(x − μ)", np.sum(x - mu), 0)',
                f'check("dμ without the term", dropped["dmu"], {literal(self.lesson.value("dmu"))})',
                f'check("dx without the term", dropped["dx"], {literal(self.lesson.value("dx"))})',
            ]
        )

    def _inputs(self, trap: Trap) -> list[str]:
        """The trap's inputs: the lesson's, or the batch of three it used instead."""
        if trap.at is None:
            return ["xt, gt, gammat, betat, epst = x, g, gamma, beta, eps"]
        b = trap.at
        return [
            f"# The lesson's batch has M < 3; this trap uses a batch of {b.m}.",
            f"xt, gt = {array(b.x)}, {array(b.g)}",
            f"gammat, betat, epst = {array(b.gamma)}, {array(b.beta)}, {array(b.eps)}",
        ]

    def _trap_uniform_gradient(self, trap: Trap) -> str:
        wrong = function_name(GAMMA_MISSING)
        return "\n".join(
            [
                *self._inputs(trap),
                'for loss, c in [("sum", 1.0), ("mean", 1 / xt.size)]:',
                "    g_uniform = np.full(xt.size, c)",
                '    dx_true = chain_rule(xt, g_uniform, gammat, betat, epst)["dx"]',
                f'    dx_wrong = {wrong}(xt, g_uniform, gammat, betat, epst)["dx"]',
                '    check(f"true dx, L = {loss}(y)", dx_true, [0] * xt.size)',
                '    check(f"γ-missing dx, L = {loss}(y)", dx_wrong, [0] * xt.size)',
            ]
        )

    def _trap_gamma_sigma(self, trap: Trap) -> str:
        (weak,) = trap.batches
        return "\n".join(
            [
                *self._inputs(trap),
                "# The weak test: γ = 1 and the batch already normalized (σ² + ε = 1).",
                f"weak = (forward(xt, gammat, betat, epst)[2], gt, 1.0, betat, {array(weak.eps)})",
                "strong = (xt, gt, gammat, betat, epst)",
                f"for name, mistake in [({GAMMA_MISSING!r}, {function_name(GAMMA_MISSING)}),",
                f"                      ({SIGMA_FOR_VARIANCE!r}, "
                f"{function_name(SIGMA_FOR_VARIANCE)})]:",
                "    for test, inputs in [('weak', weak), ('strong', strong)]:",
                '        same = np.allclose(mistake(*inputs)["dx"], chain_rule(*inputs)["dx"])',
                "        print(f\"{name}, {test} test: {'passes' if same else 'fails'}\")",
                "        assert same == (test == 'weak')",
            ]
        )

    def _trap_degenerate(self, trap: Trap) -> str:
        (two,) = trap.batches
        return "\n".join(
            [
                "# M = 1: x − μ = 0, so the gradient is 0 whatever g is.",
                'check("dx, M = 1", chain_rule(x[:1], g[:1], gamma, beta, eps)["dx"], [0])',
                "# M = 2: the true dx is ε/(σ² + ε) of γ(g₁ − g₂)/(2√(σ² + ε)).",
                f"x2, g2, gamma2, eps2 = {array(two.x)}, {array(two.g)}, "
                f"{array(two.gamma)}, {array(two.eps)}",
                "mu2, var2, xhat2, y2 = forward(x2, gamma2, beta, eps2)",
                'dx2 = chain_rule(x2, g2, gamma2, beta, eps2)["dx"]',
                "scale = gamma2 * (g2[0] - g2[1]) / (2 * np.sqrt(var2 + eps2))",
                f'check("dx₁ / scale", dx2[0] / scale, {literal(two.eps / two.root**2)})',
                f'check("ε/(σ² + ε)", eps2 / (var2 + eps2), {literal(two.eps / two.root**2)})',
            ]
        )

    def _trap_gamma_outside_sum(self, trap: Trap) -> str:
        return self._weight_trap(trap)

    def _trap_gamma_missing(self, trap: Trap) -> str:
        return self._weight_trap(trap)

    def _weight_trap(self, trap: Trap) -> str:
        """The weight mistakes: they pass with every γᵢ = 1 and fail at the lesson's γ."""
        names = _mutant_names(trap)
        return "\n".join(
            [
                "# The weak test: every γᵢ = 1, as PyTorch initializes the layer.",
                "weak = (x, g, np.ones_like(gamma), beta, eps)",
                "strong = (x, g, gamma, beta, eps)",
                f"for name, mistake in [{', '.join(f'({i!r}, {function_name(i)})' for i in names)}]:",
                "    for test, inputs in [('weak', weak), ('strong', strong)]:",
                '        same = np.allclose(mistake(*inputs)["dx"], chain_rule(*inputs)["dx"])',
                "        print(f\"{name}, {test} test: {'passes' if same else 'fails'}\")",
                "        assert same == (test == 'weak')",
            ]
        )

    def _trap_eps_outside(self, trap: Trap) -> str:
        """ε outside the root: the relative difference of dx at the trap's two ε."""
        names = _mutant_names(trap)
        large, small = trap.batches
        return "\n".join(
            [
                f"xt = {array(large.x)}  # its mean square is the square of a rational",
                f"for epst in [{array(large.eps)}, {numpy(sp.Rational(small.eps.numerator, small.eps.denominator))}]:",
                '    true_dx = chain_rule(xt, g, gamma, beta, epst)["dx"]',
                f"    for name, mistake in [{', '.join(f'({i!r}, {function_name(i)})' for i in names)}]:",
                '        gap = np.max(np.abs(mistake(xt, g, gamma, beta, epst)["dx"] - true_dx))',
                "        rel = gap / np.max(np.abs(true_dx))",
                '        print(f"{name}, ε = {epst:.3g}: max |difference| / max |true dx| = {rel:.3g}")',
                "        assert (rel < 1e-4) == (epst < 1e-3)",
            ]
        )

    def _family_check(self) -> str:
        """The check cell of a family's exercise: the student's function against bnderive's
        exact values at the lesson's set, and against the chain rule at a random set with
        γᵢ far from 1 (float64: a test, not a proof); a wrong answer equal to a known mistake
        of the corpus is named."""
        b = self.lesson.batch
        fn = family_function(b.spec)
        names = ["dx", "dgamma"] + (["dbeta"] if b.beta is not None else [])
        call = "x, gamma, g, eps" if b.beta is None else "x, gamma, beta, g, eps"
        exact = ", ".join(f"{n!r}: {literal(self.lesson.value(n))}" for n in names)
        mistakes = ", ".join(
            f"({m.id!r}, {m.mistake.title!r}, {function_name(m.id)})"
            for m in family_mistakes(self.lesson)
        )
        return "\n".join(
            [
                "import runpy",
                "",
                f"student = runpy.run_path({family_exercise_file(b.spec)!r})[{fn!r}]",
                "",
                "",
                "def answer(x, g, gamma, beta, eps):",
                f"    got = student({call})",
                f"    return dict(zip({names!r}, got))",
                "",
                "",
                "rng = np.random.default_rng(0)  # a random set: γ far from 1, an uneven g",
                "x2 = rng.normal(3.0, 2.0, size=x.size)",
                "g2 = rng.normal(0.0, 1.0, size=x.size)",
                "gamma2 = rng.normal(1.5, 1.0, size=np.shape(gamma))",
                "beta2 = None if beta is None else rng.normal(0.0, 1.0, size=np.shape(beta))",
                "random_set = (x2, g2, gamma2, beta2, eps)",
                f"exact = {{{exact}}}",
                "try:",
                "    mine = answer(x, g, gamma, beta, eps)",
                "    theirs = answer(*random_set)",
                "except Exception as error:  # the exercise is not written yet, or it fails",
                '    print(f"{type(error).__name__}: {error}")',
                "else:",
                "    truth = chain_rule(*random_set)",
                "    ok = True",
                "    for name, want in exact.items():",
                "        at_lesson = np.allclose(mine[name], np.array(want, dtype=float), rtol=1e-9, atol=1e-12)",
                "        at_random = np.allclose(theirs[name], truth[name], rtol=1e-9, atol=1e-12)",
                "        ok = ok and at_lesson and at_random",
                "        marks = [('the lesson', at_lesson), ('a random set', at_random)]",
                "        print(name + ': ' + ', '.join(f\"{'✓' if good else '✗'} {where}\" for where, good in marks))",
                "    if ok:",
                f'        print("✓ {fn} equals the exact gradient at the lesson\'s set and the chain "',
                '              "rule at a random set (float64: a test at two sets, not a proof).")',
                "    else:",
                f"        for ident, title, mistake in [{mistakes}]:",
                '            if np.allclose(mistake(*random_set)["dx"], theirs["dx"]):',
                '                print(f"  known mistake: {title} ({ident})")',
                f'        print("✗ {fn} is wrong: the ✗ lines above show where.")',
            ]
        )

    def _print_Exercise(self, exercise: Exercise) -> str:
        if self.lesson.batch.spec.norm is not Norm.BATCH:
            return family_template(self.lesson.batch)
        return template(exercise.mode)

    def _print_CheckCell(self, cell: CheckCell) -> str:
        if self.lesson.batch.spec.norm is not Norm.BATCH:
            return self._family_check()
        return "\n".join(
            [
                "from bnderive.errors import BnderiveError",
                "from bnderive.teach.exercise import verdict_text",
                CHECKER,
                "",
                "try:",
                f"    report = check_impl({EXERCISE_FILE!r}, api='functional', "
                f"function={FUNCTION!r}, mode={cell.mode.value!r})",
                "except BnderiveError as error:  # the file did not run, or returned nothing usable",
                '    print(f"bnderive could not check it: {error}")',
                "else:",
                "    print(verdict_text(report))",
            ]
        )


def _mutant_names(trap: Trap) -> list[str]:
    """The mutants a family trap ran (its rows name them: 'label: <id> dx')."""
    names: list[str] = []
    for row in trap.rows:
        for mutant in corpus().mutants:
            if f": {mutant.id} dx" in row.label and mutant.id not in names:
                names.append(mutant.id)
    return names


def family_mistakes(lesson: Lesson) -> list[Mutant]:
    """The corpus's mutants a family's traps run, in the traps' order."""
    book = corpus()
    out: list[Mutant] = []
    for trap in lesson.traps:
        for ident in _mutant_names(trap):
            mutant = book.find(ident)
            if isinstance(mutant, Mutant) and mutant not in out:
                out.append(mutant)
    return out


def family_function(spec: Spec) -> str:
    """'layernorm_backward': the function a family's exercise asks for."""
    return f"{spec.norm.value}norm_backward"


def family_exercise_file(spec: Spec) -> str:
    return f"{spec.norm.value}norm_exercise.py"


def family_template(batch: Batch) -> str:
    """A family's exercise cell: the backward pass of one reduction set, as 1-D arrays."""
    spec = batch.spec
    rms = batch.beta is None
    args = "x, gamma, dout, eps" if rms else "x, gamma, beta, dout, eps"
    returns = "dx, dgamma" if rms else "dx, dgamma, dbeta"
    if spec.norm.affine_per_element:
        shapes = "gamma" + ("" if rms else ", beta") + ": one value per element, like x."
        part = (
            "dgamma" + ("" if rms else " and dbeta") + ": one value per element (this set's part)."
        )
    else:
        shapes = "gamma, beta: numbers (one channel)."
        part = "dgamma and dbeta: numbers."
    stats = "ms = mean(x²) and x̂ from x" if rms else "μ, σ² and x̂ from x"
    return "\n".join(
        [
            f"%%writefile {family_exercise_file(spec)}",
            "import numpy as np",
            "",
            "",
            f"def {family_function(spec)}({args}):",
            f'    """{spec.norm.title}\'s backward pass for one reduction set: returns {returns}.',
            "",
            "    x, dout: 1-D arrays of the set's M values.",
            f"    {shapes}",
            f"    {part}",
            '    """',
            f"    # Your code: recompute {stats}, then the backward pass.",
            "    raise NotImplementedError",
            "",
        ]
    )


def forward_function(lesson: Lesson) -> str:
    """The graph's stages as a NumPy function (the forms and traps recompute the statistics)."""
    body = ["M = x.size"]
    for stage in lesson.graph.stages:
        if stage.name == "L":
            continue
        step = next(s for s in lesson.forward if s.name == stage.name)
        body.append(f"{stage.name} = {numpy(step.formula)}")
    names = [s.name for s in lesson.graph.stages if s.name != "L"]
    body.append("return " + ", ".join(names))
    words = ", ".join(_WORDS.get(n, n) for n in names)
    return "\n".join(
        [
            "def forward(x, gamma, beta, eps):",
            f'    """bnderive\'s forward graph for one reduction set: {words}."""',
            *("    " + line for line in body),
        ]
    )


# -- the notebook -----------------------------------------------------------------------------------
def cells(lesson: Lesson) -> list[tuple[str, str]]:
    """The notebook as (kind, source) pairs, kind "markdown" or "code"."""
    md, code = NotebookMarkdown(), NotebookCode(lesson)
    out: list[tuple[str, str]] = [
        ("markdown", md.doprint(lesson)),
        ("code", code.doprint(Inputs(lesson.batch))),
        ("markdown", md.doprint(Picture(lesson))),
    ]
    for number, step in enumerate(lesson.forward, start=1):
        out.append(("markdown", md._print(step, number=number)))
        out.append(("code", code.doprint(step)))
    out.append(
        (
            "markdown",
            "## 2. The backward pass\n\nEach adjoint ∂L/∂v sums, over the stages u that read "
            "v, ∂L/∂u · ∂u/∂v: the chain rule, in the order a backward pass computes it. Later "
            "lines use the earlier adjoints by name.",
        )
    )
    for number, step in enumerate(lesson.backward, start=1):
        out.append(("markdown", md._print(step, number=number)))
        out.append(("code", code.doprint(step)))
    truth = derive(lesson.batch.spec).definitions()
    chain_rule = FormFunction(
        "chain_rule",
        "The backward pass above as a function: bnderive's ground truth, adjoint by adjoint.",
        tuple(truth),
    )
    out.append(
        (
            "markdown",
            f"## 3. {_closed_forms(len(lesson.forms))}, the same numbers\n\nThe forward graph "
            "and the chain rule as functions, then each published form of `derivations/` line by "
            f"line at the same {'batch' if lesson.batch.spec.norm is Norm.BATCH else 'set'}.",
        )
    )
    out.append(("code", forward_function(lesson) + "\n\n\n" + code.doprint(chain_rule)))
    for run in lesson.forms:
        out.append(("markdown", md.doprint(run)))
        out.append(("code", code.doprint(run)))
    book = corpus()
    if lesson.batch.spec.norm.per_set == "batch":
        helpers = [
            form_function(book.find(ident).form) for ident in (GAMMA_MISSING, SIGMA_FOR_VARIANCE)
        ]  # type: ignore[union-attr]
        helpers.append(form_function(book.find(ZERO_TERM_DROPPED).form))  # type: ignore[union-attr]
    else:
        helpers = [form_function(m.form, function_name(m.id)) for m in family_mistakes(lesson)]
    out.append(
        (
            "markdown",
            "## 4. Traps\n\nThe mistakes and the rewrite the traps use, from bnderive's corpus "
            "(`bnderive mutants`), as functions.",
        )
    )
    out.append(("code", "\n\n\n".join(code.doprint(h) for h in helpers)))
    for letter, trap in zip("abcdefgh", lesson.traps, strict=False):
        out.append(("markdown", md._print(trap, label=f"4{letter}")))
        out.append(("code", code.doprint(trap)))
    mode = lesson.batch.spec.mode
    family = None if lesson.batch.spec.norm is Norm.BATCH else lesson.batch.spec
    out.append(("markdown", md.doprint(Exercise(mode, family))))
    out.append(("code", code.doprint(Exercise(mode, family))))
    out.append(("markdown", md.doprint(CheckCell(mode, family))))
    out.append(("code", code.doprint(CheckCell(mode, family))))
    return out


def _nbformat() -> Any:
    """nbformat (the ``teach`` extra), or a message saying how to install it."""
    try:
        import nbformat
        import nbformat.v4  # noqa: F401 - the notebook format version written
    except ImportError:
        raise NotebookError(
            "Writing a notebook needs nbformat: pip install 'bnderive[teach]' (or pip install "
            "nbformat)."
        ) from None
    return nbformat


def build_notebook(lesson: Lesson) -> Any:
    """The lesson as an ``nbformat`` v4 notebook, validated."""
    nbformat = _nbformat()
    v4 = nbformat.v4
    nb = v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    for kind, source in cells(lesson):
        nb.cells.append(
            v4.new_markdown_cell(source) if kind == "markdown" else v4.new_code_cell(source)
        )
    for number, cell in enumerate(nb.cells):  # stable ids: the same lesson, the same file
        cell["id"] = f"cell-{number:02d}"
    nbformat.validate(nb)
    return nb


def write_notebook(path: str | Path, lesson: Lesson) -> Path:
    """Write the lesson's notebook to ``path`` (``.ipynb``)."""
    nbformat = _nbformat()
    target = Path(path)
    if target.suffix != ".ipynb":
        raise NotebookError(
            f"{path}: a notebook file ends in .ipynb; give a path like lesson.ipynb."
        )
    if target.is_dir():
        raise NotebookError(f"{path} is a directory; give a file path like lesson.ipynb.")
    nb = build_notebook(lesson)
    try:
        target.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
    except OSError as exc:
        raise NotebookError(f"{path}: cannot write the notebook ({exc.strerror}).") from None
    return target


def exercise_cell(nb: Any) -> Any:
    """The exercise cell of a notebook written by ``build_notebook``."""
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.startswith("%%writefile "):
            return cell
    raise KeyError("no exercise cell")


__all__ = [
    "CHECKER",
    "NotebookCode",
    "NotebookError",
    "NotebookMarkdown",
    "build_notebook",
    "cells",
    "exercise_cell",
    "write_notebook",
]
