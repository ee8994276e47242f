from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

from bnderive.cli.common import (
    STATUS_STYLE,
    checked_groups,
    console,
    document,
    escape,
    json_text,
    norm_options,
    preamble_option,
    user_errors,
)
from bnderive.errors import BnderiveError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from bnderive.core.spec import Spec
    from bnderive.read.forms import Form
    from bnderive.verify.check import CheckResult
    from bnderive.verify.summary import LineResult
    from bnderive.verify.verdict import Verdict


# -- check ----------------------------------------------------------------------------------------
@click.command()
@click.argument("forms", nargs=-1, metavar="[FORM]...")
@click.option(
    "--form",
    "form_files",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="A form file (TOML) of your own; repeatable.",
)
@click.option(
    "--mode",
    type=click.Choice(["per-activation", "spatial", "both"]),
    default="both",
    show_default=True,
    help="PER_ACTIVATION (N,D) statistics per feature, SPATIAL (N,C,H,W) per channel over N,H,W.",
)
@click.option(
    "--n",
    "n_text",
    default=None,
    metavar="SIZES",
    help="Batch sizes for the exact method, e.g. 1-6 (default) or 4,8,64 (M at most 1024).",
)
@click.option(
    "--shape",
    "shape_texts",
    multiple=True,
    metavar="N,D|N,C,H,W",
    help="Explicit shapes for the exact method instead of the defaults; repeatable.",
)
@click.option(
    "--method",
    type=click.Choice(["exact", "random", "general", "all"]),
    default="all",
    show_default=True,
    help="exact: proof at explicit sizes; random: exact rational evaluation at large M; "
    "general: proof for every M.",
)
@click.option(
    "--all-n", is_flag=True, help="Only the proof for every M (same as --method general)."
)
@click.option(
    "--m",
    "m_random",
    default=4096,
    show_default=True,
    type=click.IntRange(min=2),
    help="Size of the reduction set for the randomized method (at most 65536).",
)
@click.option(
    "--trials",
    default=3,
    show_default=True,
    type=click.IntRange(min=1),
    help="Random points per form for the randomized method (at most 100).",
)
@click.option(
    "--order",
    type=click.IntRange(1, 2),
    default=1,
    show_default=True,
    help="Which built-in forms: 1 the backward, 2 the double backward.",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes (default: 2 where two cores are available; at most 16).",
)
@click.option(
    "--expr",
    "expr_text",
    metavar="LATEX",
    default=None,
    help="Check one equation written in LaTeX (or a few, one per line or separated by "
    "\\\\); '-' reads it from standard input.",
)
@click.option(
    "--sigma",
    type=click.Choice(["std", "var"]),
    default=None,
    help="With --expr: what a bare σ means (std: √σ², var: the variance).",
)
@click.option(
    "--strict",
    is_flag=True,
    help="A line of a derivation that was not read or not checked, or a member of a line "
    "(A = B = C) that was not checked, makes the result undecided (exit code 3), even when "
    "everything checked holds.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the verdicts as JSON.")
@click.option("--no-timing", is_flag=True, help="Leave the time column out (stable output).")
@preamble_option
@norm_options
@click.pass_context
@user_errors
def check(
    ctx: click.Context,
    forms: tuple[str, ...],
    form_files: tuple[str, ...],
    mode: str,
    n_text: str | None,
    shape_texts: tuple[str, ...],
    method: str,
    m_random: int,
    trials: int,
    as_json: bool,
    no_timing: bool,
    all_n: bool,
    order: int,
    jobs: int | None,
    expr_text: str | None = None,
    sigma: str | None = None,
    strict: bool = False,
    norm: str = "batch",
    groups: int | None = None,
    preamble: str | None = None,
) -> None:
    r"""Check derivations of the backward pass against the ground truth.

    FORM is the name of a built-in form (see `bnderive forms`) or the path of a form file;
    without FORM and --form, every built-in form of the --order is checked (1: the backward,
    2: the double backward, with Φ = Σ ggI·dx + ggG·dγ + ggB·dβ). Every line of a form is compared
    with the truth of the quantity it defines: for every M (index notation, sums kept as
    reductions), exactly for N = 1..6 (PER_ACTIVATION) and the shapes (2,1,2,2), (2,2,2,3)
    (SPATIAL), and at random points in exact rational arithmetic for M = 4096.

    A LaTeX derivation (.md, .tex, .ipynb) is checked line by line (`bnderive parse --help`
    lists the notation understood); lines that cannot be read or checked are listed with the
    reason, and the summary says how many there were: never "holds" without that. --expr checks
    one equation given on the command line ('-': read from standard input).

    --norm checks the built-in forms of another normalization (layer, instance, group, rms)
    and reads form files as that family; a form file may also say norm = "layer" itself.
    Their exact method runs one sample with M = 1..6 (--n: the sizes M of one reduction set)
    and a shape with several sets; GroupNorm's --groups G sets the groups.

    Exit codes: 0 all hold, 1 something refuted, 2 bad input, 3 undecided (with --strict, also
    when a line, or a member of one, was not read or not checked).

    \b
    Examples:
      bnderive check
      bnderive check staged --method exact --n 8
      bnderive check --all-n
      bnderive check --order 2
      bnderive check examples/post.md
      bnderive check examples/post.md --strict
      bnderive check blueprint.tex --preamble macros.tex
      bnderive check examples/nogamma.toml --json
      bnderive check --expr '\frac{\partial L}{\partial \beta} = \sum_i g_i'
      bnderive check --norm layer
      bnderive check --norm group --groups 2
    """
    from bnderive.core.spec import Norm

    _check_options(method, all_n, n_text, shape_texts, jobs, bool(forms or form_files or expr_text))
    family = Norm.parse(norm)
    g = checked_groups(norm, groups)
    explicit = ctx.get_parameter_source("norm") is not click.core.ParameterSource.DEFAULT
    chosen = _chosen_forms(
        forms,
        form_files,
        expr_text,
        sigma,
        mode,
        order,
        family,
        family if explicit else None,
        preamble,
    )
    modes, methods, n_values, shapes = _plan_options(
        chosen, mode, method, all_n, n_text, shape_texts, family, explicit, g
    )
    result = _run_with_progress(
        chosen, modes, methods, n_values, shapes, m_random, trials, jobs, g, quiet=as_json
    )
    code = result.final_exit_code(strict)
    mistakes = _mistakes(chosen, result.verdicts)
    if as_json:
        click.echo(json_text(_json_payload(result, chosen, mistakes, code, strict)))
        sys.exit(code)
    out = console()
    print_result(out, result, timing=not no_timing)
    for form in chosen:  # a LaTeX document: what became of each line, and where it went wrong
        if not hasattr(form, "lines"):
            continue  # a TOML form: nothing to add (and the LaTeX reader is not imported)
        notes = document().line_notes(form, result.verdicts, mistakes.get(form.name, []))
        for k, note in enumerate(notes):
            out.print(f"\n[bold]{escape(note)}[/]" if k == 0 else escape(note))
    out.print(_summary(result, timing=not no_timing, strict=strict))
    sys.exit(code)


# -- the steps of check ---------------------------------------------------------------------------
def _chosen_forms(
    names: Sequence[str],
    files: Sequence[str],
    expr_text: str | None,
    sigma: str | None,
    mode: str,
    order: int,
    family: Any,
    expected: Any,
    preamble: str | None = None,
) -> list[Form]:
    """What to check: the forms named, the files given (TOML forms or LaTeX derivations), the
    --expr equation; without any of them, every built-in form of ``order`` in ``family``.
    ``expected`` is the family --norm gave (None when left out); ``preamble`` a file of macro
    definitions the derivations use (--preamble)."""
    from bnderive.core.spec import Norm
    from bnderive.read.catalogue import find_form
    from bnderive.read.derivations import builtin_forms
    from bnderive.read.forms import load_form

    norm = family.value
    if sigma is not None and expr_text is None:
        raise BnderiveError(
            "--sigma belongs to --expr; a file declares it in its front matter (sigma: std)."
        )
    if expected is not None and family is not Norm.BATCH and expr_text is not None:
        raise BnderiveError(
            f"--expr reads a BatchNorm equation; --norm {norm} applies to built-in forms and "
            f'TOML form files (norm = "{norm}").'
        )
    for path in files:
        if expected is not None and family is not Norm.BATCH and document().is_document(path):
            raise BnderiveError(
                f"{path}: LaTeX derivations are read as BatchNorm derivations; --norm "
                f'{norm} applies to built-in forms and TOML form files (norm = "{norm}").'
            )
    macros = None
    if preamble is not None:
        if not any(document().is_document(path) for path in (*names, *files)):
            raise BnderiveError(
                "--preamble holds macros for LaTeX derivations (.md, .tex, .ipynb): give the "
                "derivation that uses them as well."
            )
        macros = document().load_preamble(preamble)
    chosen = [_as_family(find_form(name, macros), expected) for name in names] + [
        document().load_document(path, preamble=macros)
        if document().is_document(path)
        else load_form(path, norm=expected)
        for path in files
    ]
    if expr_text is not None:
        chosen.append(
            document().load_expression(
                _expression_text(expr_text), sigma=sigma, mode=None if mode == "both" else mode
            )
        )
    if not chosen:
        chosen = builtin_forms(order=order, norm=family)
        if not chosen:
            raise BnderiveError(
                f"No built-in form of order {order} is installed"
                + (f" for {family.title}." if family is not Norm.BATCH else ".")
            )
    return chosen


def _expression_text(expr_text: str) -> str:
    """--expr's text; '-' reads standard input, at most FILE_BYTES (`< /dev/zero` ends)."""
    if expr_text != "-":
        return expr_text
    from bnderive.core.limits import FILE_BYTES, too_large

    text = sys.stdin.read(FILE_BYTES.limit + 1)
    if len(text) > FILE_BYTES.limit:
        raise too_large("--expr -: the text on standard input", "larger", FILE_BYTES)
    return text


def _plan_options(
    chosen: Sequence[Form],
    mode: str,
    method: str,
    all_n: bool,
    n_text: str | None,
    shape_texts: Sequence[str],
    family: Any,
    explicit: bool,
    groups: int,
) -> tuple[list[Any], list[str], list[int] | None, list[Spec]]:
    """(modes, methods, the exact method's sizes, its shapes) from the options."""
    from bnderive.core.spec import Mode, Norm, parse_shape, parse_sizes
    from bnderive.verify.plan import chosen_methods

    if mode == "per-activation" and all(f.norm in (Norm.INSTANCE, Norm.GROUP) for f in chosen):
        raise BnderiveError(
            f"{chosen[0].norm.title} takes (N, C, H, W) input only: use --mode spatial "
            "(or leave --mode out)."
        )
    modes = [Mode.PER_ACTIVATION, Mode.SPATIAL] if mode == "both" else [Mode.parse(mode)]
    n_values = parse_sizes(n_text) if n_text else None
    # Shapes are read in the family of the forms checked (a LayerNorm form's 2,4 is one sample
    # pair of 4 features), the --norm given or the forms' own when they share one.
    families = {f.norm for f in chosen}
    shape_family = family if explicit or len(families) != 1 else families.pop()
    shapes = [parse_shape(s, shape_family, groups) for s in shape_texts]
    for s in shapes:
        if s.mode not in modes:
            raise BnderiveError(
                f"The shape {s.shape} is {s.mode.value}, but --mode {mode} was given: "
                "use --mode both or a shape of that mode."
            )
    return modes, chosen_methods(method, all_n), n_values, shapes


def _run_with_progress(
    chosen: Sequence[Form],
    modes: Sequence[Any],
    methods: Sequence[str],
    n_values: Sequence[int] | None,
    shapes: Sequence[Spec],
    m_random: int,
    trials: int,
    jobs: int | None,
    groups: int,
    quiet: bool,
) -> CheckResult:
    """``check_forms`` with a progress bar on a terminal's stderr (one step per unit); without
    a terminal (or with --quiet) no bar is drawn, and rich's progress machinery is not imported."""
    from bnderive.verify.check import check_forms
    from bnderive.verify.plan import Plan, default_jobs

    def run(done: Any = None) -> CheckResult:
        return check_forms(
            chosen, modes, methods, n_values, shapes, m_random, trials,
            jobs or default_jobs(), done, groups=groups,
        )  # fmt: skip

    err = console(stderr=True)
    if not err.is_terminal or quiet:
        return run()
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )
    units = Plan(tuple(chosen), tuple(modes), tuple(methods)).units()
    with progress:
        task = progress.add_task("checking", total=len(units))
        return run(lambda unit: progress.update(task, advance=1, description=unit.label))


def _json_payload(
    result: CheckResult,
    chosen: Sequence[Form],
    mistakes: dict[str, list[Any]],
    code: int,
    strict: bool = False,
) -> dict[str, Any]:
    payload = result.to_dict()
    payload["exit_code"] = code
    # with --strict, a line (or a member) not read or not checked makes "holds" undecided
    payload["status"] = result.final_status(strict).value
    payload["documents"] = [
        _document_json(f, mistakes.get(f.name, [])) for f in chosen if hasattr(f, "lines")
    ]
    return payload


def _mistakes(forms: Sequence[Any], verdicts: Sequence[Verdict]) -> dict[str, list[Any]]:
    """Per document, its independent mistakes (only when something is refuted)."""
    from bnderive.verify.verdict import Status

    if not any(v.status is Status.REFUTED for v in verdicts):
        return {}
    from bnderive.verify.mistakes import find_mistakes

    return {f.name: find_mistakes(f, verdicts) for f in forms if hasattr(f, "lines")}


def _document_json(form: Any, mistakes: Sequence[Any]) -> dict[str, Any]:
    """A document's lines for --json: where each is, what became of it, and why."""
    return {
        "form": form.name,
        "path": form.path,
        "conventions": form.conventions(),
        "notes": list(form.notes),
        "lines": [
            {
                "line": line.line,
                "column": line.column,
                "status": line.status,
                "quantity": line.defines or None,
                "equations": list(line.equations),
                "reason": line.reason or None,
                "notes": list(line.notes),
                "latex": line.latex,
            }
            for line in form.lines
        ],
        "counts": form.counts(),
        "mistakes": [
            {
                "line": line.line if (line := form.line_of(m.equation)) else None,
                "equation": m.equation,
                "follows": m.follows,
                "inherits": m.inherits,
            }
            for m in mistakes
        ],
    }


def _as_family(form: Form, expected: Any) -> Form:
    """A named form checked as the family --norm gives (a LayerNorm form as GroupNorm): same
    per-set mathematics, or a usage error."""
    import dataclasses

    from bnderive.core.spec import Mode, Norm

    if expected is None or form.norm is expected:
        return form
    if form.norm.per_set != expected.per_set:
        raise BnderiveError(
            f"{form.name} is a derivation for {form.norm.title}, not for {expected.title}: "
            f"check it with --norm {form.norm.value} (or leave --norm out)."
        )
    modes = form.modes
    if expected in (Norm.INSTANCE, Norm.GROUP):
        modes = (Mode.SPATIAL,)
    return dataclasses.replace(form, norm=expected, modes=modes)


def _check_options(
    method: str,
    all_n: bool,
    n_text: str | None,
    shape_texts: tuple[str, ...],
    jobs: int | None,
    named: bool,
) -> None:
    """Options that contradict each other, or that the chosen methods would silently ignore,
    are an error: the verdict must say what was checked as asked."""
    from bnderive.core.limits import JOBS

    ctx = click.get_current_context()

    def given(name: str) -> bool:
        source = ctx.get_parameter_source(name)
        return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")

    if all_n and method not in ("all", "general"):
        raise BnderiveError(
            f"--all-n is the proof for every M alone (--method general); it contradicts "
            f"--method {method}: give one of them."
        )
    from bnderive.verify.plan import chosen_methods

    methods = set(chosen_methods(method, all_n))
    if n_text is not None and shape_texts:
        raise BnderiveError(
            "--n and --shape both choose the exact method's sizes: give one of them (--shape "
            "N,D or N,C,H,W for explicit shapes, --n for batch sizes with one feature)."
        )
    if (n_text is not None or shape_texts) and "exact" not in methods:
        what = "--n" if n_text is not None else "--shape"
        raise BnderiveError(
            f"{what} sets the sizes of the exact method, which --{'all-n' if all_n else 'method ' + method} "
            "does not run: add --method exact (or all), or leave it out."
        )
    for name, option in (("m_random", "--m"), ("trials", "--trials")):
        if given(name) and "random" not in methods:
            raise BnderiveError(
                f"{option} sets the randomized method, which "
                f"--{'all-n' if all_n else 'method ' + method} does not run: add --method random "
                "(or all), or leave it out."
            )
    if given("order") and named:
        raise BnderiveError(
            "--order chooses which built-in forms are checked when none is named; a named form "
            "or file has its own order: leave --order out."
        )
    if jobs is not None:
        JOBS.check(jobs)


def print_result(out: Console, result: CheckResult, timing: bool = True) -> None:
    """One table per form, one row per line, then what explains each wrong or open line."""
    from bnderive.verify.summary import methods_run, scopes

    lines = result.lines
    methods = methods_run(lines)
    for k, form in enumerate(result.forms):
        own = [line for line in lines if line.form == form.name]
        if not own:
            continue
        out.print(
            ("\n" if k else "")
            + f"[bold]{escape(form.name)}[/]: {escape(form.title)} ({escape(form.conventions())})"
        )
        out.print(_line_table(own, methods, timing))
    covered = scopes(result.verdicts)
    covered.pop("general", None)
    legend = "; ".join(
        ["every M: proved in index notation for every size M"] * ("general" in methods)
        + [f"{_METHOD_HEADER[m]}: {', '.join(covered[m])}" for m in methods if m in covered]
    )
    out.print(f"[dim]{escape(legend)}[/]")
    for line in lines:
        for text in _explanation(line, result):
            out.print(text)


_METHOD_HEADER = {"general": "every M", "exact": "exact", "random": "randomized"}


def _cell(text: str) -> str:
    """A table cell, styled by the mark it starts with."""
    style = {"✓": "green", "✗": "bold red", "?": "yellow", "·": "dim"}.get(text[:1], "yellow")
    return f"[{style}]{escape(text)}[/]"


def _line_table(lines: Sequence[LineResult], methods: Sequence[str], timing: bool) -> Table:
    from rich.table import Table

    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("line", no_wrap=True)
    table.add_column("quantity", no_wrap=True)
    for method in methods:
        table.add_column(_METHOD_HEADER[method], no_wrap=True)
    has_steps = any(line.steps for line in lines)
    if has_steps:
        table.add_column("follows", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    if timing:
        table.add_column("time", justify="right", no_wrap=True)
    for line in lines:
        row = [str(line.line), escape(line.quantity)]
        for method in methods:
            found = line.methods.get(method)
            row.append(_cell(found.words()) if found else "")
        if has_steps:
            status = line.step_status
            mark = {"holds": "✓", "refuted": "✗", "undecided": "?", "not checked": "·"}
            row.append(_cell(f"{mark[status.value]} line {line.follows_line}") if status else "")
        row.append(_cell(STATUS_STYLE[line.status.value][0]))
        if timing:
            row.append(f"{sum(v.seconds for v in line.verdicts()) * 1000:.0f} ms")
        table.add_row(*row)
    return table


def _explanation(line: LineResult, result: CheckResult) -> list[str]:
    """What a reader needs for a refuted or open line: the counterexample (the smallest one
    found), what the line is off by in index notation, the known mistake; or why it is open."""
    from bnderive.core.printing import unicode
    from bnderive.verify.verdict import Status

    where = f"{line.form}, line {line.line} ({line.quantity})"
    out: list[str] = []
    residual = result.residuals.get((line.form, line.equation))
    if line.status is Status.REFUTED:
        v = line.first(Status.REFUTED)
        assert v is not None
        out.append(f"\n[bold red]✗ {escape(where)}: refuted, {escape(v.method_words())}[/]")
        out += _counterexample(v, "truth", "form")
        if residual is not None:
            out.append(f"  truth − form = {escape(unicode(residual))}")
        for match in result.diagnoses.get((line.form, line.equation, line.quantity), []):
            first, *rest = match.lines(line.quantity)
            out.append(f"  [bold]{escape(first)}[/]")
            out += [f"  {escape(text)}" for text in rest]
    elif line.status is Status.UNDECIDED:
        out.append(f"\n[yellow]? {escape(where)}: not decided[/]")
        for method in line.methods.values():
            for v in method.verdicts:
                if v.status is Status.UNDECIDED:
                    out.append(f"  {escape(v.method_words())}: {escape(v.detail)}")
        if residual is not None:
            out.append(f"  truth − form = {escape(unicode(residual))}")
    step = line.first_step(Status.REFUTED)
    if step is not None:
        before = step.follows_line or step.follows
        out.append(
            f"\n[bold red]✗ {escape(line.form)}, line {line.line} does not follow from line "
            f"{before}, {escape(step.method_words())}[/]"
        )
        out += _counterexample(step, f"line {before}", f"line {line.line}")
    return out


def _counterexample(v: Verdict, reference: str, mine: str) -> list[str]:
    c = v.counterexample
    if c is None:
        return [f"  {escape(v.detail)}"] if v.detail else []
    inputs = "; ".join(f"{k} = {val}" for k, val in c.inputs.items())
    return [
        f"  counterexample: {escape(c.spec.describe())}, {c.spec.set_label(c.channel)}",
        f"    {escape(inputs)}",
        f"    {escape(c.entry)}: {reference} {escape(c.truth)}, {mine} {escape(c.form)}",
    ]


def _summary(result: CheckResult, timing: bool, strict: bool = False) -> str:
    """One sentence: the overall verdict, and how many lines each status covers; for a
    derivation document, how many of its lines were not read or not checked and why (the
    first few): "holds" never covers what was left out."""
    from bnderive.verify.verdict import Status

    lines = result.lines
    counts = {s: sum(1 for line in lines if line.status is s) for s in Status}
    parts = [f"{counts[Status.HOLDS]} hold"]
    for status, word in (
        (Status.REFUTED, "refuted"),
        (Status.UNDECIDED, "undecided"),
        (Status.UNCHECKED, "not checked"),
    ):
        if counts[status]:
            parts.append(f"{counts[status]} {word}")
    steps = [line for line in lines if line.step_status is Status.REFUTED]
    if steps:
        parts.append(f"{len(steps)} step(s) that do not follow")
    status = result.final_status(strict)
    skipped = [line for found in result.left_out().values() for line in found]
    partly = [line for found in result.partly_checked().values() for line in found]
    text, style = STATUS_STYLE[status.value]
    took = f" in {result.seconds:.1f} s" if timing else ""
    names = ", ".join(f.name for f in result.forms)
    noun = "line" if len(lines) == 1 else "lines"
    out = (
        f"\n[{style}]{text}[/]: {len(result.forms)} form(s) ({escape(names)}), "
        f"{len(lines)} {noun}: {', '.join(parts)}{took}."
    )
    if skipped or partly:
        unread = [line for line in skipped if line.status == "not read"]
        unchecked = [line for line in skipped if line.status == "not checked"]
        said = []
        if unread:
            said.append(f"{len(unread)} line(s) not read ({_first_reasons(unread)})")
        if unchecked:
            said.append(f"{len(unchecked)} not checked ({_first_reasons(unchecked)})")
        if partly:
            said.append(
                f"{len(partly)} with a member not checked, not covered by the verdict "
                f"({_first_reasons(partly, why=_member_reason)})"
            )
        tail = "--strict: undecided (exit code 3)" if strict else "--strict makes them exit code 3"
        out += f"\n  not everything was checked: {'; '.join(said)}; {tail}."
    return out


def _member_reason(line: Any) -> str:
    """What a partly checked line says of its first member not checked (its note)."""
    said = [n for n in line.notes if n.startswith("member ") and " not checked" in n]
    k = line.members.index(None) + 1
    return said[0] if said else f"member {k} not checked"


def _first_reasons(
    lines: Sequence[Any], limit: int = 3, why: Callable[[Any], str] = lambda line: line.reason
) -> str:
    shown = "; ".join(f"line {line.line}: {_short(why(line))}" for line in lines[:limit])
    more = f"; … {len(lines) - limit} more" if len(lines) > limit else ""
    return escape(shown + more)


def _short(text: str, limit: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
