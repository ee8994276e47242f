"""bnderive: prove or refute derivations of the Batch Normalization backward pass, exactly."""

from .derive import Adjoint, Truth, derive
from .errors import BnderiveError, EvaluationError, FormError, SpecError
from .forms import Equation, Form, builtin_forms, find_form, load_form
from .graph import Graph, Stage
from .spec import Mode, Spec
from .verify import (
    Counterexample,
    Status,
    Verdict,
    check_form,
    exact_check,
    exit_code,
    random_check,
)

__version__ = "0.1.0"

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
    "Spec",
    "SpecError",
    "Stage",
    "Status",
    "Truth",
    "Verdict",
    "builtin_forms",
    "check_form",
    "derive",
    "exact_check",
    "exit_code",
    "find_form",
    "load_form",
    "random_check",
    "__version__",
]
