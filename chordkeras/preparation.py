"""Preparation ahead of training: audio + chord annotations -> sharded TFRecords + dataset.json.

Each split is cut into shards of a fixed number of songs, in a deterministic order, so that a
re-run (or one of N parallel jobs, see `PrepareConfig.job_index`) knows exactly what every shard
holds. A shard is written under a temporary name and renamed when complete, next to a small
`<shard>.json` summary (songs, hours, label histogram, skipped inputs); `dataset.json` is merged
from those summaries, so an interrupted run resumes where it stopped and never leaves a half
shard that looks whole.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import functools
import hashlib
import json
import math
import multiprocessing
import os
import pathlib
import shlex
import sys
import time
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import tensorflow as tf

from chordkeras import __version__, annotations, audio, files, records, vocab
from chordkeras import config as config_lib
from chordkeras import features as features_lib
from chordkeras.audio import AUDIO_EXTENSIONS
from chordkeras.config import FeatureConfig
from chordkeras.inputs import SongInput
ANNOTATION_EXTENSIONS = (".lab", ".jams")
# What a split keeps together (PrepareConfig.split_by).
SPLIT_UNITS = ("song", "folder")
# The command recorded in the built-in dataset's dataset.json (chordkeras.defaults).
BUILT_IN_COMMAND = "chordkeras.fit (built-in dataset)"


@dataclasses.dataclass(frozen=True)
class PrepareConfig:
    """How `prepare_dataset` splits, shards and parallelises.

    Attributes:
        split_fractions: train, valid, test shares for inputs without a split of their own.
        seed: Seeds the split assignment.
        songs_per_shard: Songs in each shard file.
        workers: Processes computing features (0: one per CPU core).
        job_index, num_jobs: This job writes the shards whose ordinal % num_jobs == job_index.
        official_split: Every song must come with a split of its own (manifest column, a
            collection's official split); `split_fractions` is then unused.
        split_by: 'song', or 'folder': the songs of one folder (an album) land in the same split,
            and `split_fractions` share out the folders, so no album is heard on both sides.
        end_tolerance: How far an annotation's chords may run past the end of the audio and be
            cut there (see `annotations.fit_to_audio`); further, the song is skipped.
    """

    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    split_by: str = "song"
    end_tolerance: float = annotations.END_TOLERANCE_SECONDS
    songs_per_shard: int = 32
    workers: int = 0
    job_index: int = 0
    num_jobs: int = 1
    official_split: bool = False

    def __post_init__(self):
        if len(self.split_fractions) != 3 or min(self.split_fractions) < 0 or sum(self.split_fractions) <= 0:
            raise ValueError(f"split_fractions must be three non-negative shares, got {self.split_fractions}")
        if self.songs_per_shard < 1:
            raise ValueError("songs_per_shard must be at least 1")
        if not 0 <= self.job_index < self.num_jobs:
            raise ValueError(f"job index {self.job_index} is not in 0..{self.num_jobs - 1}")
        if self.split_by not in SPLIT_UNITS:
            raise ValueError(f"split_by must be one of {SPLIT_UNITS}, got {self.split_by!r}")
        if not (math.isfinite(self.end_tolerance) and self.end_tolerance >= 0):
            raise ValueError(f"end_tolerance must be a non-negative number of seconds, got {self.end_tolerance}")


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(path: str) -> str:
    """The path with undecodable bytes shown as \\xNN escapes, safe to print and to store in JSON."""
    return path if _is_utf8(path) else os.fsencode(path).decode("utf-8", "backslashreplace")


def find_inputs(source: str | os.PathLike) -> list[SongInput]:
    """Lists the songs of a folder (audio + same-stem .lab/.jams) or of a CSV manifest.

    A manifest has columns `audio`, `annotation` and optionally `split`, with paths relative to
    the manifest's folder (or absolute). Audio without an annotation is listed with annotation None
    so that preparation reports it as skipped.
    """
    source = pathlib.Path(source)
    if source.is_dir():
        return _inputs_from_folder(source)
    if source.suffix.lower() == ".csv" and source.is_file():
        return _inputs_from_manifest(source)
    raise ValueError(f"{source}: neither a folder of audio + annotations nor a CSV manifest")


def _inputs_from_folder(folder: pathlib.Path) -> list[SongInput]:
    audio, annotations = {}, {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        stem = path.relative_to(folder).with_suffix("").as_posix()
        suffix = path.suffix.lower()
        if suffix in AUDIO_EXTENSIONS:
            audio.setdefault(stem, str(path))
        elif suffix in ANNOTATION_EXTENSIONS:
            # .lab wins over .jams when both exist: it is the simpler, unambiguous format.
            if stem not in annotations or suffix == ".lab":
                annotations[stem] = str(path)
    return [SongInput(stem, audio[stem], annotations.get(stem)) for stem in sorted(audio)]


def _inputs_from_manifest(manifest: pathlib.Path) -> list[SongInput]:
    base = manifest.parent
    inputs = []
    with open(manifest, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"audio", "annotation"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{manifest}: missing column(s) {sorted(missing)}; need audio, annotation[, split]")
        for line, row in enumerate(reader, start=2):
            audio = base / row["audio"]
            annotation = base / row["annotation"] if row["annotation"] else None
            split = (row.get("split") or "").strip() or None
            if split is not None and split not in records.SPLITS:
                raise ValueError(f"{manifest}:{line}: split {split!r} is not one of {records.SPLITS}")
            song_id = pathlib.PurePath(row["audio"]).with_suffix("").as_posix()
            inputs.append(SongInput(song_id, str(audio), str(annotation) if annotation else None, split))
    ids = collections.Counter(s.song_id for s in inputs)
    dupes = [i for i, n in ids.items() if n > 1]
    if dupes:
        raise ValueError(f"{manifest}: audio listed more than once: {dupes[:5]}")
    return inputs


def assign_splits(inputs: Sequence[SongInput], fractions: Sequence[float], seed: int,
                  split_by: str = "song") -> dict[str, list[SongInput]]:
    """Splits by song (or by folder), deterministically: units are ordered by a seeded hash of their id.

    Songs with a split of their own (from a manifest) keep it. The others are grouped into units,
    one per song (`split_by='song'`) or one per folder of the song id (`'folder'`: an album's songs
    stay together; songs at the top level are units of their own), and the units are cut in hash
    order into counts proportional to `fractions`. The split of a song depends only on the seed
    and the set of songs, never on the order in which they were listed.
    """
    if split_by not in SPLIT_UNITS:
        raise ValueError(f"split_by must be one of {SPLIT_UNITS}, got {split_by!r}")
    splits: dict[str, list[SongInput]] = {s: [] for s in records.SPLITS}
    units: dict[str, list[SongInput]] = collections.defaultdict(list)
    for song in inputs:
        if song.split:
            splits[song.split].append(song)
        elif split_by == "folder" and "/" in song.song_id:
            units["folder:" + song.song_id.rsplit("/", 1)[0]].append(song)
        else:
            units["song:" + song.song_id].append(song)

    def key(unit: str) -> str:
        # Song units hash their song id alone, so a split by song is the same as it always was.
        name = unit.split(":", 1)[1] if unit.startswith("song:") else unit
        return hashlib.sha256(f"{seed}:{name}".encode("utf-8", "surrogateescape")).hexdigest()

    free = sorted(units, key=key)
    total = sum(fractions)
    n = len(free)
    counts = [int(math.floor(n * f / total)) for f in fractions]
    # Give the remainder to the splits with the largest fractional parts, train first on ties.
    for i in sorted(range(3), key=lambda i: -(n * fractions[i] / total - counts[i]))[: n - sum(counts)]:
        counts[i] += 1
    start = 0
    for split, count in zip(records.SPLITS, counts):
        for unit in free[start:start + count]:
            splits[split].extend(units[unit])
        start += count
    for split in splits:
        splits[split].sort(key=lambda s: s.song_id)
    return splits


@dataclasses.dataclass(frozen=True)
class ShardPlan:
    """One shard to write: its split, index among the split's shards, and songs."""

    split: str
    index: int
    num_shards: int
    ordinal: int
    songs: tuple[SongInput, ...]

    @property
    def name(self) -> str:
        return records.shard_name(self.split, self.index, self.num_shards)


def plan_shards(splits: dict[str, list[SongInput]], songs_per_shard: int) -> list[ShardPlan]:
    """Cuts each split into shards; ordinals number all shards across splits."""
    plans, ordinal = [], 0
    for split in records.SPLITS:
        songs = splits[split]
        num_shards = math.ceil(len(songs) / songs_per_shard)
        for i in range(num_shards):
            chunk = tuple(songs[i * songs_per_shard:(i + 1) * songs_per_shard])
            plans.append(ShardPlan(split, i, num_shards, ordinal, chunk))
            ordinal += 1
    return plans


class SongError(ValueError):
    """A song that cannot be prepared; the message names the file and what is wrong.

    Attributes:
        kind: The class of problem, counted in the summary ('missing audio', 'checksum', ...).
    """

    def __init__(self, message: str, kind: str = "bad input"):
        super().__init__(message)
        self.kind = kind


def _check_checksums(song: SongInput) -> None:
    from chordkeras import mirdata_source

    for path, expected in song.checksums:
        if not os.path.isfile(path):
            raise SongError(f"{path}: file missing", "missing audio")
        actual = mirdata_source.md5(path)
        if actual != expected:
            raise SongError(f"{path}: md5 {actual} is not the {expected} in the source's index "
                            "(corrupt, or another edition or rip)", "checksum")


def prepare_song(song: SongInput, features: FeatureConfig,
                 end_tolerance: float = annotations.END_TOLERANCE_SECONDS) -> tuple[bytes, dict[str, Any]]:
    """Audio + annotation of one song -> serialised record and its statistics.

    The annotation is fitted to the audio (`annotations.fit_to_audio`): times before 0 clipped,
    what runs past the end cut; the statistics list those changes under 'trimmed'.

    Raises:
        SongError: naming the file and the problem (the caller skips and lists the song).
    """
    if song.problem is not None:
        raise SongError(song.problem[1], song.problem[0])
    _check_checksums(song)
    for path in (song.audio, song.annotation):
        if path is not None and not _is_utf8(path):
            raise SongError(f"{_printable(path)}: file name is not valid UTF-8")
    if song.annotation is None:
        raise SongError(f"{song.audio}: no annotation (.lab or .jams with the same name)", "missing annotation")
    if not os.path.exists(song.annotation):
        raise SongError(f"{song.annotation}: annotation file does not exist")
    try:
        samples = audio.load_audio(song.audio, features.sample_rate)
    except audio.AudioError as e:
        raise SongError(str(e)) from None
    duration = len(samples) / features.sample_rate
    if len(samples) == 0:
        raise SongError(f"{song.audio}: audio is empty")
    try:
        segments, trimmed = annotations.fit_to_audio(song.annotation, duration, end_tolerance)
    except annotations.AnnotationError as e:
        raise SongError(str(e)) from None
    spectrogram = _spectrogram_fn(features)(samples).numpy()
    frame_times = np.arange(spectrogram.shape[0]) / features.frame_rate
    targets = annotations.frame_targets(segments, frame_times)
    example = records.song_example(song.song_id, spectrogram, targets, duration, features.frame_rate)
    return example, {**song_stats(song.song_id, targets["chord"], duration), "trimmed": trimmed}


def song_stats(song_id: str, chord: np.ndarray, duration: float) -> dict[str, Any]:
    """What a shard summary counts of one song: seconds, frames and its large-vocabulary label histogram.

    Args:
        song_id: The song's id.
        chord: Large-vocabulary class per frame.
        duration: Audio duration in seconds.
    """
    large = vocab.get_vocabulary("large")
    counts = np.bincount(np.asarray(chord).astype(np.int64), minlength=large.num_classes)
    histogram = {large.class_names[i]: int(c) for i, c in enumerate(counts) if c}
    return {"song_id": song_id, "seconds": float(duration), "frames": int(len(chord)), "histogram": histogram}


@functools.lru_cache(maxsize=4)
def _spectrogram_fn(features: FeatureConfig):
    """One traced graph per feature config: songs of any length reuse it without retracing."""
    return tf.function(
        lambda samples: features_lib.log_spectrogram(samples, features),
        input_signature=[tf.TensorSpec([None], tf.float32)],
    )


def _prepare_song_or_error(args: tuple[SongInput, FeatureConfig, float]) -> tuple[SongInput, bytes | None, Any]:
    song, features, end_tolerance = args
    try:
        example, stats = prepare_song(song, features, end_tolerance)
    except SongError as e:
        return song, None, (e.kind, str(e))
    except (ValueError, OSError, RuntimeError, tf.errors.OpError) as e:
        # A decoder or file-system failure on one song must not end the run: it is listed. Programming
        # errors (TypeError, ImportError, ...) still stop the run, rather than skip every song.
        return song, None, ("bad input", f"{_printable(song.audio)}: {type(e).__name__}: {e}")
    return song, example, stats


def _worker_init() -> None:
    # Each worker computes one song at a time; TF's own thread pools would only fight each other.
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def _map_songs(songs: list[SongInput], features: FeatureConfig, workers: int,
               end_tolerance: float = annotations.END_TOLERANCE_SECONDS) -> Iterator[tuple]:
    jobs = [(song, features, end_tolerance) for song in songs]
    if workers <= 1:
        yield from map(_prepare_song_or_error, jobs)
        return
    # spawn: TensorFlow does not survive fork() once initialised in the parent.
    with multiprocessing.get_context("spawn").Pool(workers, initializer=_worker_init) as pool:
        yield from pool.imap(_prepare_song_or_error, jobs, chunksize=1)
        # Run to the end, the workers exit by themselves. Leaving the block early terminates them (SIGTERM),
        # which skips their exit handlers, and in one of those TensorFlow's autograph deletes its
        # __autograph_generated_file*.py temporary files.
        pool.close()
        pool.join()


def write_shard(folder: pathlib.Path, plan: ShardPlan, results: Iterable[tuple], meta: dict) -> dict:
    """Writes one shard and its summary from (song, example, stats), or (song, None, (kind, reason)) skipped."""
    summary = {"shard": plan.name, "split": plan.split, "songs": [], "song_sources": {}, "seconds": 0.0,
               "frames": 0, "histogram": {}, "skipped": [], "trimmed": [], **meta}
    histogram = collections.Counter()
    # The shard is written under a fixed temporary name (a killed run's leftover is overwritten)
    # and renamed last, after its summary: a shard file under its final name is always complete.
    with files.atomic_output(folder / plan.name, temporary=folder / f".{plan.name}.incomplete") as tmp:
        with tf.io.TFRecordWriter(str(tmp)) as writer:
            for song, example, info in results:
                if example is None:
                    kind, reason = info
                    summary["skipped"].append({"input": _printable(song.audio), "reason": reason, "kind": kind,
                                               "source": song.source})
                    continue
                writer.write(example)
                if info.get("trimmed"):
                    summary["trimmed"].append({"input": _printable(song.audio), "annotation": _printable(
                        song.annotation or ""), "changes": info["trimmed"], "source": song.source})
                summary["songs"].append(song.song_id)
                summary["song_sources"][song.song_id] = song.source
                summary["seconds"] += info["seconds"]
                summary["frames"] += info["frames"]
                histogram.update(info["histogram"])
        summary["histogram"] = dict(sorted(histogram.items()))
        files.write_json_atomic(folder / f"{plan.name}.json", summary)
    return summary


def _shard_complete(folder: pathlib.Path, plan: ShardPlan) -> bool:
    """The shard and its summary exist and every record passes its checksum; a damaged one is named."""
    shard, summary = folder / plan.name, folder / f"{plan.name}.json"
    if not (shard.exists() and summary.exists()):
        return False
    problem = _shard_problem(shard, summary)
    if problem is not None:
        print(f"chordkeras.prepare: {problem}; rewriting it from the source audio", file=sys.stderr, flush=True)
        return False
    return True


def _shard_problem(shard: pathlib.Path, summary: pathlib.Path | None) -> str | None:
    """What is wrong with one shard (checksums, record count against its summary), or None."""
    try:
        count = records.count_records(shard)
    except records.DamagedShardError as e:
        return str(e)
    if summary is None or not summary.exists():
        return None
    try:
        expected = len(files.read_json(summary)["songs"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"{summary}: unreadable shard summary ({e})"
    if count != expected:
        return f"{shard}: damaged shard ({count} records, its summary lists {expected} songs)"
    return None


def verify_dataset(out_dir: str | os.PathLike) -> tuple[int, list[str]]:
    """Checks a prepared dataset without changing it: every shard's records and checksums.

    Every `*.tfrecord` is read to the end with its length and data CRCs verified and its record
    count compared with its summary; shards that the summaries (or dataset.json) expect but that
    are absent are reported too.

    Returns:
        (shards checked, problems): each problem a line naming the file and what is wrong.
    """
    out = pathlib.Path(out_dir)
    if not out.is_dir():
        raise ValueError(f"{out}: no such folder")
    shards = sorted(out.glob("*-of-*.tfrecord"))
    if not shards:
        raise ValueError(f"{out}: no shards (*-NNNNN-of-NNNNN.tfrecord); not a prepared dataset")
    problems = []
    for shard in shards:
        summary = out / f"{shard.name}.json"
        problem = _shard_problem(shard, summary if summary.exists() else None)
        if problem is not None:
            problems.append(problem)
    expected = set()
    for summary in sorted(out.glob("*.tfrecord.json")):
        try:
            split_shards = files.read_json(summary).get("split_shards", {})
        except (OSError, ValueError, AttributeError) as e:
            problems.append(f"{summary}: unreadable shard summary ({e})")
            continue
        expected |= {records.shard_name(split, i, n) for split, n in split_shards.items() for i in range(n)}
    problems += [f"{out / name}: missing" for name in sorted(expected - {p.name for p in shards})]
    if not (out / records.DATASET_INFO).exists():
        problems.append(f"{out / records.DATASET_INFO}: missing (merge with python -m chordkeras.prepare --merge {out})")
    return len(shards), problems


def damaged_shards(out_dir: str | os.PathLike) -> list[records.DamagedShardError]:
    """The shards of a dataset whose records fail their checksums (no summaries needed)."""
    found = []
    for shard in sorted(pathlib.Path(out_dir).glob("*-of-*.tfrecord")):
        try:
            records.count_records(shard)
        except records.DamagedShardError as e:
            found.append(e)
    return found


def repair_hint(out_dir: str | os.PathLike) -> str:
    """How to rewrite the damaged shards of a dataset from its source audio, in one sentence."""
    out = pathlib.Path(out_dir)
    try:
        info = records.read_dataset_info(out)
    except (OSError, ValueError):
        info = {}
    command = info.get("command") or []
    jobs = (info.get("prepare") or {}).get("num_jobs", 1)
    if command and (command[0] == "chordkeras.prepare" or pathlib.PurePath(command[0]).name == "prepare.py"):
        args = " ".join(shlex.quote(a) for a in command[1:])
        again = (f"run its preparation again (python -m chordkeras.prepare {args})" if jobs == 1 else
                 f"run the preparation job that wrote it again (of {jobs}; job 0 was python -m chordkeras.prepare "
                 f"{args}), then --merge")
        return (f"{again}: it rewrites damaged shards from the source audio; "
                f"python -m chordkeras.prepare --verify {out} checks the result")
    if command[:1] == [BUILT_IN_COMMAND]:
        return (f"delete {out / records.DATASET_INFO} and run the same command again: the preparation then "
                "rewrites damaged shards from the generated audio")
    return (f"prepare it again from its source audio (python -m chordkeras.prepare SOURCE --out {out}): that "
            "rewrites damaged shards and keeps the intact ones")


def gather_inputs(sources, out: pathlib.Path, official_split: bool = False) -> tuple[list[SongInput], list[dict]]:
    """The songs of several sources (folders, CSV manifests, `MirdataSource`s) and their descriptions.

    Raises:
        ValueError: a source has no songs, two sources give the same song id, or `official_split`
            is asked of songs without a split of their own.
    """
    from chordkeras import mirdata_source

    inputs, described = [], []
    for source in sources:
        if isinstance(source, mirdata_source.MirdataSource):
            songs, description = mirdata_source.find_inputs(source, out / "mirdata", official_split)
        else:
            where = str(pathlib.Path(source).resolve())
            songs = [dataclasses.replace(s, source=where) for s in find_inputs(source)]
            description = {"kind": "manifest" if pathlib.Path(source).is_file() else "folder", "label": where}
        if not songs:
            raise ValueError(f"{description['label']}: no songs found (audio: {', '.join(AUDIO_EXTENSIONS)})")
        if official_split:
            free = [s.song_id for s in songs if s.split is None]
            if free:
                raise ValueError(f"{description['label']}: {len(free)} song(s) without a split of their own "
                                 f"(e.g. {free[0]}); --split official needs a manifest split column or a "
                                 "collection's official split")
        inputs.extend(songs)
        described.append(description)
    seen = collections.Counter(s.song_id for s in inputs)
    dupes = sorted(i for i, n in seen.items() if n > 1)
    if dupes:
        raise ValueError(f"song ids given by more than one source: {dupes[:5]}; prepare them separately")
    return inputs, described


def prepare_dataset(
    source,
    out_dir: str | os.PathLike,
    features: FeatureConfig = FeatureConfig(),
    config: PrepareConfig = PrepareConfig(),
    command: Sequence[str] | None = None,
    progress: bool = True,
) -> dict[str, Any] | None:
    """Prepares `source` into `out_dir`.

    Args:
        source: A folder, a CSV manifest, a `mirdata_source.MirdataSource`, or a list of these:
            their songs go into one dataset, each song's source recorded in dataset.json.

    Returns:
        The dataset info written to `out_dir/dataset.json`, or None for one job of several
        (`config.num_jobs > 1`): then `merge_dataset(out_dir)` writes it once all jobs are done.
    """
    from tqdm import tqdm

    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sources = list(source) if isinstance(source, (list, tuple)) else [source]
    if not sources:
        raise ValueError("no source given")
    inputs, described = gather_inputs(sources, out, config.official_split)
    plans = plan_shards(assign_splits(inputs, config.split_fractions, config.seed, config.split_by),
                        config.songs_per_shard)
    meta = {"features": dataclasses.asdict(features), "prepare": dataclasses.asdict(config),
            "source": " + ".join(d["label"] for d in described), "sources": described,
            "command": list(command) if command is not None else None,
            # Every job plans the same shards: each summary names all of them, so a merge knows
            # which shards to expect even of a split that no job has written yet.
            "split_shards": {split: sum(p.split == split for p in plans) for split in records.SPLITS}}
    _check_existing(out, meta["features"])
    mine = [p for p in plans if p.ordinal % config.num_jobs == config.job_index]
    todo = [p for p in mine if not _shard_complete(out, p)]
    print(f"chordkeras.prepare: {len(inputs)} songs in {len(plans)} shards -> {out}"
          f" ({len(mine) - len(todo)} of this job's {len(mine)} shards already complete)", file=sys.stderr)
    workers = config.workers or os.cpu_count() or 1
    songs = [song for plan in todo for song in plan.songs]
    bar = tqdm(total=len(songs), unit="song", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    started, seconds = time.monotonic(), 0.0
    results = _map_songs(songs, features, workers, config.end_tolerance)

    def counted(n: int) -> Iterator[tuple]:
        nonlocal seconds
        for _ in range(n):
            item = next(results)
            if item[1] is not None:
                seconds += item[2]["seconds"]
            else:
                bar.write(f"skipped: {item[2][1]}")
            bar.update(1)
            rate = seconds / 3600 / max(time.monotonic() - started, 1e-9) * 60
            bar.set_postfix_str(f"{seconds / 3600:.2f} h audio, {rate:.2f} h/min")
            yield item

    for plan in todo:
        write_shard(out, plan, counted(len(plan.songs)), meta)
    next(results, None)  # every song is taken: this lets _map_songs end its worker processes
    bar.close()
    if config.num_jobs > 1:
        return None
    return merge_dataset(out)


def write_songs(
    out_dir: str | os.PathLike,
    songs: dict[str, Sequence[tuple[bytes, dict[str, Any]]]],
    features: FeatureConfig,
    config: PrepareConfig = PrepareConfig(),
    source: str | None = None,
    command: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Writes songs already serialised into a prepared dataset: shards, their summaries, dataset.json.

    The writers `prepare_dataset` uses, for records whose spectrograms were made some other way
    (tests, benchmarks): each song is `(records.song_example(...), song_stats(...))`, as
    `prepare_song` returns them.

    Args:
        out_dir: The dataset folder (created).
        songs: Split name -> its songs, in order.
        features: The feature config the spectrograms follow.
        config: Shard size (`songs_per_shard`) and the settings recorded in dataset.json.
        source: Where the songs came from, recorded in dataset.json.
        command: The command line, recorded in dataset.json.

    Returns:
        The dataset info written to `out_dir/dataset.json`.
    """
    unknown = set(songs) - set(records.SPLITS)
    if unknown:
        raise ValueError(f"unknown splits {sorted(unknown)}; splits are {records.SPLITS}")
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"features": dataclasses.asdict(features), "prepare": dataclasses.asdict(config), "source": source,
            "command": list(command) if command is not None else None}
    _check_existing(out, meta["features"])
    by_id = {}
    inputs = {split: [] for split in records.SPLITS}
    for split, items in songs.items():
        for example, stats in items:
            song = SongInput(stats["song_id"], audio=stats["song_id"], annotation=None, split=split, source=source)
            by_id[song.song_id] = (song, example, stats)
            inputs[split].append(song)
    for plan in plan_shards(inputs, config.songs_per_shard):
        write_shard(out, plan, (by_id[song.song_id] for song in plan.songs), meta)
    return merge_dataset(out)


def _check_existing(out: pathlib.Path, features: dict) -> None:
    for summary_path in sorted(out.glob("*.tfrecord.json"))[:1]:
        existing = files.read_json(summary_path)["features"]
        if existing != features:
            raise ValueError(
                f"{out}: already holds shards prepared with other features ({summary_path.name}); "
                "prepare into a new folder"
            )


def merge_dataset(out_dir: str | os.PathLike) -> dict[str, Any]:
    """Writes `dataset.json` from the shard summaries; refuses while shards are missing.

    Raises:
        ValueError: naming the missing shards (of every split, also of a split no job wrote),
            or a summary that cannot be read.
    """
    out = pathlib.Path(out_dir)
    if not out.is_dir():
        raise ValueError(f"{out}: no such folder")
    summaries = [_read_summary(p) for p in sorted(out.glob("*.tfrecord.json"))]
    if not summaries:
        raise ValueError(f"{out}: no shard summaries (*.tfrecord.json); nothing was prepared here")
    missing = [s["shard"] for s in summaries if not (out / s["shard"]).exists()]
    by_split: dict[str, list[dict]] = collections.defaultdict(list)
    for s in summaries:
        by_split[s["split"]].append(s)
    plans = {json.dumps(s["split_shards"], sort_keys=True) for s in summaries if "split_shards" in s}
    if len(plans) > 1:
        raise ValueError(f"{out}: its shard summaries come from different preparations (other songs, split or "
                         "shard size); prepare into a new folder")
    if plans:
        split_shards = json.loads(plans.pop())
    else:
        # Summaries written before the plan was recorded: only the splits that have one are known.
        split_shards = {split: int(items[0]["shard"].removesuffix(".tfrecord").rsplit("-of-", 1)[1])
                        for split, items in by_split.items()}
    expected = {records.shard_name(split, i, n) for split, n in split_shards.items() for i in range(n)}
    missing += sorted(expected - {s["shard"] for s in summaries})
    if missing:
        jobs = summaries[0]["prepare"].get("num_jobs", 1)
        raise ValueError(
            f"{out}: {len(missing)} shard(s) not yet complete: {', '.join(missing[:10])}"
            f"{' ...' if len(missing) > 10 else ''}; run the preparation job(s) that write them"
            + (f" (one of --num-shards {jobs} jobs each)" if jobs > 1 else "") + ", then merge again")
    features = summaries[0]["features"]
    for s in summaries:
        if s["features"] != features:
            raise ValueError(f"{out}: {s['shard']} was prepared with other features than {summaries[0]['shard']}")
    histogram = collections.Counter()
    song_sources = dict(sorted(item for s in summaries for item in s.get("song_sources", {}).items()))
    splits = {}
    for split in records.SPLITS:
        items = by_split.get(split, [])
        splits[split] = {
            "songs": sum(len(s["songs"]) for s in items),
            "hours": round(sum(s["seconds"] for s in items) / 3600, 4),
            "frames": sum(s["frames"] for s in items),
            "shards": len(items),
        }
        for s in items:
            histogram.update(s["histogram"])
    info = {
        "features": features,
        "label_vocabulary": "large",
        "splits": splits,
        "total_hours": round(sum(s["seconds"] for s in summaries) / 3600, 4),
        "label_histogram": dict(histogram.most_common()),
        "skipped": [item for s in summaries for item in s["skipped"]],
        "trimmed": [item for s in summaries for item in s.get("trimmed", [])],
        "song_sources": song_sources,
        "sources": _source_counts(summaries, song_sources),
        "prepare": summaries[0]["prepare"],
        "source": summaries[0]["source"],
        "command": summaries[0]["command"],
        "chordkeras_version": __version__,
    }
    files.write_json_atomic(out / records.DATASET_INFO, info)
    return info


def _read_summary(path: pathlib.Path) -> dict[str, Any]:
    try:
        summary = files.read_json(path)
        if not isinstance(summary, dict) or not {"shard", "split", "prepare"} <= summary.keys():
            raise ValueError("not a shard summary (no shard, split or prepare key)")
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: unreadable shard summary ({e}); delete it and the shard next to it, and run "
                         "the preparation again to rewrite both") from None
    return summary


def _source_counts(summaries: list[dict], song_sources: dict[str, str]) -> list[dict]:
    """Each source's description with how many songs it gave, prepared and skipped (by kind)."""
    described = summaries[0].get("sources") or [{"label": summaries[0]["source"]}]
    prepared = collections.Counter(song_sources.values())
    skipped: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for s in summaries:
        for item in s["skipped"]:
            skipped[item.get("source")][item.get("kind", "bad input")] += 1
    trimmed = collections.Counter(item.get("source") for s in summaries for item in s.get("trimmed", []))
    return [{**d, "found": prepared[d["label"]] + sum(skipped[d["label"]].values()),
             "prepared": prepared[d["label"]], "trimmed": trimmed[d["label"]],
             "skipped": dict(sorted(skipped[d["label"]].items()))}
            for d in described]


def check_dataset(info: dict[str, Any], features: FeatureConfig, vocabulary: str, where: str) -> None:
    """Refuses a dataset whose features or label vocabulary do not fit the model's."""
    config_lib.check_features_match(info["features"], features, where)
    vocab.get_vocabulary(vocabulary)  # raises for unknown names
    if info.get("label_vocabulary") != "large":
        raise ValueError(f"{where}: records hold {info.get('label_vocabulary')!r} labels; expected 'large'")
