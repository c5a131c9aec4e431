"""Built-in voices: timbres beyond the SoundFont for the song generator.

`synthesise_parts` draws which pitched parts of a performance are played by one
of three synthesisers instead of the SoundFont, each with its own random
timbre per part:

- ``pluck``: guitars and basses (GM 24-39) as Karplus-Strong plucked strings
  (random loop damping and brightness, pick position, a body resonance of two
  peaking filters applied to the excitation as in commuted synthesis, pick noise).
- ``singer``: a monophonic lead on one of the arrangement's lead programs as a sung
  voice (a band-limited Rosenberg glottal pulse, breath noise, a cascade of vowel
  formant resonators that changes vowel per note, vibrato, glides, consonants).
- ``additive``: everything else as an additive/FM instrument with a random spectrum,
  slight inharmonicity and a random ADSR envelope.

Only the first pitch bend (the arrangement's tuning), CC7 and CC10 of a part are
honoured; note velocity and CC7 follow the SoundFont convention amplitude =
(value/127)**2; CC10 pans with a constant-power law. Everything is vectorised:
strings are computed a period at a time and each distinct pitch of a part is
synthesised once, then reused for its notes.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pretty_midi
import scipy.fft
import scipy.signal
import scipy.special

from chordkeras.synth import recording
from chordkeras.synth.arrange import LEAD_PROGRAMS

PLUCK, SINGER, ADDITIVE = "pluck", "singer", "additive"
PLUCK_PROGRAMS = range(24, 40)          # guitars and basses
BEND_RANGE = 2.0                        # semitones at full pitch-bend deflection (GM default)
CONTROL_HOP = 32                        # samples per step of the singer's pitch contour
GLOTTAL_TABLE = 8192                    # samples per glottal-pulse period in the wavetable
LEGATO_OVERLAP = 0.05                   # seconds two notes may overlap and still count as one voice
# Output gain in dB per voice and GM family (program // 8), set so that a part's RMS is
# near what midirenderer gives with TimGM6mb for the same notes: printed by
# `python benchmarks/voices.py` (see the README). Other families take the voice's median.
GAIN_DB: dict[str, dict[int, float]] = {
    PLUCK: {3: -15.7, 4: -14.6},
    SINGER: {1: -29.3, 2: -32.5, 3: -34.1, 5: -30.9, 6: -32.8, 7: -34.5, 8: -33.2, 9: -31.2, 10: -31.1},
    ADDITIVE: {0: -25.8, 1: -26.3, 2: -19.5, 5: -18.5, 6: -18.5, 7: -19.9, 8: -18.9, 9: -16.7, 10: -15.9,
               11: -19.7, 12: -19.0, 13: -23.2, 14: -28.7, 15: -28.3},
}

# Adult male vowel formants F1-F3 in Hz (Peterson & Barney 1952); F4, F5 are added per speaker.
VOWELS = {
    "i": (270, 2290, 3010), "I": (390, 1990, 2550), "E": (530, 1840, 2480), "ae": (660, 1720, 2410),
    "A": (730, 1090, 2440), "O": (570, 840, 2410), "U": (440, 1020, 2240), "u": (300, 870, 2240),
    "V": (640, 1190, 2390), "3": (490, 1350, 1690),
}
# Consonant noise bursts: (filter kind, band in Hz, length range in s).
CONSONANTS = {
    "s": ("highpass", (4500,), (0.04, 0.09)), "sh": ("bandpass", (1800, 4500), (0.04, 0.09)),
    "f": ("highpass", (1500,), (0.03, 0.07)), "t": ("highpass", (2500,), (0.01, 0.025)),
    "k": ("bandpass", (1200, 3200), (0.01, 0.03)), "h": ("bandpass", (500, 3000), (0.03, 0.06)),
}


def voice_for(instrument: pretty_midi.Instrument) -> str | None:
    """The voice that can play `instrument`, or None for drums and empty parts.

    Lead programs played one note at a time are sung (a choir pad or a strummed
    lead-guitar program stays an instrument); guitars and basses are plucked.
    """
    if instrument.is_drum or not instrument.notes:
        return None
    if instrument.program in LEAD_PROGRAMS and _monophonic(instrument.notes):
        return SINGER
    if instrument.program in PLUCK_PROGRAMS:
        return PLUCK
    return ADDITIVE


def voice_gain(voice: str, program: int) -> float:
    """Linear output gain of `voice` standing in for GM `program` (from GAIN_DB)."""
    table = GAIN_DB[voice]
    default = float(np.median(list(table.values()))) if table else 0.0
    return 10 ** (table.get(program // 8, default) / 20)


def _monophonic(notes) -> bool:
    ordered = sorted(notes, key=lambda n: n.start)
    return all(b.start >= a.end - LEGATO_OVERLAP for a, b in zip(ordered, ordered[1:]))


def end_time(midi: pretty_midi.PrettyMIDI) -> float:
    """The latest note end or controller time: where the renderers stop."""
    end = midi.get_end_time()
    for inst in midi.instruments:
        end = max([end] + [c.time for c in inst.control_changes])
    return end


def synthesise_parts(midi: pretty_midi.PrettyMIDI, rng: np.random.Generator, sample_rate: int,
                     probability: float = 0.5, always: frozenset[int] = frozenset()
                     ) -> tuple[pretty_midi.PrettyMIDI, np.ndarray, list[str]]:
    """Draws which pitched parts are played by built-in voices instead of the SoundFont.

    Args:
        midi: The performance (left unchanged).
        rng: The song's generator; every choice is drawn from it.
        sample_rate: Output rate in Hz.
        probability: Chance that each pitched part is replaced.
        always: GM programs whose parts are replaced whatever the draw (e.g. those the SoundFont lacks).

    Returns:
        (a deep copy of `midi` without the replaced instruments, float32 [samples, 2]
        stereo audio of the replaced parts with samples = ceil(end * sample_rate) + 1,
        where end is the latest note end / controller time, each part panned by its
        CC10 (0 left, 127 right), and the voice names used, e.g. ["pluck:25", "singer:73"]).
    """
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability must be in [0, 1], got {probability}")
    length = int(math.ceil(end_time(midi) * sample_rate)) + 1
    kept = copy.deepcopy(midi)
    replaced = set()
    by_pan: dict[int, np.ndarray] = {}
    names = []
    for number, original in enumerate(midi.instruments):
        voice = voice_for(original)
        if voice is None or (rng.random() >= probability and original.program not in always):
            continue
        replaced.add(number)
        pan = _controller(original, 10, 64)
        out = by_pan.setdefault(pan, np.zeros(length, np.float32))
        part = _Part.of(original, sample_rate, voice_gain(voice, original.program))
        _RENDER[voice](part, rng, out)
        names.append(f"{voice}:{original.program}")
    kept.instruments = [inst for number, inst in enumerate(kept.instruments) if number not in replaced]
    audio = np.zeros((length, 2), np.float32)
    for pan, mono in by_pan.items():
        angle = pan / 127 * np.pi / 2
        for channel, gain in enumerate((math.cos(angle), math.sin(angle))):
            if gain > 1e-9:                       # a hard pan leaves the other channel exactly silent
                audio[:, channel] += np.float32(gain) * mono
    return kept, audio, names


def _controller(inst: pretty_midi.Instrument, number: int, default: int) -> int:
    return next((c.value for c in sorted(inst.control_changes, key=lambda c: c.time) if c.number == number), default)


class _Part:
    """One instrument's notes as arrays (onset/offset samples, pitch in semitones incl. bend, gain)."""

    def __init__(self, start, stop, pitch, gain, sample_rate):
        self.start, self.stop, self.pitch, self.gain, self.sample_rate = start, stop, pitch, gain, sample_rate

    @classmethod
    def of(cls, inst: pretty_midi.Instrument, sample_rate: int, level: float = 1.0) -> "_Part":
        notes = sorted(inst.notes, key=lambda n: (n.start, n.pitch))
        bend = inst.pitch_bends[0].pitch / 8192 * BEND_RANGE if inst.pitch_bends else 0.0
        volume = (_controller(inst, 7, 100) / 127) ** 2
        start = np.array([int(round(n.start * sample_rate)) for n in notes])
        stop = np.maximum(np.array([int(round(n.end * sample_rate)) for n in notes]), start + 1)
        pitch = np.array([n.pitch for n in notes], float) + bend
        gain = np.array([(n.velocity / 127) ** 2 for n in notes]) * volume * level
        return cls(start, stop, pitch, gain, sample_rate)


def hertz(pitch) -> np.ndarray:
    """Equal-tempered frequency of MIDI pitch (fractional allowed), A4 = 440 Hz."""
    return 440.0 * 2.0 ** ((np.asarray(pitch, float) - 69) / 12)


def _log_uniform(rng, low, high):
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _place_notes(part: _Part, out: np.ndarray, waves: dict, offsets, envelope, release: np.ndarray) -> None:
    """Adds each note: its pitch's wave from `offsets[i]`, shaped by envelope(hold) and `release`."""
    n_release = len(release)
    for i in range(len(part.start)):
        start, hold = part.start[i], part.stop[i] - part.start[i]
        n = min(hold + n_release, len(out) - start)
        if n <= 0:
            continue
        wave = waves[part.pitch[i]][offsets[i]:offsets[i] + n]
        shape = envelope(hold)
        env = np.concatenate([shape, shape[-1] * release])[:n]
        out[start:start + n] += np.float32(part.gain[i]) * env * wave


# --- plucked strings ---------------------------------------------------------------------------

def karplus_strong(excitation: np.ndarray, period: float, loop_gain: float, brightness: float,
                   length: int) -> np.ndarray:
    """A plucked string: y[n] = x[n] + g * (c0 y[n-M] + c1 y[n-M-1] + c2 y[n-M-2]).

    The three loop taps are non-negative and sum to 1; their first moment places
    the loop delay at exactly `period` samples (so the pitch is exact to well under
    a cent) and `brightness` is their gain at Nyquist (0 = darkest). The recursion
    runs a block of M samples at a time: each block is one vector operation on the
    block one period earlier.

    Args:
        excitation: The input (the pluck), shorter than `length`.
        period: Samples per fundamental period (at least 4).
        loop_gain: Per-period loss g < 1.
        brightness: Loop filter gain at Nyquist, in [0, 0.9].
        length: Output samples.
    """
    m = int(round(period)) - 1
    d = period - m                                   # in [0.5, 1.5)
    c1 = (1 - brightness) / 2
    c2 = (d - c1) / 2
    c0 = 1 - c1 - c2
    taps = loop_gain * np.array([c0, c1, c2])
    pad = m + 2
    y = np.zeros(pad + length + m)
    excitation = excitation[: length + m]
    y[pad:pad + len(excitation)] = excitation
    for s in range(pad, pad + length, m):
        y[s:s + m] += taps[0] * y[s - m:s] + taps[1] * y[s - m - 1:s - 1] + taps[2] * y[s - m - 2:s - 2]
    return y[pad:pad + length]


def _render_pluck(part: _Part, rng: np.random.Generator, out: np.ndarray) -> None:
    sr = part.sample_rate
    bass = float(np.median(part.pitch)) < 48
    t60_ref = rng.uniform(1.5, 4.5) if bass else rng.uniform(1.0, 4.0)       # fundamental decay at 110 Hz
    brightness = rng.uniform(0.05, 0.35) if bass else rng.uniform(0.1, 0.6)
    softness = rng.uniform(0.3, 0.8) if bass else rng.uniform(0.0, 0.6)       # one-pole low-pass on the pluck
    pick = rng.uniform(0.08, 0.3)                                            # pick position along the string
    body = np.concatenate([
        recording.biquad("peak", min(_log_uniform(rng, 80, 250), 0.45 * sr), rng.uniform(3, 12), sr, rng.uniform(1, 4)),
        recording.biquad("peak", min(_log_uniform(rng, 200, 2500), 0.45 * sr), rng.uniform(-6, 9), sr,
                         rng.uniform(0.7, 3)),
    ])
    noise_level = rng.uniform(0.02, 0.12)
    release = np.exp(-np.arange(int(rng.uniform(0.04, 0.12) * sr)) / (0.015 * sr)).astype(np.float32)

    waves = {}
    for pitch in np.unique(part.pitch):
        f0 = float(hertz(pitch))
        period = sr / f0
        hold = int(np.max((part.stop - part.start)[part.pitch == pitch]))
        length = min(hold + len(release), len(out))
        p = max(int(round(period)), 4)
        x = rng.uniform(-1, 1, p)
        x = scipy.signal.lfilter([1 - softness], [1, -softness], x)
        x = x - np.roll(x, max(1, int(round(pick * p))))                       # pick-position comb
        x = scipy.signal.sosfilt(body, np.concatenate([x, np.zeros(int(0.03 * sr))]))
        t60 = t60_ref * (110 / f0) ** 0.5
        loop_gain = 10 ** (-3 / (t60 * f0))
        wave = karplus_strong(x, max(period, 4.0), loop_gain, brightness, length)
        head = wave[: max(int(0.1 * sr), 1)]
        waves[pitch] = (wave / (np.sqrt(np.mean(head ** 2)) + 1e-12)).astype(np.float32)
    _place_notes(part, out, waves, np.zeros(len(part.start), int), lambda hold: np.ones(hold, np.float32), release)

    # Pick and string noise: a few milliseconds of band-passed noise on every onset.
    noise = scipy.signal.sosfilt(scipy.signal.butter(2, [min(1500, 0.2 * sr), min(7000, 0.45 * sr)], "bandpass",
                                                     fs=sr, output="sos"), rng.standard_normal(sr // 4, dtype=np.float32))
    noise = (noise / (np.std(noise) + 1e-12)).astype(np.float32)
    n_click = int(0.006 * sr)
    click_env = np.exp(-np.arange(n_click) / (0.0015 * sr)).astype(np.float32)
    offsets = rng.integers(0, len(noise) - n_click, len(part.start))
    for start, gain, offset in zip(part.start, part.gain, offsets):
        n = min(n_click, len(out) - start)
        out[start:start + n] += np.float32(noise_level * gain) * click_env[:n] * noise[offset:offset + n]


# --- additive / FM instruments -------------------------------------------------------------------

def _additive_spectrum(rng: np.random.Generator) -> dict:
    """A random spectral recipe for one part."""
    partials = 40
    k = np.arange(1, partials + 1)
    rolloff = rng.uniform(0.7, 2.2)
    amps = k ** -rolloff * np.exp(rng.normal(0, 0.5, partials))
    if rng.random() < 0.25:
        amps[1::2] *= rng.uniform(0.05, 0.5)             # hollow, clarinet-like: weak even partials
    recipe = {
        "amps": amps,
        "phases": rng.uniform(0, 2 * np.pi, partials),
        "inharmonicity": _log_uniform(rng, 1e-5, 4e-4) if rng.random() < 0.5 else 0.0,
        "fm": None,
    }
    if rng.random() < 0.35:
        recipe["fm"] = (int(rng.integers(1, 4)), rng.uniform(0.3, 3.0), rng.uniform(0.3, 1.0))  # ratio, index, mix
    return recipe


def _fm_amplitudes(ratio: int, index: float, partials: int) -> np.ndarray:
    """Signed harmonic amplitudes of sin(t + index sin(ratio t)): J_n(index) at 1 + n ratio."""
    amps = np.zeros(partials + 1)
    for n in range(-partials, partials + 1):
        harmonic = 1 + n * ratio
        if harmonic == 0 or abs(harmonic) > partials:
            continue
        amps[abs(harmonic)] += np.sign(harmonic) * scipy.special.jv(n, index)
    return amps[1:]


def _additive_loop(recipe: dict, f0: float, sr: int, loop_seconds: float = 0.3) -> np.ndarray:
    """One loop of a whole number of periods (exact length in samples), partials below 0.45 sr."""
    periods = max(1, int(round(f0 * loop_seconds)))
    size = int(round(periods * sr / f0))
    amps = recipe["amps"]
    k = np.arange(1, len(amps) + 1)
    coeffs = amps * np.exp(1j * recipe["phases"])
    if recipe["fm"] is not None:
        ratio, index, mix = recipe["fm"]
        fm = _fm_amplitudes(ratio, index, len(amps)) * -1j
        coeffs = (1 - mix) * coeffs / np.sqrt(np.sum(amps ** 2)) + mix * fm / (np.sqrt(np.sum(np.abs(fm) ** 2)) + 1e-12)
    bins = np.round(k * periods * np.sqrt(1 + recipe["inharmonicity"] * k ** 2)).astype(int)
    keep = bins * sr / size < 0.45 * sr
    spectrum = np.zeros(size // 2 + 1, complex)
    np.add.at(spectrum, bins[keep], coeffs[keep])
    wave = scipy.fft.irfft(spectrum, size)
    return wave / (np.sqrt(np.mean(wave ** 2)) + 1e-12)


def _render_additive(part: _Part, rng: np.random.Generator, out: np.ndarray) -> None:
    sr = part.sample_rate
    recipe = _additive_spectrum(rng)
    percussive = rng.random() < 0.4
    attack = _log_uniform(rng, 0.002, 0.02) if percussive else _log_uniform(rng, 0.005, 0.25)
    decay = _log_uniform(rng, 0.2, 2.5) if percussive else _log_uniform(rng, 0.05, 1.0)
    sustain = rng.uniform(0.0, 0.3) if percussive else rng.uniform(0.5, 1.0)
    release_s = _log_uniform(rng, 0.05, 0.4)
    longest = int(np.max(part.stop - part.start))
    t = np.arange(max(longest, sr)) / sr
    shape = np.where(t < attack, t / attack, sustain + (1 - sustain) * np.exp(-(t - attack) / decay))
    # Equal loudness over a one-second note whatever the envelope: a fast-decaying part starts louder.
    shape = (shape / np.sqrt(np.mean(shape[:sr] ** 2))).astype(np.float32)
    release = np.linspace(1, 0, int(release_s * sr), dtype=np.float32) ** 2
    waves, sizes = {}, {}
    for pitch in np.unique(part.pitch):
        loop = _additive_loop(recipe, float(hertz(pitch)), sr).astype(np.float32)
        need = int(np.max((part.stop - part.start)[part.pitch == pitch])) + len(release) + len(loop)
        waves[pitch] = np.tile(loop, need // len(loop) + 1)
        sizes[pitch] = len(loop)
    offsets = [int(rng.integers(sizes[p])) for p in part.pitch]
    _place_notes(part, out, waves, offsets, lambda hold: shape[:hold], release)


# --- the sung lead -------------------------------------------------------------------------------

def _glottal_table(open_quotient: float, tilt: float, harmonics: int, size: int = 8192) -> np.ndarray:
    """One period of the derivative of a Rosenberg glottal pulse, band-limited to `harmonics`."""
    theta = np.arange(size) / size
    opening, closing = 0.6 * open_quotient, 0.4 * open_quotient
    flow = np.where(theta < opening, 0.5 * (1 - np.cos(np.pi * theta / opening)),
                    np.where(theta < open_quotient, np.cos(0.5 * np.pi * (theta - opening) / closing), 0.0))
    spectrum = np.fft.rfft(flow)
    k = np.arange(len(spectrum))
    spectrum = spectrum * 1j * k * np.maximum(k, 1) ** -tilt          # radiation (derivative) and extra tilt
    spectrum[0] = 0
    spectrum[min(harmonics, size // 2 - 1) + 1:] = 0
    table = np.fft.irfft(spectrum[: size // 2 + 1], size)
    return (table / (np.sqrt(np.mean(table ** 2)) + 1e-12)).astype(np.float32)


def _formant_sos(formants, bandwidths, sr: int) -> np.ndarray:
    """A Klatt cascade: one unity-DC-gain two-pole resonator per formant."""
    rows = []
    for f, bw in zip(formants, bandwidths):
        if f >= 0.45 * sr:
            continue
        r = np.exp(-np.pi * bw / sr)
        b1, b2 = 2 * r * np.cos(2 * np.pi * f / sr), -r * r
        rows.append([1 - b1 - b2, 0, 0, 1, -b1, -b2])
    return np.array(rows)


def _phrases(part: _Part, gap: int) -> list[range]:
    """Runs of notes whose onsets follow the previous offset within `gap` samples (sung in one breath)."""
    breaks = np.flatnonzero(part.start[1:] - part.stop[:-1] > gap) + 1
    edges = np.concatenate([[0], breaks, [len(part.start)]])
    return [range(a, b) for a, b in zip(edges[:-1], edges[1:])]


def _render_singer(part: _Part, rng: np.random.Generator, out: np.ndarray, vibrato: bool = True) -> None:
    """Sings `part` into `out`; vibrato=False (to measure pitch) draws the same choices with zero depth."""
    sr = part.sample_rate
    speaker = rng.uniform(0.95, 1.25)                       # vocal-tract size: formants scale with it
    upper = (rng.uniform(3200, 3700), rng.uniform(3900, 4600))
    table_vowels = [v for v in VOWELS if rng.random() < 0.7] or ["A"]
    vowels = {v: np.array(VOWELS[v] + upper) * speaker * np.exp(rng.normal(0, 0.05, 5)) for v in table_vowels}
    bandwidths = np.array([rng.uniform(50, 90), rng.uniform(70, 120), rng.uniform(100, 180),
                           rng.uniform(150, 250), rng.uniform(200, 300)])
    open_quotient, tilt = rng.uniform(0.4, 0.7), rng.uniform(0.0, 0.6)
    breath = rng.uniform(0.02, 0.15)
    vib_rate, vib_cents = rng.uniform(5, 7), rng.uniform(20, 80) * vibrato
    vib_delay = rng.uniform(0.12, 0.35)
    glide = rng.uniform(0.03, 0.12)
    attack, release = rng.uniform(0.02, 0.06), rng.uniform(0.06, 0.15)
    consonant_rate = rng.uniform(0.2, 0.6)
    consonant_kinds = [c for c in CONSONANTS if rng.random() < 0.6] or ["t"]
    consonant_sos = {}
    for name in consonant_kinds:
        kind, band, _ = CONSONANTS[name]
        edges = [min(f, 0.45 * sr) for f in band]
        consonant_sos[name] = scipy.signal.butter(2, edges[0] if kind == "highpass" else edges, kind, fs=sr, output="sos")
    n_release = int(release * sr)

    for notes in _phrases(part, gap=int(0.1 * sr)):
        idx = np.array(notes)
        start, stop = part.start[idx], part.stop[idx]
        begin, end = int(start[0]), min(int(stop[-1]) + n_release, len(out))
        n = end - begin
        if n <= 0:
            continue
        onsets = (start - begin) / sr
        offsets = (stop - begin) / sr
        pitch = part.pitch[idx]

        # Pitch at a control rate (glides and vibrato are slow): hold each note, glide into it
        # from the previous one, vibrato fading in after each onset.
        t = np.arange(0, n + CONTROL_HOP, CONTROL_HOP) / sr
        glides = np.minimum(glide, 0.5 * (offsets - onsets))
        knots_t = np.concatenate([[0.0], np.column_stack([onsets[1:], onsets[1:] + glides[1:]]).ravel()])
        knots_p = np.concatenate([[pitch[0]], np.column_stack([pitch[:-1], pitch[1:]]).ravel()])
        semitones = np.interp(t, knots_t, knots_p)
        since = t - onsets[np.searchsorted(onsets, t, side="right") - 1]
        depth = vib_cents / 100 * np.clip((since - vib_delay) / 0.25, 0, 1)
        semitones += depth * np.sin(2 * np.pi * vib_rate * t + rng.uniform(0, 2 * np.pi))
        f0 = hertz(semitones)
        samples = np.arange(n, dtype=np.float64)
        phase = np.cumsum(np.interp(samples, t * sr, f0 / sr)) + rng.uniform()

        harmonics = max(1, int(0.45 * sr / f0.max()))
        table = _glottal_table(open_quotient, tilt, harmonics)
        cycle = (phase * GLOTTAL_TABLE).astype(np.int64) % GLOTTAL_TABLE
        source = table[cycle]
        # Breath: aspiration noise, louder while the glottis is open.
        noise = rng.standard_normal(n, dtype=np.float32)
        source += np.float32(breath * 3) * noise * np.where(cycle < open_quotient * GLOTTAL_TABLE, 1.0, 0.3).astype(np.float32)

        # Amplitude: attack at the phrase start, each note's velocity, release after the last offset.
        amp_t = np.concatenate([[0.0], np.column_stack([onsets + attack * (np.arange(len(idx)) == 0) + 0.02,
                                                         offsets]).ravel(), [offsets[-1] + release]])
        amp_v = np.concatenate([[0.0], np.repeat(part.gain[idx], 2), [0.0]])
        amp_t = np.maximum.accumulate(amp_t)
        source *= np.interp(samples, amp_t * sr, amp_v).astype(np.float32)

        # Vowel per note; formants move over 30 ms at each onset (filter state carried across).
        names = [table_vowels[int(rng.integers(len(table_vowels)))] for _ in idx]
        bounds = np.concatenate([(start - begin), [n]])
        voice = np.empty(n)
        zi = None
        previous = vowels[names[0]]
        step = int(0.01 * sr)
        for j, name in enumerate(names):
            target = vowels[name]
            a, b = int(bounds[j]), int(bounds[j + 1])
            cuts = [a + step, a + 2 * step, a + 3 * step] if j else []
            cuts = [c for c in cuts if c < b] + [b]
            lo = a
            for c_i, c in enumerate(cuts):
                if c <= lo:
                    continue
                mix = (c_i + 1) / (len(cuts)) if len(cuts) > 1 else 1.0
                sos = _formant_sos(previous + mix * (target - previous), bandwidths, sr)
                if zi is None:
                    zi = np.zeros((len(sos), 2))
                voice[lo:c], zi = scipy.signal.sosfilt(sos, source[lo:c], zi=zi)
                lo = c
            previous = target

        # Consonants: short filtered noise bursts right at some onsets.
        for j in range(len(idx)):
            if rng.random() >= consonant_rate:
                continue
            name = consonant_kinds[int(rng.integers(len(consonant_kinds)))]
            length = int(rng.uniform(*CONSONANTS[name][2]) * sr)
            a = int(start[j] - begin)
            length = min(length, n - a, int(stop[j] - start[j]))
            if length <= 0:
                continue
            burst = scipy.signal.sosfilt(consonant_sos[name], rng.standard_normal(length, dtype=np.float32))
            level = rng.uniform(0.1, 0.4) * part.gain[idx[j]] / (np.std(burst) + 1e-12)
            voice[a:a + length] += level * burst * np.hanning(length)
        out[begin:end] += voice.astype(np.float32)


_RENDER = {PLUCK: _render_pluck, SINGER: _render_singer, ADDITIVE: _render_additive}
