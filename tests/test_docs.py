"""The README documents every command and every option, and its first commands stay true."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from bnderive.cli import main

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
CI = Path(__file__).parent.parent / ".ci" / "run"


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_command_is_documented(name):
    assert f"### `bnderive {name}" in README


@pytest.mark.parametrize(
    ("command", "option"),
    [
        (name, opt)
        for name, cmd in sorted(main.commands.items())
        for param in cmd.params
        if isinstance(param, click.Option) and param.name != "help"
        for opt in param.opts[:1]
    ],
)
def test_every_option_is_documented(command, option):
    section = README.split(f"### `bnderive {command}", 1)[1].split("\n### ", 1)[0]
    assert f"`{option}" in section, f"{option} of {command} is not in the README"


def test_readme_starts_with_install_and_test_commands():
    first_block = re.search(r"```bash\n(.*?)```", README, re.S).group(1)
    lines = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert lines[0] == "pip install . && bnderive check"
    assert lines[1] == 'pip install -e ".[test]" && python -m pytest -q'


def test_ci_runs_the_readme_test_command():
    if not CI.exists():
        pytest.skip(".ci/run not present")
    assert "python -m pytest -q" in CI.read_text(encoding="utf-8")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_link_within_the_readme_reaches_a_heading():
    anchors = {_slug(h) for h in re.findall(r"^#+ (.*)$", README, re.M)}
    links = re.findall(r"\]\(#([^)]+)\)", README)
    assert len(links) > 20  # the contents, at least
    assert [link for link in links if link not in anchors] == []


def test_the_contents_list_every_section_and_command():
    contents = README.split("## Contents", 1)[1].split("\n## ", 1)[0]
    for heading in re.findall(r"^#{2,3} (.*)$", README, re.M):  # sections and commands
        if heading != "Contents":
            assert f"(#{_slug(heading)})" in contents, heading


#: A repository path as the README and docs/ name one: a top-level folder, then a file or folder.
REPO_PATH = re.compile(
    r"\b(?:bnderive|tests|benchmarks|examples|derivations|tools|docs)/[A-Za-z0-9_./-]*[A-Za-z0-9_]"
)


def test_every_repository_path_the_docs_name_exists():
    """A path the README or docs/ names (``bnderive/read/corpus/mistakes.toml``) is in the
    repository; a placeholder in capitals (``derivations/NAME.toml``) is a pattern, not a path.
    (After the layout of issue 11 the README still sent readers to ``bnderive/corpus/``.)"""
    root = Path(__file__).parent.parent
    texts = [README] + [p.read_text(encoding="utf-8") for p in sorted((root / "docs").glob("*.md"))]
    texts.append((root / "benchmarks" / "README.md").read_text(encoding="utf-8"))
    named = {m.group(0) for text in texts for m in REPO_PATH.finditer(text)}
    missing = sorted(p for p in named if "NAME" not in p and not (root / p).exists())
    assert missing == []
