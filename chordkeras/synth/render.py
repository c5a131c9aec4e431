"""Audio rendering: MIDI through a SoundFont (or an additive fallback), then mixing and recording.

`SoundFontRenderer` uses midirenderer (the Rust synthesiser rustysynth shipped as
wheels; 48 kHz stereo out, its own reverb and chorus; SF3 files are converted to
SF2 first). `AdditiveRenderer` is a plain harmonic-partials synthesiser used only
when no SoundFont renderer loads; `load_renderer` warns when it falls back.
`formant_shifted` optionally changes the samples' timbre by playback speed, and
`master` resamples, equalises the two stems, mixes to mono, runs the recording
chain (`chordkeras.synth.recording`) and sets the level, every choice drawn from
the song's generator.
"""

from __future__ import annotations

import copy
import fractions
import io
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pretty_midi
import scipy.signal

from chordkeras.synth import recording
from chordkeras.synth import soundfont as soundfont_files

SOUNDFONT_RENDERER = "midirenderer"
ADDITIVE_RENDERER = "additive"


def default_soundfont() -> Path:
    """The General MIDI SoundFont shipped inside pretty_midi (TimGM6mb.sf2)."""
    return Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"


def _midi_bytes(midi: pretty_midi.PrettyMIDI) -> bytes:
    buffer = io.BytesIO()
    midi.write(buffer)
    return buffer.getvalue()


class SoundFontRenderer:
    """Renders MIDI with a SoundFont through midirenderer (48 kHz stereo); SF3 files are converted to SF2 once."""

    name = SOUNDFONT_RENDERER
    sample_rate = 48000     # fixed by midirenderer

    def __init__(self, soundfont: os.PathLike | str | None = None):
        import midirenderer  # imported here so the fallback works without the package

        self.soundfont = Path(soundfont) if soundfont is not None else default_soundfont()
        if not self.soundfont.is_file():
            raise FileNotFoundError(f"SoundFont not found: {self.soundfont}")
        self._render = midirenderer.render_wave_from
        self._bytes = soundfont_files.as_sf2(self.soundfont).read_bytes()
        # midirenderer plays a missing preset with another one without a word: the generator gives
        # parts on the General MIDI programs this font lacks to the built-in voices instead.
        self.programs = frozenset(program for bank, program in soundfont_files.presets(self.soundfont) if bank == 0)
        missing = 128 - len(self.programs)
        if missing:
            warnings.warn(f"{self.soundfont.name} lacks {missing} of the 128 General MIDI programs; parts on them "
                          "are played by the built-in voices", RuntimeWarning, stacklevel=2)

    def render(self, midi: pretty_midi.PrettyMIDI) -> np.ndarray:
        """Returns float32 [samples, 2] at `sample_rate`, ending at the MIDI's last event."""
        import soundfile

        wav = self._render(self._bytes, _midi_bytes(midi))
        audio, rate = soundfile.read(io.BytesIO(wav), dtype="float32", always_2d=True)
        if rate != self.sample_rate:
            raise RuntimeError(f"midirenderer returned {rate} Hz, expected {self.sample_rate}")
        return audio


# Additive timbres by GM program range: (partial roll-off exponent, decay seconds or 0 = sustained, attack s).
_ADDITIVE_FAMILIES = (
    (range(0, 8), (1.6, 1.2, 0.004)),       # pianos
    (range(8, 16), (2.2, 0.6, 0.002)),      # chromatic percussion
    (range(16, 24), (0.9, 0.0, 0.01)),      # organs
    (range(24, 32), (1.3, 0.9, 0.003)),     # guitars
    (range(32, 40), (1.5, 1.5, 0.004)),     # basses
    (range(40, 56), (1.0, 0.0, 0.08)),      # strings, ensembles, choir
    (range(56, 64), (0.8, 0.0, 0.03)),      # brass
    (range(64, 80), (1.2, 0.0, 0.03)),      # reeds, pipes
    (range(80, 128), (1.1, 0.0, 0.05)),     # synths, pads, the rest
)


class AdditiveRenderer:
    """Fallback synthesiser: sums decaying harmonic partials per note, noise bursts for drums.

    Much less realistic than a SoundFont; it exists so the generator still works
    when no SoundFont renderer can be loaded.
    """

    name = ADDITIVE_RENDERER
    sample_rate = 22050
    soundfont = None
    programs = frozenset(range(128))   # General MIDI programs it plays itself: all, by family

    def render(self, midi: pretty_midi.PrettyMIDI) -> np.ndarray:
        """Returns float32 [samples, 1] at `sample_rate`, ending at the MIDI's last event."""
        sr = self.sample_rate
        end = midi.get_end_time()
        for inst in midi.instruments:
            end = max([end] + [c.time for c in inst.control_changes])
        out = np.zeros(int(math.ceil(end * sr)) + 1, np.float64)
        for number, inst in enumerate(midi.instruments):
            volume = next((c.value for c in inst.control_changes if c.number == 7), 100) / 127
            if inst.is_drum:
                self._drums(out, inst, volume, number)
                continue
            rolloff, decay, attack = next(v for r, v in _ADDITIVE_FAMILIES if inst.program in r)
            bend = inst.pitch_bends[0].pitch / 8192 * 2 if inst.pitch_bends else 0.0
            for note in inst.notes:
                self._note(out, note, rolloff, decay, attack, bend, volume)
        return out.astype(np.float32)[:, None]

    def _note(self, out, note, rolloff, decay, attack, bend, volume) -> None:
        sr = self.sample_rate
        release = 0.08
        start = int(round(note.start * sr))
        n = min(int((note.end - note.start + release) * sr), len(out) - start)
        if n <= 0:
            return
        t = np.arange(n) / sr
        f0 = 440.0 * 2 ** ((note.pitch + bend - 69) / 12)
        partials = [k for k in range(1, 9) if k * f0 < sr / 2 - 500]
        phase = 2 * np.pi * f0 * t
        tone = sum(np.sin(k * phase) / k ** rolloff for k in partials)
        env = np.minimum(t / attack, 1.0)
        if decay:
            env *= np.exp(-t / decay)
        hold = note.end - note.start
        env *= np.clip(1 - (t - hold) / release, 0, 1)
        out[start:start + n] += (note.velocity / 127) ** 2 * volume * 0.2 * env * tone

    def _drums(self, out, inst, volume, number) -> None:
        sr = self.sample_rate
        noise = np.random.default_rng(number).standard_normal(sr)      # one fixed burst, reused
        for note in inst.notes:
            start = int(round(note.start * sr))
            if note.pitch in (35, 36):
                n = int(0.25 * sr)
                t = np.arange(n) / sr
                hit = np.sin(2 * np.pi * (50 * t + 60 * (1 - np.exp(-t / 0.03)) * 0.03)) * np.exp(-t / 0.12)
            else:
                length = 0.5 if note.pitch in (49, 51, 52, 53, 55, 57, 59) else 0.15
                n = int(length * sr)
                t = np.arange(n) / sr
                burst = noise[:n] if note.pitch in (37, 38, 39, 40) else np.diff(noise[: n + 1])
                hit = 0.4 * burst * np.exp(-t / (length / 4))
            n = min(n, len(out) - start)
            if n > 0:
                out[start:start + n] += (note.velocity / 127) * volume * 0.3 * hit[:n]


def load_renderer(soundfont: os.PathLike | str | None = None):
    """The SoundFont renderer, or the additive fallback when it cannot load.

    A SoundFont named explicitly must load (errors are raised); with the default
    SoundFont, a failure warns and returns `AdditiveRenderer`.
    """
    try:
        renderer = SoundFontRenderer(soundfont)
        probe = pretty_midi.PrettyMIDI()
        inst = pretty_midi.Instrument(0)
        inst.notes.append(pretty_midi.Note(80, 60, 0.0, 0.1))
        probe.instruments.append(inst)
        renderer.render(probe)
        return renderer
    except Exception as error:  # noqa: BLE001 - any failure of the optional renderer means fallback
        if soundfont is not None:
            raise ValueError(f"cannot render with SoundFont {soundfont}: {error}") from error
        warnings.warn(
            f"SoundFont rendering is unavailable ({type(error).__name__}: {error}); "
            "using the additive-synthesis fallback, which sounds far less like real instruments",
            RuntimeWarning,
            stacklevel=2,
        )
        return AdditiveRenderer()


def formant_shifted(midi: pretty_midi.PrettyMIDI, semitones: int, rate: int, sample_rate: int):
    """Sets up a timbre change by playback speed: render low and slow, then resample up and fast.

    Pitched notes are played `semitones` lower and every event later by a factor
    of about 2**(semitones/12); `master` resampling from the returned effective
    rate (instead of `rate`) restores pitch and timing exactly, while the
    SoundFont's samples come out with formants and envelopes shifted.

    Returns:
        (the stretched copy of `midi`, the effective sample rate to pass to `master`).
    """
    ratio = fractions.Fraction(sample_rate / (rate * 2 ** (semitones / 12))).limit_denominator(2000)
    stretch = sample_rate / (rate * float(ratio))
    out = copy.deepcopy(midi)
    for inst in out.instruments:
        for note in inst.notes:
            note.start, note.end = note.start * stretch, note.end * stretch
            if not inst.is_drum:
                note.pitch = int(np.clip(note.pitch - semitones, 0, 127))
        for event in inst.control_changes + inst.pitch_bends:
            event.time *= stretch
    return out, rate * stretch


def _random_eq(rng: np.random.Generator, sr: int) -> np.ndarray:
    """A random mixing-desk EQ: high-pass, optional low-pass, two shelves and maybe a peak, as SOS.

    The high-pass stays below 60 Hz and the low shelf boosts (0 to +20 dB from 150-300 Hz down): studio
    recordings carry far more low end than General MIDI parts (in a studio collection the median song's
    65-123 Hz octave is 4 dB above the mean of the six octaves the features cover; mixes of this
    generator with a high-pass up to 150 Hz and a shelf of +-6 dB had it 12 dB below).
    """
    sos = [scipy.signal.butter(2, rng.uniform(20, 60), "highpass", fs=sr, output="sos")]
    if rng.random() < 0.5:
        sos.append(scipy.signal.butter(2, np.exp(rng.uniform(np.log(2500), np.log(10000))), "lowpass", fs=sr, output="sos"))
    sos.append(recording.biquad("low", rng.uniform(150, 300), rng.uniform(0, 20), sr))
    sos.append(recording.biquad("high", rng.uniform(2500, 6000), rng.uniform(-9, 5), sr))
    if rng.random() < 0.5:
        sos.append(recording.biquad("peak", np.exp(rng.uniform(np.log(250), np.log(4000))), rng.uniform(-6, 6), sr))
    return np.concatenate(sos)


def master(audio: np.ndarray, rate: float, sample_rate: int, rng: np.random.Generator,
           chain: "recording.ChainRanges | None" = recording.TRAINING_CHAIN,
           extra: np.ndarray | None = None) -> np.ndarray:
    """Random mix-down and recording: per-stem EQ and level, mono, the recording chain, level.

    The arrangement pans every instrument hard left or right, so the two channels
    are two stems (instrument groups) that get their own EQ and level here.

    Args:
        audio: float [samples, channels] from a renderer.
        rate: Its sample rate (or the effective rate from `formant_shifted`).
        sample_rate: Output rate.
        rng: The song's generator (all random choices come from it).
        chain: Ranges of the recording chain (`recording.record`: room, dynamics, loudspeaker,
            noise, hum, crowd, tape, codec); None for a clean mix (no room, no noise).
        extra: Optional float [samples, 2] stems at `sample_rate` (the built-in voices), added to
            the renderer's stems before the mix-down.

    Returns:
        float32 [samples] mono at `sample_rate`, RMS -14 to -26 dBFS, peak below 1.
    """
    channels = audio.T.astype(np.float64)
    if rate != sample_rate:
        ratio = fractions.Fraction(sample_rate / rate).limit_denominator(2000)
        channels = scipy.signal.resample_poly(channels, ratio.numerator, ratio.denominator, axis=1)
    if extra is not None:
        extra = np.asarray(extra, np.float64).T
        if len(channels) == 1:
            extra = extra.sum(axis=0, keepdims=True)
        length = max(channels.shape[1], extra.shape[1])
        channels = np.pad(channels, ((0, 0), (0, length - channels.shape[1])))
        channels += np.pad(extra, ((0, 0), (0, length - extra.shape[1])))
    sr = sample_rate
    gains = 10 ** (rng.uniform(-6, 6, len(channels)) / 20)
    mono = sum(gain * scipy.signal.sosfilt(_random_eq(rng, sr), channel) for gain, channel in zip(gains, channels))
    if chain is not None:
        mono, _ = recording.record(mono, sr, rng, chain)
    level = 10 ** (-rng.uniform(14, 26) / 20)
    mono *= level / (np.sqrt(np.mean(mono**2)) + 1e-12)
    peak = np.max(np.abs(mono))
    if peak > 0.98:
        mono *= 0.98 / peak
    return mono.astype(np.float32)
