"""App formats of an exported model: TensorFlow Lite, ONNX and Core ML, and a runner for each.

Every format takes mono float32 audio at the model's sample rate (`FeatureConfig.sample_rate`,
22050 Hz by default) and returns the chord probabilities float32 [frames, classes], frame i centred
on sample i * hop_length. The log-frequency spectrogram and the network are both inside, as in the
SavedModel; the SavedModel's resampler is not (its FFT length depends on the input's length, which
no converter carries), so the app hands over audio at the model's rate. Per format:

- TensorFlow Lite (`model.tflite`): any length (resize the input). Built-in operators only (RFFT2D,
  COMPLEX_ABS, WHILE for the recurrent layers): no Flex delegate needed.
- ONNX (`model.onnx`, opset 17): any length. tf2onnx writes each FFT as a dense DFT matrix (1 GB for
  the 16384-point one), so the FFTs become ONNX `DFT` nodes here; log1p and expm1, which tf2onnx
  lacks, become log(1 + x) and exp(x) - 1.
- Core ML (`model.mlpackage`, ML program): a fixed window of `window_frames * hop_length` samples.
  coremltools' TensorFlow frontend cannot read Keras 3's recurrent while loop, so the converted copy
  of the network has its recurrent layers unrolled over that many frames (same weights, same
  numbers). It writes an FFT as a dense DFT matrix (2.9 GB for the default features), so the
  spectrogram is computed with `features.dft_log_spectrogram` (real matrix products over the bins
  the filterbank reads, 15 MB). The app reads overlapping windows and keeps the middle of each, as
  `chordkeras.inference` does. Core ML runs only on Apple platforms: elsewhere the package is
  converted and its specification checked, not run.

Quantisation: "none" (float32), "float16" (weights stored as float16; Core ML also computes in
float16) and "int8" (weights stored as 8-bit integers, activations float: TFLite dynamic-range
quantisation, onnxruntime's `quantize_dynamic`, coremltools' linear weight quantisation). TFLite and ONNX
float16 files compute in float32 (weights cast at load); in ONNX and Core ML the spectrogram and the
layers in `model.FLOAT32_LAYERS` are never quantised nor computed in float16 (`reduced_precision_selector`).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import platform
import tempfile
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from chordkeras import features as features_lib
from chordkeras import files
from chordkeras import model as model_lib  # noqa: F401  (registers the layers the models hold)
from chordkeras.config import FeatureConfig

FORMATS = ("tflite", "onnx", "coreml")
QUANTIZATIONS = ("none", "float16", "int8")
SUFFIXES = {"tflite": ".tflite", "onnx": ".onnx", "coreml": ".mlpackage"}
EXTRAS = {"tflite": None, "onnx": ("tf2onnx", "onnxruntime"), "coreml": ("coremltools",)}
# Core ML's fixed window: long enough for the recurrent layers' context, short enough that the unrolled
# network converts in about a minute per 10 s on one CPU core.
DEFAULT_COREML_WINDOW_SECONDS = 20.0
ONNX_OPSET = 17  # the first opset with DFT
INPUT_NAME = "audio"
OUTPUT_NAME = "probabilities"


# What the model card says of each format's features (inside the model for all three) and why.
WHY = {
    "tflite": "TFLite's built-in RFFT2D and COMPLEX_ABS carry the FFTs, so the app needs no feature code; "
              "the in-graph resampler stays out (its FFT length depends on the input length)",
    "onnx": "the FFTs are ONNX DFT nodes (opset 17), so the app needs no feature code; the in-graph "
            "resampler stays out (its FFT length depends on the input length)",
    "coreml": "as real matrix products over the FFT bins the filterbank reads (features.dft_log_spectrogram): "
              "coremltools would store each FFT as a dense DFT matrix (2.9 GB); fixed window because the "
              "recurrent layers are unrolled (coremltools cannot read Keras 3's while loop)",
}


class FormatError(ValueError):
    """A format or quantisation that cannot be written or run here, with the reason."""


def file_name(fmt: str, quantize: str = "none") -> str:
    """model.tflite, model.float16.tflite, model.int8.onnx, model.mlpackage, ..."""
    _check(fmt, quantize)
    middle = "" if quantize == "none" else f".{quantize}"
    return f"model{middle}{SUFFIXES[fmt]}"


def _check(fmt: str, quantize: str) -> None:
    if fmt not in FORMATS:
        raise FormatError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if quantize not in QUANTIZATIONS:
        raise FormatError(f"unknown quantisation {quantize!r}; choose from {', '.join(QUANTIZATIONS)}")


def require(fmt: str) -> None:
    """Raises FormatError naming the pip extra when a format's converter is not installed."""
    for module in EXTRAS[fmt] or ():
        try:
            __import__(module)
        except ImportError as e:
            raise FormatError(f"{fmt} needs {module} ({e}); install it with: pip install -e \".[export]\" "
                              "(in the chordkeras folder)") from e


# ---------------------------------------------------------------------------------------------
# The graph every format is converted from


def audio_function(model: keras.Model, feature_config: FeatureConfig, num_samples: int | None = None,
                   spectrogram_fn: Callable = features_lib.log_spectrogram):
    """tf.function: audio float32 [samples] at the model's rate -> {"probabilities": [frames, classes]}."""

    @tf.function(input_signature=[tf.TensorSpec([num_samples], tf.float32, name=INPUT_NAME)])
    def serve(audio):
        spectrogram = spectrogram_fn(audio, feature_config)
        logits = model(spectrogram[None], training=False)["chord"][0]
        return {OUTPUT_NAME: tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)}

    return serve


def unrolled_copy(model: keras.Model) -> keras.Model:
    """The same network with its recurrent layers unrolled, same weights (needs a fixed number of frames)."""

    def unroll(config):
        if isinstance(config, dict):
            return {k: (True if k == "unroll" else unroll(v)) for k, v in config.items()}
        if isinstance(config, list):
            return [unroll(v) for v in config]
        return config

    copy = model.__class__.from_config(unroll(model.get_config()))
    copy.set_weights(model.get_weights())
    return copy


def reduced_precision_selector(model: keras.Model) -> Callable[[str], bool]:
    """Which converted ops (by name) may run in float16 or hold int8 weights: the network's, bar the layers
    that stay float32 under every Keras precision policy (`model.FLOAT32_LAYERS`).

    The spectrogram stays float32: a full-scale tone's DFT output squared reaches 7e7, beyond float16's
    65504, and its long sums lose precision. So do the layers that read it: the level normalisation divides
    across the recording's whole dynamic range (in float16 a song opening with digital silence came out as
    NaN), the frame mask and the silence rule decide on values below float16's resolution. Converters name
    ops after the TensorFlow ones, which carry the Keras model's name and layer names as scopes.
    """
    kept = [layer.name for layer in model.layers if isinstance(layer, model_lib.FLOAT32_LAYERS)]

    def select(name: str) -> bool:
        flat = name.replace("/", "_")  # ONNX keeps TF's scopes (a/b/c), Core ML joins them with underscores
        return flat.startswith(model.name) and not any(f"_{layer}_" in flat for layer in kept)

    return select


# ---------------------------------------------------------------------------------------------
# Converters


def convert(fmt: str, model: keras.Model, feature_config: FeatureConfig, out_path: str | os.PathLike,
            quantize: str = "none", coreml_window_frames: int | None = None) -> dict[str, Any]:
    """Writes one format to `out_path` atomically; returns its description for the model card.

    Raises:
        FormatError: unknown format or quantisation, or a converter that is not installed.
    """
    _check(fmt, quantize)
    require(fmt)
    out_path = pathlib.Path(out_path)
    if fmt == "tflite":
        files.write_bytes_atomic(out_path, _tflite_bytes(model, feature_config, quantize))
        entry = describe(fmt, quantize, feature_config, None, out_path)
        # The signature names the tensors "audio" and "probabilities"; by index, they are these.
        interpreter = tf.lite.Interpreter(model_path=str(out_path))
        entry["signature"] = "serving_default"
        entry["input"]["tensor"] = interpreter.get_input_details()[0]["name"]
        entry["output"]["tensor"] = interpreter.get_output_details()[0]["name"]
    elif fmt == "onnx":
        files.write_bytes_atomic(out_path, _onnx_bytes(model, feature_config, quantize))
        entry = describe(fmt, quantize, feature_config, None, out_path)
    else:
        frames = coreml_window_frames or int(round(DEFAULT_COREML_WINDOW_SECONDS * feature_config.frame_rate))
        num_samples = frames * feature_config.hop_length
        classes = model.output["chord"].shape[-1]
        # coremltools saves an ML program only under a name ending in .mlpackage.
        with files.atomic_output(out_path, temporary=out_path.with_name(f".{out_path.name}.incomplete.mlpackage")) as tmp:
            _coreml_model(model, feature_config, quantize, num_samples).save(str(tmp))
            check_coreml_spec(tmp, num_samples, feature_config.num_frames(num_samples), classes)
        entry = describe(fmt, quantize, feature_config, num_samples, out_path)
    return entry


def describe(fmt: str, quantize: str, feature_config: FeatureConfig, num_samples: int | None,
             path: pathlib.Path) -> dict[str, Any]:
    """The model card entry of one written format."""
    frames = None if num_samples is None else feature_config.num_frames(num_samples)
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
    return {
        "file": path.name,
        "format": fmt,
        "quantization": quantize,
        "bytes": size,
        "input": {"name": INPUT_NAME, "dtype": "float32",
                  "shape": ["samples"] if num_samples is None else [num_samples],
                  "description": f"mono audio at {feature_config.sample_rate} Hz, full scale +-1"
                                 + ("" if num_samples is None else
                                    f"; a fixed window of {num_samples} samples (zero-pad the last one)")},
        "output": {"name": OUTPUT_NAME, "dtype": "float32",
                   "shape": ["frames", "classes"] if frames is None else [frames, "classes"],
                   "description": "chord probabilities; frame i is centred on sample i * hop_length "
                                  "(frames = 1 + samples // hop_length)"},
        "features": "inside: the model computes the log-frequency spectrogram from the audio; resample to "
                    f"{feature_config.sample_rate} Hz first",
        "why": WHY[fmt],
        "window_seconds": None if num_samples is None else num_samples / feature_config.sample_rate,
    }


def _saved_audio_model(model: keras.Model, feature_config: FeatureConfig, folder: pathlib.Path) -> None:
    """A SavedModel of `audio_function` (variables frozen by the converter that reads it)."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", audio_function(model, feature_config),
                         input_signature=[tf.TensorSpec([None], tf.float32, name=INPUT_NAME)])
    archive.write_out(str(folder), verbose=False)


def _tflite_bytes(model: keras.Model, feature_config: FeatureConfig, quantize: str) -> bytes:
    # From a SavedModel: converting the tf.function directly fails on the variables read inside the
    # recurrent while loop ("missing attribute 'value'").
    with tempfile.TemporaryDirectory() as tmp:
        _saved_audio_model(model, feature_config, pathlib.Path(tmp) / "saved_model")
        converter = tf.lite.TFLiteConverter.from_saved_model(str(pathlib.Path(tmp) / "saved_model"))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            if quantize == "float16":
                converter.target_spec.supported_types = [tf.float16]
        return converter.convert()


def _onnx_bytes(model: keras.Model, feature_config: FeatureConfig, quantize: str) -> bytes:
    import tf2onnx

    spec = [tf.TensorSpec([None], tf.float32, name=INPUT_NAME)]
    proto, _ = tf2onnx.convert.from_function(audio_function(model, feature_config), input_signature=spec,
                                             opset=ONNX_OPSET, custom_op_handlers=_onnx_handlers())
    # Name the dynamic axes (tf2onnx calls them unk__N).
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "samples"
    proto.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "frames"
    selected = reduced_precision_selector(model)
    if quantize == "float16":
        _float16_weights(proto)
    elif quantize == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # The network's matrix products only: quantising the spectrogram's filterbank products (and their
        # activations) turned a song's quiet frames into silence.
        network = [node.name for node in proto.graph.node if node.op_type == "MatMul" and selected(node.name)]
        with tempfile.TemporaryDirectory() as tmp:
            source, target = pathlib.Path(tmp) / "float.onnx", pathlib.Path(tmp) / "int8.onnx"
            source.write_bytes(proto.SerializeToString())
            quantize_dynamic(source, target, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                             nodes_to_quantize=network)
            return target.read_bytes()
    return proto.SerializeToString()


def _float16_weights(proto, min_size: int = 1024) -> None:
    """Stores the float32 initializers of `min_size` elements or more as float16, each followed by a Cast
    back to float32 under its old name: half the bytes, float32 arithmetic (as TFLite's float16 files on
    CPUs). onnxruntime folds the casts when it loads the model.

    A float16 graph (onnxruntime's converter) was tried first: its casts around the float32 layers it was
    told to leave alone still rounded the spectrogram to float16, and frames at the edge of digital
    silence flipped to N.
    """
    from onnx import TensorProto, helper, numpy_helper

    casts = []
    for tensor in list(proto.graph.initializer):
        if tensor.data_type != TensorProto.FLOAT:
            continue
        values = numpy_helper.to_array(tensor)
        if values.size < min_size:
            continue
        half = numpy_helper.from_array(values.astype(np.float16), f"{tensor.name}/float16")
        proto.graph.initializer.remove(tensor)
        proto.graph.initializer.append(half)
        casts.append(helper.make_node("Cast", [half.name], [tensor.name], name=f"{tensor.name}/to_float32",
                                      to=TensorProto.FLOAT))
    nodes = casts + list(proto.graph.node)  # the casts first: nodes are listed in topological order
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)


def _onnx_handlers() -> dict[str, tuple[Callable, list]]:
    from onnx import TensorProto
    from tf2onnx import utils

    def one(ctx):
        return ctx.make_const(utils.make_name("one"), np.array(1.0, np.float32)).output[0]

    def log1p(ctx, node, name, args):
        plus_one = ctx.make_node("Add", [node.input[0], one(ctx)])
        node.type = "Log"
        ctx.replace_input(node, node.input[0], plus_one.output[0], 0)

    def expm1(ctx, node, name, args):
        shapes, dtypes = node.output_shapes, node.output_dtypes
        ctx.remove_node(node.name)
        exp = ctx.make_node("Exp", [node.input[0]])
        ctx.make_node("Sub", [exp.output[0], one(ctx)], outputs=node.output, shapes=shapes, dtypes=dtypes)

    def rfft(ctx, node, name, args):
        # TF RFFT [..., n] -> tf2onnx's complex layout [2, ..., n // 2 + 1] (real, imaginary first),
        # which its ComplexAbs reads; ONNX DFT wants a trailing axis of 1 (real input).
        shape = ctx.get_shape(node.input[0])
        rank = len(shape)
        n = int(ctx.get_node_by_output(node.input[1]).get_tensor_value()[0])
        source, outputs = node.input[0], node.output
        ctx.remove_node(node.name)
        axes = ctx.make_const(utils.make_name("axes"), np.array([-1], np.int64)).output[0]
        length = ctx.make_const(utils.make_name("length"), np.array(n, np.int64)).output[0]
        real = ctx.make_node("Unsqueeze", [source, axes])
        dft = ctx.make_node("DFT", [real.output[0], length], attr={"axis": rank - 1, "onesided": 1})
        ctx.make_node("Transpose", [dft.output[0]], attr={"perm": [rank] + list(range(rank))}, outputs=outputs,
                      shapes=[[2] + list(shape[:-1]) + [n // 2 + 1]], dtypes=[TensorProto.FLOAT])

    return {"Log1p": (log1p, []), "Expm1": (expm1, []), "RFFT": (rfft, [])}


_COREML_OPS_REGISTERED = False


def _register_coreml_ops() -> None:
    """Three TensorFlow ops coremltools 9 does not convert: Expm1, Atan2, and Cast to bool."""
    global _COREML_OPS_REGISTERED
    if _COREML_OPS_REGISTERED:
        return
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.tensorflow import tf_op_registry
    from coremltools.converters.mil.mil import types

    cast = tf_op_registry._TF_OPS_REGISTRY["Cast"]

    def Expm1(context, node):  # noqa: N802 (registered under the TF op's name)
        context.add(node.name, mb.sub(x=mb.exp(x=context[node.inputs[0]]), y=1.0, name=node.name))

    def Atan2(context, node):  # noqa: N802
        # The half-angle form 2 atan(y / (r + x)), r = |(x, y)|: only atan, which Core ML has. Exact wherever
        # r + x > 0; on the negative x axis (y = 0, x < 0) it gives 0 where atan2 gives pi, and 0 at the
        # origin as atan2 does (the tiny term keeps 0 / 0 away).
        y, x = context[node.inputs[0]], context[node.inputs[1]]
        radius = mb.sqrt(x=mb.add(x=mb.mul(x=x, y=x), y=mb.mul(x=y, y=y)))
        ratio = mb.real_div(x=y, y=mb.add(x=mb.add(x=radius, y=x), y=1e-30))
        context.add(node.name, mb.mul(x=mb.atan(x=ratio), y=2.0, name=node.name))

    def Cast(context, node):  # noqa: N802
        if node.attr["DstT"] != types.bool:
            return cast(context, node)
        x = context[node.inputs[0]]
        context.add(node.name, mb.not_equal(x=x, y=0.0 if types.is_float(x.dtype) else 0, name=node.name))

    for function in (Expm1, Atan2, Cast):
        tf_op_registry.register_tf_op(function, override=True)
    _COREML_OPS_REGISTERED = True


def _coreml_model(model: keras.Model, feature_config: FeatureConfig, quantize: str, num_samples: int):
    import coremltools as ct

    _register_coreml_ops()
    network = unrolled_copy(model)
    function = audio_function(network, feature_config, num_samples,
                              features_lib.dft_log_spectrogram).get_concrete_function()
    selected = reduced_precision_selector(model)
    if quantize == "float16":
        precision = ct.transform.FP16ComputePrecision(op_selector=lambda op: selected(op.name))
    else:
        precision = ct.precision.FLOAT32
    converted = ct.convert([function], source="tensorflow", convert_to="mlprogram", compute_precision=precision,
                           inputs=[ct.TensorType(name=INPUT_NAME, shape=(num_samples,))],
                           minimum_deployment_target=ct.target.iOS16)
    if quantize == "int8":
        # Left float: the spectrogram's and the float32 layers' weights, and any weight with an all-zero row
        # or column, which coremltools would quantise with a zero scale into NaN.
        metadata = ct.optimize.coreml.get_weights_metadata(converted, weight_threshold=0)
        skipped = {name: None for name, info in metadata.items()
                   if not selected(name) or _has_zero_slice(np.asarray(info.val))}
        config = ct.optimize.coreml.OptimizationConfig(
            global_config=ct.optimize.coreml.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8"),
            op_name_configs=skipped)
        with np.errstate(invalid="raise"):  # an all-zero weight channel would quantise to garbage, silently
            converted = ct.optimize.coreml.linear_quantize_weights(converted, config)
    spec = converted.get_spec()
    ct.utils.rename_feature(spec, spec.description.output[0].name, OUTPUT_NAME)
    converted = ct.models.MLModel(spec, weights_dir=converted.weights_dir)
    converted.short_description = "chordkeras: chord probabilities of a window of mono audio"
    return converted


def _has_zero_slice(values: np.ndarray) -> bool:
    """True when `values` is all zeros along some index of its first or last axis."""
    if values.ndim == 0 or values.size == 0:
        return True
    rows = values.reshape(values.shape[0], -1)
    columns = values.reshape(-1, values.shape[-1])
    return bool(np.any(np.all(rows == 0, axis=1)) or np.any(np.all(columns == 0, axis=0)))


def coreml_io(path: str | os.PathLike) -> dict[str, tuple[str, list[int]]]:
    """{feature name: ("input" or "output", shape)} read from a Core ML package's specification (any OS)."""
    import coremltools as ct

    description = ct.utils.load_spec(str(path)).description
    return {**{f.name: ("input", list(f.type.multiArrayType.shape)) for f in description.input},
            **{f.name: ("output", list(f.type.multiArrayType.shape)) for f in description.output}}


def check_coreml_spec(path: str | os.PathLike, num_samples: int, num_frames: int, num_classes: int) -> None:
    """Raises FormatError unless the package takes `audio` [num_samples] and gives `probabilities` [frames, classes]."""
    found = coreml_io(path)
    expected = {INPUT_NAME: ("input", [num_samples]), OUTPUT_NAME: ("output", [num_frames, num_classes])}
    if found != expected:
        raise FormatError(f"{path}: converted Core ML model has inputs/outputs {found}, expected {expected}")


def coreml_can_predict() -> tuple[bool, str]:
    """(True, "") where coremltools can run a model (macOS), else (False, why)."""
    if platform.system() != "Darwin":
        return False, f"Core ML runs models only on macOS (this is {platform.system()})"
    try:
        import coremltools  # noqa: F401
    except ImportError as e:
        return False, f"coremltools is not installed ({e})"
    return True, ""


# ---------------------------------------------------------------------------------------------
# Runners


@dataclasses.dataclass
class Runner:
    """A loaded format: `run(audio)` -> probabilities float32 [frames, classes].

    `window_samples` is the fixed input length (Core ML), or None for any length.
    """

    path: pathlib.Path
    fmt: str
    window_samples: int | None
    run: Callable[[np.ndarray], np.ndarray]


def load_runner(path: str | os.PathLike, fmt: str, window_samples: int | None = None, threads: int | None = None) -> Runner:
    """Opens a written format with its runtime (tf.lite, onnxruntime, coremltools).

    Raises:
        FormatError: a missing file, or a runtime that is not available here.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise FormatError(f"{path}: no such file (write it with: python -m chordkeras.export {path.parent} "
                          f"--format {fmt})")
    if fmt == "tflite":
        # Every core, as TensorFlow and onnxruntime use by default, rather than the interpreter's own choice.
        interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=threads or os.cpu_count())
        index = interpreter.get_input_details()[0]["index"]
        output = interpreter.get_output_details()[0]["index"]
        state = {"length": None}

        def run(audio):
            audio = np.ascontiguousarray(audio, dtype=np.float32)
            if state["length"] != len(audio):
                interpreter.resize_tensor_input(index, [len(audio)])
                interpreter.allocate_tensors()
                state["length"] = len(audio)
            interpreter.set_tensor(index, audio)
            interpreter.invoke()
            return interpreter.get_tensor(output).copy()

        return Runner(path, fmt, None, run)
    if fmt == "onnx":
        require("onnx")
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return Runner(path, fmt, None, lambda audio: session.run(None, {name: np.asarray(audio, np.float32)})[0])
    if fmt == "coreml":
        ok, why = coreml_can_predict()
        if not ok:
            raise FormatError(f"{path}: cannot run Core ML here: {why}")
        import coremltools as ct

        model = ct.models.MLModel(str(path), compute_units=ct.ComputeUnit.CPU_ONLY)
        def run(audio):
            return np.asarray(model.predict({INPUT_NAME: np.asarray(audio, np.float32)})[OUTPUT_NAME], np.float32)

        return Runner(path, fmt, window_samples, run)
    raise FormatError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
