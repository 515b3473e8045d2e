"""FER+ raters' votes (ten per image) for the rows of train.npz and val.npz, as FER2013 classes.

``../shared/data/fer2013/ferplus_votes.npz`` (FERPLUS.md beside it) holds, in the archives' row
order, ten votes per image over FER+'s columns ``neutral, happiness, surprise, sadness, anger,
disgust, fear, contempt, unknown, NF`` (NF: not a face), and a flag per row: 0 or 1 for a real
annotation, 3 or 4 for a row FER+ never annotated (its votes are a placeholder, masked here).

:class:`Votes` maps the seven emotion columns to FER2013's ids (0 angry ... 6 neutral) and gives:

- ``distribution``: each row's emotion votes as shares summing to 1 (contempt, unknown and NF
  left out), the soft target that ``training.train --votes`` mixes into the labels;
- ``emotion_share``: the share of the ten votes that went to one of the seven emotions (low for
  faces the raters found contemptuous, unreadable or not faces);
- ``plurality``: per row, which of the seven emotions got the most votes, when the most-voted of
  all ten columns is an emotion (ties kept: a prediction agrees with any of the tied emotions).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.labels import NUM_CLASSES

FERPLUS_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                   "contempt", "unknown", "NF")
TO_FER2013 = (6, 3, 5, 4, 0, 1, 2)  # FER2013 id of FER+ columns 0-6; columns 7-9 have none
ANNOTATED_FLAGS = (0, 1)
SPLIT_KEYS = {"train": "train", "val": "val"}


@dataclass(frozen=True)
class Votes:
    counts: np.ndarray  # uint8 (N, 10), FER+ column order, summing to 10 on annotated rows
    annotated: np.ndarray  # bool (N,)

    def __len__(self) -> int:
        return len(self.counts)

    def select(self, keep: np.ndarray) -> Votes:
        return Votes(self.counts[keep], self.annotated[keep])

    @property
    def emotions(self) -> np.ndarray:
        """Vote counts (N, 7) in FER2013 id order; zero on rows without an annotation."""
        out = np.zeros((len(self), NUM_CLASSES), np.float32)
        out[:, list(TO_FER2013)] = self.counts[:, : len(TO_FER2013)]
        out[~self.annotated] = 0
        return out

    @property
    def emotion_share(self) -> np.ndarray:
        """Share (N,) of the ten votes given to one of the seven emotions; 0 without an annotation."""
        total = self.counts.sum(axis=1).astype(np.float32)
        return np.where(self.annotated, self.emotions.sum(axis=1) / np.maximum(total, 1), 0.0)

    @property
    def distribution(self) -> np.ndarray:
        """Emotion votes as shares (N, 7) summing to 1; all zero where no vote went to an emotion."""
        emotions = self.emotions
        total = emotions.sum(axis=1, keepdims=True)
        return np.divide(emotions, total, out=np.zeros_like(emotions), where=total > 0)

    @property
    def plurality(self) -> np.ndarray:
        """bool (N, 7): the emotions tied for the most votes, on rows whose most-voted column (of
        all ten) is an emotion; all False elsewhere."""
        emotions = self.emotions
        top = emotions.max(axis=1, keepdims=True)
        others = self.counts[:, len(TO_FER2013):].max(axis=1, keepdims=True)
        has = self.annotated[:, None] & (top > 0) & (top >= others)
        return has & (emotions == top)


def load_votes(path: Path, split: str, rows: int | None = None) -> Votes:
    """The votes of ``split`` ("train" or "val"); ``rows`` checks the count against the archive."""
    with np.load(path) as archive:
        counts = archive[f"{SPLIT_KEYS[split]}_votes"]
        flags = archive[f"{SPLIT_KEYS[split]}_flag"]
    if counts.ndim != 2 or counts.shape[1] != len(FERPLUS_COLUMNS) or len(flags) != len(counts):
        raise ValueError(f"{path}: {split}_votes must be (N, {len(FERPLUS_COLUMNS)}) with a flag per row")
    if rows is not None and len(counts) != rows:
        raise ValueError(f"{path}: {len(counts)} {split} rows of votes for {rows} images")
    return Votes(counts, np.isin(flags, ANNOTATED_FLAGS))


def vote_targets(labels: np.ndarray, votes: Votes, min_share: float = 0.5) -> np.ndarray:
    """Soft targets (N, 7): the vote distribution where at least ``min_share`` of the ten votes went
    to an emotion, else the one-hot FER2013 label (rows without an annotation, or whose raters
    mostly said contempt, unknown or not a face, keep their label)."""
    targets = np.eye(NUM_CLASSES, dtype=np.float32)[labels]
    usable = votes.emotion_share >= max(min_share, 1e-6)
    targets[usable] = votes.distribution[usable]
    return targets


def plurality_agreement(predicted: np.ndarray, votes: Votes) -> tuple[float, int]:
    """Share of rows with an emotion plurality whose prediction is (one of) it, and their count."""
    plural = votes.plurality
    has = plural.any(axis=1)
    hits = plural[np.arange(len(predicted)), predicted] & has
    return float(hits.sum() / max(1, has.sum())), int(has.sum())
