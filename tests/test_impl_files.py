"""The user's Python file is read like every other input (``read/files.py``): a regular file only,
opened without blocking, at most the cap read; its limit errors are bnderive's ``LimitError``."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from bnderive import errors
from bnderive.cli import main
from bnderive.core.limits import SOURCE_BYTES
from bnderive.usercode import sandbox
from bnderive.usercode.layout import ImplementationError, read_source


def test_the_sandbox_limit_error_is_bnderives():
    assert sandbox.LimitError is errors.LimitError
    with pytest.raises(errors.LimitError, match="--timeout 0 is not usable"):
        sandbox.check_limits(0, 2048)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_named_py_is_refused_before_it_is_opened(tmp_path):
    fifo = tmp_path / "layers.py"
    os.mkfifo(fifo)  # no writer: opening it for reading would block for ever
    with pytest.raises(ImplementationError, match=r"is a FIFO \(named pipe\), not a regular file"):
        read_source(fifo)


def test_a_symlink_to_a_device_is_refused(tmp_path):
    link = tmp_path / "layers.py"
    link.symlink_to("/dev/zero")
    with pytest.raises(ImplementationError, match=r"character device \(through a symlink\)"):
        read_source(link)


def test_a_file_above_the_cap_is_refused_with_the_cap(tmp_path):
    big = tmp_path / "big.py"
    big.write_text("x = 1\n" * (SOURCE_BYTES.limit // 6 + 1), encoding="utf-8")
    with pytest.raises(ImplementationError, match="above the cap of 1 MB"):
        read_source(big)
    small = tmp_path / "small.py"
    small.write_text("x = 1\n", encoding="utf-8")
    assert read_source(small).text == "x = 1\n"


def test_the_cli_says_what_the_path_is(tmp_path):
    link = tmp_path / "layers.py"
    link.symlink_to("/dev/zero")
    result = CliRunner().invoke(main, ["check-impl", str(link)])
    assert result.exit_code == 2, result.output
    assert "character device (through a symlink), not a regular file" in result.output
    assert "Traceback" not in result.output
