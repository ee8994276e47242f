"""Reading a file a user names: the one function every reader and command uses.

A path on the command line can be anything: a FIFO that never delivers (``mkfifo``), a device
that never ends (``/dev/zero``, ``/dev/urandom``), a symlink to one, a directory, a 10 GB
log.  bnderive reads only a regular file, only up to a cap (``limits.FILE_BYTES``, 1 MiB: a
derivation or a form is a few kilobytes), and decides all of this before it reads a byte:

1. ``os.stat`` follows symlinks to what the path names; it must be a regular file no larger
   than the cap;
2. the file is opened with ``O_NONBLOCK`` (opening a FIFO without a writer would otherwise
   block for ever) and ``O_NOCTTY``, and ``fstat`` on the open descriptor checks again what was
   opened (the path may have been swapped in between);
3. at most cap + 1 bytes are read, so a file that grew meanwhile is still refused;
4. the bytes must be text: no NUL byte, UTF-8.

Every problem is an ``InputFileError`` (exit code 2) that names the file, what it is, and what
was expected instead.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from bnderive.core.limits import FILE_BYTES, Cap, too_large
from bnderive.errors import InputFileError

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def check_regular_file(path: str | Path, expected: str, cap: Cap = FILE_BYTES) -> os.stat_result:
    """The ``stat`` of ``path`` if it names a regular file within the size cap; otherwise an
    ``InputFileError``.  ``expected`` completes "give …" in messages ("a form file (TOML)")."""
    where = str(path)
    try:
        info = os.stat(where)  # follows symlinks: what the path names is what is checked
    except FileNotFoundError:
        raise InputFileError(f"{where}: no such file; give the path of {expected}.") from None
    except OSError as exc:
        raise InputFileError(f"{where}: cannot read it ({exc.strerror}).") from None
    _check_stat(where, info, expected, cap)
    return info


def _check_stat(where: str, info: os.stat_result, expected: str, cap: Cap) -> None:
    if not stat.S_ISREG(info.st_mode):
        kind = _kind(info.st_mode)
        through = " (through a symlink)" if os.path.islink(where) else ""
        raise InputFileError(
            f"{where} is {kind}{through}, not a regular file; give the path of {expected}."
        )
    if info.st_size > cap.limit:
        raise too_large(f"{where}: the file's size", _size(info.st_size), cap)


def _size(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n:,} bytes"


def read_bytes(path: str | Path, expected: str, cap: Cap = FILE_BYTES) -> bytes:
    """The bytes of a regular file within the size cap (module docstring, steps 1 to 3)."""
    where = str(path)
    check_regular_file(where, expected, cap)
    try:
        fd = os.open(where, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise InputFileError(f"{where}: cannot read it ({exc.strerror}).") from None
    try:
        _check_stat(where, os.fstat(fd), expected, cap)  # what was opened, not the path's
        chunks, left = [], cap.limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise InputFileError(f"{where}: cannot read it ({exc.strerror}).") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > cap.limit:
        raise too_large(f"{where}: the file's size", f"more than {_size(cap.limit)}", cap)
    return data


def read_text(path: str | Path, expected: str, cap: Cap = FILE_BYTES) -> str:
    """The text of a regular, UTF-8, NUL-free file within the size cap; ``\\r\\n`` becomes
    ``\\n``.  ``expected`` names what the file should be ("a form file (TOML)")."""
    where = str(path)
    data = read_bytes(where, expected, cap)
    if b"\0" in data:
        line = data[: data.index(b"\0")].count(b"\n") + 1
        raise InputFileError(
            f"{where}, line {line}: a binary file (it has NUL bytes), not text; give the path "
            f"of {expected}."
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputFileError(
            f"{where}, line {line}: not UTF-8 text (byte {exc.start} cannot be decoded); give "
            f"the path of {expected}, saved as UTF-8."
        ) from None
    return text.removeprefix("\ufeff").replace("\r\n", "\n")
