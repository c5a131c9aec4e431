"""`ChordHyperModel`: keras-tuner's view of a chordkeras training run.

`build(hp)` turns the trial's hyperparameters into a RunConfig (`tuning.space`) and builds and
compiles the network with `chordkeras.model.build_model` / `compile_model`; `fit` trains it with the
model's own `train_step` on the pipelines of `chordkeras.dataset.make_datasets`, exactly the pieces
`chordkeras.fit` uses. Pipelines are rebuilt only when a trial changes what they depend on (batch
size, excerpt length, pitch-shift range, ...), so trials that differ in the model alone share one
pipeline and its in-memory song cache.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Collection, Sequence

import keras
import keras_tuner as kt

from chordkeras import dataset as dataset_lib
from chordkeras import devices
from chordkeras import model as model_lib
from chordkeras import train as train_lib
from chordkeras.config import RunConfig
from tuning import space


def trial_callbacks(config: RunConfig, steps_per_epoch: int, trial_dir: str | os.PathLike | None = None,
                    verbose: int = 0) -> list[keras.callbacks.Callback]:
    """The callbacks each trial adds to the tuner's: throughput, LR plateau, early stopping, history.

    They are made per trial (not passed to `Tuner.search`) because they depend on the trial's
    batch size, excerpt length and schedule. keras-tuner's own callbacks keep the best epoch's
    weights, so early stopping does not restore weights itself.
    """
    callbacks: list[keras.callbacks.Callback] = [
        train_lib.Throughput(steps_per_epoch, config.data.batch_size, config.data.excerpt_seconds),
    ]
    callbacks += train_lib.stopping_callbacks(config, verbose, restore_best_weights=False)
    if trial_dir is not None:
        callbacks.append(keras.callbacks.CSVLogger(str(pathlib.Path(trial_dir) / "history.csv"), append=True))
    return callbacks


class ChordHyperModel(kt.HyperModel):
    """Builds and trains chordkeras models for keras-tuner trials.

    Args:
        base: The configuration every trial starts from (preset + overrides).
        dataset_dir: A prepared dataset folder (`tfrecords/<name>`).
        fixed: Config keys held fixed (not tuned), see `tuning.space.fixed_keys`.
    """

    def __init__(self, base: RunConfig, dataset_dir: str | os.PathLike, fixed: Collection[str] = ()):
        super().__init__(name="chordkeras")
        self.base = base
        self.dataset_dir = str(dataset_dir)
        self.fixed = frozenset(fixed)
        self.device = devices.detect_device()
        self._data: tuple[Any, dataset_lib.Datasets] | None = None
        self.datasets_built = 0  # how many times pipelines were (re)built, for logs and tests

    def config(self, hp: kt.HyperParameters) -> RunConfig:
        """The trial's RunConfig."""
        return space.trial_config(hp, self.base, self.fixed)

    def datasets(self, config: RunConfig) -> dataset_lib.Datasets:
        """The train/valid pipelines for `config`, rebuilt only when what they depend on changed."""
        key = (config.data, config.features, config.train.seed)
        if self._data is None or self._data[0] != key:
            self._data = (key, dataset_lib.make_datasets(self.dataset_dir, config))
            self.datasets_built += 1
        return self._data[1]

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        config = self.config(hp)
        # keras-tuner clears the Keras session before each build, which also resets the global
        # dtype policy: set seed and precision here, for every trial.
        keras.utils.set_random_seed(config.train.seed)
        precision = devices.set_precision(config.train.mixed_precision, self.device.kind)
        data = self.datasets(config)
        weights = (dataset_lib.class_weights(data.info, config.data.vocabulary)
                   if config.train.class_weighting else None)
        model = model_lib.build_model(config, class_weights=weights, precision=precision)
        # The cosine schedule decays over the trial's maximum epochs (train.epochs).
        model_lib.compile_model(model, config, data.steps_per_epoch)
        # Built now, the optimizer's state (moments, step count, learning rate) is part of the
        # checkpoints keras-tuner writes and loads: Hyperband's continued trials pick up the
        # schedule where the earlier round left it, and reloading the best trial warns of nothing.
        model.optimizer.build(model.trainable_variables)
        return model

    def fit(self, hp: kt.HyperParameters, model: keras.Model, *args, callbacks: Sequence = (),
            trial_dir: str | os.PathLike | None = None, epochs: int | None = None, initial_epoch: int = 0,
            verbose: int | str = "auto", **kwargs) -> keras.callbacks.History:
        """Trains one trial's model; returns the Keras history (the tuner reads the objective from it).

        Args:
            hp: The trial's hyperparameters.
            model: The model from `build(hp)`.
            callbacks: The tuner's callbacks (deep copies of those given to `search`, plus its own).
            trial_dir: The trial's folder; its history.csv is written there.
            epochs, initial_epoch: Set by Hyperband; otherwise `train.epochs` from 0.
            verbose: Keras verbosity.
        """
        if args or kwargs:
            raise TypeError(f"ChordHyperModel.fit takes its data from the dataset folder; got {args} {sorted(kwargs)}")
        config = self.config(hp)
        data = self.datasets(config)
        verbose_level = 1 if verbose == "auto" else int(verbose)
        return model.fit(
            data.train,  # endless: steps_per_epoch batches are one pass (see chordkeras.dataset.Datasets)
            validation_data=data.valid,
            epochs=epochs or config.train.epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=data.steps_per_epoch,
            callbacks=list(callbacks) + trial_callbacks(config, data.steps_per_epoch, trial_dir, verbose_level),
            shuffle=False,  # the pipeline shuffles
            verbose=verbose,
        )
