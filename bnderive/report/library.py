"""``bnderive.check`` and ``bnderive.check_impl``: the library's results, shown in Jupyter.

    import bnderive
    result = bnderive.check("staged", "examples/post.md")   # a CheckResult
    result                                                   # a notebook shows the report
    bnderive.check_impl("examples/layers_nogamma.py")        # check-impl's Report, the same

The results are ``verify.check.CheckResult`` and ``usercode.check_impl.Report`` (subclasses that
add ``_repr_markdown_`` and ``_repr_latex_``): everything else about them is unchanged.  Both
views are the report's own printers on a report of that one result (no graph or ground truth).
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bnderive.core.spec import Mode, Norm
from bnderive.read.forms import Form
from bnderive.report.build import build_report
from bnderive.usercode.check_impl import Report as ImplReport
from bnderive.usercode.check_impl import check_impl as _check_impl
from bnderive.verify.check import CheckResult


class _Views:
    """``_repr_markdown_`` and ``_repr_latex_`` from the report printers."""

    def _report(self) -> Any:  # pragma: no cover - each result class defines it
        raise NotImplementedError

    def _repr_markdown_(self) -> str:
        from bnderive.report.markdown import markdown

        return markdown(self._report())

    def _repr_latex_(self) -> str:
        """The report's body (sections, tables, equations) without the document around it:
        what a notebook's LaTeX view and a ``\\input`` of a handout take."""
        from bnderive.report.latex import latex

        text = latex(self._report())
        body = text.split("\\maketitle\n", 1)[1].rsplit("\\end{document}", 1)[0]
        return body.strip() + "\n"


@dataclasses.dataclass
class CheckReport(CheckResult, _Views):
    """A ``CheckResult`` that renders as a report in Jupyter."""

    command: str = ""

    def _report(self) -> Any:
        return build_report(check_result=self, truth=False, command=self.command)


@dataclasses.dataclass
class ImplCheckReport(ImplReport, _Views):
    """check-impl's ``Report`` that renders as a report in Jupyter."""

    def _report(self) -> Any:
        command = shlex.join(["bnderive", "check-impl", self.file])
        return build_report(impl_reports=[self], truth=False, command=command)


def check(
    *forms: str | Form,
    modes: Sequence[Mode | str] = (Mode.PER_ACTIVATION, Mode.SPATIAL),
    methods: Sequence[str] = ("general", "exact", "random"),
    norm: Norm | str | None = None,
    jobs: int = 1,
) -> CheckReport:
    """Check forms as ``bnderive check`` does: each a built-in form's name, a form file (TOML),
    a derivation (.md, .tex, .ipynb) or a ``Form``; none: the built-in forms of order 1 of
    ``norm`` (BatchNorm by default)."""
    from bnderive.read import documents
    from bnderive.read.catalogue import find_form
    from bnderive.read.derivations import builtin_forms
    from bnderive.read.forms import load_form
    from bnderive.verify.check import check_forms

    family = Norm.parse(norm) if norm is not None else None
    chosen: list[Form] = []
    for item in forms:
        if isinstance(item, Form):
            chosen.append(item)
        elif documents.is_document(item):
            chosen.append(documents.load_document(item))
        elif str(item).lower().endswith(".toml") or Path(str(item)).is_file():
            chosen.append(load_form(item, norm=family))
        else:
            chosen.append(find_form(str(item)))
    if not chosen:
        family = family or Norm.BATCH
        chosen = [f for f in builtin_forms() if f.order == 1 and f.norm is family]
    mode_list = [Mode.parse(m) if isinstance(m, str) else m for m in modes]
    if all(f.norm in (Norm.INSTANCE, Norm.GROUP) for f in chosen):
        mode_list = [Mode.SPATIAL]
    result = check_forms(chosen, mode_list, methods, jobs=jobs)
    names = [str(f) if not isinstance(f, Form) else f.name for f in forms]
    return CheckReport(
        **{f.name: getattr(result, f.name) for f in dataclasses.fields(CheckResult)},
        command=shlex.join(["bnderive", "check", *names, *_options(methods, norm)]),
    )


def _options(methods: Sequence[str], norm: Norm | str | None) -> list[str]:
    words = []
    if set(methods) != {"general", "exact", "random"}:
        words += ["--method", methods[0]] if len(methods) == 1 else []
    if norm is not None and Norm.parse(norm) is not Norm.BATCH:
        words += ["--norm", Norm.parse(norm).value]
    return words


def check_impl(path: str | Path, **options: Any) -> ImplCheckReport:
    """``usercode.check_impl.check_impl`` (the same options), with the Jupyter views."""
    found = _check_impl(path, **options)
    return ImplCheckReport(
        **{f.name: getattr(found, f.name) for f in dataclasses.fields(ImplReport)}
    )


__all__ = ["CheckReport", "ImplCheckReport", "check", "check_impl"]
