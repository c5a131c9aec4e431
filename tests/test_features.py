"""The log-frequency spectrogram, pitch shift and resampler, on signals made here."""

import numpy as np
import pytest
import tensorflow as tf

from chordkeras import features
from chordkeras.config import FeatureConfig

CONFIG = FeatureConfig()
RATE = CONFIG.sample_rate
HOP = CONFIG.hop_length
FULL_SCALE = np.log1p(CONFIG.log_scale)  # a unit sine at a bin centre reads exactly this


def midi_hz(note):
    return 440.0 * 2.0 ** ((np.asarray(note, dtype=np.float64) - 69.0) / 12.0)


def sine(freq, seconds, rate=RATE, amplitude=1.0):
    """[len(freq), samples] (or [samples] for a scalar) float32 sines."""
    t = np.arange(int(round(seconds * rate))) / rate
    return (amplitude * np.sin(2.0 * np.pi * np.multiply.outer(freq, t))).astype(np.float32)


def harmonic_tone(note, seconds, harmonics=6):
    """A tone with harmonics falling as 1/h, 10 ms fades at both ends."""
    t = np.arange(int(round(seconds * RATE))) / RATE
    f0 = midi_hz(note)
    tone = sum(np.sin(2 * np.pi * h * f0 * t + h) / h for h in range(1, harmonics + 1) if h * f0 < RATE / 2 - 500)
    return tone * np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)


def test_bin_frequencies_and_midi_to_bin():
    freqs = features.bin_frequencies(CONFIG)
    assert freqs.shape == (144,)
    assert freqs[0] == pytest.approx(32.703195662574764)
    assert freqs[24] == pytest.approx(2 * freqs[0])
    assert freqs[90] == pytest.approx(440.0)
    assert features.midi_to_bin(24, CONFIG) == 0  # C1
    assert features.midi_to_bin(25, CONFIG) == 2
    assert features.midi_to_bin(69, CONFIG) == 90  # A4
    assert features.midi_to_bin(95, CONFIG) == 142  # B6, the top note
    for outside in (23, 96):  # B0; C7 would be bin 144, one past the top
        with pytest.raises(ValueError, match="outside"):
            features.midi_to_bin(outside, CONFIG)


def test_pure_tone_peaks_on_its_note_bin_at_full_scale():
    notes = np.arange(24, 96)  # every note in range, C1 ... B6 (C2..B6 and the bottom octave)
    spectrogram = features.log_spectrogram(sine(midi_hz(notes), 2.0), CONFIG).numpy()
    steady = spectrogram[:, 8:14]  # frames whose longest window lies inside the tone
    np.testing.assert_array_equal(steady.argmax(-1), np.repeat(2 * (notes - 24)[:, None], 6, axis=1))
    # A unit sine at a bin centre reads the same at every frequency and resolution.
    np.testing.assert_allclose(steady.max(-1), FULL_SCALE, rtol=1e-4)


def test_tone_between_two_bins_reads_lower_on_both():
    quarter_tone_up = midi_hz(60) * 2 ** (1 / 48)  # halfway between bins 72 and 73
    frame = features.log_spectrogram(sine(quarter_tone_up, 2.0), CONFIG).numpy()[10]
    assert set(np.argsort(frame)[-2:]) == {72, 73}
    assert frame[72] < FULL_SCALE and frame[73] < FULL_SCALE


@pytest.mark.parametrize("num_samples", [0, 1, 100, HOP - 1, HOP, HOP + 1, 16384 + 3, 3 * RATE])
def test_frame_count(num_samples):
    audio = np.full(num_samples, 0.1, np.float32)
    assert features.log_spectrogram(audio, CONFIG).shape == (1 + num_samples // HOP, CONFIG.n_bins)


@pytest.mark.parametrize("offset", [0, 1000, 1100, HOP - 3])
def test_click_shows_in_the_frame_whose_centre_is_nearest(offset):
    sample = 10 * HOP + offset
    audio = np.zeros(25 * HOP, np.float32)
    audio[sample] = 1.0
    spectrogram = features.log_spectrogram(audio, CONFIG).numpy()
    expected = int(np.floor(sample / HOP + 0.5))  # 1000 -> 10, 1100 -> 11
    assert spectrogram.sum(-1).argmax() == expected
    # Every resolution is centred on the same samples: each bin peaks in that frame.
    np.testing.assert_array_equal(spectrogram.argmax(0), expected)


def test_silence_is_exactly_zero():
    for audio in (np.zeros(3 * RATE, np.float32), np.zeros((2, 5000), np.float32), np.zeros(10, np.float32)):
        assert not np.any(features.log_spectrogram(audio, CONFIG).numpy())


def test_batch_equals_per_item():
    rng = np.random.default_rng(0)
    batch = (0.1 * rng.standard_normal((3, 2 * RATE)) + sine(midi_hz([40, 57, 81]), 2.0, amplitude=0.5))
    batch = batch.astype(np.float32)
    together = features.log_spectrogram(batch, CONFIG).numpy()
    for item, row in zip(batch, together):
        np.testing.assert_allclose(features.log_spectrogram(item, CONFIG).numpy(), row, atol=1e-5)


def test_runs_in_tf_function_with_unknown_shape():
    compute = tf.function(lambda audio: features.log_spectrogram(audio, CONFIG),
                          input_signature=[tf.TensorSpec(None, tf.float32)])
    tone = sine(440.0, 1.0)
    for audio in (tone, tone[:10], np.stack([tone, 0.5 * tone])):
        result = compute(audio).numpy()
        np.testing.assert_allclose(result, features.log_spectrogram(audio, CONFIG).numpy(), atol=1e-5)
        assert result.shape == audio.shape[:-1] + (1 + audio.shape[-1] // HOP, CONFIG.n_bins)
    known_rank = tf.function(lambda audio: features.log_spectrogram(audio, CONFIG),
                             input_signature=[tf.TensorSpec([None], tf.float32)])
    assert known_rank.get_concrete_function().structured_outputs.shape.as_list() == [None, CONFIG.n_bins]


def test_pitch_shift_by_hand():
    spectrogram = np.array([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]], np.float32)  # [frames=2, bins=5]
    expected = {
        0: [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]],
        2: [[0, 0, 1, 2, 3], [0, 0, 6, 7, 8]],
        -1: [[2, 3, 4, 5, 0], [7, 8, 9, 10, 0]],
        -4: [[5, 0, 0, 0, 0], [10, 0, 0, 0, 0]],
        5: [[0, 0, 0, 0, 0], [0, 0, 0, 0, 0]],
        -9: [[0, 0, 0, 0, 0], [0, 0, 0, 0, 0]],
    }
    shift = tf.function(features.pitch_shift)  # k as a runtime tensor
    for k, want in expected.items():
        np.testing.assert_array_equal(features.pitch_shift(spectrogram, k).numpy(), want)
        np.testing.assert_array_equal(shift(spectrogram, tf.constant(k)).numpy(), want)
    batch = np.stack([spectrogram, 10 * spectrogram])  # [batch, frames, bins]
    np.testing.assert_array_equal(
        features.pitch_shift(batch, tf.constant(-1)).numpy(),
        np.stack([expected[-1], 10 * np.array(expected[-1])]),
    )


def test_pitch_shift_moves_a_tone_by_semitones():
    spectrogram = features.log_spectrogram(sine(midi_hz(60), 1.0), CONFIG)
    up_three = features.pitch_shift(spectrogram, 3 * CONFIG.bins_per_semitone).numpy()
    assert up_three[5].argmax() == features.midi_to_bin(63, CONFIG)


@pytest.mark.parametrize("orig_rate", [44100, 48000, 16000, 22050])
def test_resample_keeps_a_tone(orig_rate):
    audio = sine(440.0, 1.0, rate=orig_rate, amplitude=0.5)
    out = features.resample(audio, orig_rate, RATE).numpy()
    assert out.shape == ((audio.size * RATE + orig_rate // 2) // orig_rate,)
    middle = slice(RATE // 4, 3 * RATE // 4)  # the FFT resampler rings briefly at the abrupt ends
    np.testing.assert_allclose(out[middle], sine(440.0, 1.0, amplitude=0.5)[middle], atol=2e-3)
    spectrum = np.abs(np.fft.rfft(out[middle] * np.hanning(out[middle].size)))
    assert np.fft.rfftfreq(out[middle].size, 1 / RATE)[spectrum.argmax()] == pytest.approx(440.0, abs=2.0)


def test_resample_with_runtime_rate_and_batch():
    resample = tf.function(lambda audio, rate: features.resample(audio, rate, RATE),
                           input_signature=[tf.TensorSpec([None, None], tf.float32), tf.TensorSpec([], tf.int32)])
    batch = np.stack([sine(440.0, 1.0, rate=44100), sine(220.0, 1.0, rate=44100)])
    out = resample(batch, tf.constant(44100)).numpy()
    assert out.shape == (2, RATE)
    np.testing.assert_allclose(out[1], features.resample(batch[1], 44100, RATE).numpy(), atol=1e-5)
    same = resample(batch, tf.constant(RATE)).numpy()
    np.testing.assert_array_equal(same, batch)  # equal rates: identity


@pytest.mark.slow
def test_close_to_librosa_cqt():
    import librosa  # tests only: the reference constant-Q transform
    freqs = features.bin_frequencies(CONFIG)

    def cqt(audio):
        return np.abs(librosa.cqt(audio, sr=RATE, hop_length=HOP, fmin=CONFIG.fmin, n_bins=CONFIG.n_bins,
                                  bins_per_octave=CONFIG.bins_per_octave, scale=False))

    # Calibrate librosa like ours: a unit sine at each bin centre reads 1 in that bin.
    unit = cqt(sine(freqs, 1.5))[np.arange(CONFIG.n_bins), np.arange(CONFIG.n_bins), 8]

    tone_notes = [28, 33, 40, 45, 52, 57, 64, 69, 76, 81, 88]
    signals = [0.3 * harmonic_tone(note, 2.5) for note in tone_notes]
    for root in (36, 43, 48, 55, 60, 67, 72):
        for third in (3, 4):
            signals.append(0.2 * sum(harmonic_tone(root + i, 2.5) for i in (0, third, 7)))
    signals = np.array(signals, np.float32)

    ours = features.log_spectrogram(signals, CONFIG).numpy()[:, 6:22]
    theirs = np.log1p(CONFIG.log_scale * cqt(signals) / unit[:, None]).transpose(0, 2, 1)[:, 6:22]

    # Same bin for each tone's fundamental.
    expected = 2 * (np.array(tone_notes) - 24)
    np.testing.assert_array_equal(ours[: len(tone_notes)].mean(1).argmax(-1), expected)
    np.testing.assert_array_equal(theirs[: len(tone_notes)].mean(1).argmax(-1), expected)

    correlation = np.corrcoef(ours.ravel(), theirs.ravel())[0, 1]
    worst = min(np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(ours, theirs))
    print(f"correlation with librosa.cqt (log magnitudes): {correlation:.4f} overall, {worst:.4f} worst signal")
    assert correlation > 0.9
    assert worst > 0.85


def test_dft_spectrogram_reads_a_unit_sine_at_full_scale_on_its_bin():
    """The matrix-product transform (Core ML's features) on the same tones as the FFT one above."""
    for note in (24, 47, 60, 95):  # one note per band: 16384-, 8192-, 4096- and 2048-sample windows
        spectrogram = features.dft_log_spectrogram(sine(midi_hz(note), 2.0), CONFIG).numpy()
        steady = spectrogram[8:14]
        np.testing.assert_array_equal(steady.argmax(-1), 2 * (note - 24))
        np.testing.assert_allclose(steady.max(-1), FULL_SCALE, rtol=1e-4)


@pytest.mark.parametrize("num_samples", [1, 100, HOP, 3 * RATE + 17])
def test_dft_spectrogram_equals_the_fft_one(num_samples):
    audio = (np.random.default_rng(num_samples).standard_normal(num_samples) * 0.1).astype(np.float32)
    fft = features.log_spectrogram(audio, CONFIG).numpy()
    dft = features.dft_log_spectrogram(audio, CONFIG).numpy()
    assert dft.shape == fft.shape == (1 + num_samples // HOP, CONFIG.n_bins)
    np.testing.assert_allclose(dft, fft, atol=2e-6)
    with pytest.raises(ValueError, match="1-D audio"):
        features.dft_log_spectrogram(audio[None], CONFIG)
