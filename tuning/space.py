"""The search space: every tuned hyperparameter, its range and the config keys it sets, in one place.

A trial's configuration is the base RunConfig (preset + `--set` overrides) with the trial's
hyperparameter values applied through `chordkeras.config.apply_overrides`; the model is then built
by `chordkeras.model.build_model` from that config like any other run. Config keys named in
`--set` are held fixed: their hyperparameters are left out of the search.

Architecture-specific hyperparameters live in keras-tuner conditional scopes, so a trial only
carries (and the oracle only explores) the sizes of the architecture it uses.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Collection, Sequence

import keras_tuner as kt

from chordkeras import config as config_lib
from chordkeras.config import RunConfig

ARCHITECTURE = "architecture"
# Pitch-shift augmentation ranges in semitones (data.shift_min, data.shift_max): none, +-2, and the
# DataConfig default "all_keys", with which every excerpt can land in any of the 12 keys.
PITCH_SHIFTS = {"none": (0, 0), "pm2": (-2, 2), "all_keys": (-5, 6)}


@dataclasses.dataclass(frozen=True)
class Tunable:
    """One hyperparameter of the search space.

    Attributes:
        name: The keras-tuner hyperparameter name.
        keys: Config keys (`section.field`) it sets; pinning any of them with `--set` fixes it.
        declare: Registers the hyperparameter on `hp` and returns the trial's value.
        to_overrides: Turns the value into {config key: value} for the base config.
        architecture: When set, the hyperparameter only exists for that `model.architecture`.
    """

    name: str
    keys: tuple[str, ...]
    declare: Callable[[kt.HyperParameters], Any]
    to_overrides: Callable[[Any, RunConfig], dict[str, Any]] | None = None
    architecture: str | None = None

    def overrides(self, value: Any, base: RunConfig) -> dict[str, Any]:
        if self.to_overrides is not None:
            return self.to_overrides(value, base)
        return {self.keys[0]: value}


def _conv_filters(width: int, base: RunConfig) -> dict[str, Any]:
    # The number of conv blocks (and their pooling) stays that of the base config; widths double
    # from block to block as in the default (16, 32).
    blocks = len(base.model.conv_filters)
    return {"model.conv_filters": tuple(width * 2 ** i for i in range(blocks))}


def _pitch_shift(name: str, base: RunConfig) -> dict[str, Any]:
    low, high = PITCH_SHIFTS[name]
    return {"data.shift_min": low, "data.shift_max": high}


SPACE: tuple[Tunable, ...] = (
    Tunable(ARCHITECTURE, ("model.architecture",),
            lambda hp: hp.Choice(ARCHITECTURE, ["crnn", "transformer"])),
    Tunable("conv_width", ("model.conv_filters",),
            lambda hp: hp.Choice("conv_width", [8, 16, 32]), _conv_filters),
    Tunable("rnn_units", ("model.rnn_units",),
            lambda hp: hp.Choice("rnn_units", [32, 64, 128, 256]), architecture="crnn"),
    Tunable("rnn_layers", ("model.rnn_layers",),
            lambda hp: hp.Int("rnn_layers", 1, 2), architecture="crnn"),
    Tunable("transformer_dim", ("model.transformer_dim",),
            lambda hp: hp.Choice("transformer_dim", [64, 96, 128, 192]), architecture="transformer"),
    Tunable("transformer_layers", ("model.transformer_layers",),
            lambda hp: hp.Int("transformer_layers", 1, 4), architecture="transformer"),
    Tunable("dropout", ("model.dropout",),
            lambda hp: hp.Float("dropout", 0.0, 0.5, step=0.1)),
    Tunable("learning_rate", ("train.learning_rate",),
            lambda hp: hp.Float("learning_rate", 1e-4, 1e-2, sampling="log")),
    Tunable("lr_schedule", ("train.lr_schedule",),
            lambda hp: hp.Choice("lr_schedule", ["plateau", "cosine", "constant"])),
    Tunable("excerpt_seconds", ("data.excerpt_seconds",),
            lambda hp: hp.Choice("excerpt_seconds", [5.0, 10.0, 20.0])),
    Tunable("batch_size", ("data.batch_size",),
            lambda hp: hp.Choice("batch_size", [16, 32, 64])),
    Tunable("pitch_shift", ("data.shift_min", "data.shift_max"),
            lambda hp: hp.Choice("pitch_shift", list(PITCH_SHIFTS)), _pitch_shift),
)

def override_key(item: str) -> str:
    """The `section.field` a `--set` item names (bare keys resolved like `apply_overrides` does)."""
    key = item.split("=", 1)[0].strip()
    if "." in key:
        return key
    sections = {f.name: getattr(RunConfig(), f.name) for f in dataclasses.fields(RunConfig)}
    owners = [name for name, section in sections.items() if key in {f.name for f in dataclasses.fields(section)}]
    if len(owners) != 1:
        raise ValueError(f"override key {key!r} matches {owners or 'no section'}; use section.key")
    return f"{owners[0]}.{key}"


def fixed_keys(overrides: Sequence[str]) -> frozenset[str]:
    """Config keys pinned by `--set` items; their hyperparameters are not tuned."""
    return frozenset(override_key(item) for item in overrides)


def tuned(base: RunConfig, fixed: Collection[str] = ()) -> list[Tunable]:
    """The hyperparameters left to tune when `fixed` config keys are pinned.

    With `model.architecture` fixed, the other architecture's hyperparameters are left out too.
    """
    space = [t for t in SPACE if not set(t.keys) & set(fixed)]
    if any(t.name == ARCHITECTURE for t in space):
        return space
    return [t for t in space if t.architecture in (None, base.model.architecture)]


def trial_config(hp: kt.HyperParameters, base: RunConfig, fixed: Collection[str] = ()) -> RunConfig:
    """Draws (or reads back) the trial's hyperparameters from `hp` and applies them to `base`.

    Args:
        hp: The trial's hyperparameters (new entries are registered on first use).
        base: The configuration every trial starts from.
        fixed: Config keys pinned by the user; their hyperparameters are not declared.

    Returns:
        The trial's RunConfig.
    """
    values: dict[str, Any] = {}
    architecture_fixed = "model.architecture" in fixed
    for tunable in tuned(base, fixed):
        if tunable.architecture is None or architecture_fixed:
            value = tunable.declare(hp)
        else:
            # Registered for both architectures so the oracle knows the whole space; the value is
            # None (inactive) unless this trial uses the tunable's architecture.
            with hp.conditional_scope(ARCHITECTURE, [tunable.architecture]):
                value = tunable.declare(hp)
        if value is not None:
            values.update(tunable.overrides(value, base))
    return config_lib.apply_overrides(base, [f"{key}={_format(value)}" for key, value in values.items()])


def _format(value: Any) -> str:
    # The same spelling `config.resolve` uses for presets: tuples as JSON lists.
    return json.dumps(list(value)) if isinstance(value, tuple) else str(value)
