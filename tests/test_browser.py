"""The exported web page in a real browser: headless Chromium (the system's /usr/bin/chromium, driven by
Playwright) loads the page from a static server on 127.0.0.1, analyses a generated song and is checked
against `python -m chordkeras.predict` on the same file. The browser, server and page helpers are
benchmarks/browser.py's, which measures the page the same way.

Skips, saying what is missing, without Chromium (`apt-get install chromium`), the Python package playwright
(in `.[test]`) or onnxruntime-web (`npm install --no-save onnxruntime-web@<pin>`, see the README). With
CHORDKERAS_REQUIRE_BROWSER=1 (set by .ci/run, which installs them) a missing piece fails instead.
"""

import json
import os
import pathlib
import time

import numpy as np
import pytest
import soundfile as sf

from chordkeras import annotations, export, features, predict, vocab, webpage
from chordkeras import model as model_lib
from chordkeras.config import resolve
from chordkeras.synth import generate, render
from helpers_benchmarks import load_benchmark

pytestmark = pytest.mark.slow

bench = load_benchmark("browser")
analyse, open_page, wait_for = bench.analyse, bench.open_page, bench.wait_for
FRAME_RATE = 22050 / 2048


def _missing(reason):
    if os.environ.get("CHORDKERAS_REQUIRE_BROWSER", "") not in ("", "0"):
        pytest.fail(f"CHORDKERAS_REQUIRE_BROWSER is set but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("the Python package playwright is not installed (pip install -e \".[test]\")")
    if not os.access(bench.CHROMIUM, os.X_OK):
        _missing(f"no Chromium at {bench.CHROMIUM} (apt-get install chromium, or set CHORDKERAS_CHROMIUM)")
    with bench.chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    """The tiny architecture with random weights, its heads scaled (root, bass and pitches x5, chord x30) so that
    its chords change with the music (unscaled, one chord lasts the whole song), exported with its web page."""
    try:
        webpage.find_onnxruntime_web()
    except webpage.PageError as e:
        _missing(str(e))
    import keras

    keras.utils.set_random_seed(0)  # module fixtures are made before the autouse seeding of each test
    config = resolve("tiny")
    network = model_lib.build_model(config)
    for name, scale in (("root", 5), ("bass", 5), ("pitches", 5), ("chord", 30)):
        layer = network.get_layer(name)
        layer.set_weights([w * scale for w in layer.get_weights()])
    folder = export.export_model(network, config, tmp_path_factory.mktemp("run") / "export")
    export.write_formats(folder, ["web"])
    return folder


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    """72 s of a rendered song (longer than one 60 s window) as a 44.1 kHz stereo 16-bit WAV, so the browser
    resamples and mixes down as predict does."""
    rendered = generate.make_song(5, 0, render.load_renderer(), 1.2)
    audio = (0.9 * rendered.audio / np.max(np.abs(rendered.audio))).astype(np.float32)
    left = features.resample(audio, 22050, 44100).numpy()
    path = tmp_path_factory.mktemp("audio") / "song.wav"
    sf.write(path, np.stack([left, 0.7 * left], axis=1), 44100, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def predicted(export_dir, song, tmp_path_factory):
    """predict's segments for the song with the model file the page runs (ONNX float16, its 60 s windows)."""
    out = tmp_path_factory.mktemp("predict")
    assert predict.main([str(export_dir), str(song), "--backend", "onnx", "--quantize", "float16", "--out", str(out),
                         "--no-progress"]) == 0
    return annotations.load_annotation(out / "song.lab")


@pytest.fixture(scope="module")
def server(export_dir):
    """A static server of the web folder on 127.0.0.1; yields its address."""
    with bench.static_server(export_dir / "web") as address:
        yield address


SEEK_AND_READ = """async (time) => {
  const player = document.getElementById("player");
  if (player.readyState < 1) await new Promise((resolve) => player.addEventListener("loadedmetadata", resolve, { once: true }));
  await new Promise((resolve) => { player.addEventListener("seeked", resolve, { once: true }); player.currentTime = time; });
  await new Promise((resolve) => requestAnimationFrame(resolve));
  const item = document.querySelector("#timeline li.current");
  return { time: player.currentTime, label: item && item.dataset.label, start: item && Number(item.dataset.start),
           end: item && Number(item.dataset.end), now: document.getElementById("now-chord").textContent,
           count: document.querySelectorAll("#timeline li.current").length };
}"""

READ_PLAYING = """async () => {
  await new Promise((resolve) => requestAnimationFrame(resolve));
  const player = document.getElementById("player");
  const item = document.querySelector("#timeline li.current");
  return { time: player.currentTime, paused: player.paused, start: item && Number(item.dataset.start),
           end: item && Number(item.dataset.end) };
}"""


def test_the_page_finds_predicts_chords_and_follows_playback(browser, server, song, predicted, tmp_path):
    with open_page(browser, server) as page:
        state = analyse(page, song)
        assert state["windows"] == 2 and state["timings"]["modelLoadSeconds"] > 0
        with page.expect_download() as download:
            page.click("#download-lab")
        assert download.value.suggested_filename == "song.lab"
        download.value.save_as(tmp_path / "page.lab")
        from_page = annotations.load_annotation(tmp_path / "page.lab")
        assert len(predicted) >= 8 and len({s.label for s in predicted}) >= 3  # chords to agree on
        assert bench.frame_agreement(from_page, predicted, FRAME_RATE) >= 0.995
        assert from_page[-1].end == pytest.approx(predicted[-1].end, abs=1e-3)

        with page.expect_download() as download:
            page.click("#download-json")
        result = json.loads(pathlib.Path(download.value.path()).read_text())
        assert download.value.suggested_filename == "song.chords.json"
        assert [s["label"] for s in result["segments"]] == [s.label for s in from_page]
        np.testing.assert_allclose([[s["start"], s["end"]] for s in result["segments"]],
                                   [[s.start, s.end] for s in from_page], atol=5e-7)  # the .lab rounds to 1 us
        assert result["vocabulary"] == "large" and result["decoding"] == {"method": "family", "self_transition": 0.9}

        # Paused at chosen times: inside segments, and just either side of chord changes.
        segments = result["segments"]
        changes = [s["start"] for s in segments[1:6]]
        for time_point in [0.3, 33.3, 70.0] + [t - 0.05 for t in changes] + [t + 0.05 for t in changes]:
            shown = page.evaluate(SEEK_AND_READ, time_point)
            expected = next(s for s in segments if s["start"] <= shown["time"] < s["end"])
            assert shown["count"] == 1 and shown["time"] == pytest.approx(time_point, abs=1e-3)
            assert (shown["label"], shown["start"], shown["end"]) == (expected["label"], expected["start"], expected["end"])

        # Playing: the highlighted chord is the one under the playhead as time moves on.
        page.evaluate(SEEK_AND_READ, 20.0)
        page.evaluate("document.getElementById('player').play()")
        readings = []
        for _ in range(6):
            time.sleep(0.3)
            readings.append(page.evaluate(READ_PLAYING))
        page.evaluate("document.getElementById('player').pause()")
        assert not readings[-1]["paused"] and readings[-1]["time"] > readings[0]["time"] + 1.0
        for reading in readings:  # the reading follows the highlight by at most one animation frame
            assert reading["start"] - 0.1 <= reading["time"] < reading["end"] + 0.1

        origin = f"{server}/"
        assert page.requests and [url for url in page.requests if not url.startswith((origin, "blob:" + server))] == []


def test_the_display_vocabulary_and_names(browser, server, song):
    with open_page(browser, server) as page:
        analyse(page, song)
        items = "Array.from(document.querySelectorAll('#timeline li'), (li) => [li.dataset.label, li.textContent])"
        full = page.evaluate(items)
        assert all(":" not in name for _, name in full) and len(full) >= 8
        page.check("input[name=names][value=harte]")
        assert all(label == name for label, name in page.evaluate(items))
        page.check("input[name=vocabulary][value=majmin]")
        majmin = page.evaluate(items)
        reductions = vocab.get_vocabulary("majmin").reductions
        expected = []
        for label, _ in full:
            root, _, quality = label.partition(":")
            shown = f"{root}:{reductions[quality]}" if quality in reductions else label
            if not expected or expected[-1] != shown:
                expected.append(shown)
        assert [label for label, _ in majmin] == expected != [label for label, _ in full]


def test_an_undecodable_file_and_a_dropped_file(browser, server, tmp_path):
    not_audio = tmp_path / "notes.mp3"
    not_audio.write_text("these are not the chords you are looking for\n" * 50)
    with open_page(browser, server) as page:
        wait_for(page, "window.chordkeras.status === 'ready'")
        page.set_input_files("#file", str(not_audio))
        wait_for(page, "window.chordkeras.status === 'error'")
        message = page.inner_text("#error")
        assert message.startswith("Cannot decode “notes.mp3”: this browser cannot read it as audio (")
        assert message.endswith("). Try an MP3, WAV, FLAC or Ogg file.")

        # A file dropped on the page (3 s of a C major triad) is analysed as a chosen one is.
        tone = np.sum([np.sin(2 * np.pi * f * np.arange(3 * 22050) / 22050) for f in (261.63, 329.63, 392.0)], axis=0)
        sf.write(tmp_path / "triad.wav", (0.2 * tone).astype(np.float32), 22050)
        data = list((tmp_path / "triad.wav").read_bytes())
        page.evaluate("""(bytes) => {
          const transfer = new DataTransfer();
          transfer.items.add(new File([new Uint8Array(bytes)], "triad.wav", { type: "audio/wav" }));
          document.getElementById("drop").dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true }));
        }""", data)
        wait_for(page, "['done', 'error'].includes(window.chordkeras.status)")
        state = page.evaluate("window.chordkeras")
        assert (state["status"], state["file"], state["windows"]) == ("done", "triad.wav", 1)
        assert page.is_hidden("#error")


def test_a_browser_without_webassembly_is_told_so(browser, server):
    with open_page(browser, server, init_script="delete globalThis.WebAssembly;") as page:
        wait_for(page, "window.chordkeras && window.chordkeras.status === 'error'")
        assert page.inner_text("#error") == (
            "This browser cannot run WebAssembly, which the chord model needs. Use a current Firefox, Chrome, Edge or "
            "Safari, with WebAssembly enabled.")
        assert [url for url in page.requests if "worker" in url or ".onnx" in url or ".wasm" in url] == []
