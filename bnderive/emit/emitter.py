"""``bnderive emit``: a proven form as a verified NumPy or numba module.

The printers (``numpy_module``, ``numba_module``) write the source; ``verification`` checks it
against the ground truth; only a module that passes is returned.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bnderive.core.spec import Mode, Norm, Spec
from bnderive.emit.family_module import Layout
from bnderive.emit.numpy_module import render
from bnderive.emit.verification import EmitVerificationError, Verification, verify_module
from bnderive.errors import BnderiveError, FormError
from bnderive.read.forms import Form


@dataclass(frozen=True)
class Emitted:
    source: str
    form: Form
    mode: Mode
    verification: Verification
    target: str = "numpy"
    layout: Layout | None = None  # a relative's layout (None: BatchNorm)


def emit(
    form: Form,
    mode: Mode,
    version: str | None = None,
    target: str = "numpy",
    layout: Layout | None = None,
) -> Emitted:
    """The verified module for ``form`` in ``mode``, for ``target`` "numpy" or "numba".

    ``layout`` (``family_module.Layout``) emits the module of one of BatchNorm's relatives
    (LayerNorm, InstanceNorm, GroupNorm, RMSNorm) instead; ``mode`` is then not used (the
    layout says where the reduction sets lie) and the target is NumPy only.

    The module is verified in a child process (``verify_module``): bnderive never imports it.
    The numba module is verified twice: its source runs as plain Python (numba's ``njit`` the
    identity) through every check of the numpy target, exact rationals included, and exactly
    again with the rows cut into chunks of 1 and 2 rows (the verification inputs fit in one
    chunk otherwise); then compiled by numba, in float64 at the adversarial inputs (also in
    chunks) and for float32 dtype preservation.

    Raises ``FormError`` for a form that cannot be emitted (or whose strings cannot be written
    into the module's header), and ``EmitVerificationError`` when the module disagrees with the
    truth: then the form itself is checked, so that the message says whether the form is wrong
    (refuted) or bnderive is (a bug to report; ``refuted`` False).
    """
    if version is None:
        from bnderive import __version__ as version
    if layout is not None:
        return _emit_family(form, layout, version, target)
    if target == "numba":
        from bnderive.emit import numba_module as emit_numba

        if not emit_numba.numba_available():
            raise emit_numba.NumbaMissingError(
                "--target numba needs numba, which is not installed: pip install numba "
                "(or pip install 'bnderive[numba]')."
            )
        source = emit_numba.render_numba(form, mode, version)
    elif target == "numpy":
        source = render(form, mode, version)
    else:
        raise FormError(f"unknown target {target!r}: numpy or numba")
    try:
        verification = verify_module(source, form, mode, target)
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
                f"{form.path or form.name}`. Nothing was written.",
                refuted=True,
            ) from exc
        raise EmitVerificationError(
            f"bnderive bug: {exc}. The form holds, so the emitter is wrong; please report this "
            "with the form. Nothing was written."
        ) from exc
    return Emitted(source, form, mode, verification, target)


def _emit_family(form: Form, layout: Layout, version: str, target: str) -> Emitted:
    """A relative's module, verified against the whole layer's truth (``verify_family_module``)."""
    from bnderive.emit.family_module import render_family
    from bnderive.emit.verification import verify_family_module

    if target != "numpy":
        raise FamilyTargetError(
            f"--target {target} writes BatchNorm's fused kernel only; {layout.norm.title} is "
            "emitted as NumPy: use --target numpy (the default) with --norm "
            f"{layout.norm.value}."
        )
    source = render_family(form, layout, version)
    try:
        verification = verify_family_module(source, form, layout)
    except EmitVerificationError as exc:
        from bnderive.verify.exact import exact_check
        from bnderive.verify.verdict import Status

        small = family_small_spec(layout, form)
        refuted = [v for v in exact_check(form, [small]) if v.status is Status.REFUTED]
        if refuted:
            v = refuted[0]
            raise EmitVerificationError(
                f"the form {form.name!r} is refuted (line {v.equation}, {v.quantity}, exact at "
                f"{small.describe()}), so code from it would be wrong; see `bnderive check "
                f"--norm {layout.norm.value} --form {form.path or form.name}`. Nothing was "
                "written.",
                refuted=True,
            ) from exc
        raise EmitVerificationError(
            f"bnderive bug: {exc}. The form holds, so the emitter is wrong; please report this "
            "with the form. Nothing was written."
        ) from exc
    mode = Mode.PER_ACTIVATION if layout.rows else Mode.SPATIAL
    return Emitted(source, form, mode, verification, target, layout)


def family_small_spec(layout: Layout, form: Form) -> Spec:
    """A small layer of the family (M = 3 per set) for deciding whether a form is wrong."""
    if layout.rows:
        base = Spec(Mode.PER_ACTIVATION, n=1, c=3, norm=layout.norm)
    elif layout.norm is Norm.INSTANCE:
        base = Spec(Mode.SPATIAL, n=1, c=1, h=1, w=3, norm=layout.norm)
    else:
        base = Spec(
            Mode.SPATIAL, n=1, c=layout.groups, h=1, w=3, norm=layout.norm, groups=layout.groups
        )
    return form.spec(base)


class FamilyTargetError(BnderiveError):
    """A target that does not write this family's code (numba is BatchNorm's)."""


# -- writing the module: never onto an input, never half a file --------------------------------------
def check_output(output: str, inputs: list[str]) -> None:
    """Refuse an output path that is one of the run's inputs (the form file: writing the module
    there would destroy it) or that exists and is not a regular file (a device, a FIFO, a
    directory: the module is written by replacing the file).  Called before any work."""
    target = Path(output)
    for given in inputs:
        source = Path(given)
        same = os.path.realpath(target) == os.path.realpath(source)
        if not same and target.exists() and source.exists():
            same = os.path.samefile(target, source)
        if same:
            raise BnderiveError(
                f"-o {output} is the form file being emitted ({given}): writing the module there "
                "would destroy the form. Give another output file."
            )
    if not Path(os.path.realpath(target)).parent.is_dir():
        raise BnderiveError(f"Cannot write {output}: the directory {target.parent} does not exist.")
    if target.exists() and not target.resolve().is_file():
        raise BnderiveError(
            f"-o {output} exists and is not a regular file; emit writes the module by replacing "
            "a file. Give a file path, or leave -o out to print the module."
        )


def write_atomically(output: str, text: str) -> None:
    """Write ``text`` to ``output`` through a temporary file in the same directory and a rename:
    a reader (or an interrupted run) sees the old file or the whole new one, never a part.  The
    path's target is replaced when it is a symbolic link; its permissions are kept when it
    exists (else the umask's)."""
    target = Path(os.path.realpath(output))
    try:
        mode = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    handle = tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=target.parent, prefix=f".{target.name}.", delete=False
    )
    try:
        with handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(handle.name, mode)
        os.replace(handle.name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(handle.name)
        raise
