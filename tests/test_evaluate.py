"""mir_eval scores per song and over a set, the confusion classifier, the CLI and the pictures."""

import csv
import json
import warnings

import mir_eval
import numpy as np
import pytest
from PIL import Image

from chordkeras import evaluate, inference, plots, scoring, vocab
from chordkeras.annotations import Segment, write_lab
from chordkeras.config import FeatureConfig

# 10 s: C major then G major; the estimate hears C major 2 s too long.
REFERENCE = [Segment(0.0, 5.0, "C:maj"), Segment(5.0, 10.0, "G:maj")]
ESTIMATE = [Segment(0.0, 7.0, "C:maj"), Segment(7.0, 10.0, "G:maj")]


def mir_eval_scores(reference, estimate):
    ref_iv = np.array([[s.start, s.end] for s in reference])
    est_iv = np.array([[s.start, s.end] for s in estimate])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mir_eval.chord.evaluate(ref_iv, [s.label for s in reference], est_iv, [s.label for s in estimate])


def test_two_seconds_wrong_in_ten_scores_point_eight():
    results = scoring.evaluate_pairs([("song", REFERENCE, ESTIMATE)])
    song = results["songs"]["song"]
    for name in scoring.CHORD_METRICS:
        assert song[name] == pytest.approx(0.8, abs=1e-12), name
        assert results["overall"][name] == pytest.approx(0.8, abs=1e-12), name
    # Reference boundary at 5 s, estimate at 7 s: 2 s of the 10 s in a wrong-sized piece either way.
    assert song["overseg"] == pytest.approx(0.8)
    assert song["underseg"] == pytest.approx(0.8)
    assert song["seg"] == pytest.approx(0.8)
    assert song["duration"] == 10.0


def test_per_song_scores_equal_mir_eval_evaluate():
    rng = np.random.default_rng(3)
    labels = ["N", "X", "C:maj", "C:min", "G:maj", "G:7", "C:maj/3", "A:min7", "F:maj7", "D:dim", "E:hdim7",
              "C:sus4", "B:aug", "C:maj6", "A:min/b3", "G:7/b7"]

    def random_annotation(duration):
        bounds = np.concatenate([[0.0], np.sort(rng.uniform(0, duration, rng.integers(0, 8))), [duration]])
        return [Segment(float(a), float(b), str(rng.choice(labels))) for a, b in zip(bounds, bounds[1:]) if b > a]

    for trial in range(30):
        reference = random_annotation(10.0)
        estimate = random_annotation(float(rng.uniform(8.0, 12.0)))
        ours = scoring.evaluate_pairs([("s", reference, estimate)])["songs"]["s"]
        theirs = mir_eval_scores(reference, estimate)
        for name, value in theirs.items():
            if ours[name] is None:  # nothing comparable: mir_eval returns 0 with a warning
                assert value == 0.0
            else:
                assert ours[name] == value, (trial, name)


def test_wcsr_weights_songs_by_scored_duration():
    short = [Segment(0.0, 5.0, "A:min")]
    short_estimate = [Segment(0.0, 5.0, "A:min")]
    # Song 2: 6 s, of which 2 s are X (unscored) and 1 s is wrong.
    with_x = [Segment(0.0, 2.0, "X"), Segment(2.0, 6.0, "D:min")]
    with_x_estimate = [Segment(0.0, 5.0, "D:min"), Segment(5.0, 6.0, "F:maj")]
    results = scoring.evaluate_pairs(
        [("a", REFERENCE, ESTIMATE), ("b", short, short_estimate), ("c", with_x, with_x_estimate)]
    )
    assert results["songs"]["c"]["majmin"] == pytest.approx(3.0 / 4.0)
    # (8 + 5 + 3) right seconds of (10 + 5 + 4) scored seconds.
    assert results["overall"]["majmin"] == pytest.approx(16.0 / 19.0)
    assert results["weights"]["majmin"] == pytest.approx(19.0)
    # Segmentation: duration-weighted mean over songs (c: estimate boundary at 5 s, reference at 2 s).
    seg = {k: results["songs"][k]["seg"] for k in "abc"}
    assert results["overall"]["seg"] == pytest.approx((10 * seg["a"] + 5 * seg["b"] + 6 * seg["c"]) / 21)
    assert results["total_duration"] == pytest.approx(21.0)


def test_nothing_comparable_gives_none_not_zero():
    reference = [Segment(0.0, 4.0, "C:dim")]  # majmin cannot score a diminished chord
    results = scoring.evaluate_pairs([("d", reference, [Segment(0.0, 4.0, "C:min")])])
    assert results["songs"]["d"]["majmin"] is None
    assert results["overall"]["majmin"] is None
    assert results["songs"]["d"]["root"] == 1.0


@pytest.mark.parametrize(
    "reference, estimate, category",
    [
        ("C:maj", "C:maj", None),
        ("C:maj", "C", None),
        ("Db:maj", "C#:maj", None),
        ("X", "C:maj", None),
        ("C:maj", "C:min", scoring.MAJ_VS_MIN),
        ("A:min7", "A:7", scoring.MAJ_VS_MIN),
        ("C:maj", "G:maj", scoring.ROOT_FIFTH),
        ("C:maj", "F:min", scoring.ROOT_FIFTH),
        ("C:maj", "D:maj", scoring.OTHER_ROOT),
        ("C:maj/3", "C:maj", scoring.INVERSION),
        ("G:7/b7", "G:7", scoring.INVERSION),
        ("G:7", "G:maj", scoring.SEVENTH_MISSED),
        ("G:maj", "G:maj7", scoring.SEVENTH_ADDED),
        ("G:maj7", "G:7", scoring.SEVENTH_WRONG),
        ("N", "C:maj", scoring.N_VS_CHORD),
        ("C:maj", "N", scoring.N_VS_CHORD),
        ("C:maj", "X", scoring.UNKNOWN_ESTIMATE),
        ("C:maj", "C:sus4", scoring.OTHER_QUALITY),
        ("C:dim", "C:aug", scoring.MAJ_VS_MIN),
        ("C:maj", "C:aug", scoring.OTHER_QUALITY),
    ],
)
def test_classify_error(reference, estimate, category):
    assert scoring.classify_error(reference, estimate) == category


def test_confusion_summary_adds_up_durations():
    reference = [Segment(0, 4, "C:maj"), Segment(4, 8, "G:7"), Segment(8, 10, "N"), Segment(10, 12, "X")]
    estimate = [Segment(0, 3, "C:maj"), Segment(3, 4, "C:min"), Segment(4, 8, "G:maj"), Segment(8, 12, "C:maj")]
    confusions = scoring.evaluate_pairs([("s", reference, estimate)])["confusions"]
    assert confusions["scored_seconds"] == pytest.approx(10.0)
    assert confusions["error_seconds"] == pytest.approx(7.0)
    assert [(c["category"], c["seconds"]) for c in confusions["categories"]] == [
        (scoring.SEVENTH_MISSED, 4.0),
        (scoring.N_VS_CHORD, 2.0),
        (scoring.MAJ_VS_MIN, 1.0),
    ]
    assert confusions["pairs"][0] == {
        "reference": "G:7", "estimate": "G:maj", "category": scoring.SEVENTH_MISSED, "seconds": 4.0
    }
    text = scoring.format_confusions(confusions)
    assert "G:7 -> G:maj" in text and "70.0%" in text


def test_record_labels_restore_inversions():
    large = vocab.get_vocabulary("large")
    chord = np.array([large.encode("C:maj"), large.encode("C:maj"), large.encode("A:min7"), 0, 1])
    root = np.array([0, 0, 9, 12, 12])
    bass = np.array([0, 4, 4, 12, 12])  # E under C major is the third, under A minor the fifth
    assert inference.record_labels(chord, root, bass) == ["C:maj", "C:maj/3", "A:min7/5", "N", "X"]


def test_cli_on_folders_writes_json_and_csv(tmp_path, capsys):
    refs, ests, out = tmp_path / "ref", tmp_path / "est", tmp_path / "out"
    (refs / "album").mkdir(parents=True)
    (ests / "album").mkdir(parents=True)
    write_lab(refs / "album" / "one.lab", REFERENCE)
    write_lab(ests / "album" / "one.lab", ESTIMATE)
    write_lab(refs / "two.lab", [Segment(0.0, 5.0, "A:min")])
    write_lab(ests / "two.lab", [Segment(0.0, 5.0, "A:min")])
    write_lab(refs / "three.lab", [Segment(0.0, 5.0, "A:min")])  # no estimate: reported
    assert evaluate.main([str(refs), str(ests), "--out", str(out), "--plot"]) == 1  # an estimate is missing
    printed = capsys.readouterr()
    assert "ALL (WCSR)" in printed.out and "missing estimates (1): three" in printed.err
    results = json.loads((out / "evaluation.json").read_text())
    assert set(results["songs"]) == {"album/one", "two"}
    assert results["overall"]["majmin"] == pytest.approx(13.0 / 15.0)
    assert results["missing_estimates"] == ["three"]
    rows = list(csv.DictReader((out / "evaluation.csv").open()))
    assert [r["song"] for r in rows] == ["album/one", "two", "ALL (WCSR)"]
    assert float(rows[0]["majmin"]) == pytest.approx(0.8)
    assert float(rows[-1]["duration"]) == pytest.approx(15.0)
    with Image.open(out / "plots" / "album" / "one.png") as image:
        assert image.size == plots.song_figure_size(10.0, has_reference=True, has_spectrogram=False)
    assert not list(out.glob("**/*.tmp"))


def test_cli_refuses_mixed_modes(tmp_path):
    with pytest.raises(SystemExit):
        evaluate.main([str(tmp_path), str(tmp_path), "--model", "m"])
    with pytest.raises(SystemExit):
        evaluate.main([])


def test_song_plot_has_the_expected_size_and_content(tmp_path):
    features = FeatureConfig()
    rng = np.random.default_rng(4)
    duration = 75.0
    spectrogram = rng.gamma(1.0, 0.5, size=(features.num_frames(int(duration * features.sample_rate)), features.n_bins))
    reference = [Segment(float(t), float(t + 2.5), lab) for t, lab in zip(np.arange(0, 75, 2.5), ["C:maj", "A:min", "F:maj", "G:7"] * 8)]
    estimate = [Segment(s.start, s.end, "C:min" if i % 5 == 0 else s.label) for i, s in enumerate(reference)]
    path = plots.plot_song(tmp_path / "song.png", estimate, spectrogram, features, reference=reference,
                           duration=duration, title="song")
    # Two rows of 60 s, each 26 + 10 + 26 + 150 px of axes and a 46 px gap, under a 40 px title.
    assert plots.song_figure_size(duration, has_reference=True) == (1600, 40 + 2 * 258)
    with Image.open(path) as image:
        assert image.size == (1600, 556)
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3).astype(int)
    # Error marks are drawn in the error red.
    red = np.array([0xD6, 0x27, 0x28])
    assert np.any(np.all(np.abs(pixels - red) < 8, axis=1))


def test_one_picture_names_every_chord_one_way():
    # A name fits a box 6 px per character + 4 px wide: 'F:min' needs 34 px, 'Fm' 16, 'C' and 'N' 10.
    assert plots.chord_names([("F:min", 34.0), ("C:maj", 200.0), ("N", 10.0)]) == ["F:min", "C:maj", "N"]
    # One box with room for 'Fm' but not for 'F:min': the shorthand in every box.
    assert plots.chord_names([("F:min", 33.9), ("C:maj", 200.0), ("A:hdim7/b7", 200.0), ("N", 10.0)]) == [
        "Fm", "C", "Am7b5/b7", "N"]
    # A box with room for no name at all needs no shorthand: it stays empty, the Harte labels stay.
    assert plots.chord_names([("F:min", 15.9), ("C:maj", 200.0)]) == ["", "C:maj"]
    # Under the shorthand, a box without room for its shorthand ('Gm7' needs 22 px) stays empty as well.
    assert plots.chord_names([("F:min", 20.0), ("G:min7", 21.9), ("G:min7", 22.0)]) == ["Fm", "", "Gm7"]
    assert plots.chord_names([]) == []


def test_a_song_picture_names_its_chords_one_way_over_both_bars_and_every_row(tmp_path, monkeypatch):
    import matplotlib.axes

    written = []
    text = matplotlib.axes.Axes.text

    def recorded(ax, x, y, s, **kwargs):
        written.append(s)
        return text(ax, x, y, s, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "text", recorded)
    # Two rows of 5 s at (1600 - 70 - 20) / 5 = 302 px/s: only F:min, 0.1 s = 30.2 px, needs the shorthand.
    reference = [Segment(0.0, 4.0, "C:maj"), Segment(4.0, 4.1, "F:min"), Segment(4.1, 8.0, "G:maj")]
    estimate = [Segment(0.0, 8.0, "C:maj")]
    plots.plot_song(tmp_path / "song.png", estimate, reference=reference, duration=8.0, seconds_per_row=5.0)
    # Row 1: reference C, Fm, G, estimate C; row 2: reference G, estimate C.
    assert written == ["C", "Fm", "G", "C", "G", "C"]
    written.clear()
    reference[1] = Segment(4.0, 4.2, "F:min")  # 60.4 px: room for 'F:min'
    plots.plot_song(tmp_path / "song.png", estimate, reference=reference, duration=8.0, seconds_per_row=5.0)
    assert written == ["C:maj", "F:min", "G:maj", "C:maj", "G:maj", "C:maj"]


def test_training_curves_png(tmp_path):
    history = tmp_path / "history.csv"
    history.write_text(
        "epoch,loss,val_loss,val_chord_accuracy,songs_per_min\n0,2.0,2.1,0.3,300\n1,1.5,1.8,0.5,310\n"
    )
    path = plots.plot_training_curves(history, tmp_path / "curves.png")
    with Image.open(path) as image:
        assert image.size == plots.TRAINING_CURVES_SIZE_PX
    path = plots.plot_training_curves({"loss": [1.0, 0.5]}, tmp_path / "curves2.png")
    assert path.exists()


def test_cli_scores_the_good_songs_and_names_missing_empty_and_malformed_estimates(tmp_path, capsys):
    refs, ests, out = tmp_path / "ref", tmp_path / "est", tmp_path / "out"
    refs.mkdir()
    ests.mkdir()
    for name in ("good", "empty", "malformed", "missing"):
        write_lab(refs / f"{name}.lab", [Segment(0.0, 5.0, "A:min")])
    write_lab(ests / "good.lab", [Segment(0.0, 4.0, "A:min"), Segment(4.0, 5.0, "C:maj")])
    (ests / "empty.lab").write_text("")
    (ests / "malformed.lab").write_text("0.0 5.0 A:notachord\n")
    assert evaluate.main([str(refs), str(ests), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    results = json.loads((out / "evaluation.json").read_text())
    assert set(results["songs"]) == {"good"}
    assert results["overall"]["majmin"] == pytest.approx(4.0 / 5.0)
    assert results["missing_estimates"] == ["missing"]
    reasons = {item["song"]: item["reason"] for item in results["failed"]}
    assert reasons["empty"].startswith(f"{ests / 'empty.lab'}") and reasons["empty"].endswith("no chord segments")
    assert str(ests / "malformed.lab") in reasons["malformed"] and "A:notachord" in reasons["malformed"]
    assert f"chordkeras.evaluate: failed empty: {reasons['empty']}" in err
    assert err.strip().splitlines()[-1] == "chordkeras.evaluate: 1 song(s) scored, 2 failed, 1 without an estimate"


def test_cli_errors_are_one_line_and_debug_raises(tmp_path, capsys, monkeypatch):
    missing = tmp_path / "no-estimates"
    (tmp_path / "ref").mkdir()
    write_lab(tmp_path / "ref" / "a.lab", [Segment(0.0, 5.0, "A:min")])
    monkeypatch.delenv("CHORDKERAS_DEBUG", raising=False)
    assert evaluate.main([str(tmp_path / "ref"), str(missing), "--out", str(tmp_path / "out")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chordkeras.evaluate: error: ")
    with pytest.raises(ValueError):
        evaluate.main([str(tmp_path / "ref"), str(missing), "--out", str(tmp_path / "out"), "--debug"])
    monkeypatch.setenv("CHORDKERAS_DEBUG", "1")
    with pytest.raises(ValueError):
        evaluate.main([str(tmp_path / "ref"), str(missing), "--out", str(tmp_path / "out")])


def test_n_seconds_counts_n_inside_the_span_only():
    segments = [Segment(0.0, 1.5, "N"), Segment(1.5, 4.0, "C:maj"), Segment(4.0, 7.0, "N")]
    assert scoring.n_seconds(segments, 0.0, 7.0) == 4.5
    # 1.0-1.5 of the first N, 4.0-6.0 of the last.
    assert scoring.n_seconds(segments, 1.0, 6.0) == 2.5
    assert scoring.n_seconds(segments, 1.5, 4.0) == 0.0
