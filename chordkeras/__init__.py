"""chordkeras: chord recognition networks trained with TensorFlow and Keras."""

import os

# TensorFlow's C++ start-up chatter (CUDA probing, CPU feature notes) buries the messages that
# matter; warnings and errors still show. Set TF_CPP_MIN_LOG_LEVEL yourself to see everything.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
