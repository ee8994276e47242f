"""Building a ``Report`` from inputs: the library runs, the model records what it found.

    report = build_report(forms=[find_form("staged")], implementations=["examples/layers.py"])
    markdown(report), latex(report), report.exit_code

Nothing here prints or decides a verdict: ``check_forms``, ``check_impl`` and ``emit`` do.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from typing import Any

from bnderive.core.spec import Mode, Norm, Spec
from bnderive.errors import BnderiveError
from bnderive.read.forms import Form
from bnderive.report.model import (
    PUBLISHED,
    STATUS_OF_EXIT,
    CodeSection,
    FormSection,
    GraphSection,
    ImplSection,
    Report,
    Summary,
    TruthSection,
    combined_exit,
    form_section,
    graph_section,
    impl_section,
    proven_forms,
    report_date,
    truth_section,
    verdict_sentence,
    versions,
)

#: The form each family's --code emits, as ``bnderive emit`` does without --form.
CODE_FORMS = {
    Norm.BATCH: "compact",
    Norm.LAYER: "layernorm-pytorch",
    Norm.INSTANCE: "instancenorm-pytorch",
    Norm.GROUP: "groupnorm-pytorch",
    Norm.RMS: "rmsnorm-rstd",
}

#: A stability section's maker: called with the modes, returns the section object (or None).
StabilityMaker = Callable[[], Any]


def base_spec(mode: Mode, norm: Norm, groups: int = 1) -> Spec:
    """A spec of the mode and family with the default conventions (sizes do not matter)."""
    if norm in (Norm.INSTANCE, Norm.GROUP):
        return Spec(Mode.SPATIAL, n=2, c=2 * groups, h=2, w=2, norm=norm, groups=groups)
    if mode is Mode.SPATIAL:
        return Spec(mode, n=2, c=1, h=2, w=2, norm=norm)
    return Spec(mode, n=4, c=1 if norm is Norm.BATCH else 3, norm=norm)


def published_forms(norm: Norm) -> list[Form]:
    """BatchNorm's three published closed forms; a relative's built-in forms of order 1."""
    from bnderive.read.derivations import builtin_forms

    forms = [f for f in builtin_forms() if f.norm is norm and f.order == 1]
    if norm is Norm.BATCH:
        forms = [f for name in PUBLISHED for f in forms if f.name == name]
    return forms


def build_report(
    forms: Sequence[Form] = (),
    implementations: Sequence[str] = (),
    *,
    modes: Sequence[Mode] = (Mode.PER_ACTIVATION, Mode.SPATIAL),
    norm: Norm = Norm.BATCH,
    groups: int = 1,
    jobs: int = 1,
    code: bool = False,
    code_forms: Sequence[Form] = (),
    stability: StabilityMaker | None = None,
    command: str = "",
    title: str = "",
    truth: bool = True,
    check_result: Any = None,
    impl_reports: Sequence[Any] = (),
) -> Report:
    """Check ``forms`` (every method, every mode) and ``implementations`` (check-impl), and
    gather the report's sections.  ``code``: the emitted modules of ``code_forms`` that hold
    (none: the family's default form, as ``bnderive emit`` writes it).  ``check_result`` and
    ``impl_reports`` are results computed
    already (a notebook's ``bnderive.check(...)``); ``truth`` False leaves the graph and the
    ground truth out (a notebook view of one result)."""
    from bnderive.verify.check import check_forms

    modes = _modes_for(forms, modes, norm)
    result = check_result
    if result is None and forms:
        result = check_forms(list(forms), modes, jobs=jobs, groups=groups)
    form_sections = _form_sections(result)
    reports = list(impl_reports)
    if implementations:
        from bnderive.usercode.check_impl import check_impl

        reports += [check_impl(path) for path in implementations]
    impls = [impl_section(found) for found in reports]
    if not forms and reports:  # an implementation alone: the modes its functions ran in
        seen = {v.mode for found in reports for v in found.verdicts if v.mode is not None}
        modes = [m for m in modes if m in seen] or list(modes)
    graphs, truths = _truth(forms, result, modes, norm, groups, jobs) if truth else ([], [])
    code_sections, code_notes = (
        _code(norm, modes, groups, code_forms, form_sections) if code else ([], [])
    )
    made = stability() if stability is not None else None
    codes = [result.exit_code] if result is not None else []
    # nothing checked is undecided, never "holds"
    exit_code = combined_exit(codes + [found.exit_code for found in reports])
    return Report(
        title or _title(form_sections, impls, norm),
        _summary(form_sections, impls, norm, result, exit_code, command),
        tuple(graphs),
        tuple(truths),
        tuple(form_sections),
        tuple(impls),
        tuple(code_sections),
        (made,) if made is not None else (),
        exit_code,
        tuple(code_notes),
    )


def _form_sections(result: Any) -> list[FormSection]:
    """Each checked form as a section, with the independent mistakes of a document whose
    lines were refuted (none: nothing was checked)."""
    from bnderive.verify.mistakes import find_mistakes
    from bnderive.verify.verdict import Status

    if result is None:
        return []
    refuted = any(v.status is Status.REFUTED for v in result.verdicts)
    return [
        form_section(
            form,
            result,
            find_mistakes(form, result.verdicts) if refuted and hasattr(form, "lines") else [],
        )
        for form in result.forms
    ]


def _truth(
    forms: Sequence[Form],
    result: Any,
    modes: Sequence[Mode],
    norm: Norm,
    groups: int,
    jobs: int,
) -> tuple[list[GraphSection], list[TruthSection]]:
    """The forward graph and the ground truth stage by stage with the published forms proven
    for every M, at the conventions of the first form checked when it is of ``norm`` (eval
    mode, …), else the family's defaults."""
    proven = _proven(published_forms(norm), result, jobs, groups)
    spec = base_spec(modes[0], norm, groups)
    if forms and forms[0].norm is norm:
        spec = forms[0].spec(spec)  # the conventions of the form checked (eval mode, …)
    return [graph_section(spec, modes)], [truth_section(spec, proven, modes)]


def _summary(
    form_sections: Sequence[FormSection],
    impls: Sequence[ImplSection],
    norm: Norm,
    result: Any,
    exit_code: int,
    command: str,
) -> Summary:
    """What was checked (nothing: the family's ground truth), under which conventions, the
    status of ``exit_code`` in one sentence, the command, the versions and the methods."""
    status = STATUS_OF_EXIT[exit_code]
    checked = [f"{s.kind} {s.path or s.name}: {s.title}" for s in form_sections] + [
        f"implementation {i.path} ({i.api} API)" for i in impls
    ]
    if not checked:
        checked = [f"the ground truth of {norm.title}"]
    conventions = list(dict.fromkeys(s.conventions for s in form_sections))
    return Summary(
        tuple(checked),
        tuple(conventions),
        status,
        verdict_sentence(form_sections, impls, status),
        command,
        versions(),
        tuple(_methods(result)),
        report_date(),
    )


def _title(forms: Sequence[FormSection], impls: Sequence[ImplSection], norm: Norm) -> str:
    if not forms and impls:
        return "bnderive report: " + ", ".join(i.path for i in impls)
    if len(forms) == 1 and not impls:
        return f"bnderive report: {forms[0].path or forms[0].name}"
    return f"bnderive report: {norm.title} backward pass"


def _modes_for(forms: Sequence[Form], modes: Sequence[Mode], norm: Norm) -> list[Mode]:
    """The modes asked for that the forms have (InstanceNorm and GroupNorm: SPATIAL only)."""
    if norm in (Norm.INSTANCE, Norm.GROUP):
        return [Mode.SPATIAL]
    if forms:
        have = {m for f in forms for m in f.modes}
        chosen = [m for m in modes if m in have]
        return chosen or list(modes)
    return list(modes)


def _methods(result: Any) -> list[str]:
    if result is None:
        return []
    from bnderive.verify.summary import methods_run, scopes

    covered = scopes(result.verdicts)
    out = []
    for method in methods_run(result.lines):
        if method == "general":
            out.append("every M: proved in index notation for every size M")
        else:
            name = "exact" if method == "exact" else "randomized"
            out.append(f"{name}: {', '.join(covered.get(method, []))}")
    return out


def _proven(published: Sequence[Form], result: Any, jobs: int, groups: int) -> list[Any]:
    """The published forms' every-M verdicts: from the check when it ran them, else run now."""
    from bnderive.verify.check import check_forms

    have = {f.name for f in result.forms} if result is not None else set()
    reuse = [f for f in published if f.name in have]
    missing = [f for f in published if f.name not in have]
    lines = list(result.lines) if result is not None and reuse else []
    if missing:
        modes = list(dict.fromkeys(m for f in missing for m in f.modes))
        extra = check_forms(missing, modes, methods=("general",), jobs=jobs, groups=groups)
        lines += extra.lines
    return proven_forms(published, lines)


def _code(
    norm: Norm,
    modes: Sequence[Mode],
    groups: int,
    given: Sequence[Form],
    sections: Sequence[FormSection],
) -> tuple[list[CodeSection], list[str]]:
    """The modules ``bnderive emit`` writes from each form given that holds (a built-in form or
    a form file), or from the family's default form when none is given or none can be emitted;
    each mode, NumPy (and numba for BatchNorm, when installed), each verified by ``emit``
    before it is listed.  The notes say which forms were listed and why those."""
    from bnderive.read.catalogue import find_form

    status = {s.name: s.status for s in sections}
    notes: list[str] = []
    listed: list[CodeSection] = []
    for form in given:
        why = _not_emitted(form, status.get(form.name, "undecided"), norm)
        if why:
            notes.append(f"{form.name} is not listed: {why}.")
            continue
        try:
            listed += _emitted(form, norm, modes, groups)
        except BnderiveError as exc:
            notes.append(f"{form.name} is not listed: bnderive emit cannot write it. {exc}")
    if listed:
        names = list(dict.fromkeys(c.form for c in listed))
        commands = ", ".join(f"bnderive emit --form {name}" for name in names)
        notes.insert(0, f"Listed: what {commands} writes{_what(listed)}.")
    else:
        default = CODE_FORMS[norm]
        listed = _emitted(find_form(default), norm, modes, groups)
        proven = ", one of the published forms proven above" if default in PUBLISHED else ""
        notes.insert(
            0,
            f"Listed: what bnderive emit writes without --form for {norm.title}, from the "
            f"{default} form{proven}{_what(listed)}; "
            + (
                "no form given could be emitted (below)."
                if given
                else "give a form (bnderive report FORM --code) to list its module instead."
            ),
        )
    if norm is not Norm.BATCH:
        notes.append("numba kernels are emitted for BatchNorm only.")
    elif importlib.util.find_spec("numba") is None:
        notes.append("No numba kernel: numba is not installed (pip install numba).")
    return listed, notes


def _what(listed: Sequence[CodeSection]) -> str:
    """' (numpy and numba; per-activation, spatial)': the targets and modes listed."""
    targets = " and ".join(dict.fromkeys(c.target for c in listed))
    modes = ", ".join(dict.fromkeys(c.mode for c in listed))
    return f" ({targets}; {modes})"


def _not_emitted(form: Form, status: str, norm: Norm) -> str:
    """Why ``form`` is not emitted, or "" when it is."""
    if hasattr(form, "lines"):
        return "a derivation document is checked, not emitted (write it as a form file)"
    if status != "holds":
        return f"it does not hold ({status}); only a proven form is emitted"
    if form.norm is not norm:
        return f"it is a {form.norm.title} form in a {norm.title} report"
    return ""


def _emitted(form: Form, norm: Norm, modes: Sequence[Mode], groups: int) -> list[CodeSection]:
    from bnderive import __version__
    from bnderive.emit.emitter import emit
    from bnderive.emit.family_module import Layout

    if norm is not Norm.BATCH:
        emitted = emit(form, Mode.SPATIAL, __version__, layout=Layout(norm, groups))
        return [_code_section(emitted, norm.title)]
    targets = ["numpy"]
    if importlib.util.find_spec("numba") is not None:
        targets.append("numba")
    return [
        _code_section(emit(form, mode, __version__, target=target), mode.value)
        for mode in modes
        for target in targets
    ]


def _code_section(emitted: Any, where: str) -> CodeSection:
    return CodeSection(
        emitted.form.name,
        where,
        emitted.target,
        emitted.source,
        tuple(emitted.verification.checks),
    )


def no_forms_error(norm: Norm) -> BnderiveError:
    return BnderiveError(f"No built-in form is installed for {norm.title}.")
