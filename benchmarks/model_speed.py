"""Training throughput of the chord model on random data, side by side: precision x XLA x batch size.

    python benchmarks/model_speed.py                       # the default model, all combinations
    python benchmarks/model_speed.py --precisions float32 --jit off --batch-sizes 32,64
    python benchmarks/model_speed.py --set model.rnn_units=96

Every combination trains the same model (`build_model` + `compile_model`, so the real
`train_step`) on random excerpts of the configured length, fed from an in-memory dataset so
that only the model is measured. A round is timed from the call to `fit` to the end of its last
step: what follows (`fit` returning) waits for tf.data's autotuning thread to wake up and is not
training time (see `timed_fit`). All models are built first, then timed in turns, `--rounds`
times, so a change in the machine's load hits every combination alike; the best and the median
round are reported, in excerpts/s and in songs/min (4-minute songs, the issue's unit). The load
average is printed: on a shared machine the median is what a busy CPU gives, the best what an
idle one gives.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import time

SONG_SECONDS = 240.0


def timed_fit(model, data, steps: int):
    """`model.fit(data, steps_per_epoch=steps)` for one epoch; returns (seconds, history).

    Seconds run from the call to the end of the last step. Destroying the epoch's tf.data iterator
    when `fit` returns can block until the autotuning thread's next wake-up, whose period doubles
    from 10 ms (up to 60 s) in TF 2.16: timing the whole call rounds short runs up to about
    10 ms x 2^k and made this benchmark look bimodal.
    """
    import keras

    class LastStep(keras.callbacks.Callback):
        end = None

        def on_train_batch_end(self, batch, logs=None):
            LastStep.end = time.perf_counter()

    start = time.perf_counter()
    history = model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False, callbacks=[LastStep()])
    return LastStep.end - start, history


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default", help="config presets (comma separated)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="config override")
    parser.add_argument("--precisions", default="float32,mixed_bfloat16", help="Keras dtype policies")
    parser.add_argument("--jit", default="off,on", help="XLA jit_compile settings: off, on or off,on")
    parser.add_argument("--batch-sizes", default="32,64", help="excerpts per batch")
    parser.add_argument("--excerpts", type=int, default=512, help="excerpts trained per combination and round")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per combination")
    parser.add_argument("--json", help="also write the results to this JSON file")
    return parser.parse_args(argv)


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    import keras
    import numpy as np
    import tensorflow as tf

    from chordkeras import model as model_lib
    from chordkeras.config import resolve

    base = resolve(args.preset, args.set)
    frames = base.data.excerpt_frames(base.features)
    classes = model_lib.num_classes(base.data.vocabulary)
    combos = list(itertools.product(args.precisions.split(","), args.jit.split(","),
                                    [int(b) for b in args.batch_sizes.split(",")]))
    print(f"model: {base.model}\nexcerpts of {frames} frames x {base.features.n_bins} bins "
          f"({base.data.excerpt_seconds:g} s); {classes} chord classes; "
          f"steps_per_execution {base.train.steps_per_execution}; load average {os.getloadavg()[0]:.2f}", flush=True)

    rng = np.random.default_rng(0)

    def dataset(batch_size):
        n = 2 * batch_size
        x = rng.random((n, frames, base.features.n_bins), dtype=np.float32)
        y = {"chord": rng.integers(-1, classes, (n, frames)).astype(np.int32),
             "root": rng.integers(0, 13, (n, frames)).astype(np.int32),
             "bass": rng.integers(0, 13, (n, frames)).astype(np.int32),
             "pitches": rng.integers(0, 2, (n, frames, 12)).astype(np.float32)}
        mask = np.ones((n, frames), np.float32)
        return tf.data.Dataset.from_tensor_slices((x, y, mask)).batch(batch_size).cache().repeat().prefetch(2)

    runs = []
    for policy, jit, batch_size in combos:
        config = resolve(args.preset, args.set + [f"train.jit_compile={jit == 'on'}", f"data.batch_size={batch_size}"])
        keras.mixed_precision.set_global_policy(policy)
        model = model_lib.build_model(config)
        model_lib.compile_model(model, config, steps_per_epoch=1)
        keras.mixed_precision.set_global_policy("float32")
        per_call = config.train.steps_per_execution
        steps = max(per_call, -(-args.excerpts // batch_size) // per_call * per_call)
        ds = dataset(batch_size)
        start = time.perf_counter()
        model.fit(ds, steps_per_epoch=per_call, epochs=1, verbose=0)  # trace and compile
        runs.append({"precision": policy, "jit": jit, "batch_size": batch_size, "model": model, "data": ds,
                     "steps": steps, "params": model.count_params(), "warm_up_s": time.perf_counter() - start,
                     "times": []})
    for _ in range(args.rounds):
        for run in runs:
            run["times"].append(timed_fit(run["model"], run["data"], run["steps"])[0])

    results = []
    print(f"\n{'precision':<16}{'XLA':<5}{'batch':>6}{'best ex/s':>11}{'median ex/s':>13}{'songs/min':>11}"
          f"{'warm-up s':>11}")
    for run in runs:
        excerpts = run["steps"] * run["batch_size"]
        best = excerpts / min(run["times"])
        median = excerpts / statistics.median(run["times"])
        songs_per_min = median * 60.0 * base.data.excerpt_seconds / SONG_SECONDS
        print(f"{run['precision']:<16}{run['jit']:<5}{run['batch_size']:>6}{best:>11.1f}{median:>13.1f}"
              f"{songs_per_min:>11.0f}{run['warm_up_s']:>11.1f}")
        results.append({k: run[k] for k in ("precision", "jit", "batch_size", "params", "warm_up_s")}
                       | {"best_excerpts_per_s": best, "median_excerpts_per_s": median,
                          "median_songs_per_min": songs_per_min, "round_seconds": run["times"]})
    print(f"\nparameters: {runs[0]['params']:,}; load average at the end {os.getloadavg()[0]:.2f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"config": base.to_dict(), "results": results}, f, indent=2)
    return results


if __name__ == "__main__":
    main()
