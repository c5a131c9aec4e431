"""TensorFlow's start-up lines: three known harmless errors are held back while TensorFlow is imported.

The pip wheel of TensorFlow 2.16 registers its CUDA plugins twice as it loads and logs an error for
each second registration, on every Linux machine, with a GPU or without:

    ... E external/local_xla/xla/stream_executor/cuda/cuda_fft.cc:479] Unable to register cuFFT factory:
    Attempting to register factory for plugin cuFFT when one has already been registered

(the same for cuDNN and cuBLAS). Nothing has failed, but the lines read as failures. The log level
cannot hide them alone: TensorFlow reads TF_CPP_MIN_LOG_LEVEL once, at its first log line, which is one
of these, so level 3 during the import would hide every later C++ error of the process too. Instead,
while `tensorflow` is imported, what is written to stderr (file descriptor 2, where the C++ logging
writes) goes to a temporary file without a name; afterwards every line but these three is written to
stderr, in order. Only a crash of the process inside the import itself (a signal, not an exception)
would lose what it wrote there: CHORDKERAS_DEBUG=1 turns all this off.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
from typing import Iterator

# The file, line number and time stamp vary; the message is TensorFlow 2.16's.
REGISTRATION_ERROR = re.compile(
    rb"^\S+ \S+: E \S+\] Unable to register (cuFFT|cuDNN|cuBLAS) factory: "
    rb"Attempting to register factory for plugin \1 when one has already been registered\r?$")


def _flush_python_stderr() -> None:
    if sys.stderr is not None:  # None under pythonw
        sys.stderr.flush()


@contextlib.contextmanager
def stderr_without(pattern: re.Pattern[bytes]) -> Iterator[None]:
    """Holds back what is written to file descriptor 2 inside the block, then writes the lines that don't match."""
    _flush_python_stderr()
    try:
        held = tempfile.TemporaryFile()
        saved = os.dup(2)
    except OSError:  # no temporary folder, or no stderr: nothing is held back
        yield
        return
    with held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            _flush_python_stderr()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [line for line in held.read().splitlines(keepends=True)
                    if not pattern.match(line.rstrip(b"\n"))]
            with open(2, "wb", closefd=False) as stderr:
                stderr.writelines(kept)


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` as the import system would, and runs its import inside `stderr_without`."""

    def find_spec(self, name, path, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: later imports find the module in sys.modules
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader

        def exec_module(module):
            try:
                with stderr_without(REGISTRATION_ERROR):
                    type(loader).exec_module(loader, module)
            finally:
                del loader.exec_module

        loader.exec_module = exec_module
        return spec


def hold_back_registration_errors() -> None:
    """Makes the first `import tensorflow` of the process drop the three registration errors from stderr."""
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())
