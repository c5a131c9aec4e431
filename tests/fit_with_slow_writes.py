"""`python -m chordkeras.fit` with every HDF5 dataset write slowed down, for the interruption tests.

CHORDKERAS_TEST_H5_DELAY (seconds per dataset) widens the window in which a kill lands inside a
backup, checkpoint or export write; the writes themselves are the real ones. Used by
tests/test_interruptions.py only.
"""

import os
import sys
import time

import h5py

from chordkeras import fit

_create_dataset = h5py.Group.create_dataset


def _slow_create_dataset(self, *args, **kwargs):
    time.sleep(float(os.environ["CHORDKERAS_TEST_H5_DELAY"]))
    return _create_dataset(self, *args, **kwargs)


if __name__ == "__main__":
    h5py.Group.create_dataset = _slow_create_dataset
    sys.exit(fit.main(sys.argv[1:]))
