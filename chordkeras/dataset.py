"""The data pump: prepared records -> shuffled, cropped, augmented batches, prefetched.

Training, per dataset: list shards -> shuffle files -> interleave reads -> parse -> cache -> shuffle
songs -> random excerpts (new ones each pass) -> pitch shift + detune + gain/EQ -> repeat; then the
datasets' excerpts sampled at their mixing weights -> shuffle excerpts -> batch -> prefetch(AUTOTUNE).
The training pipeline never ends: one pass through the songs is `steps_per_epoch` batches, which is
what a fit is given as its epoch. Validation and test: whole
songs, in order, no augmentation, padded batches with a mask. Every element is (spectrogram,
targets, mask) as `chordkeras.model.ChordModel` expects.
"""

from __future__ import annotations

import collections
import dataclasses
import os
from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from chordkeras import features, records, vocab
from chordkeras.config import RunConfig

AUTOTUNE = tf.data.AUTOTUNE
TARGET_KEYS = ("chord", "root", "bass", "pitches")


@dataclasses.dataclass(frozen=True)
class Datasets:
    """What `make_datasets` returns: the pipelines and the numbers a fit needs.

    `train` repeats without end; `steps_per_epoch` batches are one pass through the training songs
    (or `data.steps_per_epoch` when set). Fit with `steps_per_epoch=steps_per_epoch`: Keras then
    keeps one iterator for the whole fit. With a finite dataset it makes a new iterator each epoch,
    and destroying the old one blocks until tf.data's autotuning thread wakes up (in TF 2.16 its
    period doubles from 10 ms to 60 s), which cost some epochs here half their time.
    """

    train: tf.data.Dataset
    valid: tf.data.Dataset
    steps_per_epoch: int
    info: dict[str, Any]


def _to_vocabulary(song: dict[str, tf.Tensor], from_large: tf.Tensor, num_bins: int) -> dict[str, tf.Tensor]:
    song = dict(song)
    song["chord"] = tf.gather(from_large, song["chord"])
    # The bin count is stored per record; state it statically so the model sees a known width.
    song["spectrogram"] = tf.ensure_shape(song["spectrogram"], [None, num_bins])
    return song


def _load_songs(folder: str | os.PathLike, split: str, config: RunConfig, shuffle: bool) -> tf.data.Dataset:
    shards = records.list_shards(folder, split)
    files = tf.data.Dataset.from_tensor_slices(shards)
    if shuffle:
        files = files.shuffle(len(shards), seed=config.train.seed, reshuffle_each_iteration=True)
    if shuffle:
        ds = files.interleave(tf.data.TFRecordDataset, cycle_length=min(len(shards), 8),
                              num_parallel_calls=AUTOTUNE, deterministic=False)
    else:
        ds = tf.data.TFRecordDataset(files)
    from_large = tf.constant(vocab.get_vocabulary(config.data.vocabulary).from_large, tf.int32)
    return ds.map(
        lambda s: _to_vocabulary(records.parse_song(s), from_large, config.features.n_bins),
        num_parallel_calls=AUTOTUNE,
        deterministic=not shuffle,
    )


def random_excerpt(song: dict[str, tf.Tensor], excerpt_frames: int, seed: tf.Tensor) -> tuple:
    """Crops `excerpt_frames` frames at a random offset; shorter songs are zero-padded and masked.

    The window stays within the song up to its last frame that is not all zeros, when that leaves room
    for a whole excerpt. A song's trailing digital silence carries no loss (`ChordModel.loss_mask`) and
    is where the model's `FrameMask` ends the song, so an excerpt holding it would only send its whole
    batch through the masked batch normalisation: on 2 CPU cores, one such excerpt in a batch of 64
    cost 35% of the training speed (`benchmarks/model_speed.py`).
    """
    frames = tf.shape(song["spectrogram"])[0]
    span = tf.maximum(features.sounding_length(song["spectrogram"]), tf.minimum(frames, excerpt_frames))
    start = tf.random.stateless_uniform([], seed=seed, minval=0, maxval=tf.maximum(span - excerpt_frames, 0) + 1,
                                        dtype=tf.int32)
    end = tf.minimum(start + excerpt_frames, frames)
    pad = excerpt_frames - (end - start)

    def crop(x: tf.Tensor, fill) -> tf.Tensor:
        window = x[start:end]
        paddings = tf.concat([[[0, pad]], tf.zeros([tf.rank(x) - 1, 2], tf.int32)], axis=0)
        padded = tf.pad(window, paddings, constant_values=fill)
        padded.set_shape([excerpt_frames] + x.shape[1:].as_list())
        return padded

    spectrogram = crop(song["spectrogram"], 0.0)
    targets = {
        "chord": crop(song["chord"], vocab.IGNORE),
        "root": crop(song["root"], vocab.NO_CHORD),
        "bass": crop(song["bass"], vocab.NO_CHORD),
        "pitches": crop(song["pitches"], 0.0),
    }
    mask = crop(tf.ones([frames], tf.float32), 0.0)
    return spectrogram, targets, mask


def pitch_shift(spectrogram: tf.Tensor, targets: dict[str, tf.Tensor], semitones: tf.Tensor,
                bins_per_semitone: int, vocabulary: "vocab.Vocabulary") -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """Shifts a [T, F] spectrogram by `semitones` and transposes every target to match.

    The bins move by semitones * bins_per_semitone (zero-filled, not wrapped). Chord classes
    (quality-major: offset + quality * 12 + root) move their root; N, X and ignored frames stay;
    root and bass pitch classes (12 = none) move modulo 12; pitch-class vectors rotate.
    """
    semitones = tf.cast(semitones, tf.int32)
    shifted = features.pitch_shift(spectrogram, semitones * bins_per_semitone)
    chord = targets["chord"]
    offset = vocabulary.offset
    rooted = chord >= offset
    quality, root = (chord - offset) // 12, (chord - offset) % 12
    moved = offset + quality * 12 + tf.math.floormod(root + semitones, 12)
    out = dict(targets)
    out["chord"] = tf.where(rooted, moved, chord)
    for key in ("root", "bass"):
        pc = targets[key]
        out[key] = tf.where(pc < 12, tf.math.floormod(pc + semitones, 12), pc)
    out["pitches"] = tf.roll(targets["pitches"], shift=tf.math.floormod(semitones, 12), axis=-1)
    return shifted, out


def detune(spectrogram: tf.Tensor, bins: tf.Tensor) -> tf.Tensor:
    """Moves a spectrogram by a fraction of a bin (|bins| <= 1), interpolating between neighbours.

    Recordings are rarely tuned to A440 exactly; a quarter-tone bin moved by up to half its width
    teaches the network that a chord a few cents off is still the same chord. Labels do not change.
    """
    return features.fractional_shift(spectrogram, bins)


def tuned_to_a440(song: dict[str, tf.Tensor], config: RunConfig) -> dict[str, tf.Tensor]:
    """The song with its spectrogram moved to A440 by its own tuning estimate, when that lies within
    `model.tuning_correction` semitones (what `model.TuningCorrection` does to an input at inference)."""
    spectrogram = song["spectrogram"][None]
    moved = features.to_a440(spectrogram, tf.ones(tf.shape(spectrogram)[:2]), config.features.bins_per_semitone,
                             features.fmin_midi(config.features), features.tuning_first_bin(config.features),
                             config.model.tuning_correction)
    return {**song, "spectrogram": moved[0]}


def gain_and_eq(spectrogram: tf.Tensor, gain_db: tf.Tensor, tilt_db: tf.Tensor, log_scale: float,
                bass_db: tf.Tensor | float = 0.0, bass_corner_bin: float = 0.0,
                shelf_width_bins: float = 1.0) -> tf.Tensor:
    """Applies a gain, a linear spectral tilt (dB, lowest to highest bin) and a low shelf to log1p-compressed magnitudes.

    The shelf changes the bins below `bass_corner_bin` by `bass_db`, with a logistic transition
    `shelf_width_bins` wide (half the change at the corner).
    """
    num_bins = tf.shape(spectrogram)[-1]
    ramp = tf.linspace(-0.5, 0.5, num_bins)
    bins = tf.cast(tf.range(num_bins), tf.float32)
    shelf = tf.sigmoid((bass_corner_bin - bins) / shelf_width_bins)
    db = gain_db + tilt_db * tf.cast(ramp, tf.float32) + bass_db * shelf
    factor = tf.pow(10.0, db / 20.0)
    magnitude = tf.math.expm1(spectrogram)  # = log_scale * |X|; the scale cancels out
    out = tf.math.log1p(magnitude * factor)
    out.set_shape(spectrogram.shape)
    return out


def _excerpts(folder: str | os.PathLike, config: RunConfig, seed: int) -> tf.data.Dataset:
    """Endless augmented excerpts of one dataset's training songs (see `excerpts_per_song` for how many per pass)."""
    data = config.data
    vocabulary = vocab.get_vocabulary(data.vocabulary)
    excerpt_frames = data.excerpt_frames(config.features)
    bins_per_semitone = config.features.bins_per_semitone
    log_scale = config.features.log_scale
    # The low shelf turns at C3 (131 Hz at the default fmin), two octaves above the lowest bin, over half an octave.
    bass_corner = 2 * config.features.bins_per_octave
    shelf_width = config.features.bins_per_octave / 8
    songs = _load_songs(folder, "train", config, shuffle=True)
    if data.correct_tuning and config.model.tuning_correction > 0:
        songs = songs.map(lambda song: tuned_to_a440(song, config), num_parallel_calls=AUTOTUNE)
    if data.cache:
        songs = songs.cache()
    num_songs = records.read_dataset_info(folder)["splits"]["train"]["songs"]
    songs = songs.shuffle(max(1, min(data.shuffle_songs, num_songs)), seed=seed, reshuffle_each_iteration=True)
    songs = songs.flat_map(lambda s: tf.data.Dataset.from_tensors(s).repeat(
        excerpts_per_song(tf.shape(s["spectrogram"], out_type=tf.int64)[0], excerpt_frames, data.epoch_coverage)))
    # One fresh pair of stateless seeds per excerpt, different every pass, reproducible from the seed.
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(4)
    ds = tf.data.Dataset.zip((songs, seeds))

    def excerpt_and_augment(song, seed):
        seed = tf.cast(seed, tf.int32)
        spec, targets, mask = random_excerpt(song, excerpt_frames, seed[0:2])
        draws = tf.random.stateless_uniform([5], seed=seed[2:4])
        if data.shift_min != 0 or data.shift_max != 0:
            shift = data.shift_min + tf.cast(
                tf.floor(draws[0] * (data.shift_max - data.shift_min + 1)), tf.int32)
            shift = tf.minimum(shift, data.shift_max)
            spec, targets = pitch_shift(spec, targets, shift, bins_per_semitone, vocabulary)
        if data.detune_bins > 0:
            spec = detune(spec, (2 * draws[3] - 1) * data.detune_bins)
        if data.gain_db > 0 or data.eq_db > 0 or data.bass_db > 0:
            spec = gain_and_eq(spec, (2 * draws[1] - 1) * data.gain_db, (2 * draws[2] - 1) * data.eq_db, log_scale,
                               (2 * draws[4] - 1) * data.bass_db, bass_corner, shelf_width)
        return spec, targets, mask

    return ds.map(excerpt_and_augment, num_parallel_calls=AUTOTUNE, deterministic=False).repeat()


def excerpts_per_song(frames, excerpt_frames: int, coverage: float):
    """Excerpts one song of `frames` frames gives per pass: round(coverage x frames / excerpt_frames), at least 1."""
    count = tf.round(coverage * tf.cast(frames, tf.float64) / excerpt_frames)
    return tf.maximum(tf.cast(count, tf.int64), 1)


def excerpts_per_epoch(infos: Sequence[dict[str, Any]], config: RunConfig) -> float:
    """Training excerpts in one pass over the datasets: their training frames x coverage / excerpt length."""
    frames = sum(info["splits"]["train"]["frames"] for info in infos)
    return config.data.epoch_coverage * frames / config.data.excerpt_frames(config.features)


def train_dataset(folders: Sequence[str | os.PathLike], config: RunConfig, infos: Sequence[dict[str, Any]],
                  weights: Sequence[float]) -> tuple[tf.data.Dataset, int]:
    """The endless training pipeline over one or more datasets, and its steps per epoch.

    Each dataset gives an endless stream of excerpts (`_excerpts`); `weights` are the shares of the
    excerpts drawn from each (sampled per excerpt), so a batch mixes them. An epoch is
    `data.steps_per_epoch` batches, or as many as one pass over every dataset's training songs
    (`data.epoch_coverage` times their training audio, in excerpts, summed over the datasets).
    """
    data = config.data
    streams = [_excerpts(folder, config, config.train.seed + 1009 * i) for i, folder in enumerate(folders)]
    total = float(sum(weights))
    ds = tf.data.Dataset.sample_from_datasets(streams, [w / total for w in weights], seed=config.train.seed,
                                              rerandomize_each_iteration=True)
    ds = ds.shuffle(max(1, data.shuffle_excerpts), seed=config.train.seed + 1, reshuffle_each_iteration=True)
    ds = ds.batch(data.batch_size, drop_remainder=True, num_parallel_calls=AUTOTUNE, deterministic=False)
    excerpts = excerpts_per_epoch(infos, config)
    steps = data.steps_per_epoch or int(excerpts) // data.batch_size
    if steps < 1:
        raise ValueError(
            f"{', '.join(str(f) for f in folders)}: {excerpts:.1f} excerpts per pass (training audio x "
            f"data.epoch_coverage {data.epoch_coverage:g} / {data.excerpt_seconds:g} s) is less than one batch of "
            f"{data.batch_size}; lower data.batch_size or raise data.epoch_coverage")
    return ds.prefetch(AUTOTUNE), steps


def eval_dataset(folders: str | os.PathLike | Sequence[str | os.PathLike], split: str,
                 config: RunConfig) -> tf.data.Dataset:
    """Whole songs of `split` of one or more datasets, in a fixed order, padded into batches with a mask."""
    folders = [folders] if isinstance(folders, (str, os.PathLike)) else list(folders)
    songs = _load_songs(folders[0], split, config, shuffle=False)
    for folder in folders[1:]:
        songs = songs.concatenate(_load_songs(folder, split, config, shuffle=False))

    def whole(song):
        targets = {key: song[key] for key in TARGET_KEYS}
        return song["spectrogram"], targets, tf.ones([tf.shape(song["spectrogram"])[0]], tf.float32)

    ds = songs.map(whole, num_parallel_calls=AUTOTUNE, deterministic=True)
    padding = (
        tf.constant(0.0),
        {"chord": tf.constant(vocab.IGNORE), "root": tf.constant(vocab.NO_CHORD),
         "bass": tf.constant(vocab.NO_CHORD), "pitches": tf.constant(0.0)},
        tf.constant(0.0),
    )
    ds = ds.padded_batch(config.data.eval_batch_size, padding_values=padding)
    # A known length lets Keras show progress and end the pass without an out-of-data warning.
    songs = sum(records.read_dataset_info(folder)["splits"][split]["songs"] for folder in folders)
    ds = ds.apply(tf.data.experimental.assert_cardinality(-(-songs // config.data.eval_batch_size)))
    return ds.prefetch(AUTOTUNE)


def make_datasets(folders: str | os.PathLike | Sequence[str | os.PathLike], config: RunConfig,
                  weights: Sequence[float] | None = None,
                  validate_on: Sequence[str | os.PathLike] | None = None) -> Datasets:
    """Train and validation pipelines of one or more prepared datasets, checked against the config.

    Args:
        folders: A prepared dataset folder, or several: training mixes them (see `train_dataset`).
        config: The run configuration.
        weights: Share of training excerpts drawn from each dataset; default: in proportion to
            their training audio (frames), as if they had been prepared together as one dataset.
        validate_on: The datasets whose valid splits validate the model (default: all of `folders`).

    Raises:
        ValueError: the datasets' features or labels do not fit the config, a split is empty, or
            the weights do not fit.
    """
    from chordkeras import preparation

    folders = [folders] if isinstance(folders, (str, os.PathLike)) else list(folders)
    if not folders:
        raise ValueError("no dataset given")
    infos = [records.read_dataset_info(folder) for folder in folders]
    for folder, info in zip(folders, infos):
        preparation.check_dataset(info, config.features, config.data.vocabulary, str(folder))
    data = config.data
    if data.shift_min > data.shift_max:
        raise ValueError(f"data.shift_min={data.shift_min} is above data.shift_max={data.shift_max}")
    if data.batch_size < 1 or data.eval_batch_size < 1:
        raise ValueError("data.batch_size and data.eval_batch_size must be >= 1")
    if not data.epoch_coverage > 0:
        raise ValueError(f"data.epoch_coverage must be positive, got {data.epoch_coverage}")
    if data.excerpt_frames(config.features) < 1:
        raise ValueError(f"data.excerpt_seconds={data.excerpt_seconds} is shorter than one frame")
    validate_on = folders if validate_on is None else list(validate_on)
    unknown = [str(v) for v in validate_on if str(v) not in {str(f) for f in folders}]
    if unknown or not validate_on:
        raise ValueError(f"validation datasets {unknown or '(none)'} are not among the training datasets")
    for folder, info in zip(folders, infos):
        if info["splits"]["train"]["songs"] < 1:
            raise ValueError(f"{folder}: the train split has no songs")
        if str(folder) in {str(v) for v in validate_on} and info["splits"]["valid"]["songs"] < 1:
            raise ValueError(f"{folder}: the valid split has no songs")
    if weights is None:
        weights = [info["splits"]["train"]["frames"] for info in infos]
    weights = [float(w) for w in weights]
    if len(weights) != len(folders) or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"mixing weights {weights} do not fit {len(folders)} dataset(s): one non-negative weight "
                         "each, not all 0")
    train, steps = train_dataset(folders, config, infos, weights)
    info = merged_info(folders, infos, weights)
    return Datasets(train=train, valid=eval_dataset(validate_on, "valid", config), steps_per_epoch=steps, info=info)


def merged_info(folders: Sequence[str | os.PathLike], infos: Sequence[dict[str, Any]],
                weights: Sequence[float]) -> dict[str, Any]:
    """One dataset's info as is; for several, their splits and label histograms added up, each listed with its weight."""
    if len(infos) == 1:
        return infos[0]
    histogram: dict[str, int] = collections.Counter()
    for info in infos:
        histogram.update(info["label_histogram"])
    splits = {split: {key: sum(info["splits"][split][key] for info in infos) for key in infos[0]["splits"][split]}
              for split in infos[0]["splits"]}
    return {**infos[0], "splits": splits, "total_hours": sum(info["total_hours"] for info in infos),
            "label_histogram": dict(histogram.most_common()),
            "mixture": [{"dataset": str(f), "weight": w, "splits": info["splits"]}
                        for f, info, w in zip(folders, infos, weights)]}


def class_weights(info: dict[str, Any], vocabulary_name: str, power: float = 0.5) -> np.ndarray:
    """Chord-class weights from the dataset's label histogram: (count / mean) ** -power, unseen classes 1."""
    vocabulary = vocab.get_vocabulary(vocabulary_name)
    large = vocab.get_vocabulary("large")
    counts = np.zeros(vocabulary.num_classes)
    for name, frames in info["label_histogram"].items():
        cls = vocabulary.from_large[large.class_names.index(name)]
        if cls >= 0:
            counts[cls] += frames
    weights = np.ones(vocabulary.num_classes)
    seen = counts > 0
    weights[seen] = (counts[seen] / counts[seen].mean()) ** -power
    return (weights / weights[seen].mean() if seen.any() else weights).astype(np.float32)
