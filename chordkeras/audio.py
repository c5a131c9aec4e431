"""Audio files in: decode, mix to mono, resample to the feature sample rate."""

from __future__ import annotations

import os
import pathlib

import numpy as np
import soundfile
import tensorflow as tf

from chordkeras import features

# Formats tensorflow-io decodes here; anything else goes to soundfile. FLAC and Ogg Vorbis go to
# soundfile too: libsndfile decodes a 4-minute FLAC 3.4x faster than tensorflow-io (362x vs 106x
# real time on one core, benchmarks/features.py), and decoding is the slowest step of preparation.
_TFIO_SUFFIXES = {".wav", ".mp3"}
# WAV encodings tensorflow-io reads correctly. It reads 32-bit integer PCM as float32
# garbage and rejects 64-bit float and compressed WAV, so those go to soundfile.
_TFIO_WAV_SUBTYPES = {"PCM_U8", "PCM_16", "PCM_24", "FLOAT"}
# Full scale of tensorflow-io's integer outputs; 24-bit audio arrives left-aligned in int32.
_TFIO_INTEGER_SCALE = {np.dtype(np.int16): 2.0**-15, np.dtype(np.int32): 2.0**-31}


class AudioError(ValueError):
    """An audio file that cannot be used; the message names the file and the problem."""

    def __init__(self, path, problem: str):
        super().__init__(f"{os.fspath(path)}: {problem}")
        self.path = os.fspath(path)
        self.problem = problem


def load_audio(path, sample_rate: int) -> np.ndarray:
    """Decodes an audio file to float32 mono at `sample_rate`.

    Decoding uses tensorflow-io for wav, flac, ogg and mp3 and soundfile for what
    tensorflow-io cannot read. Channels are averaged. Resampling is
    `chordkeras.features.resample` (band-limited, FFT based), the same code the
    exported model runs, at several hundred times real time per core.

    Args:
        path: Audio file.
        sample_rate: Sample rate of the returned signal.

    Returns:
        float32 [samples] in [-1, 1] for integer formats.

    Raises:
        AudioError: If the file is missing, unreadable, empty, has no samples or
            has non-finite samples.
    """
    samples, rate = _decode(path)
    if samples.shape[0] == 0:
        raise AudioError(path, "contains no samples (zero length)")
    channels = samples.shape[1]
    # A matrix-vector product mixes down far faster than mean() over a short axis.
    mono = samples[:, 0] if channels == 1 else samples @ np.full(channels, 1.0 / channels, np.float32)
    bad = np.count_nonzero(~np.isfinite(mono))
    if bad:
        raise AudioError(path, f"{bad} of {mono.size} samples are not finite (NaN or infinity)")
    if rate != sample_rate:
        mono = features.resample(mono, int(rate), int(sample_rate)).numpy()
    return np.ascontiguousarray(mono, dtype=np.float32)


def audio_duration(path) -> float:
    """Duration in seconds, read from the file header where the format allows.

    Raises:
        AudioError: If the file is missing or unreadable.
    """
    _check_file(path)
    try:
        info = soundfile.info(os.fspath(path))
        return info.frames / info.samplerate
    except RuntimeError:
        pass
    try:
        import tensorflow_io as tfio

        tensor = tfio.audio.AudioIOTensor(os.fspath(path))
        return int(tensor.shape[0]) / int(tensor.rate)
    except tf.errors.OpError as error:
        raise AudioError(path, f"unreadable audio ({error.message.splitlines()[-1]})") from None


def _check_file(path) -> None:
    path = pathlib.Path(path)
    if not path.is_file():
        raise AudioError(path, "file not found")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")


def _decode(path) -> tuple[np.ndarray, int]:
    """Returns float32 [samples, channels] and the file's sample rate."""
    _check_file(path)
    if _tfio_can_read(path):
        try:
            return _decode_tfio(path)
        except tf.errors.OpError:
            pass  # soundfile may still read it; its error is the one reported
    try:
        samples, rate = soundfile.read(os.fspath(path), dtype="float32", always_2d=True)
    except RuntimeError as error:  # soundfile's LibsndfileError
        raise AudioError(path, f"unreadable audio ({error})") from None
    return samples, int(rate)


def _tfio_can_read(path) -> bool:
    suffix = pathlib.Path(path).suffix.lower()
    if suffix not in _TFIO_SUFFIXES:
        return False
    if suffix != ".wav":
        return True
    try:
        return soundfile.info(os.fspath(path)).subtype in _TFIO_WAV_SUBTYPES
    except RuntimeError:
        return True


def _decode_tfio(path) -> tuple[np.ndarray, int]:
    import tensorflow_io as tfio  # its ops load on first use; keep `import chordkeras.audio` light

    tensor = tfio.audio.AudioIOTensor(os.fspath(path))
    rate = int(tensor.rate)
    samples = tensor.to_tensor().numpy()
    if samples.dtype == np.uint8:
        return (samples.astype(np.float32) - 128.0) / 128.0, rate
    scale = _TFIO_INTEGER_SCALE.get(samples.dtype)
    samples = samples.astype(np.float32, copy=False)
    if scale is not None:
        samples *= np.float32(scale)
    return samples, rate
