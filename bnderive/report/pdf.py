"""The LaTeX report compiled to PDF by TeX Live, in a temporary directory, shell escape off.

``latexmk -pdf`` when it is installed (it reruns pdflatex until the references settle), else
``pdflatex`` twice; always ``-no-shell-escape -halt-on-error -interaction=nonstopmode``, a
timeout, and the file in a fresh temporary directory, so that the engine writes nowhere else.
``openout_any=p`` (paranoid: TeX writes only below the current directory) is set in the
environment as well, and the document never asks for a shell.  A missing engine is bad input
(exit 2) with the exact ``apt-get install`` line.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from bnderive.errors import BnderiveError

#: The Debian packages a report needs (``.ci/run`` installs the same).
TEX_PACKAGES = (
    "texlive-latex-base",
    "texlive-latex-recommended",
    "texlive-pictures",
    "latexmk",
)
INSTALL = "sudo apt-get install -y --no-install-recommends " + " ".join(TEX_PACKAGES)
#: Seconds a compilation may take (a report compiles in a few).
TIMEOUT = 120


class TexMissingError(BnderiveError):
    """No TeX engine: the report cannot be compiled."""


class TexFailedError(RuntimeError):
    """The engine stopped on the document: a bug in bnderive's LaTeX (exit 4)."""


def engine() -> list[str]:
    """The command that compiles ``report.tex`` in the current directory."""
    if shutil.which("pdflatex") is None:
        raise TexMissingError(
            "--format pdf needs pdflatex from TeX Live, which was not found on PATH. Install "
            f"it (Debian/Ubuntu): {INSTALL}; or write the LaTeX with --format tex and compile "
            "it elsewhere."
        )
    flags = ["-no-shell-escape", "-halt-on-error", "-interaction=nonstopmode"]
    if shutil.which("latexmk") is not None:
        return [
            "latexmk",
            "-pdf",
            "-quiet",
            f"-pdflatex=pdflatex {' '.join(flags)} %O %S",
            "report.tex",
        ]
    return ["pdflatex", *flags, "report.tex"]


def compile_pdf(tex: str, timeout: float = TIMEOUT) -> bytes:
    """The PDF of the LaTeX document ``tex``; ``TexFailedError`` with the log's first error."""
    command = engine()
    env = dict(os.environ, openout_any="p", openin_any="p", shell_escape="f")
    with tempfile.TemporaryDirectory(prefix="bnderive-report-") as tmp:
        work = Path(tmp)
        (work / "report.tex").write_text(tex, encoding="ascii")
        runs = 1 if command[0] == "latexmk" else 2
        for _ in range(runs):
            # its own session: on a timeout latexmk and the pdflatex it started die together
            child = subprocess.Popen(
                command,
                cwd=work,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                output, _ = child.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.communicate()
                raise TexFailedError(
                    f"{command[0]} did not finish within {timeout:.0f} s on the report."
                ) from None
            if child.returncode != 0 or not (work / "report.pdf").exists():
                log = work / "report.log"
                text = log.read_text(errors="replace") if log.exists() else output.decode()
                first = next((line for line in text.splitlines() if line.startswith("!")), "")
                raise TexFailedError(
                    f"{command[0]} stopped on the report (exit {child.returncode}): "
                    f"{first or 'see its log'}. This is a bug in bnderive's LaTeX: please "
                    "report it with the .tex (--format tex)."
                )
        return (work / "report.pdf").read_bytes()


__all__ = ["INSTALL", "TEX_PACKAGES", "TexFailedError", "TexMissingError", "compile_pdf", "engine"]
