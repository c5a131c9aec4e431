"""Command line: chord transcription of audio files with a trained model.

    python -m chordkeras.predict MODEL AUDIO... [--out DIR] [--format lab|jams|csv]
        [--decode family|viterbi|argmax] [--self-transition P] [--plot]
        [--backend auto|keras|saved_model|tflite|onnx|coreml [--quantize none|float16|int8]]

MODEL is an export folder (saved_model/, model.keras, model_card.json) or a `.keras` file with
model_card.json next to it. The work is done by `chordkeras.inference` (loading, windows, backends,
decoding) and `chordkeras.annotations.write_segments` (the output formats).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time
from typing import Sequence

from chordkeras import __version__, annotations, audio, cli, decode, formats, inference


def plan_outputs(
    inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike | None, fmt: str
) -> tuple[list[tuple[pathlib.Path, pathlib.Path]], list[tuple[pathlib.Path, str]]]:
    """(audio file, output file) pairs, and (input, reason) for each input that gives no audio file.

    A file gives `<out_dir>/<stem>.<fmt>`; a folder gives one output per audio file below it, at
    the same relative path under `out_dir`. Without `out_dir` each output goes next to its audio
    as `<stem>.chords.<fmt>`, so a reference annotation `<stem>.lab` beside it is never overwritten.
    A missing input or a folder without audio is returned with its reason, so that the other inputs
    are still transcribed.

    Raises:
        ValueError: two inputs mapping to one output.
    """
    out = pathlib.Path(out_dir) if out_dir is not None else None
    suffix = f".{fmt}" if out is not None else f".chords.{fmt}"
    pairs, unusable = [], []
    for item in inputs:
        item = pathlib.Path(item)
        if item.is_dir():
            files = sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in audio.AUDIO_EXTENSIONS)
            if not files:
                unusable.append((item, f"no audio files ({', '.join(audio.AUDIO_EXTENSIONS)})"))
            for f in files:
                target = (out / f.relative_to(item)) if out is not None else f
                pairs.append((f, target.with_suffix(suffix)))
        elif item.is_file():
            target = (out / item.name) if out is not None else item
            pairs.append((item, target.with_suffix(suffix)))
        else:
            unusable.append((item, "no such file or folder"))
    seen: dict[pathlib.Path, pathlib.Path] = {}
    for audio_path, target in pairs:
        if target in seen:
            raise ValueError(f"{audio_path} and {seen[target]} would both be written to {target}")
        seen[target] = audio_path
    return pairs, unusable


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m chordkeras.predict",
        description="Transcribe the chords of audio files with a trained chordkeras model.",
    )
    parser.add_argument("model", help="export folder (saved_model/, model.keras, model_card.json) or a .keras file "
                        "with model_card.json beside it")
    parser.add_argument("audio", nargs="+", help="audio files or folders (searched recursively); a missing one, or "
                        "a folder without audio, is reported as failed like an unreadable file and the others are "
                        "transcribed")
    parser.add_argument("--out", help="output folder (default: next to each audio file, as <stem>.chords.<format>)")
    parser.add_argument("--format", choices=annotations.OUTPUT_FORMATS, default="lab",
                        help="output format (default lab)")
    parser.add_argument("--decode", choices=decode.METHODS, default=decode.DEFAULT_METHOD, help=decode.METHODS_HELP)
    parser.add_argument("--self-transition", type=float, default=inference.DEFAULT_SELF_TRANSITION,
                        help="Viterbi probability of staying on a chord per frame "
                        f"(default {inference.DEFAULT_SELF_TRANSITION})")
    parser.add_argument("--plot", action="store_true", help="also write a PNG per song next to its output")
    parser.add_argument("--backend", choices=inference.BACKENDS, default="auto",
                        help="keras (batched windows, features computed here), saved_model (the exported "
                        "signature), or the tflite, onnx or coreml file written by chordkeras.export; "
                        "auto: keras when the model folder has model.keras")
    parser.add_argument("--quantize", choices=formats.QUANTIZATIONS, default="none",
                        help="with --backend tflite/onnx/coreml: which exported file (default none: float32)")
    parser.add_argument("--window-seconds", type=float, default=None,
                        help="network analysis window (default: 30 for keras, 60 for saved_model, tflite and "
                        "onnx; Core ML's fixed window)")
    parser.add_argument("--overlap-seconds", type=float, default=inference.DEFAULT_OVERLAP_SECONDS,
                        help=f"overlap between windows (default {inference.DEFAULT_OVERLAP_SECONDS})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    cli.add_debug_flag(parser)
    args = parser.parse_args(argv)
    if not 0.0 < args.self_transition < 1.0:
        parser.error("--self-transition must be in (0, 1)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    return cli.run("chordkeras.predict", cli.debug_requested(args), lambda: _main(args))


def _main(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    # A ValueError here (two inputs for one output, unusable model) is reported in one line by cli.run.
    pairs, unusable = plan_outputs(args.audio, args.out, args.format)
    model = inference.load_chord_model(args.model, args.backend, args.window_seconds, args.overlap_seconds,
                                       args.quantize)
    model.warm_up()
    metadata = {
        "model": model.description,
        "version": model.card.get("chordkeras_version", __version__),
        "model_path": str(model.path),
        "decode": args.decode,
        "self_transition": args.self_transition,
    }
    audio_seconds = busy_seconds = 0.0
    failures = list(unusable)
    tunings = []
    bar = tqdm(pairs, unit="song", disable=args.no_progress, file=sys.stderr)
    for audio_path, out_path in bar:
        started = time.perf_counter()
        try:
            source = audio.open_audio(audio_path, model.features.sample_rate)
            try:
                result = inference.transcribe_source(model, source, args.decode, args.self_transition,
                                                     with_spectrogram=args.plot, with_tuning=True)
            finally:
                source.close()
        except (ValueError, OSError, RuntimeError) as e:  # AudioError included: reported per file, the others go on
            failures.append((audio_path, " ".join(str(e).split()) or type(e).__name__))
            continue
        out_path.parent.mkdir(parents=True, exist_ok=True)
        tuning = {} if result.tuning is None else {"tuning_cents": round(100 * result.tuning, 1),
                                                   "a4_hz": round(inference.a4_hertz(result.tuning), 2)}
        annotations.write_segments(out_path, result.segments, args.format, result.duration, {**metadata, **tuning})
        tunings.append((audio_path, tuning))
        busy_seconds += time.perf_counter() - started
        audio_seconds += result.duration
        if args.plot:
            from chordkeras import plots  # matplotlib loads only when pictures are asked for

            plots.plot_song(out_path.with_suffix(".png"), result.segments, result.spectrogram, model.features,
                            duration=result.duration, title=str(audio_path.name))
        bar.set_postfix(realtime=f"{audio_seconds / max(busy_seconds, 1e-9):.0f}x")
    bar.close()
    total = len(pairs) + len(unusable)
    done = total - len(failures)
    print(
        f"chordkeras.predict: {done} file(s), {audio_seconds / 60:.1f} min of audio in {busy_seconds:.2f} s "
        f"({audio_seconds / max(busy_seconds, 1e-9):.0f}x real time, model loading excluded)",
        file=sys.stderr,
    )
    for audio_path, tuning in tunings:
        heard = (f"tuned {tuning['tuning_cents']:+.0f} cents from A440 (A4 = {tuning['a4_hz']:.1f} Hz)" if tuning
                 else "no pitched sound to read a tuning from")
        print(f"chordkeras.predict: {audio_path}: {heard}", file=sys.stderr)
    for audio_path, reason in failures:
        print(f"chordkeras.predict: failed {audio_path}: {reason}", file=sys.stderr)
    print(f"chordkeras.predict: {done} of {total} file(s) transcribed, {len(failures)} failed", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
