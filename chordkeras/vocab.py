"""Chord vocabularies, structured chord targets and transposition.

Harte labels are interpreted by `mir_eval.chord` only. A label becomes four targets
(`encode_targets`): its class in the large vocabulary, its root, its bass and the 12-bit mask of
the pitch classes that sound. Records store these large-vocabulary targets; any other vocabulary
is a lookup table away (`Vocabulary.from_large`), so vocabularies can never disagree about a label.

Class layout (quality-major): ``offset + quality_index * 12 + root``, root 0 = C .. 11 = B.
Class names spell roots with sharps ('C#:maj', never 'Db:maj'); mir_eval reads both spellings as
the same pitch class, so `encode(decode(i)) == i` for every class.
"""

from __future__ import annotations

import dataclasses
import functools
import types
from typing import Mapping, NamedTuple

import mir_eval.chord
import numpy as np

QUALITIES = (
    "maj", "min", "dim", "aug", "min6", "maj6", "min7", "minmaj7", "maj7", "7", "dim7", "hdim7", "sus2", "sus4",
)
NO_CHORD = 12  # root/bass target of 'N' (and of a bare 'X', which has no root)
IGNORE = -1  # class of a label the vocabulary cannot express; masked out of the chord loss
PITCH_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# Harte scale degree of each interval above the root (semitones 0..11), as written after "/".
DEGREE_NAMES = ("1", "b2", "2", "b3", "3", "4", "b5", "5", "b6", "6", "b7", "7")

_LARGE_OFFSET = 2  # N = 0, X = 1
_NUM_LARGE = _LARGE_OFFSET + 12 * len(QUALITIES)

# Relative pitch-class bitmaps of our qualities, as mir_eval defines them; a chord's class is the
# quality whose bitmap equals the chord's own (upper extensions and bass aside).
_QUALITY_BITMAPS = {tuple(int(b) for b in mir_eval.chord.QUALITIES[q]): q for q in QUALITIES}

# Shorthands that the Harte/JAMS grammar accepts but mir_eval.chord cannot encode, rewritten as a
# quality it knows plus added degrees (same notes).
_UNENCODABLE_QUALITIES = {"aug7": ("aug", {"b7"}), "maj11": ("maj7", {"9", "11"})}


class LabelError(ValueError):
    """A chord label that is not valid Harte syntax."""


class ChordTargets(NamedTuple):
    """Structured targets of one label (large vocabulary).

    Attributes:
        chord: Large-vocabulary class, 0..169.
        root: Root pitch class 0..11, or NO_CHORD (12).
        bass: Bass pitch class 0..11, or NO_CHORD (12).
        pitches: 12-bit mask, bit i set when pitch class i sounds.
    """

    chord: int
    root: int
    bass: int
    pitches: int


def _bitmap_to_mask(bitmap: np.ndarray, root: int) -> int:
    """Relative 0/1 bitmap -> absolute 12-bit mask (bit (root + i) % 12 for relative degree i)."""
    return sum(1 << ((root + i) % 12) for i, on in enumerate(bitmap) if on > 0)


def encode_targets(label: str) -> ChordTargets:
    """Large-vocabulary class, root, bass and pitch-class mask of a Harte label.

    The class ignores the bass note and upper extensions (9, 11, 13 and their alterations):
    'C:9' -> C:7, 'C:maj(9)' -> C:maj, 'C:maj/3' -> C:maj with bass E. Labels whose remaining
    notes match none of the 14 qualities ('C:sus4(b7)', power chords 'C:5', 'C:1') are X but keep
    their root, bass and pitches. The pitch mask holds every note that sounds, upper extensions
    folded into the octave and the bass included. 'N' -> (0, 12, 12, 0); a bare 'X' carries no
    notes: (1, 12, 12, 0).

    Raises:
        LabelError: the label is not valid Harte syntax.
    """
    if not isinstance(label, str):
        raise LabelError(f"chord label must be a string, got {type(label).__name__} {label!r}")
    return _encode_targets(label)


@functools.lru_cache(maxsize=8192)
def _encode_targets(label: str) -> ChordTargets:
    if label == mir_eval.chord.NO_CHORD:
        return ChordTargets(0, NO_CHORD, NO_CHORD, 0)
    if label == mir_eval.chord.X_CHORD:
        return ChordTargets(1, NO_CHORD, NO_CHORD, 0)
    try:
        root_name, quality, degrees, bass = mir_eval.chord.split(label)
        if quality in _UNENCODABLE_QUALITIES:
            quality, extra = _UNENCODABLE_QUALITIES[quality]
            degrees = degrees | extra
        degrees = sorted(degrees)
        # Sounding notes: upper extensions reduced and folded into the octave, bass added.
        root, sounding, bass_interval = mir_eval.chord.encode(
            mir_eval.chord.join(root_name, quality, degrees, bass), reduce_extended_chords=True
        )
        # Class notes: the chord without its bass; mir_eval drops degrees above the octave here.
        _, core, _ = mir_eval.chord.encode(mir_eval.chord.join(root_name, quality, degrees))
    except mir_eval.chord.InvalidChordException as e:
        reason = "not valid Harte syntax" if label in e.message else e.message
        raise LabelError(f"malformed chord label {label!r}: {reason}") from None
    matched = _QUALITY_BITMAPS.get(tuple(int(b) for b in core))
    chord = 1 if matched is None else _LARGE_OFFSET + QUALITIES.index(matched) * 12 + root
    return ChordTargets(int(chord), int(root), int((root + bass_interval) % 12), _bitmap_to_mask(sounding, root))


@dataclasses.dataclass(frozen=True, eq=False)
class Vocabulary:
    """A set of chord classes and its mapping from the large vocabulary.

    Attributes:
        name: Registry name ('majmin', 'large').
        qualities: Qualities with 12 classes each, in class order.
        has_x: Whether class 1 is X (unknown chord); otherwise X maps to IGNORE.
        reductions: Large-vocabulary quality -> one of `qualities`; large qualities missing here
            map to IGNORE. Defaults to the identity on `qualities`.
        class_names: Harte name of each class ('N', ['X',] 'C:maj', 'C#:maj', ...).
        from_large: int32 [170], large-vocabulary class -> class here, or IGNORE.
    """

    name: str
    qualities: tuple[str, ...]
    has_x: bool
    reductions: Mapping[str, str] | None = dataclasses.field(default=None, repr=False)
    # Derived in __post_init__.
    class_names: tuple[str, ...] = dataclasses.field(init=False, repr=False)
    from_large: np.ndarray = dataclasses.field(init=False, repr=False)

    def __post_init__(self):
        reductions = dict(self.reductions) if self.reductions is not None else {q: q for q in self.qualities}
        for large_quality, quality in reductions.items():
            if large_quality not in QUALITIES or quality not in self.qualities:
                raise ValueError(f"{self.name}: cannot reduce {large_quality!r} to {quality!r}")
        object.__setattr__(self, "reductions", types.MappingProxyType(reductions))
        names = ["N"] + (["X"] if self.has_x else [])
        names += [f"{pitch}:{quality}" for quality in self.qualities for pitch in PITCH_NAMES]
        object.__setattr__(self, "class_names", tuple(names))
        from_large = np.full(_NUM_LARGE, IGNORE, dtype=np.int32)
        from_large[0] = 0
        if self.has_x:
            from_large[1] = 1
        for q, large_quality in enumerate(QUALITIES):
            if large_quality in reductions:
                target = self.offset + self.qualities.index(reductions[large_quality]) * 12
                from_large[_LARGE_OFFSET + q * 12 : _LARGE_OFFSET + (q + 1) * 12] = target + np.arange(12)
        from_large.flags.writeable = False
        object.__setattr__(self, "from_large", from_large)

    @property
    def offset(self) -> int:
        """Index of the first rooted class (C of the first quality)."""
        return 2 if self.has_x else 1

    @property
    def num_classes(self) -> int:
        return self.offset + 12 * len(self.qualities)

    def encode(self, label: str) -> int:
        """Class index of a Harte label, or IGNORE when this vocabulary cannot express it.

        Raises:
            LabelError: the label is not valid Harte syntax.
        """
        return int(self.from_large[encode_targets(label).chord])

    def decode(self, index: int) -> str:
        """Harte name of a class index (sharps spelling)."""
        index = int(index)
        if not 0 <= index < self.num_classes:
            raise ValueError(f"{self.name}: class index {index} outside 0..{self.num_classes - 1}")
        return self.class_names[index]

    def transpose_classes(self, classes: np.ndarray, k: int) -> np.ndarray:
        """Classes of the same chords transposed by k semitones (numpy, any shape).

        Arithmetic (mirrored in the TF augmentation): for c >= offset,
        c' = offset + q * 12 + (r + k) % 12 with q, r = divmod(c - offset, 12);
        N, X and IGNORE (c < offset) are unchanged.
        """
        classes = np.asarray(classes)
        wide = classes.astype(np.int64)
        rooted = wide - self.offset
        shifted = self.offset + (rooted // 12) * 12 + (rooted % 12 + k) % 12
        return np.where(wide >= self.offset, shifted, wide).astype(classes.dtype)


VOCABULARIES: dict[str, Vocabulary] = {
    "large": Vocabulary("large", QUALITIES, has_x=True),
    # Tetrads and sixths reduce to their triad; everything that is neither major nor minor
    # (dim, aug, sus, dim7, hdim7, X) is ignored rather than forced into a wrong class.
    "majmin": Vocabulary(
        "majmin",
        ("maj", "min"),
        has_x=False,
        reductions={
            "maj": "maj", "7": "maj", "maj7": "maj", "maj6": "maj",
            "min": "min", "min7": "min", "min6": "min", "minmaj7": "min",
        },
    ),
}


def get_vocabulary(name: str) -> Vocabulary:
    """The vocabulary registered under `name`.

    Raises:
        ValueError: unknown name (the message lists the valid ones).
    """
    try:
        return VOCABULARIES[name]
    except KeyError:
        raise ValueError(f"unknown chord vocabulary {name!r}; valid: {', '.join(sorted(VOCABULARIES))}") from None


def transpose_label(label: str, k: int) -> str:
    """Harte label transposed by k semitones.

    Only the root changes (re-spelled with sharps); quality, extensions and the bass interval are
    relative to the root and stay as written. 'N', 'X' and k % 12 == 0 return the label unchanged.

    Raises:
        LabelError: the label is not valid Harte syntax.
    """
    encode_targets(label)
    if label in (mir_eval.chord.NO_CHORD, mir_eval.chord.X_CHORD) or k % 12 == 0:
        return label
    root_name = mir_eval.chord.split(label)[0]
    root = mir_eval.chord.pitch_class_to_semitone(root_name)
    return PITCH_NAMES[(root + k) % 12] + label[len(root_name) :]


def transpose_root(roots: np.ndarray, k: int) -> np.ndarray:
    """Root or bass targets transposed by k semitones: r < 12 -> (r + k) % 12; NO_CHORD unchanged."""
    roots = np.asarray(roots)
    wide = roots.astype(np.int64)
    return np.where((wide >= 0) & (wide < NO_CHORD), (wide + k) % 12, wide).astype(roots.dtype)


def rotate_pitch_mask(masks: np.ndarray, k: int) -> np.ndarray:
    """12-bit pitch-class masks transposed by k semitones: bit i moves to bit (i + k) % 12.

    Arithmetic (rotate left by s = k mod 12): ((m << s) | (m >> (12 - s))) & 0xFFF.
    """
    masks = np.asarray(masks)
    wide = masks.astype(np.int64)
    s = k % 12
    return (((wide << s) | (wide >> (12 - s))) & 0xFFF).astype(masks.dtype)


def pitch_mask_to_multihot(masks: np.ndarray) -> np.ndarray:
    """12-bit masks [...] -> float32 multi-hot [..., 12] (element i = bit i)."""
    masks = np.asarray(masks, dtype=np.int64)
    return ((masks[..., None] >> np.arange(12)) & 1).astype(np.float32)
