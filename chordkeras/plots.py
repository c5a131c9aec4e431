"""Pictures: a song's spectrogram with its chords, and training curves.

Everything is drawn with matplotlib's Agg backend into PNG files (no display needed). Long songs are
wrapped into rows of `seconds_per_row` seconds, like systems on a score, so chord names stay legible.
"""

from __future__ import annotations

import colorsys
import csv
import math
import os
import pathlib
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import mir_eval  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from chordkeras import files, vocab  # noqa: E402
from chordkeras.config import FeatureConfig  # noqa: E402

DPI = 100
WIDTH_PX = 1600
# Heights in pixels of the parts of one row (system).
_BAR_PX = 26
_ERROR_PX = 10
_SPECTROGRAM_PX = 150
_GAP_PX = 46
_TOP_PX = 40
_LEFT_PX, _RIGHT_PX = 70, 20

_CHAR_PX = 6.0  # average width of an 8 pt character at DPI
_ERROR_COLOR = "#d62728"
_UNSCORED_COLOR = "#bbbbbb"


def _row_parts(has_reference: bool, has_spectrogram: bool) -> list[tuple[str, int]]:
    parts = []
    if has_reference:
        parts += [("reference", _BAR_PX), ("errors", _ERROR_PX)]
    parts.append(("estimate", _BAR_PX))
    if has_spectrogram:
        parts.append(("spectrogram", _SPECTROGRAM_PX))
    return parts


def song_figure_size(
    duration: float,
    has_reference: bool,
    has_spectrogram: bool = True,
    seconds_per_row: float = 60.0,
    width_px: int = WIDTH_PX,
) -> tuple[int, int]:
    """(width, height) in pixels of the PNG `plot_song` writes for these inputs."""
    rows = max(1, math.ceil(duration / seconds_per_row - 1e-9))
    row_px = sum(px for _, px in _row_parts(has_reference, has_spectrogram)) + _GAP_PX
    return width_px, _TOP_PX + rows * row_px


def _chord_color(label: str) -> tuple[float, float, float]:
    """Hue follows the root around the circle of fifths; minor-third chords are darker."""
    root, bits, _ = mir_eval.chord.encode(label)
    if bits[0] < 0:  # X
        return (0.45, 0.45, 0.45)
    if root < 0:  # N
        return (0.88, 0.88, 0.88)
    # Pastel colours, so the saturated red of the error marks stands out against any chord.
    hue = ((root * 7) % 12) / 12.0
    minor = bits[3] and not bits[4]
    lightness = 0.66 if minor else 0.80
    saturation = 0.55 if (bits[3] != bits[4]) else 0.2  # dim/aug/sus: washed out
    return colorsys.hls_to_rgb(hue, lightness, saturation)


_SHORT_QUALITIES = {
    "maj": "", "min": "m", "dim": "dim", "aug": "+", "min6": "m6", "maj6": "6", "min7": "m7",
    "minmaj7": "mM7", "maj7": "M7", "7": "7", "dim7": "dim7", "hdim7": "m7b5", "sus2": "sus2", "sus4": "sus4",
}


def _short_label(label: str) -> str:
    """Lead-sheet shorthand: 'A:min7' -> 'Am7', 'C:maj' -> 'C'."""
    try:
        root, quality, degrees, bass = mir_eval.chord.split(label)
    except mir_eval.chord.InvalidChordException:
        return label
    if root in ("N", "X"):
        return root
    short = root + _SHORT_QUALITIES.get(quality, quality)
    if degrees:
        short += "(" + ",".join(sorted(degrees)) + ")"
    if bass and bass != "1":
        short += "/" + bass
    return short


def _fits(text: str, width_px: float) -> bool:
    return width_px >= _CHAR_PX * len(text) + 4


def chord_names(boxes: Sequence[tuple[str, float]]) -> list[str]:
    """The name written in each chord box of one picture, from (Harte label, box width in pixels).

    One naming scheme per picture: Harte labels ('F:min', 'C:maj') when every box with room for
    the shorthand also has room for its Harte label, else the lead-sheet shorthand ('Fm', 'C') in
    every box. A box too narrow for its name stays empty ("").
    """
    short = any(_fits(_short_label(label), width) and not _fits(label, width) for label, width in boxes)
    names = [_short_label(label) if short else label for label, _ in boxes]
    return [name if _fits(name, width) else "" for name, (_, width) in zip(names, boxes)]


def _draw_bars(ax, segments: Sequence[Any], t0: float, t1: float, name: str) -> list[tuple[Any, float, float, str]]:
    """Draws one row's chord boxes; returns (axes, start, end, label) of each, to be named by `chord_names`."""
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    boxes = []
    for s in segments:
        start, end = max(s.start, t0), min(s.end, t1)
        if end <= start:
            continue
        color = _chord_color(s.label)
        ax.add_patch(Rectangle((start, 0.0), end - start, 1.0, facecolor=color, edgecolor="white", linewidth=0.8))
        boxes.append((ax, start, end, s.label))
    return boxes


def _error_intervals(reference, estimate, metric: str) -> list[tuple[float, float, int]]:
    """(start, end, comparison) on the common segmentation; comparison 1 right, 0 wrong, -1 unscored."""
    ref_iv = np.array([[s.start, s.end] for s in reference], dtype=float)
    est_iv = np.array([[s.start, s.end] for s in estimate], dtype=float).reshape(-1, 2)
    est_labels = [s.label for s in estimate]
    if len(est_labels) == 0:
        est_iv, est_labels = ref_iv[:1].copy(), ["N"]
    est_iv, est_labels = mir_eval.util.adjust_intervals(
        est_iv, est_labels, ref_iv.min(), ref_iv.max(), mir_eval.chord.NO_CHORD, mir_eval.chord.NO_CHORD
    )
    intervals, ref_common, est_common = mir_eval.util.merge_labeled_intervals(
        ref_iv, [s.label for s in reference], est_iv, est_labels
    )
    comparisons = getattr(mir_eval.chord, metric)(ref_common, est_common)
    return [(float(a), float(b), int(np.sign(c)) if c >= 0 else -1) for (a, b), c in zip(intervals, comparisons)]


def _note_ticks(features: FeatureConfig, n_bins: int) -> tuple[list[float], list[str]]:
    """Bins of the C in each octave, named in scientific pitch notation (C4 = middle C)."""
    midi0 = 69.0 + 12.0 * math.log2(features.fmin / 440.0)
    ticks, names = [], []
    for j in range(n_bins):
        midi = midi0 + 12.0 * j / features.bins_per_octave
        if abs(midi - round(midi)) < 1e-6 and round(midi) % 12 == 0:
            ticks.append(j)
            names.append(f"{vocab.PITCH_NAMES[0]}{round(midi) // 12 - 1}")
    return ticks, names


def _save_atomic(fig, out_png: str | os.PathLike) -> pathlib.Path:
    out_png = pathlib.Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    try:
        with files.atomic_output(out_png) as tmp:
            fig.savefig(tmp, dpi=DPI, format="png")
    finally:
        plt.close(fig)
    return out_png


def plot_song(
    out_png: str | os.PathLike,
    estimate: Sequence[Any],
    spectrogram: np.ndarray | None = None,
    features: FeatureConfig | None = None,
    reference: Sequence[Any] | None = None,
    duration: float | None = None,
    title: str = "",
    error_metric: str = "majmin",
    seconds_per_row: float = 60.0,
    width_px: int = WIDTH_PX,
) -> pathlib.Path:
    """Writes a PNG: per row of time, reference and estimated chord bars over the spectrogram.

    Args:
        out_png: Output file (written atomically).
        estimate: Estimated segments (objects with start, end, label).
        spectrogram: [frames, n_bins] log-frequency spectrogram (frame i centred at
            i / features.frame_rate), or None to draw chords only.
        features: Feature config of the spectrogram (frame rate, bin frequencies). Default FeatureConfig().
        reference: Reference segments, or None. With a reference, an error strip marks where the
            estimate is wrong (red), right (green) or unscored (grey) under `error_metric`, and
            wrong regions are shaded on the spectrogram.
        duration: Seconds to show; default the end of the last segment or spectrogram frame.
        title: Figure title (e.g. the song id and scores).
        error_metric: A mir_eval.chord comparison name ("majmin", "sevenths", ...).
        seconds_per_row: Length of one row; long songs wrap onto several rows.
        width_px: Image width; the height follows from the number of rows (see `song_figure_size`).

    Returns:
        The written path.
    """
    features = features or FeatureConfig()
    has_reference = bool(reference)
    has_spectrogram = spectrogram is not None
    if duration is None:
        ends = [s.end for s in estimate] + [s.end for s in (reference or [])]
        if has_spectrogram:
            ends.append((len(spectrogram) - 0.5) / features.frame_rate)
        duration = max(ends) if ends else 0.0
    duration = max(float(duration), 1e-3)
    # A song shorter than a row gets a row of its own length (rounded up to 5 s), not empty space.
    seconds_per_row = min(seconds_per_row, 5.0 * math.ceil(duration / 5.0))
    width, height = song_figure_size(duration, has_reference, has_spectrogram, seconds_per_row, width_px)
    rows = max(1, math.ceil(duration / seconds_per_row - 1e-9))
    parts = _row_parts(has_reference, has_spectrogram)

    fig = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    plot_w = (width - _LEFT_PX - _RIGHT_PX) / width
    px_per_second = (width - _LEFT_PX - _RIGHT_PX) / seconds_per_row
    errors = _error_intervals(reference, estimate, error_metric) if has_reference else []
    if has_spectrogram:
        spectrogram = np.asarray(spectrogram, dtype=np.float32)
        vmax = float(np.percentile(spectrogram, 99.5)) if spectrogram.size else 1.0
        ticks, tick_names = _note_ticks(features, spectrogram.shape[1])
    if title:
        fig.text(_LEFT_PX / width, 1 - 8 / height, title, ha="left", va="top", fontsize=11, weight="bold")

    y = height - _TOP_PX
    boxes = []
    for row in range(rows):
        t0 = row * seconds_per_row
        t1 = min(duration, t0 + seconds_per_row)
        axes = {}
        for name, px in parts:
            y -= px
            ax = fig.add_axes((_LEFT_PX / width, y / height, plot_w, px / height))
            ax.set_xlim(t0, t0 + seconds_per_row)
            ax.tick_params(axis="x", labelbottom=False, length=0)
            axes[name] = ax
        y -= _GAP_PX
        if has_reference:
            boxes += _draw_bars(axes["reference"], reference, t0, t1, "reference")
            ax = axes["errors"]
            ax.set_ylim(0, 1)
            ax.set_yticks([])
            for a, b, c in errors:
                a, b = max(a, t0), min(b, t1)
                if b > a:
                    if c == 0:
                        ax.add_patch(Rectangle((a, 0), b - a, 1, facecolor=_ERROR_COLOR, edgecolor="none"))
                    elif c < 0:
                        ax.add_patch(Rectangle((a, 0), b - a, 1, facecolor="white", edgecolor=_UNSCORED_COLOR,
                                               hatch="////", linewidth=0))
        boxes += _draw_bars(axes["estimate"], estimate, t0, t1, "estimate")
        bottom = axes["spectrogram"] if has_spectrogram else axes["estimate"]
        if has_spectrogram:
            fr = features.frame_rate
            lo = max(0, int(math.floor(t0 * fr)))
            hi = min(len(spectrogram), int(math.ceil(t1 * fr)) + 1)
            ax = bottom
            if hi > lo:
                ax.imshow(
                    spectrogram[lo:hi].T, origin="lower", aspect="auto", cmap="magma", vmin=0.0, vmax=vmax,
                    extent=((lo - 0.5) / fr, (hi - 0.5) / fr, -0.5, spectrogram.shape[1] - 0.5),
                    interpolation="nearest",
                )
            ax.set_xlim(t0, t0 + seconds_per_row)
            ax.set_ylim(-0.5, spectrogram.shape[1] - 0.5)
            ax.set_yticks(ticks)
            ax.set_yticklabels(tick_names, fontsize=7)
            for a, b, c in errors:
                a, b = max(a, t0), min(b, t1)
                if c == 0 and b > a:
                    ax.axvspan(a, b, color=_ERROR_COLOR, alpha=0.22, linewidth=0)
        bottom.tick_params(axis="x", labelbottom=True, length=3, labelsize=8)
        bottom.set_xticks(np.arange(t0, t0 + seconds_per_row + 1e-9, 5.0))
        if row == rows - 1:
            bottom.set_xlabel("time [s]", fontsize=8, labelpad=1)
    names = chord_names([(label, (end - start) * px_per_second) for _, start, end, label in boxes])
    for (ax, start, end, _), text in zip(boxes, names):
        if text:
            ax.text(0.5 * (start + end), 0.5, text, ha="center", va="center", fontsize=8, clip_on=True)
    if has_reference:
        handles = [
            Patch(color=_ERROR_COLOR, label=f"wrong ({error_metric})"),
            Patch(facecolor="white", edgecolor=_UNSCORED_COLOR, hatch="////", label="not scored"),
        ]
        fig.legend(handles=handles, loc="upper right", ncol=3, fontsize=8, frameon=False,
                   bbox_to_anchor=(1 - _RIGHT_PX / width, 1 - 4 / height))
    return _save_atomic(fig, out_png)


# ---------------------------------------------------------------------------------------------
# Training curves

TRAINING_CURVES_SIZE_PX = (1500, 450)


def _read_history(history: str | os.PathLike | Mapping[str, Sequence[float]]) -> dict[str, np.ndarray]:
    if isinstance(history, Mapping):
        return {k: np.asarray(v, dtype=np.float64) for k, v in history.items()}
    with open(history, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    columns: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = math.nan
            columns.setdefault(key, []).append(number)
    return {k: np.asarray(v, dtype=np.float64) for k, v in columns.items()}


def plot_training_curves(
    history: str | os.PathLike | Mapping[str, Sequence[float]], out_png: str | os.PathLike
) -> pathlib.Path:
    """Writes a PNG with loss, validation accuracy and throughput per epoch.

    Args:
        history: A Keras CSVLogger file or a dict of per-epoch lists (e.g. `History.history`).
            Used columns: "loss", "val_loss"; every "val_*accuracy" column; "songs_per_min"
            (throughput); "epoch" for the x axis when present (0-based as Keras writes it).
        out_png: Output file (written atomically), 1500 x 450 pixels.

    Returns:
        The written path.
    """
    columns = _read_history(history)
    lengths = {len(v) for v in columns.values()}
    num_epochs = max(lengths) if lengths else 0
    if "epoch" in columns and len(columns["epoch"]) == num_epochs:
        epochs = columns["epoch"] + 1
    else:
        epochs = np.arange(1, num_epochs + 1, dtype=np.float64)
    width, height = TRAINING_CURVES_SIZE_PX
    fig, axes = plt.subplots(1, 3, figsize=(width / DPI, height / DPI), dpi=DPI)

    def panel(ax, keys, title, ylabel, percent=False):
        drawn = False
        for key in keys:
            values = columns.get(key)
            if values is None or len(values) != num_epochs or np.all(np.isnan(values)):
                continue
            ax.plot(epochs, 100 * values if percent else values, marker="o", markersize=3, label=key)
            drawn = True
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes, color="gray")

    panel(axes[0], ["loss", "val_loss"], "loss", "loss")
    accuracy_keys = sorted(k for k in columns if k.startswith("val_") and k.endswith("accuracy"))
    panel(axes[1], accuracy_keys, "validation accuracy", "%", percent=True)
    panel(axes[2], ["songs_per_min"], "throughput", "songs / min")
    axes[2].set_ylim(bottom=0)
    fig.tight_layout()
    return _save_atomic(fig, out_png)
