// The page: decode a dropped audio file (Web Audio, resampled to the model's rate, mono), analyse it in
// Web Workers with the ONNX model (the windows `python -m chordkeras.predict --backend onnx` uses), decode
// the chords as predict does (family Viterbi), and show them under a waveform, highlighted as the song plays.
// Nothing is sent anywhere: the page's Content-Security-Policy allows requests to its own folder only.
import {
  displayLabel, familyViterbi, framesToSegments, guitarName, keepWindowFrames, labText, numFrames, planWindows,
  relabelSegments, segmentAt,
} from "./chords.js";

const $ = (id) => document.getElementById(id);
const MAX_WORKERS = 4;

// What the page is doing, for people (the status line) and for scripts that drive it (tests, benchmarks).
const page = {
  status: "loading", error: null, timings: {}, workers: 0, windows: 0, segments: null, current: null, file: null,
};
window.chordkeras = page;

class UserError extends Error {}

function setStatus(text) {
  $("status").textContent = text;
}

function showError(message) {
  page.status = "error";
  page.error = message;
  $("error").textContent = message;
  $("error").hidden = false;
  $("progress").hidden = true;
}

function clearError() {
  page.error = null;
  $("error").hidden = true;
  $("error").textContent = "";
}

function missingFeature() {
  if (typeof WebAssembly !== "object" || typeof WebAssembly.instantiate !== "function") {
    return "This browser cannot run WebAssembly, which the chord model needs. Use a current Firefox, Chrome, "
      + "Edge or Safari, with WebAssembly enabled.";
  }
  if (typeof Worker !== "function") return "This browser has no Web Workers, which the chord model runs in.";
  if (typeof OfflineAudioContext !== "function") return "This browser has no Web Audio, which decodes the song.";
  return null;
}

// ---------------------------------------------------------------------------------------------------
// Workers: one model each, windows handed to whichever is free.

class WorkerPool {
  constructor(size, model) {
    this.model = model;
    this.workers = [];
    this.ready = Promise.all(Array.from({ length: size }, () => this.#start()));
  }

  #start() {
    return new Promise((resolve, reject) => {
      const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
      worker.onerror = (event) => reject(new Error(`the analysis worker failed to start (${event.message || "no reason given"})`));
      worker.onmessage = ({ data }) => {
        if (data.type === "ready") {
          worker.onerror = null;
          this.workers.push(worker);
          resolve(data.seconds);
        } else if (data.type === "error") {
          reject(new Error(`the model failed to load: ${data.message}`));
        }
      };
      worker.postMessage({
        type: "load", model: new URL(this.model.model, document.baseURI).href, input: this.model.input, output: this.model.output,
      });
    });
  }

  // Runs every chunk; calls onResult(index, probabilities) as each finishes.
  run(chunks, onResult) {
    return new Promise((resolve, reject) => {
      let next = 0;
      let done = 0;
      let failed = false;
      const feed = (worker) => {
        if (next >= chunks.length || failed) return;
        const id = next++;
        const audio = chunks[id].slice();  // a copy, transferred to the worker
        worker.onmessage = ({ data }) => {
          if (data.type === "error") {
            failed = true;
            reject(new Error(`the model failed on window ${id + 1}: ${data.message}`));
            return;
          }
          onResult(id, data.probabilities);
          done += 1;
          if (done === chunks.length) resolve();
          else feed(worker);
        };
        worker.onerror = (event) => {
          failed = true;
          reject(new Error(`an analysis worker stopped on window ${id + 1} (${event.message || "out of memory?"})`));
        };
        worker.postMessage({ type: "run", id, audio }, [audio.buffer]);
      };
      if (chunks.length === 0) resolve();
      this.workers.forEach(feed);
    });
  }
}

// ---------------------------------------------------------------------------------------------------
// Audio

async function decodeAudio(file, sampleRate) {
  const bytes = await file.arrayBuffer();
  if (bytes.byteLength === 0) throw new UserError(`“${file.name}” is empty.`);
  let buffer;
  try {
    // Decoding in a context at the model's rate resamples the song to it (every channel).
    buffer = await new OfflineAudioContext(1, 1, sampleRate).decodeAudioData(bytes);
  } catch (error) {
    throw new UserError(`Cannot decode “${file.name}”: this browser cannot read it as audio`
      + ` (${(error && (error.message || error.name)) || "unknown format"}). Try an MP3, WAV, FLAC or Ogg file.`);
  }
  if (buffer.length === 0) throw new UserError(`“${file.name}” holds no audio.`);
  // Mono: the mean of the channels, as chordkeras.audio mixes them.
  const channels = Array.from({ length: buffer.numberOfChannels }, (_, c) => buffer.getChannelData(c));
  if (channels.length === 1) return channels[0];
  const mono = new Float32Array(buffer.length);
  for (let i = 0; i < mono.length; i++) {
    let sum = 0;
    for (const channel of channels) sum += channel[i];
    mono[i] = sum / channels.length;
  }
  return mono;
}

// ---------------------------------------------------------------------------------------------------
// The song on screen

const view = { song: null, display: [], pixelsPerSecond: 50, currentIndex: -1, following: true };

function options() {
  const form = $("options");
  return { vocabulary: form.vocabulary.value, names: form.names.value, zoom: Number(form.zoom.value) };
}

function chordName(label, names) {
  return names === "guitar" ? guitarName(label) : label;
}

function rootHue(label) {
  const pitch = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"].indexOf(label.split(":")[0]);
  return pitch < 0 ? null : pitch * 30;
}

function render() {
  const song = view.song;
  if (!song) return;
  const { vocabulary, names, zoom } = options();
  view.display = relabelSegments(song.segments, (label) => displayLabel(label, vocabulary, song.model.majmin));
  page.segments = view.display.map((s) => ({ ...s, name: chordName(s.label, names) }));
  const scroller = $("scroller");
  const width = zoom > 0 ? Math.ceil(song.duration * zoom) : scroller.clientWidth;
  view.pixelsPerSecond = width / song.duration;
  $("track").style.width = `${width}px`;
  drawWaveform(song.audio, width);
  const list = $("timeline");
  list.replaceChildren(...page.segments.map((s, i) => {
    const item = document.createElement("li");
    item.textContent = s.name;
    item.title = `${s.name}  ${clock(s.start)}–${clock(s.end)}`;
    item.dataset.index = i;
    item.dataset.label = s.label;
    item.dataset.start = s.start;
    item.dataset.end = s.end;
    item.style.left = `${s.start * view.pixelsPerSecond}px`;
    item.style.width = `${(s.end - s.start) * view.pixelsPerSecond}px`;
    const hue = rootHue(s.label);
    if (hue === null) item.classList.add("nc");
    else item.style.setProperty("--hue", hue);
    return item;
  }));
  view.currentIndex = -1;
  follow(true);
}

function drawWaveform(audio, width) {
  const canvas = $("waveform");
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.min(32767, Math.round(width * ratio));
  canvas.style.width = `${width}px`;
  const context = canvas.getContext("2d");
  const height = canvas.height;
  context.clearRect(0, 0, canvas.width, height);
  context.fillStyle = getComputedStyle(document.documentElement).getPropertyValue("--wave") || "#64748b";
  const perColumn = audio.length / canvas.width;
  for (let x = 0; x < canvas.width; x++) {
    let low = 0;
    let high = 0;
    const end = Math.min(audio.length, Math.ceil((x + 1) * perColumn));
    for (let i = Math.floor(x * perColumn); i < end; i++) {
      if (audio[i] < low) low = audio[i];
      else if (audio[i] > high) high = audio[i];
    }
    const top = (0.5 - high / 2) * height;
    context.fillRect(x, top, 1, Math.max(1, (high - low) / 2 * height));
  }
}

function clock(seconds) {
  const m = Math.floor(seconds / 60);
  const s = seconds - 60 * m;
  return `${m}:${s.toFixed(1).padStart(4, "0")}`;
}

// Highlights the chord sounding now and moves the playhead; keeps the playhead in view while playing.
function follow(force = false) {
  const player = $("player");
  const time = player.currentTime;
  const index = segmentAt(view.display, time);
  $("playhead").style.left = `${time * view.pixelsPerSecond}px`;
  if (index !== view.currentIndex || force) {
    const items = $("timeline").children;
    if (view.currentIndex >= 0 && items[view.currentIndex]) items[view.currentIndex].classList.remove("current");
    if (index >= 0 && items[index]) items[index].classList.add("current");
    view.currentIndex = index;
    const current = index >= 0 ? page.segments[index] : null;
    const next = index >= 0 ? page.segments[index + 1] : null;
    $("now-chord").textContent = current ? current.name : "–";
    $("next-chord").textContent = next ? next.name : "–";
    page.current = current && { index, label: current.label, name: current.name, start: current.start, end: current.end };
  }
  const next = index >= 0 ? page.segments[index + 1] : null;
  $("next-in").textContent = next ? `in ${(next.start - time).toFixed(1)} s` : "";
  if (!player.paused && view.following) {
    const scroller = $("scroller");
    const x = time * view.pixelsPerSecond;
    if (x < scroller.scrollLeft || x > scroller.scrollLeft + 0.8 * scroller.clientWidth) {
      scroller.scrollLeft = Math.max(0, x - 0.25 * scroller.clientWidth);
    }
  }
}

function animate() {
  follow();
  if (!$("player").paused) requestAnimationFrame(animate);
}

function download(name, type, text) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function stem(name) {
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(0, dot) : name;
}

// ---------------------------------------------------------------------------------------------------
// Analysis

async function analyse(file, model, pool) {
  clearError();
  page.status = "analysing";
  page.file = file.name;
  page.segments = null;
  page.current = null;
  $("result").hidden = true;
  const progress = $("progress");
  progress.hidden = false;
  progress.value = 0;
  const started = performance.now();
  setStatus(`Decoding “${file.name}”…`);
  const audio = await decodeAudio(file, model.sample_rate);
  const decoded = performance.now();
  setStatus("Waiting for the model…");
  await pool.ready;
  const hop = model.hop_length;
  const classes = model.class_names.length;
  const frames = numFrames(audio.length, hop);
  const windows = planWindows(frames, model.window_frames, model.overlap_frames);
  page.windows = windows.length;
  const chunks = windows.map((w) => audio.subarray(w.start * hop, Math.min((w.start + w.length) * hop, audio.length)));
  const probabilities = new Float32Array(frames * classes);
  let finished = 0;
  setStatus(`Finding the chords of “${file.name}”…`);
  await pool.run(chunks, (index, windowProbabilities) => {
    keepWindowFrames(probabilities, classes, windows[index], windowProbabilities);
    finished += 1;
    progress.value = finished / windows.length;
  });
  const analysed = performance.now();
  const path = familyViterbi(probabilities, classes, model.families, model.self_transition);
  const duration = audio.length / model.sample_rate;
  const segments = framesToSegments(path, probabilities, classes, model.frame_rate, model.class_names, duration);
  const total = (performance.now() - started) / 1000;
  page.timings.decodeSeconds = (decoded - started) / 1000;
  page.timings.analyseSeconds = (analysed - decoded) / 1000;
  page.timings.totalSeconds = total;
  page.timings.audioSeconds = duration;

  const player = $("player");
  if (player.src) URL.revokeObjectURL(player.src);
  player.src = URL.createObjectURL(file);
  view.song = { name: file.name, audio, duration, segments, model };
  $("song-title").textContent = `${file.name} (${clock(duration)})`;
  $("result").hidden = false;
  progress.hidden = true;
  render();
  const plural = (count, noun) => `${count} ${noun}${count === 1 ? "" : "s"}`;
  setStatus(`${plural(segments.length, "chord")} in ${clock(duration)} of audio, found in ${total.toFixed(1)} s `
    + `(${Math.round(duration / total)}x real time, ${plural(windows.length, "window")} on `
    + `${plural(pool.workers.length, "worker")}).`);
  page.status = "done";
}

function resultJson(model) {
  const { vocabulary, names } = options();
  return JSON.stringify({
    file: view.song.name,
    duration: view.song.duration,
    vocabulary: vocabulary === "majmin" ? "majmin" : model.vocabulary,
    names,
    model: model.description,
    decoding: { method: "family", self_transition: model.self_transition },
    segments: page.segments.map((s) => ({
      start: s.start, end: s.end, label: s.label, name: s.name, confidence: Number(s.confidence.toFixed(4)),
    })),
  }, null, 2) + "\n";
}

async function main() {
  const missing = missingFeature();
  if (missing) {
    setStatus("This browser cannot run the chord model.");
    showError(missing);
    return;
  }
  let model;
  try {
    const response = await fetch("model.json");
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    model = await response.json();
  } catch (error) {
    setStatus("The page could not load its model description.");
    showError(`model.json could not be read (${error.message}). Open the page from a web server in its folder `
      + "(for example: python -m http.server), not as a file.");
    return;
  }
  $("model-info").textContent = `${model.description}, ${model.model}; onnxruntime-web ${model.onnxruntime_web}. `
    + "The audio is analysed in this browser and sent nowhere.";
  const started = performance.now();
  const size = Math.max(1, Math.min(navigator.hardwareConcurrency || 2, MAX_WORKERS));
  const pool = new WorkerPool(size, model);
  page.workers = size;
  pool.ready.then(() => {
    page.timings.modelLoadSeconds = (performance.now() - started) / 1000;
    if (page.status === "loading") {
      page.status = "ready";
      setStatus(`Ready (model loaded in ${page.timings.modelLoadSeconds.toFixed(1)} s). Drop a song.`);
    }
  }, (error) => {
    setStatus("The chord model could not be loaded.");
    showError(`${error.message}.`);
  });

  let running = Promise.resolve();
  const start = (file) => {
    if (!file) return;
    running = running.then(() => analyse(file, model, pool)).catch((error) => {
      setStatus("No chords.");
      showError(error instanceof UserError ? error.message : `Analysis failed: ${error.message}`);
    });
  };
  $("file").addEventListener("change", (event) => start(event.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    start(event.dataTransfer.files[0]);
  });

  const player = $("player");
  player.addEventListener("play", () => requestAnimationFrame(animate));
  for (const name of ["seeked", "timeupdate", "pause", "ended"]) player.addEventListener(name, () => follow());
  $("scroller").addEventListener("click", (event) => {
    if (!view.song) return;
    const x = event.clientX - $("track").getBoundingClientRect().left;
    player.currentTime = Math.max(0, Math.min(view.song.duration, x / view.pixelsPerSecond));
  });
  $("scroller").addEventListener("wheel", () => { view.following = false; }, { passive: true });
  player.addEventListener("play", () => { view.following = true; });
  $("options").addEventListener("change", render);
  window.addEventListener("resize", () => { if (options().zoom === 0) render(); });
  $("download-lab").addEventListener("click", () => {
    download(`${stem(view.song.name)}.lab`, "text/plain", labText(page.segments));
  });
  $("download-json").addEventListener("click", () => {
    download(`${stem(view.song.name)}.chords.json`, "application/json", resultJson(model));
  });
}

main();
