"""Viterbi smoothing, argmax decoding and frames -> segments."""

import mir_eval
import numpy as np
import pytest

from chordkeras import annotations, vocab
from chordkeras.decode import argmax, decode, families, family_viterbi, frame_boundaries, frames_to_segments, viterbi

# Five frames over three classes; frame 2 is a one-frame blip of class 1 (0.6 against 0.3).
BLIP = np.array(
    [
        [0.8, 0.1, 0.1],
        [0.8, 0.1, 0.1],
        [0.3, 0.6, 0.1],
        [0.8, 0.1, 0.1],
        [0.8, 0.1, 0.1],
    ]
)


def brute_force_viterbi(log_obs: np.ndarray, self_transition: float) -> tuple[np.ndarray, float]:
    """Textbook Viterbi with the full C x C transition matrix; returns (path, best log score)."""
    num_frames, num_classes = log_obs.shape
    transitions = np.full((num_classes, num_classes), np.log((1 - self_transition) / (num_classes - 1)))
    np.fill_diagonal(transitions, np.log(self_transition))
    delta = log_obs[0].copy()
    back = np.zeros((num_frames, num_classes), dtype=int)
    for t in range(1, num_frames):
        candidates = delta[:, None] + transitions
        back[t] = candidates.argmax(axis=0)
        delta = candidates.max(axis=0) + log_obs[t]
    path = [int(delta.argmax())]
    for t in range(num_frames - 1, 0, -1):
        path.append(back[t, path[-1]])
    return np.array(path[::-1]), float(delta.max())


def path_score(log_obs: np.ndarray, self_transition: float, path: np.ndarray) -> float:
    num_classes = log_obs.shape[1]
    score = log_obs[0, path[0]]
    for t in range(1, len(path)):
        same = path[t] == path[t - 1]
        score += log_obs[t, path[t]] + np.log(self_transition if same else (1 - self_transition) / (num_classes - 1))
    return float(score)


def test_strong_self_transition_smooths_a_one_frame_blip():
    # Keeping the blip gains log(0.6 / 0.3) = 0.69 but costs two switches of
    # log(0.99 / (0.01 / 2)) = 5.29 each, so the path stays in class 0.
    np.testing.assert_array_equal(viterbi(BLIP, 0.99), [0, 0, 0, 0, 0])


def test_weak_self_transition_keeps_the_blip():
    # p = 0.34, switch 0.33: two switches cost 2 * log(0.34 / 0.33) = 0.06 < 0.69.
    np.testing.assert_array_equal(viterbi(BLIP, 0.34), [0, 0, 1, 0, 0])


def test_self_transition_below_uniform_still_follows_the_evidence():
    # p = 0.2 < switch 0.4: staying costs log 2 per frame, but switching away from a 0.8 frame to a
    # 0.1 frame costs log 8 -- the argmax path is still best.
    np.testing.assert_array_equal(viterbi(BLIP, 0.2), [0, 0, 1, 0, 0])


def test_log_probabilities_give_the_same_path_as_probabilities():
    np.testing.assert_array_equal(viterbi(np.log(BLIP), 0.99), viterbi(BLIP, 0.99))
    np.testing.assert_array_equal(viterbi(np.log(BLIP), 0.34), viterbi(BLIP, 0.34))


@pytest.mark.parametrize("self_transition", [0.05, 0.3, 0.5, 0.9, 0.999])
def test_viterbi_matches_full_matrix_viterbi(self_transition):
    rng = np.random.default_rng(1)
    for _ in range(40):
        num_frames, num_classes = rng.integers(1, 25), rng.integers(2, 7)
        probs = rng.dirichlet(np.full(num_classes, 0.5), size=num_frames)
        log_obs = np.log(np.maximum(probs, 1e-12))
        path = viterbi(probs, self_transition)
        _, best = brute_force_viterbi(log_obs, self_transition)
        assert path.shape == (num_frames,)
        assert path_score(log_obs, self_transition, path) == pytest.approx(best, abs=1e-9)


def test_viterbi_edge_cases():
    assert viterbi(np.zeros((0, 4)), 0.9).shape == (0,)
    np.testing.assert_array_equal(viterbi(np.ones((3, 1)), 0.9), [0, 0, 0])
    with pytest.raises(ValueError):
        viterbi(BLIP, 1.0)
    with pytest.raises(ValueError):
        viterbi(BLIP[0], 0.9)


def test_argmax_and_decode():
    np.testing.assert_array_equal(argmax(BLIP), [0, 0, 1, 0, 0])
    np.testing.assert_array_equal(decode(BLIP, "argmax"), [0, 0, 1, 0, 0])
    np.testing.assert_array_equal(decode(BLIP, "viterbi", 0.99), [0, 0, 0, 0, 0])
    with pytest.raises(ValueError):
        decode(BLIP, "beam")


# N, C:maj, C:min, C:7, C:min7. Frame 0: C:min is the likeliest class (0.35), but the major family (C:maj
# and C:7) holds 0.55 against the minor's 0.40, and within it C:maj (0.30) leads C:7 (0.25).
FAMILY_NAMES = ["N", "C:maj", "C:min", "C:7", "C:min7"]
FAMILY_PROBS = np.array([[0.05, 0.30, 0.35, 0.25, 0.05], [0.05, 0.60, 0.10, 0.20, 0.05], [0.05, 0.28, 0.02, 0.60, 0.05]])


def test_families_by_hand():
    np.testing.assert_array_equal(families(FAMILY_NAMES), [0, 1, 2, 1, 2])
    large = vocab.get_vocabulary("large").class_names
    named = {name: large[i] for name, i in zip(large, families(large))}
    assert named["N"] == "N" and named["X"] == "X"
    assert [named[f"D:{q}"] for q in ("maj", "7", "maj7", "maj6", "aug", "sus2", "sus4")] == ["D:maj"] * 7
    assert [named[f"B:{q}"] for q in ("min", "min7", "min6", "minmaj7", "dim", "hdim7", "dim7")] == ["B:min"] * 7
    # A vocabulary without the family's triad: the class stands for itself.
    np.testing.assert_array_equal(families(["N", "C:7", "C:min7"]), [0, 1, 2])


def test_family_viterbi_by_hand():
    """At self-transition 0.2 = 1 / classes a switch costs nothing (log(0.8 / 4) - log(0.2) = 0), so both passes
    are per-frame maxima: families maj, maj, maj (0.55, 0.80, 0.88), then C:maj, C:maj, C:7 within them; the
    flat Viterbi takes C:min at frame 0."""
    np.testing.assert_array_equal(decode(FAMILY_PROBS, "family", 0.2, FAMILY_NAMES), [1, 1, 3])
    np.testing.assert_array_equal(family_viterbi(FAMILY_PROBS, families(FAMILY_NAMES), 0.2), [1, 1, 3])
    np.testing.assert_array_equal(decode(FAMILY_PROBS, "viterbi", 0.2), [2, 1, 3])
    # Smoothing in the second pass: at 0.99 staying on C:maj (0.30 * 0.60 * 0.28 = 0.050) beats moving to C:7 for
    # the last frame (0.30 * 0.60 * 0.60 = 0.108, times 0.01 / 4 / 0.99 for the switch).
    np.testing.assert_array_equal(decode(FAMILY_PROBS, "family", 0.99, FAMILY_NAMES), [1, 1, 1])
    with pytest.raises(ValueError, match="class names"):
        decode(FAMILY_PROBS, "family", 0.9)
    with pytest.raises(ValueError, match="not log probabilities"):
        family_viterbi(np.log(FAMILY_PROBS), families(FAMILY_NAMES))


def test_frame_boundaries_from_rate_and_times_agree():
    # Frame rate 2: frame i covers [(i - 0.5) / 2, (i + 0.5) / 2), clipped to [0, 2.6].
    expected = [0.0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.6]
    np.testing.assert_allclose(frame_boundaries(2.0, 6, duration=2.6), expected)
    np.testing.assert_allclose(frame_boundaries(np.arange(6) / 2.0, 6, duration=2.6), expected)
    np.testing.assert_allclose(frame_boundaries(2.0, 2), [0.0, 0.25, 0.75])
    # 1 + samples // hop frames: the last one reaches the end of the audio (here 0.2 s past its half).
    np.testing.assert_allclose(frame_boundaries(2.0, 2, duration=0.95), [0.0, 0.25, 0.95])


def test_frames_to_segments_merges_equal_frames():
    names = ["N", "C:maj", "A:min"]
    classes = np.array([1, 1, 2, 2, 2, 0])
    probs = np.array(
        [
            [0.1, 0.9, 0.0],
            [0.3, 0.7, 0.0],
            [0.2, 0.2, 0.6],
            [0.0, 0.2, 0.8],
            [0.0, 0.0, 1.0],
            [0.5, 0.25, 0.25],
        ]
    )
    segments = frames_to_segments(classes, probs, 2.0, names, duration=2.6)
    assert [(s.start, s.end, s.label) for s in segments] == [
        (0.0, 0.75, "C:maj"),
        (0.75, 2.25, "A:min"),
        (2.25, 2.6, "N"),
    ]
    assert [s.confidence for s in segments] == pytest.approx([0.8, 0.8, 0.5])
    assert all(isinstance(s, annotations.Segment) for s in segments)
    assert frames_to_segments(classes, None, 2.0, names)[-1] == annotations.Segment(2.25, 2.75, "N")
    assert frames_to_segments(np.zeros(0, dtype=int), None, 2.0, names) == []


def test_segments_round_trip_through_lab_and_mir_eval(tmp_path):
    rng = np.random.default_rng(2)
    names = ["N", "C:maj", "G:7", "A:min/b3", "F#:hdim7"]
    probs = rng.dirichlet(np.ones(len(names)), size=200)
    frame_rate = 22050 / 2048
    segments = frames_to_segments(viterbi(probs, 0.7), probs, frame_rate, names, duration=18.3)
    path = tmp_path / "song.lab"
    annotations.write_lab(path, segments)
    intervals, labels = mir_eval.io.load_labeled_intervals(str(path))
    np.testing.assert_allclose(intervals, [[s.start, s.end] for s in segments], atol=1e-6)
    assert labels == [s.label for s in segments]
    assert intervals[0, 0] == 0.0 and intervals[-1, 1] == pytest.approx(18.3)
    # Merged: no two neighbours share a label, and the segments tile the song.
    assert all(a != b for a, b in zip(labels, labels[1:]))
    np.testing.assert_allclose(intervals[1:, 0], intervals[:-1, 1], atol=1e-6)
