"""Transcription speed: time to transcribe a 4-minute song once the model is loaded.

Times `chordkeras.inference` after loading and one warm-up run (which traces the TF functions),
stage by stage:
  features  log-frequency spectrogram, in chunks (`Transcriber.source_spectrogram`),
  network   the model over batched overlapping windows (`spectrogram_probabilities`),
  decode    Viterbi + merging into segments (`decode.viterbi`, `decode.frames_to_segments`),
for two inputs:
  array     22.05 kHz mono samples in memory (already at the model's rate),
  file      a 44.1 kHz stereo 16-bit WAV: read, mixed to mono and resampled as well.
Wall-clock minimum and median are printed with the CPU time the process used (all threads): on a
shared machine the minimum is the best estimate of the unloaded speed. The song is synthetic (a chord per 2 s, harmonic tones plus a little noise). MODEL defaults to
the default architecture with random weights (speed does not depend on them), exported to a
temporary folder. Run from the repository root:

    python benchmarks/transcribe.py [MODEL] [--seconds 240] [--repeats 7] [--backend auto]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", help="export folder or .keras file (default: random default model)")
    parser.add_argument("--preset", default="default", help="config preset of the random model (default: default)")
    parser.add_argument("--seconds", type=float, default=240.0, help="song length (default 240)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs; min and median are reported")
    parser.add_argument("--backend", default="auto", choices=("auto", "keras", "saved_model"))
    parser.add_argument("--window-seconds", type=float, default=None)
    return parser.parse_args(argv)


def _song(seconds: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Stereo [samples, 2]: a four-note chord every 2 s, harmonic tones, a little noise."""
    segment = 2 * sample_rate
    t = np.arange(segment) / sample_rate
    fade = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)
    chunks = []
    for _ in range(int(np.ceil(seconds / 2))):
        root = int(rng.integers(40, 64))
        chunk = np.zeros(segment)
        for note in (root - 12, root, root + (3 if rng.random() < 0.5 else 4), root + 7):
            f0 = 440.0 * 2.0 ** ((note - 69) / 12)
            for k in range(1, 5):
                chunk += np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k
        chunks.append(chunk * fade)
    mono = 0.05 * np.concatenate(chunks)[: int(seconds * sample_rate)]
    mono += 0.002 * rng.standard_normal(len(mono))
    return np.stack([mono, 0.8 * mono], axis=1).astype(np.float32)


def _random_model(folder: pathlib.Path, preset: str) -> pathlib.Path:
    from chordkeras import export, model
    from chordkeras.config import resolve

    config = resolve(preset)
    return export.export_model(model.build_model(config), config, folder / "export")


def _time(fn, repeats):
    """(min wall, median wall, median CPU) seconds; CPU counts every thread of this process."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return min(wall), float(np.median(wall)), float(np.median(cpu))


def main(argv=None) -> int:
    args = _parse(argv)
    import soundfile
    import tensorflow as tf

    from chordkeras import audio, decode, features, inference

    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        model_path = pathlib.Path(args.model) if args.model else _random_model(tmp, args.preset)
        model = inference.load_chord_model(model_path, args.backend, args.window_seconds)
        rate = model.features.sample_rate
        stereo_44k = _song(args.seconds, 44100, np.random.default_rng(0))
        wav = tmp / "song.wav"
        soundfile.write(wav, stereo_44k, 44100, subtype="PCM_16")
        mono = audio.ArraySource(stereo_44k, 44100).audio
        array = audio.ArraySource(features.resample(mono, 44100, rate).numpy(), rate)

        def transcribe(source):
            return inference.transcribe_source(model, source)

        def transcribe_file():
            source = audio.open_audio(wav, rate)
            try:
                return transcribe(source)
            finally:
                source.close()

        print(f"model: {model_path if args.model else f'random {args.preset} model'} ({type(model).__name__}, "
              f"{model.window_frames}-frame windows, overlap {model.overlap_frames}), "
              f"song: {args.seconds:.0f} s, TF threads: intra {tf.config.threading.get_intra_op_parallelism_threads()}"
              f" inter {tf.config.threading.get_inter_op_parallelism_threads()} (0 = all {os.cpu_count()} cores)")
        transcribe(array)
        transcribe_file()
        if isinstance(model, inference.KerasTranscriber):
            spectrogram = model.source_spectrogram(array)
            probs = model.spectrogram_probabilities(spectrogram)
            stages = {
                "features": lambda: model.source_spectrogram(array),
                "network": lambda: model.spectrogram_probabilities(spectrogram),
                "decode": lambda: decode.frames_to_segments(
                    decode.decode(probs, decode.DEFAULT_METHOD, inference.DEFAULT_SELF_TRANSITION, model.class_names),
                    probs, model.features.frame_rate,
                    model.class_names, array.duration),
            }
            for name, fn in stages.items():
                best, median, cpu = _time(fn, args.repeats)
                print(f"  {name:<9} wall min {best * 1000:7.1f} ms   median {median * 1000:7.1f} ms   "
                      f"CPU {cpu * 1000:7.1f} ms")
        for name, fn in (("array", lambda: transcribe(array)), ("file", transcribe_file)):
            best, median, cpu = _time(fn, args.repeats)
            print(f"{name:<6} total wall min {best:.3f} s ({args.seconds / best:.0f}x real time)   "
                  f"median {median:.3f} s ({args.seconds / median:.0f}x)   CPU {cpu:.3f} s")
        print(f"load average during the run: {os.getloadavg()[0]:.2f} (other processes compete for the cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
