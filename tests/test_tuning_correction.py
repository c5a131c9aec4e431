"""The network's inference-time tuning correction (model.TuningCorrection): the estimate by hand and on tones."""

import math

import numpy as np
import pytest
import tensorflow as tf

from chordkeras import features, model
from chordkeras.config import FeatureConfig, resolve


def _layer(**kwargs):
    # Two bins per semitone and bin 0 at MIDI pitch 0: bin j sounds j / 2 semitones.
    return model.TuningCorrection(bins_per_semitone=2, fmin_midi=0.0, **kwargs)


def _spectrogram(frames):
    """[1, T, 12]: each frame a dict {bin: value}, zero elsewhere."""
    values = np.zeros((1, len(frames), 12), np.float32)
    for t, frame in enumerate(frames):
        for j, v in frame.items():
            values[0, t, j] = v
    return tf.constant(values)


def test_one_peak_by_hand():
    """Bins 3, 4, 5 at 1, 3, 2: the parabola through them peaks at 4 + 0.5 * (1 - 2) / (1 - 6 + 2) = 4 + 1/6,
    i.e. at pitch (4 + 1/6) / 2 = 2 + 1/12 semitones: the input is 1/12 semitone sharp. Moved down by
    1/6 bin, bin j becomes 5/6 of itself plus 1/6 of bin j + 1."""
    spectrogram = _spectrogram([{3: 1.0, 4: 3.0, 5: 2.0}, {}])
    mask = tf.ones([1, 2])
    layer = _layer()
    np.testing.assert_allclose(layer.estimate(spectrogram, mask).numpy(), [1 / 12], atol=1e-6)
    expected = np.zeros((1, 2, 12), np.float32)
    expected[0, 0, 2:6] = [1 / 6, 5 / 6 + 3 / 6, 15 / 6 + 2 / 6, 10 / 6]
    np.testing.assert_allclose(layer(spectrogram, mask).numpy(), expected, atol=1e-6)


def test_votes_are_weighted_by_peak_height_on_the_semitone_circle():
    """A peak 1/12 semitone sharp (height 3, phase 2 pi / 12) and one in tune at bin 8 (height 4, phase 0):
    the tuning is the angle of 3 e^(i pi / 6) + 4, over 2 pi."""
    spectrogram = _spectrogram([{3: 1.0, 4: 3.0, 5: 2.0}, {7: 1.0, 8: 4.0, 9: 1.0}])
    expected = math.atan2(3 * math.sin(math.pi / 6), 4 + 3 * math.cos(math.pi / 6)) / (2 * math.pi)
    np.testing.assert_allclose(_layer().estimate(spectrogram, tf.ones([1, 2])).numpy(), [expected], atol=1e-6)
    # Padding (mask 0) does not vote, whatever it holds; bins below first_bin do not either.
    only_second = _layer().estimate(spectrogram, tf.constant([[0.0, 1.0]])).numpy()
    np.testing.assert_allclose(only_second, [0.0], atol=1e-6)
    np.testing.assert_allclose(_layer(first_bin=6).estimate(spectrogram, tf.ones([1, 2])).numpy(), [0.0], atol=1e-6)


def test_unchanged_in_training_beyond_the_limit_and_on_silence():
    # Bins 3, 4, 5 at 1, 3, 1.5: offset 0.5 * (1 - 1.5) / (1 - 6 + 1.5) = 1/14 bin, tuning 1/28 semitone.
    sharp = _spectrogram([{3: 1.0, 4: 3.0, 5: 1.5}])
    mask = tf.ones([1, 1])
    layer = _layer()
    np.testing.assert_allclose(layer.estimate(sharp, mask).numpy(), [1 / 28], atol=1e-6)
    np.testing.assert_array_equal(layer(sharp, mask, training=True).numpy(), sharp.numpy())
    assert not np.allclose(layer(sharp, mask, training=False).numpy(), sharp.numpy())
    # 1/28 semitone is beyond a limit of 1/30: passed through.
    np.testing.assert_array_equal(_layer(max_semitones=1 / 30)(sharp, mask).numpy(), sharp.numpy())
    silence = tf.zeros([2, 5, 12])
    np.testing.assert_array_equal(layer(silence, tf.ones([2, 5])).numpy(), silence.numpy())


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="bins_per_semitone"):
        model.TuningCorrection(bins_per_semitone=1, fmin_midi=24.0)
    with pytest.raises(ValueError, match="max_semitones"):
        model.TuningCorrection(bins_per_semitone=2, fmin_midi=24.0, max_semitones=0.5)
    for limit in ("0.5", "-0.1"):
        with pytest.raises(ValueError, match=r"model.tuning_correction must lie in \[0, 0.5\)"):
            model.build_model(resolve("tiny", [f"model.tuning_correction={limit}"]))
    config = resolve("tiny", ["features.bins_per_octave=12"])
    with pytest.raises(ValueError, match="model.tuning_correction=0"):
        model.build_model(config)
    assert not any(isinstance(layer, model.TuningCorrection)
                   for layer in model.build_model(resolve("tiny", ["model.tuning_correction=0"])).layers)


def _chord(cents: float, partials: int, config: FeatureConfig) -> np.ndarray:
    """C major over two octaves (C3 E3 G3 C4 E4), `partials` harmonics at 1/h, `cents` off A440."""
    t = np.arange(4 * config.sample_rate) / config.sample_rate
    audio = np.zeros_like(t)
    for note in (48, 52, 55, 60, 64):
        f0 = 440.0 * 2 ** ((note - 69 + cents / 100) / 12)
        for h in range(1, partials + 1):
            audio += np.sin(2 * np.pi * f0 * h * t + note) / h
    return (0.05 * audio).astype(np.float32)


@pytest.mark.parametrize("partials", [1, 7])
@pytest.mark.parametrize("cents", [-30, -10, 0, 20, 30])
def test_tones_off_a440_are_read_and_moved_back(cents, partials):
    """Chords of sines or of harmonic tones through the features: the estimate lies within 4 cents of the
    offset (measured: at most 2.4 cents for sines, whose parabola through quarter-tone bins is slightly
    off the true peak, and 3.6 for harmonic tones, whose 5th and 7th partials sit 14 and 31 cents below
    the equal-tempered grid), and the corrected spectrogram reads within 5 cents of A440."""
    config = FeatureConfig()
    layer = model.TuningCorrection(config.bins_per_semitone, features.fmin_midi(config),
                                   first_bin=2 * config.bins_per_octave)
    spectrogram = features.log_spectrogram(_chord(cents, partials, config), config)[None]
    mask = tf.ones(tf.shape(spectrogram)[:2])
    assert abs(100 * layer.estimate(spectrogram, mask).numpy()[0] - cents) < 4.0
    assert abs(100 * layer.estimate(layer(spectrogram, mask), mask).numpy()[0]) < 5.0


def test_the_default_network_corrects_after_its_level_normalisation():
    """Built in the default network after the level normalisation (whose output does not depend on the
    playback level, so neither does the estimate), from C3 up (2 octaves above C1: the lower octaves'
    quarter-tone filters are wider than their FFT bins), at the configured limit."""
    config = resolve("default")
    network = model.build_model(config)
    names = [layer.name for layer in network.layers]
    assert names.index("tuning") == names.index("level_norm") + 1
    layer = network.get_layer("tuning")
    assert (layer.first_bin, layer.max_semitones, layer.bins_per_semitone) == (48, config.model.tuning_correction, 2)
    assert layer.fmin_midi == pytest.approx(24.0)      # C1


@pytest.mark.parametrize("cents", [-25, 0, 35])
def test_a_whole_recording_s_tuning(cents):
    """`features.song_tuning`, what predict reports: the estimate over a recording's sounding frames, from C3
    up, within 4 cents of the offset of a chord of harmonic tones; nothing to read in digital silence."""
    config = FeatureConfig()
    spectrogram = features.log_spectrogram(_chord(cents, 7, config), config).numpy()
    assert abs(100 * features.song_tuning(spectrogram, config) - cents) < 4.0
    assert features.song_tuning(np.zeros_like(spectrogram), config) is None
