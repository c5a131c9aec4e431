"""`python -m chordkeras.synth --out DIR --songs N --seed S`: writes synthetic songs and a manifest."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Sequence

from chordkeras.synth.generate import AUDIO_FORMATS, SETTINGS_NAME, VOICE_PROBABILITY, generate_songs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m chordkeras.synth",
        description="Generate synthetic songs (audio + Harte .lab) and a manifest CSV for chordkeras.prepare.",
    )
    parser.add_argument("--out", required=True, help="output folder (created; existing finished songs are kept)")
    parser.add_argument("--songs", type=int, required=True, help="number of songs")
    parser.add_argument("--seed", type=int, default=0, help="run seed; song i depends only on (seed, i)")
    parser.add_argument("--soundfont", action="append", default=None,
                        help=".sf2 or .sf3 file; repeat to render each song with one of several (default: TimGM6mb.sf2 "
                             "shipped with pretty_midi; .sf3 is converted once into $CHORDKERAS_CACHE or ~/.cache/chordkeras)")
    parser.add_argument("--minutes-per-song", type=float, default=None,
                        help="length of every song in minutes (default: 2-4 minutes, drawn per song)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--format", choices=AUDIO_FORMATS, default="flac", help="audio format")
    parser.add_argument("--voices", type=float, default=VOICE_PROBABILITY, metavar="P",
                        help=f"chance that a pitched part is played by a built-in voice (plucked string, singer, "
                             f"additive) instead of the SoundFont (default {VOICE_PROBABILITY})")
    parser.add_argument("--no-recording-chain", action="store_true",
                        help="clean mixes: no simulated room, dynamics, loudspeaker, noise, tape or codec")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    existing = len(list(Path(args.out).glob("song_*.lab"))) if Path(args.out).is_dir() else 0
    start = time.perf_counter()
    manifest = generate_songs(args.out, args.songs, args.seed, soundfont=args.soundfont,
                              minutes_per_song=args.minutes_per_song, workers=args.workers,
                              audio_format=args.format, voice_probability=args.voices,
                              recording_chain=not args.no_recording_chain)
    elapsed = time.perf_counter() - start
    settings = json.loads((manifest.parent / SETTINGS_NAME).read_text())
    made = max(args.songs - existing, 0)
    rate = f", {60 * made / elapsed:.1f} songs/min" if made and elapsed > 0 else ""
    fonts = ", ".join(font["name"] for font in settings["soundfonts"]) or "no SoundFont"
    print(f"{made} new songs, {args.songs} listed ({settings['renderer']}: {fonts}): {elapsed:.1f} s{rate}")
    print(f"manifest: {manifest}")


if __name__ == "__main__":
    main()
