"""Every command's --help is its docstring and ends with examples that parse and use real files."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from bnderive.cli import main

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = sorted(main.commands)


def help_text(*args: str) -> str:
    result = CliRunner().invoke(main, [*args, "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    return result.output


def examples_of(text: str) -> list[str]:
    """The example commands of a --help text: the lines after its last "Examples:"."""
    block = text.rsplit("Examples:", 1)[1]
    # a description may follow the command after two or more spaces
    return [line.strip().split("   ")[0] for line in block.splitlines() if line.strip()]


@pytest.mark.parametrize("name", ["", *COMMANDS])
def test_help_ends_with_its_examples(name):
    text = help_text(*([name] if name else []))
    assert "Examples:" in text, f"`bnderive {name} --help` has no examples"
    tail = text.rsplit("Examples:", 1)[1]
    assert "Options:" not in tail and "Commands:" not in tail, "examples must come last"
    examples = examples_of(text)
    assert examples and all(e.startswith("bnderive") for e in examples), examples
    if name:
        assert any(e.split()[1] == name for e in examples)


@pytest.mark.parametrize("name", COMMANDS)
def test_help_examples_parse_and_their_files_exist(name):
    for example in examples_of(help_text(name)):
        words = shlex.split(example.split(" > ")[0])[1:]
        command = main.commands[words[0]]
        try:
            command.make_context(words[0], words[1:], resilient_parsing=False)
        except click.exceptions.Exit:  # pragma: no cover - --help inside an example
            pass
        for word in words:
            if word.startswith("examples/"):
                assert (ROOT / word).is_file(), f"{example}: {word} is not in the repository"


def test_the_command_list_says_what_each_command_says_of_itself():
    """`bnderive --help` lists each command from ``COMMANDS`` without importing it: each summary
    must be what click would show of the command's own docstring."""
    from bnderive.cli import COMMANDS

    for name in COMMANDS:
        summary = click.Command(name, help=main.commands.summary(name))
        for limit in (45, 80, 1000):
            assert summary.get_short_help_str(limit) == main.commands[name].get_short_help_str(
                limit
            )


#: What no --help may import: the mathematics and the parser (seconds of start-up together).
HEAVY = ("sympy", "numpy", "lark", "symengine", "gmpy2", "matplotlib")

_IMPORTED_BY_HELP = """
import json, sys
from bnderive.cli import main
try:
    main(sys.argv[1:] + ["--help"], prog_name="bnderive")
except SystemExit as stop:
    assert stop.code == 0, stop.code
print(json.dumps(sorted(sys.modules)))
"""


def imported_by_help(*args: str) -> set[str]:
    """The modules a fresh interpreter has imported after `bnderive ARGS --help`."""
    result = subprocess.run(
        [sys.executable, "-c", _IMPORTED_BY_HELP, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.splitlines()[-1]))


@pytest.mark.parametrize("name", ["", *COMMANDS])
def test_help_imports_neither_the_mathematics_nor_the_parser(name):
    modules = imported_by_help(*([name] if name else []))
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert not heavy, f"`bnderive {name} --help` imports {heavy[:5]}"
    library = sorted(
        m
        for m in modules
        if m.startswith("bnderive.") and m.split(".")[1] not in ("cli", "errors")
        and m not in ("bnderive.core", "bnderive.core.limits")  # the caps, shown in help texts
    )  # fmt: skip
    assert not library, f"`bnderive {name} --help` imports the library: {library}"
    commands = {m for m in modules if m.startswith("bnderive.cli.")} - {"bnderive.cli.common"}
    if not name:  # the list of commands is read from COMMANDS, not from the commands' modules
        assert not commands, commands
    else:
        assert commands == {main.commands[name].callback.__module__}, commands
