"""Chord transcription scores with mir_eval.chord, over songs and over a whole set.

`python -m chordkeras.evaluate REFERENCE_DIR ESTIMATE_DIR [--out DIR] [--plot --audio DIR]` compares
folders of .lab/.jams annotations matched by relative path stem;
`python -m chordkeras.evaluate --model MODEL --records tfrecords/NAME [--split test]` runs a model on
the stored spectrograms of a prepared split and scores it against the record's frame labels.

Set-level scores are weighted chord symbol recall (WCSR): every song's score weighted by its scored
duration (the durations mir_eval.chord.weighted_accuracy counts, i.e. without reference frames the
metric ignores), which equals pooling all scored time of the set.
"""

from __future__ import annotations

import argparse
import collections
import csv
import io
import json
import math
import os
import pathlib
import sys
from typing import Any, Iterable, Mapping, Sequence

import mir_eval
import numpy as np

from chordkeras import files

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


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Creates the folder if needed, then writes atomically (`chordkeras.files.write_text_atomic`)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_text_atomic(path, text)


def write_results(results: Mapping[str, Any], out_dir: str | os.PathLike) -> tuple[pathlib.Path, pathlib.Path]:
    """Writes evaluation.json and evaluation.csv into `out_dir` (atomically)."""
    out_dir = pathlib.Path(out_dir)
    json_path, csv_path = out_dir / "evaluation.json", out_dir / "evaluation.csv"
    write_text_atomic(json_path, json.dumps(_jsonable(results), indent=2) + "\n")
    write_text_atomic(csv_path, results_csv(results))
    return json_path, csv_path


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
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


def record_labels(chord: np.ndarray, root: np.ndarray, bass: np.ndarray) -> list[str]:
    """Harte labels of record frames: the large-vocabulary class name, with the bass as an inversion.

    Args:
        chord: Large-vocabulary classes [frames].
        root, bass: Pitch classes [frames] (12 = none), as stored in records.
    """
    from chordkeras import vocab

    names = vocab.get_vocabulary("large").class_names
    labels = []
    for c, r, b in zip(chord.tolist(), root.tolist(), bass.tolist()):
        label = names[c]
        if c >= 2 and r < 12 and b < 12 and b != r:
            label = f"{label}/{_DEGREES[(b - r) % 12]}"
        labels.append(label)
    return labels


# Scale degree of each interval above the root, as written after '/' in a Harte label.
_DEGREES = ("1", "b2", "2", "b3", "3", "4", "b5", "5", "b6", "6", "b7", "7")


def record_songs(records_dir: str | os.PathLike, split: str) -> Iterable[dict[str, Any]]:
    """Parsed songs (numpy values) of one split of a prepared dataset."""
    import tensorflow as tf

    from chordkeras import records

    dataset = tf.data.TFRecordDataset(records.list_shards(records_dir, split)).map(records.parse_song)
    for song in dataset.as_numpy_iterator():
        song["song_id"] = song["song_id"].decode("utf-8")
        yield song


def evaluate_model_on_records(
    model_path: str | os.PathLike,
    records_dir: str | os.PathLike,
    split: str = "test",
    decode: str = "viterbi",
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
        decode: "viterbi" or "argmax".
        self_transition: Viterbi self-transition; default `predict.DEFAULT_SELF_TRANSITION`.
        plot_dir: When given, one PNG per song is written there.
        error_metric: Comparison that marks errors in the pictures.
        progress: Show a progress bar.
        top_confusions: Number of most frequent label confusions to list.

    Returns:
        `evaluate_pairs` output, plus "model", "records" and "split".

    Raises:
        ValueError: the dataset's feature config differs from the model's.
    """
    from chordkeras import decode as decode_lib
    from chordkeras import predict

    if self_transition is None:
        self_transition = predict.DEFAULT_SELF_TRANSITION
    model = predict.load_chord_model(model_path, backend="keras")
    pairs = []
    for song in _record_predictions(model, model_path, records_dir, split, progress):
        path = decode_lib.decode(song["probabilities"], decode, self_transition)
        estimate = decode_lib.frames_to_segments(
            path, song["probabilities"], song["frame_rate"], model.class_names, song["duration"]
        )
        pairs.append((song["song_id"], song["reference"], estimate))
        if plot_dir is not None:
            from chordkeras import plots

            plots.plot_song(
                pathlib.Path(plot_dir) / f"{song['song_id']}.png", estimate, song["spectrogram"], model.features,
                reference=song["reference"], duration=song["duration"],
                title=_plot_title(song["song_id"], song["reference"], estimate, error_metric),
                error_metric=error_metric,
            )
    results = evaluate_pairs(pairs, top_confusions)
    results.update({"model": str(model_path), "records": str(records_dir), "split": split,
                    "decode": decode, "self_transition": self_transition if decode == "viterbi" else None})
    return results


def _record_predictions(model, model_path, records_dir, split: str, progress: bool) -> Iterable[dict[str, Any]]:
    """Per song of a split: id, chord probabilities, reference segments, frame rate, duration, spectrogram."""
    from tqdm import tqdm

    from chordkeras import decode as decode_lib
    from chordkeras import records
    from chordkeras.config import check_features_match

    info = records.read_dataset_info(records_dir)
    check_features_match(info["features"], model.features, f"{records_dir} vs {model_path}")
    songs_total = (info.get("splits") or {}).get(split, {}).get("songs")
    count = 0
    for song in tqdm(record_songs(records_dir, split), total=songs_total, unit="song", disable=not progress,
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
    """Set-level scores of Viterbi decoding for several self-transition values (and argmax).

    The network runs once per song; only the decoding is repeated. Meant for choosing the
    default on a validation split.

    Returns:
        [{"decode": "argmax" or "viterbi", "self_transition": p or None, "overall": {metric: WCSR},
          "segments_per_minute": estimated segments per minute of audio}, ...], argmax first.
    """
    from chordkeras import decode as decode_lib
    from chordkeras import predict

    model = predict.load_chord_model(model_path, backend="keras")
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
            path = decode_lib.argmax(probs) if value is None else decode_lib.viterbi(probs, value)
            estimate = decode_lib.frames_to_segments(path, probs, song["frame_rate"], model.class_names,
                                                     song["duration"])
            num_segments += len(estimate)
            pairs.append((song["song_id"], song["reference"], estimate))
        results = evaluate_pairs(pairs)
        rows.append({
            "decode": "argmax" if value is None else "viterbi",
            "self_transition": value,
            "overall": results["overall"],
            "segments_per_minute": num_segments / minutes if minutes > 0 else None,
        })
    return rows


def format_sweep(rows: Sequence[Mapping[str, Any]]) -> str:
    """The sweep as a table: decoding, segments per minute, and the main WCSR scores in percent."""
    columns = ("root", "majmin", "majmin_inv", "sevenths", "tetrads", "seg")
    lines = [f"{'decoding':<16} {'seg/min':>8} " + " ".join(f"{c:>10}" for c in columns)]
    for row in rows:
        name = "argmax" if row["decode"] == "argmax" else f"viterbi {row['self_transition']:g}"
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
        `evaluate_pairs` output, plus "missing_estimates" and "unmatched_estimates" (stems).

    Raises:
        ValueError: no matching pairs.
    """
    from chordkeras import annotations

    reference_dir, estimate_dir = pathlib.Path(reference_dir), pathlib.Path(estimate_dir)
    if reference_dir.is_file() and estimate_dir.is_file():
        files, missing, unmatched = [(reference_dir.stem, reference_dir, estimate_dir)], [], []
    else:
        files, missing, unmatched = folder_pairs(reference_dir, estimate_dir)
    if not files:
        raise ValueError(f"no estimate in {estimate_dir} matches a reference in {reference_dir} (by relative stem)")
    pairs = []
    for stem, ref_path, est_path in files:
        reference = annotations.load_annotation(ref_path)
        estimate = annotations.load_annotation(est_path)
        pairs.append((stem, reference, estimate))
        if plot_dir is not None:
            _plot_pair(pathlib.Path(plot_dir) / f"{stem}.png", stem, reference, estimate, audio_dir, error_metric)
    results = evaluate_pairs(pairs, top_confusions)
    results.update({"references": str(reference_dir), "estimates": str(estimate_dir),
                    "missing_estimates": missing, "unmatched_estimates": unmatched})
    return results


def _plot_title(song_id: str, reference, estimate, metric: str) -> str:
    score = song_scores(reference, estimate)["scores"][metric]
    return f"{song_id}    {metric} {'-' if score is None else f'{100 * score:.1f}%'}"


def _plot_pair(out_png, stem, reference, estimate, audio_dir, error_metric) -> None:
    from chordkeras import plots

    spectrogram = features = None
    if audio_dir is not None:
        from chordkeras.preparation import AUDIO_EXTENSIONS

        candidates = [pathlib.Path(audio_dir) / f"{stem}{ext}" for ext in AUDIO_EXTENSIONS]
        audio_path = next((p for p in candidates if p.exists()), None)
        if audio_path is not None:
            from chordkeras import audio, features as features_lib
            from chordkeras.config import FeatureConfig

            features = FeatureConfig()
            samples = audio.load_audio(str(audio_path), features.sample_rate)
            spectrogram = features_lib.log_spectrogram(samples, features).numpy()
    plots.plot_song(out_png, estimate, spectrogram, features, reference=reference,
                    title=_plot_title(stem, reference, estimate, error_metric),
                    error_metric=error_metric)


# ---------------------------------------------------------------------------------------------
# Command line


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m chordkeras.evaluate",
        description="Score chord estimates with mir_eval.chord: folders of .lab/.jams files, or a model on "
        "a prepared dataset split.",
        epilog="examples:\n"
        "  python -m chordkeras.evaluate references/ estimates/ --out eval/\n"
        "  python -m chordkeras.evaluate --model runs/x/export --records tfrecords/synth --split test --plot",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("reference", nargs="?", help="folder (or file) of reference .lab/.jams annotations")
    parser.add_argument("estimate", nargs="?", help="folder (or file) of estimated .lab/.jams annotations")
    parser.add_argument("--model", help="export folder or .keras file to run on --records")
    parser.add_argument("--records", help="prepared dataset folder (tfrecords/<name>)")
    parser.add_argument("--split", default="test", help="split of --records (default test)")
    parser.add_argument("--decode", choices=("viterbi", "argmax"), default="viterbi")
    parser.add_argument("--self-transition", type=float, default=None,
                        help="Viterbi probability of staying on a chord per frame (default: predict's)")
    parser.add_argument("--out", help="folder for evaluation.json, evaluation.csv and plots/ "
                        "(default: <estimate>-eval beside the estimates, or eval-<records>-<split> beside the model)")
    parser.add_argument("--sweep", help="model mode: comma-separated self-transition values to compare (with "
                        "argmax) instead of one evaluation, e.g. 0.5,0.8,0.9,0.95,0.99; writes sweep.json")
    parser.add_argument("--plot", action="store_true", help="write a PNG per song into <out>/plots")
    parser.add_argument("--audio", help="audio folder matched by stem, for spectrograms in folder-mode plots")
    parser.add_argument("--plot-metric", default="majmin", choices=CHORD_METRICS,
                        help="comparison that marks errors in the plots (default majmin)")
    parser.add_argument("--top", type=int, default=15, help="label confusions to list (default 15)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    folder_mode = args.reference is not None or args.estimate is not None
    model_mode = args.model is not None or args.records is not None
    if folder_mode == model_mode:
        parser.error("give either REFERENCE ESTIMATE folders or --model and --records")
    if folder_mode and (args.reference is None or args.estimate is None):
        parser.error("folder mode needs both REFERENCE and ESTIMATE")
    if model_mode and (args.model is None or args.records is None):
        parser.error("model mode needs both --model and --records")
    if args.self_transition is not None and not 0.0 < args.self_transition < 1.0:
        parser.error("--self-transition must be in (0, 1)")
    if args.sweep is not None:
        if not model_mode:
            parser.error("--sweep needs --model and --records")
        try:
            args.sweep = [float(v) for v in args.sweep.split(",") if v.strip()]
        except ValueError:
            parser.error("--sweep takes comma-separated numbers")
        if not args.sweep or not all(0.0 < v < 1.0 for v in args.sweep):
            parser.error("--sweep values must be in (0, 1)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.model is not None:
        model_path = pathlib.Path(args.model)
        out = pathlib.Path(args.out) if args.out else model_path.parent / f"eval-{pathlib.Path(args.records).name}-{args.split}"
    else:
        estimate = pathlib.Path(args.estimate)
        out = pathlib.Path(args.out) if args.out else estimate.parent / f"{estimate.stem}-eval"
    plot_dir = out / "plots" if args.plot else None
    if args.sweep is not None:
        try:
            rows = sweep_self_transition(args.model, args.records, args.split, args.sweep, not args.no_progress)
        except ValueError as e:
            print(f"chordkeras.evaluate: {e}", file=sys.stderr)
            return 2
        print(format_sweep(rows))
        write_text_atomic(out / "sweep.json", json.dumps(_jsonable(rows), indent=2) + "\n")
        print(f"\nwrote {out / 'sweep.json'}")
        return 0
    try:
        if args.model is not None:
            results = evaluate_model_on_records(
                args.model, args.records, args.split, args.decode, args.self_transition, plot_dir,
                args.plot_metric, progress=not args.no_progress, top_confusions=args.top,
            )
        else:
            results = evaluate_folders(args.reference, args.estimate, plot_dir, args.audio, args.plot_metric, args.top)
    except ValueError as e:
        print(f"chordkeras.evaluate: {e}", file=sys.stderr)
        return 2
    print(format_table(results, per_song=results["num_songs"] <= 40))
    print()
    print(format_confusions(results["confusions"]))
    for key in ("missing_estimates", "unmatched_estimates"):
        if results.get(key):
            print(f"\n{key.replace('_', ' ')} ({len(results[key])}): {', '.join(results[key][:20])}"
                  + (" ..." if len(results[key]) > 20 else ""), file=sys.stderr)
    json_path, csv_path = write_results(results, out)
    print(f"\nwrote {json_path} and {csv_path}" + (f" and plots in {plot_dir}" if plot_dir else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
