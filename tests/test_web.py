"""The browser page without a browser: chords.js against chordkeras.decode and plan_windows (under Node.js),
and what `python -m chordkeras.export --format web` writes."""

import json
import pathlib
import re
import shutil
import subprocess

import numpy as np
import pytest

from chordkeras import annotations, decode, export, formats, inference, vocab, webpage
from chordkeras.annotations import Segment

CHORDS_JS = webpage.PAGE_SOURCE / "chords.js"
HARNESS = pathlib.Path(__file__).with_name("chords_node.mjs")
ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def js(tmp_path_factory):
    """run(calls) -> results: each (function name, args) called in chords.js under Node.js."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed (apt-get install nodejs): chords.js not checked")
    folder = tmp_path_factory.mktemp("node")

    def run(calls):
        calls_file, results_file = folder / "calls.json", folder / "results.json"
        calls_file.write_text(json.dumps([{"fn": fn, "args": args} for fn, args in calls]))
        done = subprocess.run([node, str(HARNESS), str(CHORDS_JS), str(calls_file), str(results_file)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(results_file.read_text())

    return run


def _probabilities(rng, frames, classes, concentration):
    """float32 [frames, classes] rows from a Dirichlet; a small concentration gives peaky rows and exact zeros."""
    probs = rng.dirichlet(np.full(classes, concentration), size=frames).astype(np.float32)
    probs[probs < 1e-30] = 0.0
    return probs


@pytest.mark.parametrize("self_transition", [0.005, 0.3, 0.9, 0.999])
def test_viterbi_gives_the_python_path(js, self_transition):
    """Random posteriors, 170 classes (the large vocabulary) over more than 256 frames (where both rescale) and
    small shapes; 0.005 is below uniform for 2-3 classes, which takes the runner-up branch."""
    rng = np.random.default_rng(7)
    cases = [_probabilities(rng, 700, 170, 0.05), _probabilities(rng, 300, 170, 1.0), _probabilities(rng, 1, 5, 1.0),
             _probabilities(rng, 40, 2, 0.5), _probabilities(rng, 60, 3, 0.3), np.zeros((0, 4), np.float32)]
    results = js([("viterbi", [p.ravel().tolist(), p.shape[1], self_transition]) for p in cases])
    for probs, path in zip(cases, results):
        assert path == decode.viterbi(probs, self_transition).tolist()


@pytest.mark.parametrize("self_transition", [0.2, 0.9, 0.999])
def test_family_viterbi_gives_the_python_path(js, self_transition):
    """Random posteriors over the large vocabulary's 170 classes and its families, as the page gets them."""
    names = vocab.get_vocabulary("large").class_names
    family = decode.families(names)
    rng = np.random.default_rng(11)
    cases = [_probabilities(rng, 600, 170, 0.05), _probabilities(rng, 200, 170, 1.0), _probabilities(rng, 1, 170, 0.3)]
    results = js([("familyViterbi", [p.ravel().tolist(), 170, family.tolist(), self_transition]) for p in cases])
    for probs, path in zip(cases, results):
        assert path == decode.family_viterbi(probs, family, self_transition).tolist()


def test_viterbi_smooths_a_blip_as_the_python_tests_say(js):
    blip = [[0.8, 0.1, 0.1], [0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.8, 0.1, 0.1], [0.8, 0.1, 0.1]]
    flat = np.array(blip, np.float32).ravel().tolist()
    assert js([("viterbi", [flat, 3, 0.99]), ("viterbi", [flat, 3, 0.34]), ("argmaxPath", [flat, 3])]) == [
        [0, 0, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 1, 0, 0]]


def test_plan_windows_gives_the_python_windows(js):
    """Every length from 1 to 3000 frames for predict's ONNX windows (646 frames, 54 overlap), and shapes whose
    window starts fall on halves (Python rounds them to even)."""
    shapes = [(n, 646, 54) for n in range(1, 3001, 7)] + [(10, 4, 1), (11, 4, 1), (13, 6, 1), (23, 6, 3), (1, 2, 1)]
    results = js([("planWindows", list(shape)) for shape in shapes])
    halves = 0
    for shape, windows in zip(shapes, results):
        expected = inference.plan_windows(*shape)
        assert [(w["start"], w["length"], w["keepStart"], w["keepStop"]) for w in windows] == [
            (w.start, w.length, w.keep_start, w.keep_stop) for w in expected]
        count = len(expected)
        if count > 1:
            halves += any((k * (shape[0] - expected[0].length)) % (count - 1) * 2 == count - 1 for k in range(count))
    assert halves >= 1  # some start was a tie that round-half-even decides


def test_windows_are_stitched_as_the_format_backend_stitches_them(js):
    """Each window's kept frames go into the song's probabilities; a last window one frame short (resampled
    lengths can round that way) repeats its last frame."""
    rng = np.random.default_rng(3)
    total, classes = 50, 4
    windows = inference.plan_windows(total, 20, 6)
    outputs = [rng.random((w.length - (1 if i == len(windows) - 1 else 0), classes)).astype(np.float32)
               for i, w in enumerate(windows)]
    expected = np.zeros((total, classes), np.float32)
    for w, out in zip(windows, outputs):
        lo, hi = w.keep_start - w.start, w.keep_stop - w.start
        expected[w.keep_start : w.keep_stop] = inference._fit_frames(out, hi)[lo:hi]
    # Windows keep disjoint frames, so each is written into zeros and the results added.
    zeros = [0.0] * (total * classes)
    results = js([("keepWindowFrames", [zeros, classes, {"start": w.start, "length": w.length, "keepStart": w.keep_start,
                                                         "keepStop": w.keep_stop}, out.ravel().tolist()])
                  for w, out in zip(windows, outputs)])
    assert len(windows) == 4 and np.all(expected[-1] == expected[-2])
    np.testing.assert_array_equal(np.sum(results, axis=0).reshape(total, classes), expected)


def test_segments_and_lab_text_are_predicts(js, tmp_path):
    """frames -> segments with predict's boundaries (half frames, clipped to the duration) and confidences, and
    the .lab text write_lab writes."""
    rng = np.random.default_rng(5)
    names = list(vocab.get_vocabulary("large").class_names)
    probs = _probabilities(rng, 400, 170, 0.05)
    path = decode.viterbi(probs, 0.9)
    frame_rate, duration = 22050 / 2048, 399.3 * 2048 / 22050
    expected = decode.frames_to_segments(path, probs, frame_rate, names, duration)
    segments, text = js([("framesToSegments", [path.tolist(), probs.ravel().tolist(), 170, frame_rate, names, duration]),
                         ("labText", [[{"start": s.start, "end": s.end, "label": s.label} for s in expected]])])
    assert len(expected) > 10
    assert [(s["start"], s["end"], s["label"]) for s in segments] == [(s.start, s.end, s.label) for s in expected]
    np.testing.assert_allclose([s["confidence"] for s in segments], [s.confidence for s in expected], rtol=1e-12)
    annotations.write_lab(tmp_path / "song.lab", expected)
    assert text == (tmp_path / "song.lab").read_text()


GUITAR_NAMES = {
    "C:maj": "C", "C:min": "Cm", "C:min7": "Cm7", "C:7": "C7", "C:maj7": "Cmaj7", "C:maj6": "C6", "C:min6": "Cm6",
    "C:minmaj7": "Cm(maj7)", "C:dim": "Cdim", "C:dim7": "Cdim7", "C:hdim7": "Cm7b5", "C:aug": "Caug",
    "C:sus2": "Csus2", "C:sus4": "Csus4", "C#:maj": "C#", "D#:min": "Ebm", "F#:7": "F#7", "G#:maj7": "Abmaj7",
    "A#:hdim7": "Bbm7b5", "Bb:min": "Bbm", "Db:maj": "C#", "B:sus4": "Bsus4", "N": "N.C.", "X": "?",
    "C:maj(9)": "C:maj(9)", "C:maj/3": "C:maj/3", "H:maj": "H:maj",  # not in the model's classes: left as they are
}


def test_guitar_names(js):
    labels = list(GUITAR_NAMES)
    assert dict(zip(labels, js([("guitarName", [label]) for label in labels]))) == GUITAR_NAMES


def test_guitar_names_of_every_class_are_distinct_and_plain(js):
    names = vocab.get_vocabulary("large").class_names
    shown = js([("guitarName", [label]) for label in names])
    assert len(set(shown)) == len(names) == 170
    assert not [name for name in shown if ":" in name]


def test_majmin_display_is_the_majmin_vocabulary(js):
    """Every large class shown as the majmin vocabulary's class it reduces to; dim, aug, sus and X stay."""
    large, majmin = vocab.get_vocabulary("large"), vocab.get_vocabulary("majmin")
    reductions = dict(majmin.reductions)
    shown = js([("displayLabel", [label, "majmin", reductions]) for label in large.class_names]
               + [("displayLabel", ["C:min7", "full", reductions])])
    expected = [majmin.class_names[c] if c != vocab.IGNORE else label
                for label, c in zip(large.class_names, majmin.from_large)]
    assert shown[:-1] == expected and shown[-1] == "C:min7"
    assert shown[large.class_names.index("A:min7")] == "A:min" and shown[large.class_names.index("A:dim")] == "A:dim"


def test_relabelled_segments_merge_and_weight_their_confidence(js):
    segments = [{"start": 0, "end": 1, "label": "C:maj", "confidence": 0.9},
                {"start": 1, "end": 4, "label": "C:7", "confidence": 0.5},
                {"start": 4, "end": 5, "label": "A:min", "confidence": 0.8}]
    merged = js([("relabelSegments", [segments, {"C:7": "C:maj"}])])[0]  # the harness makes the map a function
    assert merged == [{"start": 0, "end": 4, "label": "C:maj", "confidence": pytest.approx(0.6)},
                      {"start": 4, "end": 5, "label": "A:min", "confidence": 0.8}]


def test_segment_at_finds_the_chord_sounding_at_a_time(js):
    segments = [{"start": 0, "end": 1.5, "label": "C:maj"}, {"start": 1.5, "end": 2, "label": "G:maj"},
                {"start": 2, "end": 7.25, "label": "A:min"}]
    times = [0, 1.4999, 1.5, 1.99, 2, 7.2499, 7.25, -0.1]
    assert js([("segmentAt", [segments, t]) for t in times]) == [0, 0, 1, 1, 2, 2, -1, -1]


# ---------------------------------------------------------------------------------------------
# The export


@pytest.fixture()
def fake_onnxruntime_web(tmp_path):
    """A folder shaped like the npm package (package.json, dist/ with the two files the page ships)."""
    package = tmp_path / "node_modules" / "onnxruntime-web"
    (package / "dist").mkdir(parents=True)
    (package / "package.json").write_text(json.dumps({"name": "onnxruntime-web", "version": "9.8.7"}))
    for name in webpage.ONNXRUNTIME_WEB_FILES:
        (package / "dist" / name).write_bytes(name.encode() * 10)
    (package / "dist" / "ort.all.min.js").write_text("not shipped")
    return package


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    from chordkeras import model as model_lib
    from chordkeras.config import resolve

    config = resolve("tiny")
    return export.export_model(model_lib.build_model(config), config, tmp_path_factory.mktemp("run") / "export")


def test_export_writes_the_page_with_the_float16_model(export_dir, fake_onnxruntime_web, capsys):
    from chordkeras import export as export_cli

    assert export_cli.main([str(export_dir), "--format", "web", "--onnxruntime-web", str(fake_onnxruntime_web)]) == 0
    out = capsys.readouterr().out
    web = export_dir / "web"
    assert f"wrote {export_dir / 'model.float16.onnx'}" in out and f"wrote {web} (" in out
    assert f"python -m http.server --bind 127.0.0.1 --directory {web} 8000" in out
    assert sorted(str(p.relative_to(web)) for p in web.rglob("*") if p.is_file()) == sorted(
        [*webpage.PAGE_FILES, "model.float16.onnx", "model.json", "ort/ort-wasm-simd-threaded.wasm",
         "ort/ort.wasm.bundle.min.mjs"])
    for name in webpage.PAGE_FILES:
        assert (web / name).read_bytes() == (webpage.PAGE_SOURCE / name).read_bytes()
    assert (web / "model.float16.onnx").read_bytes() == (export_dir / "model.float16.onnx").read_bytes()
    assert (web / "ort" / "ort.wasm.bundle.min.mjs").read_bytes() == b"ort.wasm.bundle.min.mjs" * 10

    model = json.loads((web / "model.json").read_text())
    card = json.loads((export_dir / export.MODEL_CARD).read_text())
    onnx = inference.load_chord_model(export_dir, "onnx", quantize="float16")  # predict's ONNX windows
    assert {k: model[k] for k in ("model", "quantization", "input", "output", "sample_rate", "hop_length", "window_frames",
                                  "overlap_frames", "self_transition", "vocabulary", "onnxruntime_web")} == {
        "model": "model.float16.onnx", "quantization": "float16", "input": "audio", "output": "probabilities", "sample_rate": 22050,
        "hop_length": 2048, "window_frames": onnx.window_frames, "overlap_frames": onnx.overlap_frames,
        "self_transition": 0.9, "vocabulary": "large", "onnxruntime_web": "9.8.7"}
    assert (onnx.window_frames, onnx.overlap_frames) == (646, 54)
    assert model["class_names"] == card["class_names"] and model["frame_rate"] == pytest.approx(22050 / 2048)
    assert model["majmin"]["min7"] == "min" and "dim" not in model["majmin"]
    entry = card["formats"]["web"]
    assert entry["model"] == "model.float16.onnx" and entry["quantization"] == "float16"
    assert entry["bytes"] == sum(p.stat().st_size for p in web.rglob("*") if p.is_file())
    assert card["formats"]["model.float16.onnx"]["quantization"] == "float16"


def test_page_windows_are_predicts_onnx_windows():
    assert webpage.WINDOW_SECONDS == inference.DEFAULT_WINDOW_SECONDS["onnx"]
    assert webpage.OVERLAP_SECONDS == inference.DEFAULT_OVERLAP_SECONDS


def test_export_page_with_int8_and_an_existing_onnx_file(export_dir, fake_onnxruntime_web, monkeypatch):
    """--quantize picks the page's model; an ONNX file the folder already has is not converted again."""
    export.write_formats(export_dir, ["onnx"], "int8")
    converted = []
    monkeypatch.setattr(formats, "convert", lambda *args, **kwargs: converted.append(args))
    written = export.write_formats(export_dir, ["web"], "int8", onnxruntime_web=fake_onnxruntime_web)
    assert list(written) == ["web"] and converted == []
    assert json.loads((export_dir / "web" / "model.json").read_text())["model"] == "model.int8.onnx"
    assert sorted(p.name for p in (export_dir / "web").glob("*.onnx")) == ["model.int8.onnx"]


def test_onnxruntime_web_is_found_by_variable_then_node_modules_here_or_above(fake_onnxruntime_web, tmp_path,
                                                                              monkeypatch):
    monkeypatch.setenv(webpage.ONNXRUNTIME_WEB_VARIABLE, str(fake_onnxruntime_web))
    assert webpage.find_onnxruntime_web() == fake_onnxruntime_web
    monkeypatch.delenv(webpage.ONNXRUNTIME_WEB_VARIABLE)
    below = tmp_path / "a" / "b"
    below.mkdir(parents=True)
    monkeypatch.chdir(below)
    assert webpage.find_onnxruntime_web() == fake_onnxruntime_web.resolve()


def test_missing_onnxruntime_web_is_named_with_its_install_command(export_dir, tmp_path, monkeypatch, capsys):
    from chordkeras import export as export_cli

    monkeypatch.delenv(webpage.ONNXRUNTIME_WEB_VARIABLE, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(webpage, "CHECKOUT", tmp_path)  # not the checkout's own node_modules
    folder = tmp_path / "export"
    shutil.copytree(export_dir, folder, ignore=shutil.ignore_patterns("web", "*.onnx"))
    assert export_cli.main([str(folder), "--format", "web"]) == 2
    assert capsys.readouterr().err.strip() == (
        "chordkeras.export: error: the web page needs onnxruntime-web's files and no node_modules/onnxruntime-web "
        f"was found here or above; install it with: npm install --no-save onnxruntime-web@{webpage.ONNXRUNTIME_WEB_VERSION} "
        "(in the chordkeras folder), or give its folder with --onnxruntime-web DIR or CHORDKERAS_ONNXRUNTIME_WEB")
    assert not (folder / "web").exists() and not list(folder.glob("*.onnx"))  # refused before any conversion

    empty = tmp_path / "empty"
    empty.mkdir()
    assert export_cli.main([str(folder), "--format", "web", "--onnxruntime-web", str(empty)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"chordkeras.export: error: {empty}: not an onnxruntime-web package folder (no dist/ort.wasm.bundle.min.mjs, "
        f"dist/ort-wasm-simd-threaded.wasm); install it with: npm install --no-save "
        f"onnxruntime-web@{webpage.ONNXRUNTIME_WEB_VERSION}")


def test_the_page_files_are_package_data_and_the_pin_is_documented():
    assert sorted(p.name for p in webpage.PAGE_SOURCE.iterdir()) == sorted(webpage.PAGE_FILES)
    setup = (ROOT / "setup.py").read_text()
    patterns = re.search(r'package_data=\{"chordkeras": \[([^\]]*)\]\}', setup).group(1)
    suffixes = {pattern.strip(' "').rsplit(".", 1)[1] for pattern in patterns.split(",")}
    assert {name.rsplit(".", 1)[1] for name in webpage.PAGE_FILES} == suffixes
    command = webpage.install_command()
    assert command in (ROOT / "README.md").read_text()
    assert f"onnxruntime-web@{webpage.ONNXRUNTIME_WEB_VERSION}" in (ROOT / ".ci" / "run").read_text()
