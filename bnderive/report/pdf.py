"""The LaTeX report compiled to PDF by TeX Live's pdflatex, in a temporary directory, shell escape off.

``pdflatex -no-shell-escape -halt-on-error -interaction=nonstopmode`` with a timeout, in a fresh
temporary directory, so that the engine writes nowhere else; ``openout_any=p`` and
``openin_any=p`` (paranoid: TeX reads and writes only below the current directory) are set in the
environment as well, and the document never asks for a shell.  The report's tables have fixed
column widths and no cross-references, so one run makes the PDF; a log that asks for a rerun gets
one (at most three runs).  latexmk would always run twice on a fresh directory (its own rule: the
.aux file changed), which doubles the time, so it is not used.  A missing engine is bad input
(exit 2) with the exact ``apt-get install`` line.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from bnderive.errors import BnderiveError

#: The Debian packages a report needs (``.ci/run`` installs the same, with poppler-utils for the
#: tests' pdftotext): LaTeX base and recommended (amsmath, booktabs, longtable, xcolor), TikZ.
TEX_PACKAGES = ("texlive-latex-base", "texlive-latex-recommended", "texlive-pictures")
INSTALL = "sudo apt-get install -y --no-install-recommends " + " ".join(TEX_PACKAGES)
#: Seconds one pdflatex run may take (a report compiles in one or two).
TIMEOUT = 120
#: What pdflatex (or a package) writes to its log when a second run would change the output.
_RERUN = re.compile(r"Rerun (LaTeX|to get)|Label\(s\) may have changed")


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
    return [
        "pdflatex",
        "-no-shell-escape",
        "-halt-on-error",
        "-interaction=nonstopmode",
        "report.tex",
    ]


def compile_pdf(tex: str, timeout: float = TIMEOUT) -> bytes:
    """The PDF of the LaTeX document ``tex``; ``TexFailedError`` with the log's first error."""
    command = engine()
    env = dict(os.environ, openout_any="p", openin_any="p", shell_escape="f")
    with tempfile.TemporaryDirectory(prefix="bnderive-report-") as tmp:
        work = Path(tmp)
        (work / "report.tex").write_text(tex, encoding="ascii")
        for _ in range(3):
            # its own session: on a timeout the engine and anything it started die together
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
            if not _RERUN.search((work / "report.log").read_text(errors="replace")):
                break
        return (work / "report.pdf").read_bytes()


__all__ = ["INSTALL", "TEX_PACKAGES", "TexFailedError", "TexMissingError", "compile_pdf", "engine"]
