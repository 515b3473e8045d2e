"""Knowledge distillation: soft targets for the training images from one or more teacher models.

A single net at our 1 ms budget learns better from a stronger teacher's class probabilities than
from FER2013's one-hot (and often noisy) labels alone. The teachers may be too slow to serve: an
ensemble of earlier models, for instance. Their probabilities are computed once, before training
(offline distillation), averaged over the teachers and over each image and its mirror, then
softened with a temperature. ``training.augment.dataset`` mixes them into the training targets::

    target = (1 - weight) * smoothed one-hot label + weight * teacher probabilities

Usage (the teachers are .keras or .tflite files)::

    python -m training.train ... --teacher a.keras --teacher b.keras --distill 0.5 --temperature 1
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from training.predict import load_predictor


def soften(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities -> softmax(log(probs) / temperature): flatter for temperature > 1."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    logits = np.log(np.clip(probs.astype(np.float64), 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    soft = np.exp(logits)
    return (soft / soft.sum(axis=1, keepdims=True)).astype(np.float32)


def teacher_targets(teachers: Sequence[Path], x: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """uint8 faces (N, 48, 48) -> the teachers' mean flip-averaged probabilities (N, 7), softened."""
    if not teachers:
        raise ValueError("at least one teacher model is needed")
    total = None
    for path in teachers:
        predict = load_predictor(path)
        probs = predict(x) + predict(x[:, :, ::-1])
        total = probs if total is None else total + probs
    return soften(total / (2 * len(teachers)), temperature)
