"""Transcription end to end: audio files -> model -> decoding -> .lab/.jams/.csv, windows, pictures."""

import csv
import dataclasses
import json

import keras
import mir_eval
import numpy as np
import pytest
import soundfile
from PIL import Image

import chordkeras
from chordkeras import annotations, evaluate, export, inference, plots, predict, scoring, vocab
from chordkeras import features as features_lib
from chordkeras.audio import ArraySource, open_audio
from chordkeras.config import FeatureConfig, RunConfig

FEATURES = FeatureConfig()
MAJMIN = vocab.get_vocabulary("majmin")


def render_chord(label: str, seconds: float, sample_rate: int, rng) -> np.ndarray:
    """Sine partials of the chord's pitch classes over three octaves (2nd partial at half level)."""
    num = int(round(seconds * sample_rate))
    t = np.arange(num) / sample_rate
    root, bits, _ = mir_eval.chord.encode(label)
    out = np.zeros(num)
    if root >= 0:
        for degree in np.flatnonzero(bits):
            for octave in (3, 4, 5):
                f = 440.0 * 2 ** (((root + degree) % 12 + 12 * (octave + 1) - 69) / 12)
                phase = rng.uniform(0, 2 * np.pi)
                out += np.sin(2 * np.pi * f * t + phase) + 0.5 * np.sin(4 * np.pi * f * t + phase)
        out *= 0.05
    fade = min(num // 2, int(0.01 * sample_rate))
    if fade:
        ramp = np.linspace(0, 1, fade)
        out[:fade] *= ramp
        out[-fade:] *= ramp[::-1]
    return out.astype(np.float32)


def render_song(segments, sample_rate, rng) -> np.ndarray:
    return np.concatenate([render_chord(s.label, s.end - s.start, sample_rate, rng) for s in segments])


@pytest.fixture(scope="module")
def keras_model_file(tmp_path_factory):
    """A per-frame classifier trained here on rendered triads: model.keras + model_card.json."""
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    labels = list(MAJMIN.class_names)
    audio = np.concatenate([render_chord(label, 1.5, FEATURES.sample_rate, rng) for label in labels])
    spectrogram = features_lib.log_spectrogram(audio, FEATURES).numpy()
    frame_seconds = np.arange(len(spectrogram)) / FEATURES.frame_rate
    targets = np.minimum((frame_seconds // 1.5).astype(int), len(labels) - 1)

    inputs = keras.Input((None, FEATURES.n_bins))
    hidden = keras.layers.Dense(48, activation="relu")(inputs)
    chord = keras.layers.Dense(len(labels), name="chord")(hidden)
    model = keras.Model(inputs, {"chord": chord})
    model.compile(optimizer=keras.optimizers.Adam(0.03),
                  loss={"chord": keras.losses.SparseCategoricalCrossentropy(from_logits=True)})
    # 60 steps in one epoch: Keras' per-epoch overhead would dominate 60 one-step epochs.
    steps = 60
    model.fit(np.repeat(spectrogram[None], steps, 0), {"chord": np.repeat(targets[None], steps, 0)},
              batch_size=1, epochs=1, verbose=0)

    folder = tmp_path_factory.mktemp("model")
    model.save(folder / "model.keras")
    config = dataclasses.replace(RunConfig(), data=dataclasses.replace(RunConfig().data, vocabulary="majmin"))
    export.write_model_card(folder, config)  # the card fit's export writes
    return folder / "model.keras"


def song_segments(rng, count=10):
    labels = [MAJMIN.class_names[i] for i in rng.integers(1, MAJMIN.num_classes, count)]
    bounds = np.concatenate([[0.0], np.cumsum(rng.choice([1.5, 2.0, 3.0], count))])
    return [annotations.Segment(float(a), float(b), label) for a, b, label in zip(bounds, bounds[1:], labels)]


def test_plan_windows_keeps_every_frame_once():
    for total, window, overlap in [(5, 10, 2), (100, 30, 6), (101, 30, 6), (1000, 646, 54), (31, 30, 29)]:
        windows = inference.plan_windows(total, window, overlap)
        kept = np.concatenate([np.arange(w.keep_start, w.keep_stop) for w in windows])
        np.testing.assert_array_equal(kept, np.arange(total))
        assert len({w.length for w in windows}) == 1 and windows[0].length <= window
        assert windows[0].start == 0 and windows[-1].start + windows[-1].length == total
        for a, b in zip(windows, windows[1:]):
            assert a.start + a.length - b.start >= overlap - 1  # rounding of the spread starts
    with pytest.raises(ValueError):
        inference.plan_windows(100, 10, 10)


# At the model's rate and at integer multiples of it chunk starts fall on exact samples; at other
# rates they are rounded to the nearest source sample (under 1/48000 s here).
@pytest.mark.parametrize("sample_rate, atol", [(22050, 1e-6), (44100, 1e-5), (48000, 2e-3)])
def test_chunked_spectrogram_matches_the_whole_song(keras_model_file, monkeypatch, sample_rate, atol):
    rng = np.random.default_rng(5)
    audio = render_song(song_segments(rng, 12), sample_rate, rng)
    whole = features_lib.log_spectrogram(features_lib.resample(audio, sample_rate, FEATURES.sample_rate), FEATURES)
    monkeypatch.setattr(inference, "FEATURE_CHUNK_SECONDS", 7.0)
    model = inference.load_chord_model(keras_model_file)
    chunked = model.source_spectrogram(ArraySource(audio, sample_rate))
    assert chunked.shape == whole.shape
    np.testing.assert_allclose(chunked, whole.numpy(), atol=atol)


@pytest.mark.parametrize("suffix", [".flac", ".mp3", ".ogg", ".wav"])
def test_audio_spans_match_the_whole_file(tmp_path, suffix):
    # A steady tone: libsndfile's MP3 decoder loses samples after a read that ends inside an MP3
    # frame on such a file, which is why MP3 goes through tensorflow-io.
    t = np.arange(44100 * 6) / 44100
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    path = tmp_path / f"tone{suffix}"
    soundfile.write(path, np.stack([tone, 0.5 * tone], axis=1), 44100)
    whole = soundfile.read(path, dtype="float32", always_2d=True)[0].mean(axis=1)
    source = open_audio(path, FEATURES.sample_rate)
    assert source.num_samples == len(whole) and source.sample_rate == 44100
    for start, stop in [(0, 50000), (40000, 140000), (100000, 100010), (150000, 10**9), (5000, 6000)]:
        np.testing.assert_allclose(source.read(start, stop), whole[start:stop], atol=1e-6)
    source.close()


def test_output_paths(tmp_path):
    for name in ("x/a.wav", "x/sub/b.flac", "x/notes.txt", "y/sub/b.mp3"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    x, y = tmp_path / "x", tmp_path / "y"
    assert predict.plan_outputs([x / "a.wav"], None, "lab") == ([(x / "a.wav", x / "a.chords.lab")], [])
    assert predict.plan_outputs([x], tmp_path / "out", "jams") == ([
        (x / "a.wav", tmp_path / "out" / "a.jams"),
        (x / "sub" / "b.flac", tmp_path / "out" / "sub" / "b.jams"),
    ], [])
    with pytest.raises(ValueError, match="both be written"):
        predict.plan_outputs([x, y], tmp_path / "out", "lab")
    # Inputs that give no audio file are named with the reason; the others are planned as before.
    (tmp_path / "no-audio").mkdir()
    (tmp_path / "no-audio" / "notes.txt").write_text("")
    assert predict.plan_outputs([tmp_path / "missing.wav", x / "a.wav", tmp_path / "no-audio"], None, "lab") == (
        [(x / "a.wav", x / "a.chords.lab")],
        [(tmp_path / "missing.wav", "no such file or folder"),
         (tmp_path / "no-audio", "no audio files (.wav, .flac, .ogg, .mp3, .aiff, .aif)")])


def test_transcribe_recovers_the_chords_of_a_stereo_44k_file(keras_model_file, tmp_path):
    rng = np.random.default_rng(1)
    reference = song_segments(rng)
    mono = render_song(reference, 44100, rng)
    soundfile.write(tmp_path / "song.wav", np.stack([mono, 0.5 * mono], axis=1), 44100)
    model = inference.load_chord_model(keras_model_file)
    segments = inference.transcribe(model, tmp_path / "song.wav")
    assert segments[0].start == 0.0 and segments[-1].end == pytest.approx(reference[-1].end, abs=1e-4)
    scores = scoring.evaluate_pairs([("song", reference, segments)])["songs"]["song"]
    assert scores["majmin"] > 0.9
    assert all(0.0 < s.confidence <= 1.0 for s in segments)


def test_windows_stitch_to_the_whole_song_probabilities(keras_model_file):
    rng = np.random.default_rng(2)
    audio = render_song(song_segments(rng, 12), FEATURES.sample_rate, rng)
    whole = inference.load_chord_model(keras_model_file, window_seconds=600.0)
    windowed = inference.load_chord_model(keras_model_file, window_seconds=8.0, overlap_seconds=2.0)
    expected, times = whole.probabilities(audio, FEATURES.sample_rate)
    probs, windowed_times = windowed.probabilities(audio, FEATURES.sample_rate)
    assert len(inference.plan_windows(len(expected), windowed.window_frames, windowed.overlap_frames)) > 3
    assert probs.shape == expected.shape == (FEATURES.num_frames(len(audio)), MAJMIN.num_classes)
    np.testing.assert_allclose(windowed_times, times)
    np.testing.assert_allclose(probs, expected, atol=1e-4)


@pytest.mark.slow
def test_cli_directory_in_directory_out(keras_model_file, tmp_path, capsys):
    rng = np.random.default_rng(3)
    songs = tmp_path / "songs"
    (songs / "disc1").mkdir(parents=True)
    references = {}
    for name, rate in [("disc1/a", 22050), ("b", 16000)]:
        references[name] = song_segments(rng, 5)
        soundfile.write(songs / f"{name}.flac", render_song(references[name], rate, rng), rate)
    out = tmp_path / "out"
    argv = [str(keras_model_file), str(songs), "--out", str(out), "--no-progress"]
    assert predict.main(argv + ["--plot"]) == 0
    assert "x real time" in capsys.readouterr().err
    for name, reference in references.items():
        intervals, labels = mir_eval.io.load_labeled_intervals(str(out / f"{name}.lab"))
        estimate = [annotations.Segment(a, b, label) for (a, b), label in zip(intervals, labels)]
        assert scoring.evaluate_pairs([(name, reference, estimate)])["overall"]["majmin"] > 0.9
        duration = reference[-1].end
        with Image.open(out / f"{name}.png") as image:
            assert image.size == plots.song_figure_size(duration, has_reference=False)

    assert predict.main(argv + ["--format", "jams", "--decode", "argmax"]) == 0
    assert annotations.load_annotation(out / "b.jams")[0].label == references["b"][0].label
    jam = json.loads((out / "b.jams").read_text())
    assert jam["annotations"][0]["annotation_metadata"]["version"] == chordkeras.__version__

    assert predict.main(argv + ["--format", "csv"]) == 0
    rows = list(csv.DictReader((out / "disc1" / "a.csv").open()))
    assert rows[0]["label"] == references["disc1/a"][0].label and float(rows[0]["start"]) == 0.0
    assert not list(out.glob("**/*.tmp"))


def test_cli_reports_each_recording_s_tuning(keras_model_file, tmp_path, capsys):
    """A chord of harmonic tones 30 cents sharp: predict says so on the console and in the JAMS sandbox
    (within 4 cents, as features.song_tuning reads it), with A4's frequency in that tuning."""
    rate = 22050
    t = np.arange(3 * rate) / rate
    f0 = 440.0 * 2 ** ((np.array([48, 52, 55, 60]) - 69 + 0.3) / 12)
    audio = sum(np.sin(2 * np.pi * f * h * t) / h for f in f0 for h in range(1, 6))
    soundfile.write(tmp_path / "sharp.wav", (0.05 * audio).astype(np.float32), rate)
    assert predict.main([str(keras_model_file), str(tmp_path / "sharp.wav"), "--format", "jams", "--no-progress"]) == 0
    sandbox = json.loads((tmp_path / "sharp.chords.jams").read_text())["annotations"][0]["sandbox"]
    assert abs(sandbox["tuning_cents"] - 30) < 4.0
    assert sandbox["a4_hz"] == pytest.approx(440 * 2 ** (sandbox["tuning_cents"] / 1200), abs=0.01)
    assert f"sharp.wav: tuned {sandbox['tuning_cents']:+.0f} cents from A440 (A4 = {sandbox['a4_hz']:.1f} Hz)" in \
        capsys.readouterr().err


def test_cli_reports_bad_inputs(keras_model_file, tmp_path, capsys):
    (tmp_path / "broken.wav").write_bytes(b"not audio at all")
    assert predict.main([str(keras_model_file), str(tmp_path / "missing.wav"), "--no-progress"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-2:] == [
        f"chordkeras.predict: failed {tmp_path / 'missing.wav'}: no such file or folder",
        "chordkeras.predict: 0 of 1 file(s) transcribed, 1 failed"]
    assert predict.main([str(keras_model_file), str(tmp_path / "broken.wav"), "--no-progress"]) == 1
    assert "failed" in capsys.readouterr().err


@pytest.fixture(scope="module")
def export_folder(tmp_path_factory):
    """The tiny default architecture with random weights, exported as fit exports it."""
    from chordkeras import export, model as model_lib
    from chordkeras.config import resolve

    config = resolve("tiny")
    model = model_lib.build_model(config)
    return export.export_model(model, config, tmp_path_factory.mktemp("run") / "export")


@pytest.mark.slow
def test_backends_agree_with_the_exported_signature(export_folder):
    from chordkeras import export

    rng = np.random.default_rng(6)
    mono = render_song(song_segments(rng, 8), 44100, rng) + 0.01 * rng.standard_normal(1).astype(np.float32)
    serve = export.load_saved_model(export_folder)
    direct = serve(audio=mono, sample_rate=np.int32(44100))
    expected = direct["probabilities"].numpy()
    for backend in ("saved_model", "keras"):
        model = inference.load_chord_model(export_folder, backend, window_seconds=600.0)
        probs, times = model.probabilities(np.stack([mono, mono], axis=1), 44100)
        assert probs.shape == expected.shape
        np.testing.assert_allclose(probs, expected, atol=1e-5, err_msg=backend)
        np.testing.assert_allclose(times, direct["frame_times"].numpy(), atol=1e-4)
    assert isinstance(inference.load_chord_model(export_folder), inference.KerasTranscriber)
    assert model.class_names == list(vocab.get_vocabulary("large").class_names)


@pytest.mark.slow
def test_cli_on_an_export_folder(export_folder, tmp_path):
    rng = np.random.default_rng(7)
    soundfile.write(tmp_path / "song.ogg", render_song(song_segments(rng, 4), 32000, rng), 32000)
    argv = [str(export_folder), str(tmp_path / "song.ogg"), "--out", str(tmp_path / "out"),
            "--backend", "saved_model", "--window-seconds", "6", "--no-progress"]
    assert predict.main(argv) == 0
    intervals, _ = mir_eval.io.load_labeled_intervals(str(tmp_path / "out" / "song.lab"))
    assert intervals[0, 0] == 0.0
    assert intervals[-1, 1] == pytest.approx(soundfile.info(tmp_path / "song.ogg").duration)
    assert predict.main([str(tmp_path), str(tmp_path / "song.ogg")]) == 2  # not a model


@pytest.mark.slow
def test_evaluate_a_model_on_prepared_records(export_folder, tmp_path):
    from helpers_data import write_tiny_dataset

    records = write_tiny_dataset(tmp_path / "tfrecords" / "tiny", FEATURES, songs_per_split=(1, 1, 2), frames=60)
    out = tmp_path / "eval"
    argv = ["--model", str(export_folder), "--records", str(records), "--out", str(out), "--plot", "--no-progress"]
    assert evaluate.main(argv) == 0
    results = json.loads((out / "evaluation.json").read_text())
    assert sorted(results["songs"]) == ["test/0", "test/1"]
    assert results["split"] == "test" and results["decode"] == "family"
    assert results["total_duration"] == pytest.approx(2 * 60 / FEATURES.frame_rate, rel=1e-6)
    with Image.open(out / "plots" / "test" / "0.png") as image:
        assert image.size == plots.song_figure_size(60 / FEATURES.frame_rate, has_reference=True)

    assert evaluate.main(argv[:6] + ["--sweep", "0.5,0.9", "--no-progress"]) == 0
    sweep = json.loads((out / "sweep.json").read_text())
    assert [(row["decode"], row["self_transition"]) for row in sweep] == [("argmax", None), ("family", 0.5),
                                                                          ("family", 0.9)]
    assert sweep[2]["overall"] == pytest.approx(results["overall"])



def test_cli_transcribes_the_good_files_of_a_folder_and_names_the_bad_ones(keras_model_file, tmp_path, capsys):
    rng = np.random.default_rng(5)
    songs, out = tmp_path / "songs", tmp_path / "out"
    songs.mkdir()
    soundfile.write(songs / "good.wav", render_song(song_segments(rng, 3), 22050, rng), 22050)
    (songs / "empty.wav").write_bytes(b"")
    # A WAV header (RIFF + fmt chunk) with no data chunk, as a writer killed after the header leaves it.
    header = (songs / "good.wav").read_bytes()[:36]
    (songs / "nodata.wav").write_bytes(header[:4] + (28).to_bytes(4, "little") + header[8:36])
    assert predict.main([str(keras_model_file), str(songs), "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert sorted(p.name for p in out.iterdir()) == ["good.lab"]
    failed = sorted(line for line in err if line.startswith("chordkeras.predict: failed "))
    assert [line.split(":")[1].strip() for line in failed] == [f"failed {songs / 'empty.wav'}",
                                                                f"failed {songs / 'nodata.wav'}"]
    assert err[-1] == "chordkeras.predict: 1 of 3 file(s) transcribed, 2 failed"


def test_cli_transcribes_the_other_inputs_when_one_is_missing(keras_model_file, tmp_path, capsys):
    rng = np.random.default_rng(8)
    soundfile.write(tmp_path / "a.wav", render_song(song_segments(rng, 3), 22050, rng), 22050)
    soundfile.write(tmp_path / "c.wav", render_song(song_segments(rng, 3), 22050, rng), 22050)
    missing, out = tmp_path / "b.wav", tmp_path / "out"
    argv = [str(keras_model_file), str(tmp_path / "a.wav"), str(missing), str(tmp_path / "c.wav"), "--out", str(out),
            "--no-progress"]
    assert predict.main(argv) == 1
    assert sorted(p.name for p in out.iterdir()) == ["a.lab", "c.lab"]
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-2:] == [f"chordkeras.predict: failed {missing}: no such file or folder",
                        "chordkeras.predict: 2 of 3 file(s) transcribed, 1 failed"]
