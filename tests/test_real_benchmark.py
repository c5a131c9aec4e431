"""benchmarks/real.py end to end on generated songs: the code path of the real-recording benchmark."""

import json

import pytest

from chordkeras import preparation
from chordkeras.config import FeatureConfig
from helpers_benchmarks import load_benchmark
from helpers_data import write_songs

pytestmark = pytest.mark.slow  # transcribes audio


@pytest.fixture(scope="module")
def model_export(tmp_path_factory):
    from chordkeras import export, model
    from chordkeras.config import resolve

    config = resolve("tiny")
    return export.export_model(model.build_model(config), config, tmp_path_factory.mktemp("run") / "export",
                               saved_model=False)


def test_scores_n_shares_and_skips_on_generated_songs(tmp_path, model_export):
    bench = load_benchmark("real")
    songs = tmp_path / "songs"
    for album in ("a", "b", "c"):
        write_songs(songs / album, 2)   # 4 s each: 2 s of C major, then 2 s of A minor
    # Half a second of N at the start, and an annotation running 1 s past the audio (in N): cut, scored.
    (songs / "a" / "song0.lab").write_text("0.0 0.5 N\n0.5 2.0 C:maj\n2.0 4.0 A:min\n4.0 5.0 N\n")
    # Chords 6 s past the end: another edit of the recording, left out and listed.
    (songs / "a" / "song1.lab").write_text("0.0 2.0 C:maj\n2.0 10.0 A:min\n")
    preparation.prepare_dataset(songs, tmp_path / "prepared", FeatureConfig(), preparation.PrepareConfig(
        split_fractions=(1, 1, 1), split_by="folder", workers=1), progress=False)
    test_album = next(p for p in (tmp_path / "prepared").glob("test-*.tfrecord.json"))
    test_ids = set(json.loads(test_album.read_text())["songs"])
    assert bench.split_song_ids(tmp_path / "prepared", "test") == test_ids
    out = tmp_path / "out"
    argv = ["--model", str(model_export), "--model", str(model_export), "--name", "first", "--name", "second",
            "--data", str(songs), "--out", str(out)]
    assert bench.main(argv) == 0
    report = json.loads((out / "real.json").read_text())
    first = report["models"]["first"]
    assert first["num_songs"] == 5 and [s["song"] for s in first["skipped"]] == ["a/song1"]
    assert "6.00 s after the audio ends" in first["skipped"][0]["reason"]
    # Annotated N: 0.5 s of song a/song0's 4 s (its N past the end is cut), none in the other four songs.
    assert first["songs"]["a/song0"]["annotated_n_share"] == pytest.approx(0.5 / 4.0)
    assert first["overall"]["annotated_n_share"] == pytest.approx(0.5 / 20.0)
    assert 0.0 <= first["overall"]["predicted_n_share"] <= 1.0
    for metric in bench.REPORTED:
        assert 0.0 <= first["overall"][metric] <= 1.0
    # The same model twice: the same figures, one table row each.
    assert report["models"]["second"]["overall"] == first["overall"]
    assert report["table"].splitlines()[2].startswith("| first | 5 | ")
    assert report["table"].splitlines()[3].startswith("| second | 5 | ")
    assert first["confusions"]["scored_seconds"] == pytest.approx(20.0)  # N counts; no X here
    # One split of the prepared dataset: only its album's songs.
    assert bench.main(["--model", str(model_export), "--data", str(songs), "--split-of", str(tmp_path / "prepared"),
                       "--split", "test", "--out", str(tmp_path / "split"), "--decode", "viterbi"]) == 0
    split = json.loads((tmp_path / "split" / "real.json").read_text())
    assert report["decode"] == "family" and split["decode"] == "viterbi"
    assert list(split["models"]) == [model_export.parent.name]   # rows are named after the run folder by default
    (row,) = split["models"].values()
    scored = set(row["songs"]) | {s["song"] for s in row["skipped"]}
    assert scored == test_ids
