"""The built-in dataset: synthetic songs generated, prepared and cached under tfrecords/.

`python -m chordkeras.fit` trains on it when no --data is given, so that the main job runs on a
fresh machine with nothing to download. Generation and preparation both resume where they stopped.
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys

from chordkeras import files, preparation, records, synth
from chordkeras.config import FeatureConfig

DEFAULT_SONGS = 400
DEFAULT_SEED = 2024
# Short songs: as many chord changes per minute as full-length ones, and more songs (keys, tempos,
# instruments, mixes) for the same rendering time, which is what the 15-minute budget of the
# default run is spent on first (about 1.5 CPU-seconds per minute of audio).
DEFAULT_MINUTES_PER_SONG = 0.75
# Clean mixes: trained on songs through the randomised recording chain (`synth.recording`), the model
# called twice the annotated share of real studio recordings "no chord" (valid / test of the real dev
# split: 4.5% / 6.9% of frames N where 2.7% / 3.2% are annotated), for the same majmin (0.771 / 0.766
# with the chain, 0.770 / 0.776 without). `python -m chordkeras.synth` still applies it by default.
DEFAULT_RECORDING_CHAIN = False


def default_dataset(folder: pathlib.Path, features: FeatureConfig, num_songs: int | None = None,
                    seed: int = DEFAULT_SEED, progress: bool = True) -> pathlib.Path:
    """Returns the prepared built-in dataset in `folder`, generating and preparing it if needed."""
    num_songs = num_songs or DEFAULT_SONGS
    wanted = {"songs": num_songs, "seed": seed, "minutes_per_song": DEFAULT_MINUTES_PER_SONG,
              "generator_version": synth.GENERATOR_VERSION, "recording_chain": DEFAULT_RECORDING_CHAIN,
              "features": dataclasses.asdict(features)}
    info_path = folder / records.DATASET_INFO
    recipe_path = folder / "synth_recipe.json"
    if info_path.exists() and recipe_path.exists() and files.read_json(recipe_path) == wanted:
        print(f"chordkeras.fit: using the cached built-in dataset {folder.resolve()}", file=sys.stderr, flush=True)
        return folder
    if recipe_path.exists() and files.read_json(recipe_path) != wanted:
        raise ValueError(
            f"{folder} holds a built-in dataset made with other settings ({recipe_path}); "
            f"delete the folder or pass --root elsewhere"
        )
    folder.mkdir(parents=True, exist_ok=True)
    files.write_json_atomic(recipe_path, wanted)
    print(f"chordkeras.fit: generating {num_songs} synthetic songs into {(folder / 'audio').resolve()}",
          file=sys.stderr, flush=True)
    manifest = synth.generate_songs(folder / "audio", num_songs, seed, minutes_per_song=DEFAULT_MINUTES_PER_SONG,
                                    recording_chain=DEFAULT_RECORDING_CHAIN)
    print(f"chordkeras.fit: preparing TFRecords in {folder.resolve()}", file=sys.stderr, flush=True)
    preparation.prepare_dataset(manifest, folder, features, preparation.PrepareConfig(seed=seed),
                                command=[preparation.BUILT_IN_COMMAND], progress=progress)
    return folder
