"""Chord vocabularies: class tables, structured targets, transposition."""

import numpy as np
import pytest

from chordkeras import vocab
from chordkeras.vocab import IGNORE, LabelError

LARGE = vocab.get_vocabulary("large")
MAJMIN = vocab.get_vocabulary("majmin")

# label -> (large class, majmin class). Large: 2 + quality_index * 12 + root; majmin: 1 + q * 12 + root.
MAPPING = {
    "N": (0, 0),
    "X": (1, IGNORE),
    "C:maj": (2, 1),
    "C#:maj": (3, 2),
    "Db:maj": (3, 2),
    "B:maj": (13, 12),
    "C:min": (14, 13),
    "A:min": (23, 22),
    "Cb:min": (25, 24),
    "B#:maj": (2, 1),
    "C:dim": (26, IGNORE),
    "C:aug": (38, IGNORE),
    "C:min6": (50, 13),
    "C:maj6": (62, 1),
    "C:min7": (74, 13),
    "D:min7": (76, 15),
    "C:minmaj7": (86, 13),
    "C:maj7": (98, 1),
    "C:7": (110, 1),
    "D:7": (112, 3),
    "C:dim7": (122, IGNORE),
    "C:hdim7": (134, IGNORE),
    "G#:hdim7": (142, IGNORE),
    "Ab:hdim7": (142, IGNORE),
    "C:sus2": (146, IGNORE),
    "C:sus4": (158, IGNORE),
    "B:sus4": (169, IGNORE),
    # Reductions of extended chords, inversions, shorthand and interval-list spellings.
    "C": (2, 1),
    "C:(3,5)": (2, 1),
    "C:(b3,5)": (14, 13),
    "C:9": (110, 1),
    "C:maj9": (98, 1),
    "C:min9": (74, 13),
    "C:11": (110, 1),
    "C:13": (110, 1),
    "C:min11": (74, 13),
    "C:maj13": (98, 1),
    "C:maj11": (98, 1),
    "C:maj(9)": (2, 1),
    "C:min(9)": (14, 13),
    "C:7(b9)": (110, 1),
    "C:7(#9)": (110, 1),
    "C:maj(b7)": (110, 1),
    "C:dim(b7)": (134, IGNORE),
    "C:maj/3": (2, 1),
    "C:maj/b7": (2, 1),
    "C/5": (2, 1),
    "Eb:min7/b3": (77, 16),
    # Nothing in the vocabulary fits: X in large, ignored in majmin.
    "C:sus4(b7)": (1, IGNORE),
    "C:aug7": (1, IGNORE),
    "C:5": (1, IGNORE),
    "C:1": (1, IGNORE),
    "C:(1,5)": (1, IGNORE),
    "C:min(*b3)": (1, IGNORE),
    "C:maj(4)": (1, IGNORE),
}
VOCAB_COLUMN = {"large": 0, "majmin": 1}


@pytest.mark.parametrize("name", ["large", "majmin"])
@pytest.mark.parametrize("label", sorted(MAPPING))
def test_label_mapping_table(name, label):
    assert vocab.get_vocabulary(name).encode(label) == MAPPING[label][VOCAB_COLUMN[name]]


@pytest.mark.parametrize("name,num_classes,offset,has_x", [("large", 170, 2, True), ("majmin", 25, 1, False)])
def test_vocabulary_shape(name, num_classes, offset, has_x):
    v = vocab.get_vocabulary(name)
    assert (v.name, v.num_classes, v.offset, v.has_x) == (name, num_classes, offset, has_x)
    assert len(v.class_names) == num_classes == len(set(v.class_names))
    assert v.from_large.dtype == np.int32 and v.from_large.shape == (170,)
    assert set(v.from_large.tolist()) == set(range(num_classes)) | ({IGNORE} if name == "majmin" else set())
    with pytest.raises(ValueError):
        v.from_large[0] = 5  # read-only: shared by every user of the vocabulary


def test_class_names():
    assert LARGE.class_names[:4] == ("N", "X", "C:maj", "C#:maj")
    assert LARGE.class_names[14] == "C:min" and LARGE.class_names[76] == "D:min7"
    assert LARGE.class_names[-1] == "B:sus4"
    assert MAJMIN.class_names[:3] == ("N", "C:maj", "C#:maj")
    assert MAJMIN.class_names[13] == "C:min" and MAJMIN.class_names[22] == "A:min"
    assert vocab.QUALITIES == (
        "maj", "min", "dim", "aug", "min6", "maj6", "min7", "minmaj7", "maj7", "7", "dim7", "hdim7", "sus2", "sus4",
    )


@pytest.mark.parametrize("name", ["large", "majmin"])
def test_decode_encode_round_trip(name):
    v = vocab.get_vocabulary(name)
    for index, class_name in enumerate(v.class_names):
        assert v.decode(index) == class_name
        assert v.decode(np.int64(index)) == class_name
        assert v.encode(class_name) == index
    for bad in (-1, v.num_classes):
        with pytest.raises(ValueError):
            v.decode(bad)


def test_majmin_is_derived_from_large():
    assert LARGE.from_large.tolist() == list(range(170))
    for index, class_name in enumerate(LARGE.class_names):
        assert MAJMIN.encode(class_name) == MAJMIN.from_large[index]
    # Every large class of these qualities lands on the same root in majmin.
    for quality, target in [("maj7", "maj"), ("7", "maj"), ("maj6", "maj"), ("min7", "min"), ("min6", "min"),
                            ("minmaj7", "min")]:
        for root in ("C", "F#", "B"):
            assert MAJMIN.decode(MAJMIN.encode(f"{root}:{quality}")) == f"{root}:{target}"


def test_get_vocabulary_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError) as info:
        vocab.get_vocabulary("jazz")
    assert "jazz" in str(info.value) and "large" in str(info.value) and "majmin" in str(info.value)


@pytest.mark.parametrize(
    "label,targets",
    [
        ("N", (0, 12, 12, 0)),
        ("X", (1, 12, 12, 0)),
        ("C:maj", (2, 0, 0, 0b10010001)),  # bits 0, 4, 7 = 145
        ("C:maj/3", (2, 0, 4, 145)),
        ("C:maj/b7", (2, 0, 10, 145 + 1024)),  # the bass sounds
        ("D:min7", (76, 2, 2, 4 + 32 + 512 + 1)),  # D F A C
        ("G:7", (117, 7, 7, 128 + 2048 + 4 + 32)),  # G B D F
        ("A:min7/b3", (83, 9, 0, 512 + 1 + 16 + 128)),  # A C E G, C in the bass
        ("C:9", (110, 0, 0, 1 + 4 + 16 + 128 + 1024)),  # the 9th (D) sounds though the class is C:7
        ("C:7(b9)", (110, 0, 0, 1 + 2 + 16 + 128 + 1024)),
        ("C:sus4(b7)", (1, 0, 0, 1 + 32 + 128 + 1024)),  # X keeps root, bass and notes
        ("C:5", (1, 0, 0, 1 + 128)),
        ("Bb:maj/5", (12, 10, 5, 1024 + 4 + 32)),  # Bb D F, F in the bass
    ],
)
def test_encode_targets(label, targets):
    result = vocab.encode_targets(label)
    assert tuple(result) == targets
    assert all(type(x) is int for x in result)
    assert result.chord == targets[0] and result.pitches == targets[3]


def test_enharmonic_roots_give_identical_targets():
    for sharp, flat in [("C#", "Db"), ("D#", "Eb"), ("F#", "Gb"), ("G#", "Ab"), ("A#", "Bb")]:
        for tail in (":maj", ":min7", ":hdim7/b5", ":9"):
            assert vocab.encode_targets(sharp + tail) == vocab.encode_targets(flat + tail)


@pytest.mark.parametrize("label", ["H:maj", "C:foo", "C:maj/", "", " C:maj", "C:maj ", "c:maj", "C:maj(", "Nope",
                                   "C:maj/X", "C(3)", None, 3])
def test_malformed_labels_raise_label_error(label):
    with pytest.raises(LabelError) as info:
        vocab.encode_targets(label)
    assert isinstance(info.value, ValueError)
    assert repr(label) in str(info.value)
    with pytest.raises(LabelError):
        LARGE.encode(label)


@pytest.mark.parametrize(
    "label,k,expected",
    [
        ("A:min7/b3", 3, "C:min7/b3"),
        ("B:maj", 1, "C:maj"),
        ("C:maj", -1, "B:maj"),
        ("Db:7(b9)/5", 2, "D#:7(b9)/5"),
        ("F#:hdim7", 6, "C:hdim7"),
        ("C", 2, "D"),
        ("G:(1,5)", -14, "F:(1,5)"),
        ("Eb:min", 12, "Eb:min"),
        ("N", 5, "N"),
        ("X", -3, "X"),
    ],
)
def test_transpose_label(label, k, expected):
    assert vocab.transpose_label(label, k) == expected


def test_transpose_label_rejects_malformed():
    with pytest.raises(LabelError):
        vocab.transpose_label("H:maj", 1)


def test_transpose_classes_exact():
    large = np.array([2, 13, 76, 0, 1, IGNORE, 169], dtype=np.int32)
    assert LARGE.transpose_classes(np.array([2, 0, 1], dtype=np.uint8), -1).tolist() == [13, 0, 1]
    assert LARGE.transpose_classes(large, 1).tolist() == [3, 2, 77, 0, 1, IGNORE, 158]
    assert LARGE.transpose_classes(large, -2).tolist() == [12, 11, 74, 0, 1, IGNORE, 167]
    assert LARGE.transpose_classes(large, 1).dtype == np.int32
    majmin = np.array([[1, 12], [24, 0], [IGNORE, 13]], dtype=np.int64)
    assert MAJMIN.transpose_classes(majmin, 1).tolist() == [[2, 1], [13, 0], [IGNORE, 14]]
    assert MAJMIN.transpose_classes(majmin, 12).tolist() == majmin.tolist()


def _consistency_labels():
    labels = list(LARGE.class_names) + sorted(MAPPING) + ["Db:min7/b3", "Gb:maj(9)/5", "Ab:sus4(b7)", "E:hdim7/b7"]
    return labels


@pytest.mark.parametrize("name", ["large", "majmin"])
def test_transposition_of_labels_and_classes_agree(name):
    v = vocab.get_vocabulary(name)
    for label in _consistency_labels():
        cls = v.encode(label)
        for k in range(-6, 7):
            assert v.encode(vocab.transpose_label(label, k)) == v.transpose_classes(np.int64(cls), k), (label, k)


def test_transposition_of_structured_targets_agrees():
    for label in _consistency_labels():
        targets = vocab.encode_targets(label)
        for k in range(-6, 7):
            moved = vocab.encode_targets(vocab.transpose_label(label, k))
            assert moved.root == vocab.transpose_root(targets.root, k), (label, k)
            assert moved.bass == vocab.transpose_root(targets.bass, k), (label, k)
            assert moved.pitches == vocab.rotate_pitch_mask(np.uint16(targets.pitches), k), (label, k)


def test_rotate_pitch_mask_and_transpose_root():
    masks = np.array([145, 0, 0xFFF], dtype=np.uint16)
    assert vocab.rotate_pitch_mask(masks, 2).tolist() == [4 + 64 + 512, 0, 0xFFF]  # D F# A
    assert vocab.rotate_pitch_mask(masks, -1).tolist() == [2048 + 8 + 64, 0, 0xFFF]  # B D# F#
    assert vocab.rotate_pitch_mask(masks, 12).tolist() == masks.tolist()
    assert vocab.rotate_pitch_mask(masks, 2).dtype == np.uint16
    roots = np.array([0, 11, 12], dtype=np.uint8)
    assert vocab.transpose_root(roots, 1).tolist() == [1, 0, 12]
    assert vocab.transpose_root(roots, -1).tolist() == [11, 10, 12]
    assert vocab.transpose_root(roots, -1).dtype == np.uint8


def test_pitch_mask_to_multihot():
    hot = vocab.pitch_mask_to_multihot(np.array([145, 0], dtype=np.uint16))
    assert hot.dtype == np.float32 and hot.shape == (2, 12)
    assert hot[0].tolist() == [1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0]
    assert hot[1].sum() == 0
