"""Built-in voices: deterministic, routed by CC10, silent outside the notes, in tune, scaled by velocity."""

from __future__ import annotations

import io
import math

import numpy as np
import pretty_midi
import pytest

from chordkeras.synth import arrange, harmony, voices

SR = 48000


def part(program: int, notes, pan: int = 0, volume: int = 100, bend: int | None = None,
         is_drum: bool = False) -> pretty_midi.Instrument:
    """An instrument with (pitch, start, end[, velocity]) notes and the arrangement's controllers."""
    inst = pretty_midi.Instrument(program, is_drum=is_drum)
    for note in notes:
        pitch, start, end = note[:3]
        inst.notes.append(pretty_midi.Note(note[3] if len(note) > 3 else 100, pitch, start, end))
    inst.control_changes += [pretty_midi.ControlChange(7, volume, 0.0), pretty_midi.ControlChange(10, pan, 0.0)]
    if bend is not None:
        inst.pitch_bends.append(pretty_midi.PitchBend(bend, 0.0))
    return inst


def song(*instruments) -> pretty_midi.PrettyMIDI:
    midi = pretty_midi.PrettyMIDI()
    midi.instruments.extend(instruments)
    return midi


def midi_bytes(midi: pretty_midi.PrettyMIDI) -> bytes:
    buffer = io.BytesIO()
    midi.write(buffer)
    return buffer.getvalue()


def played(instrument, seed: int = 0, sample_rate: int = SR) -> np.ndarray:
    """The left channel of `instrument` played by its voice (always replaced)."""
    _, audio, names = voices.synthesise_parts(song(instrument), np.random.default_rng(seed), sample_rate, 1.0)
    assert names == [f"{voices.voice_for(instrument)}:{instrument.program}"]
    return audio[:, 0].astype(np.float64)


def fundamental(audio: np.ndarray, expected: float, sample_rate: int = SR) -> float:
    """Frequency of the strongest spectral peak within a major third of `expected` (parabolic interpolation)."""
    n = len(audio)
    spectrum = np.log(np.abs(np.fft.rfft(audio * np.hanning(n), 8 * n)) + 1e-12)
    freqs = np.fft.rfftfreq(8 * n, 1 / sample_rate)
    band = np.flatnonzero((freqs > expected * 2 ** (-4 / 12)) & (freqs < expected * 2 ** (4 / 12)))
    k = band[np.argmax(spectrum[band])]
    a, b, c = spectrum[k - 1], spectrum[k], spectrum[k + 1]
    return float(freqs[k] + 0.5 * (a - c) / (a - 2 * b + c) * (freqs[1] - freqs[0]))


def cents(f: float, reference: float) -> float:
    return 1200 * math.log2(f / reference)


def steady(audio: np.ndarray, start: float, end: float, sample_rate: int = SR) -> np.ndarray:
    return audio[int(start * sample_rate):int(end * sample_rate)]


def test_voice_follows_program_and_texture():
    melody = [(69, 0.0, 0.5), (71, 0.48, 1.0)]              # overlaps by 20 ms: still one voice
    chord = [(60, 0.0, 1.0), (64, 0.0, 1.0)]
    assert voices.voice_for(part(73, melody)) == voices.SINGER
    assert voices.voice_for(part(26, melody)) == voices.SINGER       # a lead-guitar program playing a line
    assert voices.voice_for(part(26, chord)) == voices.PLUCK
    assert voices.voice_for(part(33, melody)) == voices.PLUCK
    assert voices.voice_for(part(52, chord)) == voices.ADDITIVE      # a choir pad is an instrument
    assert voices.voice_for(part(0, melody)) == voices.ADDITIVE
    assert voices.voice_for(part(0, melody, is_drum=True)) is None
    assert voices.voice_for(part(0, [])) is None


def arranged_song(seed: int) -> pretty_midi.PrettyMIDI:
    rng = np.random.default_rng(seed)
    midi, _ = arrange.arrange(harmony.plan_song(rng, 8.0), rng)
    return midi


def test_same_seed_same_audio_and_different_seed_different_audio():
    midi = arranged_song(3)
    first = voices.synthesise_parts(midi, np.random.default_rng(7), SR, 1.0)
    again = voices.synthesise_parts(midi, np.random.default_rng(7), SR, 1.0)
    other = voices.synthesise_parts(midi, np.random.default_rng(8), SR, 1.0)
    assert first[1].dtype == np.float32 and first[1].ndim == 2 and first[1].shape[1] == 2
    assert np.array_equal(first[1], again[1]) and first[2] == again[2]
    assert midi_bytes(first[0]) == midi_bytes(again[0])
    assert first[2] == other[2]              # probability 1: the same parts, with other timbres
    assert np.abs(first[1]).max() > 0 and not np.array_equal(first[1], other[1])


def test_copy_lacks_exactly_the_replaced_parts_and_the_original_is_untouched():
    midi = song(part(0, [(60, 0, 1)]), part(25, [(52, 0, 1), (56, 0, 1)]), part(33, [(40, 0, 1)]),
                part(73, [(72, 0, 1)]), part(0, [(36, 0, 0.2)], is_drum=True))
    before = midi_bytes(midi)
    everything = voices.synthesise_parts(midi, np.random.default_rng(0), SR, 1.0)
    assert [(i.program, i.is_drum) for i in everything[0].instruments] == [(0, True)]
    assert everything[2] == ["additive:0", "pluck:25", "pluck:33", "singer:73"]
    nothing = voices.synthesise_parts(midi, np.random.default_rng(0), SR, 0.0)
    assert midi_bytes(nothing[0]) == before and nothing[2] == [] and not np.any(nothing[1])
    draws = [voices.synthesise_parts(midi, np.random.default_rng(seed), SR, 0.5) for seed in range(6)]
    assert any(0 < len(names) < 4 for _, _, names in draws)
    for kept, _, names in draws:
        replaced = [int(name.split(":")[1]) for name in names]
        kept_programs = [i.program for i in kept.instruments if not i.is_drum]
        assert sorted(kept_programs + replaced) == [0, 25, 33, 73]
        assert sum(i.is_drum for i in kept.instruments) == 1
        assert kept.instruments[-1].notes[0].end == 0.2
    assert midi_bytes(midi) == before
    with pytest.raises(ValueError, match="probability"):
        voices.synthesise_parts(midi, np.random.default_rng(0), SR, 1.5)


def test_length_is_the_last_event_and_cc10_picks_the_channel():
    sr = 16000
    left = part(0, [(60, 0.1, 1.0)], pan=0)
    left.control_changes.append(pretty_midi.ControlChange(11, 127, 1.25))     # last event: ceil(1.25 * sr) + 1
    right = part(33, [(40, 0.2, 0.6)], pan=127)
    _, audio, names = voices.synthesise_parts(song(left, right), np.random.default_rng(1), sr, 1.0)
    assert audio.shape == (20001, 2) and names == ["additive:0", "pluck:33"]
    alone_left = voices.synthesise_parts(song(left), np.random.default_rng(1), sr, 1.0)[1]
    assert np.any(alone_left[:, 0]) and not np.any(alone_left[:, 1])
    # The bass alone on the right; with both, the left channel holds only the keyboard.
    assert np.array_equal(audio[:, 0], alone_left[:, 0])
    assert np.any(audio[:, 1]) and not np.any(audio[:int(0.2 * sr), 1])
    centre = voices.synthesise_parts(song(part(0, [(60, 0.1, 1.0)], pan=64)), np.random.default_rng(1), sr, 1.0)[1]
    loud = np.abs(centre[:, 0]) > 1e-4
    np.testing.assert_allclose(centre[loud, 1] / centre[loud, 0], math.tan(64 / 127 * math.pi / 2), rtol=1e-5)


@pytest.mark.parametrize("program", [0, 48, 25, 33, 73])
def test_silence_outside_the_notes_but_the_release(program):
    notes = [(57, 0.3, 0.8), (60, 1.6, 2.0)]
    audio = played(part(program, notes), seed=program)
    release = 0.4                                   # the longest release any voice draws
    for start, end in ((0.0, 0.3), (0.8 + release, 1.6), (2.0 + release, None)):
        assert not np.any(audio[int(start * SR):None if end is None else int(end * SR)])
    for start, end in ((0.3, 0.8), (1.6, 2.0)):
        assert np.sqrt(np.mean(audio[int(start * SR):int(end * SR)] ** 2)) > 1e-3


@pytest.mark.parametrize("program, pitch, seed", [(25, 45, 0), (25, 64, 1), (33, 40, 2), (27, 76, 3)])
def test_plucked_string_is_in_tune(program, pitch, seed):
    audio = played(part(program, [(pitch, 0.0, 1.5)]), seed)
    f0 = voices.hertz(pitch)
    assert abs(cents(fundamental(steady(audio, 0.05, 1.45), f0), f0)) < 2


@pytest.mark.parametrize("seed", range(4))
def test_additive_voice_is_in_tune(seed):
    audio = played(part(0, [(60, 0.0, 1.5)]), seed)
    assert abs(cents(fundamental(steady(audio, 0.05, 1.45), 261.6256), 261.6256)) < 2


def test_singer_is_in_tune_without_vibrato_and_on_average_with_it():
    sr = SR
    note = part(73, [(69, 0.0, 1.5)])
    out = np.zeros(int(1.8 * sr), np.float32)
    voices._render_singer(voices._Part.of(note, sr), np.random.default_rng(0), out, vibrato=False)
    assert abs(cents(fundamental(steady(out.astype(np.float64), 0.2, 1.4), 440.0), 440.0)) < 2
    # With vibrato: count the fundamental's cycles (zero crossings of a band around it) over 1.2 s.
    import scipy.signal
    audio = played(note, seed=0)
    band = scipy.signal.sosfiltfilt(scipy.signal.butter(4, [300, 650], "bandpass", fs=sr, output="sos"), audio)
    segment = steady(band, 0.2, 1.4)
    ups = np.flatnonzero((segment[:-1] < 0) & (segment[1:] >= 0))
    mean_f0 = (len(ups) - 1) / ((ups[-1] - ups[0]) / sr)
    assert abs(cents(mean_f0, 440.0)) < 10


@pytest.mark.parametrize("program, pitch", [(25, 57), (0, 60), (73, 69)])
@pytest.mark.parametrize("bend, shift_cents", [(4096, 100.0), (-2048, -50.0)])
def test_first_pitch_bend_shifts_the_fundamental(program, pitch, bend, shift_cents):
    def measured(b):
        inst = part(program, [(pitch, 0.0, 1.5)], bend=b)
        if program == 73:
            out = np.zeros(int(1.8 * SR), np.float32)
            voices._render_singer(voices._Part.of(inst, SR), np.random.default_rng(0), out, vibrato=False)
            audio = out.astype(np.float64)
        else:
            audio = played(inst, seed=5)
        return fundamental(steady(audio, 0.2, 1.4), voices.hertz(pitch + b / 4096))
    assert abs(cents(measured(bend), measured(0)) - shift_cents) < 2


@pytest.mark.parametrize("program", [0, 25, 33, 73])
def test_velocity_and_volume_scale_the_level_by_their_square(program):
    def rms(velocity, volume=100):
        audio = played(part(program, [(60, 0.0, 0.8, velocity)], volume=volume), seed=9)
        return float(np.sqrt(np.mean(audio ** 2)))
    levels = [rms(v) for v in (20, 50, 80, 110, 127)]
    assert all(a < b for a, b in zip(levels, levels[1:]))
    assert levels[0] / levels[-1] == pytest.approx((20 / 127) ** 2, rel=1e-4)
    assert rms(127, volume=50) / rms(127, volume=100) == pytest.approx((50 / 100) ** 2, rel=1e-4)
