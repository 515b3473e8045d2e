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


def test_the_balanced_loss_is_cross_entropy_of_the_prior_shifted_answers() -> None:
    """``--balance``: the loss sees the model's answer times ``prior ** tau``, so a model that
    answers in proportion to ``target / prior`` (the prior divided out) scores best."""
    pytest.importorskip("keras")
    from training.adjust import balanced_loss

    prior = np.array([0.12, 0.02, 0.1, 0.25, 0.15, 0.1, 0.26], np.float32)
    target = np.eye(7, dtype=np.float32)[[6, 1]]
    answers = np.array([[0.1, 0.05, 0.1, 0.1, 0.1, 0.05, 0.5], [0.1, 0.3, 0.1, 0.1, 0.1, 0.1, 0.2]], np.float32)
    shifted = adjust(answers, prior, -1.0)  # times the prior, renormalised
    expected = -np.log(shifted[np.arange(2), [6, 1]])
    np.testing.assert_allclose(np.asarray(balanced_loss(prior, 1.0)(target, answers)), expected, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(balanced_loss(prior, 0.0)(target, answers)),
                               -np.log(answers[np.arange(2), [6, 1]]), rtol=1e-5)
    assert expected[1] > -np.log(answers[1, 1])  # rare disgust must be answered more strongly than plain CE asks


def test_calibration_error_and_temperature_by_hand() -> None:
    from training.calibration import ece, fit_temperature, fold_temperature, reliability, scale

    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    labels = np.array([0, 1, 0, 0])  # the 0.9 bin is right half the time, the 0.6 bin always
    assert ece(probs, labels, bins=10) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)
    votes = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])  # raters agree with the scores
    assert ece(probs, votes, bins=10) == pytest.approx(0.0)
    assert [b["faces"] for b in reliability(probs, labels, bins=10)] == [2, 2]
    np.testing.assert_allclose(scale(probs, 1.0), probs, atol=1e-9)
    sure = np.array([[0.99, 0.01]] * 4)
    assert fit_temperature(sure, np.array([[0.7, 0.3]] * 4)) > 1.5  # over-confident: soften
    assert scale(sure, 2.0)[0, 0] == pytest.approx(0.99**0.5 / (0.99**0.5 + 0.01**0.5))
    keras = pytest.importorskip("keras")
    from training.model import build_model

    model = build_model("sepnet", 0.0)
    faces = np.random.default_rng(0).random((3, 48, 48, 1)).astype(np.float32)
    before = model.predict(faces, verbose=0)
    fold_temperature(model, 2.0)
    assert isinstance(model.layers[-1], keras.layers.Dense)
    np.testing.assert_allclose(model.predict(faces, verbose=0), scale(before, 2.0), atol=1e-5)
