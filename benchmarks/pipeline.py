"""The data pump measured: input pipeline alone, training fed by it, training fed without it.

Side by side, on the same prepared dataset and the same model:
  (a) the tf.data pipeline alone (no model), after one pass has filled its cache;
  (b) `model.fit` fed by the tf.data pump (parallel parsing, augmentation and prefetch);
  (c) the same model trained by a plain Python loop that builds each batch itself (crop, pitch
      shift, gain/EQ in numpy) and then calls `train_on_batch`: no data pump, no prefetch;
  (d) the same fit on a single batch held in memory: the training speed with no input work at all.
For each: excerpts/s, audio hours/min, 4-minute songs/min, and the input-stall share of step time.
(b) and (d) are timed to the end of their last step, not to `fit` returning (see
model_speed.timed_fit).

    python benchmarks/pipeline.py                      # the built-in synthetic dataset
    python benchmarks/pipeline.py --data tfrecords/x --steps 100 --set train.mixed_precision=off
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np
from model_speed import timed_fit  # benchmarks/ is on sys.path when a script here runs


def _songs_in_memory(folder, config):
    """Parsed training songs as numpy arrays, in the model's vocabulary (what (c) draws from)."""
    import tensorflow as tf

    from chordkeras import records, vocab

    from_large = vocab.get_vocabulary(config.data.vocabulary).from_large
    songs = []
    for song in tf.data.TFRecordDataset(records.list_shards(folder, "train")).map(records.parse_song):
        songs.append({
            "spectrogram": song["spectrogram"].numpy(),
            "chord": from_large[song["chord"].numpy()],
            "root": song["root"].numpy(), "bass": song["bass"].numpy(), "pitches": song["pitches"].numpy(),
        })
    return songs


def _python_batch(songs, config, rng):
    """One training batch built in plain numpy, with the pump's augmentations."""
    from chordkeras import vocab

    data, feats = config.data, config.features
    frames = data.excerpt_frames(feats)
    offset = vocab.get_vocabulary(data.vocabulary).offset
    specs, chords, roots, basses, pitches, masks = [], [], [], [], [], []
    for i in rng.integers(0, len(songs), data.batch_size):
        song = songs[i]
        n = song["spectrogram"].shape[0]
        start = rng.integers(0, max(n - frames, 0) + 1)
        sl = slice(start, start + frames)
        spec = np.zeros((frames, feats.n_bins), np.float32)
        part = song["spectrogram"][sl]
        k = int(rng.integers(data.shift_min, data.shift_max + 1))
        kb = k * feats.bins_per_semitone
        if kb >= 0:
            spec[: len(part), kb:] = part[:, : feats.n_bins - kb]
        else:
            spec[: len(part), :kb] = part[:, -kb:]
        db = rng.uniform(-data.gain_db, data.gain_db) + rng.uniform(-data.eq_db, data.eq_db) * np.linspace(
            -0.5, 0.5, feats.n_bins)
        spec = np.log1p(np.expm1(spec) * 10 ** (db / 20)).astype(np.float32)
        chord = np.full(frames, vocab.IGNORE, np.int32)
        c = song["chord"][sl]
        chord[: len(c)] = np.where(c >= offset, offset + (c - offset) // 12 * 12 + (c - offset + k) % 12, c)
        root = np.full(frames, 12, np.int32)
        bass = np.full(frames, 12, np.int32)
        root[: len(c)] = np.where(song["root"][sl] < 12, (song["root"][sl] + k) % 12, 12)
        bass[: len(c)] = np.where(song["bass"][sl] < 12, (song["bass"][sl] + k) % 12, 12)
        pc = np.zeros((frames, 12), np.float32)
        pc[: len(c)] = np.roll(song["pitches"][sl], k, axis=-1)
        mask = np.zeros(frames, np.float32)
        mask[: len(c)] = 1
        for lst, v in zip((specs, chords, roots, basses, pitches, masks), (spec, chord, root, bass, pc, mask)):
            lst.append(v)
    targets = {"chord": np.stack(chords), "root": np.stack(roots), "bass": np.stack(basses),
               "pitches": np.stack(pitches)}
    return np.stack(specs), targets, np.stack(masks)


def run(folder, config, steps: int, warmup: int) -> dict:
    import keras

    from chordkeras import dataset as dataset_lib
    from chordkeras import devices, model as model_lib, train as train_lib

    device = devices.detect_device()
    policy = devices.set_precision(config.train.mixed_precision, device.kind)
    batch = config.data.batch_size
    seconds_per_excerpt = config.data.excerpt_seconds

    def figures(excerpts, seconds, stall):
        hours_per_min = excerpts * seconds_per_excerpt / 3600 / seconds * 60
        return {"excerpts_per_s": excerpts / seconds, "audio_hours_per_min": hours_per_min,
                "songs_per_min": hours_per_min * 60 / train_lib.REFERENCE_SONG_MINUTES, "input_stall": stall}

    data = dataset_lib.make_datasets(folder, config)
    pump = data.train
    results = {"device": device.describe(), "precision": policy, "batch_size": batch,
               "excerpt_seconds": seconds_per_excerpt, "steps": steps}

    # (a) The pipeline alone: one pass first, so the cache is full as it is from epoch 2 of a fit.
    for _ in data.train.take(data.steps_per_epoch):
        pass
    it = iter(pump)
    for _ in range(warmup):
        next(it)
    start = time.perf_counter()
    for _ in range(steps):
        next(it)
    results["a_pipeline_alone"] = figures(steps * batch, time.perf_counter() - start, None)

    # (b) fit fed by the pump.
    keras.utils.set_random_seed(0)
    model = model_lib.build_model(config)
    model_lib.compile_model(model, config, steps)
    model.fit(pump, steps_per_epoch=warmup, epochs=1, verbose=0, shuffle=False)  # tracing and warm-up
    seconds, history = timed_fit(model, pump, steps)
    results["b_fit_with_pump"] = figures(steps * batch, seconds, float(history.history["input_stall"][-1]))

    # (d) compute alone: the same fit on one batch held in memory; no input work at all.
    one_batch = data.train.take(1).cache().repeat()
    model.fit(one_batch, steps_per_epoch=warmup, epochs=1, verbose=0, shuffle=False)
    seconds, history = timed_fit(model, one_batch, steps)
    results["d_compute_alone"] = figures(steps * batch, seconds, float(history.history["input_stall"][-1]))

    # (c) no data pump: build each batch in Python, then train on it.
    keras.utils.set_random_seed(0)
    model = model_lib.build_model(config)
    model_lib.compile_model(model, config, steps)
    songs = _songs_in_memory(folder, config)
    rng = np.random.default_rng(0)
    for _ in range(warmup):
        x, y, mask = _python_batch(songs, config, rng)
        model.train_on_batch(x, y, sample_weight=mask)
    waiting = 0.0
    start = time.perf_counter()
    for _ in range(steps):
        t0 = time.perf_counter()
        x, y, mask = _python_batch(songs, config, rng)
        waiting += time.perf_counter() - t0
        model.train_on_batch(x, y, sample_weight=mask)
    seconds = time.perf_counter() - start
    results["c_fit_without_pump"] = figures(steps * batch, seconds, waiting / seconds)
    results["pump_speedup_b_over_c"] = (results["b_fit_with_pump"]["excerpts_per_s"]
                                        / results["c_fit_without_pump"]["excerpts_per_s"])
    results["pump_efficiency_b_over_d"] = (results["b_fit_with_pump"]["excerpts_per_s"]
                                           / results["d_compute_alone"]["excerpts_per_s"])
    results["pipeline_headroom_a_over_b"] = (results["a_pipeline_alone"]["excerpts_per_s"]
                                             / results["b_fit_with_pump"]["excerpts_per_s"])
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="prepared dataset (default: the built-in synthetic dataset)")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--steps", type=int, default=60, help="timed steps for each of (a), (b), (c)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    from chordkeras import config as config_lib
    from chordkeras import defaults, fit

    config = config_lib.resolve(args.preset, args.overrides)
    folder = pathlib.Path(args.data) if args.data else defaults.default_dataset(
        pathlib.Path("tfrecords") / fit.DEFAULT_DATASET, config.features)
    results = run(folder, config, args.steps, args.warmup)
    print(f"device {results['device']}, precision {results['precision']}, batch {results['batch_size']} x "
          f"{results['excerpt_seconds']} s excerpts, {args.steps} steps each")
    print(f"{'':28s} {'excerpts/s':>10s} {'audio h/min':>11s} {'songs/min':>9s} {'stall':>7s}")
    for key, label in (("a_pipeline_alone", "(a) pipeline alone"), ("b_fit_with_pump", "(b) fit, tf.data pump"),
                       ("c_fit_without_pump", "(c) fit, Python loop"), ("d_compute_alone", "(d) fit, one cached batch")):
        r = results[key]
        stall = "" if r["input_stall"] is None else f"{100 * r['input_stall']:.1f}%"
        print(f"{label:28s} {r['excerpts_per_s']:10.1f} {r['audio_hours_per_min']:11.2f} {r['songs_per_min']:9.0f} "
              f"{stall:>7s}")
    print(f"(b)/(c) = {results['pump_speedup_b_over_c']:.2f}x; (a)/(b) = {results['pipeline_headroom_a_over_b']:.1f}x; "
          f"(b)/(d) = {results['pump_efficiency_b_over_d']:.3f}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
