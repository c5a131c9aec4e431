"""Export: a SavedModel that takes raw audio, the .keras model, and a JSON model card.

The SavedModel's `serving_default` signature takes mono float32 samples and their sample rate,
resamples and computes the log-frequency spectrogram inside the graph (the same
`chordkeras.features` ops used in preparation), and returns per-frame chord probabilities,
argmax Harte labels and frame times. Decoding (Viterbi) stays outside, in `chordkeras.decode`.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any

import keras
import tensorflow as tf

from chordkeras import __version__, features, files, vocab
from chordkeras import model as model_lib
from chordkeras.config import RunConfig

SAVED_MODEL = "saved_model"
KERAS_FILE = "model.keras"
MODEL_CARD = "model_card.json"


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
