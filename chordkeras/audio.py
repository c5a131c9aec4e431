"""Audio files in: decode, mix to mono, resample to the feature sample rate.

`load_audio` decodes a whole file (preparation); `open_audio` gives an `AudioSource` that reads any
span of a file without loading all of it (transcription of songs of any length).
"""

from __future__ import annotations

import os
import pathlib
import threading

import numpy as np
import soundfile
import tensorflow as tf

from chordkeras import features

# Audio files that folders are searched for (preparation, transcription, evaluation plots).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
# Formats tensorflow-io decodes here; anything else (FLAC, Ogg Vorbis, AIFF, ...) goes to
# soundfile (libsndfile), which reads those formats itself.
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

    Decoding uses tensorflow-io for MP3 and the WAV encodings it reads correctly, and
    soundfile (libsndfile) for everything else. Channels are averaged. Resampling is
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


# ---------------------------------------------------------------------------------------------
# Span reads: any part of a file, mixed to mono, without loading the whole file


class AudioSource:
    """Mono float32 audio that can be read span by span.

    Attributes:
        sample_rate: Samples per second.
        num_samples: Length in samples.
    """

    sample_rate: int
    num_samples: int

    @property
    def duration(self) -> float:
        return self.num_samples / self.sample_rate

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop) as float32 mono."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class ArraySource(AudioSource):
    """Audio already in memory: [samples], [samples, channels] or [channels, samples] (<= 8 channels)."""

    def __init__(self, audio: np.ndarray, sample_rate: int):
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim == 2:
            channel_axis = 0 if audio.shape[0] <= 8 and audio.shape[1] > audio.shape[0] else 1
            audio = audio.mean(axis=channel_axis, dtype=np.float32)
        if audio.ndim != 1:
            raise ValueError(f"audio must be [samples] or [samples, channels], got shape {audio.shape}")
        if int(sample_rate) <= 0:
            raise ValueError(f"sample rate must be positive, got {sample_rate}")
        self.audio = audio
        self.sample_rate = int(sample_rate)
        self.num_samples = len(audio)

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.audio[max(0, start) : max(0, stop)]


class SoundFileSource(AudioSource):
    """A file decoded by libsndfile (WAV, FLAC, OGG, MP3, AIFF, ...), front to back.

    Reads must come in non-decreasing order of `start` (overlapping is fine): the file is decoded
    sequentially and only the samples a later read may still ask for are kept. libsndfile's MP3
    seeking is not sample-accurate, so the file is never seeked; a read that goes back before the
    kept samples starts decoding again from the beginning.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._file = None
        self._open()
        self.sample_rate = int(self._file.samplerate)
        self.num_samples = int(self._file.frames)

    def _open(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = soundfile.SoundFile(self.path)
        self._kept = np.zeros(0, dtype=np.float32)  # decoded samples from _kept_start on
        self._kept_start = 0

    def read(self, start: int, stop: int) -> np.ndarray:
        start, stop = max(0, start), min(stop, self.num_samples)
        if stop <= start:
            return np.zeros(0, dtype=np.float32)
        if start < self._kept_start:
            self._open()
        decoded_to = self._kept_start + len(self._kept)
        if stop > decoded_to:
            data = self._file.read(stop - decoded_to, dtype="float32", always_2d=True)
            mono = data.mean(axis=1, dtype=np.float32)
            if not np.all(np.isfinite(mono)):
                raise AudioError(self.path, f"non-finite samples (NaN or infinity) after sample {decoded_to}")
            self._kept = np.concatenate([self._kept, mono])
        # Drop what no later read (start non-decreasing) can ask for.
        drop = min(start - self._kept_start, len(self._kept))
        self._kept, self._kept_start = self._kept[drop:], self._kept_start + drop
        return self._kept[: stop - start].copy()

    def close(self) -> None:
        self._file.close()


class TfioMp3Source(AudioSource):
    """An MP3 file read span by span through tensorflow-io, whose MP3 slicing is sample-accurate.

    (libsndfile's MP3 decoding loses samples when a read ends inside an MP3 frame.)

    tensorflow-io's MP3 tensors share one decoder: every open tensor reads the file opened last, so a
    source kept open while another MP3 was opened would return that other file's samples. Each read
    therefore opens the file afresh (about 1.5 ms), under a lock shared by all MP3 sources.
    """

    _lock = threading.Lock()

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        with self._lock:
            tensor = self._open()
            self.sample_rate = int(tensor.rate)
            self.num_samples = int(tensor.shape[0])

    def _open(self):
        import tensorflow_io as tfio

        return tfio.audio.AudioIOTensor(self.path)

    def read(self, start: int, stop: int) -> np.ndarray:
        start, stop = max(0, start), min(stop, self.num_samples)
        if stop <= start:
            return np.zeros(0, dtype=np.float32)
        with self._lock:
            samples = self._open()[start:stop].numpy()
        mono = samples.astype(np.float32).mean(axis=1, dtype=np.float32)
        if not np.all(np.isfinite(mono)):
            raise AudioError(self.path, f"non-finite samples (NaN or infinity) between samples {start} and {stop}")
        return mono


def open_audio(path: str | os.PathLike, fallback_rate: int) -> AudioSource:
    """Opens a file for span reads.

    MP3 is read through tensorflow-io, other formats libsndfile reads (WAV, FLAC, OGG, AIFF, ...)
    through libsndfile, both span by span; anything else is decoded whole by `load_audio` at
    `fallback_rate`.

    Raises:
        AudioError: missing, unreadable or empty file.
    """
    if not os.path.isfile(path):
        raise AudioError(path, "file not found")
    try:
        if str(path).lower().endswith(".mp3"):
            source: AudioSource = TfioMp3Source(path)
        else:
            source = SoundFileSource(path)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, tf.errors.OpError):
        source = ArraySource(load_audio(os.fspath(path), fallback_rate), fallback_rate)
    if source.num_samples == 0:
        source.close()
        raise AudioError(path, "contains no samples (zero length)")
    return source
