"""chordkeras: chord recognition networks trained with TensorFlow and Keras."""

__version__ = "0.1.0"
