"""TensorFlow's start-up: three harmless registration errors are held back, everything else still shows."""

import os
import re
import subprocess
import sys

import pytest

from chordkeras import startup

# As TensorFlow 2.16's pip wheel prints them on Linux while it is imported.
REGISTRATION_ERRORS = [
    b"2026-12-04 20:45:45.473543: E external/local_xla/xla/stream_executor/cuda/cuda_fft.cc:479] Unable to register "
    b"cuFFT factory: Attempting to register factory for plugin cuFFT when one has already been registered\n",
    b"2026-12-04 20:45:45.506615: E external/local_xla/xla/stream_executor/cuda/cuda_dnn.cc:10575] Unable to register "
    b"cuDNN factory: Attempting to register factory for plugin cuDNN when one has already been registered\n",
    b"2026-12-04 20:45:45.506668: E external/local_xla/xla/stream_executor/cuda/cuda_blas.cc:1442] Unable to register "
    b"cuBLAS factory: Attempting to register factory for plugin cuBLAS when one has already been registered\n",
]


def test_only_the_three_registration_errors_are_held_back(capfd):
    other_error = b"2026-12-04 20:45:46.000001: E tensorflow/core/util/util.cc:131] something real\n"
    # The same message as a warning, or about another plugin, is not one of the three.
    warning = REGISTRATION_ERRORS[0].replace(b": E external", b": W external")
    other_plugin = REGISTRATION_ERRORS[2].replace(b"cuBLAS", b"cuSPARSE")
    with startup.stderr_without(startup.REGISTRATION_ERROR):
        os.write(2, REGISTRATION_ERRORS[0] + other_error + REGISTRATION_ERRORS[1])
        os.write(2, warning + other_plugin + REGISTRATION_ERRORS[2] + b"last line, no newline")
    expected = other_error + warning + other_plugin + b"last line, no newline"
    assert capfd.readouterr().err == expected.decode()


def _run(*args, **env):
    """A fresh Python as a user starts it: neither TF_CPP_MIN_LOG_LEVEL nor CHORDKERAS_DEBUG set unless given."""
    env = {**{k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "CHORDKERAS_DEBUG")}, **env}
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_a_command_that_loads_tensorflow_writes_nothing_to_stderr():
    # What `python -m chordkeras.predict` imports before it reads its arguments, TensorFlow among them.
    result = _run("-c", "import sys, chordkeras.predict; print('tensorflow' in sys.modules)")
    assert result.stdout == "True\n"
    assert result.stderr == ""


def _messages(stderr: str) -> list[str]:
    """The lines without their time stamps."""
    return [re.sub(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: ", "", line) for line in stderr.splitlines()]


@pytest.mark.slow
def test_the_debug_variable_shows_what_tensorflow_prints_and_later_lines_are_never_held_back():
    tensorflow_alone = _messages(_run("-c", "import tensorflow").stderr)
    debug = _run("-m", "chordkeras.predict", "--help", CHORDKERAS_DEBUG="1")
    assert _messages(debug.stderr) == tensorflow_alone
    # TensorFlow reads its log level once; holding lines back during the import does not change it, so a
    # warning logged after the import shows at the level the user asked for.
    code = ("import chordkeras, tensorflow as tf\n"
            "list(tf.data.Dataset.range(10).cache().take(2))\n")
    lines = _messages(_run("-c", code, TF_CPP_MIN_LOG_LEVEL="0").stderr)
    cache = [i for i, line in enumerate(lines) if "did not fully read the dataset being cached" in line]
    assert len(cache) == 1 and lines[cache[0]].startswith("W tensorflow/core/kernels/data/cache_dataset_ops.cc")
    assert lines[:cache[0]] == [line for line in tensorflow_alone if "Unable to register" not in line]


def test_the_first_model_run_prints_no_onednn_notice():
    """A model's recurrent layers transpose their bool mask; under oneDNN the first such graph logs
    `E ... oneDNN supports DT_BOOL only on platforms with AVX-512. Falling back ...` once per process.
    Building or loading a model spends it with stderr held back; CHORDKERAS_DEBUG=1 lets it through."""
    code = ("import numpy as np, chordkeras\n"
            "from chordkeras import model\n"
            "from chordkeras.config import resolve\n"
            "config = resolve('tiny')\n"
            "m = model.build_model(config)\n"
            "x = np.zeros((2, 40, config.features.n_bins), np.float32); x[0, :30] = 1.0; x[1, :20] = 1.0\n"
            "m.predict(x, verbose=0)\n")
    debug = _run("-c", code, CHORDKERAS_DEBUG="1", TF_CPP_MIN_LOG_LEVEL="2")
    if not startup.ONEDNN_BOOL_NOTICE.search(debug.stderr.encode(), re.MULTILINE) and "DT_BOOL" not in debug.stderr:
        pytest.skip("this TensorFlow build logs no oneDNN notice about bool tensors (oneDNN off, or not x86)")
    assert [line for line in debug.stderr.splitlines() if "DT_BOOL" in line]
    result = _run("-c", code)
    assert "DT_BOOL" not in result.stderr and result.stderr == "", result.stderr
