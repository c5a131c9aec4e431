"""Annotation files in and out, and frame-level label sampling."""

import json
import os
import pickle

import jams
import mir_eval
import numpy as np
import pytest

from chordkeras import annotations, vocab
from chordkeras.annotations import AnnotationError, Segment
from chordkeras.config import FeatureConfig


def _write(path, content, mode="w"):
    with open(path, mode) as f:
        f.write(content)
    return path


def test_lab_three_columns_tabs_spaces_comments(tmp_path):
    path = _write(
        tmp_path / "song.lab",
        "# chords of a test song\n"
        "0.0 1.5 C:maj\n"
        "\n"
        "1.5\t3.25\tA:min7/b3\r\n"
        "   3.25   4  N  \n"
        "  # indented comment\n"
        "4 4 X\n",
    )
    assert annotations.load_annotation(path) == [
        Segment(0.0, 1.5, "C:maj"),
        Segment(1.5, 3.25, "A:min7/b3"),
        Segment(3.25, 4.0, "N"),
        Segment(4.0, 4.0, "X"),
    ]


def test_lab_two_column_onsets_end_at_next_onset_and_duration(tmp_path):
    path = _write(tmp_path / "onsets.lab", "0 N\n0.5\tG:7\n2.0 C:maj\n")
    assert annotations.load_annotation(path, duration=3.0) == [
        Segment(0.0, 0.5, "N"),
        Segment(0.5, 2.0, "G:7"),
        Segment(2.0, 3.0, "C:maj"),
    ]
    with pytest.raises(AnnotationError, match="duration is needed"):
        annotations.load_annotation(path)
    with pytest.raises(AnnotationError) as info:
        annotations.load_annotation(path, duration=1.0)
    assert str(info.value).startswith(f"{path}:3: ") and "after the end of the audio" in str(info.value)


def test_lab_three_columns_ignore_duration(tmp_path):
    path = _write(tmp_path / "song.lab", "0 10 C:maj\n")
    assert annotations.load_annotation(path, duration=2.0) == [Segment(0.0, 10.0, "C:maj")]


def test_lab_small_overlap_is_tolerated(tmp_path):
    path = _write(tmp_path / "song.lab", "0 1.005 C:maj\n1.0 2 G:maj\n")
    assert [s.label for s in annotations.load_annotation(path)] == ["C:maj", "G:maj"]


@pytest.mark.parametrize(
    "content,line,problem",
    [
        ("0 1 C:maj\n1 2 H:maj\n", 2, "malformed chord label 'H:maj'"),
        ("0 1 C:maj\n1 2 C:maj9(\n", 2, "malformed chord label"),
        ("0 1 C:maj\n1 0.5 G:maj\n", 2, "end 0.5 is before start 1"),
        ("0 1 C:maj\n-1 2 G:maj\n", 2, "start -1 is negative"),
        ("0 1 C:maj\n1 -2 G:maj\n", 2, "end -2 is negative"),
        ("1 2 C:maj\n0 1 G:maj\n", 2, "start 0 is before the previous start 1"),
        ("0 2 C:maj\n1 3 G:maj\n", 2, "overlaps the previous one"),
        ("0 1 C:maj\nabc 2 G:maj\n", 2, "start 'abc' is not a number"),
        ("# header\n0 nan C:maj\n", 2, "end 'nan' is not finite"),
        ("0 1 C:maj extra\n", 1, "got 4"),
        ("C:maj\n", 1, "got 1"),
        ("0 1 C:maj\n\n1 G:maj\n", 3, "2 columns where line 1 has 3"),
        ("0 C:maj\n2 G:maj\n1 A:min\n", 3, "onset 1 is before the previous onset 2"),
    ],
)
def test_bad_lab_lines_name_file_and_line(tmp_path, content, line, problem):
    path = _write(tmp_path / "bad.lab", content)
    with pytest.raises(AnnotationError) as info:
        annotations.load_annotation(path, duration=10.0)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert problem in message
    assert info.value.line == line and info.value.path == str(path)


def test_bad_files_name_the_file(tmp_path):
    cases = {
        _write(tmp_path / "latin1.lab", "0 1 C:maj\n1 2 G:maj # caf\xe9\n".encode("latin-1"), "wb"): "not valid UTF-8",
        _write(tmp_path / "empty.lab", "# nothing here\n\n"): "no chord segments",
        tmp_path / "missing.lab": "cannot read file",
        _write(tmp_path / "song.txt", "0 1 C:maj\n"): "unsupported annotation format '.txt'",
        _write(tmp_path / "broken.jams", "{not json"): "not a readable JAMS file",
    }
    for path, problem in cases.items():
        with pytest.raises(AnnotationError) as info:
            annotations.load_annotation(path)
        assert str(info.value).startswith(f"{path}: ") and problem in str(info.value), str(info.value)
        assert info.value.line is None


def test_utf8_bom_is_accepted(tmp_path):
    path = _write(tmp_path / "bom.lab", "\ufeff0 1 C:maj\n".encode("utf-8"), "wb")
    assert annotations.load_annotation(path) == [Segment(0.0, 1.0, "C:maj")]


def test_annotation_error_survives_pickling():
    error = AnnotationError("a/b.lab", "end 1 is before start 2", 7)
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, ValueError)
    assert (str(copy), copy.path, copy.problem, copy.line) == ("a/b.lab:7: end 1 is before start 2", "a/b.lab",
                                                               "end 1 is before start 2", 7)


def test_lab_round_trip_through_mir_eval(tmp_path):
    segments = [Segment(0.0, 0.5, "N"), Segment(0.5, 2.25, "Db:maj/3"), Segment(2.25, 3.125, "G:7(b9)"),
                Segment(3.125, 4.0, "X")]
    path = tmp_path / "out.lab"
    annotations.write_lab(path, segments)
    intervals, labels = mir_eval.io.load_labeled_intervals(str(path))
    assert intervals.tolist() == [[0.0, 0.5], [0.5, 2.25], [2.25, 3.125], [3.125, 4.0]]
    assert labels == ["N", "Db:maj/3", "G:7(b9)", "X"]
    assert annotations.load_annotation(path) == segments
    assert os.listdir(tmp_path) == ["out.lab"]


def test_write_lab_refuses_bad_segments_and_keeps_old_file(tmp_path):
    path = tmp_path / "out.lab"
    annotations.write_lab(path, [Segment(0.0, 1.0, "C:maj")])
    with pytest.raises(vocab.LabelError):
        annotations.write_lab(path, [Segment(0.0, 1.0, "C:maj"), Segment(1.0, 2.0, "C major")])
    with pytest.raises(ValueError):
        annotations.write_lab(path, [Segment(2.0, 1.0, "C:maj")])
    assert path.read_text() == "0.000000\t1.000000\tC:maj\n"
    assert os.listdir(tmp_path) == ["out.lab"]


def test_interrupted_write_leaves_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "out.lab"
    annotations.write_lab(path, [Segment(0.0, 1.0, "C:maj")])

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(annotations.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        annotations.write_lab(path, [Segment(0.0, 1.0, "G:maj")])
    assert path.read_text() == "0.000000\t1.000000\tC:maj\n"
    assert os.listdir(tmp_path) == ["out.lab"]


def test_jams_round_trip_with_metadata(tmp_path):
    segments = [Segment(0.0, 1.5, "C:maj", 0.75), Segment(1.5, 3.25, "A:min7/b3", 0.5), Segment(3.25, 4.0, "N", 1.0)]
    path = tmp_path / "out.jams"
    annotations.write_jams(path, segments, 4.5, {"model": "crnn-large", "version": "0.1.0", "title": "Song", "run": 3})
    loaded = annotations.load_annotation(path)
    assert [(s.start, s.end, s.label) for s in loaded] == [(0.0, 1.5, "C:maj"), (1.5, 3.25, "A:min7/b3"),
                                                            (3.25, 4.0, "N")]
    jam = jams.load(str(path))  # validates against the JAMS schema
    assert jam.file_metadata.duration == 4.5 and jam.file_metadata.title == "Song"
    annotation = jam.annotations[0]
    assert annotation.namespace == "chord"
    assert annotation.annotation_metadata.annotator["name"] == "crnn-large"
    assert annotation.annotation_metadata.annotator["version"] == "0.1.0"
    assert annotation.annotation_metadata.version == "0.1.0"
    assert annotation.sandbox["run"] == 3
    assert [obs.confidence for obs in annotation.data] == [0.75, 0.5, 1.0]
    assert os.listdir(tmp_path) == ["out.jams"]


def test_jams_reads_first_chord_namespace(tmp_path):
    jam = jams.JAMS()
    jam.file_metadata.duration = 3.0
    beats = jams.Annotation(namespace="beat")
    beats.append(time=0.5, duration=0.0, value=1)
    harte = jams.Annotation(namespace="chord_harte")
    harte.append(time=0.0, duration=1.0, value="E:min")
    harte.append(time=1.0, duration=2.0, value="B:7/3")
    second = jams.Annotation(namespace="chord")
    second.append(time=0.0, duration=3.0, value="C:maj")
    jam.annotations.extend([beats, harte, second])
    path = tmp_path / "song.jams"
    jam.save(str(path))
    assert annotations.load_annotation(path) == [Segment(0.0, 1.0, "E:min"), Segment(1.0, 3.0, "B:7/3")]


def test_jams_errors(tmp_path):
    jam = jams.JAMS()
    jam.file_metadata.duration = 1.0
    beats = jams.Annotation(namespace="beat")
    beats.append(time=0.5, duration=0.0, value=1)
    jam.annotations.append(beats)
    path = tmp_path / "beats.jams"
    jam.save(str(path))
    with pytest.raises(AnnotationError) as info:
        annotations.load_annotation(path)
    assert str(info.value) == f"{path}: no chord annotation (namespaces chord, chord_harte); found: beat"

    # A label the schema would refuse, written around the schema check.
    data = {"annotations": [{"namespace": "chord", "data": [
        {"time": 0.0, "duration": 1.0, "value": "C:maj", "confidence": None},
        {"time": 1.0, "duration": 1.0, "value": "C:major", "confidence": None},
    ], "annotation_metadata": {}, "sandbox": {}, "time": 0, "duration": None}],
        "file_metadata": {"duration": 2.0}, "sandbox": {}}
    path = _write(tmp_path / "bad.jams", json.dumps(data))
    with pytest.raises(AnnotationError) as info:
        annotations.load_annotation(path)
    assert str(info.value).startswith(f"{path}: observation 2: malformed chord label 'C:major'")


def test_frame_labels_half_open_at_exact_boundaries():
    segments = [Segment(0.0, 1.0, "C:maj"), Segment(1.0, 2.5, "G:maj"), Segment(3.0, 4.0, "A:min")]
    times = [-0.25, 0.0, 0.5, 1.0, 2.25, 2.5, 2.75, 3.0, 3.75, 4.0, 9.0]
    assert annotations.frame_labels(segments, times) == [
        "N", "C:maj", "C:maj", "G:maj", "G:maj", "N", "N", "A:min", "A:min", "N", "N"
    ]


def test_frame_labels_on_feature_frame_times():
    config = FeatureConfig()
    times = np.asarray(config.frame_times(20))
    boundary = 10 * config.hop_length / config.sample_rate  # exactly frame 10's centre
    labels = annotations.frame_labels([Segment(0.0, boundary, "C:maj"), Segment(boundary, 5.0, "F:maj")], times)
    assert labels == ["C:maj"] * 10 + ["F:maj"] * 10


def test_frame_labels_overlaps_and_empty_segments():
    segments = [Segment(0.0, 2.0, "C:maj"), Segment(1.0, 1.0, "D:min"), Segment(1.5, 3.0, "E:min")]
    assert annotations.frame_labels(segments, [0.5, 1.0, 1.5, 2.5]) == ["C:maj", "C:maj", "E:min", "E:min"]
    assert annotations.frame_labels([], [0.0, 1.0]) == ["N", "N"]
    with pytest.raises(ValueError):
        annotations.frame_labels(segments, [1.0, 0.5])


def test_frame_targets_exact_values_and_one_encoding_per_label(monkeypatch):
    calls = []
    real = vocab.encode_targets

    def counting(label):
        calls.append(label)
        return real(label)

    monkeypatch.setattr(annotations.vocab, "encode_targets", counting)
    segments = [Segment(0.0, 1.0, "C:maj"), Segment(1.0, 2.0, "A:min7/b3"), Segment(2.0, 3.0, "C:maj"),
                Segment(3.0, 4.0, "A:min7/b3"), Segment(5.0, 6.0, "X")]
    targets = annotations.frame_targets(segments, [0.0, 1.0, 2.5, 3.5, 4.5, 5.0, 7.0])
    assert sorted(calls) == ["A:min7/b3", "C:maj", "N", "X"]
    assert {k: v.dtype for k, v in targets.items()} == {
        "chord": np.uint8, "root": np.uint8, "bass": np.uint8, "pitches": np.uint16
    }
    assert targets["chord"].tolist() == [2, 83, 2, 83, 0, 1, 0]
    assert targets["root"].tolist() == [0, 9, 0, 9, 12, 12, 12]
    assert targets["bass"].tolist() == [0, 0, 0, 0, 12, 12, 12]
    assert targets["pitches"].tolist() == [145, 657, 145, 657, 0, 0, 0]


def test_frame_targets_empty():
    targets = annotations.frame_targets([Segment(0.0, 1.0, "C:maj")], np.zeros(0))
    assert all(v.shape == (0,) for v in targets.values())


def test_fit_to_audio_cuts_n_past_the_end_whatever_its_length(tmp_path):
    # As in published annotations of studio albums: a long final N (fade, silence) past a shorter rip.
    path = _write(tmp_path / "fade.lab", "0.0 3.0 C:maj\n3.0 9.5 N\n9.5 30.0 N\n")
    segments, notes = annotations.fit_to_audio(path, duration=10.0)
    assert segments == [Segment(0.0, 3.0, "C:maj"), Segment(3.0, 9.5, "N"), Segment(9.5, 10.0, "N")]
    assert notes == ["cut at the audio's end (10.00 s): it ran 20.00 s past it, all of it N"]


def test_fit_to_audio_cuts_chords_up_to_the_tolerance_and_refuses_more(tmp_path):
    path = _write(tmp_path / "song.lab", "0.0 5.0 C:maj\n5.0 12.5 G:7\n12.5 13.0 N\n")
    segments, notes = annotations.fit_to_audio(path, duration=10.0, end_tolerance=3.0)
    assert segments == [Segment(0.0, 5.0, "C:maj"), Segment(5.0, 10.0, "G:7")]
    assert notes == ["cut at the audio's end (10.00 s): it ran 3.00 s past it, 2.50 s of them chords"]
    with pytest.raises(AnnotationError) as info:
        annotations.fit_to_audio(path, duration=10.0, end_tolerance=2.0)
    assert str(info.value) == (f"{path}: chords annotated until 12.50 s, 2.50 s after the audio ends (10.00 s; "
                               "tolerance 2 s): another edit of the recording?")
    with pytest.raises(ValueError, match="end_tolerance must be a non-negative"):
        annotations.fit_to_audio(path, duration=10.0, end_tolerance=-1.0)


def test_fit_to_audio_clips_times_before_zero(tmp_path):
    # The shape of the three such files of a published collection: an empty N first, then the first chord.
    path = _write(tmp_path / "early.lab", "0.0000 -0.1773 N\n-0.1773 0.5920 D\n0.5920 3.8224 A\n")
    segments, notes = annotations.fit_to_audio(path, duration=4.0)
    assert segments == [Segment(0.0, 0.592, "D"), Segment(0.592, 3.8224, "A")]
    assert notes == ["times before 0 (from -0.177 s) clipped to 0"]
    assert annotations.load_annotation(path, clip_before_zero=True) == segments
    with pytest.raises(AnnotationError, match=r"early.lab:1: end -0.1773 is negative"):
        annotations.load_annotation(path)


def test_fit_to_audio_leaves_a_fitting_annotation_alone(tmp_path):
    path = _write(tmp_path / "song.lab", "0.0 2.0 C:maj\n2.0 4.004 A:min\n")
    # 4 ms past the end is rounding: cut without a note.
    assert annotations.fit_to_audio(path, duration=4.0) == ([Segment(0.0, 2.0, "C:maj"), Segment(2.0, 4.0, "A:min")],
                                                           [])
    assert annotations.fit_to_audio(path, duration=6.0) == (annotations.load_annotation(path), [])
