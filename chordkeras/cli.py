"""What every command does with an error: one line saying what went wrong, or the traceback with --debug.

User mistakes and bad files (ValueError, OSError and the exceptions built on them) end in
`<prog>: error: <message>` and exit status 2; anything else is a bug and ends in one line asking for
the traceback, exit status 1. `--debug` or CHORDKERAS_DEBUG=1 lets the exception through instead.
SIGTERM (kill, timeout, a service manager) stops a command as Ctrl-C does.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from typing import Callable, Iterator

DEBUG_VARIABLE = "CHORDKERAS_DEBUG"


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true",
                        help=f"show the full traceback of an error (also: {DEBUG_VARIABLE}=1)")


def debug_variable_set() -> bool:
    return os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")


def debug_requested(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "debug", False)) or debug_variable_set()


def one_line(error: BaseException) -> str:
    """The error's message on one line (TF and h5py messages can span several)."""
    text = " ".join(part.strip() for part in str(error).splitlines() if part.strip())
    return text or type(error).__name__


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside the block SIGTERM raises KeyboardInterrupt, as Ctrl-C does, unless SIGTERM is handled already.

    Killed by the signal's default action, a process runs no exit handlers, and one of those deletes the
    __autograph_generated_file*.py files TensorFlow writes to the temporary folder; an interrupted
    `fit` also says how to resume.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def run(prog: str, debug: bool, body: Callable[[], int]) -> int:
    """Runs a command's body; returns its exit status, or reports an error in one line."""
    with sigterm_as_interrupt():
        return _run(prog, debug, body)


def _run(prog: str, debug: bool, body: Callable[[], int]) -> int:
    if debug:
        return body()
    try:
        return body()
    except (ValueError, OSError) as e:
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - a bug: one line, and how to get the details
        print(f"{prog}: internal error: {type(e).__name__}: {one_line(e)} (run again with --debug and report the "
              "traceback)", file=sys.stderr)
        return 1
