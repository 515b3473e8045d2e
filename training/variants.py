"""The classifiers that ``training.compare`` and ``training.posed`` set side by side.

A spec is ``NAME=MODEL.tflite`` (the model as the workers load it, ``worker.vision.classifier.Classifier``,
its ``emotion_classifier.json`` beside it) or ``NAME=A.tflite+B.tflite`` (the mean of the models'
probabilities: an ensemble). Each can also be scored

- logit-adjusted by ``tau`` against the prior of its training targets (``training.adjust``; a
  negative ``tau`` puts prior back into a model trained with ``--balance``), as "NAME tau=T",
  or against that prior over FER2013's label prior, as "NAME lean=T";
- with test-time flip: the mean of a face's and its mirror image's probabilities, as "NAME flip".

Every variant has the Classifier's interface: ``predict(faces)``, ``size`` and ``info``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from training.adjust import Adjusted, lean
from worker.vision.classifier import Classifier


class Mean:
    """The mean of several classifiers' probabilities (they take the same input)."""

    def __init__(self, members: list[Any]) -> None:
        self.members = members
        self.info, self.size = members[0].info, members[0].size

    def predict(self, faces: np.ndarray) -> np.ndarray:
        return np.mean([member.predict(faces) for member in self.members], axis=0)


class Flipped:
    """A classifier's probabilities averaged over each face and its mirror image."""

    def __init__(self, classifier: Any) -> None:
        self.classifier, self.info, self.size = classifier, classifier.info, classifier.size

    def predict(self, faces: np.ndarray) -> np.ndarray:
        return (self.classifier.predict(faces) + self.classifier.predict(faces[:, :, ::-1])) / 2


def metadata_of(model: Path) -> dict[str, Any]:
    return json.loads((Path(model).parent / "emotion_classifier.json").read_text())


def load(spec: str, batch_size: int = 64) -> tuple[str, list[Any], list[Path]]:
    """A ``NAME=MODEL[+MODEL...]`` spec: its name, the members' classifiers and the model files."""
    name, _, paths = spec.partition("=")
    files = [Path(p) for p in paths.split("+")]
    return name, [Classifier(f, f.parent / "emotion_classifier.json", batch_size=batch_size) for f in files], files


def combined(members: list[Any]) -> Any:
    return members[0] if len(members) == 1 else Mean(members)


def expand(specs: list[str], data: Path | None, adjust: list[float] = (), leans: list[float] = (),
           flip: bool = False) -> dict[str, tuple[Any, list[Path]]]:
    """Every classifier asked for, by name, with the model files it runs."""
    found: dict[str, tuple[Any, list[Path]]] = {}
    for spec in specs:
        name, members, files = load(spec)
        base = {name: combined(members)}
        for option, against, taus in (("tau", "uniform", adjust), ("lean", "labels", leans)):
            if not taus:
                continue
            if data is None:
                raise SystemExit("logit adjustment needs the FER2013 folder (the training targets' prior)")
            priors = [lean(metadata_of(f), data, against) for f in files]  # each member against its own
            base.update({f"{name} {option}={tau:g}": combined([Adjusted(m, prior, tau) for m, prior
                                                                in zip(members, priors, strict=True)])
                         for tau in taus})
        for label, variant in base.items():
            found[label] = (variant, files)
            if flip:
                found[f"{label} flip"] = (Flipped(variant), files)
    return found
