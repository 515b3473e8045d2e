"""training.bundle: adjustment, flip and ensemble baked into one Keras model and one TFLite graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

# Keras 3.15 saving .keras files under numpy 2.4: TF variables' __array__ lacks the copy keyword.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

from training.adjust import adjust  # noqa: E402
from training.bundle import bundle  # noqa: E402
from training.export import convert  # noqa: E402
from training.model import build_model  # noqa: E402
from training.predict import predict_tflite  # noqa: E402


def test_a_bundle_answers_the_mean_over_members_and_mirror_images(tmp_path: Path) -> None:
    keras.utils.set_random_seed(3)
    members = [build_model("sepnet", 0.0), build_model("sepnet", 0.0)]
    for member in members:  # untrained answers are nearly uniform: sharpen them so views differ
        kernel, bias = member.layers[-1].get_weights()
        member.layers[-1].set_weights([kernel * 30, bias])
    noise = np.random.default_rng(0).integers(0, 64, (5, 48, 48))
    faces = (noise + np.linspace(0, 191, 48)[None, None, :] * np.arange(1, 6)[:, None, None] / 5).astype(np.uint8)
    inputs, mirrored = faces[..., None] / 255.0, faces[:, :, ::-1, None] / 255.0
    each = [m.predict(view, verbose=0) for m in members for view in (inputs, mirrored)]
    model = bundle(members, flip=True)
    np.testing.assert_allclose(model.predict(inputs, verbose=0), np.mean(each, axis=0), atol=1e-6)
    assert np.abs(each[0] - each[1]).max() > 0.01  # the mirror is a different view
    model.save(tmp_path / "bundle.keras")  # the mirror layer survives a save and a load
    loaded = keras.models.load_model(tmp_path / "bundle.keras", compile=False)
    np.testing.assert_allclose(loaded.predict(inputs, verbose=0), np.mean(each, axis=0), atol=1e-6)
    np.testing.assert_allclose(predict_tflite(convert(model), faces), np.mean(each, axis=0), atol=1e-5)
    alone = bundle([members[0]], flip=False)
    np.testing.assert_allclose(alone.predict(inputs, verbose=0), each[0], atol=1e-6)


def test_members_are_adjusted_before_they_are_averaged(tmp_path: Path) -> None:
    from training.adjust import fold_into_bias

    keras.utils.set_random_seed(4)
    member = build_model("sepnet", 0.0)
    faces = np.random.default_rng(1).random((4, 48, 48, 1)).astype(np.float32)
    before = member.predict(faces, verbose=0)
    prior = np.array([0.12, 0.02, 0.1, 0.25, 0.15, 0.1, 0.26])
    fold_into_bias(member, prior, -0.5)  # a negative tau puts prior back in
    np.testing.assert_allclose(bundle([member], flip=False).predict(faces, verbose=0),
                               adjust(before, prior, -0.5), atol=1e-5)
