"""Tiny prepared datasets written by the tests themselves."""

import dataclasses

import numpy as np
import tensorflow as tf

from chordkeras import records, vocab

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
    records.write_json_atomic(folder / records.DATASET_INFO, info)
    return folder


def write_songs(folder, count, sample_rate=22050):
    """`count` real 4 s songs (WAV + .lab): 2 s of C major, then 2 s of A minor."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(2 * sample_rate) / sample_rate

    def triad(notes):
        freqs = 440.0 * 2 ** ((np.asarray(notes) - 69) / 12)
        return (0.2 * np.sin(2 * np.pi * freqs[:, None] * t)).sum(axis=0).astype(np.float32)

    audio = np.concatenate([triad([60, 64, 67]), triad([57, 60, 64])])
    for i in range(count):
        sf.write(folder / f"song{i}.wav", audio, sample_rate)
        (folder / f"song{i}.lab").write_text("0.0 2.0 C:maj\n2.0 4.0 A:min\n")
    return folder
