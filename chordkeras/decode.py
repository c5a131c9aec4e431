"""Frame-wise chord posteriors -> class paths -> labelled segments.

Viterbi smoothing uses a uniform-switch transition model: stay in the same class with probability
`self_transition`, move to any other class with probability (1 - self_transition) / (C - 1). That
structure makes each step O(C) (the best predecessor is either the class itself or the overall best
class), so no C x C matrix is ever built.

The default decoding, `family_viterbi`, runs it twice: first over chord families (a root and its
third: the major-third qualities with the major triad, the minor-third ones with the minor triad), each
family's probability the sum of its classes', then over the classes of the family chosen at each frame.
Whether a chord is major or minor is decided on all the evidence for it rather than on its likeliest
single class, which seventh, sixth and suspended classes would otherwise split.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from chordkeras.annotations import Segment

# A chord lasts about 2 s (20 frames at 10.8 frames/s), so staying is far likelier than switching:
# with 170 classes a switch then costs log(0.9 * 169 / 0.1) = 7.3 nats, which a real change earns
# back within a few confident frames while one-frame flickers do not.
DEFAULT_SELF_TRANSITION = 0.9
# Probabilities are floored before taking logs so a hard zero cannot make a path impossible.
_PROB_FLOOR = 1e-12
METHODS = ("family", "viterbi", "argmax")
DEFAULT_METHOD = "family"
METHODS_HELP = ("family (default): Viterbi over chord families (root and third), then over the chords of the "
                "chosen family; viterbi: over all chords at once; argmax: per frame")
# The family of each quality: the triad with its third (sus chords, which have none, go with major,
# as they mostly stand in for it).
FAMILY_OF_QUALITY = {
    "maj": "maj", "7": "maj", "maj7": "maj", "maj6": "maj", "aug": "maj", "sus2": "maj", "sus4": "maj",
    "min": "min", "min7": "min", "min6": "min", "minmaj7": "min", "dim": "min", "hdim7": "min", "dim7": "min",
}


def _as_log_probs(scores: np.ndarray) -> np.ndarray:
    """Returns log probabilities; non-negative input is taken to be probabilities."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"expected [frames, classes], got shape {scores.shape}")
    if np.all(scores >= 0.0):
        return np.log(np.maximum(scores, _PROB_FLOOR))
    return scores


def viterbi(scores: np.ndarray, self_transition: float = 0.9) -> np.ndarray:
    """Most likely class path under a uniform-switch transition model.

    Args:
        scores: [frames, classes] probabilities (all values >= 0) or log probabilities.
            Posteriors are used as emission scores, with a uniform initial distribution.
        self_transition: Probability of staying in the same class from one frame to the next,
            in (0, 1). Higher values smooth more.

    Returns:
        int64 [frames] class indices.
    """
    log_obs = _as_log_probs(scores)
    num_frames, num_classes = log_obs.shape
    if not 0.0 < self_transition < 1.0:
        raise ValueError(f"self_transition must be in (0, 1), got {self_transition}")
    if num_frames == 0:
        return np.zeros(0, dtype=np.int64)
    if num_classes == 1:
        return np.zeros(num_frames, dtype=np.int64)

    log_stay = np.log(self_transition)
    log_switch = np.log((1.0 - self_transition) / (num_classes - 1))
    # stayed[t, c]: the best path into class c at frame t came from c itself; otherwise it came from
    # best[t - 1] (or, for c == best[t - 1] under a weak self-transition, from runner_up[t - 1]).
    stayed = np.empty((num_frames, num_classes), dtype=bool)
    best = np.empty(num_frames, dtype=np.int64)
    runner_up = np.zeros(num_frames, dtype=np.int64)
    # Scores are kept relative to the drift of staying (log_stay per frame), so staying is a no-op
    # and a switch into any class costs `switch_cost` on top of the previous best score.
    switch_cost = log_switch - log_stay
    delta = log_obs[0].copy()
    best[0] = b = delta.argmax()
    top = delta[b]
    if switch_cost <= 0:
        for t in range(1, num_frames):
            threshold = top + switch_cost
            np.greater_equal(delta, threshold, out=stayed[t])
            np.maximum(delta, threshold, out=delta)
            delta += log_obs[t]
            best[t] = b = delta.argmax()
            top = delta[b]
            if t % 256 == 0:  # keep magnitudes small so that float64 resolves near-ties
                delta -= top
                top = 0.0
    else:
        # Self-transition below uniform: switching into c from c itself is not a switch, so the
        # best source for the previous best class is the runner-up.
        threshold = np.empty(num_classes)
        for t in range(1, num_frames):
            b_prev = best[t - 1]
            saved, delta[b_prev] = delta[b_prev], -np.inf
            runner_up[t - 1] = r = delta.argmax()
            threshold.fill(top + switch_cost)
            threshold[b_prev] = delta[r] + switch_cost
            delta[b_prev] = saved
            np.greater_equal(delta, threshold, out=stayed[t])
            np.maximum(delta, threshold, out=delta)
            delta += log_obs[t]
            best[t] = b = delta.argmax()
            top = delta[b]
            if t % 256 == 0:
                delta -= top
                top = 0.0

    path = np.empty(num_frames, dtype=np.int64)
    path[-1] = best[-1]
    for t in range(num_frames - 1, 0, -1):
        c = path[t]
        if stayed[t, c]:
            path[t - 1] = c
        elif c == best[t - 1]:
            path[t - 1] = runner_up[t - 1]
        else:
            path[t - 1] = best[t - 1]
    return path


def argmax(scores: np.ndarray) -> np.ndarray:
    """Per-frame most likely class: int64 [frames] from [frames, classes] (log) probabilities."""
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"expected [frames, classes], got shape {scores.shape}")
    return np.argmax(scores, axis=-1).astype(np.int64)


def families(class_names: Sequence[str]) -> np.ndarray:
    """int64 [classes]: the class standing for each class's family (`FAMILY_OF_QUALITY`): 'C:7' -> 'C:maj',
    'A:hdim7' -> 'A:min'; N, X, the family classes themselves and qualities without a family (or whose
    triad the vocabulary lacks) stand for themselves."""
    index = {name: i for i, name in enumerate(class_names)}
    out = np.arange(len(class_names), dtype=np.int64)
    for i, name in enumerate(class_names):
        root, _, quality = name.partition(":")
        family = FAMILY_OF_QUALITY.get(quality)
        if family is not None and f"{root}:{family}" in index:
            out[i] = index[f"{root}:{family}"]
    return out


def family_viterbi(probs: np.ndarray, family: np.ndarray, self_transition: float = 0.9) -> np.ndarray:
    """Viterbi over chord families, then over the classes of each frame's family.

    Args:
        probs: [frames, classes] probabilities.
        family: int [classes], the class standing for each class's family (`families`).
        self_transition: As `viterbi`'s, in both passes.

    Returns:
        int64 [frames] class indices, each in the family the first pass chose for its frame.
    """
    probs = np.asarray(probs, dtype=np.float64)
    family = np.asarray(family, dtype=np.int64)
    if probs.ndim != 2 or family.shape != (probs.shape[1],):
        raise ValueError(f"expected probs [frames, classes] and family [classes], got {probs.shape} and {family.shape}")
    if np.any(probs < 0.0):
        raise ValueError("family_viterbi needs probabilities (non-negative), not log probabilities")
    summed = np.zeros_like(probs)
    np.add.at(summed.T, family, probs.T)            # each family's probability on the class standing for it
    chosen = viterbi(summed, self_transition)
    return viterbi(np.where(family[None, :] == chosen[:, None], probs, 0.0), self_transition)


def decode(probs: np.ndarray, method: str = DEFAULT_METHOD, self_transition: float = 0.9,
           class_names: Sequence[str] | None = None) -> np.ndarray:
    """Class path by `method`: "family" (`family_viterbi`, which needs `class_names`), "viterbi" or "argmax"."""
    if method == "family":
        if class_names is None:
            raise ValueError("family decoding needs the class names")
        return family_viterbi(probs, families(class_names), self_transition)
    if method == "viterbi":
        return viterbi(probs, self_transition)
    if method == "argmax":
        return argmax(probs)
    raise ValueError(f"unknown decoding method {method!r}; choose from {', '.join(METHODS)}")


def frame_boundaries(frame_times: np.ndarray | float, num_frames: int, duration: float | None = None) -> np.ndarray:
    """[num_frames + 1] boundary times: frame i covers [b[i], b[i + 1]).

    With a frame rate fr, frame i covers [(i - 0.5) / fr, (i + 0.5) / fr); with explicit centre
    times, boundaries are the midpoints between centres. Either way clipped to [0, duration], and
    the last frame ends at `duration`: with centred frames (1 + samples // hop of them) it is the
    nearest frame to the last samples, which may lie up to half a hop beyond its half-frame.

    Args:
        frame_times: [num_frames] centre times in seconds, or a scalar frame rate in frames per second.
        num_frames: Number of frames.
        duration: Audio duration in seconds; when given, the last boundary is set to it.
    """
    if np.ndim(frame_times) == 0:
        frame_rate = float(frame_times)
        if frame_rate <= 0:
            raise ValueError(f"frame rate must be positive, got {frame_rate}")
        bounds = (np.arange(num_frames + 1, dtype=np.float64) - 0.5) / frame_rate
    else:
        times = np.asarray(frame_times, dtype=np.float64)
        if times.shape != (num_frames,):
            raise ValueError(f"frame_times has shape {times.shape}, expected ({num_frames},)")
        if num_frames == 0:
            return np.zeros(1)
        half = 0.5 * float(np.median(np.diff(times))) if num_frames > 1 else 0.0
        bounds = np.concatenate([[times[0] - half], 0.5 * (times[1:] + times[:-1]), [times[-1] + half]])
    bounds = np.maximum(bounds, 0.0)
    if duration is not None:
        bounds = np.minimum(bounds, float(duration))
        bounds[-1] = float(duration)
    return bounds


def frames_to_segments(
    classes: np.ndarray,
    probs: np.ndarray | None,
    frame_times: np.ndarray | float,
    class_names: Sequence[str],
    duration: float | None = None,
) -> list[Segment]:
    """Merges runs of equal classes into labelled segments.

    Args:
        classes: int [frames] class path (from `viterbi` or `argmax`).
        probs: [frames, classes] probabilities; a segment's confidence is the mean probability of its
            class over its frames. None gives segments without a confidence (None).
        frame_times: [frames] centre times in seconds, or a scalar frame rate (frame i centred at
            i / frame_rate); see `frame_boundaries`.
        class_names: Harte label of each class index.
        duration: Audio duration in seconds; segments then cover exactly [0, duration].

    Returns:
        Segments in time order; empty (zero-length after clipping) segments are dropped.
    """
    classes = np.asarray(classes, dtype=np.int64)
    if classes.ndim != 1:
        raise ValueError(f"classes must be [frames], got shape {classes.shape}")
    num_frames = len(classes)
    if num_frames == 0:
        return []
    bounds = frame_boundaries(frame_times, num_frames, duration)
    starts = np.concatenate([[0], np.flatnonzero(np.diff(classes)) + 1])
    ends = np.concatenate([starts[1:], [num_frames]])
    if probs is None:
        confidence = [None] * len(starts)
    else:
        probs = np.asarray(probs)
        if probs.shape[0] != num_frames:
            raise ValueError(f"probs has {probs.shape[0]} frames, classes has {num_frames}")
        chosen = probs[np.arange(num_frames), classes].astype(np.float64)
        confidence = np.add.reduceat(chosen, starts) / (ends - starts)
    segments = []
    for s, e, conf in zip(starts, ends, confidence):
        start, end = float(bounds[s]), float(bounds[e])
        if end > start:
            conf = None if conf is None else float(conf)
            segments.append(Segment(start=start, end=end, label=class_names[classes[s]], confidence=conf))
    return segments
