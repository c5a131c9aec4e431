"""The library function behind `python -m tuning.search`: run (or resume) a search, summarise, export.

A search folder `<directory>/<project_name>/` holds keras-tuner's files (oracle.json, one
`trial_<id>/` per trial with trial.json, the best epoch's weights, and here also history.csv and
tuner.json naming the tuner that ran it), search.json (the base config and dataset, checked when a
search resumes), summary.json / summary.csv (all trials, best first), and best/ (config.json,
test_metrics.json and export/: the best trial's model exported like `chordkeras.fit` exports).

Distributed search uses keras-tuner's chief/worker mechanism: with KERASTUNER_ORACLE_IP,
KERASTUNER_ORACLE_PORT and KERASTUNER_TUNER_ID set, the process whose tuner id contains "chief"
runs the oracle (a gRPC server) and runs no trials; every other process is a worker that asks the
chief for trials and runs them. All of them must see the same search folder (a shared file system).
When the last worker is done, the chief writes the summary and exports the best model.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import pathlib
import socket
from typing import Any, Sequence

import keras
import keras_tuner as kt

from chordkeras import files, records
from chordkeras.config import RunConfig
from tuning import space
from tuning.hypermodel import ChordHyperModel

DEFAULT_DIRECTORY = "runs/tuning"
# Trials of random and Bayesian search when no --max-trials is given (Hyperband's budget comes from
# its epochs and reduction factor).
DEFAULT_MAX_TRIALS = 20
SEARCH_FILE = "search.json"
TRIAL_TAG = "tuner.json"


@dataclasses.dataclass(frozen=True)
class SearchOptions:
    """How to search (the model and data settings are in the RunConfig).

    Attributes:
        tuner: 'hyperband', 'bayesian' or 'random'.
        max_trials: Trials at most; None: DEFAULT_MAX_TRIALS for random/Bayesian, no cap for Hyperband.
        directory: Parent folder of the search folder.
        project_name: The search folder's name.
        overwrite: Start afresh instead of resuming an existing search folder (ignored by workers).
        fixed: Config keys held fixed (not tuned).
        factor, hyperband_iterations: Hyperband's reduction factor and number of sweeps.
        retrain: Retrain the best configuration with `chordkeras.train.train` (as `chordkeras.fit`
            does, in best-retrained-<trial>/) instead of exporting the best trial's weights.
        retrain_epochs: Maximum epochs of that retraining; None: the base config's train.epochs.
        saved_model: Write the SavedModel in the export (the .keras model and card are always written).
        verbose: Keras verbosity for the trials.
    """

    tuner: str = "hyperband"
    max_trials: int | None = None
    directory: str = DEFAULT_DIRECTORY
    project_name: str = "chordkeras"
    overwrite: bool = False
    fixed: frozenset[str] = frozenset()
    factor: int = 3
    hyperband_iterations: int = 1
    retrain: bool = False
    retrain_epochs: int | None = None
    saved_model: bool = True
    verbose: int = 2


@dataclasses.dataclass
class SearchResult:
    """What a search invocation produced (a worker only runs trials: no summary, no export)."""

    project_dir: pathlib.Path
    role: str
    trials: list[dict[str, Any]]
    best_config: RunConfig | None
    export_dir: pathlib.Path | None


def distributed_role() -> str:
    """'single', 'chief' or 'worker', from keras-tuner's environment variables (same rule as keras-tuner)."""
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return "single"
    for name in ("KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID"):
        if name not in os.environ:
            raise ValueError(f"KERASTUNER_ORACLE_IP is set but {name} is not")
    return "chief" if "chief" in os.environ["KERASTUNER_TUNER_ID"] else "worker"


class _TaggedTrials:
    """Tuner mixin: writes tuner.json (tuner id, host, pid) into each trial folder and hands the folder
    to the hypermodel's `fit`, which writes the trial's history.csv there."""

    def run_trial(self, trial, *args, **kwargs):
        trial_dir = pathlib.Path(self.get_trial_dir(trial.trial_id))
        files.write_json_atomic(trial_dir / TRIAL_TAG,
                                  {"tuner_id": self.tuner_id, "host": socket.gethostname(), "pid": os.getpid()})
        return super().run_trial(trial, *args, trial_dir=str(trial_dir), **kwargs)


class HyperbandTuner(_TaggedTrials, kt.Hyperband):
    """keras_tuner.Hyperband with tagged trial folders."""


class BayesianTuner(_TaggedTrials, kt.BayesianOptimization):
    """keras_tuner.BayesianOptimization with tagged trial folders."""


class RandomTuner(_TaggedTrials, kt.RandomSearch):
    """keras_tuner.RandomSearch with tagged trial folders."""


TUNERS = {"hyperband": HyperbandTuner, "bayesian": BayesianTuner, "random": RandomTuner}


def make_tuner(hypermodel: ChordHyperModel, options: SearchOptions) -> kt.Tuner:
    """The keras-tuner tuner named by `options.tuner`, maximising the config's monitor (val_chord_accuracy).

    An existing search folder is reloaded (resumed) unless `options.overwrite`; workers never overwrite.
    """
    if options.tuner not in TUNERS:
        raise ValueError(f"unknown tuner {options.tuner!r}; choose from {sorted(TUNERS)}")
    config = hypermodel.base
    common = dict(
        hypermodel=hypermodel,
        objective=kt.Objective(config.train.monitor, direction="max"),
        # keras-tuner takes a seed of 0 to mean "draw one at random"; + 1 keeps searches reproducible.
        seed=config.train.seed + 1,
        directory=options.directory,
        project_name=options.project_name,
        overwrite=options.overwrite and distributed_role() != "worker",
    )
    if options.tuner == "hyperband":
        tuner = HyperbandTuner(max_epochs=config.train.epochs, factor=options.factor,
                               hyperband_iterations=options.hyperband_iterations, **common)
        if isinstance(tuner.oracle, kt.Oracle):  # workers hold a client of the chief's oracle
            # Hyperband has no max_trials argument; the base oracle's cap stops it all the same.
            tuner.oracle.max_trials = options.max_trials
        return tuner
    return TUNERS[options.tuner](max_trials=options.max_trials or DEFAULT_MAX_TRIALS, **common)


def _check_search_folder(project_dir: pathlib.Path, identity: dict[str, Any], overwrite: bool) -> None:
    path = project_dir / SEARCH_FILE
    if overwrite or not path.exists():
        return
    if files.read_json(path) != identity:
        raise ValueError(f"{project_dir} holds a search with another config, dataset, tuner or fixed keys "
                         f"({path}); choose another --project-name or pass --overwrite")


def run_search(base: RunConfig, dataset_dir: str | os.PathLike, options: SearchOptions,
               callbacks: Sequence[keras.callbacks.Callback] = ()) -> SearchResult:
    """Runs or resumes a hyperparameter search, then summarises it and exports the best model.

    Args:
        base: The configuration every trial starts from; `train.epochs` is the maximum per trial.
        dataset_dir: A prepared dataset folder (`tfrecords/<name>`).
        options: Tuner, budget, folders and what to do with the best trial.
        callbacks: Extra Keras callbacks for every trial; keras-tuner deep-copies them per trial.

    Returns:
        SearchResult; on a worker only the folder and role are set.

    Raises:
        ValueError: bad settings, or the search folder holds another search.
    """
    role = distributed_role()
    project_dir = pathlib.Path(options.directory) / options.project_name
    overwrite = options.overwrite and role != "worker"
    if options.overwrite and role == "worker":
        print("tuning.search: --overwrite is ignored on a worker (the chief owns the search folder)", flush=True)
    # Through JSON, so it compares equal to what a previous invocation wrote (tuples become lists).
    identity = json.loads(json.dumps({"config": base.to_dict(), "dataset": str(pathlib.Path(dataset_dir).resolve()),
                                      "tuner": options.tuner, "fixed": sorted(options.fixed)}))
    _check_search_folder(project_dir, identity, overwrite)

    hypermodel = ChordHyperModel(base, dataset_dir, options.fixed)
    tuner = make_tuner(hypermodel, options)
    if role != "worker":
        project_dir.mkdir(parents=True, exist_ok=True)  # --overwrite has just deleted it
        files.write_json_atomic(project_dir / SEARCH_FILE, identity)
    tuner_id = tuner.tuner_id  # KERASTUNER_TUNER_ID, or keras-tuner's default "tuner0"
    where = ""
    if role != "single":
        where = f" (oracle {os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']})"
    print(f"tuning.search: {options.tuner} search in {project_dir.resolve()}; {role} {tuner_id}{where}; "
          f"tuning {', '.join(t.name for t in space.tuned(base, options.fixed)) or 'nothing'}", flush=True)

    tuner.search(callbacks=[keras.callbacks.TerminateOnNaN(), *callbacks], verbose=options.verbose)
    if role == "worker":
        print(f"tuning.search: worker {tuner_id}: the chief has no more trials", flush=True)
        return SearchResult(project_dir, role, [], None, None)

    trials = trial_summary(tuner)
    write_summary(project_dir, trials)
    print(format_summary(trials, tuner.oracle.objective.name), flush=True)
    best = [t for t in tuner.oracle.get_best_trials(1) if t.status == "COMPLETED"]
    if not best:
        print(f"tuning.search: no trial completed; see trial.json in {project_dir}/trial_*", flush=True)
        return SearchResult(project_dir, role, trials, None, None)
    best_trial = best[0]
    best_config = hypermodel.config(best_trial.hyperparameters)
    if options.retrain:
        export_dir = retrain_best(best_trial, hypermodel, project_dir, options)
    else:
        export_dir = export_best(tuner, best_trial, hypermodel, project_dir, options)
    print(f"tuning.search: best trial {best_trial.trial_id} ({tuner.oracle.objective.name} {best_trial.score:.4f}); "
          f"exported model {export_dir.resolve()}", flush=True)
    return SearchResult(project_dir, role, trials, best_config, export_dir)


def trial_summary(tuner: kt.Tuner) -> list[dict[str, Any]]:
    """One row per trial, best first: id, status, score, the tuner that ran it, hyperparameters, metrics."""
    oracle = tuner.oracle
    trials = oracle.get_best_trials(len(oracle.trials))
    rows = []
    for rank, trial in enumerate(trials, 1):
        tag_path = pathlib.Path(tuner.get_trial_dir(trial.trial_id)) / TRIAL_TAG
        tag = files.read_json(tag_path) if tag_path.exists() else {}
        values = dict(trial.hyperparameters.values)
        row = {
            "rank": rank if trial.status == "COMPLETED" else None,
            "trial_id": trial.trial_id,
            "status": trial.status,
            "score": trial.score,
            "tuner_id": tag.get("tuner_id"),
            # Hyperband's bookkeeping: epochs trained up to, and the trial whose weights it continued.
            "epochs": values.pop("tuner/epochs", None),
            "from_trial": values.pop("tuner/trial_id", None),
            "hyperparameters": {k: v for k, v in values.items() if not k.startswith("tuner/")},
            "metrics": {name: trial.metrics.get_best_value(name) for name in sorted(trial.metrics.metrics)},
        }
        rows.append(row)
    return rows


def write_summary(project_dir: pathlib.Path, trials: list[dict[str, Any]]) -> None:
    """summary.json (rows as they are) and summary.csv (hyperparameters and metrics as columns)."""
    files.write_json_atomic(project_dir / "summary.json", trials)
    hp_names = sorted({k for t in trials for k in t["hyperparameters"]})
    metric_names = sorted({k for t in trials for k in t["metrics"]})
    head = ["rank", "trial_id", "status", "score", "tuner_id", "epochs", "from_trial"]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(head + hp_names + metric_names)
    for t in trials:
        writer.writerow([t[k] for k in head] + [t["hyperparameters"].get(k) for k in hp_names]
                        + [t["metrics"].get(k) for k in metric_names])
    files.write_text_atomic(project_dir / "summary.csv", out.getvalue())


def format_summary(trials: list[dict[str, Any]], objective: str, limit: int = 10) -> str:
    """The best `limit` trials as a plain-text table."""
    hp_names = sorted({k for t in trials[:limit] for k in t["hyperparameters"]})
    hyperband = any(t["epochs"] for t in trials)
    head = ["rank", "trial", objective, "tuner"] + (["epochs", "from"] if hyperband else []) + hp_names
    rows = []
    for t in trials[:limit]:
        row = [t["rank"] or "-", t["trial_id"], _cell(t["score"]) if t["status"] == "COMPLETED" else t["status"],
               t["tuner_id"] or "-"]
        if hyperband:
            row += [t["epochs"] or "-", t["from_trial"] or "-"]
        rows.append([str(c) for c in row + [_cell(t["hyperparameters"].get(k)) for k in hp_names]])
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    lines = [f"Best trials ({len([t for t in trials if t['status'] == 'COMPLETED'])} completed of {len(trials)}):",
             "  ".join(str(h).ljust(w) for h, w in zip(head, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if not math.isnan(value) else "nan"
    return str(value)


def export_best(tuner: kt.Tuner, trial, hypermodel: ChordHyperModel, project_dir: pathlib.Path,
                options: SearchOptions) -> pathlib.Path:
    """Reloads the best trial's best-epoch weights, scores them on the test split and exports them.

    The steps are those that end `chordkeras.train.train`: frame metrics from the model's own
    test_step, the export (SavedModel taking raw audio, model.keras, model card), then mir_eval
    scores of the exported model on the test split written into the card.
    """
    from chordkeras import train as train_lib

    config = hypermodel.config(trial.hyperparameters)
    model = tuner.load_model(trial)
    out = project_dir / "best"
    out.mkdir(parents=True, exist_ok=True)
    files.write_json_atomic(out / "config.json", {
        "config": config.to_dict(), "dataset": hypermodel.dataset_dir, "trial_id": trial.trial_id,
        "hyperparameters": trial.hyperparameters.values})
    validation = {name: trial.metrics.get_best_value(name) for name in trial.metrics.metrics
                  if name.startswith("val_")}
    test_metrics = train_lib.frame_metrics(model, hypermodel.dataset_dir, "test", config)
    export_dir = train_lib.export_and_score(model, config, hypermodel.dataset_dir, out / "export", test_metrics,
                                            data_info=records.read_dataset_info(hypermodel.dataset_dir),
                                            saved_model=options.saved_model, card_metrics=validation)
    files.write_json_atomic(out / "test_metrics.json", test_metrics)
    return export_dir


def retrain_best(trial, hypermodel: ChordHyperModel, project_dir: pathlib.Path, options: SearchOptions) -> pathlib.Path:
    """Trains the best trial's configuration from scratch with `chordkeras.train.train` (as `chordkeras.fit`)."""
    from chordkeras import train as train_lib

    config = hypermodel.config(trial.hyperparameters)
    if options.retrain_epochs is not None:
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, epochs=options.retrain_epochs))
    run_dir = project_dir / f"best-retrained-{trial.trial_id}"
    result = train_lib.train(config, hypermodel.dataset_dir, run_dir, export=options.saved_model,
                             verbose=options.verbose,
                             command=["python", "-m", "tuning.search", "(retraining trial", trial.trial_id + ")"])
    return result.export_dir
