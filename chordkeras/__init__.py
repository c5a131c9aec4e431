"""chordkeras: chord recognition networks trained with TensorFlow and Keras."""

import os

from chordkeras import cli, startup

if not cli.debug_variable_set():
    # TensorFlow's C++ INFO and WARNING lines (CUDA probing, CPU feature notes) bury the messages that
    # matter; its errors still show, except the three harmless ones it logs while loading (see
    # chordkeras.startup). CHORDKERAS_DEBUG=1 lets everything through; so does TF_CPP_MIN_LOG_LEVEL=0
    # for all but those three.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    startup.hold_back_registration_errors()

__version__ = "0.1.0"
