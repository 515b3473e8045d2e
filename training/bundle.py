"""Bake logit adjustment, test-time flip and an ensemble into one model: the workers run one file.

Usage::

    python -m training.bundle A/emotion_classifier.keras [B/emotion_classifier.keras ...] \\
        --data ../shared/data/fer2013 [--tau T] [--temperature T] [--flip] --out models/

Each member (a trained ``.keras`` with its ``emotion_classifier.json`` beside it) is first
logit-adjusted by ``--tau`` against the prior of its own training targets (``training.adjust``:
folded into its last layer's bias; a negative ``tau`` puts prior back into a model trained with
``--balance``) and its logits divided by ``--temperature`` (``training.calibration``). The
bundle then answers the mean of its members' probabilities, each averaged over the face and its
mirror image with ``--flip``: what ``training.variants`` scores as ``NAME=A+B`` and ``NAME flip``,
as one Keras model and one TFLite graph of builtin ops. Its cost is the members' cost summed, twice
that with ``--flip``; its input and output are a single member's, so the workers see no
difference. Exported like a trained model (``training.export``), with the bundle's recipe and
each member's training record in its JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import keras
import numpy as np

from training.adjust import fold_into_bias, lean
from training.calibration import fold_temperature
from training.data import clean_training_mask, load_split
from training.export import export
from training.labels import INPUT_SIZE


@keras.saving.register_keras_serializable(package="fer_batch")
class Mirror(keras.layers.Layer):
    """Faces (N, H, W, C) mirrored left to right."""

    def call(self, inputs: Any) -> Any:
        return keras.ops.flip(inputs, axis=2)


def bundle(members: list[keras.Model], flip: bool) -> keras.Model:
    """One model answering the mean probabilities of ``members`` (and of their mirrored views)."""
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 1), name="face")
    views = [inputs, Mirror(name="mirror")(inputs)] if flip else [inputs]
    answers = []
    for i, member in enumerate(members):
        member.name = f"member_{i}"  # members trained alike share a name; a model's layers may not
        answers += [member(view) for view in views]
    output = keras.layers.Average(name="mean")(answers) if len(answers) > 1 else answers[0]
    return keras.Model(inputs, output, name="fer_bundle")


def load_member(path: Path, data: Path, tau: float, temperature: float = 1.0) -> tuple[keras.Model, dict[str, Any]]:
    """A trained member, adjusted by ``tau`` against its own targets' prior and softened by
    ``temperature`` (``training.calibration``), and its training record."""
    metadata = json.loads((path.parent / "emotion_classifier.json").read_text())
    model = keras.models.load_model(path, compile=False)
    if tau:
        fold_into_bias(model, lean(metadata, data), tau)
    if temperature != 1.0:
        fold_temperature(model, temperature)
    return model, {"model": str(path), "architecture": metadata.get("architecture"),
                   "training": metadata.get("training", {})}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m training.bundle", description=__doc__.splitlines()[0])
    parser.add_argument("members", type=Path, nargs="+", help="trained .keras models")
    parser.add_argument("--data", type=Path, required=True, help="FER2013 folder (train.npz, val.npz, votes)")
    parser.add_argument("--tau", type=float, default=0.0, help="logit adjustment of every member")
    parser.add_argument("--temperature", type=float, default=1.0, help="every member's logits divided by this")
    parser.add_argument("--flip", action="store_true", help="average each face with its mirror image")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    loaded = [load_member(path, args.data, args.tau, args.temperature) for path in args.members]
    model = bundle([member for member, _ in loaded], args.flip)
    raw, val = load_split(args.data, "train"), load_split(args.data, "val")
    keep, _ = clean_training_mask(raw, val)
    train = type(raw)(raw.x[keep], raw.y[keep])
    info = {"data_sha256": raw.sha256(),
            "bundle": {"tau": args.tau, "temperature": args.temperature, "flip": args.flip,
                       "members": [record for _, record in loaded]}}
    exported = export(model, args.out, train, val, info, seed=args.seed)
    for kind, entry in exported["models"].items():
        print(f"{kind}: val accuracy {entry['val_accuracy']:.4f}, {entry['bytes'] / 1e6:.2f} MB", flush=True)
    return exported


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
