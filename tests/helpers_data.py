"""Tiny prepared datasets written by the tests themselves, through the package's own writers."""

import numpy as np

from chordkeras import preparation, records, vocab

LARGE = vocab.get_vocabulary("large")
# The bin of each root's peak in the tiny spectrograms: C at bin 48 (two octaves above fmin), one
# semitone (`bins_per_semitone` bins) higher for each further pitch class.
PEAK_BIN_OF_C = 48


def peak_bin(root, features):
    """The spectrogram bin `write_tiny_dataset` lifts for a frame whose root is `root` (0 = C)."""
    return root * features.bins_per_semitone + PEAK_BIN_OF_C


def write_tiny_dataset(folder, features, songs_per_split=(6, 2, 2), frames=40, seed=0, songs_per_shard=None,
                       quality="maj"):
    """A prepared dataset of random spectrograms with a learnable chord per frame (major unless `quality`).

    Each frame's root (chord C:maj .. B:maj, bass = root) lifts one bin by 3.0 (`peak_bin`) above
    noise in [0, 0.1). Shards, shard summaries and dataset.json are written by
    `preparation.write_songs`, the writers `prepare_dataset` uses. One shard per split unless
    `songs_per_shard` is given.
    """
    rng = np.random.default_rng(seed)
    songs = {}
    for split, n in zip(records.SPLITS, songs_per_split):
        songs[split] = []
        for i in range(n):
            roots = rng.integers(0, 12, frames)
            chord = np.array([LARGE.encode(f"{vocab.PITCH_NAMES[r]}:{quality}") for r in roots], np.uint8)
            spectrogram = rng.random((frames, features.n_bins)).astype(np.float32) * 0.1
            spectrogram[np.arange(frames), peak_bin(roots, features)] += 3.0
            masks = np.array([vocab.encode_targets(LARGE.class_names[c])[3] for c in chord], np.uint16)
            targets = {"chord": chord, "root": roots.astype(np.uint8), "bass": roots.astype(np.uint8),
                       "pitches": masks}
            song_id, duration = f"{split}/{i}", frames / features.frame_rate
            example = records.song_example(song_id, spectrogram, targets, duration, features.frame_rate)
            songs[split].append((example, preparation.song_stats(song_id, chord, duration)))
    config = preparation.PrepareConfig(songs_per_shard=songs_per_shard or max(1, *songs_per_split))
    preparation.write_songs(folder, songs, features, config, source="tests/helpers_data.py")
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
