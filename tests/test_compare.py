"""training.compare's reporting: the Markdown table and the plurality picture, from hand-made reports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from training.compare import markdown, plot_pluralities
from training.labels import LABELS


def report(accuracy: float, plurality: float, neutral: float) -> dict:
    confusion = np.diag(np.arange(1, 8)) + 1
    return {
        "fer2013_accuracy": accuracy, "macro_f1": 0.6, "plurality_agreement": plurality,
        "plurality_confusion": confusion.tolist(),
        "predicted": {label: (neutral if label == "neutral" else (1 - neutral) / 6) for label in LABELS},
        "pipeline": {"labelled_photos": {"detect": 0.8, "whole": 0.25}},
        "posed": {"cfee-dev": {"accuracy": 0.654, "predicted": {"neutral": 0.18},
                               "recall": {"fear": 0.31, "happy": 0.9}}},
        "calibration": {"ece_votes": 0.043},
        "ms_per_face": 0.81,
    }


def test_markdown_has_a_row_per_model_with_every_truth() -> None:
    table = markdown({"labels": report(0.6609, 0.669, 0.175), "votes tau=0.25": report(0.6473, 0.7577, 0.252)})
    lines = table.splitlines()
    assert len(lines) == 4 and lines[0].count("|") == lines[2].count("|")
    row = "| votes tau=0.25 | 65.4% / 18% / fear 31% | 64.73% | 75.77% | 0.043 | 0.600 | 25.2% | 80.0% / 25.0% | 0.81 |"
    assert row in lines


def test_every_model_gets_a_panel_in_one_picture(tmp_path: Path) -> None:
    reports = {f"model {i}": report(0.65, 0.7 + i / 100, 0.2) for i in range(4)}
    reports["no votes"] = {k: v for k, v in report(0.6, 0.0, 0.2).items() if not k.startswith("plurality")}
    plot_pluralities(reports, tmp_path / "plurality.png", columns=3)
    with Image.open(tmp_path / "plurality.png") as picture:
        width, height = picture.size
    assert width > height  # 3 columns, 2 rows: the 4 models with votes, no empty page for the fifth
    assert (width, height) == (1188, 756)  # 4.4 x 4.2 inches per panel at 90 dpi
