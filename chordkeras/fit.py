"""`python -m chordkeras.fit`: train a chord model, evaluate it on the test split, export it.

With no --data, the built-in synthetic dataset is generated, prepared and cached under
tfrecords/ (a second run reuses it), so the command runs out of the box on a fresh machine.

Examples:
    python -m chordkeras.fit
    python -m chordkeras.fit --data tfrecords/mysongs --preset transformer --set train.patience=10
    python -m chordkeras.fit --data tfrecords/mysongs --epochs 30 --fixed-epochs --mixed-precision off
    python -m chordkeras.fit --data builtin --data tfrecords/mysongs --mix 1,1 --validate-on tfrecords/mysongs
    python -m chordkeras.fit --data tfrecords/mysongs --init-from runs/synth-default-default/export
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from chordkeras import cli
from chordkeras import config as config_lib

DEFAULT_DATASET = "synth-default"
# The --data value that names the built-in synthetic dataset (generated and cached under --root).
BUILT_IN = "builtin"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m chordkeras.fit", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", action="append", default=[], metavar="DIR",
                        help="prepared dataset folder tfrecords/<name> (default: the built-in synthetic data); "
                             f"repeatable: training mixes the datasets; '{BUILT_IN}' names the built-in one")
    parser.add_argument("--mix", metavar="W1,W2,...",
                        help="share of training excerpts from each --data, in order (default: in proportion to "
                             "their hours of training audio, as if prepared together)")
    parser.add_argument("--validate-on", action="append", default=[], metavar="DIR",
                        help="a --data whose valid split picks the best epoch and whose test split is scored "
                             "(repeatable; default: every --data)")
    parser.add_argument("--init-from", metavar="MODEL",
                        help="start from a trained model's weights (export folder, run folder or .keras file; "
                             "same architecture and vocabulary): fine-tuning")
    parser.add_argument("--root", default="tfrecords", help="where the built-in dataset is cached (default: tfrecords)")
    parser.add_argument("--synth-songs", type=int, default=None,
                        help="songs in the built-in dataset (default: chordkeras.defaults.DEFAULT_SONGS)")
    parser.add_argument("--preset", default="default",
                        help=f"comma-separated config presets: {', '.join(config_lib.PRESETS)} (default: default)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="config override, repeatable, e.g. --set train.patience=10 --set model.rnn_units=96")
    parser.add_argument("--run-dir", help="run folder (default: runs/<dataset>-<preset>; same config resumes)")
    parser.add_argument("--epochs", type=int, help="maximum epochs (train.epochs)")
    parser.add_argument("--fixed-epochs", action="store_true", help="no early stopping: train for --epochs")
    parser.add_argument("--mixed-precision", choices=("auto", "off", "mixed_float16", "mixed_bfloat16"),
                        help="precision policy (train.mixed_precision; auto picks the fastest for the device)")
    parser.add_argument("--jit", action="store_true", help="compile train steps with XLA (train.jit_compile)")
    parser.add_argument("--strategy", default="auto", help="tf.distribute strategy: auto, default, one-device, "
                                                            "mirrored, multi-worker (from TF_CONFIG)")
    parser.add_argument("--data-service", metavar="grpc://HOST:PORT",
                        help="feed training through a tf.data service dispatcher (see chordkeras.dataservice)")
    parser.add_argument("--no-export", action="store_true",
                        help="skip the SavedModel (the .keras model and its card are still written)")
    parser.add_argument("--formats", metavar="FORMATS",
                        help="also write these app formats beside the SavedModel at the end, comma-separated: "
                        "tflite, onnx, coreml (as python -m chordkeras.export does; needs .[export])")
    parser.add_argument("--quantize", choices=("none", "float16", "int8"), default="none",
                        help="weights of the --formats files (default none: float32)")
    parser.add_argument("--verbose", type=int, default=2, choices=(0, 1, 2), help="Keras verbosity (default 2)")
    cli.add_debug_flag(parser)
    return parser


def resolve_config(args: argparse.Namespace) -> config_lib.RunConfig:
    overrides = list(args.overrides)
    if args.epochs is not None:
        overrides.append(f"train.epochs={args.epochs}")
    if args.fixed_epochs:
        overrides.append("train.early_stopping=false")
    if args.mixed_precision:
        overrides.append(f"train.mixed_precision={args.mixed_precision}")
    if args.jit:
        overrides.append("train.jit_compile=true")
    return config_lib.resolve(args.preset, overrides)


def _weights(mix: str | None, count: int) -> list[float] | None:
    if mix is None:
        return None
    try:
        weights = [float(w) for w in mix.split(",")]
    except ValueError:
        raise ValueError(f"--mix {mix!r}: give one number per --data, e.g. 1,3") from None
    if len(weights) != count or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"--mix {mix!r}: give {count} non-negative weight(s), one per --data, not all 0")
    return weights


def default_run_dir(dataset_dir: pathlib.Path, preset: str) -> pathlib.Path:
    """runs/<dataset>-<preset>, or the first of -2, -3, ... that holds no finished run.

    An unfinished run with the same config in that folder is resumed by `train.train`.
    """
    base = pathlib.Path("runs") / f"{dataset_dir.name}-{preset.replace(',', '+')}"
    run_dir, n = base, 1
    while (run_dir / "test_metrics.json").exists():
        n += 1
        run_dir = base.with_name(f"{base.name}-{n}")
    return run_dir


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = sys.argv if argv is None else ["python", "-m", "chordkeras.fit", *argv]
    try:
        return cli.run("chordkeras.fit", cli.debug_requested(args), lambda: _main(args, command))
    except KeyboardInterrupt:
        print("chordkeras.fit: interrupted; run the same command again to resume from the last finished epoch",
              file=sys.stderr)
        return 130


def _main(args: argparse.Namespace, command: list[str]) -> int:
    config = resolve_config(args)
    app_formats = [f.strip() for f in (args.formats or "").split(",") if f.strip()]
    if app_formats:
        if args.no_export:
            raise ValueError("--formats needs the export: drop --no-export")
        from chordkeras import formats

        for fmt in app_formats:  # a typo or a missing converter stops the run before training, not after
            formats.file_name(fmt, args.quantize)
            formats.require(fmt)
    named = args.data or [BUILT_IN]
    weights = _weights(args.mix, len(named))
    # Imported once the arguments are good: --help and argument errors need no TensorFlow.
    from chordkeras import defaults, train

    built_in = None
    if BUILT_IN in named or BUILT_IN in args.validate_on:
        built_in = defaults.default_dataset(pathlib.Path(args.root) / DEFAULT_DATASET, config.features,
                                            num_songs=args.synth_songs)
    folders = [built_in if name == BUILT_IN else pathlib.Path(name) for name in named]
    validate_on = [built_in if name == BUILT_IN else pathlib.Path(name) for name in args.validate_on] or None
    if validate_on is not None:
        outside = [str(v) for v in validate_on if str(v) not in {str(f) for f in folders}]
        if outside:
            raise ValueError(f"--validate-on {', '.join(outside)}: not among the --data datasets")
    run_name = "+".join(f.name for f in folders) + ("-finetuned" if args.init_from else "")
    run_dir = pathlib.Path(args.run_dir) if args.run_dir else default_run_dir(pathlib.Path(run_name), args.preset)
    dataset = folders[0] if len(folders) == 1 else folders
    result = train.train(config, dataset, run_dir, weights=weights, validate_on=validate_on,
                         init_from=args.init_from, strategy=args.strategy, data_service=args.data_service,
                         command=command, export=not args.no_export, verbose=args.verbose)
    print(f"chordkeras.fit: run folder {result.run_dir.resolve()}")
    if result.export_dir:
        print(f"chordkeras.fit: exported model {result.export_dir.resolve()} "
              f"(python -m chordkeras.predict {result.export_dir} song.wav)")
        if app_formats:
            from chordkeras import export

            for name in export.write_formats(result.export_dir, app_formats, args.quantize):
                print(f"chordkeras.fit: wrote {result.export_dir / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
