"""Synthetic chord songs with exact labels: harmony -> MIDI arrangement -> audio -> recording chain.

`generate_songs` writes audio, Harte `.lab` files and a manifest CSV that
`chordkeras.prepare` reads; `python -m chordkeras.synth` is its command line.
"""

from chordkeras.synth.generate import GENERATOR_VERSION, generate_songs, make_song

__all__ = ["GENERATOR_VERSION", "generate_songs", "make_song"]
