"""benchmarks/generalisation.py end to end on one short song, with two SoundFonts made from TimGM6mb."""

import json
import pathlib
import struct

import numpy as np
import pytest

from helpers_benchmarks import load_benchmark


def _benchmark():
    return load_benchmark("generalisation")


def _brighter_copy(source: pathlib.Path, target: pathlib.Path) -> pathlib.Path:
    """The SoundFont with every sample's sign flipped at every other sample: same notes, other timbre."""
    data = bytearray(source.read_bytes())
    at = data.find(b"smpl")
    size = struct.unpack_from("<I", data, at + 4)[0]
    samples = np.frombuffer(bytes(data[at + 8:at + 8 + size]), "<i2").astype(np.int32)
    samples[1::2] *= -1
    data[at + 8:at + 8 + size] = np.clip(samples, -32768, 32767).astype("<i2").tobytes()
    target.write_bytes(bytes(data))
    return target


@pytest.fixture(scope="module")
def model_export(tmp_path_factory):
    from chordkeras import export, model
    from chordkeras.config import resolve

    config = resolve("tiny")
    return export.export_model(model.build_model(config), config, tmp_path_factory.mktemp("run") / "export",
                               saved_model=False)


@pytest.mark.slow
def test_same_songs_under_two_fonts_scored_and_checked(tmp_path, model_export, capsys):
    from chordkeras.synth import render

    bench = _benchmark()
    timgm = render.default_soundfont()
    other = _brighter_copy(timgm, tmp_path / "Other Font.sf2")
    argv = ["--model", str(model_export), "--songs", "1", "--minutes-per-song", "0.1", "--root", str(tmp_path / "tf"),
            "--out", str(tmp_path / "out"), "--workers", "1", "--no-progress",
            "--soundfont", str(timgm), "--soundfont", str(other)]
    assert bench.main(argv) == 0

    summary = json.loads((tmp_path / "out" / "generalisation.json").read_text())
    assert [f["key"] for f in summary["fonts"]] == ["timgm6mb", "other_font"]
    assert summary["labels_identical"] and summary["held_out"] == {"songs": 1, "seed": 7, "minutes_per_song": 0.1}
    first, second = summary["fonts"]
    drop = 100 * (first["overall"]["majmin"] - second["overall"]["majmin"])
    assert second["majmin_drop_points"] == pytest.approx(drop)
    assert first["spectrum"]["centroid_hz"] != second["spectrum"]["centroid_hz"]
    assert (tmp_path / "out" / "other_font" / "evaluation.json").exists()
    labs = [(tmp_path / "tf" / f"generalisation-{k}" / "audio" / "song_00000.lab").read_text()
            for k in ("timgm6mb", "other_font")]
    assert labs[0] == labs[1]

    # A label that differs between the fonts invalidates the comparison.
    lab = tmp_path / "tf" / "generalisation-other_font" / "audio" / "song_00000.lab"
    lines = lab.read_text().splitlines()
    start, end, label = lines[-1].split("\t")
    lines[-1] = "\t".join([start, end, "D:maj" if label == "C:maj" else "C:maj"])
    lab.write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert bench.main(argv) == 2
    assert "song_00000.lab: labels differ between timgm6mb and other_font" in capsys.readouterr().err


@pytest.mark.slow
def test_the_same_font_twice_is_refused(tmp_path, model_export, capsys):
    from chordkeras.synth import render

    bench = _benchmark()
    timgm = render.default_soundfont()
    copy = tmp_path / "copy.sf2"
    copy.write_bytes(timgm.read_bytes())
    argv = ["--model", str(model_export), "--songs", "1", "--minutes-per-song", "0.05", "--root", str(tmp_path / "tf"),
            "--out", str(tmp_path / "out"), "--workers", "1", "--no-progress",
            "--soundfont", str(timgm), "--soundfont", str(copy)]
    assert bench.main(argv) == 2      # identical audio: the fonts would measure nothing
    assert "copy and timgm6mb rendered identical audio" in capsys.readouterr().err


def test_font_key():
    bench = _benchmark()
    assert bench.font_key(pathlib.Path("/x/MuseScore_General Lite.sf3")) == "musescore_general_lite"


def test_a_missing_default_font_is_named_with_its_package_and_nothing_is_installed(tmp_path):
    bench = _benchmark()
    missing = tmp_path / "FluidR3_GM.sf2"
    with pytest.raises(ValueError, match=r"FluidR3_GM.sf2 is missing: .*fluid-soundfont-gm "
                                         r"\(sudo apt-get install fluid-soundfont-gm\)"):
        bench.ensure_soundfont(str(missing), "fluid-soundfont-gm")
    with pytest.raises(ValueError, match="mine.sf2: SoundFont not found"):
        bench.ensure_soundfont(str(tmp_path / "mine.sf2"), None)
    assert sorted(tmp_path.iterdir()) == []
    present = tmp_path / "present.sf2"
    present.write_bytes(b"RIFF")
    assert bench.ensure_soundfont(str(present), "some-package") == present
