"""The small FER2013 fixture that lets tests and the benchmark run without ../shared.

350 real faces (280 from Training, 70 from PublicTest, every class in both), stored as images
rather than as an archive:

- ``data/fer_sample.png``: a grayscale contact sheet of the 48x48 faces, ``COLUMNS`` to a row,
  in order (lossless, so the pixels are FER2013's own);
- ``data/fer_sample.csv``: one row per face, in the same order: ``emotion`` id and ``usage``
  (``Training`` or ``PublicTest``).

``data/make_fer_sample.py`` rebuilds both from ../shared/data/fer2013.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

DATA = Path(__file__).resolve().parent / "data"
SHEET = DATA / "fer_sample.png"
LABELS = DATA / "fer_sample.csv"
FACE = 48
COLUMNS = 25


def _cell(i: int) -> tuple[slice, slice]:
    """Where face ``i`` sits on the sheet."""
    row, column = divmod(i, COLUMNS)
    return slice(row * FACE, (row + 1) * FACE), slice(column * FACE, (column + 1) * FACE)


def write(x: np.ndarray, y: np.ndarray, usage: np.ndarray) -> None:
    rows = -(-len(x) // COLUMNS)
    sheet = np.zeros((rows * FACE, COLUMNS * FACE), np.uint8)
    for i, face in enumerate(x):
        sheet[_cell(i)] = face
    Image.fromarray(sheet, "L").save(SHEET, optimize=True)
    with open(LABELS, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["emotion", "usage"])
        writer.writerows(zip(y.tolist(), usage.tolist(), strict=True))


def load() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Faces uint8 (N, 48, 48), emotion ids int8 (N,) and usages (N,) strings."""
    with open(LABELS, newline="") as fh:
        rows = list(csv.DictReader(fh))
    y = np.array([int(row["emotion"]) for row in rows], dtype=np.int8)
    usage = np.array([row["usage"] for row in rows])
    with Image.open(SHEET) as image:
        sheet = np.asarray(image.convert("L"))
    return np.stack([sheet[_cell(i)] for i in range(len(rows))]), y, usage
