// Runs the page's chords.js under Node.js for tests/test_web.py: reads a JSON list of calls, writes their
// results as JSON. Typed arrays go out as plain arrays.
//
//     node tests/chords_node.mjs CHORDS_JS CALLS.json RESULTS.json
//
// A call is {"fn": name, "args": [...]}; arguments named in FLOAT32 are turned into Float32Array first, and
// relabelSegments' relabelling function is given as a map {label: new label} (others unchanged).
import fs from "fs";
import { pathToFileURL } from "url";

const [modulePath, callsPath, resultsPath] = process.argv.slice(2);
const chords = await import(pathToFileURL(modulePath).href);
const FLOAT32 = { viterbi: [0], familyViterbi: [0], argmaxPath: [0], framesToSegments: [1], keepWindowFrames: [0, 3] };

const calls = JSON.parse(fs.readFileSync(callsPath, "utf8"));
const results = calls.map(({ fn, args }) => {
  const converted = args.map((arg, i) => ((FLOAT32[fn] || []).includes(i) ? Float32Array.from(arg) : arg));
  if (fn === "relabelSegments") {
    const map = converted[1];
    converted[1] = (label) => map[label] ?? label;
  }
  let result = chords[fn](...converted);
  if (fn === "keepWindowFrames") result = converted[0];  // it fills its first argument
  return ArrayBuffer.isView(result) ? Array.from(result) : result;
});
fs.writeFileSync(resultsPath, JSON.stringify(results));
