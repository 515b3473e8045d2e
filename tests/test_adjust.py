"""Logit adjustment: the probabilities' form, its exact fold into the last layer, the targets' prior."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.adjust import adjust, fold_into_bias, lean, target_prior

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "fer2013"


def test_adjust_divides_by_the_prior_to_the_power_tau() -> None:
    probs = np.array([[0.2, 0.2, 0.2, 0.2, 0.1, 0.05, 0.05]])
    prior = np.array([0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.4])
    np.testing.assert_allclose(adjust(probs, prior, 0.0), probs)
    out = adjust(probs, prior, 1.0)
    np.testing.assert_allclose(out.sum(), 1.0)
    assert out[0, 6] / out[0, 5] == pytest.approx((0.05 / 0.4) / (0.05 / 0.1))  # neutral's lead cut 4x


def test_folding_into_the_bias_is_the_same_adjustment() -> None:
    keras = pytest.importorskip("keras")
    from training.model import build_model

    model = build_model("sepnet", 0.0)
    faces = np.random.default_rng(0).random((4, 48, 48, 1)).astype(np.float32)
    before = model.predict(faces, verbose=0)
    prior = np.array([0.12, 0.02, 0.1, 0.25, 0.15, 0.1, 0.26])
    fold_into_bias(model, prior, 0.5)
    assert isinstance(model.layers[-1], keras.layers.Dense)
    np.testing.assert_allclose(model.predict(faces, verbose=0), adjust(before, prior, 0.5), atol=1e-5)


@pytest.mark.skipif(not (SHARED / "ferplus_votes.npz").exists(), reason="needs ../shared/data/fer2013")
def test_the_votes_prior_leans_to_neutral() -> None:
    labels = target_prior(SHARED)
    votes = target_prior(SHARED, SHARED / "ferplus_votes.npz", weight=1.0)
    np.testing.assert_allclose([labels.sum(), votes.sum()], 1.0, atol=1e-6)
    assert votes[6] > labels[6] + 0.1  # neutral: the raters' most common call


@pytest.mark.skipif(not (SHARED / "ferplus_votes.npz").exists(), reason="needs ../shared/data/fer2013")
def test_against_labels_undoes_only_the_lean_that_the_votes_add() -> None:
    votes_run = {"training": {"votes": {"file": "ferplus_votes.npz", "weight": 0.5, "min_emotion_share": 0.5}}}
    np.testing.assert_allclose(lean({"training": {}}, SHARED, "labels"), 1.0)  # a labels-only run: no change
    relative = lean(votes_run, SHARED, "labels")
    assert relative.argmax() == 6 and relative[6] > 1.2  # the votes' lean is towards neutral
    np.testing.assert_allclose(lean(votes_run, SHARED, "uniform"), relative * target_prior(SHARED))
    with pytest.raises(ValueError, match="against"):
        lean(votes_run, SHARED, "balanced")
