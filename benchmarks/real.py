"""Scores models on real recordings: mir_eval WCSR, the share of frames called N, and the confusions.

Each model transcribes the audio exactly as `chordkeras.predict` does (the export, Viterbi decoding)
and is compared with the annotations as published, fitted to the audio as preparation fits them
(times before 0 clipped, what runs past the audio's end cut, see `annotations.fit_to_audio`); a
song whose annotation does not fit its audio is left out and listed. Songs come from a folder of
audio with same-stem .lab/.jams files or a CSV manifest (audio,annotation), as `chordkeras.prepare`
reads them; `--split-of DATASET --split test` keeps the songs of one split of a prepared dataset,
so that a model is scored on exactly the songs it did not train on. Run from the repository root:

    python benchmarks/real.py --model runs/real/export --data ~/beatles/manifest.csv \\
        --split-of tfrecords/beatles --split test
    python benchmarks/real.py --model A/export --model B/export --name A --name B --data songs/ --out real-eval

Prints a Markdown table (one row per model: root, majmin, majmin_inv, sevenths, tetrads, predicted
and annotated N share) and the most frequent confusions, and writes <out>/real.json with every
figure per model, overall and per song.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

REPORTED = ("root", "majmin", "majmin_inv", "sevenths", "tetrads")


def _parse(argv):
    from chordkeras import decode

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, metavar="EXPORT",
                        help="export folder of a trained model (repeatable: one table row each)")
    parser.add_argument("--name", action="append", default=[], help="row name per --model (default: its folder)")
    parser.add_argument("--data", required=True, help="folder of audio + .lab/.jams, or a CSV manifest")
    parser.add_argument("--split-of", metavar="DATASET", help="prepared dataset whose --split chooses the songs")
    parser.add_argument("--split", default="test", help="split of --split-of to score (default: test)")
    parser.add_argument("--end-tolerance", type=float, default=None,
                        help="as chordkeras.prepare's (default: the same default)")
    parser.add_argument("--decode", choices=decode.METHODS, default=decode.DEFAULT_METHOD,
                        help=f"as chordkeras.predict's (default: {decode.DEFAULT_METHOD}, its default)")
    parser.add_argument("--out", help="folder for real.json (default: real/ beside the first model's export)")
    args = parser.parse_args(argv)
    if args.name and len(args.name) != len(args.model):
        parser.error(f"--name given {len(args.name)} time(s) for {len(args.model)} --model")
    return args


def split_song_ids(dataset: str | os.PathLike, split: str) -> set[str]:
    """Ids of the songs a prepared dataset holds in `split`, from its shard summaries."""
    from chordkeras import files, records

    folder = pathlib.Path(dataset)
    records.read_dataset_info(folder)  # a clear error for a folder that is not a prepared dataset
    ids = set()
    for summary in sorted(folder.glob("*.tfrecord.json")):
        content = files.read_json(summary)
        if content.get("split") == split:
            ids.update(content.get("songs", []))
    if not ids:
        raise ValueError(f"{folder}: no songs in split {split!r}")
    return ids


def score_model(transcriber, songs, end_tolerance: float, decode: str | None = None) -> dict:
    """Transcribes and scores `songs` (SongInputs), decoded by `decode` (default: predict's); returns the
    evaluation with N shares and skipped songs."""
    from chordkeras import annotations, audio, inference, scoring
    from chordkeras import decode as decode_lib

    pairs, n_share, skipped, seconds = [], {}, [], 0.0
    for song in songs:
        try:
            source = audio.open_audio(song.audio, transcriber.features.sample_rate)
        except audio.AudioError as e:
            skipped.append({"song": song.song_id, "reason": str(e)})
            continue
        try:
            try:
                reference, _ = annotations.fit_to_audio(song.annotation, source.duration, end_tolerance)
            except (annotations.AnnotationError, TypeError) as e:
                skipped.append({"song": song.song_id, "reason": str(e) if song.annotation else "no annotation"})
                continue
            started = time.perf_counter()
            estimate = inference.transcribe_source(transcriber, source, decode or decode_lib.DEFAULT_METHOD).segments
            seconds += time.perf_counter() - started
        finally:
            source.close()
        start, end = reference[0].start, max(s.end for s in reference)
        n_share[song.song_id] = (scoring.n_seconds(reference, start, end), scoring.n_seconds(estimate, start, end),
                                 end - start)
        pairs.append((song.song_id, reference, estimate))
    if not pairs:
        raise ValueError("no song could be scored: " + "; ".join(s["reason"] for s in skipped[:3]))
    results = scoring.evaluate_pairs(pairs)
    for song_id, (annotated, predicted, span) in n_share.items():
        results["songs"][song_id].update({"annotated_n_share": annotated / span, "predicted_n_share": predicted / span})
    total = sum(span for _, _, span in n_share.values())
    results["overall"]["annotated_n_share"] = sum(a for a, _, _ in n_share.values()) / total
    results["overall"]["predicted_n_share"] = sum(p for _, p, _ in n_share.values()) / total
    results["skipped"] = skipped
    results["transcription_seconds"] = seconds
    return results


def format_table(rows: list[tuple[str, dict]]) -> str:
    """A Markdown table: one row per (name, results)."""
    head = "| model | songs | " + " | ".join(REPORTED) + " | N predicted | N annotated |"
    lines = [head, "|" + "---|" * (len(REPORTED) + 4)]
    for name, results in rows:
        overall = results["overall"]
        scores = " | ".join("-" if overall[m] is None else f"{overall[m]:.3f}" for m in REPORTED)
        lines.append(f"| {name} | {results['num_songs']} | {scores} | {100 * overall['predicted_n_share']:.1f}% | "
                     f"{100 * overall['annotated_n_share']:.1f}% |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = _parse(argv)
    from chordkeras import annotations, files, inference, preparation, scoring

    tolerance = annotations.END_TOLERANCE_SECONDS if args.end_tolerance is None else args.end_tolerance
    songs = preparation.find_inputs(args.data)
    if args.split_of:
        wanted = split_song_ids(args.split_of, args.split)
        songs = [s for s in songs if s.song_id in wanted]
        missing = wanted - {s.song_id for s in songs}
        if missing:
            print(f"real.py: {len(missing)} song(s) of split {args.split!r} are not in {args.data}, e.g. "
                  f"{sorted(missing)[0]}", file=sys.stderr)
    if not songs:
        raise SystemExit(f"real.py: no songs to score in {args.data}")
    names = args.name or [pathlib.Path(m).resolve().parent.name for m in args.model]
    out = pathlib.Path(args.out) if args.out else pathlib.Path(args.model[0]).resolve().parent / "real"
    rows, report = [], {"data": str(args.data), "split_of": args.split_of, "split": args.split if args.split_of else None,
                        "end_tolerance": tolerance, "decode": args.decode, "models": {}}
    for name, model_path in zip(names, args.model):
        transcriber = inference.load_chord_model(model_path)
        print(f"real.py: {name}: {len(songs)} song(s) with {transcriber.description}", file=sys.stderr, flush=True)
        results = score_model(transcriber, songs, tolerance, args.decode)
        results["model"] = str(model_path)
        rows.append((name, results))
        report["models"][name] = scoring.jsonable(results)
        for item in results["skipped"]:
            print(f"real.py: {name}: skipped {item['song']}: {item['reason']}", file=sys.stderr)
        print(scoring.format_confusions(results["confusions"]))
    table = format_table(rows)
    print(table)
    out.mkdir(parents=True, exist_ok=True)
    report["table"] = table
    files.write_json_atomic(out / "real.json", report)
    print(f"real.py: wrote {out / 'real.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
