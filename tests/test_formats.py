"""App formats (TensorFlow Lite, ONNX, Core ML): conversion, parity with the SavedModel, command lines."""

import json
import pathlib
import shutil

import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf

from chordkeras import annotations, decode, export, features, formats, inference, predict
from chordkeras import model as model_lib
from chordkeras.config import resolve
from chordkeras.synth import generate, render

# Parity on a rendered song, per quantisation: (largest |probability difference| allowed, share of frames
# whose Viterbi-decoded label must agree). float32 formats differ from the SavedModel by rounding only;
# the quantised bounds are what these files reach on this song with margin (the README gives the trained
# default model's figures, benchmarks/exports.py). int8 weights move a random network's decisions the
# most: over 12 draws of the fixture's weights TFLite's int8 file agreed on 95.1-100% of the frames
# (largest difference 0.007-0.020); a broken conversion agrees on a few percent.
TOLERANCE = {"none": (1e-4, 0.995), "float16": (5e-3, 0.995), "int8": (5e-2, 0.9)}


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    """The tiny default architecture (convolutions, level normalisation, tuning correction, a bidirectional
    GRU), exported as fit exports it, with random weights; the chord head's scaled by 10, so that its
    outputs take decisions (median top probability about 0.2, margin 0.07 over the next class). With the
    near-uniform outputs of plain random weights (0.006 for every class), differences of 1e-4 from int8
    weights flipped a whole Viterbi path on some draws, which says nothing about the conversion."""
    config = resolve("tiny")
    network = model_lib.build_model(config)
    kernel = network.get_layer("chord").kernel
    kernel.assign(kernel * 10.0)
    return export.export_model(network, config, tmp_path_factory.mktemp("run") / "export")


@pytest.fixture(scope="module")
def song():
    """A rendered song (SoundFont, recording chain) of more than 60 s at the model's rate, after 2 s of
    digital silence (where a float16 level normalisation divided 0 by 0) and peaking at full scale."""
    song = generate.make_song(5, 0, render.load_renderer(), 1.2)
    assert song.sample_rate == 22050 and len(song.audio) > 60 * song.sample_rate
    audio = np.concatenate([np.zeros(2 * 22050), song.audio / np.max(np.abs(song.audio))])
    return audio.astype(np.float32)


@pytest.fixture(scope="module")
def reference(export_dir, song):
    """The SavedModel's probabilities over the whole song in one window."""
    model = inference.load_chord_model(export_dir, "saved_model", window_seconds=600.0)
    return model.probabilities(song, 22050)[0]


def _agreement(probs, expected):
    paths = [decode.viterbi(p, decode.DEFAULT_SELF_TRANSITION) for p in (probs, expected)]
    return float(np.mean(paths[0] == paths[1]))


@pytest.mark.slow
@pytest.mark.parametrize("quantize", formats.QUANTIZATIONS)
@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_format_matches_the_saved_model_on_a_rendered_song(export_dir, song, reference, fmt, quantize):
    written = export.write_formats(export_dir, [fmt], quantize)
    name = formats.file_name(fmt, quantize)
    assert list(written) == [name] and (export_dir / name).is_file()
    card = json.loads((export_dir / export.MODEL_CARD).read_text())
    entry = card["formats"][name]
    assert {k: entry["input"][k] for k in ("name", "dtype", "shape", "description")} == {
        "name": "audio", "dtype": "float32", "shape": ["samples"], "description": "mono audio at 22050 Hz, full scale +-1"}
    assert entry["output"]["name"] == "probabilities" and entry["output"]["shape"] == ["frames", "classes"]
    assert entry["bytes"] == (export_dir / name).stat().st_size
    if fmt == "tflite":  # the names the card gives are the file's
        interpreter = tf.lite.Interpreter(str(export_dir / name))
        assert interpreter.get_signature_list() == {"serving_default": {"inputs": ["audio"],
                                                                         "outputs": ["probabilities"]}}
        assert entry["input"]["tensor"] == interpreter.get_input_details()[0]["name"]
        assert entry["output"]["tensor"] == interpreter.get_output_details()[0]["name"]
    else:
        import onnxruntime as ort

        session = ort.InferenceSession(str(export_dir / name), providers=["CPUExecutionProvider"])
        assert [(i.name, i.shape) for i in session.get_inputs()] == [("audio", ["samples"])]
        assert [(o.name, o.shape) for o in session.get_outputs()] == [("probabilities", ["frames", 170])]

    model = inference.load_chord_model(export_dir, fmt, window_seconds=600.0, quantize=quantize)
    probs, times = model.probabilities(song, 22050)
    assert probs.shape == reference.shape == (1 + len(song) // 2048, 170)
    np.testing.assert_allclose(times, np.arange(len(probs)) * 2048 / 22050)
    atol, agreement = TOLERANCE[quantize]
    assert np.all(np.isfinite(probs))
    assert np.max(np.abs(probs - reference)) < atol
    assert _agreement(probs, reference) >= agreement


def test_tflite_with_default_windows_matches_the_saved_model(export_dir, song):
    """The predict path: 60 s windows with 5 s overlap on both backends, audio at 44.1 kHz resampled.

    Without the song's leading silence: resampled, it is no longer digital silence but the resampler's
    ringing around 1e-7, which each backend's resampling (per window inside the SavedModel, with a second
    of context here) leaves slightly differently on either side of the silence threshold."""
    export.write_formats(export_dir, ["tflite"])
    audio = features.resample(song[2 * 22050 :], 22050, 44100).numpy()
    expected = inference.load_chord_model(export_dir, "saved_model").probabilities(audio, 44100)[0]
    probs = inference.load_chord_model(export_dir, "tflite").probabilities(audio, 44100)[0]
    assert probs.shape == expected.shape
    # The SavedModel resamples each window without context, the format backends with a second of it.
    assert np.max(np.abs(probs - expected)) < 1e-3
    assert _agreement(probs, expected) >= 0.995


def test_the_readme_python_calls(export_dir, song):
    """The README's two Python snippets, on 10 s of the song, give what predict's runners give."""
    import onnxruntime as ort

    for fmt in ("tflite", "onnx"):
        if not (export_dir / formats.file_name(fmt)).exists():
            export.write_formats(export_dir, [fmt])
    audio = song[: 22050 * 10]
    interpreter = tf.lite.Interpreter(str(export_dir / "model.tflite"))
    run = interpreter.get_signature_runner("serving_default")
    from_tflite = run(audio=audio)["probabilities"]
    session = ort.InferenceSession(str(export_dir / "model.onnx"))
    from_onnx = session.run(["probabilities"], {"audio": audio})[0]
    expected = formats.load_runner(export_dir / "model.tflite", "tflite").run(audio)
    assert from_tflite.shape == from_onnx.shape == expected.shape == (1 + len(audio) // 2048, 170)
    np.testing.assert_allclose(from_tflite, expected, atol=1e-6)
    np.testing.assert_allclose(from_onnx, expected, atol=1e-5)


def test_onnx_replacements_compute_log1p_expm1_and_the_fft_magnitude(tmp_path):
    """The three ops written by hand for tf2onnx, against exact values: log1p(e - 1) = 1, expm1(log 2) = 1,
    and |RFFT| of cos(2 pi 3 n / 16) over 16 samples is 8 at bin 3 and 0 elsewhere."""
    import onnxruntime as ort
    import tf2onnx

    @tf.function(input_signature=[tf.TensorSpec([2], tf.float32), tf.TensorSpec([None, 16], tf.float32)])
    def ops(x, frames):
        return tf.math.log1p(x[:1]), tf.math.expm1(x[1:]), tf.abs(tf.signal.rfft(frames))

    proto, _ = tf2onnx.convert.from_function(ops, input_signature=ops.input_signature, opset=formats.ONNX_OPSET,
                                             custom_op_handlers=formats._onnx_handlers())
    assert {"DFT"} <= {node.op_type for node in proto.graph.node}
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    frames = np.cos(2 * np.pi * 3 * np.arange(16) / 16)[None].astype(np.float32)
    log1p, expm1, magnitude = session.run(None, {"x": np.array([np.e - 1, np.log(2)], np.float32),
                                                 "frames": frames})
    np.testing.assert_allclose([log1p[0], expm1[0]], [1.0, 1.0], rtol=1e-6)
    expected = np.zeros(9)
    expected[3] = 8.0
    np.testing.assert_allclose(magnitude[0], expected, atol=1e-5)


@pytest.mark.slow
def test_coreml_package_is_converted_with_the_specified_window(export_dir):
    pytest.importorskip("coremltools")
    written = export.write_formats(export_dir, ["coreml"], coreml_window_seconds=10.0)
    package = export_dir / "model.mlpackage"
    assert list(written) == ["model.mlpackage"] and package.is_dir()
    frames = int(round(10.0 * 22050 / 2048))  # 108 frames of 2048 samples
    assert formats.coreml_io(package) == {"audio": ("input", [frames * 2048]),
                                          "probabilities": ("output", [frames + 1, 170])}
    entry = json.loads((export_dir / export.MODEL_CARD).read_text())["formats"]["model.mlpackage"]
    assert entry["input"]["shape"] == [frames * 2048] and entry["window_seconds"] == frames * 2048 / 22050


@pytest.mark.slow
@pytest.mark.parametrize("quantize", ["float16", "int8"])
def test_coreml_quantised_packages_convert(export_dir, quantize):
    """float16 (the network computed in float16) and int8 weights: converted, same inputs and outputs, smaller."""
    export.write_formats(export_dir, ["coreml"], quantize, coreml_window_seconds=5.0)
    frames = int(round(5.0 * 22050 / 2048))
    package = export_dir / formats.file_name("coreml", quantize)
    assert formats.coreml_io(package) == {"audio": ("input", [frames * 2048]),
                                          "probabilities": ("output", [frames + 1, 170])}


def test_coreml_atan2_translation_by_value():
    """Core ML has no atan2 (the network's tuning estimate needs one): the registered translation, evaluated
    by coremltools' own constant folding, equals numpy's arctan2 all round the circle and at the origin."""
    pytest.importorskip("coremltools")
    import types

    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.tensorflow import tf_op_registry
    from coremltools.converters.mil.mil import Function

    class Context(dict):
        def add(self, name, var):
            self[name] = var

    formats._register_coreml_ops()
    angles = np.linspace(-0.99 * np.pi, 0.99 * np.pi, 45)
    radii = np.geomspace(1e-3, 1e4, 45)
    y = np.append(radii * np.sin(angles), 0.0).astype(np.float32)
    x = np.append(radii * np.cos(angles), 0.0).astype(np.float32)
    with Function({}):
        context = Context(y=mb.const(val=y), x=mb.const(val=x))
        tf_op_registry._TF_OPS_REGISTRY["Atan2"](context, types.SimpleNamespace(inputs=["y", "x"], name="angle"))
        angle = context["angle"].val
    np.testing.assert_allclose(angle, np.arctan2(y, x), atol=2e-5)


@pytest.mark.slow
def test_coreml_matches_the_saved_model_where_core_ml_runs(export_dir, song):
    ok, why = formats.coreml_can_predict()
    if not ok:
        pytest.skip(f"Core ML predictions not checked: {why}")
    if not (export_dir / "model.mlpackage").exists():
        export.write_formats(export_dir, ["coreml"], coreml_window_seconds=10.0)
    model = inference.load_chord_model(export_dir, "coreml", window_seconds=10.0)
    saved = inference.load_chord_model(export_dir, "saved_model", window_seconds=10.0)
    probs, expected = model.probabilities(song, 22050)[0], saved.probabilities(song, 22050)[0]
    assert np.max(np.abs(probs - expected)) < TOLERANCE["none"][0]
    assert _agreement(probs, expected) >= 0.995


def test_unrolled_copy_gives_the_same_numbers(export_dir, song):
    """Core ML's copy of the network (recurrent layers unrolled over a fixed window) changes no number."""
    import keras

    network = keras.saving.load_model(str(export_dir / export.KERAS_FILE), compile=False)
    spectrogram = features.log_spectrogram(song[: 22050 * 5], resolve("tiny").features)[None]
    unrolled = formats.unrolled_copy(network)
    assert any(getattr(layer, "unroll", False) for layer in _recurrent_layers(unrolled))
    np.testing.assert_allclose(unrolled(spectrogram)["chord"].numpy(), network(spectrogram)["chord"].numpy(),
                               atol=1e-5)


def _recurrent_layers(model):
    for layer in model.layers:
        for inner in (getattr(layer, "forward_layer", None), getattr(layer, "backward_layer", None), layer):
            if inner is not None and hasattr(inner, "unroll"):
                yield inner


def test_export_and_predict_command_lines(export_dir, song, tmp_path, capsys):
    from chordkeras import export as export_cli

    run_dir = export_dir.parent
    assert export_cli.main([str(run_dir), "--format", "onnx"]) == 0  # a run folder: its export/ is used
    assert f"wrote {export_dir / 'model.onnx'}" in capsys.readouterr().out
    wav = tmp_path / "song.wav"
    sf.write(wav, song[: 22050 * 20], 22050)
    labels = {}
    for backend in ("saved_model", "onnx"):
        out = tmp_path / backend
        assert predict.main([str(export_dir), str(wav), "--backend", backend, "--out", str(out), "--no-progress"]) == 0
        labels[backend] = [(s.start, s.end, s.label) for s in annotations.load_annotation(out / "song.lab")]
    assert labels["onnx"] == labels["saved_model"] and labels["onnx"]


def test_command_line_errors_name_the_problem(export_dir, tmp_path, capsys):
    from chordkeras import export as export_cli

    assert export_cli.main([str(tmp_path), "--format", "tflite"]) == 2
    assert f"{tmp_path}: not an export folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        export_cli.main([str(export_dir), "--format", "tflite,pb"])
    assert "unknown pb" in capsys.readouterr().err

    folder = tmp_path / "export"  # a copy without model.int8.tflite, whatever the other tests wrote
    shutil.copytree(export_dir, folder, ignore=shutil.ignore_patterns("model.int8.tflite"))
    wav = tmp_path / "tone.wav"
    sf.write(wav, np.zeros(22050, np.float32), 22050)
    code = predict.main([str(folder), str(wav), "--backend", "tflite", "--quantize", "int8", "--no-progress"])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"chordkeras.predict: error: {folder}: no model.int8.tflite (write it with: python -m "
        f"chordkeras.export {folder} --format tflite --quantize int8)")


def test_a_failed_conversion_leaves_no_file_and_the_card_unchanged(export_dir, tmp_path, monkeypatch):
    folder = tmp_path / "export"
    shutil.copytree(export_dir, folder)
    (folder / "model.float16.onnx").unlink(missing_ok=True)
    card_before = (folder / export.MODEL_CARD).read_text()

    def die(*args):
        raise RuntimeError("converter died")

    monkeypatch.setattr(formats, "_onnx_bytes", die)
    with pytest.raises(RuntimeError, match="converter died"):
        export.write_formats(folder, ["onnx"], "float16")
    assert not (folder / "model.float16.onnx").exists()
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]
    assert (folder / export.MODEL_CARD).read_text() == card_before


def test_card_states_the_decoding_an_app_applies(export_dir):
    card = json.loads((export_dir / export.MODEL_CARD).read_text())
    assert card["decoding"]["method"] == "family" == decode.DEFAULT_METHOD
    assert card["decoding"]["families"] == decode.families(card["class_names"]).tolist()
    assert card["decoding"]["self_transition"] == decode.DEFAULT_SELF_TRANSITION == 0.9
    assert card["decoding"]["frame_rate"] == pytest.approx(22050 / 2048)
    assert len(card["class_names"]) == 170 and card["class_names"][0] == "N"


def test_unknown_quantisation_or_format_is_refused_before_any_work(export_dir):
    with pytest.raises(formats.FormatError, match="unknown quantisation 'int4'"):
        export.write_formats(export_dir, ["tflite"], "int4")
    with pytest.raises(formats.FormatError, match="unknown format 'pb'"):
        export.write_formats(export_dir, ["tflite", "pb"])
    assert not (export_dir / "model.int4.tflite").exists()


def test_file_names():
    assert formats.file_name("tflite") == "model.tflite"
    assert formats.file_name("onnx", "int8") == "model.int8.onnx"
    assert formats.file_name("coreml", "float16") == "model.float16.mlpackage"
    assert pathlib.Path(formats.file_name("tflite", "float16")).suffix == ".tflite"


def test_weights_with_an_all_zero_row_or_column_are_found():
    """Core ML int8 leaves these float: a zero channel would get a zero scale."""
    assert formats._has_zero_slice(np.array([[1.0, 0.0], [2.0, 0.0]]))      # column 1
    assert formats._has_zero_slice(np.array([[0.0, 0.0], [2.0, 3.0]]))      # row 0
    assert not formats._has_zero_slice(np.array([[1.0, 0.0], [0.0, 3.0]]))  # zeros, but no zero row or column
    assert formats._has_zero_slice(np.zeros((2, 3, 4))[..., :0])            # empty
    assert formats._has_zero_slice(np.float32(0.0))                          # a scalar


def test_float16_weights_halve_the_large_initializers_and_keep_float32_arithmetic():
    from onnx import TensorProto, helper, numpy_helper

    weights = np.arange(2048, dtype=np.float32).reshape(64, 32) / 7
    bias = np.ones(32, np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Add", ["y", "b"], ["z"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 32])],
        [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(bias, "b")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    formats._float16_weights(proto)
    stored = {t.name: t.data_type for t in proto.graph.initializer}
    assert stored == {"w/float16": TensorProto.FLOAT16, "b": TensorProto.FLOAT}   # 2048 elements: halved; 32: kept
    import onnxruntime as ort

    x = np.ones((1, 64), np.float32)
    out = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(out, x @ weights.astype(np.float16).astype(np.float32) + 1, rtol=1e-6)


def test_a_missing_converter_is_named_with_the_extra_that_installs_it(export_dir, monkeypatch, capsys):
    from chordkeras import export as export_cli

    monkeypatch.setitem(formats.EXTRAS, "onnx", ("tf2onnx_not_installed",))
    assert export_cli.main([str(export_dir), "--format", "onnx"]) == 2
    assert capsys.readouterr().err.strip() == (
        "chordkeras.export: error: onnx needs tf2onnx_not_installed (No module named 'tf2onnx_not_installed'); "
        'install it with: pip install -e ".[export]" (in the chordkeras folder)')
