"""How far a model's scores are from how often it is right, and temperature scaling to bring them closer.

**Expected calibration error** (``ece``, 15 equal-width bins of the top score, Guo et al. 2017):
the faces are grouped by the model's top probability; in each bin the mean top probability is set
against how often the top answer is right, and the gaps are averaged, weighted by the bin's share
of faces. "Right" can be measured against FER2013's one label (0 or 1 per face) or against the ten
FER+ raters (the share of raters who chose the model's answer: what a random rater would agree
with), which is the truth a user's "0.6" should mean.

**Temperature scaling** divides the logits by ``T`` before the softmax: one number, fitted to the
raters' vote distribution by the lowest cross-entropy (``fit_temperature``), which changes no
answer, only how sure each looks. Because the models end in a dense layer with a softmax, it
folds exactly into that layer (``fold_temperature``), as logit adjustment does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

BINS = 15
TEMPERATURES = np.round(np.arange(0.5, 3.001, 0.05), 2)


def _binned(probabilities: np.ndarray, truth: np.ndarray, bins: int) -> tuple[np.ndarray, ...]:
    """Each face's bin, top score and right-ness (1/0 against a label, the share against a distribution)."""
    top = probabilities.argmax(1)
    confidence = probabilities[np.arange(len(top)), top]
    right = (top == truth).astype(np.float64) if truth.ndim == 1 else truth[np.arange(len(top)), top]
    which = np.clip(np.digitize(confidence, np.linspace(0.0, 1.0, bins + 1)[1:-1]), 0, bins - 1)
    return which, confidence, right


def ece(probabilities: np.ndarray, truth: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error of the top answers. ``truth`` is (N,) class ids, or (N, 7)
    distributions (each face's right-ness is the share its top answer gets)."""
    which, confidence, right = _binned(probabilities, truth, bins)
    return float(sum((which == b).mean() * abs(confidence[which == b].mean() - right[which == b].mean())
                     for b in range(bins) if (which == b).any()))


def reliability(probabilities: np.ndarray, truth: np.ndarray, bins: int = BINS) -> list[dict[str, Any]]:
    """Per non-empty bin: its range, faces, mean top score and how often the top answer is right."""
    which, confidence, right = _binned(probabilities, truth, bins)
    return [{"from": round(b / bins, 3), "to": round((b + 1) / bins, 3), "faces": int((which == b).sum()),
             "score": round(float(confidence[which == b].mean()), 3),
             "right": round(float(right[which == b].mean()), 3)}
            for b in range(bins) if (which == b).any()]


def scale(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities as if the logits had been divided by ``temperature``."""
    logits = np.log(np.clip(probabilities, 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    out = np.exp(logits)
    return out / out.sum(axis=1, keepdims=True)


def fit_temperature(probabilities: np.ndarray, distribution: np.ndarray) -> float:
    """The temperature (0.5 to 3, in steps of 0.05) with the lowest cross-entropy against ``distribution``."""
    losses = [float(-(distribution * np.log(np.clip(scale(probabilities, t), 1e-12, 1.0))).sum(1).mean())
              for t in TEMPERATURES]
    return float(TEMPERATURES[int(np.argmin(losses))])


def fold_temperature(model: Any, temperature: float) -> None:
    """Divide the last (softmax) dense layer's kernel and bias by ``temperature``."""
    layer = model.layers[-1]
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel / temperature, bias / temperature])
