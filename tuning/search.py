"""`python -m tuning.search`: hyperparameter search for chordkeras models with keras-tuner.

Every trial is a chordkeras training run (the same dataset pipeline, model builder and train_step as
`python -m chordkeras.fit`) with hyperparameters from `tuning.space`; the objective is the validation
chord accuracy, maximised. Running the same command again resumes the search: finished trials are
kept, an interrupted one is run again. At the end the trials are summarised (printed, and written
as summary.json/summary.csv) and the best model is exported under <directory>/<project>/best/export.

Config keys given with --set are held fixed and left out of the search.

Examples:
    python -m tuning.search --data tfrecords/mysongs
    python -m tuning.search --data tfrecords/mysongs --tuner bayesian --max-trials 30 --epochs 20
    python -m tuning.search --data tfrecords/mysongs --set model.architecture=crnn --retrain

Distributed (one chief running the oracle, any number of workers running trials, one shared folder):
    KERASTUNER_TUNER_ID=chief KERASTUNER_ORACLE_IP=10.0.0.1 KERASTUNER_ORACLE_PORT=8000 \\
        python -m tuning.search --data tfrecords/mysongs --directory /shared/tuning
    KERASTUNER_TUNER_ID=tuner0 KERASTUNER_ORACLE_IP=10.0.0.1 KERASTUNER_ORACLE_PORT=8000 \\
        python -m tuning.search --data tfrecords/mysongs --directory /shared/tuning
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys

from chordkeras import config as config_lib


def build_parser() -> argparse.ArgumentParser:
    from tuning import space, tuner

    tuned = "\n".join(f"  {t.name:<19} {', '.join(t.keys)}" + (f" ({t.architecture} only)" if t.architecture else "")
                      for t in space.SPACE)
    parser = argparse.ArgumentParser(prog="python -m tuning.search", description=__doc__.split("\n\n", 1)[0],
                                     epilog=f"Hyperparameters and the config keys they set:\n{tuned}",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="prepared dataset folder tfrecords/<name> (default: the built-in synthetic "
                                       "data, as chordkeras.fit)")
    parser.add_argument("--root", default="tfrecords", help="where the built-in dataset is cached (default: tfrecords)")
    parser.add_argument("--tuner", default="hyperband", choices=sorted(tuner.TUNERS),
                        help="search algorithm (default: hyperband)")
    parser.add_argument("--max-trials", type=int,
                        help=f"trials at most (default: {tuner.DEFAULT_MAX_TRIALS} for random and bayesian; "
                             "hyperband: as many as its brackets need)")
    parser.add_argument("--epochs", type=int, help="maximum epochs per trial (default: train.epochs of the preset)")
    parser.add_argument("--factor", type=int, default=3, help="hyperband reduction factor (default: 3)")
    parser.add_argument("--hyperband-iterations", type=int, default=1,
                        help="hyperband sweeps over all brackets (default: 1)")
    parser.add_argument("--directory", default=tuner.DEFAULT_DIRECTORY,
                        help=f"parent of the search folder (default: {tuner.DEFAULT_DIRECTORY})")
    parser.add_argument("--project-name",
                        help="search folder name (default: <dataset>-<tuner>); the same name resumes")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete an existing search folder of that name and start again (default: resume)")
    parser.add_argument("--preset", default="default",
                        help=f"comma-separated config presets: {', '.join(config_lib.PRESETS)} (default: default)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="config override, repeatable; the key is then fixed, not tuned")
    parser.add_argument("--retrain", action="store_true",
                        help="retrain the best configuration from scratch with the preset's epochs and early "
                             "stopping (as chordkeras.fit) instead of exporting the best trial's weights")
    parser.add_argument("--no-export", action="store_true",
                        help="skip the SavedModel (the .keras model and its card are still written)")
    parser.add_argument("--verbose", type=int, default=2, choices=(0, 1, 2), help="Keras verbosity (default 2)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from chordkeras import defaults, fit
    from tuning import space, tuner

    try:
        base = config_lib.resolve(args.preset, args.overrides)
        fixed = space.fixed_keys(args.overrides)
        search_base = base
        if args.epochs is not None:
            search_base = dataclasses.replace(base, train=dataclasses.replace(base.train, epochs=args.epochs))
        for name in ("max_trials", "epochs", "factor", "hyperband_iterations"):
            value = getattr(args, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1 (got {value})")
        if args.data:
            dataset_dir = pathlib.Path(args.data)
        else:
            dataset_dir = defaults.default_dataset(pathlib.Path(args.root) / fit.DEFAULT_DATASET, base.features)
        options = tuner.SearchOptions(
            tuner=args.tuner,
            max_trials=args.max_trials,
            directory=args.directory,
            project_name=args.project_name or f"{dataset_dir.name}-{args.tuner}",
            overwrite=args.overwrite,
            fixed=fixed,
            factor=args.factor,
            hyperband_iterations=args.hyperband_iterations,
            retrain=args.retrain,
            retrain_epochs=base.train.epochs,
            saved_model=not args.no_export,
            verbose=args.verbose,
        )
        result = tuner.run_search(search_base, dataset_dir, options)
    except ValueError as e:
        print(f"tuning.search: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tuning.search: interrupted; run the same command again to resume the search", file=sys.stderr)
        return 130
    if result.role == "worker":
        return 0
    if result.export_dir is None:
        return 1
    print(f"tuning.search: summary {result.project_dir.resolve() / 'summary.csv'}; "
          f"python -m chordkeras.predict {result.export_dir} song.wav")
    return 0


if __name__ == "__main__":
    sys.exit(main())
