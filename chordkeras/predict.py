"""Chord transcription of audio files with a trained model.

    python -m chordkeras.predict MODEL AUDIO... [--out DIR] [--format lab|jams|csv]
        [--decode viterbi|argmax] [--self-transition P] [--plot]

MODEL is an export folder (saved_model/ + model_card.json: features are computed inside the graph)
or a `.keras` file with model_card.json next to it (features computed here with
`chordkeras.features`). Audio of any length is read and analysed in overlapping windows, so memory
stays bounded; window probabilities are stitched at frame level, each frame taken from the window
in which it lies farthest from an edge.
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
from typing import Any, Iterator, Sequence

import numpy as np

from chordkeras import decode as decode_lib
from chordkeras.annotations import Segment
from chordkeras.config import FeatureConfig, feature_config_from_dict

# A chord lasts about 2 s (20 frames): staying is far likelier than switching. Chosen on the
# validation songs of the built-in dataset (see the README's decoding section).
DEFAULT_SELF_TRANSITION = 0.9
DEFAULT_WINDOW_SECONDS = 60.0
DEFAULT_OVERLAP_SECONDS = 5.0
# Windows analysed in one batch by the Keras backend (memory grows with it).
WINDOWS_PER_BATCH = 4
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
    """A file read through libsndfile (WAV, FLAC, OGG, MP3, AIFF, ...) with seeking."""

    def __init__(self, path: str | os.PathLike):
        import soundfile

        self._file = soundfile.SoundFile(os.fspath(path))
        self.sample_rate = int(self._file.samplerate)
        self.num_samples = int(self._file.frames)

    def read(self, start: int, stop: int) -> np.ndarray:
        start, stop = max(0, start), min(stop, self.num_samples)
        if stop <= start:
            return np.zeros(0, dtype=np.float32)
        self._file.seek(start)
        data = self._file.read(stop - start, dtype="float32", always_2d=True)
        return data.mean(axis=1, dtype=np.float32)

    def close(self) -> None:
        self._file.close()


def open_audio(path: str | os.PathLike, fallback_rate: int) -> AudioSource:
    """Opens a file for span reads; formats libsndfile cannot read are decoded whole by
    `chordkeras.audio.load_audio` at `fallback_rate`."""
    import soundfile

    try:
        return SoundFileSource(path)
    except (soundfile.LibsndfileError, RuntimeError, TypeError):
        from chordkeras import audio

        return ArraySource(audio.load_audio(os.fspath(path), fallback_rate), fallback_rate)


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


class ChordModel:
    """A trained chord model with one interface for both saved formats.

    Attributes:
        class_names: Harte label of every output class.
        features: The FeatureConfig the model was trained with.
        card: The model card (dict).
        path: Where the model was loaded from.
    """

    def __init__(self, path: pathlib.Path, card: dict[str, Any], window_seconds: float, overlap_seconds: float):
        self.path = path
        self.card = card
        self.class_names: list[str] = list(card["class_names"])
        self.features: FeatureConfig = feature_config_from_dict(card["features"])
        frame_rate = self.features.frame_rate
        self.window_frames = max(2, int(round(window_seconds * frame_rate)))
        self.overlap_frames = int(round(overlap_seconds * frame_rate))

    @property
    def description(self) -> str:
        config = self.card.get("config") or {}
        architecture = (config.get("model") or {}).get("architecture", "model")
        return f"chordkeras {architecture} ({self.card.get('vocabulary', '?')} vocabulary)"

    def num_frames(self, source: AudioSource) -> int:
        """Frames the model gives for a whole source: the resampled length, then centred frames."""
        resampled = (source.num_samples * self.features.sample_rate + source.sample_rate // 2) // source.sample_rate
        return self.features.num_frames(resampled)

    def _chunks(self, source: AudioSource, windows: Sequence[Window]) -> Iterator[np.ndarray]:
        """The source samples under each window (frames start .. start + length)."""
        hop, model_rate, rate = self.features.hop_length, self.features.sample_rate, source.sample_rate
        for w in windows:
            first = round(w.start * hop * rate / model_rate)
            last = round((w.start + w.length) * hop * rate / model_rate)
            yield source.read(first, min(last, source.num_samples))

    def source_probabilities(
        self, source: AudioSource, with_spectrogram: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Chord probabilities of a whole source, window by window.

        Returns:
            probabilities float32 [frames, classes], frame_times float64 [frames] (seconds),
            and the spectrogram float32 [frames, n_bins] when asked for (else None).
        """
        total = self.num_frames(source)
        windows = plan_windows(total, self.window_frames, self.overlap_frames)
        probs = np.zeros((total, len(self.class_names)), dtype=np.float32)
        spectrogram = np.zeros((total, self.features.n_bins), dtype=np.float32) if with_spectrogram else None
        for batch_windows, outputs in self._analyse(source, windows, with_spectrogram):
            for w, (window_probs, window_spec) in zip(batch_windows, outputs):
                lo, hi = w.keep_start - w.start, w.keep_stop - w.start
                probs[w.keep_start : w.keep_stop] = _fit_frames(window_probs, hi)[lo:hi]
                if spectrogram is not None:
                    spectrogram[w.keep_start : w.keep_stop] = _fit_frames(window_spec, hi)[lo:hi]
        frame_times = np.arange(total, dtype=np.float64) / self.features.frame_rate
        return probs, frame_times, spectrogram

    def probabilities(self, audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
        """Chord probabilities of in-memory audio (any rate, mono or stereo).

        Returns:
            probabilities float32 [frames, classes] and frame_times float64 [frames] in seconds.
        """
        probs, frame_times, _ = self.source_probabilities(ArraySource(audio, sample_rate))
        return probs, frame_times

    def _analyse(self, source, windows, with_spectrogram):
        """Yields (windows, [(probabilities, spectrogram or None), ...]) batch by batch."""
        raise NotImplementedError


def _fit_frames(values: np.ndarray, frames: int) -> np.ndarray:
    """Pads (repeating the last row) or trims to `frames` rows; resampling rounding can differ by one."""
    if len(values) >= frames:
        return values
    if len(values) == 0:
        raise ValueError("the model returned no frames for a window")
    return np.concatenate([values, np.repeat(values[-1:], frames - len(values), axis=0)])


class KerasChordModel(ChordModel):
    """A `.keras` model (spectrogram in, logits dict out); features are computed here in TF."""

    def __init__(self, path, card, window_seconds, overlap_seconds):
        super().__init__(path, card, window_seconds, overlap_seconds)
        import keras
        import tensorflow as tf

        from chordkeras import features as features_lib

        try:  # registers the custom layers and model class for deserialisation
            import chordkeras.model  # noqa: F401
        except ImportError:
            pass
        self.keras_model = keras.saving.load_model(str(path), compile=False)
        config = self.features
        n_bins = config.n_bins

        @tf.function(input_signature=[tf.TensorSpec([None, None, n_bins], tf.float32)])
        def from_spectrogram(spectrogram):
            logits = self.keras_model(spectrogram, training=False)["chord"]
            return tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32), tf.TensorSpec([], tf.int32)])
        def from_audio(audio, sample_rate):
            audio = features_lib.resample(audio, sample_rate, config.sample_rate)
            spectrogram = features_lib.log_spectrogram(audio, config)
            return from_spectrogram(spectrogram), spectrogram

        self._from_spectrogram = from_spectrogram
        self._from_audio = from_audio

    def _analyse(self, source, windows, with_spectrogram):
        chunks = self._chunks(source, windows)
        for i in range(0, len(windows), WINDOWS_PER_BATCH):
            batch_windows = windows[i : i + WINDOWS_PER_BATCH]
            batch = [next(chunks) for _ in batch_windows]
            width = max(len(c) for c in batch)
            # Zero padding only ever extends the song's last window past its end (discarded frames).
            audio = np.zeros((len(batch), width), dtype=np.float32)
            for row, chunk in enumerate(batch):
                audio[row, : len(chunk)] = chunk
            probs, spectrogram = self._from_audio(audio, np.int32(source.sample_rate))
            probs, spectrogram = probs.numpy(), spectrogram.numpy()
            yield batch_windows, [(probs[r], spectrogram[r] if with_spectrogram else None) for r in range(len(batch))]

    def spectrogram_probabilities(self, spectrogram: np.ndarray) -> np.ndarray:
        """Chord probabilities float32 [frames, classes] of a precomputed [frames, n_bins] spectrogram."""
        spectrogram = np.asarray(spectrogram, dtype=np.float32)
        total = len(spectrogram)
        windows = plan_windows(total, self.window_frames, self.overlap_frames)
        probs = np.zeros((total, len(self.class_names)), dtype=np.float32)
        for i in range(0, len(windows), WINDOWS_PER_BATCH):
            batch_windows = windows[i : i + WINDOWS_PER_BATCH]
            batch = np.stack([spectrogram[w.start : w.start + w.length] for w in batch_windows])
            out = self._from_spectrogram(batch).numpy()
            for w, window_probs in zip(batch_windows, out):
                probs[w.keep_start : w.keep_stop] = window_probs[w.keep_start - w.start : w.keep_stop - w.start]
        return probs


class SavedModelChordModel(ChordModel):
    """The exported SavedModel: audio and sample rate in, probabilities out (features in the graph)."""

    def __init__(self, path, card, window_seconds, overlap_seconds):
        super().__init__(path, card, window_seconds, overlap_seconds)
        import tensorflow as tf

        self._tf = tf
        self._loaded = tf.saved_model.load(str(path / SAVED_MODEL))  # keep a reference: signatures need it
        self._serve = self._loaded.signatures["serving_default"]
        self._spectrogram_fn = None

    def _spectrogram(self, chunk: np.ndarray, sample_rate: int) -> np.ndarray:
        # Only for pictures: the SavedModel does not return its spectrogram.
        if self._spectrogram_fn is None:
            tf = self._tf
            from chordkeras import features as features_lib

            config = self.features

            @tf.function(input_signature=[tf.TensorSpec([None], tf.float32), tf.TensorSpec([], tf.int32)])
            def spectrogram_fn(audio, rate):
                return features_lib.log_spectrogram(features_lib.resample(audio, rate, config.sample_rate), config)

            self._spectrogram_fn = spectrogram_fn
        return self._spectrogram_fn(chunk, np.int32(sample_rate)).numpy()

    def _analyse(self, source, windows, with_spectrogram):
        tf = self._tf
        for w, chunk in zip(windows, self._chunks(source, windows)):
            out = self._serve(audio=tf.constant(chunk), sample_rate=tf.constant(source.sample_rate, tf.int32))
            spectrogram = self._spectrogram(chunk, source.sample_rate) if with_spectrogram else None
            yield [w], [(out["probabilities"].numpy(), spectrogram)]


def read_model_card(path: str | os.PathLike) -> dict[str, Any]:
    path = pathlib.Path(path)
    if not path.exists():
        raise ValueError(f"{path}: model card missing (class names and feature config are read from it)")
    return json.loads(path.read_text(encoding="utf-8"))


def load_chord_model(
    path: str | os.PathLike,
    backend: str | None = None,
    window_seconds: float = DEFAULT_WINDOW_SECONDS,
    overlap_seconds: float = DEFAULT_OVERLAP_SECONDS,
) -> ChordModel:
    """Loads an export folder or a `.keras` file.

    Args:
        path: Export folder (saved_model/, model.keras, model_card.json) or a `.keras` file with
            model_card.json in the same folder.
        backend: "saved_model" or "keras"; default: saved_model for a folder, keras for a file.
        window_seconds: Length of the analysis windows.
        overlap_seconds: Overlap between consecutive windows.

    Returns:
        A ChordModel with `.probabilities(audio, sample_rate) -> (probs, frame_times)`.
    """
    path = pathlib.Path(path)
    if path.is_dir():
        card = read_model_card(path / MODEL_CARD)
        backend = backend or "saved_model"
        if backend == "saved_model":
            if not (path / SAVED_MODEL).is_dir():
                raise ValueError(f"{path}: no {SAVED_MODEL}/ folder (is this an export folder?)")
            return SavedModelChordModel(path, card, window_seconds, overlap_seconds)
        if backend == "keras":
            return KerasChordModel(path / KERAS_FILE, card, window_seconds, overlap_seconds)
    elif path.suffix == ".keras" and path.is_file():
        card = read_model_card(path.with_name(MODEL_CARD))
        if backend in (None, "keras"):
            return KerasChordModel(path, card, window_seconds, overlap_seconds)
        raise ValueError(f"{path}: a .keras file has no SavedModel; use backend='keras'")
    else:
        raise ValueError(f"{path}: neither an export folder nor a .keras file")
    raise ValueError(f"unknown backend {backend!r}; choose saved_model or keras")


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
    model: ChordModel,
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
    model: ChordModel | str | os.PathLike,
    audio: str | os.PathLike | np.ndarray,
    sample_rate: int | None = None,
    decode: str = "viterbi",
    self_transition: float = DEFAULT_SELF_TRANSITION,
) -> list[Segment]:
    """Chord segments of an audio file or array.

    Args:
        model: A loaded ChordModel, or a path for `load_chord_model`.
        audio: A file path (any format `chordkeras.audio.load_audio` reads), or samples
            ([samples] or [samples, channels]) with `sample_rate`.
        sample_rate: Rate of array input; ignored for files.
        decode: "viterbi" or "argmax".
        self_transition: Viterbi self-transition probability.

    Returns:
        Segments (start, end, Harte label, confidence) covering [0, duration].
    """
    if not isinstance(model, ChordModel):
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

    A file gives `<out_dir>/<stem>.<fmt>` (next to the audio without --out); a folder gives one
    output per audio file below it, at the same relative path under `out_dir` (or next to each file).

    Raises:
        ValueError: a missing input, a folder without audio, or two inputs mapping to one output.
    """
    from chordkeras.preparation import AUDIO_EXTENSIONS

    out = pathlib.Path(out_dir) if out_dir is not None else None
    pairs = []
    for item in inputs:
        item = pathlib.Path(item)
        if item.is_dir():
            files = sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
            if not files:
                raise ValueError(f"{item}: no audio files ({', '.join(AUDIO_EXTENSIONS)})")
            for f in files:
                target = (out / f.relative_to(item)) if out is not None else f
                pairs.append((f, target.with_suffix(f".{fmt}")))
        elif item.is_file():
            target = (out / item.name) if out is not None else item
            pairs.append((item, target.with_suffix(f".{fmt}")))
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
    parser.add_argument("model", help="export folder (saved_model/ + model_card.json) or a .keras file")
    parser.add_argument("audio", nargs="+", help="audio files or folders (searched recursively)")
    parser.add_argument("--out", help="output folder (default: next to each audio file)")
    parser.add_argument("--format", choices=OUTPUT_FORMATS, default="lab", help="output format (default lab)")
    parser.add_argument("--decode", choices=("viterbi", "argmax"), default="viterbi")
    parser.add_argument("--self-transition", type=float, default=DEFAULT_SELF_TRANSITION,
                        help=f"Viterbi probability of staying on a chord per frame (default {DEFAULT_SELF_TRANSITION})")
    parser.add_argument("--plot", action="store_true", help="also write a PNG per song next to its output")
    parser.add_argument("--window-seconds", type=float, default=DEFAULT_WINDOW_SECONDS,
                        help="analysis window length (bounds memory)")
    parser.add_argument("--overlap-seconds", type=float, default=DEFAULT_OVERLAP_SECONDS)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if not 0.0 < args.self_transition < 1.0:
        parser.error("--self-transition must be in (0, 1)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    from tqdm import tqdm

    from chordkeras import __version__

    try:
        pairs = plan_outputs(args.audio, args.out, args.format)
    except ValueError as e:
        print(f"chordkeras.predict: {e}", file=sys.stderr)
        return 2
    model = load_chord_model(args.model, window_seconds=args.window_seconds, overlap_seconds=args.overlap_seconds)
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
        except Exception as e:  # noqa: BLE001 - reported per file, the batch goes on
            failures.append((audio_path, f"{type(e).__name__}: {e}"))
            continue
        try:
            result = transcribe_source(model, source, args.decode, args.self_transition, with_spectrogram=args.plot)
        finally:
            source.close()
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
