"""Configuration: frozen dataclasses, named presets and `key=value` overrides.

Every number that more than one module needs lives here once; derived numbers
(bins, frame rate, class counts) are properties, never retyped elsewhere.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Mapping, Sequence


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """The log-frequency spectrogram computed by `chordkeras.features`.

    Attributes:
        sample_rate: Audio is resampled to this rate before analysis.
        hop_length: Samples between frame centres.
        fmin: Centre frequency of the lowest bin in Hz (C1).
        bins_per_octave: Log-frequency bins per octave (24 = quarter tones).
        n_octaves: Octaves covered from `fmin`.
        max_fft: Longest analysis window in samples (lowest octaves).
        min_fft: Shortest analysis window in samples (highest octaves).
        log_scale: Magnitudes are compressed as log1p(log_scale * magnitude).
    """

    sample_rate: int = 22050
    hop_length: int = 2048
    fmin: float = 32.703195662574764
    bins_per_octave: int = 24
    n_octaves: int = 6
    max_fft: int = 16384
    min_fft: int = 2048
    log_scale: float = 100.0

    @property
    def n_bins(self) -> int:
        return self.bins_per_octave * self.n_octaves

    @property
    def bins_per_semitone(self) -> int:
        if self.bins_per_octave % 12:
            raise ValueError(f"bins_per_octave={self.bins_per_octave} is not a multiple of 12")
        return self.bins_per_octave // 12

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def num_frames(self, num_samples):
        """Frames for `num_samples` samples at `sample_rate` (centred frames); an int or an integer tensor."""
        return 1 + num_samples // self.hop_length

    def frame_times(self, num_frames: int) -> list[float]:
        """Centre time in seconds of each frame."""
        return [i * self.hop_length / self.sample_rate for i in range(num_frames)]


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """How records become training batches (`chordkeras.dataset`).

    Attributes:
        vocabulary: Chord vocabulary the model predicts ('majmin' or 'large').
        excerpt_seconds: Length of the random training excerpts.
        batch_size: Training excerpts per batch (global, across replicas).
        eval_batch_size: Whole songs per validation/test batch.
        shift_min, shift_max: Pitch-shift augmentation range in semitones (inclusive).
        detune_bins: Random shift by up to +- this fraction of a bin (0.5 bin = 25 cents), interpolated.
        gain_db: Random overall gain in +-dB applied to the stored magnitudes. 0 by default: the
            network's level normalisation (model.level_window_seconds) takes any gain out again.
        eq_db: Random spectral tilt in +-dB from the lowest to the highest bin.
        bass_db: Random low shelf in +-dB below C3 (131 Hz): recordings differ most in their low end.
        cache: Keep parsed songs in memory after the first epoch.
        shuffle_songs, shuffle_excerpts: Shuffle buffer sizes.
        epoch_coverage: How many times an epoch covers the training audio: each song gives
            round(epoch_coverage x its length / excerpt_seconds) random excerpts per pass, at least one,
            so long songs are heard in proportion to their length and an epoch is the same share of a
            dataset of hours as of minutes.
        steps_per_epoch: Fixed steps per epoch; 0 means one pass (see `epoch_coverage`).
    """

    vocabulary: str = "large"
    excerpt_seconds: float = 10.0
    batch_size: int = 64
    eval_batch_size: int = 8
    shift_min: int = -5
    shift_max: int = 6
    detune_bins: float = 0.5
    gain_db: float = 0.0
    eq_db: float = 6.0
    bass_db: float = 0.0
    cache: bool = True
    # Each training song moved to A440 by its own tuning estimate before excerpts are cut, as the network
    # moves its input at inference (model.tuning_correction, within the same limit); off with that at 0.
    correct_tuning: bool = False
    shuffle_songs: int = 1024
    shuffle_excerpts: int = 512
    epoch_coverage: float = 1.0
    steps_per_epoch: int = 0

    def excerpt_frames(self, features: FeatureConfig) -> int:
        return int(round(self.excerpt_seconds * features.frame_rate))


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The network built by `chordkeras.model.build_model`."""

    architecture: str = "crnn"
    # Window of the input's level normalisation (model.LevelNormalization), in seconds; 0 feeds the
    # network the recording's absolute level, as models before it had.
    level_window_seconds: float = 4.0
    # At inference, an input whose own tuning estimate lies within this many semitones of A440 is moved
    # back to A440 (model.TuningCorrection; chosen on the real dev split); 0 turns it off.
    tuning_correction: float = 0.4
    conv_filters: tuple[int, ...] = (16, 32)
    conv_kernel: int = 3
    pool_frequency: tuple[int, ...] = (2, 2)
    downsampling: str = "stride"  # stride | max_pool: how conv blocks reduce frequency (model.ConvBlock)
    embedding_dim: int = 128  # per-frame features between the conv front end and the GRUs (crnn)
    rnn_units: int = 64
    rnn_layers: int = 1
    transformer_dim: int = 96
    transformer_heads: int = 4
    transformer_layers: int = 2
    dropout: float = 0.2


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How `chordkeras.train.train` fits a model."""

    epochs: int = 40
    early_stopping: bool = True
    patience: int = 10  # 6 stopped some runs on real songs at a chance peak of their noisier validation accuracy
    min_delta: float = 0.001
    monitor: str = "val_chord_accuracy"
    learning_rate: float = 2e-3
    lr_schedule: str = "plateau"  # plateau | cosine | constant
    lr_patience: int = 3
    lr_factor: float = 0.3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.05
    class_weighting: bool = False
    loss_weights: tuple[tuple[str, float], ...] = (
        ("chord", 1.0),
        ("root", 0.5),
        ("bass", 0.5),
        ("pitches", 0.5),
    )
    mixed_precision: str = "auto"  # auto | off | mixed_float16 | mixed_bfloat16
    jit_compile: bool = False
    # Train steps per call into the compiled graph: amortises Keras's per-call Python work (about
    # 8% of step time at 1 on 2 CPU cores, 0.4% at 8; see benchmarks/pipeline.py).
    steps_per_execution: int = 8
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a run needs; written as config.json into each run folder."""

    features: FeatureConfig = FeatureConfig()
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunConfig":
        return cls(
            features=_from_dict(FeatureConfig, d.get("features", {})),
            data=_from_dict(DataConfig, d.get("data", {})),
            model=_from_dict(ModelConfig, d.get("model", {})),
            train=_from_dict(TrainConfig, d.get("train", {})),
        )


def _from_dict(cls, d: Mapping[str, Any]):
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(d) - set(names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
    kwargs = {}
    for key, value in d.items():
        default = getattr(cls(), key)
        kwargs[key] = _like(default, value)
    return cls(**kwargs)


def _like(default: Any, value: Any) -> Any:
    """Converts JSON/CLI values to the type of `default` (lists become tuples)."""
    if isinstance(default, tuple):
        if isinstance(value, str):
            value = json.loads(value) if value.strip().startswith("[") else value.split(",")
        if default and isinstance(default[0], tuple):
            return tuple(tuple(v) for v in value)
        elem = type(default[0]) if default else int
        return tuple(elem(v) for v in value)
    if isinstance(default, bool):
        if isinstance(value, str):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"not a boolean: {value!r}")
        return bool(value)
    if isinstance(default, float):
        return float(value)
    if isinstance(default, int):
        return int(value)
    return value


def feature_config_from_dict(d: Mapping[str, Any]) -> FeatureConfig:
    return _from_dict(FeatureConfig, d)


PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # The default: the conv + BiGRU model, trained to early stopping.
    "default": {},
    # A few seconds of training for tests and smoke runs.
    "tiny": {
        "data": {"batch_size": 8, "excerpt_seconds": 4.0, "eval_batch_size": 4},
        "model": {"conv_filters": (8,), "pool_frequency": (4,), "embedding_dim": 32, "rnn_units": 16},
        "train": {"epochs": 2, "early_stopping": False},
    },
    # The transformer encoder over frames.
    "transformer": {"model": {"architecture": "transformer"}},
    # Major/minor only.
    "majmin": {"data": {"vocabulary": "majmin"}},
}


def apply_overrides(config: RunConfig, overrides: Sequence[str]) -> RunConfig:
    """Applies `section.key=value` strings, e.g. `train.epochs=3`.

    A bare `key=value` is accepted when the key names exactly one field.
    """
    sections = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not key=value")
        key, value = item.split("=", 1)
        key = key.strip()
        if "." in key:
            section, name = key.split(".", 1)
        else:
            owners = [s for s, obj in sections.items() if hasattr(obj, key)]
            if len(owners) != 1:
                raise ValueError(f"override key {key!r} matches {owners or 'no section'}; use section.key")
            section, name = owners[0], key
        if section not in sections or not hasattr(sections[section], name):
            raise ValueError(f"unknown config key {key!r}")
        current = sections[section]
        sections[section] = dataclasses.replace(current, **{name: _like(getattr(current, name), value)})
    return RunConfig(**sections)


def resolve(preset: str = "default", overrides: Sequence[str] = ()) -> RunConfig:
    """Builds a RunConfig from named presets (comma separated) and overrides."""
    config = RunConfig()
    for name in [p for p in preset.split(",") if p]:
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
        items = [f"{section}.{k}={json.dumps(list(v)) if isinstance(v, tuple) else v}"
                 for section, values in PRESETS[name].items() for k, v in values.items()]
        config = apply_overrides(config, items)
    return apply_overrides(config, overrides)


def check_features_match(dataset_features: Mapping[str, Any], model_features: FeatureConfig, where: str) -> None:
    """Raises ValueError when a dataset's feature config differs from the model's."""
    theirs = feature_config_from_dict(dataset_features)
    if theirs != model_features:
        diff = {
            f.name: (getattr(theirs, f.name), getattr(model_features, f.name))
            for f in dataclasses.fields(FeatureConfig)
            if not math.isclose(float(getattr(theirs, f.name)), float(getattr(model_features, f.name)))
        }
        raise ValueError(f"{where}: feature config differs from the model's (dataset, model): {diff}")
