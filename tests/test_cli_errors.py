"""User mistakes and bad files end in one line and a non-zero exit; --debug shows the traceback."""

import os
import signal
import subprocess
import sys
import time

import pytest

from chordkeras import config as config_lib
from helpers_data import write_tiny_dataset


def _run(*args, **env):
    # TF's own start-up lines are silenced so that stderr holds only what the command says.
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env}
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=env)


def test_prepare_of_a_missing_source_is_one_line_and_debug_shows_the_traceback(tmp_path):
    missing = tmp_path / "no-such-songs"
    result = _run("chordkeras.prepare", str(missing), "--out", str(tmp_path / "out"), "--no-progress",
                  CHORDKERAS_DEBUG="")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"chordkeras.prepare: error: {missing}: neither a folder of audio + annotations nor a CSV manifest"]
    result = _run("chordkeras.prepare", str(missing), "--out", str(tmp_path / "out"), "--no-progress", "--debug")
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"ValueError: {missing}: neither a folder of audio + annotations nor a CSV manifest")


@pytest.mark.slow
def test_fit_on_a_damaged_dataset_json_names_it_in_one_line(tmp_path):
    data = write_tiny_dataset(tmp_path / "data", config_lib.RunConfig().features, songs_per_split=(2, 1, 1))
    (data / "dataset.json").write_text('{"features": {')
    args = ("chordkeras.fit", "--data", str(data), "--preset", "tiny", "--run-dir", str(tmp_path / "run"),
            "--no-export")
    result = _run(*args, CHORDKERAS_DEBUG="")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"chordkeras.fit: error: {data / 'dataset.json'}: not valid JSON "
        "(Expecting property name enclosed in double quotes: line 1 column 15 (char 14))")
    assert "Traceback" not in result.stderr
    result = _run(*args, CHORDKERAS_DEBUG="1")
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr


def test_the_autograph_files_of_this_process_are_removed_and_nothing_else(tmp_path, monkeypatch):
    import types

    from chordkeras import cli

    ours, other = tmp_path / "__autograph_generated_filea1b2c3.py", tmp_path / "__autograph_generated_filez9.py"
    ours.write_text("")
    other.write_text("")  # another process's: no module of that name here
    module = types.ModuleType(ours.stem)
    module.__file__ = str(ours)
    monkeypatch.setitem(sys.modules, ours.stem, module)
    monkeypatch.setitem(sys.modules, "__autograph_generated_filegone", types.ModuleType("gone"))  # no __file__
    cli.remove_autograph_files()
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name]


@pytest.mark.slow
def test_fit_ended_by_sigterm_leaves_no_temporary_files(tmp_path):
    data = write_tiny_dataset(tmp_path / "data", config_lib.RunConfig().features, songs_per_split=(2, 1, 1))
    temporary, log = tmp_path / "tmp", tmp_path / "fit.log"
    temporary.mkdir()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TMPDIR": str(temporary), "PYTHONUNBUFFERED": "1"}
    args = ["chordkeras.fit", "--data", str(data), "--preset", "tiny", "--set", "data.excerpt_seconds=2", "--set",
            "data.epoch_coverage=4", "--epochs", "1000", "--fixed-epochs", "--mixed-precision", "off",
            "--run-dir", str(tmp_path / "run"), "--no-export", "--verbose", "0"]
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", *args], stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + 300
            while "epoch 2:" not in log.read_text() and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            # TensorFlow's autograph has written the functions it converted for training there.
            assert any(temporary.glob("__autograph_generated_file*.py")), log.read_text()
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
    assert code == -signal.SIGTERM, log.read_text()  # ended by the signal, as without the clean-up
    assert sorted(p.name for p in temporary.iterdir()) == []
