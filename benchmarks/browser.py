"""The web page in a real browser: page weight, model load time and seconds per song, against predict.

Writes the page (`python -m chordkeras.export EXPORT_DIR --format web`) into a copy of the export folder,
renders --songs songs of --minutes with the built-in generator (seed 31, as benchmarks/exports.py does)
and encodes them as 44.1 kHz stereo MP3 (--wav: 16-bit WAV), serves the page on 127.0.0.1 and opens it
--repeats times in headless Chromium (the system's, /usr/bin/chromium, driven by Playwright), each time in a
fresh browser context (nothing cached), choosing each song in turn:
  page MB        bytes of every file the page requested,
  model load s   from the page's script start to every worker holding a loaded model,
  s per song     from reading the chosen file to its chords on screen, by the page's clock: decoding and
                 resampling (Web Audio), the model in Web Workers, Viterbi, drawing; and from the driver
                 choosing the file until it sees the chords (adds handing the file over and polling),
  predict s      `python -m chordkeras.predict` on the same file once its model is loaded (reading the file,
                 windows, Viterbi), with its default backend and with the ONNX file the page runs,
  agree          share of frames with the same label in the page's result and predict's.
Page figures are medians over the repeats (the first song of each; later songs find the workers warm),
predict's the best of --repeats runs. The machine's load average is printed: timings are of whatever
else runs. Needs Chromium (apt-get install chromium), playwright (in .[test]) and onnxruntime-web (see the
README). Run from the repository root:

    python benchmarks/browser.py EXPORT_DIR [--songs 1] [--minutes 4] [--repeats 3] [--wav]
        [--onnxruntime-web DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import os
import pathlib
import shutil
import statistics
import sys
import tempfile
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Chromium's flags for a closed network and a root user: no sandbox (root), no GPU, none of the background
# connections (updates, sync, field trials) a browser makes at start; media may play without a click.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"]
CHROMIUM = os.environ.get("CHORDKERAS_CHROMIUM", "/usr/bin/chromium")


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """A static file handler that logs nothing and ignores connections the browser drops."""

    def log_message(self, *args):
        pass

    def handle(self):
        with contextlib.suppress(ConnectionError):
            super().handle()


@contextlib.contextmanager
def static_server(folder: pathlib.Path):
    """Serves `folder` on 127.0.0.1 (a free port) in a thread; yields its address."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@contextlib.contextmanager
def chromium():
    """Headless Chromium launched by Playwright from CHROMIUM (no browser download)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def open_page(browser, address: str, init_script: str | None = None):
    """A page of a fresh browser context at `address`; every request it makes is listed in page.requests."""
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    page.requests = []
    page.on("request", lambda request: page.requests.append(request.url))
    if init_script:
        page.add_init_script(init_script)
    page.goto(f"{address}/")
    try:
        yield page
    finally:
        context.close()


def wait_for(page, expression: str, timeout: float = 300.0) -> None:
    """Polls a JavaScript expression until it is true. (Playwright's wait_for_function compiles its predicate
    with eval, which the page's Content-Security-Policy forbids.)"""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if page.evaluate(expression):
            return
        time.sleep(0.02)
    raise TimeoutError(f"timed out waiting for {expression}; page state: "
                       f"{page.evaluate('JSON.stringify(window.chordkeras)')}")


def analyse(page, path: pathlib.Path) -> dict:
    """Chooses `path` in the page's file input and waits for the chords; returns window.chordkeras."""
    wait_for(page, "window.chordkeras && window.chordkeras.status !== 'loading'")
    page.set_input_files("#file", str(path))
    wait_for(page, "['done', 'error'].includes(window.chordkeras.status)")
    state = page.evaluate("window.chordkeras")
    if state["status"] != "done":
        raise RuntimeError(f"{path.name}: {state['error']}")
    return state


def frame_agreement(a, b, frame_rate: float) -> float:
    """Share of frame centres, over the shorter of two segmentations, at which they give the same label."""
    from chordkeras import annotations

    end = min(a[-1].end, b[-1].end)
    times = np.arange(int(end * frame_rate)) / frame_rate
    return float(np.mean(np.array(annotations.frame_labels(a, times)) == np.array(annotations.frame_labels(b, times))))


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export_dir", help="export folder (model.keras, model_card.json, saved_model/)")
    parser.add_argument("--songs", type=int, default=1, help="rendered songs (default 1)")
    parser.add_argument("--minutes", type=float, default=4.0, help="length of each song (default 4)")
    parser.add_argument("--repeats", type=int, default=3, help="page loads, and predict runs per song (default 3)")
    parser.add_argument("--wav", action="store_true", help="16-bit WAV files instead of MP3")
    parser.add_argument("--onnxruntime-web", help="onnxruntime-web package folder (default: as the export finds it)")
    return parser.parse_args(argv)


def write_songs(folder: pathlib.Path, count: int, minutes: float, wav: bool) -> list[pathlib.Path]:
    import soundfile as sf

    from chordkeras import features
    from chordkeras.synth import generate, render

    renderer = render.load_renderer()
    paths = []
    for i in range(count):
        audio = generate.make_song(31, i, renderer, minutes).audio.astype(np.float32)
        audio = 0.9 * audio / np.max(np.abs(audio))
        left = features.resample(audio, 22050, 44100).numpy()
        path = folder / f"song_{i}.{'wav' if wav else 'mp3'}"
        stereo = np.stack([left, 0.8 * left], axis=1)
        if wav:
            sf.write(path, stereo, 44100, subtype="PCM_16")
        else:
            sf.write(path, stereo, 44100, format="MP3")
        paths.append(path)
    return paths


def predict_runs(export_dir: pathlib.Path, paths, repeats: int, **model_options) -> tuple[float, list]:
    """(best seconds for the first song, segments of every song) of predict's transcription once loaded."""
    from chordkeras import audio, inference

    model = inference.load_chord_model(export_dir, **model_options)
    model.warm_up()
    times, segments = [], []
    for i, path in enumerate(paths):
        for _ in range(repeats if i == 0 else 1):
            started = time.perf_counter()
            source = audio.open_audio(path, model.features.sample_rate)
            try:
                result = inference.transcribe_source(model, source)
            finally:
                source.close()
            if i == 0:
                times.append(time.perf_counter() - started)
        segments.append(result.segments)
    return min(times), segments


def main(argv=None) -> int:
    args = _parse(argv)
    from chordkeras import export, files, webpage
    from chordkeras.annotations import Segment

    source = export.resolve_export_dir(args.export_dir)
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f} at start", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        folder = tmp / "export"
        shutil.copytree(source, folder, ignore=shutil.ignore_patterns(webpage.FOLDER))
        export.write_formats(folder, [export.WEB], onnxruntime_web=args.onnxruntime_web)
        web = folder / webpage.FOLDER
        page_model = files.read_json(web / webpage.MODEL_JSON)
        frame_rate = page_model["frame_rate"]
        songs = write_songs(tmp, args.songs, args.minutes, args.wav)
        print(f"{len(songs)} song(s) of {args.minutes:g} min as {songs[0].suffix[1:].upper()}; page model "
              f"{page_model['model']}", flush=True)

        predict_default, reference = predict_runs(folder, songs, args.repeats)
        quantization = page_model["quantization"]
        predict_onnx, reference_onnx = predict_runs(folder, songs, args.repeats, backend="onnx", quantize=quantization)
        runs = []
        with static_server(web) as address, chromium() as browser:
            for _ in range(args.repeats):
                with open_page(browser, address) as page:
                    wait_for(page, "window.chordkeras && window.chordkeras.status !== 'loading'")
                    per_song = []
                    for path in songs:
                        started = time.monotonic()
                        state = analyse(page, path)
                        wall = time.monotonic() - started
                        segments = [Segment(s["start"], s["end"], s["label"]) for s in state["segments"]]
                        per_song.append((wall, state, segments))
                    local = {url.split("?")[0][len(address):].lstrip("/") or "index.html"
                             for url in page.requests if url.startswith(address)}
                    elsewhere = [url for url in page.requests if not url.startswith((address, "blob:" + address))]
                    page_bytes = sum((web / name).stat().st_size for name in local if (web / name).is_file())
                    runs.append({"songs": per_song, "bytes": page_bytes, "elsewhere": elsewhere,
                                 "load": per_song[0][1]["timings"]["modelLoadSeconds"]})

    first = [run["songs"][0] for run in runs]
    agree = np.mean([frame_agreement(segments, ref, frame_rate)
                     for run in runs for (_, _, segments), ref in zip(run["songs"], reference)])
    agree_onnx = np.mean([frame_agreement(segments, ref, frame_rate)
                          for run in runs for (_, _, segments), ref in zip(run["songs"], reference_onnx)])
    state = first[0][1]
    print()
    print("| | figure |")
    print("|---|---|")
    print(f"| page weight | {runs[0]['bytes'] / 1e6:.2f} MB ({page_model['model']}, onnxruntime-web "
          f"{page_model['onnxruntime_web']}) |")
    print(f"| requests outside the page's folder | {sum(len(run['elsewhere']) for run in runs)} |")
    print(f"| model load | {statistics.median(run['load'] for run in runs):.2f} s "
          f"({state['workers']} workers) |")
    print(f"| chords of a {args.minutes:g}-min song in the browser, file read to chords shown (the page's clock) | "
          f"{statistics.median(s['timings']['totalSeconds'] for _, s, _ in first):.2f} s "
          f"(decoding {statistics.median(s['timings']['decodeSeconds'] for _, s, _ in first):.2f} s, model "
          f"{statistics.median(s['timings']['analyseSeconds'] for _, s, _ in first):.2f} s over {state['windows']} "
          "windows) |")
    print(f"| the same from the driver choosing the file until it sees the chords | "
          f"{statistics.median(wall for wall, _, _ in first):.2f} s |")
    print(f"| predict, default backend, same file | {predict_default:.2f} s |")
    print(f"| predict --backend onnx --quantize {quantization}, same file | {predict_onnx:.2f} s |")
    print(f"| same labels as predict (default backend / the page's ONNX file) | {100 * agree:.2f}% / "
          f"{100 * agree_onnx:.2f}% of frames |")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
