"""benchmarks/robustness.py end to end on one short song, and the sample-based renderer it can use."""

import json
import pathlib

import numpy as np
import pretty_midi
import pytest
import soundfile

from chordkeras.synth import sampler
from helpers_benchmarks import load_benchmark

SR = 22050


def _benchmark():
    return load_benchmark("robustness")


def _note_samples(folder: pathlib.Path, names=("C4v10", "D#4v10", "F#4v10", "A4v10", "C3", "A2")) -> pathlib.Path:
    """Sine 'recordings' named like the Salamander files, 2 s each, decaying."""
    folder.mkdir()
    t = np.arange(2 * SR) / SR
    for name in names:
        freq = 440.0 * 2 ** ((sampler.note_number(name) - 69) / 12)
        soundfile.write(folder / f"{name}.wav", 0.5 * np.sin(2 * np.pi * freq * t) * np.exp(-t), SR)
    (folder / "README.txt").write_text("not a sample")
    return folder


@pytest.mark.parametrize("name, number", [("C4v10", 60), ("D#1v10", 27), ("Ds1", 27), ("Bb-1", 10),
                                          ("A0v10", 21), ("piano_F#5_soft", 78), ("README", None)])
def test_note_number(name, number):
    assert sampler.note_number(name) == number


def test_sampler_plays_each_note_from_the_nearest_sample_at_its_own_pitch(tmp_path):
    renderer = sampler.SampleRenderer(_note_samples(tmp_path / "notes"), sample_rate=SR)
    assert sorted(renderer.samples) == [45, 48, 60, 63, 66, 69]
    midi = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(0)
    inst.notes.append(pretty_midi.Note(127, 62, 0.5, 1.5))       # D4: from C4, read 2 semitones faster
    inst.control_changes.append(pretty_midi.ControlChange(10, 127, 0.0))   # right channel
    midi.instruments.append(inst)
    audio = renderer.render(midi)
    assert audio.shape[1] == 2 and np.all(audio[:, 0] == 0.0)
    tone = audio[int(0.6 * SR):int(1.4 * SR), 1]
    spectrum = np.abs(np.fft.rfft(tone * np.hanning(len(tone)), 16 * len(tone)))
    freqs = np.fft.rfftfreq(16 * len(tone), 1 / SR)
    assert freqs[np.argmax(spectrum)] == pytest.approx(440.0 * 2 ** ((62 - 69) / 12), rel=1e-3)
    assert np.all(audio[: int(0.5 * SR) - 1] == 0.0)                                # nothing before the note
    assert np.all(audio[int((1.5 + renderer.release) * SR) + 2:] == 0.0)          # nor after its release
    with pytest.raises(ValueError, match="no audio file named with a note"):
        sampler.SampleRenderer(tmp_path / "notes" / "missing")


@pytest.fixture(scope="module")
def model_export(tmp_path_factory):
    from chordkeras import export, model
    from chordkeras.config import resolve

    config = resolve("tiny")
    return export.export_model(model.build_model(config), config, tmp_path_factory.mktemp("run") / "export",
                               saved_model=False)


def test_conditions_and_a_sampled_instrument_scored_against_the_clean_song(tmp_path, model_export):
    bench = _benchmark()
    notes = _note_samples(tmp_path / "notes")
    argv = ["--model", str(model_export), "--songs", "1", "--minutes-per-song", "0.1", "--out", str(tmp_path / "out"),
            "--conditions", "peak -40 dBFS,bass +12 dB below 150 Hz", "--samples", str(notes)]
    assert bench.main(argv) == 0
    summary = json.loads((tmp_path / "out" / "robustness.json").read_text())
    rows = {row["condition"]: row for row in summary["conditions"]}
    close_mic = "close mic (bass +12 dB below 150 Hz, booth)"
    assert list(rows) == ["clean", "peak -40 dBFS", "bass +12 dB below 150 Hz", "built-in voices", "solo guitar",
                          "solo guitar, peak -40 dBFS", f"solo guitar, {close_mic}", "samples notes",
                          "solo piano, samples notes", "solo piano, samples notes, peak -40 dBFS",
                          f"solo piano, samples notes, {close_mic}"]
    assert [name for name, row in rows.items() if row["group"] == "solo"] == list(rows)[4:7] + list(rows)[8:]
    assert summary["held_out"] == {"songs": 1, "seed": 7, "minutes_per_song": 0.1}
    assert rows["clean"]["majmin_drop_points"] == 0.0 and rows["clean"]["same_labels_as_clean"] == 1.0
    assert 0.0 <= rows["peak -40 dBFS"]["same_labels_as_clean"] <= 1.0
    for row in rows.values():
        assert row["songs"] == 1 and 0.0 <= row["overall"]["majmin"] <= 1.0
        assert 0.0 <= row["predicted_n_share"] <= 1.0 and 0.0 < row["annotated_n_share"] < 1.0
        assert row["majmin_drop_points"] == pytest.approx(100 * (rows["clean"]["overall"]["majmin"]
                                                                 - row["overall"]["majmin"]))
    assert bench.main(argv[:-4] + ["--conditions", "no such condition"]) == 2


def test_frame_agreement():
    from chordkeras.annotations import Segment

    bench = _benchmark()
    a = [Segment(0.0, 1.0, "C:maj"), Segment(1.0, 2.0, "G:maj")]
    b = [Segment(0.0, 1.5, "C:maj"), Segment(1.5, 2.0, "G:maj")]
    # 10 frames per second over 2 s: frames at 1.0 .. 1.4 s differ (5 of 20).
    assert bench.frame_agreement(a, b, 2.0, 10.0) == pytest.approx(0.75)
