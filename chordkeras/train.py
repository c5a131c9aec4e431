"""The library function behind `python -m chordkeras.fit`: one training run in one run folder.

A run folder holds config.json and command.txt (checked when a run resumes), checkpoints/
(best weights by the validation monitor), backup/ (see `Backup`: an interrupted run resumes
at its last finished epoch), logs/ (TensorBoard), history.csv, training_curves.png, test
metrics, and export/ (SavedModel taking raw audio, .keras model and model card).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import pathlib
import re
import shutil
import sys
import time
from typing import Any, Sequence

import keras
import tensorflow as tf

from chordkeras import dataset as dataset_lib
from chordkeras import dataservice, devices, files, inference, records
from chordkeras import export as export_lib
from chordkeras import model as model_lib
from chordkeras.config import RunConfig

# Throughput is also given in songs of this length, the unit of the reference training system.
REFERENCE_SONG_MINUTES = 4.0


@dataclasses.dataclass
class FitResult:
    """What a finished run produced."""

    run_dir: pathlib.Path
    history: dict[str, list[float]]
    test_metrics: dict[str, float]
    export_dir: pathlib.Path | None


class Throughput(keras.callbacks.Callback):
    """Adds training speed to each epoch's logs: excerpts/s, audio hours/min, songs/min.

    Time runs from the start of the epoch to the start of its validation, so validation and
    logging are not counted as training time. The input-stall share comes from the model's
    `input_stall` metric (time between steps spent waiting for the next batch).
    """

    def __init__(self, steps_per_epoch: int, batch_size: int, excerpt_seconds: float):
        super().__init__()
        self.excerpts = steps_per_epoch * batch_size
        self.excerpt_seconds = excerpt_seconds
        self._start = self._train_end = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._train_end = time.perf_counter(), None

    def on_test_begin(self, logs=None):
        if self._start is not None and self._train_end is None:
            self._train_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or self._start is None:
            return
        seconds = (self._train_end or time.perf_counter()) - self._start
        hours_per_min = self.excerpts * self.excerpt_seconds / 3600 / seconds * 60
        logs["excerpts_per_s"] = self.excerpts / seconds
        logs["audio_hours_per_min"] = hours_per_min
        logs["songs_per_min"] = hours_per_min * 60 / REFERENCE_SONG_MINUTES
        stall = logs.get("input_stall")
        print(
            f"epoch {epoch + 1}: {logs['excerpts_per_s']:.1f} excerpts/s, {hours_per_min:.2f} h audio/min "
            f"({logs['songs_per_min']:.0f} {REFERENCE_SONG_MINUTES:.0f}-min songs/min)"
            + (f", input stall {100 * stall:.2f}% of step time" if stall is not None else ""),
            flush=True,
        )


class AverageMovingStatistics(keras.callbacks.Callback):
    """Averages the non-trainable weights (batch-norm moving statistics) over all replicas.

    Keras 3 creates them without an aggregation, so under a tf.distribute strategy every replica
    updates its own copy from its own share of the batch and the workers' models drift apart.
    Averaging them before each validation and at each epoch's end gives every replica the same
    model, estimated from all the data, so validation, checkpoints and the export agree.
    """

    def __init__(self):
        super().__init__()
        self._step = None

    def on_test_begin(self, logs=None):
        self._average()

    def on_epoch_end(self, epoch, logs=None):
        self._average()

    def _average(self):
        strategy = self.model.distribute_strategy
        variables = [w.value for w in self.model.non_trainable_weights if "float" in w.dtype]
        if strategy.num_replicas_in_sync < 2 or not variables:
            return
        if self._step is None:
            @tf.function
            def average_on_replica():
                context = tf.distribute.get_replica_context()
                means = context.all_reduce(tf.distribute.ReduceOp.MEAN, [tf.identity(v) for v in variables])
                for variable, mean in zip(variables, means):
                    variable.assign(mean)

            self._step = average_on_replica
        strategy.run(self._step)


class Backup(keras.callbacks.Callback):
    """The training state (weights and optimizer) after each finished epoch, safe against a kill at any instant.

    Replaces keras.callbacks.BackupAndRestore, which overwrites one HDF5 file in place (a kill during
    the write leaves a file that can no longer be opened, and the run cannot resume) and writes the
    epoch number in a second file afterwards. Here each epoch's state is one file,
    `epoch-NNNNN.weights.h5`, written under a temporary name in the same folder and renamed when
    complete; the two newest are kept, so `restore` falls back to the older one when the newer
    cannot be read. A run that finished training leaves `training_finished.json`, so that a run
    killed afterwards (testing, exporting) does not train again.

    Put it last among the callbacks: the epoch then counts as finished only once every other
    callback (history.csv, best checkpoint) has handled it.
    """

    KEEP = 2
    FINISHED = "training_finished.json"

    def __init__(self, backup_dir: str | os.PathLike):
        super().__init__()
        self.backup_dir = pathlib.Path(backup_dir)

    def generations(self) -> list[tuple[int, pathlib.Path]]:
        """(epochs finished, file) of the backups in the folder, newest first."""
        found = []
        for path in self.backup_dir.glob("epoch-*.weights.h5"):
            match = re.fullmatch(r"epoch-(\d+)\.weights\.h5", path.name)
            if match:
                found.append((int(match.group(1)), path))
        return sorted(found, reverse=True)

    def finished(self) -> bool:
        return (self.backup_dir / self.FINISHED).exists()

    def restore(self, model: keras.Model) -> int:
        """Loads the newest readable backup into `model`; returns the number of epochs it finished (0: none).

        A backup that cannot be read is named on stderr and the older one is used instead.
        """
        for epochs, path in self.generations():
            try:
                model.load_weights(str(path))
            except (OSError, ValueError, KeyError) as e:
                print(f"chordkeras.fit: backup {path} is damaged ({type(e).__name__}: {str(e).splitlines()[0]}); "
                      "falling back to the previous one", file=sys.stderr, flush=True)
                continue
            return epochs
        if self.generations():
            print(f"chordkeras.fit: no backup in {self.backup_dir} could be read; training starts again from "
                  "epoch 1", file=sys.stderr, flush=True)
        return 0

    def on_epoch_end(self, epoch, logs=None):
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        path = self.backup_dir / f"epoch-{epoch + 1:05d}.weights.h5"
        # Keras only writes names ending in .weights.h5: the temporary name keeps the ending.
        tmp = self.backup_dir / f".{path.name}.{os.getpid()}.incomplete.weights.h5"
        self.model.save_weights(str(tmp), overwrite=True)
        files.replace_synced(tmp, path)
        for _, old in self.generations()[self.KEEP:]:
            old.unlink()

    def on_train_end(self, logs=None):
        # Not called when fit is interrupted: only a training run that ended on its own is marked.
        files.write_json_atomic(self.backup_dir / self.FINISHED, {"epochs": self.generations()[0][0]
                                                                     if self.generations() else 0})


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """ModelCheckpoint writing under a temporary name in the same folder, then renaming.

    A kill during the write leaves the previous best checkpoint intact.
    """

    def __init__(self, filepath: str | os.PathLike, **kwargs):
        self.final_path = pathlib.Path(filepath)
        self.tmp_path = self.final_path.with_name(f".{self.final_path.stem}.incomplete.weights.h5")
        super().__init__(str(self.tmp_path), **kwargs)

    def _save_model(self, epoch, batch, logs):
        if self.tmp_path.exists():
            self.tmp_path.unlink()
        super()._save_model(epoch, batch, logs)
        if self.tmp_path.exists():
            files.replace_synced(self.tmp_path, self.final_path)


def resume_history(run_dir: pathlib.Path, epochs_done: int) -> list[dict[str, str]]:
    """Keeps the rows of history.csv for the epochs the backup holds, drops later ones; returns the kept rows.

    A kill after history.csv got an epoch's row but before that epoch's backup was complete would
    otherwise leave the epoch twice in the history once it is trained again.
    """
    path = run_dir / "history.csv"
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        rows = [row for row in reader if row.get("epoch", "").isdigit()]
    kept = [row for row in rows if int(row["epoch"]) < epochs_done]
    if len(kept) != len(rows):
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(kept)
        files.write_text_atomic(path, text.getvalue())
    return kept


def prepare_run_dir(run_dir: pathlib.Path, config: RunConfig, dataset_dir: Any, command: Sequence[str] | None,
                    write: bool) -> bool:
    """Creates the run folder, or checks that an existing one holds the same run; True when resuming.

    `dataset_dir` is the run's data as `data_identity` gives it (or a dataset folder).
    """
    config_path = run_dir / "config.json"
    dataset = str(pathlib.Path(dataset_dir).resolve()) if isinstance(dataset_dir, (str, os.PathLike)) else dataset_dir
    # Through JSON, so tuples compare equal to the lists read back from config.json.
    resolved = json.loads(json.dumps({"config": config.to_dict(), "dataset": dataset}))
    if config_path.exists():
        existing = files.read_json(config_path)
        if existing != resolved:
            raise ValueError(
                f"{run_dir} holds a run with another config or dataset ({config_path}); choose another --run-dir"
            )
        return (run_dir / "backup").exists()
    if write:
        run_dir.mkdir(parents=True, exist_ok=True)
        files.write_json_atomic(config_path, resolved)
        (run_dir / "command.txt").write_text(" ".join(command or sys.argv) + "\n", encoding="utf-8")
    return False


def stopping_callbacks(config: RunConfig, verbose: int, restore_best_weights: bool) -> list[keras.callbacks.Callback]:
    """Learning-rate reduction on plateau and early stopping, as `config.train` asks."""
    train = config.train
    callbacks: list[keras.callbacks.Callback] = []
    if train.lr_schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor=train.monitor, mode="max", factor=train.lr_factor, patience=train.lr_patience,
            min_delta=train.min_delta, verbose=min(verbose, 1)))
    if train.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=train.monitor, mode="max", patience=train.patience, min_delta=train.min_delta,
            restore_best_weights=restore_best_weights, verbose=min(verbose, 1)))
    return callbacks


def _callbacks(config: RunConfig, run_dir: pathlib.Path, steps: int, chief: bool, verbose: int) -> list:
    train = config.train
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.TerminateOnNaN(),
        Throughput(steps, config.data.batch_size, config.data.excerpt_seconds),
        AtomicModelCheckpoint(
            _worker_dir(run_dir, chief) / "checkpoints" / "best.weights.h5",
            monitor=train.monitor, mode="max", save_best_only=True, save_weights_only=True,
            verbose=min(verbose, 1),
        ),
    ]
    callbacks += stopping_callbacks(config, verbose, restore_best_weights=True)
    if chief:
        callbacks += [
            keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
            keras.callbacks.TensorBoard(str(run_dir / "logs"), update_freq="epoch", profile_batch=0),
        ]
    return callbacks


def _shard_by_data(ds: tf.data.Dataset) -> tf.data.Dataset:
    options = tf.data.Options()
    # Shards are few and songs many: every worker runs the whole pipeline and keeps its replicas'
    # parts of each global batch rather than whole files. The training pipeline's parallel stages
    # do not keep order, so the workers' parts come from slightly different draws of excerpts: an
    # epoch is a random sample of excerpts, not a partition of one draw (the tf.data service path
    # splits songs exactly).
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def _skip_symbolic_build(model: keras.Model) -> None:
    """Stops Keras from building an already built model from the first batch of each fit/evaluate.

    Under a strategy, Keras 3 (3.15) first `strategy.reduce`s that batch: MultiWorkerMirroredStrategy
    cannot reduce a nested batch (keras-team/keras#20585), and the whole-song batches of evaluation
    may differ in shape between replicas. It would only build the model and optimizer, built already.
    """
    if not (model.built and model.optimizer.built):
        raise RuntimeError("build the model and its optimizer before skipping Keras's symbolic build")
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None


def _worker_dir(run_dir: pathlib.Path, chief: bool) -> pathlib.Path:
    if chief:
        return run_dir
    task = os.environ.get("TF_CONFIG", "")
    index = json.loads(task).get("task", {}).get("index", 0) if task else 0
    return run_dir / f".worker-{index}"


def check_device_options(config: RunConfig, device: devices.Device) -> None:
    """Refuses switches the device cannot honour, instead of silently ignoring them."""
    if config.train.jit_compile and device.kind == "metal":
        raise ValueError("--jit (XLA) is not supported by tensorflow-metal; train without it on Metal")
    if config.train.mixed_precision == "mixed_bfloat16" and device.kind == "metal":
        raise ValueError("mixed_bfloat16 is not supported by tensorflow-metal; use mixed_float16 or off")


def data_identity(folders: Sequence[str | os.PathLike], weights: Sequence[float] | None,
                  validate_on: Sequence[str | os.PathLike] | None, init_from: str | os.PathLike | None) -> Any:
    """What a run folder records of its data: the dataset folder alone for one dataset trained from scratch."""
    resolved = [str(pathlib.Path(f).resolve()) for f in folders]
    if len(folders) == 1 and init_from is None:
        return resolved[0]
    return {"datasets": resolved, "weights": None if weights is None else [float(w) for w in weights],
            "validate_on": None if validate_on is None else [str(pathlib.Path(f).resolve()) for f in validate_on],
            "init_from": None if init_from is None else str(pathlib.Path(init_from).resolve())}


def warm_start(model: keras.Model, source: str | os.PathLike) -> pathlib.Path:
    """Copies every weight of a trained model into `model` (same architecture and vocabulary).

    Args:
        model: The freshly built model.
        source: An export folder (its model.keras), a `.keras` file, or a run folder (its export/).

    Returns:
        The `.keras` file the weights came from.

    Raises:
        ValueError: no model there, or its weights do not have the shapes of `model`'s (the
            message names the first that differs).
    """
    path = pathlib.Path(source)
    for candidate in (path, path / export_lib.KERAS_FILE, path / "export" / export_lib.KERAS_FILE):
        if candidate.suffix == ".keras" and candidate.is_file():
            path = candidate
            break
    else:
        raise ValueError(f"{source}: no trained model to start from (an export folder, a run folder or a .keras file)")
    trained = keras.saving.load_model(str(path), compile=False)
    theirs, ours = trained.weights, model.weights
    if len(theirs) != len(ours):
        raise ValueError(f"{path}: {len(theirs)} weights, the model to train has {len(ours)}: another architecture "
                         "(give the same --preset and model settings as the model was trained with)")
    for mine, other in zip(ours, theirs):
        if tuple(mine.shape) != tuple(other.shape):
            raise ValueError(f"{path}: weight {other.path} has shape {tuple(other.shape)}, the model to train needs "
                             f"{tuple(mine.shape)} at {mine.path} (another architecture or vocabulary)")
    for mine, other in zip(ours, theirs):
        mine.assign(tf.cast(other.value, mine.dtype))
    return path


def train(
    config: RunConfig,
    dataset_dir: str | os.PathLike | Sequence[str | os.PathLike],
    run_dir: str | os.PathLike,
    *,
    weights: Sequence[float] | None = None,
    validate_on: Sequence[str | os.PathLike] | None = None,
    init_from: str | os.PathLike | None = None,
    strategy: str = "auto",
    data_service: str | None = None,
    command: Sequence[str] | None = None,
    export: bool = True,
    verbose: int = 2,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> FitResult:
    """Trains a chord model on prepared datasets, evaluates it on the test split and exports it.

    Args:
        config: The resolved run configuration.
        dataset_dir: A prepared dataset folder (`tfrecords/<name>`), or several: training mixes
            their excerpts (see `chordkeras.dataset.make_datasets`).
        run_dir: The run folder; an existing one with the same config resumes.
        weights: Share of training excerpts from each dataset (default: by hours of training audio).
        validate_on: The datasets whose valid splits choose the epoch to keep and whose test
            splits are scored (default: all).
        init_from: A trained model (export folder, run folder or .keras file) whose weights the
            training starts from (fine-tuning); the optimizer starts afresh.
        strategy: tf.distribute strategy name (see `chordkeras.devices.STRATEGIES`).
        data_service: `grpc://host:port` of a tf.data service dispatcher feeding training.
        command: The command line, recorded in the run folder.
        export: Export the SavedModel, .keras file and model card at the end.
        verbose: Keras verbosity (0 silent, 1 progress bar, 2 one line per epoch).
        callbacks: Extra Keras callbacks, run after the built-in ones.

    Returns:
        FitResult with the history, test metrics and export folder. With several validation
        datasets, the test metrics are those of the first, and `datasets` holds each one's.

    Raises:
        ValueError: the config, run folder or dataset does not fit, or a shard is damaged (the
            message names it and says how to rewrite it).
    """
    folders = [dataset_dir] if isinstance(dataset_dir, (str, os.PathLike)) else list(dataset_dir)
    try:
        return _train(config, folders, run_dir, weights=weights, validate_on=validate_on, init_from=init_from,
                      strategy=strategy, data_service=data_service, command=command, export=export, verbose=verbose,
                      callbacks=callbacks)
    except tf.errors.DataLossError as e:
        # TF names only the byte offset ("corrupted record at 94595"): find the shard by reading them all.
        from chordkeras import preparation

        for folder in folders:
            damaged = preparation.damaged_shards(folder)
            if damaged:
                raise ValueError(f"{'; '.join(str(d) for d in damaged)}; to repair, "
                                 f"{preparation.repair_hint(folder)}") from e
        raise


def _train(config: RunConfig, folders, run_dir, *, weights, validate_on, init_from, strategy, data_service, command,
           export, verbose, callbacks) -> FitResult:
    run_dir = pathlib.Path(run_dir)
    keras.utils.set_random_seed(config.train.seed)
    devices.enable_memory_growth()
    device = devices.detect_device()
    check_device_options(config, device)
    dist = devices.make_strategy(strategy, device)
    chief = devices.is_chief(dist)
    policy = devices.set_precision(config.train.mixed_precision, device.kind)
    print(f"chordkeras.fit: training on {device.describe()}; strategy {type(dist).__name__} with "
          f"{dist.num_replicas_in_sync} replica(s); precision {policy}; XLA {'on' if config.train.jit_compile else 'off'}",
          flush=True)
    resuming = prepare_run_dir(run_dir, config, data_identity(folders, weights, validate_on, init_from), command,
                               write=chief)
    print(f"chordkeras.fit: run folder {run_dir.resolve()}" + (" (resuming)" if resuming else ""), flush=True)
    test_folders = list(validate_on) if validate_on is not None else folders

    if data_service:
        # The service's workers run the training pipeline: they open the shards by absolute path
        # (their working directory is not ours) and do not cache (see dataservice.distribute).
        resolved = [pathlib.Path(f).resolve() for f in folders]
        data = dataset_lib.make_datasets(
            resolved, dataclasses.replace(config, data=dataclasses.replace(config.data, cache=False)), weights,
            None if validate_on is None else [resolved[[str(f) for f in folders].index(str(v))] for v in validate_on])
        train_ds = dataservice.distribute(data.train, data_service,
                                          dataservice.job_name(run_dir.name, config.to_json()))
        print(f"chordkeras.fit: training batches come from the tf.data service at {data_service} "
              f"({dataservice.PROCESSING_MODE}, data.cache off)", flush=True)
    else:
        data = dataset_lib.make_datasets(folders, config, weights, validate_on)
        train_ds = _shard_by_data(data.train)
    valid_ds = _shard_by_data(data.valid)
    if len(folders) > 1:
        shares = ", ".join(f"{m['dataset']} {100 * m['weight'] / sum(x['weight'] for x in data.info['mixture']):.0f}%"
                           for m in data.info["mixture"])
        print(f"chordkeras.fit: training excerpts from {shares}; validating on "
              f"{', '.join(str(f) for f in test_folders)}", flush=True)

    class_weights = (dataset_lib.class_weights(data.info, config.data.vocabulary)
                     if config.train.class_weighting else None)
    compile_config = config
    if dist.num_replicas_in_sync > 1 and config.train.steps_per_execution > 1:
        # Keras 3.15's multi-step loop fails under a multi-replica strategy ("You must feed a value
        # for placeholder tensor 'while/cond/...'", keras-team/keras#19246): one step per call.
        print(f"chordkeras.fit: {dist.num_replicas_in_sync} replicas: train.steps_per_execution "
              f"{config.train.steps_per_execution} -> 1", flush=True)
        compile_config = dataclasses.replace(config, train=dataclasses.replace(config.train, steps_per_execution=1))
    with dist.scope():
        model = model_lib.build_model(config, class_weights=class_weights, precision=policy)
        model_lib.compile_model(model, compile_config, data.steps_per_epoch)
        # The optimizer's slots are created here, under the strategy, so Keras has nothing left to build.
        model.optimizer.build(model.trainable_variables)
        if init_from is not None:
            source = warm_start(model, init_from)
            print(f"chordkeras.fit: starting from the weights of {source}", flush=True)
    _skip_symbolic_build(model)
    if verbose:
        print(f"chordkeras.fit: {model.count_params():,} parameters; {data.steps_per_epoch} steps of "
              f"{config.data.batch_size} excerpts per epoch", flush=True)

    # Every worker keeps a backup; only the chief's folder is the run folder, the others write to their own.
    backup = Backup(_worker_dir(run_dir, chief) / "backup")
    epochs_done = backup.restore(model)
    kept_rows = resume_history(run_dir, epochs_done) if chief else []
    if epochs_done:
        print(f"chordkeras.fit: resuming after epoch {epochs_done} from {backup.backup_dir}", flush=True)
    # First, so that backups and checkpoints hold the averaged statistics; the backup last (see Backup).
    all_callbacks = [AverageMovingStatistics()] + _callbacks(config, run_dir, data.steps_per_epoch, chief, verbose)
    # The best value so far comes back from the history, or the resumed run's first epoch would
    # replace a better checkpoint.
    monitored = [float(row[config.train.monitor]) for row in kept_rows if row.get(config.train.monitor)]
    for callback in all_callbacks:
        if isinstance(callback, AtomicModelCheckpoint) and monitored:
            callback.best = max(monitored)
    all_callbacks += list(callbacks) + [backup]
    if backup.finished():
        print("chordkeras.fit: training finished before the interruption; testing and exporting", flush=True)
        history_dict = {k: [float(row[k]) for row in kept_rows] for k in (kept_rows[0] if kept_rows else {})
                        if k != "epoch"}
    else:
        history = model.fit(
            train_ds,
            validation_data=valid_ds,
            epochs=config.train.epochs,
            initial_epoch=epochs_done,
            steps_per_epoch=data.steps_per_epoch,  # the pipeline is endless (see dataset.Datasets)
            callbacks=all_callbacks,
            shuffle=False,  # the pipeline shuffles
            verbose=verbose,
        )
        history_dict = {k: [float(x) for x in v] for k, v in history.history.items()}
    best = _worker_dir(run_dir, chief) / "checkpoints" / "best.weights.h5"
    if best.exists():
        model.load_weights(str(best))

    # model.evaluate is collective under multi-worker strategies: every worker runs it.
    per_dataset = [frame_metrics(model, folder, "test", config) for folder in test_folders]
    export_dir = None
    if chief:
        card_data = " + ".join(str(f) for f in folders)
        export_dir = export_and_score(model, config, test_folders[0], run_dir / "export", per_dataset[0],
                                      data_info=data.info, saved_model=export, data_label=card_data)
        for folder, metrics in zip(test_folders[1:], per_dataset[1:]):
            if metrics:
                scores = inference.evaluate_model_on_records(export_dir, folder, split="test", progress=False)
                metrics.update({k: float(v) for k, v in scores["overall"].items() if isinstance(v, (int, float))})
    test_metrics = per_dataset[0]
    if len(test_folders) > 1:
        test_metrics["datasets"] = {str(f): m for f, m in zip(test_folders, per_dataset)}
    if chief:
        if len(test_folders) > 1:
            export_lib.update_model_card(export_dir, metrics=test_metrics)
        files.write_json_atomic(run_dir / "test_metrics.json", test_metrics)
        _plot_curves(run_dir)
        for folder, metrics in zip(test_folders, per_dataset):
            print(f"chordkeras.fit: test split{f' of {folder}' if len(test_folders) > 1 else ''}: " + ", ".join(
                f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float)), flush=True)
    # The run is complete only now: until here a killed run resumes from the backup.
    shutil.rmtree(backup.backup_dir, ignore_errors=True)
    return FitResult(run_dir=run_dir, history=history_dict, test_metrics=test_metrics, export_dir=export_dir)


def export_and_score(model: keras.Model, config: RunConfig, dataset_dir: str | os.PathLike, out_dir: pathlib.Path,
                     test_metrics: dict[str, Any], *, data_info: dict[str, Any], saved_model: bool = True,
                     card_metrics: dict[str, Any] | None = None, data_label: str | None = None) -> pathlib.Path:
    """Exports the model, then scores the export on the test split of `dataset_dir` with mir_eval.

    The scores are added to `test_metrics` (in place) and, with `card_metrics`, to the model card.
    `data_label` names the training data in the card (default: `dataset_dir`).
    """
    export_dir = export_lib.export_model(model, config, out_dir, metrics={**(card_metrics or {}), **test_metrics},
                                         data_info=data_info, dataset_dir=data_label or str(dataset_dir),
                                         saved_model=saved_model)
    if test_metrics:
        scores = inference.evaluate_model_on_records(export_dir, dataset_dir, split="test", progress=False)
        test_metrics.update({k: float(v) for k, v in scores["overall"].items() if isinstance(v, (int, float))})
        export_lib.update_model_card(export_dir, metrics={**(card_metrics or {}), **test_metrics})
    return export_dir


def frame_metrics(model: keras.Model, dataset_dir: str | os.PathLike, split: str, config: RunConfig) -> dict[str, Any]:
    """The model's own frame-level metrics (test_step) on the whole songs of one split."""
    info = records.read_dataset_info(dataset_dir)
    if info["splits"][split]["songs"] == 0:
        print(f"chordkeras.fit: the {split} split is empty; no test metrics", flush=True)
        return {}
    ds = _shard_by_data(dataset_lib.eval_dataset(dataset_dir, split, config))
    frame = model.evaluate(ds, verbose=0, return_dict=True)
    out = {f"frame_{k}": float(v) for k, v in frame.items()}
    out["songs"] = info["splits"][split]["songs"]
    return out


def _plot_curves(run_dir: pathlib.Path) -> None:
    history_csv = run_dir / "history.csv"
    if not history_csv.exists():
        return
    from chordkeras import plots  # matplotlib loads only here

    plots.plot_training_curves(str(history_csv), str(run_dir / "training_curves.png"))

