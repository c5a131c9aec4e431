"""What must hold on Linux and macOS alike, and what a user's site-packages receives."""

import os
import pathlib
import runpy
import subprocess
import sys

import pytest
import setuptools

from chordkeras.synth import generate

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_usable_cpus_follows_the_affinity_mask_where_there_is_one():
    assert generate.usable_cpus() == len(os.sched_getaffinity(0))


def test_song_generation_without_an_affinity_call(monkeypatch, tmp_path):
    # macOS has no os.sched_getaffinity: the generator counts all CPUs instead.
    monkeypatch.delattr(os, "sched_getaffinity")
    assert generate.usable_cpus() == os.cpu_count()
    manifest = generate.generate_songs(tmp_path, 1, seed=3, minutes_per_song=0.05)
    assert (tmp_path / "song_00000.flac").exists() and manifest.exists()


def test_the_tuner_is_not_installed_as_a_top_level_package(monkeypatch):
    captured = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: captured.update(kwargs))
    monkeypatch.chdir(ROOT)
    runpy.run_path(str(ROOT / "setup.py"))
    packages = captured["packages"]
    assert "chordkeras" in packages and "chordkeras.synth" in packages
    assert not [p for p in packages if not p.startswith("chordkeras")]


@pytest.mark.slow
def test_the_tuner_runs_from_the_repository_root():
    result = subprocess.run([sys.executable, "-m", "tuning.search", "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage: python -m tuning.search" in result.stdout
