"""Built-in voices (`chordkeras.synth.voices`): loudness against the SoundFont, and speed.

Loudness: for every GM program a voice plays, the same notes (a strummed or held chord
sequence, a bass line or a melody; velocity 90, CC7 100, reverb and chorus sends 0)
are rendered by midirenderer with TimGM6mb and by the voice (one random timbre per
seed); the RMS ratio voice/SoundFont is printed in dB per GM family, with the
`voices.GAIN_DB` table that would bring each family's median to 0 dB.
Speed: `synthesise_parts` on songs of the generator's own arrangements, CPU time on one
core, with every pitched part replaced and with the default probability. Run from the
repository root:

    python benchmarks/voices.py --seeds 3 --songs 20
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pretty_midi

from chordkeras.synth import arrange, generate, harmony, render, voices

PROGRAMS = {
    voices.PLUCK: tuple(range(24, 40)),
    voices.SINGER: tuple(sorted(arrange.LEAD_PROGRAMS)),
    voices.ADDITIVE: tuple(p for p in range(128) if p not in voices.PLUCK_PROGRAMS),
}
CHORDS = ((48, 52, 55, 60, 64), (45, 52, 57, 60, 64), (41, 48, 53, 57, 60), (43, 50, 55, 59, 62))


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3, help="random timbres per program")
    parser.add_argument("--songs", type=int, default=20, help="45-second songs for the speed measurement")
    return parser.parse_args(argv)


def passage(program: int, voice: str) -> pretty_midi.PrettyMIDI:
    """Eight seconds of notes in the way the arrangement would give them to `voice`."""
    inst = pretty_midi.Instrument(program)
    if voice == voices.SINGER:
        for k, pitch in enumerate((67, 69, 71, 72, 71, 69, 67, 64, 65, 67, 69, 67, 64, 62, 60, 60)):
            inst.notes.append(pretty_midi.Note(90, pitch, 0.5 * k, 0.5 * k + 0.45))
    elif 32 <= program < 40:
        for k in range(16):
            inst.notes.append(pretty_midi.Note(90, CHORDS[k // 4][0] - 12 + (7 if k % 2 else 0), 0.5 * k, 0.5 * k + 0.45))
    else:
        strum = 0.012 if voice == voices.PLUCK else 0.0
        for k, chord in enumerate(CHORDS):
            for beat in range(4 if voice == voices.PLUCK else 1):
                t = 2.0 * k + 0.5 * beat
                length = 0.5 if voice == voices.PLUCK else 1.95
                for j, pitch in enumerate(chord):
                    inst.notes.append(pretty_midi.Note(90, pitch, t + j * strum, t + length - 0.02))
    inst.control_changes += [pretty_midi.ControlChange(7, 100, 0.0), pretty_midi.ControlChange(10, 0, 0.0),
                             pretty_midi.ControlChange(91, 0, 0.0), pretty_midi.ControlChange(93, 0, 0.0)]
    midi = pretty_midi.PrettyMIDI()
    midi.instruments.append(inst)
    return midi


def rms_db(audio: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(audio.astype(np.float64) ** 2) + 1e-20))


def loudness(seeds: int) -> None:
    font = render.SoundFontRenderer()
    print("voice/SoundFont RMS in dB per GM family (program // 8): median [min, max] over its programs and seeds")
    for voice, programs in PROGRAMS.items():
        families: dict[int, list[float]] = {}
        for program in programs:
            midi = passage(program, voice)
            if voices.voice_for(midi.instruments[0]) != voice:
                raise RuntimeError(f"program {program}: the passage for {voice} would be played by another voice")
            reference = rms_db(font.render(midi))
            for seed in range(seeds):
                _, audio, _ = voices.synthesise_parts(midi, np.random.default_rng(seed), font.sample_rate, 1.0)
                families.setdefault(program // 8, []).append(rms_db(audio) - reference)
        table = {}
        for family, ratios in families.items():
            print(f"  {voice:9s} family {family:2d}: {np.median(ratios):+6.1f} [{min(ratios):+6.1f}, {max(ratios):+6.1f}]")
            table[family] = round(voices.GAIN_DB[voice].get(family, 0.0) - float(np.median(ratios)), 1)
        print(f"  GAIN_DB[{voice!r}] for a median of 0 dB: {table}")


def speed(songs: int) -> None:
    for probability in (1.0, 0.5):
        times, parts = [], 0
        for index in range(songs):
            rng = generate.song_rng(0, index)
            midi, _ = arrange.arrange(harmony.plan_song(rng, 45.0), rng)
            started = time.process_time()
            _, _, names = voices.synthesise_parts(midi, np.random.default_rng(index), 48000, probability)
            times.append(time.process_time() - started)
            parts += len(names)
        print(f"probability {probability}: {parts / songs:.1f} parts per 45-s song at 48 kHz, CPU s per song "
              f"median {np.median(times):.3f}, mean {np.mean(times):.3f}, max {max(times):.3f}")


def main(argv=None) -> None:
    args = _parse(argv)
    loudness(args.seeds)
    speed(args.songs)


if __name__ == "__main__":
    main()
