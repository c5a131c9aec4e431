import json
import subprocess
import sys
import os

import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf

from chordkeras import preparation, prepare, records, vocab
from chordkeras.config import FeatureConfig

SR = 22050
FEATURES = FeatureConfig()
LARGE = vocab.get_vocabulary("large")


def _triad(midi_notes, seconds):
    t = np.arange(int(seconds * SR)) / SR
    freqs = 440.0 * 2 ** ((np.asarray(midi_notes) - 69) / 12)
    return (0.2 * np.sin(2 * np.pi * freqs[:, None] * t)).sum(axis=0).astype(np.float32)


def _song(folder, name, fmt="WAV"):
    # 2 s of C major (C4 E4 G4) then 2 s of A minor (A3 C4 E4).
    audio = np.concatenate([_triad([60, 64, 67], 2.0), _triad([57, 60, 64], 2.0)])
    ext = {"WAV": ".wav", "FLAC": ".flac"}[fmt]
    sf.write(folder / f"{name}{ext}", audio, SR, format=fmt)
    (folder / f"{name}.lab").write_text("0.0 2.0 C:maj\n2.0 4.0 A:min\n")


def _run_cli(module, *args):
    # TF's own start-up lines (cuFFT registration, ...) are silenced so that stderr is ours alone.
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, env=env)


def _read_split(out, split):
    return [records.parse_song(s) for s in tf.data.TFRecordDataset(records.list_shards(out, split))]


@pytest.fixture
def songs(tmp_path):
    src = tmp_path / "songs"
    (src / "album").mkdir(parents=True)
    for i in range(4):
        _song(src / "album", f"song{i}", fmt="FLAC" if i % 2 else "WAV")
    return src


def test_prepare_writes_shards_labels_aligned_with_frames(songs, tmp_path):
    out = tmp_path / "out"
    info = preparation.prepare_dataset(songs, out, FEATURES, preparation.PrepareConfig(
        split_fractions=(2, 1, 1), songs_per_shard=1, workers=1), progress=False)
    assert {s: v["songs"] for s, v in info["splits"].items()} == {"train": 2, "valid": 1, "test": 1}
    assert info["total_hours"] == pytest.approx(4 * 4.0 / 3600, abs=1e-4)
    assert info["skipped"] == []
    assert sorted(p.name for p in out.glob("*.tfrecord")) == [
        "test-00000-of-00001.tfrecord", "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord",
        "valid-00000-of-00001.tfrecord"]
    song = _read_split(out, "test")[0]
    # 4 s = 88200 samples -> 1 + 88200 // 2048 = 44 frames; frame i is centred at i * 2048 / 22050 s.
    frames = 1 + 4 * SR // FEATURES.hop_length
    assert song["spectrogram"].shape == (frames, FEATURES.n_bins)
    times = np.arange(frames) * FEATURES.hop_length / SR
    expected = np.where(times < 2.0, LARGE.encode("C:maj"), LARGE.encode("A:min"))
    np.testing.assert_array_equal(song["chord"].numpy(), expected)
    np.testing.assert_array_equal(song["root"].numpy(), np.where(times < 2.0, 0, 9))
    assert song["song_id"].numpy().decode().startswith("album/song")
    # The histogram counts frames of all four songs.
    assert info["label_histogram"] == {"C:maj": 4 * int((times < 2.0).sum()), "A:min": 4 * int((times >= 2.0).sum())}
    # The loudest bin of the first frame sung by C major is one of C4, E4, G4 (2 bins per semitone from C1).
    loudest = int(np.argmax(song["spectrogram"].numpy()[5]))
    assert loudest in {2 * (60 - 24), 2 * (64 - 24), 2 * (67 - 24)}


def test_bad_inputs_are_skipped_and_listed_with_the_reason(songs, tmp_path):
    bad = songs / "bad"
    bad.mkdir()
    (bad / "garbage.wav").write_bytes(b"this is not audio at all" * 10)
    (bad / "garbage.lab").write_text("0 1 C:maj\n")
    sf.write(bad / "empty.wav", np.zeros(0, np.float32), SR)
    (bad / "empty.lab").write_text("0 1 C:maj\n")
    _song(bad, "nolabel")
    os.remove(bad / "nolabel.lab")
    _song(bad, "malformed")
    (bad / "malformed.lab").write_text("0.0 2.0 C:maj\n2.0 4.0 C:notachord\n")
    _song(bad, "toolong")
    (bad / "toolong.lab").write_text("0.0 2.0 C:maj\n2.0 9.0 A:min\n")
    name = os.fsencode(bad) + b"/caf\xe9"  # Latin-1, not UTF-8
    with open(name + b".wav", "wb") as f:
        f.write((songs / "album" / "song0.wav").read_bytes())
    with open(name + b".lab", "wb") as f:
        f.write(b"0.0 4.0 C:maj\n")
    out = tmp_path / "out"
    info = preparation.prepare_dataset(songs, out, FEATURES, preparation.PrepareConfig(workers=1), progress=False)
    assert sum(v["songs"] for v in info["splits"].values()) == 4
    reasons = {item["input"].rsplit("/", 1)[1]: item["reason"] for item in info["skipped"]}
    assert sorted(reasons) == ["caf\\xe9.wav", "empty.wav", "garbage.wav", "malformed.wav", "nolabel.wav",
                               "toolong.wav"]
    assert "not valid UTF-8" in reasons["caf\\xe9.wav"]
    assert "no samples" in reasons["empty.wav"]
    assert "garbage.wav" in reasons["garbage.wav"]
    assert "no annotation" in reasons["nolabel.wav"]
    assert "malformed.lab:2" in reasons["malformed.wav"] and "C:notachord" in reasons["malformed.wav"]
    assert "chords annotated until 9.00 s, 5.00 s after the audio ends (4.00 s" in reasons["toolong.wav"]
    # dataset.json is plain JSON, whatever the file names were.
    assert json.loads((out / "dataset.json").read_text())["skipped"] == info["skipped"]


def test_annotations_running_past_the_audio_are_trimmed_and_listed(songs, tmp_path):
    album = songs / "album"
    # song0: 1 s of N past the 4 s of audio; song1: 1.5 s of chords; song2: starts before 0; song3: 6 s of chords.
    (album / "song0.lab").write_text("0.0 2.0 C:maj\n2.0 4.0 A:min\n4.0 5.0 N\n")
    (album / "song1.lab").write_text("0.0 2.0 C:maj\n2.0 5.5 A:min\n")
    (album / "song2.lab").write_text("0.0 -0.2 N\n-0.2 2.0 C:maj\n2.0 4.0 A:min\n")
    (album / "song3.lab").write_text("0.0 2.0 C:maj\n2.0 10.0 A:min\n")
    out = tmp_path / "out"
    info = preparation.prepare_dataset(songs, out, FEATURES, preparation.PrepareConfig(workers=1), progress=False)
    trimmed = {item["annotation"].rsplit("/", 1)[1]: item["changes"] for item in info["trimmed"]}
    assert trimmed == {
        "song0.lab": ["cut at the audio's end (4.00 s): it ran 1.00 s past it, all of it N"],
        "song1.lab": ["cut at the audio's end (4.00 s): it ran 1.50 s past it, 1.50 s of them chords"],
        "song2.lab": ["times before 0 (from -0.200 s) clipped to 0"],
    }
    assert [item["input"].rsplit("/", 1)[1] for item in info["skipped"]] == ["song3.flac"]
    assert "6.00 s after the audio ends" in info["skipped"][0]["reason"]
    assert info["sources"][0]["trimmed"] == 3 and info["sources"][0]["prepared"] == 3
    frames = 1 + 4 * SR // FEATURES.hop_length
    times = np.arange(frames) * FEATURES.hop_length / SR
    for song in (s for split in records.SPLITS if info["splits"][split]["songs"] for s in _read_split(out, split)):
        # Every prepared song keeps its chords frame by frame, whatever was cut.
        np.testing.assert_array_equal(song["chord"].numpy(),
                                      np.where(times < 2.0, LARGE.encode("C:maj"), LARGE.encode("A:min")))
    # A wider tolerance takes the fourth song too.
    wide = preparation.prepare_dataset(songs, tmp_path / "wide", FEATURES,
                                       preparation.PrepareConfig(workers=1, end_tolerance=6.0), progress=False)
    assert wide["skipped"] == [] and len(wide["trimmed"]) == 4


def test_split_by_folder_keeps_albums_together():
    songs = [preparation.SongInput(f"album{a}/song{s}", f"/x/album{a}/song{s}.wav", None)
             for a in range(10) for s in range(3)] + [preparation.SongInput("single", "/x/single.wav", None)]
    splits = preparation.assign_splits(songs, (0.6, 0.2, 0.2), seed=0, split_by="folder")
    folders = {split: {s.song_id.split("/")[0] for s in items} for split, items in splits.items()}
    assert sum(len(f) for f in folders.values()) == 11  # 10 albums and the song at the top level
    assert not (folders["train"] & folders["valid"]) and not (folders["train"] & folders["test"])
    assert not (folders["valid"] & folders["test"])
    # 11 units at 0.6/0.2/0.2: 6.6, 2.2, 2.2 -> 7, 2, 2 (the remainder to the largest fractional part).
    assert [len(folders[s]) for s in records.SPLITS] == [7, 2, 2]
    for split, items in splits.items():
        for song in items:  # every song of an album lands where its album does
            assert song.song_id.split("/")[0] in folders[split]
    # The same songs listed in another order split the same way.
    again = preparation.assign_splits(songs[::-1], (0.6, 0.2, 0.2), seed=0, split_by="folder")
    assert again == splits
    # By song, the split is the one it always was (the song id alone is hashed).
    by_song = preparation.assign_splits(songs, (0.6, 0.2, 0.2), seed=0)
    assert by_song == preparation.assign_splits(songs, (0.6, 0.2, 0.2), seed=0, split_by="song")
    with pytest.raises(ValueError, match="split_by must be one of"):
        preparation.assign_splits(songs, (0.6, 0.2, 0.2), seed=0, split_by="artist")


def test_rerun_skips_complete_shards_and_redoes_an_interrupted_one(songs, tmp_path):
    out = tmp_path / "out"
    config = preparation.PrepareConfig(songs_per_shard=1, workers=1)
    preparation.prepare_dataset(songs, out, FEATURES, config, progress=False)
    shards = sorted(out.glob("*.tfrecord"))
    before = {p.name: p.stat().st_mtime_ns for p in shards}
    # An interrupted run: one shard never got renamed into place, a temporary is left behind.
    victim = shards[0]
    (out / f".{victim.name}.incomplete").write_bytes(b"half")
    victim.unlink()
    (out / records.DATASET_INFO).unlink()
    info = preparation.prepare_dataset(songs, out, FEATURES, config, progress=False)
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tfrecord")}
    assert sorted(after) == sorted(before)
    assert [n for n in after if after[n] != before[n]] == [victim.name]
    assert not list(out.glob(".*incomplete"))
    assert sum(v["songs"] for v in info["splits"].values()) == 4


def test_other_features_into_the_same_folder_are_refused(songs, tmp_path):
    out = tmp_path / "out"
    preparation.prepare_dataset(songs, out, FEATURES, preparation.PrepareConfig(workers=1), progress=False)
    with pytest.raises(ValueError, match="other features"):
        preparation.prepare_dataset(songs, out, FeatureConfig(hop_length=1024), preparation.PrepareConfig(workers=1),
                                    progress=False)


def test_split_assignment_is_deterministic_and_order_free():
    inputs = [preparation.SongInput(f"s{i:02d}", f"/a/s{i:02d}.wav", f"/a/s{i:02d}.lab") for i in range(20)]
    a = preparation.assign_splits(inputs, (0.8, 0.1, 0.1), seed=3)
    b = preparation.assign_splits(list(reversed(inputs)), (0.8, 0.1, 0.1), seed=3)
    assert a == b
    assert [len(a[s]) for s in records.SPLITS] == [16, 2, 2]
    c = preparation.assign_splits(inputs, (0.8, 0.1, 0.1), seed=4)
    assert c["test"] != a["test"]


def test_manifest_splits_are_kept_and_bad_splits_named(songs, tmp_path):
    manifest = songs / "manifest.csv"
    manifest.write_text("audio,annotation,split\nalbum/song0.wav,album/song0.lab,test\n"
                        "album/song1.flac,album/song1.lab,train\nalbum/song2.wav,album/song2.lab,valid\n")
    inputs = preparation.find_inputs(manifest)
    assert [(s.song_id, s.split) for s in inputs] == [("album/song0", "test"), ("album/song1", "train"),
                                                      ("album/song2", "valid")]
    manifest.write_text("audio,annotation,split\nalbum/song0.wav,album/song0.lab,holdout\n")
    with pytest.raises(ValueError, match="manifest.csv:2: split 'holdout'"):
        preparation.find_inputs(manifest)


def test_cli_prepares_into_root_and_name(songs, tmp_path, capsys):
    code = prepare.main([str(songs), "--root", str(tmp_path / "tfrecords"), "--name", "mine", "--workers", "1",
                         "--no-progress"])
    assert code == 0
    assert (tmp_path / "tfrecords" / "mine" / "dataset.json").exists()
    assert "prepared" in capsys.readouterr().out
    assert prepare.main([str(tmp_path / "nothing-here"), "--no-progress"]) == 2


def test_sharded_jobs_plus_merge_equal_a_single_run(songs, tmp_path):
    single, split = tmp_path / "single", tmp_path / "split"
    config = dict(songs_per_shard=1, workers=1)
    preparation.prepare_dataset(songs, single, FEATURES, preparation.PrepareConfig(**config), progress=False)
    for job in range(2):
        assert preparation.prepare_dataset(songs, split, FEATURES, preparation.PrepareConfig(
            job_index=job, num_jobs=2, **config), progress=False) is None
    merged = preparation.merge_dataset(split)
    expected = records.read_dataset_info(single)
    for key in ("splits", "label_histogram", "skipped", "total_hours"):
        assert merged[key] == expected[key]
    for shard in sorted(p.name for p in single.glob("*.tfrecord")):
        assert (single / shard).read_bytes() == (split / shard).read_bytes()


def test_merge_refuses_while_a_job_has_not_finished(songs, tmp_path):
    config = preparation.PrepareConfig(songs_per_shard=1, workers=1, job_index=0, num_jobs=2)
    preparation.prepare_dataset(songs, tmp_path / "o", FEATURES, config, progress=False)
    with pytest.raises(ValueError, match=r"shard\(s\) not yet complete"):
        preparation.merge_dataset(tmp_path / "o")


def test_merge_names_the_shards_of_a_split_that_no_job_wrote(songs, tmp_path):
    # split 2/1/1 of 4 songs, one song per shard: ordinals 0, 1 = train, 2 = valid, 3 = test. Jobs 0-2 of
    # 4 ran; job 3, the only one writing a test shard, did not, so no summary mentions the test split.
    out = tmp_path / "o"
    for job in range(3):
        preparation.prepare_dataset(songs, out, FEATURES, preparation.PrepareConfig(
            split_fractions=(2, 1, 1), songs_per_shard=1, workers=1, job_index=job, num_jobs=4), progress=False)
    assert sorted(p.name for p in out.glob("*.tfrecord")) == [
        "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord", "valid-00000-of-00001.tfrecord"]
    with pytest.raises(ValueError, match=r"1 shard\(s\) not yet complete: test-00000-of-00001.tfrecord;"):
        preparation.merge_dataset(out)
    assert not (out / records.DATASET_INFO).exists()
    result = _run_cli("chordkeras.prepare", "--merge", str(out))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"chordkeras.prepare: error: {out}: 1 shard(s) not yet complete: test-00000-of-00001.tfrecord; run the "
        "preparation job(s) that write them (one of --num-shards 4 jobs each), then merge again"]
    # The last job completes the dataset.
    preparation.prepare_dataset(songs, out, FEATURES, preparation.PrepareConfig(
        split_fractions=(2, 1, 1), songs_per_shard=1, workers=1, job_index=3, num_jobs=4), progress=False)
    assert {s: v["songs"] for s, v in preparation.merge_dataset(out)["splits"].items()} == {
        "train": 2, "valid": 1, "test": 1}


def test_merge_of_a_damaged_summary_or_no_folder_is_one_line(songs, tmp_path):
    out = tmp_path / "o"
    preparation.prepare_dataset(songs, out, FEATURES, preparation.PrepareConfig(workers=1), progress=False)
    summary = sorted(out.glob("*.tfrecord.json"))[0]
    summary.write_text('{"shard": "train-0')
    with pytest.raises(ValueError, match=f"{summary}: unreadable shard summary"):
        preparation.merge_dataset(out)
    with pytest.raises(ValueError, match="no such folder"):
        preparation.merge_dataset(tmp_path / "absent")


def _damage(path, at=None):
    """Zeroes 64 bytes in the middle of a file, as a bad disk sector or a bad copy would."""
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if at is None else at
    data[at:at + 64] = bytes(64)
    path.write_bytes(bytes(data))


def test_a_damaged_shard_is_named_by_verify_and_rewritten_by_a_second_run(songs, tmp_path):
    out = tmp_path / "out"
    config = preparation.PrepareConfig(split_fractions=(2, 1, 1), songs_per_shard=1, workers=1)
    preparation.prepare_dataset(songs, out, FEATURES, config, progress=False)
    victim = out / "train-00001-of-00002.tfrecord"
    intact = victim.read_bytes()
    assert preparation.verify_dataset(out) == (4, [])
    _damage(victim)
    checked, problems = preparation.verify_dataset(out)
    assert checked == 4 and len(problems) == 1
    # One song per shard: the only record's data starts at byte 12 (after its length and the length's CRC)
    # and fails its CRC.
    assert problems[0] == f"{victim}: damaged shard (corrupted record at 12)"
    result = _run_cli("chordkeras.prepare", "--verify", str(out))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0] == f"chordkeras.prepare: {victim}: damaged shard (corrupted record at 12)"
    assert lines[1].startswith(f"chordkeras.prepare: {out}: 1 problem(s) in 4 shard(s); to repair, ")
    # --verify changed nothing.
    assert victim.read_bytes() != intact
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tfrecord")}
    preparation.prepare_dataset(songs, out, FEATURES, config, progress=False)
    assert victim.read_bytes() == intact
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tfrecord")}
    assert [n for n in after if after[n] != before[n]] == [victim.name]
    result = _run_cli("chordkeras.prepare", "--verify", str(out))
    assert (result.returncode, result.stdout) == (0, f"{out}: 4 shard(s) verified, every record intact\n")


def test_verify_names_a_truncated_shard_and_a_missing_one(songs, tmp_path):
    out = tmp_path / "out"
    config = preparation.PrepareConfig(split_fractions=(2, 1, 1), songs_per_shard=2, workers=1)
    preparation.prepare_dataset(songs, out, FEATURES, config, progress=False)
    train = out / "train-00000-of-00001.tfrecord"
    # Cut after the first of two records (8-byte length, 4-byte CRC, data, 4-byte CRC): the records that
    # are left pass their checksums, only the count against the summary shows the loss.
    first = 16 + int.from_bytes(train.read_bytes()[:8], "little")
    train.write_bytes(train.read_bytes()[:first])
    (out / "test-00000-of-00001.tfrecord").unlink()
    checked, problems = preparation.verify_dataset(out)
    assert checked == 2
    assert problems == [f"{train}: damaged shard (1 records, its summary lists 2 songs)",
                        f"{out / 'test-00000-of-00001.tfrecord'}: missing"]


def test_preparation_runs_its_song_map_to_the_end(songs, tmp_path, monkeypatch):
    # Only at its end does _map_songs let its worker processes exit by themselves (see the next test).
    ended = []
    map_songs = preparation._map_songs

    def recorded(*args):
        yield from map_songs(*args)
        ended.append(True)

    monkeypatch.setattr(preparation, "_map_songs", recorded)
    preparation.prepare_dataset(songs, tmp_path / "out", FEATURES, preparation.PrepareConfig(
        split_fractions=(2, 1, 1), songs_per_shard=1, workers=1), progress=False)
    assert ended == [True]


@pytest.mark.slow
def test_prepare_with_worker_processes_leaves_no_temporary_files(songs, tmp_path):
    # TensorFlow's autograph writes every function it converts to __autograph_generated_file*.py in the
    # temporary folder and deletes them at exit, which a worker ended by Pool.terminate (SIGTERM) never reaches.
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    result = subprocess.run([sys.executable, "-m", "chordkeras.prepare", str(songs), "--out", str(tmp_path / "out"),
                             "--split", "2,1,1", "--workers", "2", "--no-progress"],
                            capture_output=True, text=True, env={**os.environ, "TMPDIR": str(temporary)}, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "4 found, 4 prepared, 0 skipped" in result.stdout
    assert sorted(p.name for p in temporary.iterdir()) == []
