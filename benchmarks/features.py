"""Feature-stage throughput: audio seconds processed per wall-clock second (real-time factor).

Synthesises songs of chords (harmonic tones plus noise) at 44.1 kHz stereo, writes them
as 16-bit FLAC, then times, per song and on the CPU:
  load   `chordkeras.audio.load_audio`: decode, mix to mono, resample to the feature rate;
  stft   `chordkeras.features.log_spectrogram` in a tf.function, one song per call;
  batch  the same on all songs stacked in one batch;
  eager  the same without tf.function.
Each thread count runs in its own process, because TensorFlow fixes its thread pools
when it starts. Run from the repository root:

    python benchmarks/features.py --minutes 20 --threads 1,2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=20.0, help="total audio to process")
    parser.add_argument("--song-minutes", type=float, default=4.0, help="length of each synthetic song")
    parser.add_argument("--threads", default="1,2", help="comma-separated TensorFlow thread counts")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes; the fastest is reported")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _song(rng: np.random.Generator, seconds: float, sample_rate: int) -> np.ndarray:
    """Stereo chord sequence: a triad plus bass per second, harmonic tones, a little noise."""
    segment = sample_rate
    t = np.arange(segment) / sample_rate
    fade = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)
    chunks = []
    for _ in range(int(np.ceil(seconds))):
        root = int(rng.integers(40, 64))
        notes = [root - 12, root, root + (3 if rng.random() < 0.5 else 4), root + 7]
        chunk = np.zeros(segment)
        for note in notes:
            f0 = 440.0 * 2.0 ** ((note - 69) / 12)
            for h in range(1, 7):
                chunk += np.sin(2 * np.pi * h * f0 * t + rng.random() * 6.28) / (h * len(notes))
        chunks.append(0.4 * fade * chunk)
    mono = np.concatenate(chunks)[: int(seconds * sample_rate)]
    noise = 0.01 * rng.standard_normal((mono.size, 2))
    return (mono[:, None] + noise).astype(np.float32)


def _best(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def _worker(args) -> None:
    import soundfile
    import tensorflow as tf

    threads = int(args.threads)
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    sys.path.insert(0, REPO)
    from chordkeras.audio import load_audio
    from chordkeras.config import FeatureConfig
    from chordkeras.features import log_spectrogram

    config = FeatureConfig()
    rng = np.random.default_rng(0)
    num_songs = max(1, int(round(args.minutes / args.song_minutes)))
    seconds = args.minutes * 60.0 / num_songs
    total = num_songs * seconds
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for i in range(num_songs):
            paths.append(os.path.join(folder, f"song{i}.flac"))
            soundfile.write(paths[-1], _song(rng, seconds, 44100), 44100, subtype="PCM_16")
        songs = [load_audio(path, config.sample_rate) for path in paths]  # warm-up

        compute = tf.function(
            lambda audio: log_spectrogram(audio, config),
            input_signature=[tf.TensorSpec([None], tf.float32)],
        )
        compute_batch = tf.function(
            lambda audio: log_spectrogram(audio, config),
            input_signature=[tf.TensorSpec([None, None], tf.float32)],
        )
        batch = tf.constant(np.stack(songs))
        compute(songs[0][: config.sample_rate])
        compute_batch(batch[:, : config.sample_rate])

        results = {
            "load": _best(lambda: [load_audio(path, config.sample_rate) for path in paths], args.repeats),
            "stft": _best(lambda: [compute(song).numpy() for song in songs], args.repeats),
            "batch": _best(lambda: compute_batch(batch).numpy(), args.repeats),
            "eager": _best(lambda: [log_spectrogram(song, config).numpy() for song in songs], args.repeats),
        }
    print(f"threads={threads}  audio={total / 60:.1f} min in {num_songs} songs of {seconds / 60:.1f} min")
    for name, seconds_taken in results.items():
        print(f"  {name:6s} {seconds_taken:7.2f} s  {total / seconds_taken:8.0f}x real time")
    stage = results["load"] + results["stft"]
    print(f"  load + stft (per song): {total / stage:.0f}x real time, {total / stage / threads:.0f}x per thread")


def main(argv=None) -> None:
    args = _parse(argv)
    if args.worker:
        _worker(args)
        return
    for threads in [int(t) for t in args.threads.split(",")]:
        command = [
            sys.executable, os.path.abspath(__file__), "--worker",
            "--threads", str(threads),
            "--minutes", str(args.minutes),
            "--song-minutes", str(args.song_minutes),
            "--repeats", str(args.repeats),
        ]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
        subprocess.run(command, check=True, env=env)


if __name__ == "__main__":
    main()
