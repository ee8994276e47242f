"""What every command shares: the consoles, the exit codes, and what becomes of every error.

The exit codes (DESIGN.md §6) are decided here and nowhere else for errors:

* bad input (``BnderiveError``) and click's usage errors: one paragraph on stderr, exit 2;
* a bug in bnderive (any other exception): "bnderive failed: …", a request for a bug report,
  exit 4, and the traceback only under ``bnderive --debug`` (or ``BNDERIVE_DEBUG=1``);
* Ctrl-C: exit 130, a closed pipe (``bnderive check | head``): exit 141, both quietly, as a
  shell reports a process killed by SIGINT or SIGPIPE; output that cannot be written
  (``> /dev/full``) is exit 2 with a message;
* with ``--json`` an error still prints one JSON object on stdout,
  ``{"status": "error", "exit_code": 2, "message": …}``, so that a script always gets JSON.

User text (form names, file names, LaTeX, messages that quote them) is printed through rich only
escaped (``safe``) and every console strips terminal control sequences (``clean``): a file can
neither inject rich markup nor move the cursor, recolour or rewrite what bnderive prints.

Only click and rich here, and rich's heavy parts only when a command prints: ``bnderive --help``
must not pay for SymPy or NumPy.
"""

from __future__ import annotations

import errno
import functools
import importlib
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any, NoReturn

import click

from bnderive.errors import BnderiveError

if TYPE_CHECKING:
    from rich.console import Console

EXIT_HOLDS = 0
EXIT_REFUTED = 1
EXIT_USAGE = 2
EXIT_UNDECIDED = 3
EXIT_INTERNAL = 4
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE

#: How each verdict status is shown, keyed by ``Status.value``.
STATUS_STYLE = {
    "holds": ("✓ holds", "green"),
    "refuted": ("✗ refuted", "bold red"),
    "undecided": ("? undecided", "yellow"),
    "not checked": ("· not checked", "dim"),
}

# -- user text on a terminal ------------------------------------------------------------------------
#: Terminal escape sequences (CSI `ESC [ … final`, OSC `ESC ] … BEL|ST`, DCS/PM/APC strings and the
#: two-byte ESC sequences), the C0 controls but tab and newline, DEL, the C1 controls (U+0080 to
#: U+009F; U+009B is a one-character CSI) and the bidirectional overrides that reorder what a
#: reader sees (U+202A..U+202E, U+2066..U+2069).
_CONTROL = re.compile(
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]?|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[PX^_][^\x1b]*(?:\x1b\\)?|[ -~]?)"
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]"
)
#: In JSON: what json.dumps(ensure_ascii=False) leaves raw although a terminal acts on it.
_JSON_RAW = re.compile(r"[\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def clean(text: object) -> str:
    """``text`` without terminal control sequences and control characters (tab, newline kept)."""
    return _CONTROL.sub("", str(text))


def escape(text: str) -> str:
    """rich's markup escape (``[`` → ``\\[``), imported when first used: ``rich.markup`` pulls in
    ``rich.text``, ``rich.style`` and the colour tables, which ``--help`` does not need."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def safe(text: object) -> str:
    """User text for a rich markup string: control sequences removed, ``[`` escaped."""
    return escape(clean(text))


def json_text(payload: Any) -> str:
    """``payload`` as indented JSON; characters a terminal would act on are written as \\uXXXX."""
    import json  # here, not at the top: --help does not need it

    text = json.dumps(payload, indent=2, ensure_ascii=False)
    return _JSON_RAW.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


@functools.cache
def _console_class() -> type[Console]:
    from rich.console import Console

    class CleanConsole(Console):
        """A console that strips control sequences from every string it renders (the markup
        is bnderive's and has none; the text interpolated into it may be a user's)."""

        def render_str(self, text: str, **kwargs: Any) -> Any:
            return super().render_str(clean(text), **kwargs)

        def on_broken_pipe(self) -> None:  # rich's own exits 1, which means "refuted"
            self.quiet = True
            _silence_stdout()
            raise SystemExit(EXIT_BROKEN_PIPE)

    return CleanConsole


def console(stderr: bool = False) -> Console:
    width = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "120"))
    # soft_wrap: long lines (counterexamples, formulas) stay whole, so they can be copied.
    return _console_class()(stderr=stderr, width=width, highlight=False, soft_wrap=True)


def document() -> Any:
    """The LaTeX document reader, imported when used: building its grammar costs start-up time
    every other command would pay."""
    from bnderive.read import documents

    return documents


# -- errors -----------------------------------------------------------------------------------------
def error_exit(message: str, code: int = EXIT_USAGE, as_json: bool = False) -> NoReturn:
    """Print ``message`` (and, with ``--json``, the error object on stdout) and exit ``code``."""
    message = clean(message)
    if as_json:
        payload = {"status": "error", "exit_code": code, "message": message}
        click.echo(json_text(payload))
    prefix = "" if code == EXIT_INTERNAL else "Error: "
    click.echo(f"{prefix}{message}", err=True)
    sys.exit(code)


def user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Bad input is one paragraph on stderr and exit code 2, never a traceback (with ``--json``,
    also the error object on stdout)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except BnderiveError as exc:
            error_exit(str(exc), EXIT_USAGE, bool(kwargs.get("as_json")))

    return wrapper


def internal_message(exc: BaseException) -> str:
    """What a user sees when bnderive itself fails."""
    what = f"{type(exc).__name__}: {str(exc).rstrip('.')}" if str(exc) else type(exc).__name__
    if isinstance(exc, MemoryError):
        what = "it ran out of memory (MemoryError); smaller sizes may work"
    elif isinstance(exc, RecursionError):
        what = f"RecursionError ({exc}); a smaller or less deeply nested input may work"
    return (
        f"bnderive failed: {what}. This is a bug in bnderive, not a verdict on your input: "
        "please report it with the command you ran (run it again with --debug for the traceback)."
    )


def _silence_stdout() -> None:
    """Point the stdout descriptor at /dev/null: what is still buffered for a closed pipe or a
    full disk must not fail again (and print "Exception ignored") when Python exits."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (click's test runner)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def _flush_stdout() -> None:
    try:
        sys.stdout.flush()
    except ValueError:  # closed
        pass


#: The errno values of an output that cannot take what bnderive writes (> /dev/full, a full disk).
_WRITE_ERRORS = {errno.ENOSPC, errno.EIO, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


def guarded(run: Callable[[], Any], *, debug: bool = False, as_json: bool = False) -> Any:
    """Run a command and turn everything that escapes it into its exit code (module docstring)."""
    try:
        try:
            return run()
        finally:  # output still buffered fails here, where it can be reported, not at exit
            _flush_stdout()
    except (click.exceptions.Exit, click.exceptions.Abort):
        raise
    except click.ClickException as exc:
        if as_json:
            payload = {
                "status": "error",
                "exit_code": exc.exit_code,
                "message": exc.format_message(),
            }
            click.echo(json_text(payload))
        raise  # click prints the usage and the message, exit 2
    except BnderiveError as exc:
        error_exit(str(exc), EXIT_USAGE, as_json)
    except KeyboardInterrupt:
        _silence_stdout()
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        _silence_stdout()
        sys.exit(EXIT_BROKEN_PIPE)
    except OSError as exc:
        if exc.errno not in _WRITE_ERRORS:
            _internal(exc, debug, as_json)
        _silence_stdout()
        error_exit(f"cannot write the output ({exc.strerror}).", EXIT_USAGE)
    except Exception as exc:  # noqa: BLE001 - the one place every other error ends
        _internal(exc, debug, as_json)


def _internal(exc: BaseException, debug: bool, as_json: bool) -> NoReturn:
    if debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    error_exit(internal_message(exc), EXIT_INTERNAL, as_json)


class LazyCommands(MutableMapping[str, click.Command]):
    """A group's commands, each imported when first asked for (click's "lazily loading
    subcommands" pattern): ``bnderive derive --help`` imports the derive command's module only,
    and ``bnderive --help`` none of them (it lists each command's ``summary``).

    ``registry`` maps a command's name to ``("module:attribute", summary)``; the summary is the
    first sentence of the command's docstring, which is all ``bnderive --help`` shows of it
    (``tests/test_help.py`` checks they agree).  ``prepare`` runs once on each loaded command."""

    def __init__(
        self,
        registry: dict[str, tuple[str, str]],
        prepare: Callable[[click.Command], None] = lambda command: None,
    ) -> None:
        self.registry = registry
        self.prepare = prepare
        self.loaded: dict[str, click.Command] = {}

    def summary(self, name: str) -> str:
        return self.registry[name][1]

    def __getitem__(self, name: str) -> click.Command:
        if name not in self.loaded:
            if name not in self.registry:
                raise KeyError(name)
            module, _, attribute = self.registry[name][0].partition(":")
            command = getattr(importlib.import_module(module), attribute)
            self.prepare(command)
            self.loaded[name] = command
        return self.loaded[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        self.loaded[name] = command

    def __delitem__(self, name: str) -> None:
        self.loaded.pop(name, None)
        self.registry.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.registry.keys() | self.loaded.keys()))

    def __len__(self) -> int:
        return len(self.registry.keys() | self.loaded.keys())


class Group(click.Group):
    """The ``bnderive`` group: every subcommand runs ``guarded``; with ``LazyCommands``, a
    command's module is imported only when that command runs or shows its help."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's list of commands, without importing a lazy command to read its summary."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            if isinstance(self.commands, LazyCommands) and name not in self.commands.loaded:
                # the same shortening click applies to a loaded command's help
                shown = click.Command(name, help=self.commands.summary(name))
            else:
                shown = self.commands[name]
            if not shown.hidden:
                rows.append((name, shown.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["bnderive.args"] = list(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        args = ctx.meta.get("bnderive.args", [])
        if "--" in args:
            args = args[: args.index("--")]
        debug = bool(ctx.params.get("debug")) or os.environ.get("BNDERIVE_DEBUG", "") not in (
            "",
            "0",
        )
        run = functools.partial(super().invoke, ctx)
        if threading.current_thread() is not threading.main_thread():
            return guarded(run, debug=debug, as_json="--json" in args)
        if getattr(signal.getsignal(signal.SIGINT), "bnderive_startup", False):
            # the command starts: Ctrl-C is a KeyboardInterrupt again (bnderive/__main__.py)
            signal.signal(signal.SIGINT, signal.default_int_handler)
        previous = signal.signal(signal.SIGTERM, _terminated)
        try:
            return guarded(run, debug=debug, as_json="--json" in args)
        finally:
            signal.signal(signal.SIGTERM, previous)


def _terminated(signum: int, frame: Any) -> NoReturn:
    """SIGTERM unwinds like an exit (128 + 15), so that every ``finally`` runs: worker
    processes are stopped and temporary files removed, as on Ctrl-C."""
    raise SystemExit(128 + signum)


#: The normalization families (``core.spec.Norm``), as ``--norm`` takes them.
NORMS = ("batch", "layer", "instance", "group", "rms")

NORM_HELP = (
    "The normalization: batch (BatchNorm, the default), layer (LayerNorm: per sample over the "
    "last axes, γ/β per element), instance (InstanceNorm: per sample and channel over H, W), "
    "group (GroupNorm: per sample over --groups groups of channels and H, W) or rms (RMSNorm: "
    "x/√(mean(x²)+ε), no mean, no β)."
)


def preamble_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--preamble FILE``: LaTeX macro definitions the derivations use, kept in another file
    (``documents.load_preamble``: read as data, never run)."""
    return click.option(
        "--preamble",
        metavar="FILE",
        default=None,
        help="A file of LaTeX macro definitions (\\newcommand, \\def, \\DeclareMathOperator) "
        "the derivation uses but defines elsewhere (a blueprint's macros file, a site's "
        "include): read as data, as the document's own definitions are, never run.",
    )(command)


def norm_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--norm`` and ``--groups``, shared by the commands that take a normalization family."""
    command = click.option(
        "--groups",
        type=click.IntRange(min=1),
        default=None,
        metavar="G",
        help="GroupNorm's number of groups G; it divides C (default 1; needs --norm group).",
    )(command)
    return click.option(
        "--norm", type=click.Choice(NORMS), default="batch", show_default=True, help=NORM_HELP
    )(command)


def checked_groups(norm: str, groups: int | None) -> int:
    """--groups is GroupNorm's; elsewhere it is a usage error (exit code 2)."""
    if groups is not None and norm != "group":
        raise BnderiveError(
            f"--groups {groups} belongs to GroupNorm: add --norm group, or leave --groups out."
        )
    return groups if groups is not None else 1
