import copy
import json
import os
import pathlib
import socket
import subprocess
import sys
import time
import types

import keras
import keras_tuner as kt
import numpy as np
import pytest
import tensorflow as tf

from chordkeras import config as config_lib
from chordkeras import export, train
from tuning import search, space
from tuning import tuner as tuner_lib
from tuning.hypermodel import ChordHyperModel, trial_callbacks

pytestmark = pytest.mark.slow  # real searches


# Everything but a few cheap hyperparameters is pinned, so a trial is one epoch of a small conv net
# (no recurrent layer: tracing a GRU costs more than the rest of a trial). Still
# tuned: dropout, learning_rate, lr_schedule, batch_size and pitch_shift (two data hyperparameters,
# so trials rebuild their pipelines).
PINNED = ["model.architecture=crnn", "model.conv_filters=[8]", "model.pool_frequency=[4]", "model.rnn_units=16",
          "model.rnn_layers=0", "data.excerpt_seconds=2", "data.epoch_coverage=5", "train.mixed_precision=off"]
SETS = [arg for item in PINNED for arg in ("--set", item)]


def _args(data, directory, *extra):
    return ["--data", str(data), "--directory", str(directory), "--project-name", "search", "--preset", "tiny",
            *SETS, "--epochs", "1", "--verbose", "0", *extra]


@pytest.fixture(scope="module")
def finished_search(tiny_data, tmp_path_factory):
    directory = tmp_path_factory.mktemp("tuning")
    code = search.main(_args(tiny_data, directory, "--tuner", "random", "--max-trials", "2"))
    return code, directory / "search"


def _trial_files(project):
    return {p.relative_to(project): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(project.glob("trial_*/*")) if p.is_file()}


# The search space --------------------------------------------------------------------------------


def test_hyperparameter_values_map_onto_the_config():
    base = config_lib.resolve("default")
    hp = kt.HyperParameters()
    hp.values.update({"architecture": "transformer", "conv_width": 8, "transformer_dim": 64, "transformer_layers": 3,
                      "dropout": 0.3, "learning_rate": 0.004, "lr_schedule": "cosine", "excerpt_seconds": 5.0,
                      "batch_size": 16, "pitch_shift": "pm2"})
    config = space.trial_config(hp, base)
    assert config.model.architecture == "transformer"
    assert config.model.conv_filters == (8, 16)  # two blocks as in the base, widths doubling
    assert config.model.pool_frequency == base.model.pool_frequency
    assert (config.model.transformer_dim, config.model.transformer_layers) == (64, 3)
    assert config.model.dropout == 0.3
    assert (config.train.learning_rate, config.train.lr_schedule) == (0.004, "cosine")
    assert (config.data.excerpt_seconds, config.data.batch_size) == (5.0, 16)
    assert (config.data.shift_min, config.data.shift_max) == (-2, 2)
    # The CRNN sizes are registered but inactive: the base values stay.
    assert "rnn_units" not in hp.values and config.model.rnn_units == base.model.rnn_units
    assert {"rnn_units", "rnn_layers"} <= {p.name for p in hp.space}
    # Everything else is the base config.
    assert config.train.epochs == base.train.epochs and config.features == base.features


def test_pinned_keys_are_not_tuned():
    overrides = ["batch_size=8", "model.architecture=crnn", "data.shift_min=0"]
    fixed = space.fixed_keys(overrides)
    assert fixed == {"data.batch_size", "model.architecture", "data.shift_min"}
    base = config_lib.resolve("default", overrides)
    hp = kt.HyperParameters()
    config = space.trial_config(hp, base, fixed)
    names = {p.name for p in hp.space}
    assert not names & {"batch_size", "architecture", "pitch_shift", "transformer_dim", "transformer_layers"}
    assert {"rnn_units", "rnn_layers", "learning_rate", "excerpt_seconds"} <= names
    assert config.data.batch_size == 8 and config.data.shift_min == 0
    with pytest.raises(ValueError, match="use section.key"):
        space.fixed_keys(["nonsense=1"])


def test_pipelines_are_rebuilt_only_when_a_data_hyperparameter_changes(tiny_data):
    base = config_lib.resolve("tiny", PINNED)
    hypermodel = ChordHyperModel(base, tiny_data, space.fixed_keys(PINNED))
    hp = kt.HyperParameters()
    hp.values.update({"batch_size": 16, "dropout": 0.1})
    first = hypermodel.datasets(hypermodel.config(hp))
    hp.values["dropout"] = 0.4  # a model hyperparameter: same pipelines
    assert hypermodel.datasets(hypermodel.config(hp)) is first
    hp.values["batch_size"] = 32
    second = hypermodel.datasets(hypermodel.config(hp))
    assert second is not first and hypermodel.datasets_built == 2
    assert (first.steps_per_epoch, second.steps_per_epoch) == (8 * 8 // 16, 8 * 8 // 32)


def test_callbacks_survive_the_tuners_deepcopy(tmp_path):
    config = config_lib.resolve("default", ["train.lr_schedule=plateau"])
    per_trial = trial_callbacks(config, steps_per_epoch=3, trial_dir=tmp_path)
    kinds = [type(c) for c in per_trial]
    assert train.Throughput in kinds and keras.callbacks.EarlyStopping in kinds
    stopping = next(c for c in per_trial if isinstance(c, keras.callbacks.EarlyStopping))
    assert (stopping.monitor, stopping.patience) == ("val_chord_accuracy", config.train.patience)
    # Everything chordkeras.fit uses, plus the trial callbacks: keras-tuner deep-copies the callbacks
    # given to search() once per trial.
    callbacks = [keras.callbacks.TerminateOnNaN(), *per_trial,
                 *train._callbacks(config, tmp_path / "run", 3, chief=True, verbose=0)]
    copies = copy.deepcopy(callbacks)
    assert [type(c) for c in copies] == [type(c) for c in callbacks]
    throughput = next(c for c in copies if isinstance(c, train.Throughput))
    throughput.on_epoch_begin(0)
    assert throughput._start is not None
    assert next(c for c in callbacks if isinstance(c, train.Throughput))._start is None


# Searching ---------------------------------------------------------------------------------------


def test_search_runs_its_trials_writes_results_and_exports_the_best_model(finished_search):
    code, project = finished_search
    assert code == 0
    trials = json.loads((project / "summary.json").read_text())
    assert [t["status"] for t in trials] == ["COMPLETED", "COMPLETED"]
    assert sorted(t["trial_id"] for t in trials) == ["0", "1"]
    assert trials[0]["score"] >= trials[1]["score"] and trials[0]["rank"] == 1
    assert {t["tuner_id"] for t in trials} == {"tuner0"}
    assert set(trials[0]["hyperparameters"]) == {"dropout", "learning_rate", "lr_schedule", "batch_size",
                                                 "pitch_shift"}
    assert trials[0]["score"] == trials[0]["metrics"]["val_chord_accuracy"]
    header = (project / "summary.csv").read_text().splitlines()[0].split(",")
    assert header[:4] == ["rank", "trial_id", "status", "score"] and "val_chord_accuracy" in header
    for trial_id in ("0", "1"):
        history = (project / f"trial_{trial_id}" / "history.csv").read_text().strip().splitlines()
        assert len(history) == 2  # header + the one epoch
        assert "excerpts_per_s" in history[0]

    best = json.loads((project / "best" / "config.json").read_text())
    assert best["trial_id"] == trials[0]["trial_id"]
    assert best["config"]["train"]["learning_rate"] == pytest.approx(trials[0]["hyperparameters"]["learning_rate"])
    assert best["config"]["data"]["batch_size"] == trials[0]["hyperparameters"]["batch_size"]
    export_dir = project / "best" / "export"
    card = json.loads((export_dir / export.MODEL_CARD).read_text())
    assert card["config"] == best["config"]
    assert card["metrics"]["val_chord_accuracy"] == pytest.approx(trials[0]["score"])
    assert "majmin" in card["metrics"] and "frame_chord_accuracy" in card["metrics"]
    assert (export_dir / export.KERAS_FILE).exists()

    serve = export.load_saved_model(export_dir)
    audio = np.random.default_rng(0).uniform(-0.5, 0.5, 22050).astype(np.float32)
    out = serve(audio=tf.constant(audio), sample_rate=tf.constant(22050))
    frames = 1 + audio.size // 2048
    assert out["probabilities"].shape == (frames, 170)
    np.testing.assert_allclose(out["probabilities"].numpy().sum(axis=-1), 1.0, atol=1e-5)
    assert out["labels"].shape == (frames,)


def test_a_second_invocation_resumes_without_repeating_finished_trials(finished_search, tiny_data, capsys):
    code, project = finished_search
    assert code == 0
    before = _trial_files(project)
    code = search.main(_args(tiny_data, project.parent, "--tuner", "random", "--max-trials", "3", "--no-export"))
    assert code == 0
    after = _trial_files(project)
    # Trials 0 and 1 are untouched; only trial 2 ran.
    assert {k: v for k, v in after.items() if k.parts[0] != "trial_2"} == before
    assert {k.parts[0] for k in after} == {"trial_0", "trial_1", "trial_2"}
    trials = json.loads((project / "summary.json").read_text())
    assert sorted(t["trial_id"] for t in trials) == ["0", "1", "2"]
    assert all(t["status"] == "COMPLETED" for t in trials)
    assert not (project / "best" / "export" / export.SAVED_MODEL).exists()  # --no-export
    # A search folder is only resumed by the same search.
    capsys.readouterr()
    assert search.main(_args(tiny_data, project.parent, "--tuner", "random", "--set", "train.seed=1")) == 2
    assert "another config" in capsys.readouterr().err


def test_retraining_trains_the_best_configuration_with_the_full_epochs(tiny_data, tmp_path, monkeypatch):
    calls = []

    def fake_train(config, dataset_dir, run_dir, **kwargs):
        calls.append((config, dataset_dir, run_dir, kwargs))
        return train.FitResult(run_dir=run_dir, history={}, test_metrics={}, export_dir=run_dir / "export")

    monkeypatch.setattr(train, "train", fake_train)
    base = config_lib.resolve("tiny", PINNED + ["train.epochs=1"])
    hypermodel = ChordHyperModel(base, tiny_data, space.fixed_keys(PINNED))
    hp = kt.HyperParameters()
    hp.values.update({"learning_rate": 0.005, "batch_size": 32})
    trial = types.SimpleNamespace(trial_id="7", hyperparameters=hp)
    options = tuner_lib.SearchOptions(retrain=True, retrain_epochs=30, saved_model=False, verbose=0)
    export_dir = tuner_lib.retrain_best(trial, hypermodel, tmp_path / "search", options)
    (config, dataset_dir, run_dir, kwargs), = calls
    assert config.train.epochs == 30 and config.train.learning_rate == 0.005 and config.data.batch_size == 32
    assert (config.model.conv_filters, config.model.rnn_layers) == ((8,), 0)  # pinned
    assert (str(dataset_dir), run_dir, kwargs["export"]) == (str(tiny_data), tmp_path / "search" / "best-retrained-7",
                                                             False)
    assert export_dir == run_dir / "export"


# Distributed search ------------------------------------------------------------------------------


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_chief_and_a_worker_process_share_one_search(tiny_data, tmp_path):
    port = _free_port()
    argv = [sys.executable, "-m", "tuning.search",
            *_args(tiny_data, tmp_path / "tuning", "--tuner", "random", "--max-trials", "2", "--no-export",
                  "--verbose", "2")]
    # `tuning` is not installed: `python -m tuning.search` runs from the repository, whose root goes on the path
    # (the processes work in tmp_path so that their outputs stay there).
    root = str(pathlib.Path(__file__).resolve().parents[1])
    env = {**os.environ, "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(port),
           "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])}
    logs = {name: (tmp_path / f"{name}.log").open("w") for name in ("chief", "worker")}
    processes = {}
    try:
        for name, tuner_id in (("chief", "chief"), ("worker", "worker-a")):
            processes[name] = subprocess.Popen(argv, env={**env, "KERASTUNER_TUNER_ID": tuner_id}, cwd=tmp_path,
                                               stdout=logs[name], stderr=subprocess.STDOUT)
        # The worker asks the chief for trials until it has none left; then the chief summarises.
        # A chief that fails would leave the worker waiting for it: fail at once instead.
        deadline = time.monotonic() + 300
        while processes["worker"].poll() is None and time.monotonic() < deadline:
            assert processes["chief"].poll() in (None, 0), (tmp_path / "chief.log").read_text()[-3000:]
            time.sleep(0.5)
        assert processes["worker"].poll() == 0, (tmp_path / "worker.log").read_text()[-3000:]
        assert processes["chief"].wait(timeout=120) == 0, (tmp_path / "chief.log").read_text()[-3000:]
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
        for log in logs.values():
            log.close()
    chief_log, worker_log = ((tmp_path / f"{name}.log").read_text() for name in ("chief", "worker"))
    project = tmp_path / "tuning" / "search"
    # The chief ran the oracle (it handed out both trials and wrote the results) and ran no trial.
    assert "chief chief" in chief_log and chief_log.count("Search: Running Trial") == 2
    assert "excerpts/s" not in chief_log
    # The worker ran both trials.
    assert "worker worker-a" in worker_log and worker_log.count("excerpts/s") == 2
    trials = json.loads((project / "summary.json").read_text())
    assert [t["status"] for t in trials] == ["COMPLETED", "COMPLETED"]
    assert {t["tuner_id"] for t in trials} == {"worker-a"}
    assert (project / "chief.json").exists() and (project / "worker-a.json").exists()
    assert (project / "best" / "export" / export.KERAS_FILE).exists()
