// Windows, Viterbi decoding, segments and chord names: the page's port of chordkeras.inference.plan_windows
// and chordkeras.decode, with the same arithmetic in the same order (float64), so that the page and
// `python -m chordkeras.predict` decode the same probabilities to the same chords. No DOM: the page, its
// workers and the tests under Node.js (tests/test_web.py) all import this module.

// Python's round(): halves go to the even neighbour (plan_windows rounds window starts with it).
export function roundHalfEven(x) {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

// Frames of `numSamples` samples: centred frames, frame i on sample i * hop (FeatureConfig.num_frames).
export function numFrames(numSamples, hopLength) {
  return 1 + Math.floor(numSamples / hopLength);
}

// chordkeras.inference.plan_windows: equal-length overlapping windows covering numFrames, each frame kept
// once, from the window whose edge is farthest away. Returns [{start, length, keepStart, keepStop}].
export function planWindows(numFramesTotal, windowFrames, overlapFrames) {
  if (windowFrames <= overlapFrames) {
    throw new Error(`window (${windowFrames} frames) must be longer than the overlap (${overlapFrames})`);
  }
  if (numFramesTotal <= windowFrames) {
    return [{ start: 0, length: numFramesTotal, keepStart: 0, keepStop: numFramesTotal }];
  }
  const count = Math.ceil((numFramesTotal - overlapFrames) / (windowFrames - overlapFrames));
  const length = Math.ceil((numFramesTotal + (count - 1) * overlapFrames) / count);
  const starts = [];
  for (let k = 0; k < count; k++) starts.push(roundHalfEven((k * (numFramesTotal - length)) / (count - 1)));
  return starts.map((start, k) => ({
    start,
    length,
    keepStart: k === 0 ? 0 : Math.floor((start + starts[k - 1] + length) / 2),
    keepStop: k === count - 1 ? numFramesTotal : Math.floor((starts[k + 1] + start + length) / 2),
  }));
}

// Copies a window's kept frames into the song's probabilities (Float32Array [frames * classes]), as
// FormatTranscriber.source_probabilities does: a window that came out short repeats its last frame.
export function keepWindowFrames(probabilities, numClasses, window, windowProbabilities) {
  const frames = windowProbabilities.length / numClasses;
  if (frames === 0) throw new Error("the model returned no frames for a window");
  for (let f = window.keepStart; f < window.keepStop; f++) {
    const source = Math.min(f - window.start, frames - 1);
    probabilities.set(windowProbabilities.subarray(source * numClasses, (source + 1) * numClasses), f * numClasses);
  }
}

// Probabilities are floored before taking logs so a hard zero cannot make a path impossible (decode.py).
const PROB_FLOOR = 1e-12;

// chordkeras.decode.viterbi on probabilities (Float32Array or Float64Array [frames * classes], row-major):
// the most likely class path under the uniform-switch transition model, O(frames x classes).
export function viterbi(probabilities, numClasses, selfTransition) {
  if (!(selfTransition > 0 && selfTransition < 1)) {
    throw new Error(`self_transition must be in (0, 1), got ${selfTransition}`);
  }
  const C = numClasses;
  const T = Math.floor(probabilities.length / C);
  const path = new Int32Array(T);
  if (T === 0 || C === 1) return path;
  const logObs = (t, c) => Math.log(Math.max(probabilities[t * C + c], PROB_FLOOR));
  const logStay = Math.log(selfTransition);
  const logSwitch = Math.log((1 - selfTransition) / (C - 1));
  const switchCost = logSwitch - logStay;
  const stayed = new Uint8Array(T * C);
  const best = new Int32Array(T);
  const runnerUp = new Int32Array(T);
  const delta = new Float64Array(C);
  for (let c = 0; c < C; c++) delta[c] = logObs(0, c);
  let b = argmax(delta);
  best[0] = b;
  let top = delta[b];
  const threshold = new Float64Array(C);
  for (let t = 1; t < T; t++) {
    if (switchCost <= 0) {
      threshold.fill(top + switchCost);
    } else {
      // Self-transition below uniform: the best source for the previous best class is the runner-up.
      const bPrev = best[t - 1];
      const saved = delta[bPrev];
      delta[bPrev] = -Infinity;
      const r = argmax(delta);
      runnerUp[t - 1] = r;
      threshold.fill(top + switchCost);
      threshold[bPrev] = delta[r] + switchCost;
      delta[bPrev] = saved;
    }
    const row = t * C;
    for (let c = 0; c < C; c++) {
      const stay = delta[c] >= threshold[c];
      stayed[row + c] = stay ? 1 : 0;
      delta[c] = (stay ? delta[c] : threshold[c]) + logObs(t, c);
    }
    b = argmax(delta);
    best[t] = b;
    top = delta[b];
    if (t % 256 === 0) {  // keep magnitudes small so that float64 resolves near-ties
      for (let c = 0; c < C; c++) delta[c] -= top;
      top = 0;
    }
  }
  path[T - 1] = best[T - 1];
  for (let t = T - 1; t > 0; t--) {
    const c = path[t];
    if (stayed[t * C + c]) path[t - 1] = c;
    else if (c === best[t - 1]) path[t - 1] = runnerUp[t - 1];
    else path[t - 1] = best[t - 1];
  }
  return path;
}

// chordkeras.decode.family_viterbi: Viterbi over chord families (a root and its third; family[c] is the class
// standing for class c's family, which holds the sum of its classes' probabilities), then over the classes
// of the family chosen at each frame.
export function familyViterbi(probabilities, numClasses, family, selfTransition) {
  const C = numClasses;
  const T = Math.floor(probabilities.length / C);
  const summed = new Float64Array(T * C);
  for (let t = 0; t < T; t++) {
    for (let c = 0; c < C; c++) summed[t * C + family[c]] += probabilities[t * C + c];
  }
  const chosen = viterbi(summed, C, selfTransition);
  const kept = new Float64Array(T * C);
  for (let t = 0; t < T; t++) {
    for (let c = 0; c < C; c++) if (family[c] === chosen[t]) kept[t * C + c] = probabilities[t * C + c];
  }
  return viterbi(kept, C, selfTransition);
}

// numpy's argmax: the first index of the largest value.
function argmax(values) {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

// chordkeras.decode.argmax: per-frame most likely class.
export function argmaxPath(probabilities, numClasses) {
  const T = Math.floor(probabilities.length / numClasses);
  const path = new Int32Array(T);
  for (let t = 0; t < T; t++) path[t] = argmax(probabilities.subarray(t * numClasses, (t + 1) * numClasses));
  return path;
}

// chordkeras.decode.frame_boundaries with a frame rate: frame i covers [(i - 0.5) / rate, (i + 0.5) / rate),
// clipped to [0, duration], the last frame ending at duration.
export function frameBoundaries(frameRate, frames, duration) {
  const bounds = new Float64Array(frames + 1);
  for (let i = 0; i <= frames; i++) bounds[i] = Math.min(Math.max((i - 0.5) / frameRate, 0), duration);
  bounds[frames] = duration;
  return bounds;
}

// chordkeras.decode.frames_to_segments: runs of one class -> [{start, end, label, confidence}], the
// confidence being the mean probability of the segment's class over its frames.
export function framesToSegments(path, probabilities, numClasses, frameRate, classNames, duration) {
  const frames = path.length;
  if (frames === 0) return [];
  const bounds = frameBoundaries(frameRate, frames, duration);
  const segments = [];
  let start = 0;
  for (let i = 1; i <= frames; i++) {
    if (i < frames && path[i] === path[start]) continue;
    let sum = 0;
    for (let f = start; f < i; f++) sum += probabilities[f * numClasses + path[f]];
    if (bounds[i] > bounds[start]) {
      segments.push({ start: bounds[start], end: bounds[i], label: classNames[path[start]], confidence: sum / (i - start) });
    }
    start = i;
  }
  return segments;
}

// The .lab text chordkeras.annotations.write_lab writes: start<TAB>end<TAB>label, 6 decimals.
export function labText(segments) {
  return segments.map((s) => `${s.start.toFixed(6)}\t${s.end.toFixed(6)}\t${s.label}\n`).join("");
}

// A Harte label in the display vocabulary: "full" keeps it; "majmin" reduces its quality as the majmin
// vocabulary does (`reductions`: large quality -> maj or min, from the model card); a chord that is
// neither major nor minor (dim, aug, sus, X) keeps its label.
export function displayLabel(label, vocabulary, reductions) {
  if (vocabulary !== "majmin" || !reductions) return label;
  const colon = label.indexOf(":");
  if (colon < 0) return label;
  const reduced = reductions[label.slice(colon + 1)];
  return reduced ? `${label.slice(0, colon)}:${reduced}` : label;
}

// Segments relabelled by `relabel`, consecutive equal labels merged (confidence weighted by duration).
export function relabelSegments(segments, relabel) {
  const merged = [];
  for (const s of segments) {
    const label = relabel(s.label);
    const last = merged[merged.length - 1];
    if (last && last.label === label && last.end === s.start) {
      const a = last.end - last.start;
      const b = s.end - s.start;
      last.confidence = (last.confidence * a + s.confidence * b) / (a + b);
      last.end = s.end;
    } else {
      merged.push({ ...s, label });
    }
  }
  return merged;
}

// How a guitarist writes each quality after the root.
const QUALITY_SUFFIXES = {
  maj: "", min: "m", dim: "dim", aug: "aug", min6: "m6", maj6: "6", min7: "m7", minmaj7: "m(maj7)",
  maj7: "maj7", 7: "7", dim7: "dim7", hdim7: "m7b5", sus2: "sus2", sus4: "sus4",
};
// Roots as chord sheets spell them: sharps for C#, F#; flats for Eb, Ab, Bb.
const ROOT_SPELLINGS = {
  C: "C", "C#": "C#", Db: "C#", D: "D", "D#": "Eb", Eb: "Eb", E: "E", F: "F", "F#": "F#", Gb: "F#", G: "G",
  "G#": "Ab", Ab: "Ab", A: "A", "A#": "Bb", Bb: "Bb", B: "B",
};

// A Harte label as a guitarist reads it: C:maj -> C, C:min7 -> Cm7, A#:hdim7 -> Bbm7b5, N -> N.C.
// Labels it does not know stay as they are.
export function guitarName(label) {
  if (label === "N") return "N.C.";
  if (label === "X") return "?";
  const colon = label.indexOf(":");
  const root = ROOT_SPELLINGS[colon < 0 ? label : label.slice(0, colon)];
  const quality = colon < 0 ? "maj" : label.slice(colon + 1);
  if (root === undefined || !(quality in QUALITY_SUFFIXES)) return label;
  return root + QUALITY_SUFFIXES[quality];
}

// Index of the segment sounding at `time` (start <= time < end), or -1: a binary search.
export function segmentAt(segments, time) {
  let lo = 0;
  let hi = segments.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (time < segments[mid].start) hi = mid - 1;
    else if (time >= segments[mid].end) lo = mid + 1;
    else return mid;
  }
  return -1;
}
