"""Malformed input, across the command line: each is exit code 2 with one message that names the
problem (and, where there is one, the fix), never a traceback of bnderive (DESIGN.md §6).

check-impl runs a user's file in a guarded child, so everything a file can do wrong is here: it
is missing, a directory, binary, not Python, does not parse or import, lacks the functions,
returns the wrong number or shape of values, NaN or ∞ or None, hangs, exits, floods its output,
exhausts memory or raises.  Then wrong options and sizes of the other commands, and unreadable
form files.  Files that cannot be parsed are written to tmp_path, not tests/impls, so that the
style checks can parse every fixture.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import bnderive
from bnderive.cli import main

IMPLS = Path(__file__).parent / "impls"
ENV = {"COLUMNS": "200", "FORCE_COLOR": None, "TERM": "dumb", "NO_COLOR": "1"}

#: Files written for one test each: name → content (bytes for binary ones).
WRITTEN: dict[str, str | bytes] = {
    "bad_syntax.py": "def bn_backward(x, gamma, beta, dout, eps):\n    return dx,, dgamma\n",
    "prose.py": "This is not Python, just a sentence.\n",
    "binary.py": b"\x7fELF\x02\x01\x01\x00\x00\x00\xff\xfe",
    "latin1.py": "# caf\xe9\ndef bn_backward(x, gamma, beta, dout, eps):\n    pass\n".encode(
        "latin-1"
    ),
    "layers.txt": "def bn_backward(x, gamma, beta, dout, eps):\n    return dout, dout, dout\n",
    "empty.py": "",
    "inf.py": (
        "import numpy as np\n\n\ndef bn_backward(x, gamma, beta, dout, eps):\n"
        "    return dout * np.inf, dout.sum(axis=0), dout.sum(axis=0)\n"
    ),
    "none.py": "def bn_backward(x, gamma, beta, dout, eps):\n    return None\n",
    "forward_none.py": (
        "def batchnorm_forward(x, gamma, beta, bn_param):\n    return None\n\n\n"
        "def batchnorm_backward(dout, cache):\n    return dout, dout.sum(0), dout.sum(0)\n"
    ),
    "running_shape.py": (IMPLS / "cs231n_staged.py")
    .read_text(encoding="utf-8")
    .replace(
        'bn_param["running_mean"] = running_mean',
        'bn_param["running_mean"] = np.stack([running_mean, running_mean])',
    ),
    "empty.toml": "",
    "binary.toml": b"\x00\xff\xfe\x00",
    "empty.md": "",
}


def invoke(tmp_path: Path, args: list[str]):
    (tmp_path / "nothing").mkdir(exist_ok=True)
    for name, content in WRITTEN.items():
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    args = [a.replace("{tmp}", str(tmp_path)).replace("{impls}", str(IMPLS)) for a in args]
    return CliRunner().invoke(main, args, env=ENV)


# (id, command line, what the message must say: the problem, and the fix where there is one)
CASES = [
    # check-impl: the file
    ("missing file", ["check-impl", "{impls}/does_not_exist.py"], ["no such file", "give the path of a Python file"]),
    ("folder without Python files", ["check-impl", "{tmp}/nothing"], ["no Python files found", "give .py files or folders"]),
    ("binary file", ["check-impl", "{tmp}/binary.py"], ["binary.py is a binary file", "give the path of the .py file"]),
    ("not UTF-8", ["check-impl", "{tmp}/latin1.py"], ["latin1.py is not UTF-8 text (byte 5", "give the path of the .py file"]),
    ("not a .py file", ["check-impl", "{tmp}/layers.txt"], ["layers.txt is not a Python file", "needs the suffix .py"]),
    ("prose", ["check-impl", "{tmp}/prose.py"], ["prose.py has a syntax error at line 1"]),
    ("syntax error", ["check-impl", "{tmp}/bad_syntax.py"], ["bad_syntax.py has a syntax error at line 2, column 15: invalid syntax", "return dx,, dgamma"]),
    ("import error", ["check-impl", "{impls}/bad_import.py"], ["imports cs231n_layers_that_do_not_exist, which cannot be found here", "(line 8)"]),
    ("empty file", ["check-impl", "{tmp}/empty.py"], ["cannot tell which API", "functions found: none", "--function NAME"]),
    ("missing backward", ["check-impl", "{impls}/bad_missing.py"], ["does not define batchnorm_backward"]),
    ("missing function", ["check-impl", "{impls}/bad_missing.py", "--function", "nope"], ["defines no function 'nope'"]),
    ("SPATIAL file checked per activation", ["check-impl", "{impls}/spatial.py", "--mode", "per-activation"], ["add --mode spatial"]),
    # check-impl: what the code does
    ("wrong arity", ["check-impl", "{impls}/bad_arity.py"], ["must return (dx, dgamma, dbeta), a tuple of 3; it returned a tuple of length 2"]),
    ("returns None", ["check-impl", "{tmp}/none.py"], ["must return (dx, dgamma, dbeta), a tuple of 3; it returned NoneType"]),
    ("forward returns None", ["check-impl", "{tmp}/forward_none.py"], ["batchnorm_forward must return (out, cache)"]),
    ("wrong shape", ["check-impl", "{impls}/bad_shape.py"], ["dgamma with shape (3, 1); expected (1,)"]),
    ("running statistics of the wrong shape", ["check-impl", "{tmp}/running_shape.py"], ["bn_param['running_mean'] with shape (2, 1); expected (1,)"]),
    ("NaN", ["check-impl", "{impls}/bad_nan.py"], ["non-finite values (nan"]),
    ("inf", ["check-impl", "{tmp}/inf.py"], ["non-finite values (inf"]),
    ("raises", ["check-impl", "{impls}/bad_raises.py"], ["raised NameError", 'bad_raises.py", line 6, in bn_backward']),
    ("hangs", ["check-impl", "{impls}/bad_loop.py", "--timeout", "2"], ["did not finish within 2 s", "--timeout"]),
    ("sys.exit", ["check-impl", "{impls}/bad_exit.py"], ["called sys.exit(3)"]),
    ("floods stdout", ["check-impl", "{impls}/bad_flood.py"], ["printed more than 1,000,000 characters"]),
    ("unbounded memory", ["check-impl", "{impls}/bad_memory.py", "--memory", "512"], ["ran out of memory", "--memory"]),
    # check-impl: options
    ("bad --api", ["check-impl", "{impls}/functional.py", "--api", "keras"], ["Invalid value for '--api'", "'cs231n', 'functional'"]),
    ("bad --mode", ["check-impl", "{impls}/functional.py", "--mode", "nchw"], ["Invalid value for '--mode'", "'per-activation', 'spatial'"]),
    ("bad --running", ["check-impl", "{impls}/cs231n_staged.py", "--running", "keras"], ["Invalid value for '--running'", "'auto', 'cs231n', 'pytorch'"]),
    ("--running without a forward", ["check-impl", "{impls}/functional.py", "--function", "bn_backward", "--running", "pytorch"], ["the functional API has no forward", "leave --running out"]),
    ("--timeout 0", ["check-impl", "{impls}/functional.py", "--timeout", "0"], ["--timeout 0 is not usable", "at most 600"]),
    # other commands: sizes
    ("check --n 0", ["check", "staged", "--n", "0"], ["Size n=0 must be at least 1"]),
    ("check --n abc", ["check", "staged", "--n", "abc"], ["Cannot read the sizes 'abc'", "1-6"]),
    ("check --shape 0,1", ["check", "staged", "--shape", "0,1"], ["Size n=0 must be at least 1"]),
    ("check --m 1", ["check", "staged", "--m", "1"], ["Invalid value for '--m'", "x>=2"]),
    ("derive --n 0", ["derive", "--n", "0"], ["Size n=0 must be at least 1"]),
    ("derive --n 1 --unbiased", ["derive", "--n", "1", "--unbiased"], ["divides by M-1 = 0", "at least two elements"]),
    ("derive --h without SPATIAL", ["derive", "--h", "3"], ["--h and --w belong to SPATIAL", "add --mode spatial"]),
    ("bench --shape 1,4", ["bench", "--shape", "1,4"], ["needs positive sizes and at least 2 elements per channel"]),
    # other commands: forms
    ("unknown form", ["check", "nosuchform"], ["No form named 'nosuchform'", "built-in forms (", "staged-latex", "bnderive mutants"]),
    ("missing form file", ["check", "--form", "{tmp}/nope.toml"], ["nope.toml: no such file", "give the path of a form file (TOML"]),
    ("empty form file", ["check", "--form", "{tmp}/empty.toml"], ["the key 'name' is missing"]),
    ("binary form file", ["check", "--form", "{tmp}/binary.toml"], ["binary.toml, line 1: a binary file (it has NUL bytes)", "give the path of a form file (TOML"]),
    ("emit an unknown form", ["emit", "--form", "nosuchform"], ["No form named 'nosuchform'"]),
    ("empty derivation", ["parse", "{tmp}/empty.md"], ["no display math found", "\\begin{align}"]),
    ("parse a form file", ["parse", "{tmp}/binary.toml"], ["expected a .md, .tex or .ipynb derivation"]),
]  # fmt: skip


@pytest.mark.parametrize(("args", "messages"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_input_is_exit_2_with_a_message(tmp_path, args, messages):
    result = invoke(tmp_path, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert f'File "{PACKAGE}' not in result.output  # no traceback frame of bnderive itself
    assert "Error: " in result.output
    for message in messages:
        assert message in result.output, message


#: bnderive's own source folder: a frame from it in the output would be bnderive's traceback
#: (a substring test on "bnderive/" would fail in a checkout named bnderive).
PACKAGE = str(Path(bnderive.__file__).resolve().parent)


def test_at_least_fifteen_distinct_malformed_inputs():
    assert len({c[0] for c in CASES}) == len(CASES) >= 15


def test_check_impl_message_is_one_error_with_the_users_frames_only(tmp_path):
    result = invoke(tmp_path, ["check-impl", "{impls}/bad_raises.py"])
    lines = result.output.splitlines()
    assert lines[0].startswith("Error: ") and sum(x.startswith("Error: ") for x in lines) == 1
    assert "sandbox.py" not in result.output
