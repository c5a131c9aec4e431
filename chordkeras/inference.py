"""Inference with a trained model: the transcriber, its analysis windows and its two backends.

`load_chord_model` opens an export folder (saved_model/, model.keras, model_card.json) or a `.keras`
file and returns a `Transcriber`. Audio of any length is read span by span (`chordkeras.audio`):
features are computed in chunks with enough context to match the whole-song spectrogram, and the
network runs over overlapping windows stitched at frame level (each frame taken from the window in
which it lies farthest from an edge), so memory stays bounded. `transcribe` turns audio into chord
segments; `evaluate_model_on_records` and `sweep_self_transition` score a model on the stored
spectrograms of a prepared split. `python -m chordkeras.predict` and `python -m chordkeras.evaluate`
are the command lines over this module.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import sys
from typing import Any, Iterable, Sequence

import keras
import numpy as np
import tensorflow as tf

from chordkeras import decode as decode_lib
from chordkeras import features as features_lib
from chordkeras import files, formats, records, scoring, startup, vocab
from chordkeras import model as model_lib  # noqa: F401  (registers the layers `.keras` files hold)
from chordkeras.annotations import Segment
from chordkeras.audio import ArraySource, AudioSource, open_audio
from chordkeras.config import FeatureConfig, check_features_match, feature_config_from_dict
from chordkeras.export import KERAS_FILE, MODEL_CARD, SAVED_MODEL

DEFAULT_SELF_TRANSITION = decode_lib.DEFAULT_SELF_TRANSITION
# Network windows: the Keras backend batches many short windows (see KerasTranscriber); the
# SavedModel takes one window per call, so longer ones pay less per-call overhead. The overlap
# gives each kept frame at least half of it as context on both sides.
DEFAULT_WINDOW_SECONDS = {"keras": 30.0, "saved_model": 60.0, "tflite": 60.0, "onnx": 60.0,
                          "coreml": formats.DEFAULT_COREML_WINDOW_SECONDS}
DEFAULT_OVERLAP_SECONDS = 5.0
# Frames per network call (bounds the memory of the activations).
MAX_BATCH_FRAMES = 4096
# Audio analysed per feature step (small enough for the STFT frames of the longest window to stay
# in cache), and the context read on both sides of a chunk for the resampler.
FEATURE_CHUNK_SECONDS = 30.0
RESAMPLER_CONTEXT_SECONDS = 1.0


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

    def num_samples(self, source: AudioSource) -> int:
        """Length of a whole source resampled to the model's rate."""
        return (source.num_samples * self.features.sample_rate + source.sample_rate // 2) // source.sample_rate

    def num_frames(self, source: AudioSource) -> int:
        """Frames of a whole source: its length resampled to the model's rate, then centred frames."""
        return self.features.num_frames(self.num_samples(source))

    def _read_frames(self, source: AudioSource, first: int, stop: int) -> np.ndarray:
        """Source samples under frames [first, stop): model-rate samples [first, stop) * hop."""
        scale = self.features.hop_length * source.sample_rate / self.features.sample_rate
        return source.read(round(first * scale), min(round(stop * scale), source.num_samples))

    def source_spectrogram(self, source: AudioSource) -> np.ndarray:
        """The log-frequency spectrogram float32 [frames, n_bins] of a source, chunk by chunk.

        Each chunk is read with a margin of context on both sides (the longest STFT window and a
        second for the resampler), so the result matches the whole-song spectrogram.
        """
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
        self._loaded = tf.saved_model.load(str(path / SAVED_MODEL))  # keep a reference: signatures need it
        self._serve = self._loaded.signatures["serving_default"]

    def source_probabilities(self, source, with_spectrogram=False):
        total = self.num_frames(source)
        probs = np.zeros((total, len(self.class_names)), dtype=np.float32)
        for w in plan_windows(total, self.window_frames, self.overlap_frames):
            chunk = self._read_frames(source, w.start, w.start + w.length)
            out = self._serve(audio=tf.constant(chunk), sample_rate=tf.constant(source.sample_rate, tf.int32))
            lo, hi = w.keep_start - w.start, w.keep_stop - w.start
            probs[w.keep_start : w.keep_stop] = _fit_frames(out["probabilities"].numpy(), hi)[lo:hi]
        spectrogram = self.source_spectrogram(source) if with_spectrogram else None
        return probs, self.frame_times(total), spectrogram


class FormatTranscriber(Transcriber):
    """A TensorFlow Lite, ONNX or Core ML file written by `chordkeras.export`: audio at the model's rate in,
    probabilities out (features in the model).

    Audio at another rate is resampled here, window by window with a second of context on both sides
    (`chordkeras.features.resample`, as the SavedModel does inside). Core ML takes a fixed window:
    shorter windows are zero-padded at the end.
    """

    def __init__(self, path, card, window_seconds, overlap_seconds, fmt: str, quantize: str):
        super().__init__(path, card, window_seconds, overlap_seconds)
        name = formats.file_name(fmt, quantize)
        entry = (card.get("formats") or {}).get(name)
        if entry is None or not (path / name).exists():
            option = "" if quantize == "none" else f" --quantize {quantize}"
            raise ValueError(f"{path}: no {name} (write it with: python -m chordkeras.export {path} --format {fmt}{option})")
        shape = entry["input"]["shape"]
        self.window_samples = shape[0] if isinstance(shape[0], int) else None
        if self.window_samples is not None:
            self.window_frames = min(self.window_frames, self.window_samples // self.features.hop_length)
            if self.window_frames <= self.overlap_frames:
                raise ValueError(f"{path / name}: its {self.window_samples}-sample window is not longer than the "
                                 f"{self.overlap_frames}-frame overlap; use a smaller --overlap-seconds")
        self.format_file = path / name
        self._runner = formats.load_runner(path / name, fmt, self.window_samples)

    @property
    def description(self) -> str:
        return f"{super().description}, {self.format_file.name}"

    def model_rate_audio(self, source: AudioSource, first: int, stop: int) -> np.ndarray:
        """Samples under frames [first, stop) at the model's rate, resampled with context when needed."""
        rate, hop = self.features.sample_rate, self.features.hop_length
        if source.sample_rate == rate:
            return self._read_frames(source, first, stop)
        margin = math.ceil(RESAMPLER_CONTEXT_SECONDS * self.features.frame_rate)
        read_first = max(0, first - margin)
        chunk = self._read_frames(source, read_first, stop + margin)
        resampled = features_lib.resample(chunk, source.sample_rate, rate).numpy()
        wanted = min((stop - first) * hop, self.num_samples(source) - first * hop)
        return resampled[(first - read_first) * hop:][: max(0, wanted)]

    def source_probabilities(self, source, with_spectrogram=False):
        total = self.num_frames(source)
        probs = np.zeros((total, len(self.class_names)), dtype=np.float32)
        for w in plan_windows(total, self.window_frames, self.overlap_frames):
            chunk = self.model_rate_audio(source, w.start, w.start + w.length)
            if self.window_samples is not None:
                chunk = np.pad(chunk, (0, max(0, self.window_samples - len(chunk))))[: self.window_samples]
            out = self._runner.run(chunk)
            lo, hi = w.keep_start - w.start, w.keep_stop - w.start
            probs[w.keep_start : w.keep_stop] = _fit_frames(out, hi)[lo:hi]
        spectrogram = self.source_spectrogram(source) if with_spectrogram else None
        return probs, self.frame_times(total), spectrogram


def read_model_card(path: str | os.PathLike) -> dict[str, Any]:
    """Reads an export's model_card.json (class names and feature config come from it)."""
    path = pathlib.Path(path)
    if not path.exists():
        raise ValueError(f"{path}: model card missing (class names and feature config are read from it)")
    return files.read_json(path)


BACKENDS = ("auto", "keras", "saved_model", *formats.FORMATS)


def load_chord_model(
    path: str | os.PathLike,
    backend: str = "auto",
    window_seconds: float | None = None,
    overlap_seconds: float = DEFAULT_OVERLAP_SECONDS,
    quantize: str = "none",
) -> Transcriber:
    """Loads an export folder or a `.keras` file.

    Args:
        path: Export folder (saved_model/, model.keras, model_card.json) or a `.keras` file with
            model_card.json in the same folder.
        backend: "keras" runs the .keras model on features computed here, batching many windows
            per call; "saved_model" runs the exported signature (features in the graph), one
            window per call. "auto": keras when a .keras model is there (the same numbers,
            several times faster), else saved_model. "tflite", "onnx", "coreml": the file
            `python -m chordkeras.export` wrote for that format (`chordkeras.formats`).
        window_seconds: Length of the network's analysis windows; default per backend
            (`DEFAULT_WINDOW_SECONDS`).
        overlap_seconds: Overlap between consecutive windows.
        quantize: Which file of a format backend: "none", "float16" or "int8".

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
    startup.spend_onednn_bool_notice()
    if backend == "keras":
        if not keras_file.is_file():
            raise ValueError(f"{path}: no {KERAS_FILE}")
        return KerasTranscriber(keras_file, card, window_seconds, overlap_seconds)
    if backend in formats.FORMATS:
        if not path.is_dir():
            raise ValueError(f"{path}: backend {backend!r} needs the export folder, not a .keras file")
        return FormatTranscriber(path, card, window_seconds, overlap_seconds, backend, quantize)
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
    tuning: float | None = None     # semitones against A440 (features.song_tuning), when asked for


def a4_hertz(tuning: float) -> float:
    """The frequency of A4 in a recording tuned `tuning` semitones off A440."""
    return 440.0 * 2.0 ** (tuning / 12.0)


def transcribe_source(
    model: Transcriber,
    source: AudioSource,
    decode: str = decode_lib.DEFAULT_METHOD,
    self_transition: float = DEFAULT_SELF_TRANSITION,
    with_spectrogram: bool = False,
    with_tuning: bool = False,
) -> Transcription:
    """Probabilities, decoded path and segments of one audio source; with `with_tuning`, also the whole
    recording's tuning (from its spectrogram, which only the keras backend computes anyway)."""
    probs, frame_times, spectrogram = model.source_probabilities(source, with_spectrogram or with_tuning)
    path = decode_lib.decode(probs, decode, self_transition, model.class_names)
    segments = decode_lib.frames_to_segments(path, probs, model.features.frame_rate, model.class_names, source.duration)
    tuning = features_lib.song_tuning(spectrogram, model.features) if with_tuning else None
    return Transcription(segments, probs, frame_times, source.duration, spectrogram if with_spectrogram else None,
                         tuning)


def transcribe(
    model: Transcriber | str | os.PathLike,
    audio: str | os.PathLike | np.ndarray,
    sample_rate: int | None = None,
    decode: str = decode_lib.DEFAULT_METHOD,
    self_transition: float = DEFAULT_SELF_TRANSITION,
) -> list[Segment]:
    """Chord segments of an audio file or array.

    Args:
        model: A loaded Transcriber, or a path for `load_chord_model`.
        audio: A file path (any format `chordkeras.audio.open_audio` reads), or samples
            ([samples] or [samples, channels]) with `sample_rate`.
        sample_rate: Rate of array input; ignored for files.
        decode: "family" (the default, `decode.family_viterbi`), "viterbi" or "argmax".
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


# ---------------------------------------------------------------------------------------------
# Scoring a model on a prepared split


def record_labels(chord: np.ndarray, root: np.ndarray, bass: np.ndarray) -> list[str]:
    """Harte labels of record frames: the large-vocabulary class name, with the bass as an inversion.

    Args:
        chord: Large-vocabulary classes [frames].
        root, bass: Pitch classes [frames] (12 = none), as stored in records.
    """
    large = vocab.get_vocabulary("large")
    labels = []
    for c, r, b in zip(chord.tolist(), root.tolist(), bass.tolist()):
        label = large.class_names[c]
        # Classes below the offset (N, X) have no root to invert over.
        if c >= large.offset and r != vocab.NO_CHORD and b != vocab.NO_CHORD and b != r:
            label = f"{label}/{vocab.DEGREE_NAMES[(b - r) % 12]}"
        labels.append(label)
    return labels


def evaluate_model_on_records(
    model_path: str | os.PathLike,
    records_dir: str | os.PathLike,
    split: str = "test",
    decode: str = decode_lib.DEFAULT_METHOD,
    self_transition: float | None = None,
    plot_dir: str | os.PathLike | None = None,
    error_metric: str = "majmin",
    progress: bool = True,
    top_confusions: int = 15,
) -> dict[str, Any]:
    """Runs a model on the stored spectrograms of a split and scores it against the records' labels.

    Args:
        model_path: Export folder or `.keras` file (the Keras model is used: records hold spectrograms).
        records_dir: A prepared dataset folder (tfrecords/<name>).
        split: Split to evaluate.
        decode: "family" (the default, `decode.family_viterbi`), "viterbi" or "argmax".
        self_transition: Viterbi self-transition; default `DEFAULT_SELF_TRANSITION`.
        plot_dir: When given, one PNG per song is written there.
        error_metric: Comparison that marks errors in the pictures.
        progress: Show a progress bar.
        top_confusions: Number of most frequent label confusions to list.

    Returns:
        `scoring.evaluate_pairs` output, plus "model", "records" and "split".

    Raises:
        ValueError: the dataset's feature config differs from the model's.
    """
    if self_transition is None:
        self_transition = DEFAULT_SELF_TRANSITION
    model = load_chord_model(model_path, backend="keras")
    pairs = []
    for song in _record_predictions(model, model_path, records_dir, split, progress):
        path = decode_lib.decode(song["probabilities"], decode, self_transition, model.class_names)
        estimate = decode_lib.frames_to_segments(
            path, song["probabilities"], song["frame_rate"], model.class_names, song["duration"]
        )
        pairs.append((song["song_id"], song["reference"], estimate))
        if plot_dir is not None:
            from chordkeras import plots  # matplotlib loads only when pictures are asked for

            plots.plot_song(
                pathlib.Path(plot_dir) / f"{song['song_id']}.png", estimate, song["spectrogram"], model.features,
                reference=song["reference"], duration=song["duration"],
                title=scoring.plot_title(song["song_id"], song["reference"], estimate, error_metric),
                error_metric=error_metric,
            )
    results = scoring.evaluate_pairs(pairs, top_confusions)
    results.update({"model": str(model_path), "records": str(records_dir), "split": split,
                    "decode": decode, "self_transition": self_transition if decode != "argmax" else None})
    return results


def _record_predictions(model, model_path, records_dir, split: str, progress: bool) -> Iterable[dict[str, Any]]:
    """Per song of a split: id, chord probabilities, reference segments, frame rate, duration, spectrogram."""
    from tqdm import tqdm

    info = records.read_dataset_info(records_dir)
    check_features_match(info["features"], model.features, f"{records_dir} vs {model_path}")
    songs_total = (info.get("splits") or {}).get(split, {}).get("songs")
    count = 0
    for song in tqdm(records.read_songs(records_dir, split), total=songs_total, unit="song", disable=not progress,
                     file=sys.stderr):
        frame_rate, duration = float(song["frame_rate"]), float(song["duration"])
        labels = record_labels(song["chord"], song["root"], song["bass"])
        names = sorted(set(labels))
        index = {name: i for i, name in enumerate(names)}
        reference = decode_lib.frames_to_segments([index[x] for x in labels], None, frame_rate, names, duration)
        count += 1
        yield {
            "song_id": song["song_id"],
            "probabilities": model.spectrogram_probabilities(song["spectrogram"]),
            "reference": reference,
            "frame_rate": frame_rate,
            "duration": duration,
            "spectrogram": song["spectrogram"],
        }
    if count == 0:
        raise ValueError(f"{records_dir}: split {split!r} holds no songs")


def sweep_self_transition(
    model_path: str | os.PathLike,
    records_dir: str | os.PathLike,
    split: str,
    values: Sequence[float],
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Set-level scores of the default decoding (`decode.DEFAULT_METHOD`) for several self-transition values
    (and argmax).

    The network runs once per song; only the decoding is repeated. Meant for choosing the
    default on a validation split.

    Returns:
        [{"decode": "argmax" or the default method, "self_transition": p or None, "overall": {metric: WCSR},
          "segments_per_minute": estimated segments per minute of audio}, ...], argmax first.
    """
    model = load_chord_model(model_path, backend="keras")
    songs = [
        {k: v for k, v in song.items() if k != "spectrogram"}
        for song in _record_predictions(model, model_path, records_dir, split, progress)
    ]
    minutes = sum(song["duration"] for song in songs) / 60.0
    rows = []
    for value in [None] + list(values):
        pairs, num_segments = [], 0
        for song in songs:
            probs = song["probabilities"]
            method = "argmax" if value is None else decode_lib.DEFAULT_METHOD
            path = decode_lib.decode(probs, method, value, model.class_names)
            estimate = decode_lib.frames_to_segments(path, probs, song["frame_rate"], model.class_names,
                                                     song["duration"])
            num_segments += len(estimate)
            pairs.append((song["song_id"], song["reference"], estimate))
        results = scoring.evaluate_pairs(pairs)
        rows.append({
            "decode": method,
            "self_transition": value,
            "overall": results["overall"],
            "segments_per_minute": num_segments / minutes if minutes > 0 else None,
        })
    return rows
