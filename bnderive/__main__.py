"""``python -m bnderive`` and the ``bnderive`` script: the command line of ``bnderive.cli``.

Ctrl-C exits 130, quietly, from the first moment.  Until a command starts there is nothing to
clean up, so an interrupt while click and the command's module are imported ends the process at
once (without this it printed a traceback, or click's "Aborted!" with exit code 1, which means
"refuted").  When the command starts, ``cli.common.Group.invoke`` puts Python's own handler back:
from then on Ctrl-C is a ``KeyboardInterrupt`` that stops the workers and removes temporary files
before exiting 130.  A SIGINT the process was started to ignore stays ignored."""

import os
import signal
import sys
from typing import Any

#: The exit code of an interrupted command, as shells report one (128 + SIGINT).
INTERRUPTED = 128 + signal.SIGINT


def _interrupted_at_start(signum: int, frame: Any) -> None:
    os._exit(INTERRUPTED)


#: How ``Group.invoke`` knows the handler (this module is ``__main__`` under ``python -m``).
_interrupted_at_start.bnderive_startup = True  # type: ignore[attr-defined]


def run() -> None:
    """The ``bnderive`` command line, with Ctrl-C quiet while it starts."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupted_at_start)
    from bnderive.cli import main

    main(prog_name="bnderive")


if __name__ == "__main__":
    sys.exit(run())
