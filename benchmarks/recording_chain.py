"""Cost of each stage of the generator's recording chain, per 45 s song, on one core.

Decides what belongs in the generator (audio, once per song) and what in the data pump
(spectrogram, every excerpt of every epoch): a stage that costs tens of milliseconds per song in
numpy would cost that again for every excerpt if it ran in the pump. Run from the repository root:

    python benchmarks/recording_chain.py [--seconds 45] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def stages(sample_rate: int):
    from chordkeras.synth import recording

    def room(x, rng):
        return recording.reverberate(x, recording.room_impulse(rng, sample_rate, 0.8, 10.0))

    return {
        "room (RT60 0.8 s, 10 m)": room,
        "compressor": lambda x, rng: recording.compress(x, sample_rate, -6.0, 4.0, 0.02),
        "clipper": lambda x, rng: recording.clip(x, 6.0, soft=True),
        "loudspeaker": lambda x, rng: recording.speaker(x, sample_rate, 200.0, 6000.0, [(1000.0, 6.0)]),
        "pink noise": lambda x, rng: recording.add_at_snr(x, recording.coloured_noise(len(x), rng, "pink"), 30.0),
        "hum": lambda x, rng: recording.add_at_snr(x, recording.hum(len(x), sample_rate, 50.0, rng), 30.0),
        "crowd": lambda x, rng: recording.add_at_snr(x, recording.crowd(len(x), sample_rate, rng), 20.0),
        "tape wow": lambda x, rng: recording.wow_and_flutter(x, sample_rate, 10.0, 1.0, 3.0, 10.0),
        "MP3 128 kb/s": lambda x, rng: recording.codec(x, sample_rate, "mp3_128"),
        "Vorbis q5": lambda x, rng: recording.codec(x, sample_rate, "ogg_q5"),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=45.0, help="song length (default 45)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per stage; the median is shown")
    args = parser.parse_args(argv)
    sample_rate = 22050
    x = np.random.default_rng(0).standard_normal(int(args.seconds * sample_rate)) * 0.1
    print(f"{'stage':<26} {'ms per song':>11}")
    for name, stage in stages(sample_rate).items():
        times = []
        for k in range(args.repeats):
            rng = np.random.default_rng(k)
            start = time.process_time()
            stage(x, rng)
            times.append(time.process_time() - start)
        print(f"{name:<26} {1000 * np.median(times):11.0f}")
    print(f"(CPU time of one process, median of {args.repeats}, {args.seconds:g} s of mono audio at {sample_rate} Hz)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
