"""A training process killed with SIGKILL at many points resumes every time, no epoch lost or repeated."""

import csv
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from chordkeras import config as config_lib
from helpers_data import write_tiny_dataset

SCRIPT = pathlib.Path(__file__).with_name("fit_with_slow_writes.py")
EPOCHS = 3


def _fit_command(data, run_dir):
    return [sys.executable, str(SCRIPT), "--data", str(data), "--preset", "tiny", "--set", "data.excerpt_seconds=2.0",
            "--set", "data.batch_size=8", "--set", "data.epoch_coverage=4", "--epochs", str(EPOCHS),
            "--fixed-epochs", "--mixed-precision", "off", "--run-dir", str(run_dir), "--no-export", "--verbose", "0"]


def _run(data, run_dir, log, kill_when=None, timeout=600):
    """Runs the fit; with `kill_when(run_dir)`, SIGKILLs it the moment that holds. Returns (exit status, output)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CHORDKERAS_TEST_H5_DELAY": "0.01",
           "PYTHONPATH": str(SCRIPT.parent.parent)}
    with open(log, "w") as out:
        process = subprocess.Popen(_fit_command(data, run_dir), stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while process.poll() is None and time.monotonic() < deadline:
            if kill_when is not None and kill_when(run_dir):
                os.kill(process.pid, signal.SIGKILL)
                break
            time.sleep(0.002)
        code = process.wait(timeout=60)
    return code, pathlib.Path(log).read_text()


def _incomplete(folder):
    return lambda run_dir: any((run_dir / folder).glob(".*incomplete*")) if (run_dir / folder).is_dir() else False


def _epochs_in_history(run_dir):
    with open(run_dir / "history.csv", newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


@pytest.mark.slow
def test_a_run_killed_at_many_points_resumes_each_time_without_losing_or_repeating_an_epoch(tmp_path):
    data = write_tiny_dataset(tmp_path / "data", config_lib.RunConfig().features, songs_per_split=(8, 2, 2))
    run_dir = tmp_path / "run"
    killed = -signal.SIGKILL

    # 1. Inside the first best-checkpoint write (epoch 1): nothing is backed up yet.
    code, out = _run(data, run_dir, tmp_path / "1.log", _incomplete("checkpoints"))
    assert code == killed, out
    assert not (run_dir / "checkpoints" / "best.weights.h5").exists()

    # 2. Right after the backup of epoch 2 is renamed into place.
    code, out = _run(data, run_dir, tmp_path / "2.log",
                     lambda r: (r / "backup" / "epoch-00002.weights.h5").exists())
    assert code == killed, out
    assert "resuming" not in out
    backup = run_dir / "backup" / "epoch-00002.weights.h5"
    assert sorted(p.name for p in backup.parent.glob("epoch-*")) == ["epoch-00001.weights.h5", "epoch-00002.weights.h5"]

    # A damaged newest backup (cut short, as by a full disk): the older one is used, and the run says so.
    backup.write_bytes(backup.read_bytes()[: backup.stat().st_size // 2])

    # 3. Inside the backup write of the epoch being redone.
    code, out = _run(data, run_dir, tmp_path / "3.log", _incomplete("backup"))
    assert code == killed, out
    assert f"backup {backup} is damaged" in out and "falling back to the previous one" in out
    assert "resuming after epoch 1" in out

    # 4. Inside the export, after training has finished.
    code, out = _run(data, run_dir, tmp_path / "4.log", lambda r: (r / "export.incomplete").exists())
    assert code == killed, out
    assert "resuming after epoch 1" in out
    assert (run_dir / "backup" / "training_finished.json").exists()
    assert not (run_dir / "export").exists()

    # 5. Runs to the end without training again.
    code, out = _run(data, run_dir, tmp_path / "5.log")
    assert code == 0, out
    assert "training finished before the interruption" in out
    assert _epochs_in_history(run_dir) == [0, 1, 2]
    assert (run_dir / "test_metrics.json").exists()
    assert (run_dir / "export" / "model.keras").exists()
    assert (run_dir / "checkpoints" / "best.weights.h5").exists()
    assert not (run_dir / "backup").exists()
