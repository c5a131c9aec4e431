"""Chord transcription of audio files with a trained model.

    python -m chordkeras.predict MODEL AUDIO... [--out DIR] [--format lab|jams|csv]
        [--decode viterbi|argmax] [--self-transition P] [--plot]

MODEL is an export folder (saved_model/, model.keras, model_card.json) or a `.keras` file with
model_card.json next to it. Audio of any length is read span by span: features are computed in
chunks with enough context to match the whole-song spectrogram, and the network runs over
overlapping windows stitched at frame level (each frame taken from the window in which it lies
farthest from an edge), so memory stays bounded.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import pathlib
import sys
import time
from typing import Any, Sequence

import numpy as np

from chordkeras import decode as decode_lib
from chordkeras.annotations import Segment
from chordkeras.config import FeatureConfig, feature_config_from_dict

# A chord lasts about 2 s (20 frames at 10.8 frames/s), so staying is far likelier than switching:
# with 170 classes a switch then costs log(0.9 * 169 / 0.1) = 7.3 nats, which a real change earns
# back within a few confident frames while one-frame flickers do not.
DEFAULT_SELF_TRANSITION = 0.9
# Network windows: the Keras backend batches many short windows (see KerasTranscriber); the
# SavedModel takes one window per call, so longer ones pay less per-call overhead. The overlap
# gives each kept frame at least half of it as context on both sides.
DEFAULT_WINDOW_SECONDS = {"keras": 30.0, "saved_model": 60.0}
DEFAULT_OVERLAP_SECONDS = 5.0
# Frames per network call (bounds the memory of the activations).
MAX_BATCH_FRAMES = 4096
# Audio analysed per feature step (small enough for the STFT frames of the longest window to stay
# in cache: 30 s chunks run about twice as fast as whole 4-minute songs), and the context read on
# both sides of a chunk for the resampler.
FEATURE_CHUNK_SECONDS = 30.0
RESAMPLER_CONTEXT_SECONDS = 1.0
OUTPUT_FORMATS = ("lab", "jams", "csv")
MODEL_CARD = "model_card.json"
SAVED_MODEL = "saved_model"
KERAS_FILE = "model.keras"


# ---------------------------------------------------------------------------------------------
# Audio sources: read any span of a file, mixed to mono, without loading the whole file


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
        import soundfile

        if self._file is not None:
            self._file.close()
        self._file = soundfile.SoundFile(self.path)
        self._kept = np.zeros(0, dtype=np.float32)  # decoded samples from _kept_start on
        self._kept_start = 0

    def read(self, start: int, stop: int) -> np.ndarray:
        from chordkeras.audio import AudioError

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
    """

    def __init__(self, path: str | os.PathLike):
        import tensorflow_io as tfio

        self.path = os.fspath(path)
        self._tensor = tfio.audio.AudioIOTensor(self.path)
        self.sample_rate = int(self._tensor.rate)
        self.num_samples = int(self._tensor.shape[0])

    def read(self, start: int, stop: int) -> np.ndarray:
        from chordkeras.audio import AudioError

        start, stop = max(0, start), min(stop, self.num_samples)
        if stop <= start:
            return np.zeros(0, dtype=np.float32)
        mono = self._tensor[start:stop].numpy().astype(np.float32).mean(axis=1, dtype=np.float32)
        if not np.all(np.isfinite(mono)):
            raise AudioError(self.path, f"non-finite samples (NaN or infinity) between samples {start} and {stop}")
        return mono


def open_audio(path: str | os.PathLike, fallback_rate: int) -> AudioSource:
    """Opens a file for span reads.

    MP3 is read through tensorflow-io, other formats libsndfile reads (WAV, FLAC, OGG, AIFF, ...)
    through libsndfile, both span by span; anything else is decoded whole by
    `chordkeras.audio.load_audio` at `fallback_rate`.

    Raises:
        chordkeras.audio.AudioError: missing, unreadable or empty file.
    """
    import soundfile
    import tensorflow as tf

    from chordkeras import audio

    if not os.path.isfile(path):
        raise audio.AudioError(path, "file not found")
    try:
        if str(path).lower().endswith(".mp3"):
            source: AudioSource = TfioMp3Source(path)
        else:
            source = SoundFileSource(path)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, tf.errors.OpError):
        source = ArraySource(audio.load_audio(os.fspath(path), fallback_rate), fallback_rate)
    if source.num_samples == 0:
        source.close()
        raise audio.AudioError(path, "contains no samples (zero length)")
    return source


# ---------------------------------------------------------------------------------------------
# Windows


@dataclasses.dataclass(frozen=True)
class Window:
    """Frames [start, start + length) are analysed; frames [keep_start, keep_stop) are kept."""

    start: int
    length: int
    keep_start: int
    keep_stop: int


def plan_windows(num_frames: int, window_frames: int, overlap_frames: int) -> list[Window]:
    """Equal-length overlapping windows covering `num_frames`; each frame kept exactly once.

    The fewest windows of at most `window_frames` that overlap by at least `overlap_frames` are
    spread evenly; a frame is kept from the window whose edge is farthest away.
    """
    if window_frames <= overlap_frames:
        raise ValueError(f"window ({window_frames} frames) must be longer than the overlap ({overlap_frames})")
    if num_frames <= window_frames:
        return [Window(0, num_frames, 0, num_frames)]
    count = math.ceil((num_frames - overlap_frames) / (window_frames - overlap_frames))
    length = math.ceil((num_frames + (count - 1) * overlap_frames) / count)
    starts = [round(k * (num_frames - length) / (count - 1)) for k in range(count)]
    windows = []
    for k, start in enumerate(starts):
        keep_start = 0 if k == 0 else (start + starts[k - 1] + length) // 2
        keep_stop = num_frames if k == count - 1 else (starts[k + 1] + start + length) // 2
        windows.append(Window(start, length, keep_start, keep_stop))
    return windows


# ---------------------------------------------------------------------------------------------
# Models


class Transcriber:
    """A trained chord model ready for inference, with one interface for both saved formats.

    Attributes:
        class_names: Harte label of every output class.
        features: The FeatureConfig the model was trained with.
        card: The model card (dict).
        path: Where the model was loaded from.
        window_frames, overlap_frames: Analysis windows of the network.
    """

    def __init__(self, path: pathlib.Path, card: dict[str, Any], window_seconds: float, overlap_seconds: float):
        self.path = path
        self.card = card
        self.class_names: list[str] = list(card["class_names"])
        self.features: FeatureConfig = feature_config_from_dict(card["features"])
        frame_rate = self.features.frame_rate
        self.window_frames = max(2, int(round(window_seconds * frame_rate)))
        self.overlap_frames = int(round(overlap_seconds * frame_rate))
        self._spectrogram_fn = None

    @property
    def description(self) -> str:
        config = self.card.get("config") or {}
        architecture = (config.get("model") or {}).get("architecture", "model")
        return f"chordkeras {architecture} ({self.card.get('vocabulary', '?')} vocabulary)"

    def num_frames(self, source: AudioSource) -> int:
        """Frames of a whole source: its length resampled to the model's rate, then centred frames."""
        resampled = (source.num_samples * self.features.sample_rate + source.sample_rate // 2) // source.sample_rate
        return self.features.num_frames(resampled)

    def _read_frames(self, source: AudioSource, first: int, stop: int) -> np.ndarray:
        """Source samples under frames [first, stop): model-rate samples [first, stop) * hop."""
        scale = self.features.hop_length * source.sample_rate / self.features.sample_rate
        return source.read(round(first * scale), min(round(stop * scale), source.num_samples))

    def source_spectrogram(self, source: AudioSource) -> np.ndarray:
        """The log-frequency spectrogram float32 [frames, n_bins] of a source, chunk by chunk.

        Each chunk is read with a margin of context on both sides (the longest STFT window and a
        second for the resampler), so the result matches the whole-song spectrogram.
        """
        import tensorflow as tf

        from chordkeras import features as features_lib

        config = self.features
        if self._spectrogram_fn is None:

            @tf.function(input_signature=[tf.TensorSpec([None], tf.float32), tf.TensorSpec([], tf.int32)])
            def spectrogram_fn(audio, sample_rate):
                return features_lib.log_spectrogram(features_lib.resample(audio, sample_rate, config.sample_rate), config)

            self._spectrogram_fn = spectrogram_fn
        total = self.num_frames(source)
        margin = math.ceil(config.max_fft / 2 / config.hop_length)
        if source.sample_rate != config.sample_rate:
            margin += math.ceil(RESAMPLER_CONTEXT_SECONDS * config.frame_rate)
        chunk_frames = max(1, int(round(FEATURE_CHUNK_SECONDS * config.frame_rate)))
        spectrogram = np.empty((total, config.n_bins), dtype=np.float32)
        for first in range(0, total, chunk_frames):
            stop = min(total, first + chunk_frames)
            read_first, read_stop = max(0, first - margin), min(total, stop + margin)
            chunk = self._read_frames(source, read_first, read_stop)
            values = self._spectrogram_fn(chunk, np.int32(source.sample_rate)).numpy()
            spectrogram[first:stop] = _fit_frames(values, stop - read_first)[first - read_first : stop - read_first]
        return spectrogram

    def source_probabilities(
        self, source: AudioSource, with_spectrogram: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Chord probabilities of a whole source.

        Returns:
            probabilities float32 [frames, classes], frame_times float64 [frames] (seconds),
            and the spectrogram float32 [frames, n_bins] when asked for (else None).
        """
        raise NotImplementedError

    def probabilities(self, audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
        """Chord probabilities of in-memory audio (any rate, mono or stereo).

        Returns:
            probabilities float32 [frames, classes] and frame_times float64 [frames] in seconds.
        """
        probs, frame_times, _ = self.source_probabilities(ArraySource(audio, sample_rate))
        return probs, frame_times

    def frame_times(self, num_frames: int) -> np.ndarray:
        return np.arange(num_frames, dtype=np.float64) / self.features.frame_rate

    def warm_up(self) -> None:
        """Runs one second of silence through, so TF functions are traced before any timing."""
        rate = self.features.sample_rate
        self.source_probabilities(ArraySource(np.zeros(rate, dtype=np.float32), rate), with_spectrogram=True)


def _fit_frames(values: np.ndarray, frames: int) -> np.ndarray:
    """Pads (repeating the last row) or trims to `frames` rows; resampling rounding can differ by one."""
    if len(values) >= frames:
        return values[:frames]
    if len(values) == 0:
        raise ValueError("no frames computed for a chunk of audio")
    return np.concatenate([values, np.repeat(values[-1:], frames - len(values), axis=0)])


class KerasTranscriber(Transcriber):
    """A `.keras` model (spectrogram in, logits dict out).

    Features are computed here with `chordkeras.features` (the ops the SavedModel runs), in chunks;
    the network then sees short overlapping windows, many per batch: its recurrent layers run
    over a window's frames one after another, so a batch of short windows is far faster than one
    long sequence.
    """

    def __init__(self, path, card, window_seconds, overlap_seconds):
        super().__init__(path, card, window_seconds, overlap_seconds)
        import keras
        import tensorflow as tf

        import chordkeras.model  # noqa: F401  (registers the custom layers for deserialisation)

        self.keras_model = keras.saving.load_model(str(path), compile=False)

        @tf.function(input_signature=[tf.TensorSpec([None, None, self.features.n_bins], tf.float32)])
        def from_spectrogram(spectrogram):
            logits = self.keras_model(spectrogram, training=False)["chord"]
            return tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)

        self._from_spectrogram = from_spectrogram

    def source_probabilities(self, source, with_spectrogram=False):
        spectrogram = self.source_spectrogram(source)
        probs = self.spectrogram_probabilities(spectrogram)
        return probs, self.frame_times(len(probs)), spectrogram if with_spectrogram else None

    def spectrogram_probabilities(self, spectrogram: np.ndarray) -> np.ndarray:
        """Chord probabilities float32 [frames, classes] of a [frames, n_bins] spectrogram."""
        spectrogram = np.asarray(spectrogram, dtype=np.float32)
        total = len(spectrogram)
        windows = plan_windows(total, self.window_frames, self.overlap_frames)
        per_batch = max(1, MAX_BATCH_FRAMES // max(1, windows[0].length))
        probs = np.zeros((total, len(self.class_names)), dtype=np.float32)
        for i in range(0, len(windows), per_batch):
            batch_windows = windows[i : i + per_batch]
            batch = np.stack([spectrogram[w.start : w.start + w.length] for w in batch_windows])
            out = self._from_spectrogram(batch).numpy()
            for w, window_probs in zip(batch_windows, out):
                probs[w.keep_start : w.keep_stop] = window_probs[w.keep_start - w.start : w.keep_stop - w.start]
        return probs


class SavedModelTranscriber(Transcriber):
    """The exported SavedModel: audio and sample rate in, probabilities out (features in the graph).

    The signature takes one mono signal, so windows are analysed one call each.
    """

    def __init__(self, path, card, window_seconds, overlap_seconds):
        super().__init__(path, card, window_seconds, overlap_seconds)
        import tensorflow as tf

        self._tf = tf
        self._loaded = tf.saved_model.load(str(path / SAVED_MODEL))  # keep a reference: signatures need it
        self._serve = self._loaded.signatures["serving_default"]

    def source_probabilities(self, source, with_spectrogram=False):
        tf = self._tf
        total = self.num_frames(source)
        probs = np.zeros((total, len(self.class_names)), dtype=np.float32)
        for w in plan_windows(total, self.window_frames, self.overlap_frames):
            chunk = self._read_frames(source, w.start, w.start + w.length)
            out = self._serve(audio=tf.constant(chunk), sample_rate=tf.constant(source.sample_rate, tf.int32))
            lo, hi = w.keep_start - w.start, w.keep_stop - w.start
            probs[w.keep_start : w.keep_stop] = _fit_frames(out["probabilities"].numpy(), hi)[lo:hi]
        spectrogram = self.source_spectrogram(source) if with_spectrogram else None
        return probs, self.frame_times(total), spectrogram


def read_model_card(path: str | os.PathLike) -> dict[str, Any]:
    path = pathlib.Path(path)
    if not path.exists():
        raise ValueError(f"{path}: model card missing (class names and feature config are read from it)")
    return json.loads(path.read_text(encoding="utf-8"))


BACKENDS = ("auto", "keras", "saved_model")


def load_chord_model(
    path: str | os.PathLike,
    backend: str = "auto",
    window_seconds: float | None = None,
    overlap_seconds: float = DEFAULT_OVERLAP_SECONDS,
) -> Transcriber:
    """Loads an export folder or a `.keras` file.

    Args:
        path: Export folder (saved_model/, model.keras, model_card.json) or a `.keras` file with
            model_card.json in the same folder.
        backend: "keras" runs the .keras model on features computed here, batching many windows
            per call; "saved_model" runs the exported signature (features in the graph), one
            window per call. "auto": keras when a .keras model is there (the same numbers,
            several times faster), else saved_model.
        window_seconds: Length of the network's analysis windows; default per backend
            (`DEFAULT_WINDOW_SECONDS`).
        overlap_seconds: Overlap between consecutive windows.

    Returns:
        A Transcriber with `.probabilities(audio, sample_rate) -> (probs, frame_times)`.

    Raises:
        ValueError: not a model, missing model card, or a backend the files do not provide.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")
    path = pathlib.Path(path)
    if path.is_dir():
        card = read_model_card(path / MODEL_CARD)
        keras_file, saved_model = path / KERAS_FILE, path / SAVED_MODEL
    elif path.suffix == ".keras" and path.is_file():
        card = read_model_card(path.with_name(MODEL_CARD))
        keras_file, saved_model = path, None
    else:
        raise ValueError(f"{path}: neither an export folder nor a .keras file")
    if backend == "auto":
        backend = "keras" if keras_file.is_file() else "saved_model"
    if window_seconds is None:
        window_seconds = DEFAULT_WINDOW_SECONDS[backend]
    if backend == "keras":
        if not keras_file.is_file():
            raise ValueError(f"{path}: no {KERAS_FILE}")
        return KerasTranscriber(keras_file, card, window_seconds, overlap_seconds)
    if saved_model is None or not saved_model.is_dir():
        raise ValueError(f"{path}: no {SAVED_MODEL}/ folder (a .keras file needs backend 'keras')")
    return SavedModelTranscriber(path, card, window_seconds, overlap_seconds)


# ---------------------------------------------------------------------------------------------
# Transcription


@dataclasses.dataclass
class Transcription:
    """One transcribed recording."""

    segments: list[Segment]
    probabilities: np.ndarray
    frame_times: np.ndarray
    duration: float
    spectrogram: np.ndarray | None = None


def transcribe_source(
    model: Transcriber,
    source: AudioSource,
    decode: str = "viterbi",
    self_transition: float = DEFAULT_SELF_TRANSITION,
    with_spectrogram: bool = False,
) -> Transcription:
    """Probabilities, decoded path and segments of one audio source."""
    probs, frame_times, spectrogram = model.source_probabilities(source, with_spectrogram)
    path = decode_lib.decode(probs, decode, self_transition)
    segments = decode_lib.frames_to_segments(path, probs, model.features.frame_rate, model.class_names, source.duration)
    return Transcription(segments, probs, frame_times, source.duration, spectrogram)


def transcribe(
    model: Transcriber | str | os.PathLike,
    audio: str | os.PathLike | np.ndarray,
    sample_rate: int | None = None,
    decode: str = "viterbi",
    self_transition: float = DEFAULT_SELF_TRANSITION,
) -> list[Segment]:
    """Chord segments of an audio file or array.

    Args:
        model: A loaded Transcriber, or a path for `load_chord_model`.
        audio: A file path (any format `chordkeras.audio.load_audio` reads), or samples
            ([samples] or [samples, channels]) with `sample_rate`.
        sample_rate: Rate of array input; ignored for files.
        decode: "viterbi" or "argmax".
        self_transition: Viterbi self-transition probability.

    Returns:
        Segments (start, end, Harte label, confidence) covering [0, duration].
    """
    if not isinstance(model, Transcriber):
        model = load_chord_model(model)
    if isinstance(audio, (str, os.PathLike)):
        source = open_audio(audio, model.features.sample_rate)
    else:
        if sample_rate is None:
            raise ValueError("sample_rate is required for array input")
        source = ArraySource(audio, sample_rate)
    try:
        return transcribe_source(model, source, decode, self_transition).segments
    finally:
        source.close()


def write_segments(
    path: str | os.PathLike, segments: Sequence[Segment], fmt: str, duration: float,
    metadata: dict[str, Any] | None = None,
) -> None:
    """Writes segments as .lab, JAMS or CSV (start,end,label,confidence), atomically."""
    from chordkeras import annotations
    from chordkeras.evaluate import write_text_atomic

    if fmt == "lab":
        annotations.write_lab(path, segments)
    elif fmt == "jams":
        annotations.write_jams(path, segments, duration, metadata)
    elif fmt == "csv":
        lines = ["start,end,label,confidence\n"]
        for s in segments:
            confidence = "" if s.confidence is None else f"{s.confidence:.4f}"
            lines.append(f"{s.start:.6f},{s.end:.6f},{s.label},{confidence}\n")
        write_text_atomic(path, "".join(lines))
    else:
        raise ValueError(f"unknown output format {fmt!r}; choose from {OUTPUT_FORMATS}")


def plan_outputs(inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike | None, fmt: str) -> list[tuple[pathlib.Path, pathlib.Path]]:
    """(audio file, output file) pairs.

    A file gives `<out_dir>/<stem>.<fmt>`; a folder gives one output per audio file below it, at
    the same relative path under `out_dir`. Without `out_dir` each output goes next to its audio
    as `<stem>.chords.<fmt>`, so a reference annotation `<stem>.lab` beside it is never overwritten.

    Raises:
        ValueError: a missing input, a folder without audio, or two inputs mapping to one output.
    """
    from chordkeras.preparation import AUDIO_EXTENSIONS

    out = pathlib.Path(out_dir) if out_dir is not None else None
    suffix = f".{fmt}" if out is not None else f".chords.{fmt}"
    pairs = []
    for item in inputs:
        item = pathlib.Path(item)
        if item.is_dir():
            files = sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
            if not files:
                raise ValueError(f"{item}: no audio files ({', '.join(AUDIO_EXTENSIONS)})")
            for f in files:
                target = (out / f.relative_to(item)) if out is not None else f
                pairs.append((f, target.with_suffix(suffix)))
        elif item.is_file():
            target = (out / item.name) if out is not None else item
            pairs.append((item, target.with_suffix(suffix)))
        else:
            raise ValueError(f"{item}: no such file or folder")
    seen: dict[pathlib.Path, pathlib.Path] = {}
    for audio_path, target in pairs:
        if target in seen:
            raise ValueError(f"{audio_path} and {seen[target]} would both be written to {target}")
        seen[target] = audio_path
    return pairs


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m chordkeras.predict",
        description="Transcribe the chords of audio files with a trained chordkeras model.",
    )
    parser.add_argument("model", help="export folder (saved_model/, model.keras, model_card.json) or a .keras file "
                        "with model_card.json beside it")
    parser.add_argument("audio", nargs="+", help="audio files or folders (searched recursively)")
    parser.add_argument("--out", help="output folder (default: next to each audio file, as <stem>.chords.<format>)")
    parser.add_argument("--format", choices=OUTPUT_FORMATS, default="lab", help="output format (default lab)")
    parser.add_argument("--decode", choices=("viterbi", "argmax"), default="viterbi")
    parser.add_argument("--self-transition", type=float, default=DEFAULT_SELF_TRANSITION,
                        help=f"Viterbi probability of staying on a chord per frame (default {DEFAULT_SELF_TRANSITION})")
    parser.add_argument("--plot", action="store_true", help="also write a PNG per song next to its output")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="keras (batched windows, features computed here) or saved_model (the exported "
                        "signature); auto: keras when the model folder has model.keras")
    parser.add_argument("--window-seconds", type=float, default=None,
                        help="network analysis window (default: 30 for keras, 60 for saved_model)")
    parser.add_argument("--overlap-seconds", type=float, default=DEFAULT_OVERLAP_SECONDS,
                        help=f"overlap between windows (default {DEFAULT_OVERLAP_SECONDS})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if not 0.0 < args.self_transition < 1.0:
        parser.error("--self-transition must be in (0, 1)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    from tqdm import tqdm

    from chordkeras import __version__
    from chordkeras.audio import AudioError

    try:
        pairs = plan_outputs(args.audio, args.out, args.format)
    except ValueError as e:
        print(f"chordkeras.predict: {e}", file=sys.stderr)
        return 2
    try:
        model = load_chord_model(args.model, args.backend, args.window_seconds, args.overlap_seconds)
    except ValueError as e:
        print(f"chordkeras.predict: {e}", file=sys.stderr)
        return 2
    model.warm_up()
    metadata = {
        "model": model.description,
        "version": model.card.get("chordkeras_version", __version__),
        "model_path": str(model.path),
        "decode": args.decode,
        "self_transition": args.self_transition,
    }
    audio_seconds = busy_seconds = 0.0
    failures = []
    bar = tqdm(pairs, unit="song", disable=args.no_progress, file=sys.stderr)
    for audio_path, out_path in bar:
        started = time.perf_counter()
        try:
            source = open_audio(audio_path, model.features.sample_rate)
            try:
                result = transcribe_source(model, source, args.decode, args.self_transition, with_spectrogram=args.plot)
            finally:
                source.close()
        except AudioError as e:  # reported per file; the other files go on
            failures.append((audio_path, str(e)))
            continue
        out_path.parent.mkdir(parents=True, exist_ok=True)
        write_segments(out_path, result.segments, args.format, result.duration, dict(metadata))
        busy_seconds += time.perf_counter() - started
        audio_seconds += result.duration
        if args.plot:
            from chordkeras import plots

            plots.plot_song(out_path.with_suffix(".png"), result.segments, result.spectrogram, model.features,
                            duration=result.duration, title=str(audio_path.name))
        bar.set_postfix(realtime=f"{audio_seconds / max(busy_seconds, 1e-9):.0f}x")
    bar.close()
    done = len(pairs) - len(failures)
    print(
        f"chordkeras.predict: {done} file(s), {audio_seconds / 60:.1f} min of audio in {busy_seconds:.2f} s "
        f"({audio_seconds / max(busy_seconds, 1e-9):.0f}x real time, model loading excluded)",
        file=sys.stderr,
    )
    for audio_path, reason in failures:
        print(f"chordkeras.predict: failed {audio_path}: {reason}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
