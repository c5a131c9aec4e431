"""The browser page: a static folder that finds a song's chords on the listener's own machine.

`write_page` (and `python -m chordkeras.export EXPORT_DIR --format web`) writes `web/` beside the SavedModel:
the page's own files (`chordkeras/web/`: index.html, app.js, worker.js, chords.js, style.css), the ONNX model,
`model.json` (what the page needs of the model card: sample rate, hop, classes, analysis windows, decoding)
and onnxruntime-web's WebAssembly build in `ort/`, copied from the npm package. The page fetches nothing but
these files, so it works offline from any static host (`python -m http.server` in the folder).

onnxruntime-web is not a Python package: the export copies it from `node_modules/onnxruntime-web`, which
`npm install --no-save onnxruntime-web@ONNXRUNTIME_WEB_VERSION` puts in the folder it runs in. It is found at
`onnxruntime_web=` (`--onnxruntime-web`), else `$CHORDKERAS_ONNXRUNTIME_WEB`, else in `node_modules/` of the
current folder or any folder above it, else of the chordkeras checkout.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
from typing import Any

from chordkeras import __version__, decode, files, vocab
from chordkeras.config import feature_config_from_dict

# The onnxruntime-web release the page is written and tested against.
ONNXRUNTIME_WEB_VERSION = "1.31.1"
ONNXRUNTIME_WEB_VARIABLE = "CHORDKERAS_ONNXRUNTIME_WEB"
# onnxruntime-web's WebAssembly-only build as one ES module, and the WebAssembly binary it loads (the
# smallest of the package's binaries: no WebGPU, JSPI or asyncify).
ONNXRUNTIME_WEB_FILES = ("ort.wasm.bundle.min.mjs", "ort-wasm-simd-threaded.wasm")
PAGE_FILES = ("index.html", "app.js", "worker.js", "chords.js", "style.css")
PAGE_SOURCE = pathlib.Path(__file__).with_name("web")
# An editable install's checkout, where `npm install` in the chordkeras folder puts node_modules/.
CHECKOUT = pathlib.Path(__file__).resolve().parents[1]
FOLDER = "web"
MODEL_JSON = "model.json"
ORT_FOLDER = "ort"
# The ONNX file the page ships unless told otherwise: on the default model float16 agreed with the SavedModel
# on every decoded frame and is the smallest file (README, Measured figures: benchmarks/exports.py).
DEFAULT_QUANTIZATION = "float16"
# The windows the page analyses, as `predict --backend onnx` does (inference.DEFAULT_WINDOW_SECONDS["onnx"],
# DEFAULT_OVERLAP_SECONDS; tests/test_web.py checks that they agree).
WINDOW_SECONDS = 60.0
OVERLAP_SECONDS = 5.0


class PageError(ValueError):
    """The page cannot be written here (onnxruntime-web missing or incomplete), with what to do."""


def install_command() -> str:
    return f"npm install --no-save onnxruntime-web@{ONNXRUNTIME_WEB_VERSION}"


def find_onnxruntime_web(explicit: str | os.PathLike | None = None) -> pathlib.Path:
    """The onnxruntime-web package folder (holding package.json and dist/).

    Raises:
        PageError: not found, or a folder without the files the page needs; the message gives the install command.
    """
    if explicit is None and os.environ.get(ONNXRUNTIME_WEB_VARIABLE):
        explicit = os.environ[ONNXRUNTIME_WEB_VARIABLE]
    if explicit is not None:
        folder = pathlib.Path(explicit)
        _check_package(folder)
        return folder
    here = pathlib.Path.cwd().resolve()
    for base in [here, *here.parents, CHECKOUT]:
        folder = base / "node_modules" / "onnxruntime-web"
        if folder.is_dir():
            _check_package(folder)
            return folder
    raise PageError(f"the web page needs onnxruntime-web's files and no node_modules/onnxruntime-web was found here "
                    f"or above; install it with: {install_command()} (in the chordkeras folder), or give its folder "
                    f"with --onnxruntime-web DIR or {ONNXRUNTIME_WEB_VARIABLE}")


def _check_package(folder: pathlib.Path) -> None:
    missing = [name for name in ONNXRUNTIME_WEB_FILES if not (folder / "dist" / name).is_file()]
    if not (folder / "package.json").is_file() or missing:
        what = ", ".join(f"dist/{name}" for name in missing) or "package.json"
        raise PageError(f"{folder}: not an onnxruntime-web package folder (no {what}); install it with: "
                        f"{install_command()}")


def package_version(folder: pathlib.Path) -> str:
    return str(files.read_json(folder / "package.json").get("version", "?"))


def page_model(card: dict[str, Any], model_file: str, onnxruntime_web_version: str) -> dict[str, Any]:
    """model.json: what the page needs of the model card."""
    features = feature_config_from_dict(card["features"])
    decoding = card.get("decoding") or {}
    config = card.get("config") or {}
    architecture = (config.get("model") or {}).get("architecture", "model")
    vocabulary = card.get("vocabulary", "?")
    majmin = vocab.get_vocabulary("majmin")
    return {
        "chordkeras_version": card.get("chordkeras_version", __version__),
        "description": f"chordkeras {architecture} ({vocabulary} vocabulary)",
        "model": model_file,
        "quantization": ((card.get("formats") or {}).get(model_file) or {}).get("quantization"),
        "input": "audio",
        "output": "probabilities",
        "sample_rate": features.sample_rate,
        "hop_length": features.hop_length,
        "frame_rate": features.frame_rate,
        # As chordkeras.inference.Transcriber turns seconds into frames.
        "window_frames": max(2, int(round(WINDOW_SECONDS * features.frame_rate))),
        "overlap_frames": int(round(OVERLAP_SECONDS * features.frame_rate)),
        "vocabulary": vocabulary,
        "class_names": list(card["class_names"]),
        "self_transition": decoding.get("self_transition", decode.DEFAULT_SELF_TRANSITION),
        # The page decodes as predict does by default (decode.family_viterbi), whatever an older card says.
        "families": decode.families(card["class_names"]).tolist(),
        # The display's "major and minor only": each quality the majmin vocabulary reduces, and to what.
        "majmin": dict(majmin.reductions),
        "onnxruntime_web": onnxruntime_web_version,
    }


@dataclasses.dataclass(frozen=True)
class Page:
    folder: pathlib.Path
    model_file: str
    onnxruntime_web_version: str
    bytes: int


def write_page(folder: str | os.PathLike, card: dict[str, Any], onnx_path: str | os.PathLike,
               onnxruntime_web: str | os.PathLike | None = None) -> Page:
    """Writes the page into `folder` (replacing an old one atomically): page files, model, model.json, ort/.

    Raises:
        PageError: onnxruntime-web not found or incomplete.
    """
    package = find_onnxruntime_web(onnxruntime_web)
    version = package_version(package)
    folder, onnx_path = pathlib.Path(folder), pathlib.Path(onnx_path)
    with files.atomic_output(folder, temporary=folder.with_name(f".{folder.name}.incomplete")) as tmp:
        tmp.mkdir(parents=True)
        for name in PAGE_FILES:
            shutil.copyfile(PAGE_SOURCE / name, tmp / name)
        shutil.copyfile(onnx_path, tmp / onnx_path.name)
        (tmp / ORT_FOLDER).mkdir()
        for name in ONNXRUNTIME_WEB_FILES:
            shutil.copyfile(package / "dist" / name, tmp / ORT_FOLDER / name)
        (tmp / MODEL_JSON).write_text(json.dumps(page_model(card, onnx_path.name, version), indent=2) + "\n",
                                      encoding="utf-8")
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return Page(folder, onnx_path.name, version, size)
