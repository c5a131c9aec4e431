import os
import random

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    try:
        import tensorflow as tf
    except ImportError:  # pragma: no cover - tensorflow is a hard dependency
        return
    tf.random.set_seed(0)
    import keras

    keras.utils.set_random_seed(0)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A prepared dataset of 8/2/2 tiny songs, shared read-only by the fit and tuning tests.

    8 songs of 40 frames at epoch coverage 5 with 2 s (22-frame) excerpts = 72 excerpts: at least one batch for
    every batch_size the tuning space offers.
    """
    from chordkeras import config as config_lib
    from helpers_data import write_tiny_dataset

    return write_tiny_dataset(tmp_path_factory.mktemp("data") / "tiny", config_lib.RunConfig().features,
                              songs_per_split=(8, 2, 2))
