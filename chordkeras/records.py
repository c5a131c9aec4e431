"""One song per tf.train.Example: the writer and the parser share this one description."""

from __future__ import annotations

import os
import pathlib
import re
from typing import Any, Iterator, Mapping

import numpy as np
import tensorflow as tf

from chordkeras import files

SPLITS = ("train", "valid", "test")
DATASET_INFO = "dataset.json"

# The single feature description: `song_example` writes exactly these keys, `parse_song` reads them.
FEATURE_DESCRIPTION = {
    "song_id": tf.io.FixedLenFeature([], tf.string),
    "spectrogram": tf.io.FixedLenFeature([], tf.string),  # float16 [num_frames, num_bins]
    "num_frames": tf.io.FixedLenFeature([], tf.int64),
    "num_bins": tf.io.FixedLenFeature([], tf.int64),
    "chord": tf.io.FixedLenFeature([], tf.string),  # uint8 [num_frames], large-vocabulary classes
    "root": tf.io.FixedLenFeature([], tf.string),  # uint8 [num_frames], 12 = no chord
    "bass": tf.io.FixedLenFeature([], tf.string),  # uint8 [num_frames], 12 = no chord
    "pitches": tf.io.FixedLenFeature([], tf.string),  # uint16 [num_frames], 12-bit pitch-class masks
    "duration": tf.io.FixedLenFeature([], tf.float32),
    "frame_rate": tf.io.FixedLenFeature([], tf.float32),
}

_BYTE_ARRAYS = {"chord": np.uint8, "root": np.uint8, "bass": np.uint8, "pitches": np.uint16}


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def _float(value: float) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))


def song_example(
    song_id: str,
    spectrogram: np.ndarray,
    targets: Mapping[str, np.ndarray],
    duration: float,
    frame_rate: float,
) -> bytes:
    """Serialises one song.

    Args:
        song_id: Stable identifier (relative path stem of the audio file).
        spectrogram: [frames, bins] log-frequency spectrogram; stored as float16.
        targets: chord, root, bass and pitches per frame (see `chordkeras.annotations.frame_targets`).
        duration: Audio duration in seconds.
        frame_rate: Frames per second.

    Returns:
        The serialised tf.train.Example.
    """
    spectrogram = np.asarray(spectrogram)
    if spectrogram.ndim != 2:
        raise ValueError(f"{song_id}: spectrogram must be [frames, bins], got shape {spectrogram.shape}")
    num_frames, num_bins = spectrogram.shape
    feature = {
        "song_id": _bytes(song_id.encode("utf-8")),
        "spectrogram": _bytes(spectrogram.astype("<f2").tobytes()),
        "num_frames": _int(num_frames),
        "num_bins": _int(num_bins),
        "duration": _float(duration),
        "frame_rate": _float(frame_rate),
    }
    for key, dtype in _BYTE_ARRAYS.items():
        values = np.asarray(targets[key])
        if values.shape != (num_frames,):
            raise ValueError(f"{song_id}: {key} has shape {values.shape}, expected ({num_frames},)")
        feature[key] = _bytes(values.astype(np.dtype(dtype).newbyteorder("<")).tobytes())
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def parse_song(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """Parses one serialised song into tensors (graph-safe, for `Dataset.map`).

    Returns:
        song_id (string), spectrogram float32 [T, F], chord/root/bass int32 [T],
        pitches float32 [T, 12] multi-hot, duration and frame_rate float32.
    """
    ex = tf.io.parse_single_example(serialized, FEATURE_DESCRIPTION)
    num_frames = tf.cast(ex["num_frames"], tf.int32)
    num_bins = tf.cast(ex["num_bins"], tf.int32)
    spectrogram = tf.io.decode_raw(ex["spectrogram"], tf.float16, little_endian=True)
    spectrogram = tf.cast(tf.reshape(spectrogram, [num_frames, num_bins]), tf.float32)
    out = {"song_id": ex["song_id"], "spectrogram": spectrogram}
    for key in ("chord", "root", "bass"):
        out[key] = tf.cast(tf.io.decode_raw(ex[key], tf.uint8), tf.int32)
    masks = tf.cast(tf.io.decode_raw(ex["pitches"], tf.uint16, little_endian=True), tf.int32)
    bits = tf.bitwise.bitwise_and(tf.bitwise.right_shift(masks[:, None], tf.range(12)), 1)
    out["pitches"] = tf.cast(bits, tf.float32)
    out["duration"] = ex["duration"]
    out["frame_rate"] = ex["frame_rate"]
    return out


def shard_name(split: str, index: int, num_shards: int) -> str:
    return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


def list_shards(folder: str | os.PathLike, split: str) -> list[str]:
    """Complete shards of one split, sorted; raises ValueError when there are none."""
    folder = pathlib.Path(folder)
    shards = sorted(str(p) for p in folder.glob(f"{split}-*-of-*.tfrecord"))
    if not shards:
        raise ValueError(f"{folder}: no {split} shards ({split}-NNNNN-of-NNNNN.tfrecord)")
    return shards


class DamagedShardError(ValueError):
    """A shard whose records fail their checksums or end early; the message names the file.

    Attributes:
        path: The shard file.
        reason: What is wrong, e.g. 'corrupted record at 94595' (a byte offset).
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"{path}: damaged shard ({reason})")
        self.path = str(path)
        self.reason = reason


def count_records(path: str | os.PathLike) -> int:
    """Reads every record of a TFRecord file, verifying each length and data CRC; returns how many.

    Raises:
        DamagedShardError: a checksum fails or the file ends inside a record.
    """
    dataset = tf.data.TFRecordDataset(str(path))
    try:
        return int(dataset.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))
    except tf.errors.OpError as e:
        raise DamagedShardError(path, _record_error(e)) from None


def _record_error(error: tf.errors.OpError) -> str:
    """'corrupted record at N' out of TF's message, without the op and function names around it."""
    found = re.search(r"(corrupted|truncated) record at \d+", error.message)
    return found.group(0) if found else f"{type(error).__name__}: {error.message.splitlines()[0]}"


def read_dataset_info(folder: str | os.PathLike) -> dict[str, Any]:
    """Reads `dataset.json` of a prepared dataset folder."""
    path = pathlib.Path(folder) / DATASET_INFO
    if not path.exists():
        raise ValueError(f"{folder}: not a prepared dataset ({DATASET_INFO} is missing)")
    return files.read_json(path)


def read_songs(folder: str | os.PathLike, split: str) -> Iterator[dict[str, Any]]:
    """Parsed songs (numpy values, song_id as str) of one split of a prepared dataset."""
    dataset = tf.data.TFRecordDataset(list_shards(folder, split)).map(parse_song)
    for song in dataset.as_numpy_iterator():
        song["song_id"] = song["song_id"].decode("utf-8")
        yield song
