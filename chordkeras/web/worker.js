// One analysis worker: loads the ONNX model with onnxruntime-web (WebAssembly, one thread) and returns the
// chord probabilities of each window of audio it is sent. The page runs one worker per core, each on its
// own windows, since a page served without cross-origin isolation cannot give onnxruntime-web threads.
//
// Messages in:  {type: "load", model: URL, input, output}
//               {type: "run", id, audio: Float32Array (mono, the model's sample rate)}
// Messages out: {type: "ready", seconds} | {type: "result", id, probabilities: Float32Array, seconds}
//               | {type: "error", id, message}
import * as ort from "./ort/ort.wasm.bundle.min.mjs";

let session = null;
let names = null;

async function load({ model, input, output }) {
  const started = performance.now();
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  // The WebAssembly binary, copied at export time, lies in ort/ (its loader is inside the bundle): nothing is
  // fetched from anywhere else.
  ort.env.wasm.wasmPaths = { wasm: new URL("./ort/ort-wasm-simd-threaded.wasm", import.meta.url).href };
  session = await ort.InferenceSession.create(model, { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
  names = { input, output };
  return (performance.now() - started) / 1000;
}

async function run({ audio }) {
  const started = performance.now();
  const results = await session.run({ [names.input]: new ort.Tensor("float32", audio, [audio.length]) });
  const probabilities = results[names.output];
  const data = probabilities.data instanceof Float32Array ? probabilities.data : Float32Array.from(probabilities.data);
  return { probabilities: data, seconds: (performance.now() - started) / 1000 };
}

self.onmessage = async ({ data }) => {
  try {
    if (data.type === "load") {
      self.postMessage({ type: "ready", seconds: await load(data) });
    } else if (data.type === "run") {
      const { probabilities, seconds } = await run(data);
      self.postMessage({ type: "result", id: data.id, probabilities, seconds }, [probabilities.buffer]);
    }
  } catch (error) {
    self.postMessage({ type: "error", id: data.id, message: String((error && error.message) || error) });
  }
};
