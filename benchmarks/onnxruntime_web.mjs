// Runs model.onnx with onnxruntime-web (its WebAssembly backend, the one browsers use) under Node.js.
// Used by `python benchmarks/exports.py --web`, which writes the audio and compares the probabilities
// with onnxruntime's; needs `npm install onnxruntime-web` in the repository root (not a dependency).
//
//     node benchmarks/onnxruntime_web.mjs MODEL.onnx AUDIO.f32 PROBABILITIES.f32
//
// AUDIO.f32: little-endian float32 mono samples at the model's rate. Prints the output's dims.
import * as ort from "onnxruntime-web";
import fs from "fs";

const [model, audioPath, outPath] = process.argv.slice(2);
const file = fs.readFileSync(audioPath);
const audio = new Float32Array(file.buffer.slice(file.byteOffset, file.byteOffset + file.byteLength));
const session = await ort.InferenceSession.create(fs.readFileSync(model));
const { probabilities } = await session.run({ audio: new ort.Tensor("float32", audio, [audio.length]) });
fs.writeFileSync(outPath, Buffer.from(probabilities.data.buffer));
console.log(JSON.stringify(probabilities.dims));
