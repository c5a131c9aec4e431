import dataclasses
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from chordkeras import config as config_lib
from chordkeras import export, features, fit, preparation, prepare, train
from helpers_data import write_songs

pytestmark = pytest.mark.slow  # real fits and exports


def _config(**train_overrides):
    config = config_lib.resolve("tiny", ["data.excerpt_seconds=2.0", "data.batch_size=8", "data.epoch_coverage=4",
                                         "train.learning_rate=0.01", "train.mixed_precision=off"])
    return dataclasses.replace(config, train=dataclasses.replace(config.train, **train_overrides))


@pytest.fixture(scope="module")
def finished_run(tiny_data, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "run"
    result = train.train(_config(epochs=3), tiny_data, run_dir, verbose=0)
    return result


def test_fit_lowers_the_loss_and_beats_chance(finished_run):
    history = finished_run.history
    assert len(history["loss"]) == 3
    assert history["loss"][-1] < history["loss"][0]
    # Twelve equally likely chords: chance is 1/12.
    assert history["val_chord_accuracy"][-1] > 3 / 12
    for key in ("excerpts_per_s", "audio_hours_per_min", "songs_per_min", "input_stall"):
        assert key in history
    assert 0.0 <= history["input_stall"][-1] < 1.0


def test_run_folder_holds_config_logs_metrics_and_export(finished_run):
    run_dir = finished_run.run_dir
    saved = json.loads((run_dir / "config.json").read_text())
    assert config_lib.RunConfig.from_dict(saved["config"]) == _config(epochs=3)
    assert (run_dir / "command.txt").exists()
    assert len((run_dir / "history.csv").read_text().strip().splitlines()) == 1 + 3
    assert (run_dir / "training_curves.png").stat().st_size > 0
    assert (run_dir / "checkpoints" / "best.weights.h5").exists()
    assert not (run_dir / "backup").exists()  # removed once the run finished
    metrics = json.loads((run_dir / "test_metrics.json").read_text())
    assert {"majmin", "sevenths", "root", "frame_chord_accuracy"} <= set(metrics)
    card = json.loads((finished_run.export_dir / export.MODEL_CARD).read_text())
    assert card["vocabulary"] == "large" and len(card["class_names"]) == 170
    assert card["metrics"]["majmin"] == metrics["majmin"]


def test_saved_model_takes_raw_audio_and_matches_the_keras_model(finished_run):
    export_dir = finished_run.export_dir
    serve = export.load_saved_model(export_dir)
    rng = np.random.default_rng(1)
    sr = 22050
    t = np.arange(3 * sr) / sr
    audio = (0.3 * np.sin(2 * np.pi * 261.63 * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    out = serve(audio=tf.constant(audio), sample_rate=tf.constant(sr))
    frames = 1 + audio.size // 2048
    assert out["probabilities"].shape == (frames, 170)
    assert out["labels"].shape == (frames,)
    np.testing.assert_allclose(out["frame_times"].numpy()[:2], [0.0, 2048 / sr], rtol=1e-6)
    model = keras.models.load_model(export_dir / export.KERAS_FILE)
    spectrogram = features.log_spectrogram(tf.constant(audio), config_lib.RunConfig().features)
    expected = tf.nn.softmax(model(spectrogram[None])["chord"][0]).numpy()
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5)
    # At another sample rate the signature resamples inside the graph to the same frame count.
    audio_44k = np.repeat(audio, 2)
    out_44k = serve(audio=tf.constant(audio_44k), sample_rate=tf.constant(2 * sr))
    assert out_44k["probabilities"].shape == (frames, 170)


class _StopAt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def test_an_interrupted_fit_resumes_from_the_last_finished_epoch(tiny_data, tmp_path):
    run_dir = tmp_path / "run"
    config = _config(epochs=3)
    with pytest.raises(KeyboardInterrupt):
        train.train(config, tiny_data, run_dir, verbose=0, export=False, callbacks=[_StopAt(2)])
    assert (run_dir / "backup").exists()
    epochs_seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            epochs_seen.append(epoch)

    result = train.train(config, tiny_data, run_dir, verbose=0, export=False, callbacks=[Record()])
    assert epochs_seen == [2]
    assert len(result.history["loss"]) == 1
    rows = (run_dir / "history.csv").read_text().strip().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["0", "1", "2"]


def test_a_run_folder_with_another_config_is_refused(tiny_data, finished_run):
    with pytest.raises(ValueError, match="another config"):
        train.train(_config(epochs=4), tiny_data, finished_run.run_dir, verbose=0)


class _OutputsAtStart(keras.callbacks.Callback):
    """Records the model's outputs on a fixed input when training begins, before the first step."""

    def __init__(self, x):
        super().__init__()
        self.x, self.outputs = x, None

    def on_train_begin(self, logs=None):
        self.outputs = {k: v.numpy() for k, v in self.model(self.x, training=False).items()}


def test_a_warm_start_gives_the_source_models_outputs_before_its_first_step(tiny_data, finished_run, tmp_path):
    x = np.random.default_rng(5).random((2, 30, 144)).astype(np.float32)
    source = keras.saving.load_model(str(finished_run.export_dir / export.KERAS_FILE), compile=False)
    expected = {k: v.numpy() for k, v in source(x, training=False).items()}
    probe = _OutputsAtStart(x)
    # From the run folder (its export/ is found), on other data (a mixture with the same dataset twice).
    result = train.train(_config(epochs=1, learning_rate=0.001), [tiny_data, tiny_data], tmp_path / "tuned",
                         weights=[1, 1], init_from=finished_run.run_dir, verbose=0, callbacks=[probe], export=False)
    for name in expected:
        np.testing.assert_allclose(probe.outputs[name], expected[name], atol=1e-5)
    assert len(result.history["loss"]) == 1
    recorded = json.loads((tmp_path / "tuned" / "config.json").read_text())["dataset"]
    assert recorded["init_from"] == str(finished_run.run_dir.resolve()) and recorded["weights"] == [1.0, 1.0]
    # A model of another size is refused, naming the weight that differs.
    other = dataclasses.replace(_config(), model=dataclasses.replace(_config().model, rnn_units=8))
    with pytest.raises(ValueError, match=r"model.keras: weight .* has shape .* the model to train needs"):
        train.train(other, tiny_data, tmp_path / "other", init_from=finished_run.export_dir, verbose=0)
    with pytest.raises(ValueError, match="no trained model to start from"):
        train.train(_config(), tiny_data, tmp_path / "none", init_from=tmp_path, verbose=0)


def test_fit_cli_mixes_datasets_and_validates_on_one(tiny_data, tmp_path, capsys):
    run_dir = tmp_path / "mixed"
    code = fit.main(["--data", str(tiny_data), "--data", str(tiny_data), "--mix", "1,3", "--validate-on",
                     str(tiny_data), "--preset", "tiny", "--set", "data.excerpt_seconds=2", "--epochs", "1",
                     "--fixed-epochs", "--mixed-precision", "off", "--run-dir", str(run_dir), "--no-export",
                     "--verbose", "0"])
    assert code == 0
    assert f"training excerpts from {tiny_data} 25%, {tiny_data} 75%" in capsys.readouterr().out
    assert fit.main(["--data", str(tiny_data), "--mix", "1,2"]) == 2
    assert "--mix '1,2': give 1 non-negative weight(s), one per --data" in capsys.readouterr().err
    assert fit.main(["--data", str(tiny_data), "--validate-on", str(tmp_path)]) == 2
    assert "not among the --data datasets" in capsys.readouterr().err


def test_fit_cli_trains_with_preset_and_overrides(tiny_data, tmp_path, capsys):
    run_dir = tmp_path / "cli-run"
    code = fit.main(["--data", str(tiny_data), "--preset", "tiny", "--set", "data.excerpt_seconds=2",
                     "--set", "data.epoch_coverage=1", "--epochs", "1", "--fixed-epochs",
                     "--mixed-precision", "off", "--run-dir", str(run_dir), "--no-export", "--verbose", "0"])
    assert code == 0
    saved = json.loads((run_dir / "config.json").read_text())["config"]
    assert saved["train"]["epochs"] == 1 and saved["train"]["early_stopping"] is False
    assert saved["data"]["excerpt_seconds"] == 2.0
    assert (run_dir / "export" / export.KERAS_FILE).exists()
    assert not (run_dir / "export" / export.SAVED_MODEL).exists()
    assert fit.main(["--data", str(tiny_data), "--set", "train.nonsense=1"]) == 2
    assert "unknown config key" in capsys.readouterr().err


def test_fit_cli_writes_app_formats_beside_the_saved_model(tiny_data, tmp_path, capsys):
    run_dir = tmp_path / "formats-run"
    common = ["--data", str(tiny_data), "--preset", "tiny", "--set", "data.excerpt_seconds=2", "--set",
              "data.epoch_coverage=1", "--epochs", "1", "--fixed-epochs", "--mixed-precision", "off",
              "--run-dir", str(run_dir), "--verbose", "0"]
    # Mistakes stop the run before any training.
    assert fit.main([*common, "--formats", "tflite,pb"]) == 2
    assert "unknown format 'pb'" in capsys.readouterr().err
    assert fit.main([*common, "--formats", "tflite", "--no-export"]) == 2
    assert "--formats needs the export" in capsys.readouterr().err
    assert not run_dir.exists()

    assert fit.main([*common, "--formats", "tflite", "--quantize", "float16"]) == 0
    assert f"wrote {run_dir / 'export' / 'model.float16.tflite'}" in capsys.readouterr().out
    card = json.loads((run_dir / "export" / export.MODEL_CARD).read_text())
    assert card["formats"]["model.float16.tflite"]["quantization"] == "float16"
    assert (run_dir / "export" / "model.float16.tflite").stat().st_size == card["formats"]["model.float16.tflite"]["bytes"]


def _run_cli(module, *args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, env=env)


def test_fit_on_a_damaged_shard_names_it_and_says_how_to_repair_it(tmp_path):
    songs = write_songs(tmp_path / "songs", 4)
    data = tmp_path / "data"
    assert prepare.main([str(songs), "--out", str(data), "--split", "2,1,1", "--songs-per-shard", "2",
                         "--workers", "1", "--no-progress"]) == 0
    shard = data / "train-00000-of-00001.tfrecord"
    raw = bytearray(shard.read_bytes())
    raw[112:176] = bytes(64)  # inside the data of the first record, which starts at byte 12
    shard.write_bytes(bytes(raw))
    result = _run_cli("chordkeras.fit", "--data", str(data), "--preset", "tiny", "--set", "data.excerpt_seconds=2",
                      "--set", "data.epoch_coverage=2", "--epochs", "1", "--mixed-precision", "off", "--run-dir",
                      str(tmp_path / "run"), "--no-export",
                      "--verbose", "0")
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"chordkeras.fit: error: {shard}: damaged shard (corrupted record at 12); to repair, "
                           f"run its preparation again (python -m chordkeras.prepare {songs} --out {data} ")
    assert "Traceback" not in result.stderr
    # The repair the message gives: the same preparation rewrites the shard, and the run then trains.
    assert prepare.main([str(songs), "--out", str(data), "--split", "2,1,1", "--songs-per-shard", "2",
                         "--workers", "1", "--no-progress"]) == 0
    assert preparation.verify_dataset(data) == (3, [])
