"""Stochastic weight averaging (Izmailov et al., 2018): the mean of the weights after each late epoch.

Late in training the weights wander around a wide minimum; their average usually sits nearer its
centre and generalizes better than any single epoch. ``WeightAverage`` keeps a running mean of
every model variable (batch-norm statistics included) from ``start_epoch`` (1-based) on;
``averaged_copy`` returns a model with the mean, whose batch-norm statistics are then re-estimated
on training images (``recompute_batch_norm``), because averaged statistics do not match averaged
weights exactly.

Usage: ``python -m training.train ... --average-from 3``; the export takes the average if it beats
the best single epoch on val.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np

from training.data import Split
from training.labels import to_inputs


class WeightAverage(keras.callbacks.Callback):
    """The running mean; with ``state``, it is saved after every epoch and picked up again by a
    run that resumes (``training.train`` resumes from its last finished epoch)."""

    def __init__(self, start_epoch: int, state: Path | None = None) -> None:
        super().__init__()
        self.start_epoch = start_epoch
        self.state = state
        self.count = 0
        self.mean: list[np.ndarray] | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        if self.state is not None and self.state.exists():
            with np.load(self.state) as saved:
                self.count = int(saved["count"])
                self.mean = [saved[f"w{i}"] for i in range(len(saved.files) - 1)]

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if epoch + 1 < self.start_epoch:
            return
        weights = [np.asarray(w, dtype=np.float64) for w in self.model.get_weights()]
        self.count += 1
        if self.mean is None:
            self.mean = weights
        else:
            for mean, w in zip(self.mean, weights, strict=True):
                mean += (w - mean) / self.count
        if self.state is not None:
            partial = self.state.with_suffix(".partial.npz")
            np.savez(partial, count=self.count, **{f"w{i}": m for i, m in enumerate(self.mean)})
            partial.replace(self.state)

    def averaged_copy(self) -> keras.Model:
        if self.mean is None:
            raise ValueError(f"no epoch reached {self.start_epoch}: nothing was averaged")
        # from the config, not clone_model: a clone keeps the compiled loss, which may be a closure
        # (``training.adjust.balanced_loss``) that Keras cannot rebuild
        model = type(self.model).from_config(self.model.get_config())
        model.set_weights([m.astype(w.dtype) for m, w in zip(self.mean, self.model.get_weights(), strict=True)])
        return model


def recompute_batch_norm(model: keras.Model, inputs: np.ndarray, batch_size: int = 128) -> None:
    """Set every batch-norm layer's moving statistics to their mean over ``inputs`` (N, 48, 48, 1)."""
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not norms:
        return
    saved = [layer.momentum for layer in norms]
    for step, start in enumerate(range(0, len(inputs), batch_size)):
        for layer in norms:  # a cumulative mean: batch k gets weight 1/(k+1)
            layer.momentum = step / (step + 1)
        model(inputs[start : start + batch_size], training=True)
    for layer, momentum in zip(norms, saved, strict=True):
        layer.momentum = momentum


def choose_average(
    best: keras.Model, averager: WeightAverage, train: Split, val: Split, best_accuracy: float
) -> tuple[keras.Model, dict[str, Any]]:
    """The averaged model (batch norm re-estimated on train) if it beats the best epoch on val."""
    averaged = averager.averaged_copy()
    recompute_batch_norm(averaged, to_inputs(train.x))
    accuracy = float((averaged.predict(to_inputs(val.x), batch_size=512, verbose=0).argmax(1) == val.y).mean())
    chosen = accuracy > best_accuracy
    print(f"average of {averager.count} epochs: val accuracy {accuracy:.4f} "
          f"({'exported' if chosen else 'not exported'}; best epoch {best_accuracy:.4f})", flush=True)
    info = {"from_epoch": averager.start_epoch, "epochs": averager.count, "val_accuracy": round(accuracy, 4),
            "exported": chosen}
    return (averaged if chosen else best), info
