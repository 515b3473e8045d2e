"""training.posed: labelled photos through the worker's detector and framing, scored per class."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from training import posed
from training.labels import LABELS

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT / "tests" / "data" / "photos"
MODEL = ROOT / "models" / "emotion_classifier.tflite"


class Always:
    """A classifier that answers one class for every face."""

    def __init__(self, label: int) -> None:
        self.label = label

    def predict(self, faces: np.ndarray) -> np.ndarray:
        return np.eye(len(LABELS))[[self.label] * len(faces)]


def test_score_counts_a_photo_without_a_face_as_wrong_and_not_as_an_answer() -> None:
    face = np.zeros((48, 48), np.uint8)
    labels = np.array([6, 6, 3, 0])
    report = posed.score(Always(6), [face, None, face, face], labels)
    assert report["found"] == 3 and report["accuracy"] == 0.25
    assert report["recall"] == {"angry": 0.0, "happy": 0.0, "neutral": 0.5}
    assert report["predicted"]["neutral"] == 1.0 and report["mean_recall"] == round(0.5 / 3, 4)


def test_the_labelled_photos_through_every_framing(tmp_path: Path) -> None:
    report = posed.main([f"shipped={MODEL}", f"twice=models/emotion_classifier.tflite+{MODEL}", "--sets", str(PHOTOS),
                         "--margin", "0.9", "--whole-iou", "inf", "--flip", "--gray", "--tight", "1.6",
                         "--out", str(tmp_path)])
    assert set(report) == {"shipped", "shipped flip", "twice", "twice flip"}
    assert set(report["shipped"]) == {"shipped", "margin x0.9", "margin x0.9 whole_iou=inf"}
    photos = report["shipped"]["shipped"]["photos"]
    assert photos["photos"] == 12 and photos["found"] == 12 and photos["accuracy"] >= 0.5
    assert report["twice"]["shipped"]["photos"] == photos  # the mean of a model and itself is that model
    assert set(report["shipped"]["shipped"]) == {"photos", "photos gray", "photos tight1.6"}
    cut_tight = report["shipped"]["shipped"]["photos tight1.6"]
    assert cut_tight["photos"] == 12 and cut_tight["found"] >= 11  # portraits cut to 1.6 x their face
    assert json.loads((tmp_path / "posed.json").read_text()) == report
