"""The log-frequency ("constant-Q-like") magnitude spectrogram, in TensorFlow ops only.

One implementation serves preparation, inference and the exported SavedModel, on any
device. The transform is multi-resolution: each octave is read from an STFT whose
window halves per octave, from `max_fft` for the lowest octave down to `min_fft`, so
every octave sees about the same number of periods of its notes, as in a constant-Q
transform. With the defaults (16384 halving to 2048 at 22050 Hz) the windows of the
lower four octaves hold 24 to 49 periods, around the Q of 34 of a 24-bin-per-octave
CQT; `min_fft` = hop_length keeps every sample inside some window of every octave.
Octaves that share a window length share one STFT. The magnitude of each STFT goes
through a real log-frequency filterbank (a real matmul: no complex arithmetic beyond
the FFT itself, which tensorflow-metal handles poorly), and the octaves are
concatenated on the bin axis.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import tensorflow as tf

from chordkeras.config import FeatureConfig

# Extra zeros appended before the FFT resampler's transform so that the end of a song
# wraps around onto silence rather than onto its own beginning.
_RESAMPLE_MARGIN = 4096
# A frame whose every bin is at most this (log1p(log_scale * |X|) units: every bin more than 160 dB below a
# full-scale sine) is digital silence: the network calls it N (model.SilenceIsNoChord), no estimate reads it.
SILENCE_THRESHOLD = 1e-6


@dataclasses.dataclass(frozen=True)
class _Band:
    """One STFT resolution and the log-frequency bins read from it."""

    n_fft: int
    first_bin: int
    weights: np.ndarray  # float32 [num_fft_bins, num_log_bins]: |STFT| -> log-frequency magnitude


def bin_frequencies(config: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Centre frequency in Hz of every log-frequency bin: fmin * 2 ** (j / bins_per_octave)."""
    return config.fmin * 2.0 ** (np.arange(config.n_bins) / config.bins_per_octave)


def fmin_midi(config: FeatureConfig = FeatureConfig()) -> float:
    """The pitch of the lowest bin as a (fractional) MIDI note number (69 = A4 = 440 Hz)."""
    return 69.0 + 12.0 * math.log2(config.fmin / 440.0)


def midi_to_bin(midi_note: float, config: FeatureConfig = FeatureConfig()) -> int:
    """Index of the bin centred on a MIDI note (69 = A4 = 440 Hz).

    Raises:
        ValueError: If the note lies outside the spectrogram's range.
    """
    index = int(round((midi_note - fmin_midi(config)) * config.bins_per_octave / 12.0))
    if not 0 <= index < config.n_bins:
        raise ValueError(f"MIDI note {midi_note} is outside the {config.n_bins} bins from {config.fmin:.2f} Hz")
    return index


def _octave_n_fft(config: FeatureConfig, octave: int) -> int:
    return max(config.max_fft >> octave, config.min_fft)


def _check(config: FeatureConfig) -> None:
    for name in ("max_fft", "min_fft"):
        n = getattr(config, name)
        if n <= 0 or n & (n - 1):
            raise ValueError(f"{name}={n} must be a power of two")
    if config.min_fft > config.max_fft:
        raise ValueError(f"min_fft={config.min_fft} exceeds max_fft={config.max_fft}")
    top = config.fmin * 2.0 ** ((config.n_bins - 1) / config.bins_per_octave)
    if top >= config.sample_rate / 2:
        raise ValueError(f"top bin {top:.0f} Hz is above the Nyquist frequency of {config.sample_rate} Hz")


def _band_weights(config: FeatureConfig, n_fft: int, bins: np.ndarray) -> np.ndarray:
    """Triangular log-frequency filters over the FFT bins of one resolution.

    Filter j rises from the centre of bin j-1 to that of bin j and falls to bin j+1
    (never narrower than one FFT bin either side, so that low bins, closer together
    than the FFT spacing, interpolate rather than fall between FFT bins). Each filter
    is then scaled so that a unit-amplitude sine at its centre frequency, seen through
    the periodic Hann window, gives exactly 1: a full-scale tone reads the same at
    any frequency and resolution.
    """
    ratio = 2.0 ** (1.0 / config.bins_per_octave)
    spacing = config.sample_rate / n_fft
    centre = config.fmin * ratio**bins / spacing  # in FFT bins
    lower = np.minimum(centre / ratio, centre - 1.0)
    upper = np.maximum(centre * ratio, centre + 1.0)
    num_fft_bins = min(int(np.ceil(upper.max())) + 1, n_fft // 2 + 1)
    k = np.arange(num_fft_bins)[:, None]
    weights = np.maximum(0.0, np.minimum((k - lower) / (centre - lower), (upper - k) / (upper - centre)))

    # |STFT| of cos(2 pi f t) under the window: half the magnitude of the windowed
    # complex exponential (the negative-frequency image is many bins away).
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)
    phase = 2.0 * np.pi * np.outer(centre, np.arange(n_fft)) / n_fft
    response = 0.5 * np.abs(np.fft.fft(window * np.exp(1j * phase), axis=-1)[:, :num_fft_bins])
    weights /= np.sum(weights * response.T, axis=0, keepdims=True)
    return weights.astype(np.float32)


@functools.lru_cache(maxsize=None)
def _bands(config: FeatureConfig) -> tuple[_Band, ...]:
    _check(config)
    bands = []
    for octave in range(config.n_octaves):
        n_fft = _octave_n_fft(config, octave)
        first = octave * config.bins_per_octave
        if bands and bands[-1].n_fft == n_fft:
            first = bands.pop().first_bin
        bins = np.arange(first, (octave + 1) * config.bins_per_octave)
        bands.append(_Band(n_fft, first, _band_weights(config, n_fft, bins)))
    return tuple(bands)


def log_spectrogram(audio, config: FeatureConfig = FeatureConfig()) -> tf.Tensor:
    """Log-compressed log-frequency magnitude spectrogram.

    Frame i is centred on sample i * hop_length: each STFT is zero-padded by half its
    own window on both sides, so all resolutions line up and silence gives exactly 0.

    Args:
        audio: float32 [samples] or [batch, samples], mono at `config.sample_rate`.
            Any length, including shorter than a window or empty.
        config: The feature configuration.

    Returns:
        float32 [..., 1 + samples // hop_length, n_bins]:
        log1p(log_scale * magnitude), where a full-scale sine at a bin's centre
        frequency has magnitude 1 in that bin.
    """
    audio = tf.convert_to_tensor(audio, dtype=tf.float32)
    shape = tf.shape(audio)
    num_samples = shape[-1]
    if audio.shape.rank == 1:
        signals = audio[None]  # the exported models' input: no shape arithmetic for converters to trip on
    else:
        # Flatten leading axes explicitly: reshape with -1 fails on empty audio.
        signals = tf.reshape(audio, tf.stack([tf.reduce_prod(shape[:-1]), num_samples]))
    parts = []
    for band in _bands(config):
        half = band.n_fft // 2
        padded = tf.pad(signals, [[0, 0], [half, half]])
        stft = tf.signal.stft(padded, frame_length=band.n_fft, frame_step=config.hop_length, fft_length=band.n_fft)
        # abs before the slice: TFLite has no strided slice of complex tensors.
        magnitude = tf.abs(stft)[..., : band.weights.shape[0]]
        parts.append(tf.matmul(magnitude, tf.constant(band.weights)))
    spectrogram = tf.math.log1p(config.log_scale * tf.concat(parts, axis=-1))
    out_shape = tf.concat([shape[:-1], [config.num_frames(num_samples), config.n_bins]], axis=0)
    spectrogram = tf.reshape(spectrogram, out_shape)
    if audio.shape.rank is not None:
        spectrogram.set_shape(audio.shape[:-1].concatenate([None, config.n_bins]))
    return spectrogram


@functools.lru_cache(maxsize=None)
def _dft_bases(config: FeatureConfig) -> tuple[np.ndarray, ...]:
    """Per band: the periodic-Hann-windowed DFT basis [n_fft, 2 * bins] of the FFT bins its filterbank
    reads, real parts (cos) then imaginary parts (-sin)."""
    bases = []
    for band in _bands(config):
        n = np.arange(band.n_fft)
        window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / band.n_fft)
        angle = 2.0 * np.pi * np.outer(n, np.arange(band.weights.shape[0])) / band.n_fft
        bases.append(np.concatenate([window[:, None] * np.cos(angle), -window[:, None] * np.sin(angle)],
                                    axis=1).astype(np.float32))
    return tuple(bases)


def dft_log_spectrogram(audio, config: FeatureConfig = FeatureConfig()) -> tf.Tensor:
    """`log_spectrogram` of 1-D audio with the transform as real matrix products: no FFT, no complex numbers.

    Each band's frames are multiplied by the windowed DFT basis of only the FFT bins its filterbank
    reads (4 x ~100 columns with the defaults), then the magnitudes go through the same filterbank.
    For converters that cannot carry an FFT economically: coremltools writes each FFT as a dense
    DFT matrix, 2.9 GB for the default features, against 15 MB of bases here. More arithmetic than
    the FFTs (3.7 M multiply-adds per frame), though on a 2-core AVX-512 CPU it ran faster (0.13 s
    against 0.25 s for 4 minutes); preparation and training keep `log_spectrogram`, which takes
    batches and needs no bases.

    Args:
        audio: float32 [samples] at `config.sample_rate`, at least one sample.

    Returns:
        float32 [1 + samples // hop_length, n_bins], equal to `log_spectrogram` up to float rounding.
    """
    audio = tf.convert_to_tensor(audio, dtype=tf.float32)
    if audio.shape.rank != 1:
        raise ValueError(f"dft_log_spectrogram takes 1-D audio, got shape {audio.shape}")
    hop = config.hop_length
    num_frames = 1 + tf.shape(audio)[0] // hop
    parts = []
    for band, basis in zip(_bands(config), _dft_bases(config)):
        if band.n_fft % hop:
            raise ValueError(f"dft_log_spectrogram needs windows that are multiples of the hop, got {band.n_fft}")
        # Frame i spans hop-long blocks i .. i + n_fft / hop - 1 of the padded audio: its transform is the
        # sum over those blocks of block @ (its rows of the basis). No frame matrix, no gather indices.
        per_frame = band.n_fft // hop
        half = band.n_fft // 2
        padded = tf.pad(audio, [[half, half]])[: (num_frames - 1 + per_frame) * hop]
        blocks = tf.reshape(padded, [-1, hop])
        re_im = tf.add_n([tf.matmul(blocks[j : j + num_frames], tf.constant(basis[j * hop : (j + 1) * hop]))
                          for j in range(per_frame)])
        bins = band.weights.shape[0]
        magnitude = tf.sqrt(tf.square(re_im[:, :bins]) + tf.square(re_im[:, bins:]))
        parts.append(tf.matmul(magnitude, tf.constant(band.weights)))
    return tf.math.log1p(config.log_scale * tf.concat(parts, axis=-1))


def sounding_length(spectrogram) -> tf.Tensor:
    """Frames up to and including the last one with a non-zero bin, per [..., T, F] spectrogram (0 if none)."""
    nonzero = tf.reduce_any(tf.not_equal(spectrogram, 0.0), axis=-1)
    time_axis = nonzero.shape.rank - 1
    # Positions shaped [1, ..., T] and a non-negative axis: Core ML's converter takes nothing looser.
    positions = tf.range(1, tf.shape(nonzero)[time_axis] + 1)[(None,) * time_axis]
    return tf.reduce_max(tf.where(nonzero, positions, 0), axis=time_axis)


def pitch_shift(spectrogram, k_bins) -> tf.Tensor:
    """Shifts a spectrogram along its last (frequency) axis by k bins, zero-filled.

    Positive k moves content up (bin j goes to bin j + k); bins shifted past either
    edge are dropped, not wrapped.

    Args:
        spectrogram: [..., bins], e.g. [frames, bins] or [batch, frames, bins].
        k_bins: Integer scalar (Python or tensor).
    """
    spectrogram = tf.convert_to_tensor(spectrogram)
    num_bins = tf.shape(spectrogram)[-1]
    k = tf.clip_by_value(tf.cast(k_bins, tf.int32), -num_bins, num_bins)
    below, above = tf.maximum(k, 0), tf.maximum(-k, 0)
    paddings = tf.concat([tf.zeros([tf.rank(spectrogram) - 1, 2], tf.int32), [[below, above]]], axis=0)
    shifted = tf.pad(spectrogram, paddings)[..., above : above + num_bins]
    shifted.set_shape(spectrogram.shape)
    return shifted


def tuning_first_bin(config: FeatureConfig) -> int:
    """The lowest bin a tuning estimate reads: C3 with the defaults, two octaves above `fmin`. Below it the
    quarter-tone filters are wider than the FFT bins of the longest window and smear a tone's position."""
    return 2 * config.bins_per_octave


def estimate_tuning(spectrogram, frame_mask, bins_per_semitone: int, fmin_midi: float, first_bin: int = 0) -> tf.Tensor:
    """The tuning of each [B, T, F] log-frequency spectrogram against A440, in semitones in (-0.5, 0.5].

    In every real frame (`frame_mask` [B, T] > 0), each local maximum over the bins from `first_bin` up
    gets a sub-bin position by the parabola through it and its two neighbours; its pitch
    p = `fmin_midi` + position / `bins_per_semitone` votes for the phase 2 pi p on the semitone circle,
    weighted by its height. The result is the angle of the votes' sum over 2 pi (0 without any peak).
    """
    num_bins = spectrogram.shape[-1]
    if num_bins is None:
        raise ValueError("estimate_tuning needs a spectrogram with a known number of bins")
    spectrogram = tf.cast(spectrogram, tf.float32)[..., first_bin:]
    centre, below, above = spectrogram[..., 1:-1], spectrogram[..., :-2], spectrogram[..., 2:]
    real = tf.cast(frame_mask, tf.float32)[..., None] > 0.0
    peak = tf.logical_and(tf.logical_and(centre > below, centre >= above), real)
    # At a peak the curvature is negative (centre > below, centre >= above); elsewhere any negative
    # number keeps the division finite, and the vote's weight is 0.
    curvature = tf.where(peak, below - 2.0 * centre + above, -1.0)
    offset = 0.5 * (below - above) / curvature
    # Each bin's own phase, folded into [0, 2 pi) here in float64, plus the peak's offset: every constant
    # stays small, so a converter that stores constants in float16 (TFLite's float16 quantisation) moves a
    # phase by at most 0.002 rad rather than the 0.4 rad of 2 pi * 95 semitones.
    pitch = fmin_midi + np.arange(first_bin + 1, num_bins - 1) / bins_per_semitone
    bin_phase = tf.constant((2.0 * np.pi * (pitch - np.floor(pitch))).astype(np.float32))
    phase = bin_phase + (2.0 * np.pi / bins_per_semitone) * offset
    weight = tf.where(peak, centre, 0.0)
    x = tf.reduce_sum(weight * tf.cos(phase), axis=[-2, -1])
    y = tf.reduce_sum(weight * tf.sin(phase), axis=[-2, -1])
    return tf.math.atan2(y, x) / (2.0 * np.pi)


def song_tuning(spectrogram, config: FeatureConfig = FeatureConfig(), silence: float = SILENCE_THRESHOLD) -> float | None:
    """The tuning of a whole recording's [T, F] log-frequency spectrogram against A440, in semitones in
    (-0.5, 0.5]: `estimate_tuning` from `tuning_first_bin` up over its frames louder than `silence` (digital
    silence); None when no frame is."""
    spectrogram = np.asarray(spectrogram, dtype=np.float32)
    sounding = spectrogram.max(axis=-1, initial=0.0) > silence
    if not sounding.any():
        return None
    tuning = estimate_tuning(spectrogram[None], sounding[None].astype(np.float32), config.bins_per_semitone,
                             fmin_midi(config), tuning_first_bin(config))
    return float(tuning.numpy()[0])


def to_a440(spectrogram, frame_mask, bins_per_semitone: int, fmin_midi: float, first_bin: int,
            max_semitones: float) -> tf.Tensor:
    """Each [B, T, F] spectrogram moved by minus its `estimate_tuning` when that lies within `max_semitones`
    of A440 (beyond it, which semitone was meant is a guess, and the spectrogram stays as it is)."""
    tuning = estimate_tuning(spectrogram, frame_mask, bins_per_semitone, fmin_midi, first_bin)
    shift = tf.where(tf.abs(tuning) <= max_semitones, -tuning * bins_per_semitone, 0.0)
    return fractional_shift(tf.cast(spectrogram, tf.float32), shift[:, None, None])


def fractional_shift(spectrogram, bins) -> tf.Tensor:
    """Moves a spectrogram [..., F] up by `bins` (|bins| <= 1; a scalar or one per leading item, e.g. [B, 1, 1]),
    interpolating linearly between neighbouring bins; what leaves either edge is dropped, zeros come in."""
    spectrogram = tf.convert_to_tensor(spectrogram)
    bins = tf.cast(bins, spectrogram.dtype)
    # Constant paddings (a known rank): the exported models' converters take nothing looser.
    others = [[0, 0]] * (spectrogram.shape.rank - 1)
    up = tf.pad(spectrogram, others + [[1, 0]])[..., :-1]  # bin j takes bin j - 1
    down = tf.pad(spectrogram, others + [[0, 1]])[..., 1:]  # bin j takes bin j + 1
    neighbour = tf.where(bins >= 0.0, up, down)
    return (1.0 - tf.abs(bins)) * spectrogram + tf.abs(bins) * neighbour


def _fast_fft_length(minimum: tf.Tensor) -> tf.Tensor:
    """Smallest n >= minimum of the form 2**a * {8, 9, 10, 12, 14, 15} (int64).

    Such lengths have only the factors 2, 3, 5 and 7, which FFT libraries handle
    quickly; an arbitrary length can be 15x slower. At most 12.5% larger than needed.
    """
    minimum = tf.maximum(tf.cast(minimum, tf.int64), 16)
    exponent = tf.math.ceil(tf.math.log(tf.cast(minimum, tf.float64)) / math.log(2.0))
    step = tf.cast(2.0 ** (exponent - 4.0), tf.int64)
    candidates = step * tf.constant([9, 10, 12, 14, 15, 16], tf.int64)
    return tf.reduce_min(tf.where(candidates >= minimum, candidates, candidates[-1]))


def _gcd(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    _, gcd = tf.while_loop(lambda x, y: tf.not_equal(x, 0), lambda x, y: (tf.math.floormod(y, x), x), (b, a))
    return gcd


def resample(audio, orig_rate, target_rate) -> tf.Tensor:
    """Band-limited resampling along the last axis, in TF ops.

    FFT based: the whole signal is transformed once, its spectrum truncated (or
    zero-extended) to the new Nyquist frequency and transformed back. Identity when
    the rates are equal.

    Args:
        audio: float32 [samples] or [batch, samples].
        orig_rate: Sample rate of `audio`; a Python int or an integer scalar tensor
            (e.g. the SavedModel's `sample_rate` input).
        target_rate: Sample rate wanted (Python int or integer scalar tensor).

    Returns:
        float32 [..., round(samples * target_rate / orig_rate)].
    """
    audio = tf.convert_to_tensor(audio, dtype=tf.float32)
    if isinstance(orig_rate, (int, np.integer)) and isinstance(target_rate, (int, np.integer)):
        if orig_rate <= 0 or target_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {orig_rate} and {target_rate}")
        if orig_rate == target_rate:
            return audio
    orig = tf.cast(orig_rate, tf.int64)
    target = tf.cast(target_rate, tf.int64)
    tf.debugging.assert_positive(orig, message="orig_rate must be positive")
    tf.debugging.assert_positive(target, message="target_rate must be positive")
    resampled = tf.cond(
        tf.equal(orig, target), lambda: tf.identity(audio), lambda: _fft_resample(audio, orig, target)
    )
    if audio.shape.rank is not None:
        resampled.set_shape(audio.shape[:-1].concatenate([None]))
    return resampled


def _fft_resample(audio: tf.Tensor, orig: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    shape = tf.shape(audio, out_type=tf.int64)
    num_samples = shape[-1]
    signals = tf.reshape(audio, tf.stack([tf.reduce_prod(shape[:-1]), num_samples]))
    # Transform lengths in the exact ratio target/orig (both multiples of the reduced
    # rates), with a smooth number of such blocks so that both FFTs are fast.
    gcd = _gcd(orig, target)
    orig_block, target_block = orig // gcd, target // gcd
    blocks = _fast_fft_length(-(-(num_samples + _RESAMPLE_MARGIN) // orig_block))
    in_length, out_length = blocks * orig_block, blocks * target_block
    padded = tf.pad(signals, tf.stack([tf.zeros([2], tf.int64), tf.stack([0, in_length - num_samples])]))
    spectrum = tf.signal.rfft(padded, tf.cast(tf.reshape(in_length, [1]), tf.int32))
    out_bins = out_length // 2 + 1
    in_bins = in_length // 2 + 1
    spectrum = tf.pad(spectrum[:, :out_bins], [[0, 0], [0, tf.maximum(out_bins - in_bins, 0)]])
    resampled = tf.signal.irfft(spectrum, tf.cast(tf.reshape(out_length, [1]), tf.int32))
    resampled *= tf.cast(out_length, tf.float32) / tf.cast(in_length, tf.float32)
    num_out = (num_samples * target + orig // 2) // orig
    resampled = resampled[:, :num_out]
    return tf.reshape(resampled, tf.concat([shape[:-1], tf.reshape(num_out, [1])], axis=0))
