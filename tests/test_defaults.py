"""The built-in dataset of the main job: generated and prepared once, then reused, never mixed up."""

import dataclasses

import pytest

from chordkeras import defaults, files, records, synth
from chordkeras.config import FeatureConfig

pytestmark = pytest.mark.slow  # songs generated and prepared

FEATURES = FeatureConfig()


@pytest.fixture(scope="module")
def built_in(tmp_path_factory):
    """Three synthetic songs generated and prepared by `default_dataset`, as the main job does."""
    folder = tmp_path_factory.mktemp("tfrecords") / "synth-default"
    assert defaults.default_dataset(folder, FEATURES, num_songs=3, progress=False) == folder
    return folder


def test_first_call_generates_and_prepares(built_in):
    recipe = files.read_json(built_in / "synth_recipe.json")
    assert recipe == {"songs": 3, "seed": defaults.DEFAULT_SEED, "minutes_per_song": defaults.DEFAULT_MINUTES_PER_SONG,
                      "generator_version": synth.GENERATOR_VERSION, "recording_chain": False,
                      "features": dataclasses.asdict(FEATURES)}
    # Clean mixes, as the recipe says: the songs were generated without the recording chain.
    assert files.read_json(built_in / "audio" / "synth.json")["recording_chain"] is False
    info = records.read_dataset_info(built_in)
    assert sum(split["songs"] for split in info["splits"].values()) == 3
    assert info["skipped"] == []
    assert sorted(p.name for p in (built_in / "audio").glob("*.flac")) == [
        "song_00000.flac", "song_00001.flac", "song_00002.flac"]


def test_a_second_call_uses_the_cache(built_in, capsys):
    written = {p: p.stat().st_mtime_ns for p in built_in.rglob("*") if p.is_file()}
    assert defaults.default_dataset(built_in, FEATURES, num_songs=3, progress=False) == built_in
    assert "using the cached built-in dataset" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in built_in.rglob("*") if p.is_file()} == written


@pytest.mark.parametrize("change", ["num_songs", "seed", "features"])
def test_other_settings_are_refused_and_nothing_is_touched(built_in, change):
    kwargs = {"num_songs": 3, "seed": defaults.DEFAULT_SEED}
    features = FEATURES
    if change == "features":
        features = dataclasses.replace(FEATURES, hop_length=2 * FEATURES.hop_length)
    else:
        kwargs[change] += 1
    written = {p: p.stat().st_mtime_ns for p in built_in.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match="synth_recipe.json"):
        defaults.default_dataset(built_in, features, progress=False, **kwargs)
    assert {p: p.stat().st_mtime_ns for p in built_in.rglob("*") if p.is_file()} == written
