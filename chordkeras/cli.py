"""What every command does with an error: one line saying what went wrong, or the traceback with --debug.

User mistakes and bad files (ValueError, OSError and the exceptions built on them) end in
`<prog>: error: <message>` and exit status 2; anything else is a bug and ends in one line asking for
the traceback, exit status 1. `--debug` or CHORDKERAS_DEBUG=1 lets the exception through instead.
SIGTERM and SIGHUP still end a command at once, but first delete TensorFlow's autograph files.
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


# TensorFlow's autograph writes each function it converts to a temporary file of this name and loads
# it as the module of the same name (tensorflow/python/autograph/pyct/loader.py).
AUTOGRAPH_FILE_PREFIX = "__autograph_generated_file"


def remove_autograph_files() -> None:
    """Deletes the temporary files TensorFlow's autograph has written for this process."""
    for name, module in list(sys.modules.items()):
        if name.startswith(AUTOGRAPH_FILE_PREFIX):
            with contextlib.suppress(AttributeError, TypeError, OSError):
                os.remove(module.__file__)


@contextlib.contextmanager
def autograph_files_removed_on_termination() -> Iterator[None]:
    """Inside the block SIGTERM and SIGHUP delete autograph's files first, then end the process as before.

    TensorFlow deletes those files in an exit handler, which a process ended by a signal never runs.
    The signal is raised again with its default action, so the process still ends at once and its
    exit status is still the signal's; a signal with a handler of its own is left alone.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = [s for s in (signal.SIGTERM, getattr(signal, "SIGHUP", None))
               if s is not None and signal.getsignal(s) == signal.SIG_DFL]

    def terminate(signum, frame):
        remove_autograph_files()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    for s in signals:
        signal.signal(s, terminate)
    try:
        yield
    finally:
        for s in signals:
            signal.signal(s, signal.SIG_DFL)


def run(prog: str, debug: bool, body: Callable[[], int]) -> int:
    """Runs a command's body; returns its exit status, or reports an error in one line."""
    with autograph_files_removed_on_termination():
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
