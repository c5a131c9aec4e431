"""Training batches end to end: records -> crop -> pitch shift, detune, gain and EQ -> batch.

The tiny songs lift one bin per frame (`helpers_data.peak_bin` of the frame's root) far above the
noise, so in every augmented frame the loudest bin must still be the one of the frame's (shifted)
root label, up to octaves: spectrogram and labels stay aligned in time and in pitch.
"""

import dataclasses

import numpy as np
import pytest

from chordkeras import config as config_lib
from chordkeras import dataset, vocab

from helpers_data import PEAK_BIN_OF_C, peak_bin, write_tiny_dataset

LARGE = vocab.get_vocabulary("large")


@pytest.mark.slow
def test_augmented_batches_keep_spectrogram_and_labels_aligned(tmp_path):
    config = config_lib.resolve("tiny")
    # Detuning by at most a quarter bin keeps 3/4 of a peak in its bin, so the loudest bin stays
    # put; gain (+-12 dB) and tilt (+-6 dB) scale a peak of log1p magnitude 3.0 far less than the
    # 30x that separates it from the noise.
    config = dataclasses.replace(config, data=dataclasses.replace(
        config.data, excerpt_seconds=2.0, batch_size=8, epoch_coverage=2.0, detune_bins=0.25))
    write_tiny_dataset(tmp_path / "d", config.features, songs_per_split=(6, 2, 2), frames=80)
    data = dataset.make_datasets(tmp_path / "d", config)
    features = config.features
    frames = config.data.excerpt_frames(features)
    peaks = []
    for spectrogram, targets, mask in data.train.take(12):
        spectrogram = spectrogram.numpy()
        root = targets["root"].numpy()
        assert spectrogram.shape == (8, frames, features.n_bins)
        # The songs (80 frames) are longer than an excerpt (22 frames): no padding.
        assert mask.numpy().min() == 1.0
        # The bins move by the shift, the root label by the shift modulo 12: the loudest bin is
        # the root's bin in one of the octaves.
        octave = 12 * features.bins_per_semitone
        np.testing.assert_array_equal((spectrogram.argmax(axis=-1) - peak_bin(root, features)) % octave, 0)
        # The tiny songs hold major chords with the root in the bass; both moved with the root.
        np.testing.assert_array_equal(targets["bass"].numpy(), root)
        np.testing.assert_array_equal(targets["chord"].numpy(), LARGE.encode("C:maj") + root)
        major_triad = np.zeros((8, frames, 12))
        for interval in (0, 4, 7):
            np.put_along_axis(major_triad, ((root + interval) % 12)[..., None], 1.0, axis=-1)
        np.testing.assert_array_equal(targets["pitches"].numpy(), major_triad)
        peaks.append(spectrogram.argmax(axis=-1))
    peaks = np.concatenate(peaks).ravel()
    # Shifts in both directions happened: peaks below C's bin (a shift down from the lowest roots)
    # and above B's bin (a shift up from the highest).
    assert peaks.min() < PEAK_BIN_OF_C
    assert peaks.max() > PEAK_BIN_OF_C + 11 * features.bins_per_semitone
