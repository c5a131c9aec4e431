"""Chord transcription scores with mir_eval.chord, over songs and over a whole set.

Set-level scores are weighted chord symbol recall (WCSR): every song's score weighted by its scored
duration (the durations mir_eval.chord.weighted_accuracy counts, i.e. without reference frames the
metric ignores), which equals pooling all scored time of the set. Scoring folders of annotations
loads neither TensorFlow nor matplotlib (pictures import them when asked for). `evaluate_folders`
compares folders of .lab/.jams annotations matched by relative path stem; the model on a prepared
split is scored by `chordkeras.inference.evaluate_model_on_records`.
"""

from __future__ import annotations

import collections
import csv
import io
import math
import os
import pathlib
from typing import Any, Iterable, Mapping, Sequence

import mir_eval
import numpy as np

from chordkeras import annotations, files
from chordkeras.config import FeatureConfig

# The mir_eval.chord comparison functions, in the order the field usually reports them.
CHORD_METRICS = (
    "root",
    "majmin",
    "mirex",
    "thirds",
    "triads",
    "sevenths",
    "tetrads",
    "majmin_inv",
    "thirds_inv",
    "triads_inv",
    "sevenths_inv",
    "tetrads_inv",
)
SEGMENTATION_METRICS = ("overseg", "underseg", "seg")
ANNOTATION_SUFFIXES = (".lab", ".jams")

# Confusion categories, in the order they are tested.
N_VS_CHORD = "N vs chord"
UNKNOWN_ESTIMATE = "estimate X (unknown chord)"
INVERSION = "inversion missed (root right, bass wrong)"
MAJ_VS_MIN = "maj vs min (same root)"
SEVENTH_MISSED = "seventh missed"
SEVENTH_ADDED = "seventh added"
SEVENTH_WRONG = "other sixth/seventh (same root and triad)"
OTHER_QUALITY = "other quality (same root)"
ROOT_FIFTH = "root off by a fifth/fourth"
OTHER_ROOT = "other root"

# Scale degrees above the root that a sixth or seventh adds (6, b7, 7 in semitones).
_SIXTH_SEVENTH = np.array([9, 10, 11])
_TRIAD_BITS = np.array([i for i in range(12) if i not in (9, 10, 11)])


def as_intervals(annotation: Any) -> tuple[np.ndarray, list[str]]:
    """(intervals [n, 2], labels) from a list of segments or an (intervals, labels) pair."""
    if isinstance(annotation, tuple) and len(annotation) == 2 and not hasattr(annotation[0], "label"):
        intervals, labels = annotation
        return np.asarray(intervals, dtype=np.float64).reshape(-1, 2), [str(x) for x in labels]
    segments = list(annotation)
    intervals = np.array([[s.start, s.end] for s in segments], dtype=np.float64).reshape(-1, 2)
    return intervals, [s.label for s in segments]


def n_seconds(segments: Iterable[annotations.Segment], start: float, end: float) -> float:
    """Seconds labelled N within [start, end)."""
    return float(sum(max(0.0, min(s.end, end) - max(s.start, start)) for s in segments if s.label == "N"))


def song_scores(reference: Any, estimate: Any) -> dict[str, Any]:
    """Scores one song exactly as `mir_eval.chord.evaluate` does, plus the weights WCSR needs.

    Args:
        reference: Segments (or (intervals, labels)) of the reference annotation.
        estimate: Segments (or (intervals, labels)) of the estimate.

    Returns:
        dict with "scores" {metric: score or None when nothing was comparable}, "weights"
        {metric: scored seconds}, "duration" (reference span in seconds), and "merged"
        (intervals, reference labels, estimate labels) on the common segmentation.
    """
    ref_intervals, ref_labels = as_intervals(reference)
    est_intervals, est_labels = as_intervals(estimate)
    if len(ref_labels) == 0:
        raise ValueError("empty reference annotation")
    if len(est_labels) == 0:
        est_intervals, est_labels = np.array([[ref_intervals.min(), ref_intervals.max()]]), ["N"]
    # The same preprocessing as mir_eval.chord.evaluate.
    est_intervals, est_labels = mir_eval.util.adjust_intervals(
        est_intervals, est_labels, ref_intervals.min(), ref_intervals.max(),
        mir_eval.chord.NO_CHORD, mir_eval.chord.NO_CHORD,
    )
    merged_ref = mir_eval.chord.merge_chord_intervals(ref_intervals, ref_labels)
    merged_est = mir_eval.chord.merge_chord_intervals(est_intervals, est_labels)
    intervals, ref_common, est_common = mir_eval.util.merge_labeled_intervals(
        ref_intervals, ref_labels, est_intervals, est_labels
    )
    durations = mir_eval.util.intervals_to_durations(intervals)
    scores: dict[str, float | None] = {}
    weights: dict[str, float] = {}
    for name in CHORD_METRICS:
        comparisons = getattr(mir_eval.chord, name)(ref_common, est_common)
        weight = float(durations[comparisons >= 0].sum())
        weights[name] = weight
        # mir_eval returns 0 (with a warning) when nothing is comparable; None says so honestly.
        scores[name] = float(mir_eval.chord.weighted_accuracy(comparisons, durations)) if weight > 0 else None
    scores["underseg"] = float(mir_eval.chord.underseg(merged_ref, merged_est))
    scores["overseg"] = float(mir_eval.chord.overseg(merged_ref, merged_est))
    scores["seg"] = min(scores["overseg"], scores["underseg"])
    duration = float(ref_intervals.max() - ref_intervals.min())
    for name in SEGMENTATION_METRICS:
        weights[name] = duration
    return {
        "scores": scores,
        "weights": weights,
        "duration": duration,
        "merged": (intervals, list(ref_common), list(est_common)),
    }


def classify_error(reference: str, estimate: str) -> str | None:
    """Names the kind of mistake an estimate makes against a reference label.

    Returns:
        One of the confusion categories, or None when both labels denote the same chord (same
        root, pitch classes and bass) or the reference is X (unscored).
    """
    ref_root, ref_bits, ref_bass = mir_eval.chord.encode(reference)
    est_root, est_bits, est_bass = mir_eval.chord.encode(estimate)
    if ref_bits[0] < 0:  # X: no defined chord to be wrong about
        return None
    if est_bits[0] < 0:
        return UNKNOWN_ESTIMATE
    if ref_root == est_root and np.array_equal(ref_bits, est_bits) and ref_bass == est_bass:
        return None
    if ref_root < 0 or est_root < 0:
        return N_VS_CHORD
    if ref_root != est_root:
        return ROOT_FIFTH if (est_root - ref_root) % 12 in (5, 7) else OTHER_ROOT
    if np.array_equal(ref_bits, est_bits):
        return INVERSION
    ref_third, est_third = _third(ref_bits), _third(est_bits)
    if ref_third and est_third and ref_third != est_third:
        return MAJ_VS_MIN
    if np.array_equal(ref_bits[_TRIAD_BITS], est_bits[_TRIAD_BITS]):
        ref_ext, est_ext = ref_bits[_SIXTH_SEVENTH].any(), est_bits[_SIXTH_SEVENTH].any()
        if ref_ext and not est_ext:
            return SEVENTH_MISSED
        if est_ext and not ref_ext:
            return SEVENTH_ADDED
        return SEVENTH_WRONG
    return OTHER_QUALITY


def _third(bits: np.ndarray) -> str | None:
    """"maj" or "min" when the chord has exactly one of the two thirds."""
    major, minor = bool(bits[4]), bool(bits[3])
    if major != minor:
        return "maj" if major else "min"
    return None


def confusion_summary(merged: Iterable[tuple[np.ndarray, Sequence[str], Sequence[str]]], top: int = 15) -> dict[str, Any]:
    """Durations of the errors in a set of songs, by category and by (reference, estimate) pair.

    Args:
        merged: Per song, the common segmentation (intervals, reference labels, estimate labels)
            from `song_scores`.
        top: Number of most frequent label pairs to list.

    Returns:
        dict with "scored_seconds" (non-X reference time), "error_seconds", "categories" (list of
        {category, seconds, share_of_errors}) and "pairs" (list of {reference, estimate, category,
        seconds}), both sorted by duration, longest first.
    """
    by_pair: dict[tuple[str, str], float] = collections.defaultdict(float)
    scored = 0.0
    category_of: dict[tuple[str, str], str | None] = {}
    for intervals, ref_labels, est_labels in merged:
        durations = mir_eval.util.intervals_to_durations(intervals)
        for ref, est, dur in zip(ref_labels, est_labels, durations):
            key = (ref, est)
            if key not in category_of:
                category_of[key] = classify_error(ref, est)
            if mir_eval.chord.encode(ref)[1][0] >= 0:
                scored += float(dur)
            if category_of[key] is not None:
                by_pair[key] += float(dur)
    by_category: dict[str, float] = collections.defaultdict(float)
    for key, seconds in by_pair.items():
        by_category[category_of[key]] += seconds
    errors = sum(by_category.values())
    categories = [
        {"category": name, "seconds": seconds, "share_of_errors": seconds / errors}
        for name, seconds in sorted(by_category.items(), key=lambda kv: -kv[1])
    ]
    pairs = [
        {"reference": ref, "estimate": est, "category": category_of[(ref, est)], "seconds": seconds}
        for (ref, est), seconds in sorted(by_pair.items(), key=lambda kv: -kv[1])[:top]
    ]
    return {"scored_seconds": scored, "error_seconds": errors, "categories": categories, "pairs": pairs}


def evaluate_pairs(pairs: Iterable[tuple[str, Any, Any]], top_confusions: int = 15) -> dict[str, Any]:
    """Scores (song, reference, estimate) triples, per song and over the whole set.

    Args:
        pairs: (song_id, reference, estimate); annotations as lists of segments (objects with
            start, end, label) or (intervals, labels) pairs.
        top_confusions: Number of most frequent label confusions to list.

    Returns:
        {"songs": {song_id: {"duration": s, metric: score or None, ...}},
         "overall": {metric: WCSR or None, ...}, "weights": {metric: scored seconds},
         "num_songs": n, "total_duration": s, "confusions": `confusion_summary` output}.
        Chord metrics overall are duration-weighted over the set; overseg/underseg/seg overall are
        the duration-weighted means of the per-song values.
    """
    songs: dict[str, dict[str, Any]] = {}
    merged = []
    totals = collections.defaultdict(float)
    weights = collections.defaultdict(float)
    for song_id, reference, estimate in pairs:
        if song_id in songs:
            raise ValueError(f"song {song_id!r} appears twice")
        result = song_scores(reference, estimate)
        songs[song_id] = {"duration": result["duration"], **result["scores"]}
        merged.append(result["merged"])
        for name, score in result["scores"].items():
            weight = result["weights"][name]
            if score is not None and weight > 0:
                totals[name] += score * weight
                weights[name] += weight
    overall = {
        name: (totals[name] / weights[name] if weights[name] > 0 else None)
        for name in CHORD_METRICS + SEGMENTATION_METRICS
    }
    return {
        "num_songs": len(songs),
        "total_duration": float(sum(s["duration"] for s in songs.values())),
        "overall": overall,
        "weights": {name: weights[name] for name in CHORD_METRICS + SEGMENTATION_METRICS},
        "songs": songs,
        "confusions": confusion_summary(merged, top=top_confusions),
    }


# ---------------------------------------------------------------------------------------------
# Reports


def _fmt(value: float | None) -> str:
    return "   -  " if value is None else f"{100.0 * value:6.2f}"


def format_table(results: Mapping[str, Any], per_song: bool = True) -> str:
    """A plain-text table: one row per song (optional) and the WCSR row, scores in percent."""
    columns = CHORD_METRICS + SEGMENTATION_METRICS
    rows = []
    if per_song:
        rows += [(song, s["duration"], [s[c] for c in columns]) for song, s in results["songs"].items()]
    rows.append(("ALL (WCSR)", results["total_duration"], [results["overall"][c] for c in columns]))
    width = max([len("song")] + [len(r[0]) for r in rows])
    widths = [max(6, len(c)) for c in columns]
    head = f"{'song':<{width}} {'dur[s]':>8} " + " ".join(f"{c:>{w}}" for c, w in zip(columns, widths))
    lines = [head, "-" * len(head)]
    for name, duration, values in rows:
        cells = " ".join(f"{_fmt(v):>{w}}" for v, w in zip(values, widths))
        lines.append(f"{name:<{width}} {duration:8.1f} {cells}")
    return "\n".join(lines)


def format_confusions(confusions: Mapping[str, Any]) -> str:
    """The confusion summary as text: categories, then the most frequent label pairs."""
    scored = confusions["scored_seconds"]
    errors = confusions["error_seconds"]
    share = errors / scored if scored > 0 else 0.0
    lines = [f"errors: {errors:.1f} s of {scored:.1f} s scored ({100 * share:.1f}%, exact label match)"]
    for item in confusions["categories"]:
        lines.append(f"  {item['category']:<44} {item['seconds']:9.1f} s  {100 * item['share_of_errors']:5.1f}%")
    if confusions["pairs"]:
        lines.append("most frequent confusions (reference -> estimate):")
        for item in confusions["pairs"]:
            lines.append(
                f"  {item['reference']:>14} -> {item['estimate']:<14} {item['seconds']:8.1f} s  {item['category']}"
            )
    return "\n".join(lines)


def results_csv(results: Mapping[str, Any]) -> str:
    """Per-song rows and a final "ALL (WCSR)" row; empty cells where nothing was comparable."""
    columns = CHORD_METRICS + SEGMENTATION_METRICS
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["song", "duration"] + list(columns))
    for song, s in results["songs"].items():
        writer.writerow([song, f"{s['duration']:.3f}"] + ["" if s[c] is None else f"{s[c]:.6f}" for c in columns])
    overall = results["overall"]
    writer.writerow(
        ["ALL (WCSR)", f"{results['total_duration']:.3f}"]
        + ["" if overall[c] is None else f"{overall[c]:.6f}" for c in columns]
    )
    return buffer.getvalue()


def write_results(results: Mapping[str, Any], out_dir: str | os.PathLike) -> tuple[pathlib.Path, pathlib.Path]:
    """Writes evaluation.json and evaluation.csv into `out_dir` (atomically)."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = out_dir / "evaluation.json", out_dir / "evaluation.csv"
    files.write_json_atomic(json_path, jsonable(results), sort_keys=False)
    files.write_text_atomic(csv_path, results_csv(results))
    return json_path, csv_path


def jsonable(obj: Any) -> Any:
    """`obj` with numpy numbers as Python numbers and NaN as None (strict JSON)."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return None if math.isnan(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


# ---------------------------------------------------------------------------------------------
# Inputs


def annotation_files(folder: str | os.PathLike) -> dict[str, pathlib.Path]:
    """{relative path stem: file} of the .lab/.jams files below `folder`.

    Raises:
        ValueError: a stem with both a .lab and a .jams file (which one is meant is unclear).
    """
    folder = pathlib.Path(folder)
    found: dict[str, pathlib.Path] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix.lower() in ANNOTATION_SUFFIXES:
            stem = path.relative_to(folder).with_suffix("").as_posix()
            if stem in found:
                raise ValueError(f"{folder}: both {found[stem].name} and {path.name} for {stem!r}")
            found[stem] = path
    return found


def folder_pairs(reference_dir: str | os.PathLike, estimate_dir: str | os.PathLike) -> tuple[list[tuple[str, pathlib.Path, pathlib.Path]], list[str], list[str]]:
    """Reference and estimate files matched by relative stem.

    Returns:
        (pairs [(stem, reference file, estimate file)], references without an estimate,
        estimates without a reference).
    """
    references, estimates = annotation_files(reference_dir), annotation_files(estimate_dir)
    pairs = [(stem, references[stem], estimates[stem]) for stem in sorted(references) if stem in estimates]
    missing = sorted(set(references) - set(estimates))
    unmatched = sorted(set(estimates) - set(references))
    return pairs, missing, unmatched


def format_sweep(rows: Sequence[Mapping[str, Any]]) -> str:
    """The sweep as a table: decoding, segments per minute, and the main WCSR scores in percent."""
    columns = ("root", "majmin", "majmin_inv", "sevenths", "tetrads", "seg")
    lines = [f"{'decoding':<16} {'seg/min':>8} " + " ".join(f"{c:>10}" for c in columns)]
    for row in rows:
        name = "argmax" if row["decode"] == "argmax" else f"{row['decode']} {row['self_transition']:g}"
        per_minute = row["segments_per_minute"]
        lines.append(f"{name:<16} {per_minute:8.1f} " + " ".join(f"{_fmt(row['overall'][c]):>10}" for c in columns))
    return "\n".join(lines)


def evaluate_folders(
    reference_dir: str | os.PathLike,
    estimate_dir: str | os.PathLike,
    plot_dir: str | os.PathLike | None = None,
    audio_dir: str | os.PathLike | None = None,
    error_metric: str = "majmin",
    top_confusions: int = 15,
) -> dict[str, Any]:
    """Scores the estimates in one folder against the references in another (matched by stem).

    Args:
        reference_dir: Folder of reference .lab/.jams files (or a single file).
        estimate_dir: Folder of estimated .lab/.jams files (or a single file).
        plot_dir: When given, one PNG per song is written there.
        audio_dir: Audio matched by stem, for the spectrogram in the pictures (optional).
        error_metric: Comparison that marks errors in the pictures.
        top_confusions: Number of most frequent label confusions to list.

    Returns:
        `evaluate_pairs` output, plus "missing_estimates" and "unmatched_estimates" (stems) and
        "failed" (song and reason of each pair with an unreadable, malformed or empty file).

    Raises:
        ValueError: no matching pairs, or none that could be scored.
    """
    reference_dir, estimate_dir = pathlib.Path(reference_dir), pathlib.Path(estimate_dir)
    if reference_dir.is_file() and estimate_dir.is_file():
        matched, missing, unmatched = [(reference_dir.stem, reference_dir, estimate_dir)], [], []
    else:
        matched, missing, unmatched = folder_pairs(reference_dir, estimate_dir)
    if not matched:
        raise ValueError(f"no estimate in {estimate_dir} matches a reference in {reference_dir} (by relative stem)")
    pairs, failed = [], []
    for stem, ref_path, est_path in matched:
        # A bad file is named with its reason and left out; the other songs are still scored.
        try:
            reference = annotations.load_annotation(ref_path)
            estimate = annotations.load_annotation(est_path)
        except (ValueError, OSError) as e:  # AnnotationError included
            failed.append({"song": stem, "reason": " ".join(str(e).split())})
            continue
        empty = [path for path, segments in ((ref_path, reference), (est_path, estimate)) if not segments]
        if empty:
            failed.append({"song": stem, "reason": f"{empty[0]}: no chord segments (empty file)"})
            continue
        pairs.append((stem, reference, estimate))
        if plot_dir is not None:
            _plot_pair(pathlib.Path(plot_dir) / f"{stem}.png", stem, reference, estimate, audio_dir, error_metric)
    if not pairs:
        raise ValueError(f"no song could be scored: {'; '.join(f['reason'] for f in failed[:5])}")
    results = evaluate_pairs(pairs, top_confusions)
    results.update({"references": str(reference_dir), "estimates": str(estimate_dir),
                    "missing_estimates": missing, "unmatched_estimates": unmatched, "failed": failed})
    return results


def plot_title(song_id: str, reference, estimate, metric: str) -> str:
    """A song picture's title: the song and its score on `metric`."""
    score = song_scores(reference, estimate)["scores"][metric]
    return f"{song_id}    {metric} {'-' if score is None else f'{100 * score:.1f}%'}"


def _plot_pair(out_png, stem, reference, estimate, audio_dir, error_metric) -> None:
    from chordkeras import audio, plots  # TensorFlow and matplotlib load only for pictures
    from chordkeras import features as features_lib

    spectrogram = features = None
    if audio_dir is not None:
        candidates = [pathlib.Path(audio_dir) / f"{stem}{ext}" for ext in audio.AUDIO_EXTENSIONS]
        audio_path = next((p for p in candidates if p.exists()), None)
        if audio_path is not None:
            features = FeatureConfig()
            samples = audio.load_audio(str(audio_path), features.sample_rate)
            spectrogram = features_lib.log_spectrogram(samples, features).numpy()
    plots.plot_song(out_png, estimate, spectrogram, features, reference=reference,
                    title=plot_title(stem, reference, estimate, error_metric),
                    error_metric=error_metric)
