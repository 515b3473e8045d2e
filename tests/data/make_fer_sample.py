"""Rebuild the small FER2013 test fixtures from the shared archives (deterministic, seed 2013).

Writes next to this file:

- ``fer_sample.png`` and ``fer_sample.csv``: 280 Training + 70 PublicTest faces as a contact
  sheet plus their labels and usage, every class present in both parts (see ``tests/fersample.py``);
- ``fer2013_sample.csv`` (``emotion,pixels,Usage``) and ``icml_face_data_sample.csv``
  (``emotion, Usage, pixels``): the same 12 real images in both, 4 rows per Usage. FER2013's
  PrivateTest images are not in the shared folder, so the PrivateTest rows reuse PublicTest images.

Usage: ``python tests/data/make_fer_sample.py [--shared ../shared/data/fer2013]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from tests import fersample  # noqa: E402

SEED = 2013
N_TRAIN, N_VAL, PER_CLASS = 280, 70, 2


def sample(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` sorted row indices: ``PER_CLASS`` of each class, the rest uniformly at random."""
    first = [rng.choice(np.flatnonzero(y == c), PER_CLASS, replace=False) for c in range(7)]
    picked = np.concatenate(first)
    rest = rng.choice(np.setdiff1d(np.arange(len(y)), picked), n - len(picked), replace=False)
    return np.sort(np.concatenate([picked, rest]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=HERE.parents[2] / "shared" / "data" / "fer2013")
    args = parser.parse_args()
    rng = np.random.default_rng(SEED)
    parts = []
    for name, n, usage in (("train", N_TRAIN, "Training"), ("val", N_VAL, "PublicTest")):
        with np.load(args.shared / f"{name}.npz") as archive:
            x, y = archive["x"], archive["y"]
        pick = sample(y, n, rng)
        parts.append((x[pick], y[pick].astype(np.int8), np.full(n, usage)))
    x, y, usage = (np.concatenate(column) for column in zip(*parts, strict=True))
    fersample.write(x, y, usage)

    train_rows = np.flatnonzero(usage == "Training")[[0, 70, 140, 210]]
    val_rows = np.flatnonzero(usage == "PublicTest")
    rows = [(i, "Training") for i in train_rows]
    rows += [(i, "PublicTest") for i in val_rows[[0, 20, 40, 60]]]
    rows += [(i, "PrivateTest") for i in val_rows[[10, 30, 50, 69]]]
    fer = ["emotion,pixels,Usage"]
    icml = ["emotion, Usage, pixels"]
    for i, use in rows:
        pixels = " ".join(map(str, x[i].ravel().tolist()))
        fer.append(f"{y[i]},{pixels},{use}")
        icml.append(f"{y[i]},{use},{pixels}")
    (HERE / "fer2013_sample.csv").write_text("\n".join(fer) + "\n")
    (HERE / "icml_face_data_sample.csv").write_text("\n".join(icml) + "\n")
    print(f"{len(y)} images, classes {np.bincount(y, minlength=7).tolist()}")


if __name__ == "__main__":
    main()
