"""Logit adjustment: undo the prior a model learned from its targets, by ``tau`` (Menon et al. 2021).

A model trained on targets whose mean is the prior ``pi`` (for the raters' votes, much more
neutral than FER2013's labels) leans towards the classes ``pi`` favours. Subtracting
``tau * log(pi)`` from its logits, i.e. dividing its probabilities by ``pi ** tau`` and
renormalising, removes that lean in part (``tau`` < 1) or in whole (``tau`` = 1). Because the
model ends in a dense layer with a softmax, the shift is exact when folded into that layer's bias,
so the adjusted model costs nothing more to serve.

Against ``uniform`` (the default) the adjustment aims at balanced answers: it divides by the whole
prior, so it lifts rare disgust as well. Against ``labels`` it divides by the targets' prior over
FER2013's own label prior: only the lean that the votes added (towards neutral) is undone, and a
model trained on the labels alone is left as it is.

Usage (fold it in and export, like ``training.export``)::

    python -m training.adjust MODEL.keras --data ../shared/data/fer2013 --tau 0.5 --out DIR
                              [--against uniform|labels] [--temperature T]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from training.data import clean_training_mask, load_split
from training.labels import NUM_CLASSES
from training.votes import load_votes, vote_targets

LABEL_SMOOTHING = 0.1  # training.train's default, part of the targets' mean


def target_prior(data: Path, votes: Path | None = None, weight: float = 0.0, min_share: float = 0.5,
                 smoothing: float = LABEL_SMOOTHING) -> np.ndarray:
    """The mean training target (7,) of ``training.train`` with these options, on the cleaned set."""
    raw, val = load_split(data, "train"), load_split(data, "val")
    keep, _ = clean_training_mask(raw, val)
    labels = raw.y[keep]
    onehot = np.eye(NUM_CLASSES)[labels] * (1 - smoothing) + smoothing / NUM_CLASSES
    targets = onehot
    if votes is not None and weight > 0:
        soft = vote_targets(labels, load_votes(votes, "train", len(raw)).select(keep), min_share)
        targets = (1 - weight) * onehot + weight * soft
    return targets.mean(axis=0)


def training_prior(metadata: dict[str, Any], data: Path) -> np.ndarray:
    """The target prior of the run that ``metadata`` (an exported model's JSON) describes."""
    votes = metadata.get("training", {}).get("votes")
    if not votes:
        return target_prior(data)
    return target_prior(data, data / votes["file"], votes["weight"], votes["min_emotion_share"])


def lean(metadata: dict[str, Any], data: Path, against: str = "uniform") -> np.ndarray:
    """What to divide by: the run's target prior, over FER2013's label prior when ``against="labels"``."""
    prior = training_prior(metadata, data)
    if against == "labels":
        return prior / target_prior(data)
    if against != "uniform":
        raise ValueError(f"against must be 'uniform' or 'labels', not {against!r}")
    return prior


def adjust(probabilities: np.ndarray, prior: np.ndarray, tau: float) -> np.ndarray:
    """Probabilities (N, 7) divided by ``prior ** tau``, renormalised."""
    scaled = probabilities / prior ** tau
    return scaled / scaled.sum(axis=1, keepdims=True)


class Adjusted:
    """A classifier (``worker.vision.classifier.Classifier``) whose answers are adjusted: same interface."""

    def __init__(self, classifier: Any, prior: np.ndarray, tau: float) -> None:
        self.classifier, self.prior, self.tau = classifier, prior, tau
        self.info, self.size = classifier.info, classifier.size

    def predict(self, faces: np.ndarray) -> np.ndarray:
        return adjust(self.classifier.predict(faces), self.prior, self.tau)


def balanced_loss(prior: np.ndarray, tau: float) -> Any:
    """The logit-adjusted cross-entropy (Menon et al. 2021, eq. 10) for a softmax model: the loss
    sees ``log p + tau * log(prior)``, so the model's own outputs learn the answers with the prior
    divided out (``tau`` = 1: as if every class were equally common). ``training.train --balance``."""
    from keras import ops
    from keras.losses import categorical_crossentropy

    shift = ops.convert_to_tensor((tau * np.log(prior)).astype(np.float32))

    def loss(y_true: Any, y_pred: Any) -> Any:
        logits = ops.log(ops.clip(y_pred, 1e-7, 1.0)) + shift
        return categorical_crossentropy(y_true, logits, from_logits=True)

    return loss


def fold_into_bias(model: Any, prior: np.ndarray, tau: float) -> None:
    """Subtract ``tau * log(prior)`` from the bias of the model's last (softmax) dense layer."""
    layer = model.layers[-1]
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel, bias - tau * np.log(prior).astype(bias.dtype)])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import keras

    from training.export import export

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="a trained .keras model (its emotion_classifier.json beside it)")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--tau", type=float, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--against", choices=("uniform", "labels"), default="uniform")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="then divide the logits by this (training.calibration): scores, not answers, change")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    metadata = json.loads((args.model.parent / "emotion_classifier.json").read_text())
    prior = lean(metadata, args.data, args.against)
    model = keras.models.load_model(args.model, compile=False)
    fold_into_bias(model, prior, args.tau)
    if args.temperature != 1.0:
        from training.calibration import fold_temperature

        fold_temperature(model, args.temperature)
    raw, val = load_split(args.data, "train"), load_split(args.data, "val")
    keep, _ = clean_training_mask(raw, val)
    train = type(raw)(raw.x[keep], raw.y[keep])
    info = {**metadata["training"], "logit_adjustment": {"tau": args.tau, "against": args.against,
                                                         "prior": prior.round(4).tolist()},
            "temperature": args.temperature}
    exported = export(model, args.out, train, val, info, seed=args.seed)
    for kind, entry in exported["models"].items():
        print(f"{kind}: val accuracy {entry['val_accuracy']:.4f}")
    return exported


if __name__ == "__main__":
    main()
