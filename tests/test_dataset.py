import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from chordkeras import config as config_lib
from chordkeras import dataset, vocab
from chordkeras.config import RunConfig

from helpers_data import write_tiny_dataset

MAJMIN = vocab.get_vocabulary("majmin")
LARGE = vocab.get_vocabulary("large")


def _targets(chord, root, bass, pitches):
    return {
        "chord": tf.constant(chord, tf.int32),
        "root": tf.constant(root, tf.int32),
        "bass": tf.constant(bass, tf.int32),
        "pitches": tf.constant(pitches, tf.float32),
    }


def test_pitch_shift_moves_bins_and_every_target_by_hand():
    spectrogram = tf.constant([[1.0, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]])
    c_major = [1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0]
    a_minor = [1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0]
    # Frame 0: C:maj (majmin class 1, root 0, bass 0); frame 1: A:min/C (class 13 + 9 = 22, root 9, bass 0).
    targets = _targets([1, 22], [0, 9], [0, 0], [c_major, a_minor])
    shifted, out = dataset.pitch_shift(spectrogram, targets, tf.constant(5), 1, MAJMIN)
    np.testing.assert_array_equal(shifted.numpy(), [[0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 7]])
    # C + 5 = F (class 1 + 5 = 6); A + 5 = D, minor (13 + 2 = 15); bass C -> F = 5.
    np.testing.assert_array_equal(out["chord"].numpy(), [6, 15])
    np.testing.assert_array_equal(out["root"].numpy(), [5, 2])
    np.testing.assert_array_equal(out["bass"].numpy(), [5, 5])
    np.testing.assert_array_equal(np.flatnonzero(out["pitches"].numpy()[0]), [0, 5, 9])  # F A C
    np.testing.assert_array_equal(np.flatnonzero(out["pitches"].numpy()[1]), [2, 5, 9])  # D F A


def test_pitch_shift_down_zero_fills_the_top_and_keeps_no_chord():
    spectrogram = tf.constant([[1.0, 2, 3, 4, 5, 6]])
    # N (class 0, root/bass 12), two bins per semitone.
    targets = _targets([0], [12], [12], [[0] * 12])
    shifted, out = dataset.pitch_shift(spectrogram, targets, tf.constant(-1), 2, MAJMIN)
    np.testing.assert_array_equal(shifted.numpy(), [[3, 4, 5, 6, 0, 0]])
    assert out["chord"].numpy().tolist() == [0]
    assert out["root"].numpy().tolist() == [12]
    assert out["bass"].numpy().tolist() == [12]


@pytest.mark.parametrize("name", ["majmin", "large"])
def test_pitch_shift_of_classes_agrees_with_label_transposition(name):
    vocabulary = vocab.get_vocabulary(name)
    labels = ["N", "C:maj", "B:min", "F#:maj", "D:7", "Ab:hdim7", "E:sus4", "X", "G:maj/3"]
    classes = np.array([vocabulary.encode(label) for label in labels], np.int32)
    targets = _targets(classes, [12] * len(labels), [12] * len(labels), np.zeros((len(labels), 12)))
    for k in range(-6, 7):
        _, out = dataset.pitch_shift(tf.zeros([len(labels), 4]), targets, tf.constant(k), 1, vocabulary)
        expected = [vocabulary.encode(vocab.transpose_label(label, k)) for label in labels]
        assert out["chord"].numpy().tolist() == expected, k


def test_random_excerpt_pads_and_masks_a_short_song():
    song = {
        "spectrogram": tf.ones([3, 4]),
        "chord": tf.constant([2, 3, 4]), "root": tf.constant([0, 1, 2]), "bass": tf.constant([0, 1, 2]),
        "pitches": tf.ones([3, 12]),
    }
    spec, targets, mask = dataset.random_excerpt(song, 5, tf.constant([1, 2]))
    np.testing.assert_array_equal(mask.numpy(), [1, 1, 1, 0, 0])
    np.testing.assert_array_equal(spec.numpy().sum(axis=1), [4, 4, 4, 0, 0])
    np.testing.assert_array_equal(targets["chord"].numpy(), [2, 3, 4, vocab.IGNORE, vocab.IGNORE])
    np.testing.assert_array_equal(targets["root"].numpy(), [0, 1, 2, 12, 12])


def test_random_excerpt_is_a_contiguous_window():
    frames = tf.range(20, dtype=tf.float32)
    song = {"spectrogram": tf.tile(frames[:, None], [1, 2]), "chord": tf.range(20), "root": tf.zeros(20, tf.int32),
            "bass": tf.zeros(20, tf.int32), "pitches": tf.zeros([20, 12])}
    for seed in range(5):
        spec, targets, mask = dataset.random_excerpt(song, 6, tf.constant([seed, 0]))
        start = int(spec.numpy()[0, 0])
        np.testing.assert_array_equal(spec.numpy()[:, 0], np.arange(start, start + 6))
        np.testing.assert_array_equal(targets["chord"].numpy(), np.arange(start, start + 6))
        assert mask.numpy().sum() == 6


def test_random_excerpt_leaves_out_trailing_digital_silence():
    """A song of 20 frames whose last 8 are all zeros: 6-frame windows start at 0 to 6, never later."""
    values = tf.concat([tf.range(1, 13, dtype=tf.float32), tf.zeros(8)], 0)
    song = {"spectrogram": tf.tile(values[:, None], [1, 2]), "chord": tf.range(20), "root": tf.zeros(20, tf.int32),
            "bass": tf.zeros(20, tf.int32), "pitches": tf.zeros([20, 12])}
    starts = set()
    for seed in range(60):
        spec, targets, mask = dataset.random_excerpt(song, 6, tf.constant([seed, 1]))
        start = int(targets["chord"].numpy()[0])
        np.testing.assert_array_equal(targets["chord"].numpy(), np.arange(start, start + 6))
        assert mask.numpy().sum() == 6
        starts.add(start)
    assert starts == set(range(7))
    # Sounding for less than a window: the window starts at 0 and takes the silence after it.
    short = dict(song, spectrogram=tf.tile(tf.concat([tf.ones(4), tf.zeros(16)], 0)[:, None], [1, 2]))
    for seed in range(10):
        _, targets, mask = dataset.random_excerpt(short, 6, tf.constant([seed, 1]))
        np.testing.assert_array_equal(targets["chord"].numpy(), np.arange(6))
        assert mask.numpy().sum() == 6


def test_detune_interpolates_towards_the_neighbouring_bin():
    spectrogram = tf.constant([[0.0, 4.0, 0.0, 0.0]])
    np.testing.assert_allclose(dataset.detune(spectrogram, tf.constant(0.25)).numpy(), [[0.0, 3.0, 1.0, 0.0]])
    np.testing.assert_allclose(dataset.detune(spectrogram, tf.constant(-0.5)).numpy(), [[2.0, 2.0, 0.0, 0.0]])
    np.testing.assert_allclose(dataset.detune(spectrogram, tf.constant(0.0)).numpy(), spectrogram.numpy())


def test_training_songs_are_moved_to_a440_by_their_own_estimate():
    """With the default features (bin 0 at C1 = MIDI 24, two bins per semitone, the estimate from bin 48 up),
    bins 99-101 at 1, 3, 2 peak at 100 + 1/6 (the parabola's vertex), pitch 24 + 50 + 1/12: the song is
    1/12 semitone sharp and moves down by 1/6 bin (bin j: 5/6 of itself, 1/6 of bin j + 1). Labels stay."""
    spectrogram = np.zeros((3, 144), np.float32)
    spectrogram[:, 99:102] = [1.0, 3.0, 2.0]
    song = {"spectrogram": tf.constant(spectrogram), "chord": tf.constant([1, 2, 3])}
    moved = dataset.tuned_to_a440(song, RunConfig())
    expected = np.zeros_like(spectrogram)
    expected[:, 98:102] = [1 / 6, 5 / 6 + 3 / 6, 15 / 6 + 2 / 6, 10 / 6]
    # float32 phases of about 2 pi * 74 rad round to a few 1e-5.
    np.testing.assert_allclose(moved["spectrogram"].numpy(), expected, atol=1e-4)
    np.testing.assert_array_equal(moved["chord"].numpy(), [1, 2, 3])
    # Beyond the limit (1/12 semitone > 0.08): unchanged.
    strict = config_lib.apply_overrides(RunConfig(), ["model.tuning_correction=0.08"])
    np.testing.assert_array_equal(dataset.tuned_to_a440(song, strict)["spectrogram"].numpy(), spectrogram)


def test_gain_and_eq():
    log_scale_magnitude = np.array([[0.0, 1.0, 99.0]], np.float32)
    spectrogram = tf.math.log1p(tf.constant(log_scale_magnitude))
    same = dataset.gain_and_eq(spectrogram, tf.constant(0.0), tf.constant(0.0), 100.0)
    np.testing.assert_allclose(same.numpy(), spectrogram.numpy(), rtol=1e-6)
    louder = dataset.gain_and_eq(spectrogram, tf.constant(20.0), tf.constant(0.0), 100.0)
    np.testing.assert_allclose(louder.numpy(), np.log1p(10 * log_scale_magnitude), rtol=1e-5)
    # A 12 dB tilt over three bins: -6 dB, 0 dB, +6 dB.
    tilted = dataset.gain_and_eq(spectrogram, tf.constant(0.0), tf.constant(12.0), 100.0)
    factors = 10 ** (np.array([-6.0, 0.0, 6.0]) / 20)
    np.testing.assert_allclose(tilted.numpy(), np.log1p(factors * log_scale_magnitude), rtol=1e-5)
    # A 12 dB low shelf turning at bin 1, sharply: +12 dB below, half of it at the corner, nothing above.
    shelved = dataset.gain_and_eq(spectrogram, tf.constant(0.0), tf.constant(0.0), 100.0, tf.constant(12.0), 1.0, 0.01)
    factors = 10 ** (np.array([12.0, 6.0, 0.0]) / 20)
    np.testing.assert_allclose(shelved.numpy(), np.log1p(factors * log_scale_magnitude), rtol=1e-5)


def _tiny_config(**data):
    config = config_lib.resolve("tiny")
    return dataclasses.replace(config, data=dataclasses.replace(config.data, **data))


def test_training_batches_have_fixed_shapes_and_a_known_number_of_steps(tmp_path):
    config = _tiny_config(batch_size=4, excerpt_seconds=2.0)
    write_tiny_dataset(tmp_path / "d", config.features)
    data = dataset.make_datasets(tmp_path / "d", config)
    # 6 songs of 40 frames, excerpts of 22 frames, coverage 1: 10.9 excerpts a pass, 2 batches of 4.
    assert config.data.excerpt_frames(config.features) == 22
    assert data.steps_per_epoch == 2
    frames = config.data.excerpt_frames(config.features)
    assert data.train.cardinality() == tf.data.INFINITE_CARDINALITY  # a fit counts steps_per_epoch
    batches = list(data.train.take(4))
    spec, targets, mask = batches[0]
    assert spec.shape == (4, frames, 144)
    assert targets["chord"].shape == (4, frames)
    assert targets["pitches"].shape == (4, frames, 12)
    assert mask.shape == (4, frames)
    # Every label is a majmin-or-large class of the config's vocabulary (tiny uses large).
    assert set(np.unique(targets["chord"].numpy())) <= set(range(2, 170))


def test_validation_is_whole_songs_in_order_with_padding_masked(tmp_path):
    config = _tiny_config(eval_batch_size=2, vocabulary="majmin")
    write_tiny_dataset(tmp_path / "d", config.features, frames=30)
    ds = dataset.eval_dataset(tmp_path / "d", "valid", config)
    (spec, targets, mask), = list(ds)
    assert spec.shape == (2, 30, 144)
    assert mask.numpy().sum() == 60
    # Large C:maj..B:maj (2..13) become majmin 1..12.
    assert set(np.unique(targets["chord"].numpy())) <= set(range(1, 13))


def test_bad_combinations_raise_value_error(tmp_path):
    write_tiny_dataset(tmp_path / "d", RunConfig().features)
    with pytest.raises(ValueError, match="shift_min"):
        dataset.make_datasets(tmp_path / "d", _tiny_config(shift_min=3, shift_max=1))
    with pytest.raises(ValueError, match="less than one batch"):
        dataset.make_datasets(tmp_path / "d", _tiny_config(batch_size=64))
    other = dataclasses.replace(RunConfig(), features=dataclasses.replace(RunConfig().features, hop_length=1024))
    with pytest.raises(ValueError, match="feature config differs"):
        dataset.make_datasets(tmp_path / "d", other)


def _mixture_shares(data, batches=250):
    """Share of excerpts from the minor-chord dataset, read off each excerpt's first chord label."""
    minor = 0
    total = 0
    for _, targets, _ in data.train.take(batches):
        first = targets["chord"].numpy()[:, 0]
        minor += int(np.sum((first >= LARGE.encode("C:min")) & (first <= LARGE.encode("B:min"))))
        total += len(first)
    return minor / total


def test_mixed_datasets_give_excerpts_in_the_chosen_proportions(tmp_path):
    # No augmentation, so each excerpt's labels tell which dataset it came from (major or minor chords).
    config = _tiny_config(shift_min=0, shift_max=0, detune_bins=0.0, eq_db=0.0, epoch_coverage=4.0)
    major = write_tiny_dataset(tmp_path / "major", config.features, songs_per_split=(6, 2, 2))
    minor = write_tiny_dataset(tmp_path / "minor", config.features, songs_per_split=(2, 2, 2), seed=1, quality="min")
    # Weights 1:3; 2000 excerpts: the share's standard deviation is 0.0097.
    data = dataset.make_datasets([major, minor], config, weights=[1, 3])
    # (6 + 2) songs of 40 frames x coverage 4 / 43-frame excerpts: 29.8 excerpts a pass, 3 batches of 8.
    assert data.steps_per_epoch == 3
    assert _mixture_shares(data) == pytest.approx(0.75, abs=0.03)
    # By default in proportion to the training audio (6 and 2 songs of 40 frames), as if prepared together.
    assert _mixture_shares(dataset.make_datasets([major, minor], config)) == pytest.approx(0.25, abs=0.03)
    # Weight 0: never drawn; it can still validate.
    only_major = dataset.make_datasets([major, minor], config, weights=[1, 0], validate_on=[minor])
    assert _mixture_shares(only_major, batches=50) == 0.0
    (_, targets, mask), = list(only_major.valid)   # the 2 minor validation songs, one batch of eval_batch_size 4
    assert set(np.unique(targets["chord"].numpy()[mask.numpy() > 0])) <= set(range(14, 26))
    assert data.info["splits"]["train"]["songs"] == 8
    assert [(m["weight"], m["splits"]["train"]["songs"]) for m in data.info["mixture"]] == [(1.0, 6), (3.0, 2)]
    with pytest.raises(ValueError, match="mixing weights"):
        dataset.make_datasets([major, minor], config, weights=[1])
    with pytest.raises(ValueError, match="are not among the training datasets"):
        dataset.make_datasets([major], config, validate_on=[minor])


def test_excerpts_per_song_follow_its_length():
    # 10 s excerpts at 10.77 frames/s are 108 frames: a 45 s song (485 frames) gives 4.49 -> 4 excerpts a
    # pass, a 160 s song (1723 frames) 15.95 -> 16, a 3 s song one; coverage 2 doubles them.
    config = RunConfig()
    frames = config.data.excerpt_frames(config.features)
    assert frames == 108
    counts = [int(dataset.excerpts_per_song(n, frames, coverage)) for n, coverage in
              [(485, 1.0), (1723, 1.0), (32, 1.0), (485, 2.0), (1723, 2.0)]]
    assert counts == [4, 16, 1, 9, 32]
