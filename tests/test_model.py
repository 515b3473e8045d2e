"""The shipped model (models/): its metadata, its floors, and train/serve parity.

Parity means the same faces get the same answer through Keras, through the float .tflite, and
through the worker's own path (encoded bytes -> ``worker.vision.images.decode`` -> ``Classifier``).
Validation faces come from ../shared/data/fer2013/val.npz when present, else from the fixture.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests import fersample
from tests.services import ROOT
from training.labels import LABELS
from training.predict import predict_tflite
from worker.vision.classifier import Classifier, ModelError
from worker.vision.images import decode

MODELS = ROOT / "models"
FLOAT, INT8 = MODELS / "emotion_classifier.tflite", MODELS / "emotion_classifier_int8.tflite"
METADATA = MODELS / "emotion_classifier.json"
SHARED_VAL = ROOT.parent / "shared" / "data" / "fer2013" / "val.npz"
PHOTOS = ROOT / "tests" / "data" / "photos"
# Photos whose expression is a broad, unmistakable smile (see tests/data/photos/photos.csv), each
# resized whole to 48x48 (the "whole" faces mode, not the detector). abhirup_test_image_happy
# (1080x720, a laughing child with a red box and the word HAPPY drawn on it, the face a small part
# of it) every model before the wide one got wrong; the bearded smile of deepface_img25 the
# 2026-12-03 model called neutral.
CLEARLY_HAPPY = (
    "abhirup_test_image_happy.jpeg",
    "deepface_img25.jpg",
    "deepface_img50.jpg",
)
ORIGINAL_PUBLIC_TEST_ACCURACY = 0.634
# The floors the shipped model holds on PublicTest (models/README.md; the held-out PrivateTest is
# checked from outside), half a point under the shipped model's 65.1 % and 76.2 %.
LABEL_FLOOR = 0.645  # accuracy against FER2013's labels
PLURALITY_FLOOR = 0.755  # agreement with the FER+ raters' plurality
# On the posed development set (models/README.md, "Posed photos"; built by `make devsets`), what the
# shipped model holds through the worker's own detector and framing: right, every class, neutral.
CFEE_DEV = ROOT / "build" / "devsets" / "cfee-dev"
POSED_RIGHT, POSED_CLASS, POSED_NEUTRAL = 0.69, 0.45, 0.21  # it holds 71.0 %, fear 50 %, 20 % neutral
SHARED_VOTES = SHARED_VAL.parent / "ferplus_votes.npz"


@pytest.fixture(scope="module")
def metadata() -> dict:
    return json.loads(METADATA.read_text())


@pytest.fixture(scope="module")
def val_faces() -> tuple[np.ndarray, np.ndarray]:
    """64 validation faces picked with a fixed seed, and their labels."""
    if SHARED_VAL.exists():
        with np.load(SHARED_VAL) as d:
            x, y = d["x"], d["y"]
    else:
        x, y, usage = fersample.load()
        x, y = x[usage == "PublicTest"], y[usage == "PublicTest"]
    pick = np.random.default_rng(0).choice(len(x), size=64, replace=False)
    return x[pick], y[pick].astype(int)


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier(FLOAT, METADATA)


def test_metadata_is_complete_and_models_meet_their_floors(metadata: dict) -> None:
    assert metadata["labels"] == list(LABELS) == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert metadata["input"] == {**metadata["input"], "shape": [48, 48, 1], "color_mode": "L", "offset": 0.0}
    assert metadata["input"]["scale"] == pytest.approx(1 / 255)
    float_entry, int8_entry = metadata["models"]["float32"], metadata["models"]["int8"]
    # Floors: ahead of the original capstone model (63.4% on PublicTest) and issue 14's 64% for the
    # float model (models/README.md "Against the targets").
    assert float_entry["val_accuracy"] >= max(ORIGINAL_PUBLIC_TEST_ACCURACY, LABEL_FLOOR)
    assert int8_entry["val_accuracy"] >= float_entry["val_accuracy"] - 0.01
    assert int8_entry["input_dtype"] == "int8" and int8_entry["input_quantization"]["scale"] > 0
    for entry in (float_entry, int8_entry):
        path = MODELS / entry["file"]
        assert path.stat().st_size == entry["bytes"] <= 5 * 1024 * 1024
    for key in ("data_sha256", "train_images", "epochs_run", "command", "train_wall_time_s"):
        assert key in metadata["training"]
    assert metadata["parameters"] > 0 and metadata["created_at"] and "git_commit" in metadata


def test_fixed_batches_pad_and_split_without_changing_answers(val_faces: tuple[np.ndarray, np.ndarray]) -> None:
    """The interpreter always runs batch_size faces; a face's answer does not depend on its company."""
    faces, _ = val_faces
    small = Classifier(FLOAT, METADATA, batch_size=8)
    alone = np.concatenate([small.predict(faces[i : i + 1]) for i in range(20)])
    np.testing.assert_allclose(small.predict(faces[:20]), alone, atol=1e-5)  # 20 = 8 + 8 + 4 padded
    assert small.predict(faces[:0]).shape == (0, len(LABELS))


@pytest.mark.skipif(not SHARED_VAL.exists(), reason="needs ../shared/data/fer2013/val.npz")
@pytest.mark.parametrize("kind", ["float32", "int8"])
def test_recorded_val_accuracy_is_what_the_model_scores(metadata: dict, kind: str) -> None:
    with np.load(SHARED_VAL) as d:
        x, y = d["x"], d["y"].astype(int)
    entry = metadata["models"][kind]
    probs = Classifier(MODELS / entry["file"], METADATA).predict(x)
    assert float((probs.argmax(1) == y).mean()) == pytest.approx(entry["val_accuracy"], abs=1e-4)


@pytest.mark.skipif(not SHARED_VOTES.exists(), reason="needs ../shared/data/fer2013/ferplus_votes.npz")
def test_both_models_agree_with_the_raters_plurality(metadata: dict) -> None:
    from training.votes import load_votes, plurality_agreement

    with np.load(SHARED_VAL) as d:
        x = d["x"]
    votes = load_votes(SHARED_VOTES, "val", len(x))
    shares = {kind: plurality_agreement(Classifier(MODELS / entry["file"], METADATA).predict(x).argmax(1), votes)[0]
              for kind, entry in metadata["models"].items()}
    assert shares["float32"] >= PLURALITY_FLOOR, shares
    assert shares["int8"] >= shares["float32"] - 0.01, shares


def test_keras_and_float_tflite_agree_on_64_val_images(val_faces: tuple[np.ndarray, np.ndarray]) -> None:
    keras = pytest.importorskip("keras")
    import training.bundle  # noqa: F401  (registers the mirror layer that a bundle holds)
    from training.labels import to_inputs

    faces, _ = val_faces
    model = keras.models.load_model(MODELS / "emotion_classifier.keras", compile=False)
    keras_probs = model.predict(to_inputs(faces), verbose=0)
    tflite_probs = predict_tflite(FLOAT.read_bytes(), faces)
    np.testing.assert_allclose(tflite_probs, keras_probs, atol=1e-4)
    assert (tflite_probs.argmax(1) == keras_probs.argmax(1)).all()


# PNG is lossless: the very same pixels, so the very same numbers. JPEG (quality 95) moves pixels
# and so probabilities, by at most about 0.01 on these faces: each probability must stay within
# JPEG_TOLERANCE, and the top class must stay the same wherever the float model's top two are
# more than 2 x JPEG_TOLERANCE apart (a near-tie can flip: it did for an earlier model, top two 0.014 apart).
JPEG_TOLERANCE = 0.02


@pytest.mark.parametrize(
    ("fmt", "options", "tolerance"), [("PNG", {}, 1e-6), ("JPEG", {"quality": 95}, JPEG_TOLERANCE)]
)
def test_the_workers_own_preprocessing_gives_the_same_answers(
    val_faces: tuple[np.ndarray, np.ndarray], classifier: Classifier, fmt: str, options: dict, tolerance: float
) -> None:
    faces, _ = val_faces
    direct = predict_tflite(FLOAT.read_bytes(), faces)
    decoded = []
    for face in faces:
        buffer = io.BytesIO()
        Image.fromarray(face).save(buffer, fmt, **options)
        decoded.append(decode(buffer.getvalue(), classifier.size))
    served = classifier.predict(np.stack(decoded))
    np.testing.assert_allclose(served, direct, atol=tolerance)
    top_two = np.sort(direct, axis=1)[:, -2:]
    clear = top_two[:, 1] - top_two[:, 0] > 2 * tolerance
    assert clear.sum() >= 48, "most faces have a clear top class"
    assert (served.argmax(1) == direct.argmax(1))[clear].all()


def test_int8_model_agrees_with_float(val_faces: tuple[np.ndarray, np.ndarray], metadata: dict) -> None:
    faces, _ = val_faces
    float_top = predict_tflite(FLOAT.read_bytes(), faces).argmax(1)
    int8_top = Classifier(INT8, METADATA).predict(faces).argmax(1)
    agreement = float((int8_top == float_top).mean())
    assert agreement >= 0.9, f"int8 agrees with float on {agreement:.0%} of 64 faces"
    assert metadata["parity"]["int8_vs_float_top_agreement"] >= 0.9


@pytest.mark.parametrize("name", CLEARLY_HAPPY)
def test_the_real_model_answers_happy_on_clearly_happy_photos(classifier: Classifier, name: str) -> None:
    probs = classifier.predict(decode((PHOTOS / name).read_bytes(), classifier.size)[None])[0]
    assert classifier.info.labels[int(probs.argmax())] == "happy"


def test_labels_come_from_metadata_and_mismatches_are_refused(tmp_path: Path, metadata: dict) -> None:
    broken = tmp_path / "m.json"
    broken.write_text(json.dumps({**metadata, "labels": metadata["labels"][:6]}))
    with pytest.raises(ModelError, match="7 outputs"):
        Classifier(FLOAT, broken)
    with pytest.raises(ModelError, match="cannot read model metadata"):
        Classifier(FLOAT, tmp_path / "missing.json")


@pytest.mark.skipif(not (CFEE_DEV / "photos.csv").exists(), reason="needs the posed development set: make devsets")
def test_posed_photos_through_the_pipeline_hold_their_floors(classifier: Classifier) -> None:
    from training import framing_eval, posed
    from worker.vision.detect import FaceDetector

    shipped = posed.framings([], False)
    done = framing_eval.cut(FaceDetector(MODELS), shipped, framing_eval.labelled_photos([CFEE_DEV]), classifier.size)
    report = posed.score(classifier, done.crops[posed.SHIPPED], done.labels)
    assert report["found"] == report["photos"] == 534
    assert report["accuracy"] >= POSED_RIGHT, report
    assert min(report["recall"].values()) >= POSED_CLASS, report["recall"]
    assert report["predicted"]["neutral"] <= POSED_NEUTRAL, report["predicted"]


def test_the_labelled_photos_through_the_pipeline(classifier: Classifier) -> None:
    """The 12 labelled photos of tests/data/photos, found and framed as a worker does: at least 10 right
    (the shipped model and the 2026-12-03 one both get 11 with today's framing)."""
    from training import framing_eval, posed
    from worker.vision.detect import FaceDetector

    done = framing_eval.cut(FaceDetector(MODELS), posed.framings([], False), framing_eval.labelled_photos([PHOTOS]),
                            classifier.size)
    report = posed.score(classifier, done.crops[posed.SHIPPED], done.labels)
    assert report["found"] == 12 and round(report["accuracy"] * 12) >= 10, report
