"""bnderive: prove or refute derivations of the Batch Normalization backward pass, exactly.

The public API is re-exported here and imported on first use (PEP 562), so that the command
line starts without SymPy and NumPy::

    from bnderive import derive, find_form, check_form, Spec, Mode

``bnderive.check(...)`` and ``bnderive.check_impl(...)`` return results that a Jupyter notebook
shows as a report (Markdown or LaTeX).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Each public name and the module that defines it.
_API = {
    "Adjoint": "bnderive.core.derive",
    "Truth": "bnderive.core.derive",
    "derive": "bnderive.core.derive",
    "Graph": "bnderive.core.graph",
    "Stage": "bnderive.core.graph",
    "Mode": "bnderive.core.spec",
    "Norm": "bnderive.core.spec",
    "Spec": "bnderive.core.spec",
    "layer_truth": "bnderive.core.layer",
    "affine_bn_relu_truth": "bnderive.core.composite",
    "BnderiveError": "bnderive.errors",
    "EvaluationError": "bnderive.errors",
    "FormError": "bnderive.errors",
    "SpecError": "bnderive.errors",
    "Equation": "bnderive.read.forms",
    "Form": "bnderive.read.forms",
    "load_form": "bnderive.read.forms",
    "builtin_forms": "bnderive.read.catalogue",
    "find_form": "bnderive.read.catalogue",
    "Counterexample": "bnderive.verify.verdict",
    "Status": "bnderive.verify.verdict",
    "Verdict": "bnderive.verify.verdict",
    "exit_code": "bnderive.verify.verdict",
    "exact_check": "bnderive.verify.exact",
    "random_check": "bnderive.verify.randomized",
    "check_form": "bnderive.verify.plan",
    # the results of these two render as reports in Jupyter (_repr_markdown_, _repr_latex_)
    "check": "bnderive.report.library",
    "check_impl": "bnderive.report.library",
}

__all__ = [
    "Adjoint",
    "BnderiveError",
    "Counterexample",
    "Equation",
    "EvaluationError",
    "Form",
    "FormError",
    "Graph",
    "Mode",
    "Norm",
    "Spec",
    "SpecError",
    "Stage",
    "Status",
    "Truth",
    "Verdict",
    "affine_bn_relu_truth",
    "builtin_forms",
    "check",
    "check_form",
    "check_impl",
    "derive",
    "exact_check",
    "exit_code",
    "find_form",
    "layer_truth",
    "load_form",
    "random_check",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'bnderive' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from bnderive.core.composite import affine_bn_relu_truth
    from bnderive.core.derive import Adjoint, Truth, derive
    from bnderive.core.graph import Graph, Stage
    from bnderive.core.layer import layer_truth
    from bnderive.core.spec import Mode, Norm, Spec
    from bnderive.errors import BnderiveError, EvaluationError, FormError, SpecError
    from bnderive.read.catalogue import builtin_forms, find_form
    from bnderive.read.forms import Equation, Form, load_form
    from bnderive.report.library import check, check_impl
    from bnderive.verify.exact import exact_check
    from bnderive.verify.plan import check_form
    from bnderive.verify.randomized import random_check
    from bnderive.verify.verdict import Counterexample, Status, Verdict, exit_code
