"""The harmonic model: keys, functional progressions, chord colours and song form.

A song plan is a timeline of chord segments in beats (and seconds, through a
tempo map), each either a `Chord` or None (the no-chord label N). Everything is
drawn from one `numpy.random.Generator`, so a plan is a pure function of it.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from chordkeras import vocab

# Semitones above the root for each Harte quality of the `large` vocabulary.
QUALITY_INTERVALS: dict[str, tuple[int, ...]] = {
    "maj": (0, 4, 7),
    "min": (0, 3, 7),
    "dim": (0, 3, 6),
    "aug": (0, 4, 8),
    "min6": (0, 3, 7, 9),
    "maj6": (0, 4, 7, 9),
    "min7": (0, 3, 7, 10),
    "minmaj7": (0, 3, 7, 11),
    "maj7": (0, 4, 7, 11),
    "7": (0, 4, 7, 10),
    "dim7": (0, 3, 6, 9),
    "hdim7": (0, 3, 6, 10),
    "sus2": (0, 2, 7),
    "sus4": (0, 5, 7),
}


# Inversions that annotators actually write, per quality (dim7 and minmaj7 are
# left in root position: their inversions are spelled inconsistently).
_INVERSIONS: dict[str, tuple[int, ...]] = {
    "maj": (4, 7),
    "min": (3, 7),
    "dim": (3,),
    "aug": (4,),
    "min6": (3,),
    "maj6": (4,),
    "min7": (3, 10),
    "maj7": (4, 11),
    "7": (4, 7, 10),
    "hdim7": (3, 10),
    "sus4": (7,),
    "sus2": (7,),
}

SHARP_NAMES = vocab.PITCH_NAMES
FLAT_NAMES = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")

# Diatonic triads (semitones above the tonic, quality) per scale degree.
MAJOR_DIATONIC = ((0, "maj"), (2, "min"), (4, "min"), (5, "maj"), (7, "maj"), (9, "min"), (11, "dim"))
MINOR_DIATONIC = ((0, "min"), (2, "dim"), (3, "maj"), (5, "min"), (7, "maj"), (8, "maj"), (10, "maj"), (11, "dim"))

# Seventh-chord colour of a triad in context: (root above tonic, triad) -> candidates.
_MAJOR_SEVENTHS = {
    (0, "maj"): ("maj7", "maj6"), (2, "min"): ("min7",), (4, "min"): ("min7",), (5, "maj"): ("maj7", "maj6"),
    (7, "maj"): ("7",), (9, "min"): ("min7",), (11, "dim"): ("hdim7",),
}
_MINOR_SEVENTHS = {
    (0, "min"): ("min7", "min6", "minmaj7"), (2, "dim"): ("hdim7",), (3, "maj"): ("maj7",),
    (5, "min"): ("min7", "min6"), (7, "maj"): ("7",), (7, "min"): ("min7",), (8, "maj"): ("maj7",),
    (10, "maj"): ("7",), (11, "dim"): ("dim7",),
}


@dataclasses.dataclass(frozen=True)
class Chord:
    """A chord: root pitch class, Harte quality and the bass as semitones above the root."""

    root: int
    quality: str
    bass: int = 0

    @property
    def intervals(self) -> tuple[int, ...]:
        return QUALITY_INTERVALS[self.quality]

    @property
    def pitch_classes(self) -> tuple[int, ...]:
        return tuple((self.root + i) % 12 for i in self.intervals)

    @property
    def bass_pc(self) -> int:
        return (self.root + self.bass) % 12

    def transpose(self, semitones: int) -> "Chord":
        return dataclasses.replace(self, root=(self.root + semitones) % 12)

    def label(self, flats: bool = False) -> str:
        """Harte label, e.g. `Eb:7/b7`."""
        name = (FLAT_NAMES if flats else SHARP_NAMES)[self.root]
        text = f"{name}:{self.quality}"
        if self.bass:
            text += "/" + vocab.DEGREE_NAMES[self.bass]
        return text


@dataclasses.dataclass(frozen=True)
class Segment:
    """One labelled span of the song; `chord` None is N.

    Attributes:
        start_beat: Onset in beats from the first beat of the music.
        beats: Length in beats.
        chord: The chord, or None for no chord.
        section: Name of the song section (verse, chorus, break, ...).
        key: Tonic pitch class of the local key (drives melody and bass scales).
        minor: Whether the local key is minor.
        section_start: First segment of a section (drum crash, fills before it).
    """

    start_beat: float
    beats: float
    chord: Chord | None
    section: str
    key: int
    minor: bool
    section_start: bool = False

    @property
    def end_beat(self) -> float:
        return self.start_beat + self.beats


@dataclasses.dataclass(frozen=True)
class SongPlan:
    """The harmonic and temporal skeleton of one song.

    Attributes:
        segments: Contiguous segments covering beats 0 .. total beats.
        beat_times: Seconds of every beat boundary (len = total beats + 1), tempo drift included.
        lead_in: Seconds of N before beat 0.
        tail: Seconds of N after the last beat.
        beats_per_bar: Beats in a bar (4, 3, or 2 for 6/8).
        subdivision: Pulses per beat (2 straight, 3 compound/shuffle).
        swing: Fraction of a beat at which the off-beat pulse falls (0.5 = straight).
        tempo: Beats per minute at the start.
        flats: Spell roots with flats.
    """

    segments: tuple[Segment, ...]
    beat_times: np.ndarray
    lead_in: float
    tail: float
    beats_per_bar: int
    subdivision: int
    swing: float
    tempo: float
    flats: bool

    @property
    def music_end(self) -> float:
        """Seconds at which the last segment ends."""
        return float(self.time(self.segments[-1].end_beat))

    @property
    def duration(self) -> float:
        return self.music_end + self.tail

    def time(self, beat: float | np.ndarray) -> float | np.ndarray:
        """Seconds of a (fractional) beat position, interpolated inside the tempo map."""
        return np.interp(beat, np.arange(len(self.beat_times)), self.beat_times)

    def labels(self) -> list[tuple[float, float, str]]:
        """(onset, offset, Harte label) covering 0 .. duration, adjacent equal labels merged."""
        spans = [(0.0, float(self.beat_times[0]), "N")]
        for seg in self.segments:
            label = "N" if seg.chord is None else seg.chord.label(self.flats)
            spans.append((float(self.time(seg.start_beat)), float(self.time(seg.end_beat)), label))
        spans.append((self.music_end, self.duration, "N"))
        merged: list[tuple[float, float, str]] = []
        for start, end, label in spans:
            if end - start <= 1e-9:
                continue
            if merged and merged[-1][2] == label:
                merged[-1] = (merged[-1][0], end, label)
            else:
                merged.append((start, end, label))
        return merged


# Progression templates in the tonic's frame: (semitones above tonic, quality, bass interval).
_MAJOR_LOOPS: tuple[tuple[tuple[int, str, int], ...], ...] = (
    ((0, "maj", 0), (7, "maj", 0), (9, "min", 0), (5, "maj", 0)),
    ((9, "min", 0), (5, "maj", 0), (0, "maj", 0), (7, "maj", 0)),
    ((0, "maj", 0), (9, "min", 0), (5, "maj", 0), (7, "maj", 0)),
    ((0, "maj", 0), (5, "maj", 0), (7, "maj", 0), (5, "maj", 0)),
    ((2, "min", 0), (7, "maj", 0), (0, "maj", 0), (0, "maj", 0)),
    ((0, "maj", 0), (10, "maj", 0), (5, "maj", 0), (0, "maj", 0)),
    ((9, "min", 0), (2, "min", 0), (7, "maj", 0), (0, "maj", 0)),
    ((0, "maj", 0), (7, "maj", 4), (9, "min", 0), (0, "maj", 7), (5, "maj", 0), (0, "maj", 4), (2, "min", 0), (7, "maj", 0)),
    ((0, "maj", 0), (0, "aug", 0), (0, "maj6", 0), (0, "7", 0)),
    ((0, "maj", 0), (5, "maj", 0), (5, "min", 0), (0, "maj", 0)),
    ((0, "maj", 0), (8, "maj", 0), (10, "maj", 0), (0, "maj", 0)),
    ((0, "maj", 0), (4, "min", 0), (5, "maj", 0), (7, "maj", 0)),
    ((5, "maj", 0), (7, "maj", 0), (4, "min", 0), (9, "min", 0)),
    ((0, "maj", 0), (2, "min", 0), (5, "maj", 0), (7, "sus4", 0)),
    ((0, "maj", 0), (1, "dim7", 0), (2, "min", 0), (7, "7", 0)),
)
_MINOR_LOOPS: tuple[tuple[tuple[int, str, int], ...], ...] = (
    ((0, "min", 0), (8, "maj", 0), (3, "maj", 0), (10, "maj", 0)),
    ((0, "min", 0), (10, "maj", 0), (8, "maj", 0), (7, "maj", 0)),
    ((0, "min", 0), (5, "min", 0), (7, "min", 0), (0, "min", 0)),
    ((0, "min", 0), (5, "min", 0), (7, "7", 0), (0, "min", 0)),
    ((0, "min", 0), (8, "maj", 0), (5, "min", 0), (7, "maj", 0)),
    ((0, "min", 0), (0, "minmaj7", 0), (0, "min7", 0), (0, "min6", 0)),
    ((2, "hdim7", 0), (7, "7", 0), (0, "min", 0), (0, "min", 0)),
    ((0, "min", 0), (11, "dim7", 0), (0, "min", 0), (7, "7", 0)),
    ((0, "min", 0), (3, "maj", 0), (10, "maj", 0), (5, "min", 0)),
    ((0, "min", 0), (5, "maj", 0), (0, "min", 0), (5, "maj", 0)),
    ((0, "min", 0), (10, "maj", 0), (0, "min", 0), (10, "maj", 0)),
    ((0, "min", 0), (3, "aug", 0), (8, "maj", 0), (7, "maj", 0)),
)
_BLUES = (0, 0, 0, 0, 5, 5, 0, 0, 7, 5, 0, 7)

# Functional grammar (Tonic, Subdominant, Dominant) for phrases not taken from a template.
_FUNCTIONS = {"T": 0, "S": 1, "D": 2}
_FUNCTION_MOVES = np.array([[0.2, 0.55, 0.25], [0.15, 0.2, 0.65], [0.75, 0.15, 0.1]])
_MAJOR_BY_FUNCTION = {0: ((0, 0.6), (9, 0.3), (4, 0.1)), 1: ((5, 0.55), (2, 0.4), (9, 0.05)), 2: ((7, 0.85), (11, 0.15))}
_MINOR_BY_FUNCTION = {0: ((0, 0.65), (8, 0.2), (3, 0.15)), 1: ((5, 0.6), (2, 0.25), (8, 0.15)), 2: ((7, 0.75), (10, 0.15), (11, 0.1))}


@dataclasses.dataclass(frozen=True)
class Style:
    """Song-level probabilities that shape the harmony (drawn once per song)."""

    sevenths: float      # chance that a chord takes its diatonic seventh/sixth colour
    secondary: float     # chance of a secondary dominant before a chord
    borrowed: float      # chance of modal mixture
    inversions: float    # chance that a chord is played over its third/fifth/seventh
    suspensions: float   # chance of a sus chord (resolving or not)


def draw_style(rng: np.random.Generator) -> Style:
    """Most songs are plain triads; a few are jazz-coloured (the sevenths chance has a long tail).

    The sevenths chance (jazz x 0.6; it was x 1.1 up to generator version 3) gives seventh chords about a
    tenth of the chord time, as in an annotated studio collection (7 7%, min7 2%, maj7 1%); at x 1.1 they
    had 14% (maj7 3%), and the default model added sevenths to plain triads of real songs.
    """
    jazz = rng.beta(0.6, 5.0)
    return Style(
        sevenths=float(np.clip(jazz * 0.6, 0, 0.9)),
        secondary=float(rng.uniform(0.0, 0.15)),
        borrowed=float(rng.uniform(0.0, 0.2)),
        inversions=float(rng.choice([0.0, rng.uniform(0.03, 0.15), rng.uniform(0.15, 0.35)], p=[0.3, 0.5, 0.2])),
        suspensions=float(rng.uniform(0.0, 0.05)),
    )


def _weighted(rng: np.random.Generator, options: Sequence[tuple[int, float]]) -> int:
    values, weights = zip(*options)
    weights = np.asarray(weights, float)
    return int(values[rng.choice(len(values), p=weights / weights.sum())])


def _functional_phrase(rng: np.random.Generator, minor: bool, length: int, cadence: str) -> list[tuple[int, str, int]]:
    """A phrase of `length` chords from the T/S/D grammar ending in `cadence`."""
    diatonic = dict(MINOR_DIATONIC if minor else MAJOR_DIATONIC)
    by_function = _MINOR_BY_FUNCTION if minor else _MAJOR_BY_FUNCTION
    cadences = {
        "authentic": [(7, "maj"), (0, diatonic[0])],
        "half": [(5 if rng.random() < 0.5 else 2, diatonic[5] if rng.random() < 0.5 else diatonic[2]), (7, "maj")],
        "plagal": [(5, diatonic[5]), (0, diatonic[0])],
        "deceptive": [(7, "maj"), (8, "maj") if minor else (9, "min")],
    }[cadence]
    chords = [(0, diatonic[0], 0)]
    function = 0
    while len(chords) < length - len(cadences):
        function = int(rng.choice(3, p=_FUNCTION_MOVES[function]))
        root = _weighted(rng, by_function[function])
        if (root, diatonic[root]) == chords[-1][:2]:
            continue
        chords.append((root, diatonic[root], 0))
    chords = chords[: max(length - len(cadences), 0)]
    chords += [(r, q, 0) for r, q in cadences]
    return chords[-length:]


def _colour(rng: np.random.Generator, chords: list[tuple[int, str, int]], minor: bool, style: Style) -> list[tuple[int, str, int]]:
    """Adds sevenths/sixths, borrowed chords, suspensions and inversions."""
    sevenths = _MINOR_SEVENTHS if minor else _MAJOR_SEVENTHS
    out = []
    for root, quality, bass in chords:
        if rng.random() < style.borrowed:
            if not minor and (root, quality) == (5, "maj"):
                quality = "min"                             # iv in major
            elif not minor and (root, quality) == (9, "min"):
                root, quality = 8, "maj"                    # bVI for vi
            elif not minor and (root, quality) == (2, "min"):
                quality = "hdim7"                           # ii half-diminished
            elif minor and (root, quality) == (5, "min"):
                quality = "maj"                             # dorian IV
            elif minor and (root, quality) == (7, "min"):
                quality = "maj"                             # harmonic-minor V
        if quality in ("maj", "min", "dim") and rng.random() < style.sevenths:
            options = sevenths.get((root, quality))
            if options is None:
                options = {"maj": ("7", "maj7"), "min": ("min7",), "dim": ("hdim7", "dim7")}[quality]
            # The first colour is the common one (I -> maj7 rather than maj6, i -> min7 rather than min6).
            quality = options[0] if len(options) == 1 or rng.random() < 0.75 else options[int(rng.integers(1, len(options)))]
            if root == 7 and quality == "7" and rng.random() < 0.1:
                quality = "aug"                             # V+ resolving up
        if quality in ("maj", "7") and rng.random() < style.suspensions:
            quality = "sus4" if rng.random() < 0.65 else "sus2"
        if bass == 0 and quality in _INVERSIONS and rng.random() < style.inversions:
            options = _INVERSIONS[quality]
            weights = np.array([3.0 if i in (3, 4) else 1.0 if i in (7, 10) else 0.5 for i in options])
            bass = int(options[rng.choice(len(options), p=weights / weights.sum())])
        if bass and bass not in QUALITY_INTERVALS[quality]:
            bass = 0
        out.append((root, quality, bass))
    return out


def _progression(rng: np.random.Generator, minor: bool, style: Style, blues: bool) -> list[tuple[int, str, int]]:
    """One section's chord loop in the tonic frame (semitones above tonic, quality, bass)."""
    if blues:
        quality = "min7" if minor else "7"
        dominant = "7"
        return [(r, dominant if r == 7 else quality, 0) for r in _BLUES]
    if rng.random() < 0.55:
        loops = _MINOR_LOOPS if minor else _MAJOR_LOOPS
        chords = list(loops[int(rng.integers(len(loops)))])
        if rng.random() < 0.3:
            chords = chords + list(loops[int(rng.integers(len(loops)))])
    else:
        length = int(rng.choice([4, 6, 8], p=[0.5, 0.15, 0.35]))
        cadence = str(rng.choice(["authentic", "half", "plagal", "deceptive"], p=[0.5, 0.25, 0.12, 0.13]))
        chords = _functional_phrase(rng, minor, length, cadence)
    chords = _colour(rng, chords, minor, style)
    # Secondary dominants: V(7)/x or vii°7/x replaces the chord before a non-tonic target.
    for i in range(1, len(chords)):
        target = chords[i]
        if target[0] in (0, 11) or target[1] in ("dim", "dim7", "hdim7", "aug") or rng.random() >= style.secondary:
            continue
        if rng.random() < 0.8:
            chords[i - 1] = ((target[0] + 7) % 12, "7" if rng.random() < 0.7 else "maj", 0)
        else:
            chords[i - 1] = ((target[0] + 11) % 12, "dim7", 0)
    return chords


def _durations(rng: np.random.Generator, n: int, beats_per_bar: int, tempo: float) -> list[float]:
    """Chord lengths in beats, each between half a bar and two bars."""
    half = beats_per_bar / 2
    slow = np.clip((tempo - 60) / 120, 0, 1)          # faster tempo -> longer chords in beats
    options = [half, float(beats_per_bar), 2.0 * beats_per_bar]
    weights = np.array([0.2 * (1 - slow) + 0.03, 0.6, 0.1 + 0.25 * slow])
    base = float(rng.choice(options, p=weights / weights.sum()))
    out = []
    for _ in range(n):
        d = base
        if rng.random() < 0.15:
            d = float(rng.choice(options))
        out.append(d)
    # Keep bars whole: an odd number of half-bar chords gets its last one doubled.
    remainder = sum(out) % beats_per_bar
    if remainder:
        if out[-1] + beats_per_bar - remainder <= 2 * beats_per_bar:
            out[-1] += beats_per_bar - remainder
        else:
            out[-1] -= remainder
    return out


def _split(rng: np.random.Generator, chords: list[tuple[int, str, int]], beats: list[float], beats_per_bar: int,
           style: Style) -> tuple[list[tuple[int, str, int]], list[float]]:
    """Splits long chords into sus4->maj resolutions and passing diminished chords."""
    out_c, out_b = [], []
    half = beats_per_bar / 2
    for k, (chord, d) in enumerate(zip(chords, beats)):
        nxt = chords[(k + 1) % len(chords)]
        if d >= 2 * half and chord[1] in ("maj", "7") and rng.random() < style.suspensions * 1.5:
            out_c += [(chord[0], "sus4", 0), chord]
            out_b += [d / 2, d / 2]
        elif d >= 2 * half and (nxt[0] - chord[0]) % 12 == 2 and rng.random() < style.secondary * 0.5:
            out_c += [chord, ((chord[0] + 1) % 12, "dim7", 0)]      # I - #I°7 - ii
            out_b += [d / 2, d / 2]
        else:
            out_c.append(chord)
            out_b.append(d)
    return out_c, out_b


_FORMS = (
    ("verse", "chorus", "verse", "chorus", "bridge", "chorus", "chorus"),
    ("verse", "verse", "chorus", "verse", "chorus", "chorus"),
    ("verse", "prechorus", "chorus", "verse", "prechorus", "chorus", "bridge", "chorus"),
    ("a", "a", "b", "a", "b", "a"),
    ("verse", "chorus", "verse", "chorus", "solo", "chorus"),
)


def plan_song(rng: np.random.Generator, target_seconds: float) -> SongPlan:
    """Draws a song: key, meter, tempo, form and the chord of every segment.

    Args:
        rng: The song's random generator.
        target_seconds: Approximate length of the song, N margins included.

    Returns:
        The SongPlan; its duration is within a few bars of `target_seconds`.
    """
    tonic = int(rng.integers(12))
    minor = bool(rng.random() < 0.3)
    meter = int(rng.choice(3, p=[0.8, 0.12, 0.08]))
    beats_per_bar, subdivision = [(4, 2), (3, 2), (2, 3)][meter]
    if beats_per_bar == 4 and rng.random() < 0.15:
        subdivision = 3                                     # 12/8 shuffle feel
    tempo = float(rng.uniform(60, 180)) if subdivision == 2 else float(rng.uniform(60, 110))
    swing = float(rng.uniform(0.55, 0.66)) if subdivision == 2 and rng.random() < 0.2 else 0.5
    style = draw_style(rng)
    blues = beats_per_bar == 4 and rng.random() < 0.06
    flats = bool(rng.random() < 0.5)
    form = _FORMS[int(rng.integers(len(_FORMS)))]

    lead_in = float(rng.uniform(0.2, 1.5))
    tail = float(rng.uniform(0.5, 2.0))
    beat_seconds = 60.0 / tempo
    music_seconds = max(target_seconds - lead_in - tail, 4 * beat_seconds)

    progressions: dict[str, tuple[list, list]] = {}
    section_keys: dict[str, tuple[int, bool]] = {}
    segments: list[Segment] = []
    beat = 0.0

    def add(chord, beats, section, key, is_minor, first):
        nonlocal beat
        segments.append(Segment(beat, beats, chord, section, key, is_minor, first))
        beat += beats

    # Intro: N bars (drums or silence count as no chord) and/or the chorus loop.
    if rng.random() < 0.2:
        add(None, float(beats_per_bar * rng.integers(1, 3)), "intro", tonic, minor, True)
    modulate_at = len(form) - 1 if rng.random() < 0.15 else None
    step = 0
    final_beats = float(beats_per_bar * (1 if rng.random() < 0.6 else 2))
    limit = music_seconds - final_beats * beat_seconds     # room left for the closing tonic
    done = False
    while not done:
        name = form[step % len(form)]
        if name not in progressions:
            if name == "bridge" and rng.random() < 0.2:
                section_keys[name] = ((tonic + (3 if minor else 9)) % 12, not minor)   # relative key
            chords = _progression(rng, section_keys.get(name, (tonic, minor))[1], style, blues)
            beats = _durations(rng, len(chords), beats_per_bar, tempo)
            progressions[name] = _split(rng, chords, beats, beats_per_bar, style)
        key, is_minor = section_keys.get(name, (tonic, minor))
        if modulate_at is not None and step >= modulate_at:
            key = (key + int(rng.choice([1, 2]))) % 12 if step == modulate_at else segments[-1].key
        chords, beats = progressions[name]
        repeats = max(1, int(round(4 * beats_per_bar * (2 if rng.random() < 0.5 else 1) / sum(beats))))
        for r in range(repeats):
            for k, (chord, d) in enumerate(zip(chords, beats)):
                if (beat + d) * beat_seconds > limit and sum(s.chord is not None for s in segments) >= 2:
                    done = True
                    break
                add(Chord((key + chord[0]) % 12, chord[1], chord[2]), d, name, key, is_minor, r == 0 and k == 0)
            if done:
                break
        if not done and rng.random() < 0.12 and (beat + 2 * beats_per_bar) * beat_seconds < limit:
            add(None, float(beats_per_bar * rng.integers(1, 3)), "break", key, is_minor, True)
        step += 1
    # End on the tonic (a repeat of the last chord when that already is the tonic triad).
    key, is_minor = segments[-1].key, segments[-1].minor
    final_quality = "maj" if not is_minor or rng.random() < 0.15 else "min"
    last = segments[-1].chord
    final = Chord(key, final_quality)
    if last is not None and last.root == key and last.quality in ("maj", "min") and last.bass == 0:
        final = last
    add(final, final_beats, "outro", key, is_minor, False)

    total_beats = int(np.ceil(beat - 1e-9))
    # Tempo map: a slow random drift of up to a few percent, and sometimes a final ritardando.
    drift = np.cumsum(rng.normal(0, 0.004, total_beats))
    drift -= np.linspace(0, drift[-1], total_beats) if total_beats > 1 else 0
    periods = beat_seconds * (1 + np.clip(drift, -0.04, 0.04))
    if rng.random() < 0.4:
        ritard = min(total_beats, beats_per_bar * 2)
        periods[-ritard:] *= np.linspace(1.0, rng.uniform(1.1, 1.5), ritard)
    beat_times = lead_in + np.concatenate([[0.0], np.cumsum(periods)])
    return SongPlan(tuple(segments), beat_times, lead_in, tail, beats_per_bar, subdivision, swing, tempo, flats)
