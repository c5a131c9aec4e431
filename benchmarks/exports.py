"""App formats: file size, conversion time, time per 4-minute song and agreement with the SavedModel.

For the SavedModel (the reference) and each format and quantisation asked for, on this machine:
  MB          size of the file (of the folder's files for the SavedModel and Core ML),
  convert s   seconds to write it (what `python -m chordkeras.export` does),
  s per song  seconds to transcribe the first song once loaded and warmed up (minimum of --repeats
              runs): reading windows, the model, Viterbi decoding (`chordkeras.inference`, 60 s windows
              with 5 s overlap; Core ML's fixed window),
  max |dp|    largest per-frame chord probability difference from the SavedModel over all songs,
              both run on the same windows,
  agree       share of frames whose Viterbi-decoded label equals the SavedModel's.
The songs are rendered by the built-in generator (General MIDI SoundFont, recording chain), seed 31,
--minutes each, at the model's sample rate. Core ML runs only on macOS: elsewhere its rows give the
size and conversion time and say "not run here". The formats are written into a copy of the export
folder. With --web, each ONNX file also runs under onnxruntime-web's WebAssembly backend in Node.js
(benchmarks/onnxruntime_web.mjs; needs node and `npm install onnxruntime-web` in the repository root)
on the first song in one call, compared with onnxruntime's output for the same call. Run from the
repository root:

    python benchmarks/exports.py EXPORT_DIR [--formats tflite,onnx,coreml] [--quantize none,float16,int8]
        [--songs 3] [--minutes 4] [--repeats 3] [--web]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export_dir", help="export folder (model.keras, model_card.json, saved_model/)")
    parser.add_argument("--formats", default="tflite,onnx,coreml")
    parser.add_argument("--quantize", default="none,float16,int8")
    parser.add_argument("--songs", type=int, default=3, help="rendered songs for the agreement (default 3)")
    parser.add_argument("--minutes", type=float, default=4.0, help="length of each song (default 4)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs on the first song (default 3)")
    parser.add_argument("--coreml-window-seconds", type=float, default=None)
    parser.add_argument("--web", action="store_true", help="also run the ONNX files with onnxruntime-web in Node.js")
    return parser.parse_args(argv)


def folder_megabytes(path: pathlib.Path) -> float:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6
    return path.stat().st_size / 1e6


def render_songs(count: int, minutes: float) -> list[np.ndarray]:
    from chordkeras.synth import generate, render

    renderer = render.load_renderer()
    return [generate.make_song(31, i, renderer, minutes).audio.astype(np.float32) for i in range(count)]


def measure(model, songs, sample_rate: int, repeats: int, reference=None) -> dict:
    """Time per song (first song, min of repeats) and, against reference probabilities, max |dp| and agreement."""
    from chordkeras import audio, decode, inference

    model.warm_up()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        inference.transcribe_source(model, audio.ArraySource(songs[0], sample_rate))
        times.append(time.perf_counter() - started)
    probabilities = [model.probabilities(song, sample_rate)[0] for song in songs]
    row = {"seconds": min(times), "probabilities": probabilities}
    if reference is not None:
        # NaN, if a format gives any, shows as NaN (Python's max() would skip it).
        row["max_diff"] = float(np.max(np.concatenate([np.abs(p - r).ravel() for p, r in zip(probabilities, reference)])))
        same = [decode.viterbi(p, decode.DEFAULT_SELF_TRANSITION) == decode.viterbi(r, decode.DEFAULT_SELF_TRANSITION)
                for p, r in zip(probabilities, reference)]
        row["agree"] = float(np.mean(np.concatenate(same)))
    return row


def web_difference(path: pathlib.Path, audio: np.ndarray, tmp: pathlib.Path) -> tuple[float, float, str]:
    """(max |dp|, argmax agreement, onnxruntime-web version) of onnxruntime-web against onnxruntime."""
    import json
    import subprocess

    import onnxruntime as ort

    script = pathlib.Path(__file__).with_name("onnxruntime_web.mjs")
    audio_file, out_file = tmp / "audio.f32", tmp / "probabilities.f32"
    audio.astype("<f4").tofile(audio_file)
    subprocess.run(["node", str(script), str(path), str(audio_file), str(out_file)], check=True,
                   capture_output=True, text=True)
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"audio": audio})[0]
    web = np.fromfile(out_file, dtype="<f4").reshape(expected.shape)
    package = pathlib.Path(__file__).resolve().parents[1] / "node_modules" / "onnxruntime-web" / "package.json"
    version = json.loads(package.read_text())["version"] if package.exists() else "?"
    return float(np.max(np.abs(web - expected))), float(np.mean(web.argmax(-1) == expected.argmax(-1))), version


def main(argv=None) -> int:
    args = _parse(argv)
    from chordkeras import export, files, formats, inference

    source = export.resolve_export_dir(args.export_dir)
    fmts = [f for f in args.formats.split(",") if f]
    quantizations = [q for q in args.quantize.split(",") if q]
    songs = render_songs(args.songs, args.minutes)
    card = files.read_json(source / export.MODEL_CARD)
    rate = card["features"]["sample_rate"]
    print(f"{len(songs)} rendered songs of {len(songs[0]) / rate / 60:.2f} min; {os.cpu_count()} CPUs", flush=True)

    rows, web = [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp) / "export"
        shutil.copytree(source, folder)
        window = {}
        saved = inference.load_chord_model(folder, "saved_model")
        base = measure(saved, songs, rate, args.repeats)
        rows.append(("SavedModel", "none", folder_megabytes(folder / export.SAVED_MODEL), None, base))
        for fmt in fmts:
            for quantize in quantizations:
                started = time.perf_counter()
                kwargs = {}
                if args.coreml_window_seconds:
                    kwargs["coreml_window_seconds"] = args.coreml_window_seconds
                export.write_formats(folder, [fmt], quantize, **kwargs)
                convert = time.perf_counter() - started
                path = folder / formats.file_name(fmt, quantize)
                if fmt == "coreml" and not formats.coreml_can_predict()[0]:
                    rows.append((fmt, quantize, folder_megabytes(path), convert, None))
                    continue
                model = inference.load_chord_model(folder, fmt, quantize=quantize)
                reference = base["probabilities"]
                if model.window_frames != saved.window_frames:  # Core ML: compare on the same windows
                    if model.window_frames not in window:
                        same = inference.load_chord_model(folder, "saved_model",
                                                          window_seconds=model.window_frames / model.features.frame_rate)
                        window[model.window_frames] = [same.probabilities(s, rate)[0] for s in songs]
                    reference = window[model.window_frames]
                rows.append((fmt, quantize, folder_megabytes(path), convert,
                             measure(model, songs, rate, args.repeats, reference)))
                print(f"  {fmt} {quantize} done", flush=True)
                if fmt == "onnx" and args.web:
                    diff, agree, version = web_difference(path, songs[0], pathlib.Path(tmp))
                    web.append(f"onnxruntime-web {version} (WebAssembly, Node.js) vs onnxruntime, {path.name}, "
                               f"{len(songs[0]) / rate:.0f} s in one call: max |dp| {diff:.1e}, "
                               f"argmax agrees on {100 * agree:.2f}% of frames")

    print()
    print("| format | weights | MB | convert s | s per song | max abs dp | decoded labels agree |")
    print("|---|---|---|---|---|---|---|")
    for fmt, quantize, megabytes, convert, row in rows:
        convert_text = "-" if convert is None else f"{convert:.1f}"
        if row is None:
            print(f"| {fmt} | {quantize} | {megabytes:.2f} | {convert_text} | not run here | | |")
            continue
        diff = "reference" if "max_diff" not in row else f"{row['max_diff']:.1e}"
        agree = "" if "agree" not in row else f"{100 * row['agree']:.2f}%"
        print(f"| {fmt} | {quantize} | {megabytes:.2f} | {convert_text} | {row['seconds']:.2f} | {diff} | {agree} |")
    for line in web:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
