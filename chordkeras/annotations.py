"""Chord annotations: `.lab` and `.jams` in and out, and frame-level label sampling.

Times are seconds. A segment covers the half-open interval [start, end); a frame takes the label
sounding at its centre time, 'N' where no segment covers it.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
from typing import Any, Iterable, Sequence

import numpy as np

from chordkeras import vocab
from chordkeras.files import write_text_atomic

CHORD_NAMESPACES = ("chord", "chord_harte")
# Differences of times up to this long are rounding in the source file: overlaps between consecutive
# segments (the later segment wins in `frame_labels`; longer overlaps mean a broken annotation and are
# refused), and an annotation ending this little after its audio (cut without a note, `fit_to_audio`).
ROUNDING_SECONDS = 0.01
# Formats `write_segments` writes.
OUTPUT_FORMATS = ("lab", "jams", "csv")
# How far annotated chords may run past the end of the audio and still be cut there (`fit_to_audio`).
# Chosen on a published collection against its usual audio: of 167 songs, 51 annotations end 0.5-28 s
# after the audio, most of them in a final N; the chords run past it by at most 1.8 s in all but
# three, whose audio is another edit (5.7, 24.8 and 28 s of chords missing).
END_TOLERANCE_SECONDS = 3.0


@dataclasses.dataclass(frozen=True)
class Segment:
    """One chord segment.

    Attributes:
        start: Onset in seconds.
        end: Offset in seconds (exclusive).
        label: Harte chord label.
        confidence: Optional score of an estimated segment (written to JAMS, not to .lab).
    """

    start: float
    end: float
    label: str
    confidence: float | None = None


class AnnotationError(ValueError):
    """An annotation file that cannot be used; the message names the file, the line and the problem.

    Attributes:
        path: The file.
        problem: What is wrong.
        line: 1-based line (.lab) or observation number (.jams), or None for the whole file.
    """

    def __init__(self, path: os.PathLike | str, problem: str, line: int | None = None):
        self.path, self.problem, self.line = os.fspath(path), problem, line
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {problem}")

    def __reduce__(self):
        # Pickled across worker processes during preparation; rebuild from the real fields.
        return type(self), (self.path, self.problem, self.line)


def load_annotation(path: os.PathLike | str, duration: float | None = None, *,
                    clip_before_zero: bool = False) -> list[Segment]:
    """Reads a `.lab` or `.jams` chord annotation.

    `.lab`: one segment per line, `start end label` separated by spaces or tabs; blank lines and
    lines starting with '#' are skipped. The 2-column variant `onset label` is also read: each
    segment ends at the next onset and the last one at `duration`.
    `.jams`: the first annotation in namespace 'chord' or 'chord_harte'.

    Args:
        path: Annotation file; the format follows the suffix (case-insensitive).
        duration: Audio length in seconds; needed only to end the last segment of a 2-column
            `.lab` (other formats carry their own end times and ignore it).
        clip_before_zero: Times before 0 become 0 and segments left without length are dropped
            (published annotations sometimes start a few milliseconds before their audio).
            Without it a negative time is an error.

    Returns:
        Segments in time order, each label valid Harte syntax.

    Raises:
        AnnotationError: unreadable or non-UTF-8 file, malformed line or label, negative (unless
            clipped) or decreasing times, end before start, overlapping segments, no segments, or
            a 2-column file without `duration`.
    """
    return _load(path, duration, clip_before_zero)[0]


def _load(path, duration: float | None, clip_before_zero: bool) -> tuple[list[Segment], float]:
    """The segments and the earliest time the file gives (negative when clipped)."""
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in (".lab", ".jams"):
        found = suffix or "(no suffix)"
        raise AnnotationError(path, f"unsupported annotation format {found!r}; expected .lab or .jams")
    text = _read_text(path)
    if suffix == ".lab":
        raw, unit = _parse_lab(path, text, duration, clip_before_zero), "line"
    else:
        raw, unit = _parse_jams(path, text, clip_before_zero), "observation"
    earliest = min((min(start, end) for _, start, end, _ in raw), default=0.0)
    if clip_before_zero:
        raw = [(number, max(start, 0.0), max(end, 0.0), label) for number, start, end, label in raw]
        raw = [r for r in raw if r[2] > 0.0]
    segments = _validated(path, raw, unit)
    if not segments:
        raise AnnotationError(path, "no chord segments")
    return segments, earliest


def fit_to_audio(path: os.PathLike | str, duration: float,
                 end_tolerance: float = END_TOLERANCE_SECONDS) -> tuple[list[Segment], list[str]]:
    """Reads an annotation of audio `duration` seconds long, cut to fit it as real annotations need.

    Published annotations and a listener's own copy of the recording rarely end at the same
    instant. Times before 0 are clipped to 0. What runs past the audio's end is cut there: 'N'
    (silence and fades) however long, chords up to `end_tolerance` seconds; chords annotated
    further past the end mean another edit of the recording, and the annotation is refused.

    Returns:
        (segments, notes): the cut segments, and one line per change made ([] when none).

    Raises:
        AnnotationError: as `load_annotation`, or chords running more than `end_tolerance`
            seconds past the audio's end.
    """
    if not (math.isfinite(end_tolerance) and end_tolerance >= 0):
        raise ValueError(f"end_tolerance must be a non-negative number of seconds, got {end_tolerance}")
    segments, earliest = _load(path, duration, clip_before_zero=True)
    notes = []
    if earliest < 0:
        notes.append(f"times before 0 (from {earliest:.3f} s) clipped to 0")
    end = max(s.end for s in segments)
    if end > duration:
        chord_end = max((s.end for s in segments if s.label != "N"), default=0.0)
        if chord_end > duration + end_tolerance:
            raise AnnotationError(
                path, f"chords annotated until {chord_end:.2f} s, {chord_end - duration:.2f} s after the audio ends "
                      f"({duration:.2f} s; tolerance {end_tolerance:g} s): another edit of the recording?")
        segments = [dataclasses.replace(s, end=min(s.end, duration)) for s in segments if s.start < duration]
        chords = max(chord_end - duration, 0.0)
        if end > duration + ROUNDING_SECONDS:
            notes.append(f"cut at the audio's end ({duration:.2f} s): it ran {end - duration:.2f} s past it"
                         + (f", {chords:.2f} s of them chords" if chords > 0 else ", all of it N"))
    if not segments:
        raise AnnotationError(path, f"no chord segment starts before the audio ends ({duration:.2f} s)")
    return segments, notes


def _read_text(path: os.PathLike | str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise AnnotationError(path, f"cannot read file: {e.strerror or e}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise AnnotationError(path, f"not valid UTF-8 (byte {e.start})") from None


def _located_error(path, number: int, unit: str, problem: str) -> AnnotationError:
    """Error at line `number` of a .lab file, or at item `number` (e.g. 'observation') of a JAMS file."""
    if unit == "line":
        return AnnotationError(path, problem, number)
    return AnnotationError(path, f"{unit} {number}: {problem}")


def _parse_time(path, number: int, field: Any, what: str, unit: str = "line", negative_ok: bool = False) -> float:
    try:
        value = float(field)
    except (TypeError, ValueError):
        raise _located_error(path, number, unit, f"{what} {field!r} is not a number") from None
    if not math.isfinite(value):
        raise _located_error(path, number, unit, f"{what} {field!r} is not finite")
    if value < 0 and not negative_ok:
        raise _located_error(path, number, unit, f"{what} {value:g} is negative")
    return value


def _check_label(path, number: int, label: Any, unit: str = "line") -> str:
    try:
        vocab.encode_targets(label)
    except vocab.LabelError as e:
        raise _located_error(path, number, unit, str(e)) from None
    return label


def _parse_lab(path, text: str, duration: float | None, negative_ok: bool) -> list[tuple[int, float, float, str]]:
    rows = []  # (line number, fields)
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = stripped.split()
        if len(fields) not in (2, 3):
            problem = f"expected 3 columns (start end label) or 2 (onset label), got {len(fields)}: {stripped!r}"
            raise AnnotationError(path, problem, number)
        if rows and len(fields) != len(rows[0][1]):
            raise AnnotationError(
                path, f"{len(fields)} columns where line {rows[0][0]} has {len(rows[0][1])}", number
            )
        rows.append((number, fields))
    if not rows:
        return []
    if len(rows[0][1]) == 3:
        raw_segments = [
            (
                number,
                _parse_time(path, number, fields[0], "start", negative_ok=negative_ok),
                _parse_time(path, number, fields[1], "end", negative_ok=negative_ok),
                _check_label(path, number, fields[2]),
            )
            for number, fields in rows
        ]
    else:
        onsets = [
            (number, _parse_time(path, number, fields[0], "onset", negative_ok=negative_ok),
             _check_label(path, number, fields[1]))
            for number, fields in rows
        ]
        for (_, previous, _), (number, onset, _) in zip(onsets, onsets[1:]):
            if onset < previous:
                raise AnnotationError(path, f"onset {onset:g} is before the previous onset {previous:g}", number)
        last_number, last_onset, _ = onsets[-1]
        if duration is None:
            raise AnnotationError(path, "onset-label file: the audio duration is needed to end the last chord")
        if duration < last_onset:
            problem = f"onset {last_onset:g} is after the end of the audio ({duration:g} s)"
            raise AnnotationError(path, problem, last_number)
        ends = [onset for _, onset, _ in onsets[1:]] + [float(duration)]
        raw_segments = [(number, onset, end, label) for (number, onset, label), end in zip(onsets, ends)]
    return raw_segments


def _parse_jams(path, text: str, negative_ok: bool) -> list[tuple[int, float, float, str]]:
    import jams

    try:
        jam = jams.load(io.StringIO(text), validate=False)
    except (json.JSONDecodeError, jams.JamsError, TypeError, ValueError, AttributeError, KeyError) as e:
        raise AnnotationError(path, f"not a readable JAMS file: {e}") from None
    annotation = next((a for a in jam.annotations if a.namespace in CHORD_NAMESPACES), None)
    if annotation is None:
        found = sorted({a.namespace for a in jam.annotations})
        raise AnnotationError(
            path, f"no chord annotation (namespaces {', '.join(CHORD_NAMESPACES)}); found: {', '.join(found) or 'none'}"
        )
    raw_segments = []
    for number, obs in enumerate(annotation.data, start=1):
        start = _parse_time(path, number, obs.time, "time", "observation", negative_ok=negative_ok)
        length = _parse_time(path, number, obs.duration, "duration", "observation")
        raw_segments.append((number, start, start + length, _check_label(path, number, obs.value, "observation")))
    return raw_segments


def _validated(path, raw_segments: Iterable[tuple[int, float, float, str]], unit: str = "line") -> list[Segment]:
    """Checks ordering; `unit` says what the numbers count in messages ('line' for .lab)."""
    segments: list[Segment] = []
    for number, start, end, label in raw_segments:
        if end < start:
            raise _located_error(path, number, unit, f"end {end:g} is before start {start:g}")
        if segments:
            previous = segments[-1]
            if start < previous.start:
                problem = f"start {start:g} is before the previous start {previous.start:g}"
                raise _located_error(path, number, unit, problem)
            if start < previous.end - ROUNDING_SECONDS:
                problem = f"segment starting at {start:g} overlaps the previous one (ends {previous.end:g})"
                raise _located_error(path, number, unit, problem)
        segments.append(Segment(float(start), float(end), label))
    return segments


def _check_segments(segments: Sequence[Segment]) -> None:
    for i, s in enumerate(segments):
        vocab.encode_targets(s.label)
        if not (math.isfinite(s.start) and math.isfinite(s.end)) or s.start < 0 or s.end < s.start:
            raise ValueError(f"segment {i} has invalid times [{s.start}, {s.end})")


def write_lab(path: os.PathLike | str, segments: Sequence[Segment]) -> None:
    """Writes `start<TAB>end<TAB>label` lines, times with 6 decimals (microseconds).

    Raises:
        vocab.LabelError: a label is not valid Harte syntax.
        ValueError: negative, non-finite or reversed times.
    """
    _check_segments(segments)
    write_text_atomic(path, "".join(f"{s.start:.6f}\t{s.end:.6f}\t{s.label}\n" for s in segments))


def write_jams(
    path: os.PathLike | str,
    segments: Sequence[Segment],
    duration: float,
    metadata: dict[str, Any] | None = None,
) -> None:
    """Writes one 'chord' namespace annotation as a JAMS file.

    Args:
        path: Output file.
        segments: Chord segments; `confidence` is written when set.
        duration: Audio duration in seconds (file metadata).
        metadata: Optional. 'title', 'artist', 'release' go to the file metadata; 'model' (name)
            and 'version' describe the annotator in the annotation metadata; any other keys
            (JSON-serialisable) go to the annotation's sandbox.

    Raises:
        vocab.LabelError: a label is not valid Harte syntax.
        ValueError: invalid times or duration.
    """
    import jams

    _check_segments(segments)
    if not (math.isfinite(duration) and duration >= 0):
        raise ValueError(f"duration must be a non-negative number of seconds, got {duration}")
    metadata = dict(metadata or {})
    jam = jams.JAMS()
    jam.file_metadata.duration = float(duration)
    for key in ("title", "artist", "release"):
        if key in metadata:
            setattr(jam.file_metadata, key, str(metadata.pop(key)))
    annotation = jams.Annotation(namespace="chord", time=0, duration=float(duration))
    model, version = metadata.pop("model", None), metadata.pop("version", None)
    if model is not None or version is not None:
        annotator = {k: str(v) for k, v in (("name", model), ("version", version)) if v is not None}
        annotation.annotation_metadata = jams.AnnotationMetadata(
            annotator=annotator,
            version=str(version) if version is not None else "",
            annotation_tools=str(model) if model is not None else "",
            data_source="machine estimation",
        )
    if metadata:
        annotation.sandbox = jams.Sandbox(**metadata)
    for s in segments:
        annotation.append(time=float(s.start), duration=float(s.end - s.start), value=s.label, confidence=s.confidence)
    jam.annotations.append(annotation)
    jam.validate(strict=True)
    write_text_atomic(path, jam.dumps(indent=2))


def write_csv(path: os.PathLike | str, segments: Sequence[Segment]) -> None:
    """Writes `start,end,label,confidence` rows under a header (confidence empty when unset)."""
    lines = ["start,end,label,confidence\n"]
    for s in segments:
        confidence = "" if s.confidence is None else f"{s.confidence:.4f}"
        lines.append(f"{s.start:.6f},{s.end:.6f},{s.label},{confidence}\n")
    write_text_atomic(path, "".join(lines))


def write_segments(path: os.PathLike | str, segments: Sequence[Segment], fmt: str, duration: float,
                   metadata: dict[str, Any] | None = None) -> None:
    """Writes segments as .lab, JAMS or CSV (see `OUTPUT_FORMATS`), atomically.

    `duration` and `metadata` are used by JAMS only (see `write_jams`).
    """
    if fmt == "lab":
        write_lab(path, segments)
    elif fmt == "jams":
        write_jams(path, segments, duration, metadata)
    elif fmt == "csv":
        write_csv(path, segments)
    else:
        raise ValueError(f"unknown output format {fmt!r}; choose from {OUTPUT_FORMATS}")


def _segment_index(segments: Sequence[Segment], frame_times: np.ndarray) -> np.ndarray:
    """Index into `segments` of the segment sounding at each time, -1 where none does."""
    times = np.asarray(frame_times, dtype=np.float64)
    if times.ndim != 1:
        raise ValueError(f"frame_times must be 1-D, got shape {times.shape}")
    if np.any(np.diff(times) < 0):
        raise ValueError("frame_times must be non-decreasing")
    index = np.full(len(times), -1, dtype=np.int64)
    # Painted in start order, so where segments overlap the one that started last wins.
    for i in sorted(range(len(segments)), key=lambda i: segments[i].start):
        lo = np.searchsorted(times, segments[i].start, side="left")
        hi = np.searchsorted(times, segments[i].end, side="left")
        index[lo:hi] = i
    return index


def frame_labels(segments: Sequence[Segment], frame_times: np.ndarray) -> list[str]:
    """Label sounding at each frame time: segment with start <= t < end, else 'N'.

    Args:
        segments: Chord segments.
        frame_times: Non-decreasing frame centre times in seconds.
    """
    index = _segment_index(segments, frame_times)
    return [segments[i].label if i >= 0 else "N" for i in index]


def frame_targets(segments: Sequence[Segment], frame_times: np.ndarray) -> dict[str, np.ndarray]:
    """Large-vocabulary targets at each frame time (see `vocab.encode_targets`).

    Returns:
        chord, root, bass: uint8 [frames]; pitches: uint16 [frames] 12-bit pitch-class masks.
        Frames outside every segment get the targets of 'N'.

    Raises:
        vocab.LabelError: a label is not valid Harte syntax.
    """
    index = _segment_index(segments, frame_times)
    labels = sorted({s.label for s in segments} | {"N"})
    table = np.array([vocab.encode_targets(label) for label in labels], dtype=np.int64)
    row_of_label = {label: row for row, label in enumerate(labels)}
    rows = np.array([row_of_label[s.label] for s in segments] + [row_of_label["N"]], dtype=np.int64)
    # index == -1 picks the last entry of `rows`, which is 'N'.
    per_frame = table[rows[index]]
    return {
        "chord": per_frame[:, 0].astype(np.uint8),
        "root": per_frame[:, 1].astype(np.uint8),
        "bass": per_frame[:, 2].astype(np.uint8),
        "pitches": per_frame[:, 3].astype(np.uint16),
    }
