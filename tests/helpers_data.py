"""Tiny prepared datasets written by the tests themselves."""

import dataclasses

import numpy as np
import tensorflow as tf

from chordkeras import files, records, vocab

LARGE = vocab.get_vocabulary("large")


def write_tiny_dataset(folder, features, songs_per_split=(6, 2, 2), frames=40, seed=0):
    """Real shards and dataset.json of random spectrograms with a learnable chord per frame."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    histogram = {}
    for split, n in zip(records.SPLITS, songs_per_split):
        path = folder / records.shard_name(split, 0, 1)
        with tf.io.TFRecordWriter(str(path)) as writer:
            for i in range(n):
                roots = rng.integers(0, 12, frames)
                chord = (2 + roots).astype(np.uint8)  # C:maj .. B:maj in the large vocabulary
                spectrogram = rng.random((frames, features.n_bins)).astype(np.float32) * 0.1
                spectrogram[np.arange(frames), roots * features.bins_per_semitone + 48] += 3.0
                masks = np.array([vocab.encode_targets(LARGE.class_names[c])[3] for c in chord], np.uint16)
                targets = {"chord": chord, "root": roots.astype(np.uint8), "bass": roots.astype(np.uint8),
                           "pitches": masks}
                writer.write(records.song_example(f"{split}/{i}", spectrogram, targets, frames / features.frame_rate,
                                                  features.frame_rate))
                for c in chord:
                    histogram[LARGE.class_names[c]] = histogram.get(LARGE.class_names[c], 0) + 1
    info = {
        "features": dataclasses.asdict(features),
        "label_vocabulary": "large",
        "splits": {s: {"songs": n, "hours": 0.0, "frames": n * frames, "shards": 1}
                   for s, n in zip(records.SPLITS, songs_per_split)},
        "label_histogram": histogram,
        "skipped": [],
    }
    files.write_json_atomic(folder / records.DATASET_INFO, info)
    return folder
