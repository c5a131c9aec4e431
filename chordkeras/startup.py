"""TensorFlow's start-up lines: known harmless errors are held back (three while TensorFlow is imported, one at the first model).

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


# Logged once per process by TensorFlow 2.16's oneDNN graph rewrite the first time a graph transposes a
# bool tensor, as every Keras recurrent layer does with its mask; the op then runs on Eigen as usual.
ONEDNN_BOOL_NOTICE = re.compile(
    rb"^\S+ \S+: E \S+\] oneDNN supports DT_BOOL only on platforms with AVX-512\. "
    rb"Falling back to the default Eigen-based implementation if present\.\r?$")
_bool_notice_spent = False


def spend_onednn_bool_notice() -> None:
    """Spends TensorFlow's one-off oneDNN notice about bool tensors where it cannot be seen.

    The first model run of a process would otherwise print, among our own lines,
    `E ... oneDNN supports DT_BOOL only on platforms with AVX-512. Falling back to the default
    Eigen-based implementation if present.` TensorFlow logs it once per process, so a tiny graph that
    transposes a bool tensor, run while stderr is held back (`stderr_without`), uses it up. Called
    where a model is built or loaded, after the devices are set up (running an op initialises
    TensorFlow's runtime, which must not happen at import); does nothing after the first call or with
    CHORDKERAS_DEBUG=1.
    """
    global _bool_notice_spent
    from chordkeras import cli

    if _bool_notice_spent or cli.debug_variable_set():
        return
    _bool_notice_spent = True
    import tensorflow as tf

    with stderr_without(ONEDNN_BOOL_NOTICE):
        # An argument, not a constant: Grappler would fold a constant before the oneDNN rewrite sees it.
        tf.function(tf.transpose)(tf.zeros([1, 2], tf.bool))


def hold_back_registration_errors() -> None:
    """Makes the first `import tensorflow` of the process drop the three registration errors from stderr."""
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())
