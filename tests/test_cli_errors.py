"""User mistakes and bad files end in one line and a non-zero exit; --debug shows the traceback."""

import os
import subprocess
import sys

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
