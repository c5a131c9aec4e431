"""Arrangement: a SongPlan becomes a General MIDI performance (pretty_midi).

Per song, a few harmony instruments are drawn from a GM palette, each with its
own register, voicing and rhythm pattern (pad, block, arpeggio, strum, comping),
plus a bass line on the chord's bass note with passing tones, an optional
melody with non-chord tones, and drums on channel 10. Every chord change is
played on its labelled onset by the first harmony instrument and the bass;
notes never sound past their segment's end (only the synthesiser's release does).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pretty_midi

from chordkeras.synth.harmony import Chord, SongPlan

# GM programs (0-based) by family, with the rhythm patterns that family plays.
HARMONY_FAMILIES: dict[str, tuple[tuple[int, ...], tuple[str, ...]]] = {
    "piano": ((0, 1, 2, 3), ("block", "arpeggio", "comp", "pad")),
    "epiano": ((4, 5), ("comp", "block", "arpeggio", "pad")),
    "keys": ((6, 7, 8, 11, 12, 21), ("arpeggio", "comp", "block")),
    "organ": ((16, 17, 18, 19), ("pad", "block", "comp")),
    "acoustic_guitar": ((24, 25), ("strum", "arpeggio")),
    "electric_guitar": ((26, 27, 28), ("strum", "comp", "arpeggio")),
    "drive_guitar": ((29, 30), ("strum", "block")),
    "strings": ((48, 49, 44, 45), ("pad", "block", "arpeggio")),
    "synth_strings": ((50, 51), ("pad", "block")),
    "choir": ((52, 53, 54), ("pad",)),
    "pad": ((88, 89, 90, 91, 92, 94, 95), ("pad", "block")),
    "brass": ((61, 62, 63, 60), ("comp", "pad", "block")),
    "harp": ((46,), ("arpeggio",)),
}
FAMILY_WEIGHTS = {
    "piano": 3.0, "epiano": 1.5, "keys": 0.8, "organ": 1.2, "acoustic_guitar": 2.0, "electric_guitar": 1.8,
    "drive_guitar": 0.5, "strings": 1.5, "synth_strings": 0.7, "choir": 0.5, "pad": 1.0, "brass": 0.8, "harp": 0.4,
}
BASS_PROGRAMS = (32, 33, 33, 34, 35, 36, 37, 38, 39, 43, 58)
LEAD_PROGRAMS = (40, 41, 56, 57, 64, 65, 66, 68, 71, 73, 74, 75, 78, 80, 81, 11, 52, 53, 22, 26, 29)
DRUM_KITS = (0, 8, 16, 24, 25, 40, 48)

MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)

# GM percussion keys.
KICK, SIDE_STICK, SNARE, CLAP, CLOSED_HAT, OPEN_HAT, PEDAL_HAT = 36, 37, 38, 39, 42, 46, 44
CRASH, RIDE, RIDE_BELL, TAMBOURINE, SHAKER, LOW_TOM, MID_TOM, HIGH_TOM = 49, 51, 53, 54, 70, 45, 47, 50


@dataclasses.dataclass
class _Timing:
    """Converts grid positions (beats) to seconds with swing and human timing."""

    plan: SongPlan
    jitter: float
    rng: np.random.Generator

    def at(self, beat: float, humanize: bool = True) -> float:
        whole = np.floor(beat + 1e-9)
        frac = beat - whole
        if self.plan.subdivision == 2 and self.plan.swing != 0.5 and abs(frac - 0.5) < 1e-6:
            frac = self.plan.swing
        t = float(self.plan.time(whole + frac))
        if humanize and self.jitter:
            t += float(np.clip(self.rng.normal(0, self.jitter), -2.5 * self.jitter, 2.5 * self.jitter))
        return max(t, 0.0)


def _add(inst: pretty_midi.Instrument, pitch: int, velocity: float, start: float, end: float) -> None:
    if end - start < 0.02 or not 0 <= pitch <= 127:
        return
    inst.notes.append(pretty_midi.Note(int(np.clip(round(velocity), 1, 127)), int(pitch), start, end))


def voicing(chord: Chord, rng: np.random.Generator, center: float, size: int, spread: bool,
            previous: list[int] | None) -> list[int]:
    """Pitches of one chord voicing near `center`, all chord tones included.

    Chords with more tones than `size` drop their perfect fifth; extra voices double
    chord tones an octave up. With `previous` the inversion nearest to it is chosen
    (voice leading), otherwise the one nearest to `center`.
    """
    tones = list(chord.intervals)
    if size < len(tones) and 7 in tones and len(tones) == 4:
        tones.remove(7)
    best, best_cost = None, None
    for rotation in range(len(tones)):
        order = tones[rotation:] + tones[:rotation]
        pitches = []
        low = int(center) - 7
        for interval in order:
            pc = (chord.root + interval) % 12
            p = low + (pc - low) % 12
            while pitches and p <= pitches[-1]:
                p += 12
            pitches.append(p)
        shift = 12 * round((center - np.mean(pitches)) / 12)
        pitches = [p + shift for p in pitches]
        target = np.mean(previous) if previous else center
        cost = abs(np.mean(pitches) - target) + (0.3 * abs(max(pitches) - max(previous)) if previous else 0.0)
        if best_cost is None or cost < best_cost:
            best, best_cost = pitches, cost
    pitches = list(best)
    if spread and len(pitches) >= 3:
        pitches[-2] -= 12                                   # drop-2 voicing
    extra = size - len(pitches)
    for k in range(max(extra, 0)):
        pitches.append(sorted(pitches)[k % len(pitches)] + 12)
    return sorted(set(pitches))


def guitar_voicing(chord: Chord, rng: np.random.Generator, low: int) -> list[int]:
    """A 4-6 string guitar-like voicing: the chord's bass note low, close chord tones above."""
    bass = low + (chord.bass_pc - low) % 12
    pitches = [bass]
    for interval in chord.intervals:
        pc = (chord.root + interval) % 12
        p = bass + 3 + (pc - bass - 3) % 12
        pitches.append(p)
    if rng.random() < 0.7:
        pitches.append(max(pitches) - 12 if max(pitches) - 12 > bass else max(pitches) + 12)
    if rng.random() < 0.5:
        pitches.append(bass + 12 if (bass + 12) not in pitches else bass + 24)
    return sorted(set(pitches))[:6]


# Comping rhythms per bar, as (onset, length) in beats for a 4-beat bar; scaled for other meters.
_COMP_RHYTHMS = (
    ((0, 1.0), (1.5, 0.5), (2.5, 1.0)),
    ((0, 0.5), (1, 0.5), (2, 0.5), (3, 0.5)),
    ((0, 1.5), (1.5, 1.0), (3, 0.5), (3.5, 0.5)),
    ((0, 0.5), (0.5, 0.5), (1.5, 0.5), (2.5, 0.5), (3.5, 0.5)),
    ((0, 0.75), (1, 0.25), (2, 0.75), (3, 0.25)),
    ((0, 2.0), (2.5, 1.5)),
    ((0, 0.25), (1.5, 0.25), (3, 0.25)),
)
_STRUMS = (
    "DDDD", "D.DU.UDU", "D.D.DUDU", "D..UD.DU", "DUDUDUDU", "D...D...", "D.DUD.DU",
)


@dataclasses.dataclass
class _Part:
    """One harmony instrument's settings for the whole song."""

    family: str
    program: int
    pattern: str
    center: float
    size: int
    spread: bool
    velocity: float
    staccato: float
    rate: int          # pulses per beat for arpeggios
    figure: str        # arpeggio order
    comp: int
    strum: str
    strum_ms: float


def _draw_part(rng: np.random.Generator, family: str, primary: bool, plan: SongPlan) -> _Part:
    programs, patterns = HARMONY_FAMILIES[family]
    pattern = patterns[int(rng.integers(len(patterns)))]
    if primary and pattern == "arpeggio" and rng.random() < 0.5:
        pattern = patterns[0]
    center = float(rng.uniform(50, 74))
    if family in ("acoustic_guitar", "electric_guitar", "drive_guitar"):
        center = float(rng.uniform(52, 64))
    fast = plan.tempo < 100
    return _Part(
        family=family,
        program=int(programs[int(rng.integers(len(programs)))]),
        pattern=pattern,
        center=center,
        size=int(rng.choice([3, 4, 4, 5, 6])),
        spread=bool(rng.random() < 0.3),
        velocity=float(rng.uniform(45, 110)),
        staccato=float(rng.choice([0.95, 0.8, 0.5] if primary else [0.95, 0.8, 0.5, 0.3])),
        rate=int(plan.subdivision * (2 if fast and plan.subdivision == 2 and rng.random() < 0.5 else 1)),
        figure=str(rng.choice(["up", "down", "updown", "alberti", "random", "bass_up"])),
        comp=int(rng.integers(len(_COMP_RHYTHMS))),
        strum=_STRUMS[int(rng.integers(len(_STRUMS)))],
        strum_ms=float(rng.uniform(6, 30)),
    )


def _play_harmony(inst: pretty_midi.Instrument, part: _Part, segments, timing: _Timing, plan: SongPlan,
                  rng: np.random.Generator, primary: bool, section_gain: dict[str, float]) -> None:
    previous = None
    bar = plan.beats_per_bar
    # Keyboard players pedal through each chord and lift it just before the change.
    pedal = part.family in ("piano", "epiano") and part.pattern in ("arpeggio", "block", "comp") and rng.random() < 0.5
    for seg in segments:
        if seg.chord is None:
            previous = None
            continue
        if pedal:
            inst.control_changes += [
                pretty_midi.ControlChange(64, 127, timing.at(seg.start_beat, humanize=False)),
                pretty_midi.ControlChange(64, 0, timing.at(seg.end_beat, humanize=False) - 0.03),
            ]
        if part.family.endswith("guitar"):
            notes = guitar_voicing(seg.chord, rng, int(part.center) - 12)
        else:
            notes = voicing(seg.chord, rng, part.center, part.size, part.spread, previous)
        previous = notes
        seg_end = timing.at(seg.end_beat, humanize=False) - 0.01
        gain = section_gain.get(seg.section, 1.0)
        vel = part.velocity * gain

        def hit(beat, length, pitches, accent=1.0, delays=None):
            start = timing.at(beat) if beat > seg.start_beat else timing.at(beat, humanize=False)
            end = min(timing.at(beat + length, humanize=False) - 0.005, seg_end)
            for k, p in enumerate(pitches):
                d = 0.0 if delays is None else delays[k]
                _add(inst, p, vel * accent + rng.normal(0, 5), start + d, end)

        if part.pattern == "pad":
            # Sustained, re-struck every bar or every chord.
            restrike = bar if rng.random() < 0.5 else seg.beats
            b = seg.start_beat
            while b < seg.end_beat - 1e-6:
                hit(b, min(restrike, seg.end_beat - b), notes, 0.9)
                b += restrike
        elif part.pattern == "block":
            step = float(rng.choice([1.0, 0.5])) if bar != 3 else 1.0
            b = seg.start_beat
            while b < seg.end_beat - 1e-6:
                accent = 1.1 if (b % bar) < 1e-6 else 0.85
                hit(b, step * part.staccato, notes, accent)
                b += step
        elif part.pattern == "comp":
            rhythm = _COMP_RHYTHMS[part.comp]
            scale = bar / 4
            b0 = seg.start_beat - (seg.start_beat % bar)
            first = True
            while b0 < seg.end_beat - 1e-6:
                for onset, length in rhythm:
                    b = b0 + onset * scale
                    if b < seg.start_beat - 1e-6 or b >= seg.end_beat - 1e-6:
                        continue
                    if first and b > seg.start_beat + 1e-6:
                        hit(seg.start_beat, min(b - seg.start_beat, 1.0), notes, 1.05)
                    first = False
                    hit(b, max(length * scale * part.staccato, 0.2), notes, 1.0 if onset == 0 else 0.85)
                b0 += bar
            if first:
                hit(seg.start_beat, seg.beats * 0.5, notes, 1.05)
        elif part.pattern == "strum":
            pulses = len(part.strum)
            step = bar / pulses if bar == 4 else 0.5
            pattern = part.strum if bar == 4 else "DUD.DU"[: int(bar / step)]
            b = seg.start_beat
            k = int(round((seg.start_beat % bar) / step))
            while b < seg.end_beat - 1e-6:
                stroke = pattern[k % len(pattern)]
                if b == seg.start_beat and stroke == ".":
                    stroke = "D"
                if stroke != ".":
                    # Strings ring until the next stroke re-strikes them.
                    gap = next((j for j in range(1, len(pattern) + 1) if pattern[(k + j) % len(pattern)] != "."), 1)
                    order = notes if stroke == "D" else notes[::-1][: max(3, len(notes) - 2)]
                    delays = [i * part.strum_ms / 1000 * rng.uniform(0.8, 1.2) for i in range(len(order))]
                    hit(b, min(gap * step, seg.end_beat - b), order, 1.0 if stroke == "D" else 0.75, delays)
                b += step
                k += 1
        else:  # arpeggio
            order = {
                "up": notes, "down": notes[::-1], "updown": notes + notes[-2:0:-1],
                "alberti": [notes[0], notes[-1], notes[len(notes) // 2], notes[-1]],
                "random": list(rng.permutation(notes)), "bass_up": [notes[0]] + notes[1:] + notes[1:-1][::-1],
            }[part.figure]
            step = 1.0 / part.rate
            b, k = seg.start_beat, 0
            ring = part.staccato > 0.7
            while b < seg.end_beat - 1e-6:
                length = min(seg.end_beat - b, 2.0) if ring else step * 1.5
                hit(b, length, [order[k % len(order)]], 1.0 if k == 0 else 0.85)
                if primary and k == 0:
                    hit(b, seg.beats * 0.5, notes, 0.6)       # soft chord under the first note
                b += step
                k += 1


def _play_bass(inst: pretty_midi.Instrument, segments, timing: _Timing, plan: SongPlan, rng: np.random.Generator,
               section_gain: dict[str, float]) -> None:
    pattern = str(rng.choice(["sustain", "pulse", "root_fifth", "walking", "pop"], p=[0.2, 0.2, 0.25, 0.15, 0.2]))
    low = int(rng.integers(28, 38))
    velocity = float(rng.uniform(60, 110))
    bar = plan.beats_per_bar
    for i, seg in enumerate(segments):
        if seg.chord is None:
            continue
        nxt = segments[i + 1].chord if i + 1 < len(segments) else None
        root = low + (seg.chord.bass_pc - low) % 12
        chord_tones = sorted(low + (pc - low) % 12 for pc in seg.chord.pitch_classes)
        scale = MINOR_SCALE if seg.minor else MAJOR_SCALE
        seg_end = timing.at(seg.end_beat, humanize=False) - 0.01
        vel = velocity * section_gain.get(seg.section, 1.0)
        events: list[tuple[float, float, int]] = []      # beat, length, pitch
        if pattern == "sustain":
            b = seg.start_beat
            while b < seg.end_beat - 1e-6:
                events.append((b, min(bar, seg.end_beat - b), root))
                b += bar
        elif pattern == "pulse":
            step = 0.5 if plan.tempo < 140 else 1.0
            b, k = seg.start_beat, 0
            while b < seg.end_beat - 1e-6:
                octave = 12 if (k % 4 == 3 and rng.random() < 0.3) else 0
                events.append((b, step * 0.8, root + octave))
                b += step
                k += 1
        elif pattern == "root_fifth":
            fifth = low + (seg.chord.root + 7 - low) % 12 if 7 in seg.chord.intervals else chord_tones[-1]
            b, k = seg.start_beat, 0
            while b < seg.end_beat - 1e-6:
                events.append((b, bar / 2 * 0.9, root if k % 2 == 0 else fifth))
                b += bar / 2
                k += 1
        elif pattern == "walking":
            b, previous = seg.start_beat, root
            while b < seg.end_beat - 1e-6:
                if b == seg.start_beat:
                    pitch = root
                elif b + 1 >= seg.end_beat - 1e-6 and nxt is not None:
                    target = low + (nxt.bass_pc - low) % 12
                    pitch = target + int(rng.choice([-1, 1, -2, 2]))      # approach tone
                elif rng.random() < 0.6:
                    pitch = int(rng.choice(chord_tones))
                else:
                    degree = (previous - seg.key) % 12
                    up = int(rng.choice([-1, 1]))
                    cands = [d for d in scale if (d - degree) % 12 in ((1, 2) if up > 0 else (10, 11))]
                    pitch = previous + (((cands[0] - degree) % 12) if up > 0 else -((degree - cands[0]) % 12)) if cands else previous
                events.append((b, 0.9, int(pitch)))
                previous = int(pitch)
                b += 1.0
        else:  # pop: dotted figure, octave jumps, sometimes a passing tone into the next chord
            figure = [(0, 1.5), (1.5, 1.0), (2.5, 1.5)] if bar == 4 else [(0, 1.0), (1.0, 1.0), (2.0, 1.0)][:bar]
            b0 = seg.start_beat
            while b0 < seg.end_beat - 1e-6:
                for onset, length in figure:
                    b = b0 + onset
                    if b < seg.end_beat - 1e-6:
                        events.append((b, length * 0.85, root + (12 if onset and rng.random() < 0.2 else 0)))
                b0 += bar
            if nxt is not None and seg.beats >= 2 and rng.random() < 0.4:
                target = low + (nxt.bass_pc - low) % 12
                events = [e for e in events if e[0] < seg.end_beat - 0.5 - 1e-6]
                events.append((seg.end_beat - 0.5, 0.45, target + int(rng.choice([-1, 1, -2]))))
        for b, length, pitch in events:
            start = timing.at(b, humanize=b > seg.start_beat)
            end = min(timing.at(b + length, humanize=False), seg_end)
            accent = 1.0 if b == seg.start_beat else 0.9
            _add(inst, int(np.clip(pitch, 24, 60)), vel * accent + rng.normal(0, 4), start, end)


def _play_melody(inst: pretty_midi.Instrument, segments, timing: _Timing, plan: SongPlan, rng: np.random.Generator,
                 section_gain: dict[str, float]) -> None:
    center = int(rng.integers(62, 78))
    velocity = float(rng.uniform(55, 100))
    sections = dict.fromkeys(s.section for s in segments if s.chord is not None)   # ordered, unlike a set
    playing = {name for name in sections if rng.random() < 0.65}
    previous = center
    for seg in segments:
        if seg.chord is None or seg.section not in playing:
            continue
        scale = MINOR_SCALE if seg.minor else MAJOR_SCALE
        seg_end = timing.at(seg.end_beat, humanize=False) - 0.01
        b = seg.start_beat
        while b < seg.end_beat - 1e-6:
            strong = abs(b % 1.0) < 1e-6 and (b == seg.start_beat or rng.random() < 0.7)
            # Chord tones may be held; passing and neighbour tones are short, as sung lines mostly are.
            length = float(rng.choice([1.0, 1.0, 1.5, 2.0] if strong else [0.5, 0.5, 1.0]))
            length = min(length, seg.end_beat - b)
            if rng.random() < 0.2:                            # rest
                b += length
                continue
            if strong:
                cands = [p for p in range(center - 9, center + 10) if p % 12 in seg.chord.pitch_classes]
            else:
                # Passing/neighbour tones: scale steps (and rarely a chromatic step) from the last note.
                cands = [p for p in range(previous - 4, previous + 5)
                         if (p - seg.key) % 12 in scale and 0 < abs(p - previous) <= 2] or [previous]
                if rng.random() < 0.1:
                    cands = [previous + 1, previous - 1]
            cands = sorted(cands, key=lambda p: abs(p - previous) + 0.3 * abs(p - center))
            pitch = int(cands[min(int(rng.geometric(0.6)) - 1, len(cands) - 1)])
            start = timing.at(b)
            end = min(timing.at(b + length, humanize=False) - 0.02, seg_end)
            _add(inst, pitch, velocity * section_gain.get(seg.section, 1.0) + rng.normal(0, 6), start, end)
            previous = pitch
            b += length


def _drum_bar(style: str, bar: int, subdivision: int) -> list[tuple[float, int, float]]:
    """One bar of a groove: (beat offset, GM key, relative velocity)."""
    hits: list[tuple[float, int, float]] = []
    if bar == 3:
        hits = [(0, KICK, 1.0), (1, SNARE if style != "ballad" else SIDE_STICK, 0.7), (2, SNARE if style != "ballad" else SIDE_STICK, 0.7)]
        hits += [(b, CLOSED_HAT, 0.6) for b in range(3)]
        return hits
    if bar == 2:  # 6/8: two dotted-quarter beats of three pulses
        hits = [(0, KICK, 1.0), (1, SNARE, 0.8)]
        hits += [(b + k / 3, CLOSED_HAT, 0.6 if k else 0.75) for b in range(2) for k in range(3)]
        return hits
    triplet = subdivision == 3
    if style == "four":
        hits = [(b, KICK, 1.0) for b in range(4)] + [(1, CLAP, 0.8), (3, CLAP, 0.8)]
        hits += [(b + 0.5, OPEN_HAT, 0.6) for b in range(4)]
    elif style == "half":
        hits = [(0, KICK, 1.0), (2, SNARE, 0.9), (2.5, KICK, 0.7)]
        hits += [(b, CLOSED_HAT, 0.6) for b in range(4)]
    elif style == "ballad":
        hits = [(0, KICK, 0.9), (1, SIDE_STICK, 0.7), (2.5, KICK, 0.6), (3, SIDE_STICK, 0.7)]
        hits += [(b, PEDAL_HAT, 0.5) for b in range(4)]
    elif style == "jazz":
        hits = [(0, RIDE, 0.8), (1, RIDE, 0.7), (1 + 2 / 3, RIDE, 0.5), (2, RIDE, 0.8), (3, RIDE, 0.7), (3 + 2 / 3, RIDE, 0.5)]
        hits += [(1, PEDAL_HAT, 0.6), (3, PEDAL_HAT, 0.6), (0, KICK, 0.4)]
    else:  # rock / pop
        hits = [(0, KICK, 1.0), (1, SNARE, 0.9), (2, KICK, 0.9), (3, SNARE, 0.9)]
        if style == "pop":
            hits += [(2.5, KICK, 0.7)]
        pulses = 3 if triplet else 2
        hits += [(b + k / pulses, CLOSED_HAT, 0.7 if k == 0 else 0.5) for b in range(4) for k in range(pulses)]
        if style == "pop" and not triplet:
            hits += [(b + 0.5, SHAKER, 0.4) for b in range(4)]
    return hits


def _play_drums(inst: pretty_midi.Instrument, plan: SongPlan, timing: _Timing, rng: np.random.Generator,
                section_gain: dict[str, float]) -> None:
    bar = plan.beats_per_bar
    style = str(rng.choice(["rock", "pop", "four", "half", "ballad"] + (["jazz"] if plan.swing != 0.5 or plan.subdivision == 3 else [])))
    velocity = float(rng.uniform(60, 110))
    groove = _drum_bar(style, bar, plan.subdivision)
    # Drums play in N intros/breaks sometimes (a count-in or a drum break is still no chord).
    in_n = rng.random() < 0.5
    total = plan.segments[-1].end_beat
    starts = {s.start_beat for s in plan.segments if s.section_start}
    for bar_start in np.arange(0, total, bar):
        seg = next((s for s in plan.segments if s.start_beat <= bar_start + 1e-6 < s.end_beat), None)
        if seg is None or (seg.chord is None and not in_n) or seg.section == "outro":
            continue
        gain = section_gain.get(seg.section, 1.0)
        hits = list(groove)
        if any(abs(s - (bar_start + bar)) < 1e-6 for s in starts) and rng.random() < 0.6:
            hits = [h for h in hits if h[0] < bar - 1] + [(bar - 1 + k / 4, int(rng.choice([SNARE, LOW_TOM, MID_TOM, HIGH_TOM])), 0.8) for k in range(4)]
        if bar_start in starts and seg.chord is not None:
            hits.append((0, CRASH, 0.9))
        for offset, key, rel in hits:
            start = timing.at(bar_start + offset)
            _add(inst, key, velocity * rel * gain + rng.normal(0, 6), start, start + 0.1)
    final = plan.segments[-1]
    if final.chord is not None and rng.random() < 0.7:
        t = timing.at(final.start_beat, humanize=False)
        _add(inst, CRASH, velocity, t, t + 0.1)
        _add(inst, KICK, velocity, t, t + 0.1)


@dataclasses.dataclass(frozen=True)
class Arrangement:
    """What was drawn for a song (for logs and tests)."""

    harmony: tuple[tuple[int, str], ...]
    bass: int | None
    melody: int | None
    drums: int | None


def arrange(plan: SongPlan, rng: np.random.Generator) -> tuple[pretty_midi.PrettyMIDI, Arrangement]:
    """Draws instruments and patterns and performs `plan` as MIDI.

    Args:
        plan: The song's harmony and timing.
        rng: The song's random generator.

    Returns:
        (PrettyMIDI whose last event is at `plan.duration`, what was drawn).
    """
    midi = pretty_midi.PrettyMIDI(resolution=960, initial_tempo=120.0)
    timing = _Timing(plan, float(rng.choice([0.0, rng.uniform(0.002, 0.012)])), rng)
    section_gain = {name: float(rng.uniform(0.8, 1.15)) for name in dict.fromkeys(s.section for s in plan.segments)}
    segments = plan.segments

    families = list(FAMILY_WEIGHTS)
    weights = np.array([FAMILY_WEIGHTS[f] for f in families])
    count = int(rng.choice([1, 2, 3, 4], p=[0.2, 0.4, 0.3, 0.1]))
    chosen = [families[i] for i in rng.choice(len(families), size=count, replace=False, p=weights / weights.sum())]
    harmony = []
    for k, family in enumerate(chosen):
        part = _draw_part(rng, family, k == 0, plan)
        inst = pretty_midi.Instrument(program=part.program)
        _play_harmony(inst, part, segments, timing, plan, rng, k == 0, section_gain)
        midi.instruments.append(inst)
        harmony.append((part.program, part.pattern))
    if rng.random() < 0.15:
        # A doubling: another instrument plays one part's notes (piano + strings, guitar + organ, ...).
        source = midi.instruments[int(rng.integers(len(midi.instruments)))]
        programs = HARMONY_FAMILIES[families[int(rng.choice(len(families), p=weights / weights.sum()))]][0]
        double = pretty_midi.Instrument(program=int(programs[int(rng.integers(len(programs)))]))
        shift = int(rng.choice([0, 12, -12]))
        scale = rng.uniform(0.6, 0.9)
        double.notes = [pretty_midi.Note(max(1, int(n.velocity * scale)), n.pitch + shift, n.start, n.end)
                        for n in source.notes if 0 <= n.pitch + shift <= 127]
        midi.instruments.append(double)
        harmony.append((double.program, "double"))

    bass = None
    if rng.random() < 0.9:
        bass = int(rng.choice(BASS_PROGRAMS))
        inst = pretty_midi.Instrument(program=bass)
        _play_bass(inst, segments, timing, plan, rng, section_gain)
        midi.instruments.append(inst)
    else:
        # No bass player: the first harmony part's left hand carries the chord's bass note.
        inst = midi.instruments[0]
        for seg in segments:
            if seg.chord is not None:
                pitch = 36 + (seg.chord.bass_pc - 36) % 12
                _add(inst, pitch, 80, timing.at(seg.start_beat, humanize=False), timing.at(seg.end_beat, humanize=False) - 0.01)

    melody = None
    if rng.random() < 0.7:
        melody = int(rng.choice(LEAD_PROGRAMS))
        inst = pretty_midi.Instrument(program=melody)
        _play_melody(inst, segments, timing, plan, rng, section_gain)
        midi.instruments.append(inst)

    drums = None
    if rng.random() < 0.8:
        drums = int(rng.choice(DRUM_KITS))
        inst = pretty_midi.Instrument(program=drums, is_drum=True)
        _play_drums(inst, plan, timing, rng, section_gain)
        midi.instruments.append(inst)

    _mix(midi, rng, melody is not None)
    # A no-op controller at the song's end: renderers stop at the last event, and the
    # release tails of the final chord and the closing N span must not be cut off.
    midi.instruments[0].control_changes.append(pretty_midi.ControlChange(11, 127, plan.duration))
    return midi, Arrangement(tuple(harmony), bass, melody, drums)


def arrange_solo(plan: SongPlan, rng: np.random.Generator, family: str = "acoustic_guitar",
                 pattern: str | None = None) -> tuple[pretty_midi.PrettyMIDI, Arrangement]:
    """One player alone, as a singer-songwriter's take: a single part of `family` plays the plan.

    No bass, melody or drums; the part's own voicings carry the bass note (a guitar's lowest string,
    a pianist's left hand). `pattern` forces one of the family's patterns ("strum", "arpeggio", ...);
    None draws one as `arrange` does.

    Returns:
        (PrettyMIDI whose last event is at `plan.duration`, what was drawn).
    """
    if family not in HARMONY_FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose from {sorted(HARMONY_FAMILIES)}")
    if pattern is not None and pattern not in HARMONY_FAMILIES[family][1]:
        raise ValueError(f"{family} does not play {pattern!r}; choose from {HARMONY_FAMILIES[family][1]}")
    midi = pretty_midi.PrettyMIDI(resolution=960, initial_tempo=120.0)
    timing = _Timing(plan, float(rng.uniform(0.002, 0.012)), rng)
    section_gain = {name: float(rng.uniform(0.8, 1.15)) for name in dict.fromkeys(s.section for s in plan.segments)}
    part = _draw_part(rng, family, True, plan)
    if pattern is not None:
        part = dataclasses.replace(part, pattern=pattern)
    inst = pretty_midi.Instrument(program=part.program)
    _play_harmony(inst, part, plan.segments, timing, plan, rng, True, section_gain)
    if not family.endswith("guitar"):  # as _play_harmony tells guitars from keyboards
        for seg in plan.segments:  # a keyboard's left hand: the bass note under every chord
            if seg.chord is not None:
                start, end = timing.at(seg.start_beat, humanize=False), timing.at(seg.end_beat, humanize=False) - 0.01
                lowest = min((n.pitch for n in inst.notes if start - 0.05 <= n.start < end), default=128)
                pitch = 36 + (seg.chord.bass_pc - 36) % 12
                while pitch >= lowest:
                    pitch -= 12
                _add(inst, pitch, 80, start, end)
    midi.instruments.append(inst)
    _mix(midi, rng, False)
    midi.instruments[0].control_changes.append(pretty_midi.ControlChange(11, 127, plan.duration))
    return midi, Arrangement(((part.program, part.pattern),), None, None, None)


def _mix(midi: pretty_midi.PrettyMIDI, rng: np.random.Generator, has_melody: bool) -> None:
    """Per-channel volume, pan, reverb/chorus sends and detuning, set before the first note."""
    tuning_cents = float(np.clip(rng.normal(0, 12), -35, 35))
    # Volume ranges per role. Basses share the other parts' range and drums sit close to it: with the
    # quieter ranges they once had (45-105, 30-95), the songs' lowest octaves were 15-20 dB below those of
    # studio recordings, and a model trained on them called dense real mixes N (see render._random_eq).
    melody = midi.instruments[-2 if midi.instruments[-1].is_drum else -1] if has_melody else None
    for inst in midi.instruments:
        low, high = (60, 128) if inst.is_drum else (70, 128)
        if inst is melody:
            low, high = 50, 110
        inst.control_changes += [
            pretty_midi.ControlChange(7, int(rng.integers(low, high)), 0.0),
            pretty_midi.ControlChange(10, int(rng.choice([0, 127])), 0.0),    # stems for per-group EQ in master
            pretty_midi.ControlChange(91, int(rng.integers(0, 90)), 0.0),
            pretty_midi.ControlChange(93, int(rng.choice([0, rng.integers(0, 70)])), 0.0),
        ]
        if inst is melody or (40 <= inst.program < 56 and rng.random() < 0.5):
            inst.control_changes.append(pretty_midi.ControlChange(1, int(rng.integers(10, 70)), 0.0))   # vibrato
        if not inst.is_drum:
            cents = tuning_cents + float(rng.normal(0, 4))
            inst.pitch_bends.append(pretty_midi.PitchBend(int(np.clip(round(cents / 200 * 8192), -8192, 8191)), 0.0))
