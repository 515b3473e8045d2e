"""Load FER2013 splits from the project's npz archives or the Kaggle CSV downloads.

Three formats are read, all returning ``Split(x, y)`` with ``x`` uint8 of shape (N, 48, 48)
and ``y`` int64 labels in FER2013 id order (see ``training.labels``):

- ``train.npz`` / ``val.npz``: arrays ``x`` and ``y`` (../shared/data/fer2013/README.md);
- ``fer2013.csv``: columns ``emotion,pixels,Usage``;
- ``icml_face_data.csv``: columns ``emotion, Usage, pixels`` (names with leading spaces).

A CSV holds every split; ``Usage`` picks one: Training, PublicTest or PrivateTest.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.labels import INPUT_SIZE, NUM_CLASSES

USAGES = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}


@dataclass(frozen=True)
class Split:
    x: np.ndarray  # uint8 (N, 48, 48)
    y: np.ndarray  # int64 (N,)

    def __len__(self) -> int:
        return len(self.y)

    def sha256(self) -> str:
        """Fingerprint of the pixels and labels, recorded in the model metadata."""
        digest = hashlib.sha256(np.ascontiguousarray(self.x).tobytes())
        digest.update(np.ascontiguousarray(self.y, dtype=np.int64).tobytes())
        return digest.hexdigest()


def load_npz(path: Path) -> Split:
    with np.load(path) as archive:
        return _checked(archive["x"], archive["y"], path)


def load_csv(path: Path, usage: str | None) -> Split:
    """Read a Kaggle CSV; ``usage`` (e.g. "PublicTest") keeps one split, None keeps all rows."""
    xs: list[np.ndarray] = []
    ys: list[int] = []
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None:
            raise ValueError(f"{path}: empty CSV")
        reader.fieldnames = [name.strip() for name in reader.fieldnames]
        missing = {"emotion", "pixels", *(["Usage"] if usage else [])} - set(reader.fieldnames)
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
        for line, row in enumerate(reader, start=2):
            if usage is not None and (row["Usage"] or "").strip() != usage:
                continue
            try:
                pixels = np.array(row["pixels"].split(), dtype=np.int32)
                label = int(row["emotion"])
            except (AttributeError, OverflowError, ValueError) as err:  # AttributeError: short row, pixels is None
                raise ValueError(f"{path}:{line}: unreadable row ({err})") from None
            if pixels.size != INPUT_SIZE * INPUT_SIZE:
                raise ValueError(f"{path}:{line}: expected {INPUT_SIZE**2} pixels, got {pixels.size}")
            if pixels.min() < 0 or pixels.max() > 255:
                raise ValueError(f"{path}:{line}: pixel values outside 0..255")
            xs.append(pixels.astype(np.uint8).reshape(INPUT_SIZE, INPUT_SIZE))
            ys.append(label)
    if not ys:
        raise ValueError(f"{path}: no rows" + (f" with Usage={usage}" if usage else ""))
    return _checked(np.stack(xs), np.array(ys), path)


def load_split(source: Path, split: str) -> Split:
    """``source`` is a directory holding ``<split>.npz``, an npz file, or a Kaggle CSV."""
    source = Path(source)
    if source.is_dir():
        return load_npz(source / f"{split}.npz")
    if source.suffix == ".npz":
        return load_npz(source)
    return load_csv(source, USAGES[split])


def load_file(path: Path) -> Split:
    """Every row of one file (an npz archive, or all Usage values of a CSV)."""
    path = Path(path)
    return load_npz(path) if path.suffix == ".npz" else load_csv(path, None)


def clean_training_set(train: Split, val: Split) -> tuple[Split, dict[str, int]]:
    """Drop blank images, exact duplicates and any training copy of a validation image.

    FER2013 repeats images inside Training (some with conflicting labels) and between Training
    and PublicTest; removing them keeps the validation score honest.
    """
    keep, stats = clean_training_mask(train, val)
    return Split(train.x[keep], train.y[keep]), stats


def clean_training_mask(train: Split, val: Split) -> tuple[np.ndarray, dict[str, int]]:
    """The rows (bool mask) that ``clean_training_set`` keeps, and why the others go: row data
    aligned with train.npz (FER+ votes) is selected with the same mask."""
    keys = [row.tobytes() for row in train.x]
    val_keys = {row.tobytes() for row in val.x}
    labels_of: dict[bytes, set[int]] = {}
    for key, label in zip(keys, train.y.tolist(), strict=True):
        labels_of.setdefault(key, set()).add(label)
    seen: set[bytes] = set()
    keep = np.zeros(len(train), dtype=bool)
    stats = {"blank": 0, "duplicate": 0, "conflicting_label": 0, "in_val": 0}
    for i, key in enumerate(keys):
        if not train.x[i].any():
            stats["blank"] += 1
        elif key in val_keys:
            stats["in_val"] += 1
        elif len(labels_of[key]) > 1:
            stats["conflicting_label"] += 1
        elif key in seen:
            stats["duplicate"] += 1
        else:
            keep[i] = True
        seen.add(key)
    return keep, stats


def _checked(x: np.ndarray, y: np.ndarray, path: Path) -> Split:
    x = np.asarray(x, dtype=np.uint8)
    y = np.asarray(y).astype(np.int64)
    if x.ndim != 3 or x.shape[1:] != (INPUT_SIZE, INPUT_SIZE) or len(x) != len(y):
        raise ValueError(f"{path}: expected x (N, 48, 48) and y (N,), got {x.shape} and {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= NUM_CLASSES):
        raise ValueError(f"{path}: labels outside 0..{NUM_CLASSES - 1}")
    return Split(x, y)
