"""Hyperparameter search for chordkeras models with keras-tuner."""
