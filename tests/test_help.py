"""Every command's --help is its docstring and ends with examples that parse and use real files."""

from __future__ import annotations

import shlex
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
