"""Export: a SavedModel that takes raw audio, the .keras model, a JSON model card, and app formats.

The SavedModel's `serving_default` signature takes mono float32 samples and their sample rate,
resamples and computes the log-frequency spectrogram inside the graph (the same
`chordkeras.features` ops used in preparation), and returns per-frame chord probabilities,
argmax Harte labels and frame times. Decoding (Viterbi) stays outside, in `chordkeras.decode`;
the model card states the decoding an app should apply.

`write_formats` (and `python -m chordkeras.export EXPORT_DIR --format tflite,onnx,coreml`) adds
TensorFlow Lite, ONNX and Core ML files beside the SavedModel (`chordkeras.formats`) and records
each in the model card; `--format web` writes the browser page on the ONNX file (`chordkeras.webpage`).

    python -m chordkeras.export RUN_OR_EXPORT_DIR --format tflite,onnx,coreml,web [--quantize none|float16|int8]
        [--coreml-window-seconds S] [--onnxruntime-web DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import sys
from typing import Any, Sequence

import keras
import tensorflow as tf

from chordkeras import __version__, cli, decode, features, files, formats, vocab, webpage
from chordkeras import model as model_lib
from chordkeras.config import RunConfig, feature_config_from_dict

SAVED_MODEL = "saved_model"
KERAS_FILE = "model.keras"
MODEL_CARD = "model_card.json"
# What `python -m chordkeras.export --format` writes: the app formats, and the browser page on the ONNX file.
WEB = "web"
TARGETS = (*formats.FORMATS, WEB)


def float32_copy(model: keras.Model, config: RunConfig) -> keras.Model:
    """Rebuilds `model` under the float32 policy with the same weights, for portable inference."""
    copy = model_lib.build_model(config, precision="float32")
    copy.set_weights(model.get_weights())
    return copy


def _serving_fn(model: keras.Model, config: RunConfig):
    feature_config = config.features
    class_names = tf.constant(vocab.get_vocabulary(config.data.vocabulary).class_names)

    def serve(audio, sample_rate):
        audio = features.resample(audio, sample_rate, feature_config.sample_rate)
        spectrogram = features.log_spectrogram(audio, feature_config)
        logits = model(spectrogram[None], training=False)["chord"][0]
        probabilities = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
        frames = tf.shape(probabilities)[0]
        frame_times = tf.cast(tf.range(frames), tf.float32) / feature_config.frame_rate
        return {
            "probabilities": probabilities,
            "labels": tf.gather(class_names, tf.argmax(probabilities, axis=-1)),
            "frame_times": frame_times,
        }

    return serve


def model_card(config: RunConfig, metrics: dict[str, Any] | None, data_info: dict[str, Any] | None,
               dataset_dir: str | None) -> dict[str, Any]:
    """The JSON description stored next to every exported model."""
    vocabulary = vocab.get_vocabulary(config.data.vocabulary)
    data = None
    if data_info is not None:
        data = {"dataset": dataset_dir, "splits": data_info.get("splits"), "total_hours": data_info.get("total_hours"),
                "source": data_info.get("source")}
    return {
        "chordkeras_version": __version__,
        "vocabulary": vocabulary.name,
        "class_names": list(vocabulary.class_names),
        "features": dataclasses.asdict(config.features),
        "config": config.to_dict(),
        "metrics": metrics or {},
        "data": data,
        "signature": {
            "inputs": {"audio": "float32 [samples], mono", "sample_rate": "int32 scalar, Hz"},
            "outputs": {"probabilities": "float32 [frames, classes]", "labels": "string [frames]",
                        "frame_times": "float32 [frames], seconds"},
        },
        "decoding": decoding(config),
    }


def decoding(config: RunConfig) -> dict[str, Any]:
    """How an app turns per-frame probabilities into chords (what `chordkeras.predict` does)."""
    feature_config = config.features
    return {
        "method": "family",
        "self_transition": decode.DEFAULT_SELF_TRANSITION,
        "transitions": "stay on a class with probability self_transition, move to each other class with "
                       "(1 - self_transition) / (classes - 1); initial distribution uniform",
        "families": decode.families(vocab.get_vocabulary(config.data.vocabulary).class_names).tolist(),
        "family_decoding": "two Viterbi passes with these transitions over all classes: the first over each "
                           "frame's probabilities summed into families[class] (the class standing for the "
                           "class's family: its root and third), the second over the probabilities of the classes "
                           "of the family the first chose at each frame, the others set to 0; probabilities are "
                           "floored at 1e-12 before logs",
        "frame_rate": feature_config.frame_rate,
        "frame_times": f"frame i is centred at i * {feature_config.hop_length} / {feature_config.sample_rate} s and "
                       "covers [(i - 0.5) / frame_rate, (i + 0.5) / frame_rate), clipped to the audio",
        "labels": "class_names[class] in Harte syntax; consecutive frames of one class form one segment",
    }


def write_model_card(folder: str | os.PathLike, config: RunConfig, *, metrics: dict[str, Any] | None = None,
                     data_info: dict[str, Any] | None = None, dataset_dir: str | None = None) -> pathlib.Path:
    """Writes `model_card(...)` as model_card.json into `folder`; returns its path."""
    path = pathlib.Path(folder) / MODEL_CARD
    files.write_json_atomic(path, model_card(config, metrics, data_info, dataset_dir))
    return path


def export_model(model: keras.Model, config: RunConfig, out_dir: str | os.PathLike, *,
                 metrics: dict[str, Any] | None = None, data_info: dict[str, Any] | None = None,
                 dataset_dir: str | None = None, saved_model: bool = True) -> pathlib.Path:
    """Writes saved_model/, model.keras and model_card.json into `out_dir` (replacing an old export).

    Everything is written into a temporary folder first and renamed at the end, so an export folder
    under its final name is always complete (a kill between moving the old export aside and renaming
    the new one leaves the old one complete in `<out>.previous`, put back by the next export). With
    saved_model=False only the .keras model and the card are written.
    """
    out = pathlib.Path(out_dir)
    with files.atomic_output(out, temporary=out.with_name(out.name + ".incomplete")) as tmp:
        tmp.mkdir(parents=True)
        inference = float32_copy(model, config)
        inference.save(tmp / KERAS_FILE)
        if saved_model:
            archive = keras.export.ExportArchive()
            archive.track(inference)
            archive.add_endpoint(
                "serving_default",
                _serving_fn(inference, config),
                input_signature=[tf.TensorSpec([None], tf.float32, name="audio"),
                                 tf.TensorSpec([], tf.int32, name="sample_rate")],
            )
            archive.write_out(str(tmp / SAVED_MODEL), verbose=False)
        write_model_card(tmp, config, metrics=metrics, data_info=data_info, dataset_dir=dataset_dir)
    return out


def update_model_card(export_dir: str | os.PathLike, **fields: Any) -> dict[str, Any]:
    """Rewrites fields of an export's model card (e.g. metrics measured after export)."""
    path = pathlib.Path(export_dir) / MODEL_CARD
    card = files.read_json(path)
    card.update(fields)
    files.write_json_atomic(path, card)
    return card


def load_saved_model(export_dir: str | os.PathLike):
    """Loads the exported SavedModel; returns its `serving_default` signature function."""
    path = pathlib.Path(export_dir)
    if (path / SAVED_MODEL).is_dir():
        path = path / SAVED_MODEL
    return tf.saved_model.load(str(path)).signatures["serving_default"]


# ---------------------------------------------------------------------------------------------
# App formats


def resolve_export_dir(path: str | os.PathLike) -> pathlib.Path:
    """An export folder, or a run folder holding one in export/.

    Raises:
        ValueError: neither holds model.keras and model_card.json.
    """
    path = pathlib.Path(path)
    for folder in (path, path / "export"):
        if (folder / KERAS_FILE).is_file() and (folder / MODEL_CARD).is_file():
            return folder
    raise ValueError(f"{path}: not an export folder ({KERAS_FILE} and {MODEL_CARD}) nor a run folder holding one "
                     "in export/")


def write_formats(export_dir: str | os.PathLike, fmts: Sequence[str], quantize: str | None = None,
                  coreml_window_seconds: float = formats.DEFAULT_COREML_WINDOW_SECONDS,
                  log=None, onnxruntime_web: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """Converts an export's model.keras into each format, beside the SavedModel; updates the model card.

    Each file is written under a temporary name and renamed when complete; the card is rewritten after
    each one, so an interrupted run leaves every finished format recorded and no half-written file.
    `web` writes the browser page into web/ on the ONNX file of `quantize` (default
    `webpage.DEFAULT_QUANTIZATION`), converting that file first when the folder lacks it, and copies
    onnxruntime-web from `onnxruntime_web` or where `webpage.find_onnxruntime_web` finds it.

    Args:
        quantize: "none", "float16" or "int8"; None: "none" for the files, float16 for the page.

    Returns:
        {file or folder name: its model card entry}.

    Raises:
        ValueError: not an export folder; formats.FormatError: unknown format or missing converter;
        webpage.PageError: onnxruntime-web not found.
    """
    folder = resolve_export_dir(export_dir)
    for fmt in fmts:  # an unknown format or quantisation, or a missing converter: an error before any work
        if fmt == WEB:
            formats.file_name("onnx", _quantization(fmt, quantize))
            formats.require("onnx")
            webpage.find_onnxruntime_web(onnxruntime_web)
        else:
            formats.file_name(fmt, _quantization(fmt, quantize))
            formats.require(fmt)
    card = files.read_json(folder / MODEL_CARD)
    feature_config = feature_config_from_dict(card["features"])
    model = keras.saving.load_model(str(folder / KERAS_FILE), compile=False)
    frames = max(1, int(round(coreml_window_seconds * feature_config.frame_rate)))
    written = {}

    def record(name, entry):
        card = files.read_json(folder / MODEL_CARD)
        card.setdefault("formats", {})[name] = entry
        card["decoding"] = card.get("decoding") or decoding_from_card(card)
        files.write_json_atomic(folder / MODEL_CARD, card)
        written[name] = entry

    for fmt in fmts:
        if fmt == WEB:
            continue
        name = formats.file_name(fmt, _quantization(fmt, quantize))
        if log:
            log(f"writing {folder / name}")
        record(name, formats.convert(fmt, model, feature_config, folder / name, _quantization(fmt, quantize),
                                     coreml_window_frames=frames))
    if WEB in fmts:
        web_quantize = _quantization(WEB, quantize)
        name = formats.file_name("onnx", web_quantize)
        if name not in (files.read_json(folder / MODEL_CARD).get("formats") or {}) or not (folder / name).is_file():
            if log:
                log(f"writing {folder / name} (for the web page)")
            record(name, formats.convert("onnx", model, feature_config, folder / name, web_quantize))
        if log:
            log(f"writing {folder / webpage.FOLDER}/")
        page = webpage.write_page(folder / webpage.FOLDER, files.read_json(folder / MODEL_CARD), folder / name,
                                  onnxruntime_web)
        record(WEB, {
            "file": webpage.FOLDER,
            "format": WEB,
            "quantization": web_quantize,
            "bytes": page.bytes,
            "model": page.model_file,
            "onnxruntime_web": page.onnxruntime_web_version,
            "input": {"description": "any audio file the browser decodes; serve the folder (python -m http.server) "
                                     "and open index.html"},
            "why": "a static page: the browser decodes and resamples the audio, Web Workers run the ONNX file with "
                   "onnxruntime-web (WebAssembly), chords.js decodes as chordkeras.decode does",
        })
    return written


def _quantization(fmt: str, quantize: str | None) -> str:
    if quantize is not None:
        return quantize
    return webpage.DEFAULT_QUANTIZATION if fmt == WEB else "none"


def decoding_from_card(card: dict[str, Any]) -> dict[str, Any]:
    """The decoding section for a card written before cards carried one."""
    config = RunConfig()
    return decoding(dataclasses.replace(config, features=feature_config_from_dict(card["features"])))


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m chordkeras.export",
        description="Write TensorFlow Lite, ONNX and Core ML files of a trained model beside its SavedModel, "
                    "or a web page that runs the ONNX file in the browser (web/).")
    parser.add_argument("path", help="export folder (model.keras, model_card.json) or a run folder with export/")
    parser.add_argument("--format", default="tflite,onnx,coreml",
                        help=f"comma-separated: {', '.join(TARGETS)} (default: tflite,onnx,coreml)")
    parser.add_argument("--quantize", choices=formats.QUANTIZATIONS, default=None,
                        help="weights as float32 (none), float16 or int8 (default none; the web page: "
                        f"{webpage.DEFAULT_QUANTIZATION})")
    parser.add_argument("--coreml-window-seconds", type=float, default=formats.DEFAULT_COREML_WINDOW_SECONDS,
                        help="Core ML's fixed input window (default %(default)s s)")
    parser.add_argument("--onnxruntime-web", metavar="DIR",
                        help="web: the onnxruntime-web package folder to copy from (default: "
                        f"${webpage.ONNXRUNTIME_WEB_VARIABLE}, else node_modules/onnxruntime-web here or above, "
                        f"else in the chordkeras checkout; {webpage.install_command()})")
    cli.add_debug_flag(parser)
    args = parser.parse_args(argv)
    args.formats = [f.strip() for f in args.format.split(",") if f.strip()]
    unknown = [f for f in args.formats if f not in TARGETS]
    if unknown or not args.formats:
        parser.error(f"--format: unknown {', '.join(unknown) or 'empty list'}; choose from {', '.join(TARGETS)}")
    if args.coreml_window_seconds <= 0:
        parser.error("--coreml-window-seconds must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    return cli.run("chordkeras.export", cli.debug_requested(args), lambda: _main(args))


def _main(args: argparse.Namespace) -> int:
    def log(message):
        print(f"chordkeras.export: {message}", file=sys.stderr, flush=True)

    written = write_formats(args.path, args.formats, args.quantize, args.coreml_window_seconds, log=log,
                            onnxruntime_web=args.onnxruntime_web)
    folder = resolve_export_dir(args.path)
    for name, entry in written.items():
        print(f"chordkeras.export: wrote {folder / name} ({entry['bytes'] / 1e6:.2f} MB; input: "
              f"{entry['input']['description']})")
    if WEB in written:
        print(f"chordkeras.export: open the page with: python -m http.server --bind 127.0.0.1 "
              f"--directory {folder / webpage.FOLDER} 8000, then http://127.0.0.1:8000/")
    if "coreml" in args.formats:
        ok, why = formats.coreml_can_predict()
        if not ok:
            log(f"the Core ML package was converted and its specification checked, not run: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
