import numpy as np
import pytest
import tensorflow as tf

from chordkeras import files, records


def _song(frames=5, bins=6):
    spectrogram = np.arange(frames * bins, dtype=np.float32).reshape(frames, bins) / 8.0
    targets = {
        "chord": np.array([0, 2, 2, 169, 1][:frames], np.uint8),
        "root": np.array([12, 0, 0, 11, 3][:frames], np.uint8),
        "bass": np.array([12, 4, 0, 11, 3][:frames], np.uint8),
        # C:maj = bits 0, 4, 7; B:sus4 = 11, 4, 6; all twelve.
        "pitches": np.array([0, 145, 145, (1 << 11) | (1 << 4) | (1 << 6), 4095][:frames], np.uint16),
    }
    return spectrogram, targets


def test_round_trip_gives_back_every_field():
    spectrogram, targets = _song()
    serialized = records.song_example("album/song 1", spectrogram, targets, duration=0.46, frame_rate=10.77)
    song = records.parse_song(tf.constant(serialized))
    assert song["song_id"].numpy() == b"album/song 1"
    # Multiples of 1/8 below 2048 are exact in float16.
    np.testing.assert_array_equal(song["spectrogram"].numpy(), spectrogram)
    for key in ("chord", "root", "bass"):
        assert song[key].dtype == tf.int32
        np.testing.assert_array_equal(song[key].numpy(), targets[key])
    pitches = song["pitches"].numpy()
    assert pitches.shape == (5, 12)
    np.testing.assert_array_equal(pitches[0], np.zeros(12))
    np.testing.assert_array_equal(np.flatnonzero(pitches[1]), [0, 4, 7])
    np.testing.assert_array_equal(np.flatnonzero(pitches[3]), [4, 6, 11])
    np.testing.assert_array_equal(pitches[4], np.ones(12))
    assert song["duration"].numpy() == pytest.approx(0.46)
    assert song["frame_rate"].numpy() == pytest.approx(10.77)


def test_parse_works_inside_a_dataset_map(tmp_path):
    path = str(tmp_path / "train-00000-of-00001.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for n in (3, 5):
            spectrogram, targets = _song(frames=n)
            writer.write(records.song_example(f"s{n}", spectrogram, targets, 1.0, 10.0))
    songs = list(tf.data.TFRecordDataset(path).map(records.parse_song))
    assert [s["spectrogram"].shape[0] for s in songs] == [3, 5]
    assert records.list_shards(tmp_path, "train") == [path]


def test_writer_rejects_targets_of_the_wrong_length():
    spectrogram, targets = _song()
    targets["root"] = targets["root"][:3]
    with pytest.raises(ValueError, match="root has shape"):
        records.song_example("x", spectrogram, targets, 1.0, 10.0)


def test_missing_shards_and_info_are_named(tmp_path):
    with pytest.raises(ValueError, match="no valid shards"):
        records.list_shards(tmp_path, "valid")
    with pytest.raises(ValueError, match="dataset.json is missing"):
        records.read_dataset_info(tmp_path)


def test_write_json_atomic_leaves_no_temporary(tmp_path):
    files.write_json_atomic(tmp_path / "a.json", {"b": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
    assert files.read_json(tmp_path / "a.json") == {"b": 1}


def test_read_json_names_a_damaged_file(tmp_path):
    (tmp_path / "a.json").write_text('{"b": ')
    with pytest.raises(ValueError, match=r"a.json: not valid JSON \(Expecting value: line 1 column 7 \(char 6\)\)"):
        files.read_json(tmp_path / "a.json")


def test_count_records_verifies_every_checksum(tmp_path):
    path = tmp_path / "x.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for i in range(3):
            writer.write(bytes([i]) * 100)
    assert records.count_records(path) == 3
    # Each record is 8 (length) + 4 (length CRC) + 100 (data) + 4 (data CRC) = 116 bytes: byte 150 is
    # in the data of the second record, whose data starts at 116 + 12 = 128.
    data = bytearray(path.read_bytes())
    data[150] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(records.DamagedShardError, match=r"x.tfrecord: damaged shard \(corrupted record at 128\)"):
        records.count_records(path)
