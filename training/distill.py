"""Knowledge distillation: soft targets for the training images from one or more teacher models.

A single net within our per-face budget learns better from a stronger teacher's class probabilities
than from FER2013's one-hot (and often noisy) labels alone. The teachers may be too slow to serve: an
ensemble of earlier models, for instance. Their probabilities are computed once, before training
(offline distillation), averaged over the teachers and over each image and its mirror, then
softened with a temperature. ``training.augment.dataset`` mixes them into the training targets::

    target = (1 - weight) * smoothed one-hot label + weight * teacher probabilities

With ``--votes`` as well, the raters' distribution and the teachers' probabilities share that
weight equally.

**The targets' space.** A model trained with the balanced loss (``--balance``) and then adjusted
(``training.adjust``: ``logit_adjustment.tau``, ``temperature`` in its metadata) no longer answers
with the training targets' prior. A student learns from the teachers as the training targets would
read: each teacher's served log-probabilities are undone to its raw logits and given back the
prior its loss took out (``to_targets_space``), from the ``.json`` beside the model file.

Usage (the teachers are .keras or .tflite files)::

    python -m training.train ... --teacher a.keras --teacher b.keras --distill 0.5 --temperature 1
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from training.predict import load_predictor
from training.variants import metadata_of


def soften(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities -> softmax(log(probs) / temperature): flatter for temperature > 1."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    logits = np.log(np.clip(probs.astype(np.float64), 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    soft = np.exp(logits)
    return (soft / soft.sum(axis=1, keepdims=True)).astype(np.float32)


def to_targets_space(probs: np.ndarray, training: dict) -> np.ndarray:
    """A model's served probabilities -> what its training targets would say, from its metadata.

    Served logits are ``(raw - a * log prior) / T`` (``training.adjust``: tau ``a``, temperature ``T``);
    the balanced loss fitted ``raw + b * log prior`` to the targets (tau ``b``). So the targets' logits
    are ``T * log(probs) + (a + b) * log prior``. A model without either is returned as it is.
    """
    balance = training.get("balance") or {}
    adjust = training.get("logit_adjustment") or {}
    prior = balance.get("prior") or adjust.get("prior")
    shift = float(balance.get("tau", 0.0)) + float(adjust.get("tau", 0.0))
    logits = float(training.get("temperature", 1.0)) * np.log(np.clip(probs.astype(np.float64), 1e-12, 1.0))
    if prior is not None and shift:
        logits = logits + shift * np.log(np.asarray(prior, dtype=np.float64))
    logits -= logits.max(axis=1, keepdims=True)
    out = np.exp(logits)
    return (out / out.sum(axis=1, keepdims=True)).astype(np.float32)


def teacher_metadata(path: Path) -> dict:
    """The ``training`` section of the export metadata beside a model file (``emotion_classifier.json``
    in its folder, for the float and the int8 file alike; {} when there is none)."""
    if not (Path(path).parent / "emotion_classifier.json").exists():
        return {}
    return metadata_of(path).get("training", {})


def teacher_targets(teachers: Sequence[Path], x: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """uint8 faces (N, 48, 48) -> the teachers' mean flip-averaged probabilities (N, 7) in their training
    targets' space, softened."""
    if not teachers:
        raise ValueError("at least one teacher model is needed")
    total = None
    for path in teachers:
        predict, training = load_predictor(path), teacher_metadata(path)
        probs = to_targets_space(predict(x), training) + to_targets_space(predict(x[:, :, ::-1]), training)
        total = probs if total is None else total + probs
    return soften(total / (2 * len(teachers)), temperature)
