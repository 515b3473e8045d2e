"""FER+ votes: loading, masking the unannotated rows, mapping FER+ columns to FER2013 ids, targets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.labels import LABELS
from training.votes import FERPLUS_COLUMNS, Votes, load_votes, plurality_agreement, vote_targets

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "fer2013"
ANGRY, DISGUST, FEAR, HAPPY, SAD, SURPRISE, NEUTRAL = range(7)


def row(**votes: int) -> list[int]:
    """Ten vote counts in FER+ column order, from keyword counts (``NF`` for not a face)."""
    return [votes.get(column, 0) for column in FERPLUS_COLUMNS]


def votes(*rows: list[int], flags: tuple[int, ...] | None = None) -> Votes:
    flags = flags or (0,) * len(rows)
    return Votes(np.array(rows, np.uint8), np.isin(np.array(flags), (0, 1)))


def test_each_ferplus_column_lands_on_its_fer2013_class() -> None:
    names = {"anger": ANGRY, "disgust": DISGUST, "fear": FEAR, "happiness": HAPPY, "sadness": SAD,
             "surprise": SURPRISE, "neutral": NEUTRAL}
    for column, fer_id in names.items():
        emotions = votes(row(**{column: 10})).emotions[0]
        assert emotions.argmax() == fer_id and emotions.sum() == 10, column
    assert LABELS[ANGRY] == "angry" and LABELS[NEUTRAL] == "neutral"


def test_distribution_and_emotion_share_leave_out_contempt_unknown_and_not_a_face() -> None:
    v = votes(row(happiness=6, neutral=2, contempt=1, NF=1), row(unknown=7, NF=3))
    np.testing.assert_allclose(v.distribution[0], [0, 0, 0, 0.75, 0, 0, 0.25])
    np.testing.assert_allclose(v.emotion_share, [0.8, 0.0])
    np.testing.assert_allclose(v.distribution[1], 0)


def test_unannotated_rows_are_masked() -> None:
    v = votes(row(neutral=10), row(NF=10), row(anger=5, fear=5), flags=(0, 3, 4))
    assert v.annotated.tolist() == [True, False, False]
    assert v.emotions[1:].sum() == 0 and not v.plurality[1:].any()
    targets = vote_targets(np.array([HAPPY, SAD, ANGRY]), v)
    np.testing.assert_allclose(targets[0], np.eye(7)[NEUTRAL])  # the votes, not the label
    np.testing.assert_allclose(targets[1:], np.eye(7)[[SAD, ANGRY]])  # the labels


def test_plurality_with_ties_and_non_emotions() -> None:
    v = votes(row(anger=4, disgust=4, neutral=2),  # a tie: either angry or disgust agrees
              row(unknown=5, happiness=4, neutral=1),  # most votes are "unknown": no plurality
              row(sadness=3, contempt=3, neutral=2, fear=2))  # an emotion ties a non-emotion: kept
    assert v.plurality.tolist() == [[True, True, False, False, False, False, False], [False] * 7,
                                    [False, False, False, False, True, False, False]]
    share, rows = plurality_agreement(np.array([DISGUST, HAPPY, NEUTRAL]), v)
    assert rows == 2 and share == 0.5


def test_targets_fall_back_to_the_label_when_few_votes_name_an_emotion() -> None:
    v = votes(row(fear=3, contempt=4, unknown=3), row(fear=6, unknown=4))
    targets = vote_targets(np.array([SAD, SAD]), v, min_share=0.5)
    np.testing.assert_allclose(targets[0], np.eye(7)[SAD])
    np.testing.assert_allclose(targets[1], np.eye(7)[FEAR])
    np.testing.assert_allclose(vote_targets(np.array([SAD, SAD]), v, min_share=0.3)[0], np.eye(7)[FEAR])


@pytest.mark.skipif(not (SHARED / "ferplus_votes.npz").exists(), reason="needs ../shared/data/fer2013")
def test_the_shared_votes_say_what_ferplus_md_says() -> None:
    """FERPLUS.md: FER2013's Training label equals the plurality on 65.8 % of the rows with one."""
    with np.load(SHARED / "train.npz") as archive:
        y = archive["y"].astype(int)
    v = load_votes(SHARED / "ferplus_votes.npz", "train", len(y))
    assert v.annotated.sum() == len(y) - 149  # 146 rows with flag 3, 3 with flag 4
    share, rows = plurality_agreement(y, v)
    assert share == pytest.approx(0.658, abs=0.001) and rows > 28_000
    with pytest.raises(ValueError, match="rows of votes"):
        load_votes(SHARED / "ferplus_votes.npz", "val", len(y))
