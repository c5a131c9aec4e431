"""Synthetic chord songs with exact labels: harmony -> MIDI arrangement -> SoundFont audio.

`generate_songs` writes audio, Harte `.lab` files and a manifest CSV that
`chordkeras.prepare` reads; `python -m chordkeras.synth` is its command line.
"""

from chordkeras.synth.generate import generate_songs, make_song

__all__ = ["generate_songs", "make_song"]
