"""``bnderive emit``: a proven form as a verified NumPy or numba module.

The printers (``numpy_module``, ``numba_module``) write the source; ``verification`` checks it
against the ground truth; only a module that passes is returned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bnderive.core.spec import Mode, Spec
from bnderive.emit.numpy_module import render
from bnderive.emit.verification import (
    EmitVerificationError,
    Verification,
    load_module,
    verify_module,
)
from bnderive.errors import FormError
from bnderive.read.forms import Form


@dataclass(frozen=True)
class Emitted:
    source: str
    form: Form
    mode: Mode
    verification: Verification
    target: str = "numpy"


def emit(form: Form, mode: Mode, version: str | None = None, target: str = "numpy") -> Emitted:
    """The verified module for ``form`` in ``mode``, for ``target`` "numpy" or "numba".

    The numba module is verified twice: its source runs as plain Python (numba's ``njit`` the
    identity) through every check of the numpy target, exact rationals included, and exactly
    again with the rows cut into chunks of 1 and 2 rows (the verification inputs fit in one
    chunk otherwise); then compiled by numba, in float64 at the adversarial inputs (also in
    chunks) and for float32 dtype preservation.

    Raises ``FormError`` for a form that cannot be emitted, and ``EmitVerificationError`` when
    the module disagrees with the truth: then the form itself is checked, so that the message
    says whether the form is wrong (refuted) or bnderive is (a bug to report).
    """
    if version is None:
        from bnderive import __version__ as version
    compiled: Callable[[], list[str]] | None = None
    if target == "numba":
        from bnderive.emit import numba_module as emit_numba

        if not emit_numba.numba_available():
            raise emit_numba.NumbaMissingError(
                "--target numba needs numba, which is not installed: pip install numba "
                "(or pip install 'bnderive[numba]')."
            )
        source = emit_numba.render_numba(form, mode, version)
        loader: Callable[[str, str], dict[str, Any]] = emit_numba.load_plain

        def compiled() -> list[str]:
            return [
                emit_numba.chunked_check(source, form, mode),
                *emit_numba.compiled_checks(source, form, mode),
            ]

    elif target == "numpy":
        source = render(form, mode, version)
        loader = load_module
    else:
        raise FormError(f"unknown target {target!r}: numpy or numba")
    try:
        verification = verify_module(source, form, mode, loader)
        if compiled is not None:
            plain = [f"{c} (the kernel as plain Python)" for c in verification.checks]
            verification = Verification(tuple(plain + compiled()))
    except EmitVerificationError as exc:
        from bnderive.verify.exact import exact_check
        from bnderive.verify.verdict import Status

        # Is the form itself wrong?  One small exact check (M = 3) says so quickly.
        small = Spec(mode, n=3) if mode is Mode.PER_ACTIVATION else Spec(mode, n=1, h=1, w=3)
        verdicts = exact_check(form, [small])
        refuted = [v for v in verdicts if v.status is Status.REFUTED]
        if refuted:
            v = refuted[0]
            raise EmitVerificationError(
                f"the form {form.name!r} is refuted (line {v.equation}, {v.quantity}, exact at "
                f"M = 3), so code from it would be wrong; see `bnderive check --form "
                f"{form.path or form.name}`. Nothing was written."
            ) from exc
        raise EmitVerificationError(
            f"bnderive bug: {exc}. The form holds, so the emitter is wrong; please report this "
            "with the form. Nothing was written."
        ) from exc
    return Emitted(source, form, mode, verification, target)
