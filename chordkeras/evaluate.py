"""Command line: chord transcription scores with mir_eval.chord.

`python -m chordkeras.evaluate REFERENCE_DIR ESTIMATE_DIR [--out DIR] [--plot --audio DIR]` compares
folders of .lab/.jams annotations matched by relative path stem (`chordkeras.scoring`);
`python -m chordkeras.evaluate --model MODEL --records tfrecords/NAME [--split test]` runs a model on
the stored spectrograms of a prepared split and scores it against the record's frame labels
(`chordkeras.inference`). Set-level scores are weighted chord symbol recall (WCSR).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Sequence

from chordkeras import cli, decode, files, scoring


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m chordkeras.evaluate",
        description="Score chord estimates with mir_eval.chord: folders of .lab/.jams files, or a model on "
        "a prepared dataset split.",
        epilog="examples:\n"
        "  python -m chordkeras.evaluate references/ estimates/ --out eval/\n"
        "  python -m chordkeras.evaluate --model runs/x/export --records tfrecords/synth --split test --plot",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("reference", nargs="?", help="folder (or file) of reference .lab/.jams annotations")
    parser.add_argument("estimate", nargs="?", help="folder (or file) of estimated .lab/.jams annotations")
    parser.add_argument("--model", help="export folder or .keras file to run on --records")
    parser.add_argument("--records", help="prepared dataset folder (tfrecords/<name>)")
    parser.add_argument("--split", default="test", help="split of --records (default test)")
    parser.add_argument("--decode", choices=decode.METHODS, default=decode.DEFAULT_METHOD, help=decode.METHODS_HELP)
    parser.add_argument("--self-transition", type=float, default=None,
                        help="Viterbi probability of staying on a chord per frame (default: predict's)")
    parser.add_argument("--out", help="folder for evaluation.json, evaluation.csv and plots/ "
                        "(default: <estimate>-eval beside the estimates, or eval-<records>-<split> beside the model)")
    parser.add_argument("--sweep", help="model mode: comma-separated self-transition values to compare (with "
                        "argmax) instead of one evaluation, e.g. 0.5,0.8,0.9,0.95,0.99; writes sweep.json")
    parser.add_argument("--plot", action="store_true", help="write a PNG per song into <out>/plots")
    parser.add_argument("--audio", help="audio folder matched by stem, for spectrograms in folder-mode plots")
    parser.add_argument("--plot-metric", default="majmin", choices=scoring.CHORD_METRICS,
                        help="comparison that marks errors in the plots (default majmin)")
    parser.add_argument("--top", type=int, default=15, help="label confusions to list (default 15)")
    parser.add_argument("--no-progress", action="store_true")
    cli.add_debug_flag(parser)
    args = parser.parse_args(argv)
    folder_mode = args.reference is not None or args.estimate is not None
    model_mode = args.model is not None or args.records is not None
    if folder_mode == model_mode:
        parser.error("give either REFERENCE ESTIMATE folders or --model and --records")
    if folder_mode and (args.reference is None or args.estimate is None):
        parser.error("folder mode needs both REFERENCE and ESTIMATE")
    if model_mode and (args.model is None or args.records is None):
        parser.error("model mode needs both --model and --records")
    if args.self_transition is not None and not 0.0 < args.self_transition < 1.0:
        parser.error("--self-transition must be in (0, 1)")
    if args.sweep is not None:
        if not model_mode:
            parser.error("--sweep needs --model and --records")
        try:
            args.sweep = [float(v) for v in args.sweep.split(",") if v.strip()]
        except ValueError:
            parser.error("--sweep takes comma-separated numbers")
        if not args.sweep or not all(0.0 < v < 1.0 for v in args.sweep):
            parser.error("--sweep values must be in (0, 1)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    return cli.run("chordkeras.evaluate", cli.debug_requested(args), lambda: _main(args))


def _main(args: argparse.Namespace) -> int:
    if args.model is not None:
        model_path = pathlib.Path(args.model)
        default_out = model_path.parent / f"eval-{pathlib.Path(args.records).name}-{args.split}"
        out = pathlib.Path(args.out) if args.out else default_out
    else:
        estimate = pathlib.Path(args.estimate)
        out = pathlib.Path(args.out) if args.out else estimate.parent / f"{estimate.stem}-eval"
    plot_dir = out / "plots" if args.plot else None
    # A ValueError (no matching songs, unusable model or records) is reported in one line by cli.run.
    if args.model is not None:
        # Imported here: scoring folders of annotations needs no TensorFlow, a model does.
        from chordkeras import inference

        if args.sweep is not None:
            rows = inference.sweep_self_transition(args.model, args.records, args.split, args.sweep,
                                                   not args.no_progress)
        else:
            results = inference.evaluate_model_on_records(
                args.model, args.records, args.split, args.decode, args.self_transition, plot_dir,
                args.plot_metric, progress=not args.no_progress, top_confusions=args.top,
            )
    else:
        results = scoring.evaluate_folders(args.reference, args.estimate, plot_dir, args.audio, args.plot_metric,
                                           args.top)
    if args.sweep is not None:
        print(scoring.format_sweep(rows))
        out.mkdir(parents=True, exist_ok=True)
        files.write_json_atomic(out / "sweep.json", scoring.jsonable(rows), sort_keys=False)
        print(f"\nwrote {out / 'sweep.json'}")
        return 0
    print(scoring.format_table(results, per_song=results["num_songs"] <= 40))
    print()
    print(scoring.format_confusions(results["confusions"]))
    for key in ("missing_estimates", "unmatched_estimates"):
        if results.get(key):
            print(f"\n{key.replace('_', ' ')} ({len(results[key])}): {', '.join(results[key][:20])}"
                  + (" ..." if len(results[key]) > 20 else ""), file=sys.stderr)
    for item in results.get("failed", []):
        print(f"chordkeras.evaluate: failed {item['song']}: {item['reason']}", file=sys.stderr)
    json_path, csv_path = scoring.write_results(results, out)
    print(f"\nwrote {json_path} and {csv_path}" + (f" and plots in {plot_dir}" if plot_dir else ""))
    failed, missing = len(results.get("failed", [])), len(results.get("missing_estimates", []))
    print(f"chordkeras.evaluate: {results['num_songs']} song(s) scored, {failed} failed, {missing} without an estimate",
          file=sys.stderr)
    # A missing or bad estimate is an error of the run that made the estimates: the exit status says so.
    return 1 if failed or missing else 0


if __name__ == "__main__":
    sys.exit(main())
