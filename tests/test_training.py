"""Training package: FER2013 loaders and cleaning, one short training run with export, evaluation.

One model is trained for the whole module (a single epoch on at most 300 real images) and shared
by the export and evaluation tests. Images come from ../shared/data/fer2013 when that folder
exists, else from the small fixture in ``tests/data`` (``tests/fersample.py``), so the module
also runs from a fresh clone.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests import fersample
from tests.services import wait_until
from training.data import Split, clean_training_set, load_csv, load_file, load_split
from training.labels import INPUT_SIZE, LABELS, NUM_CLASSES

# Third-party warnings of the one training run, ignored by exact message. They are module-wide because the
# module-scoped ``trained`` fixture runs inside whichever test needs it first.
pytestmark = [
    pytest.mark.slow,
    # Keras 3.15 fit(): its default shuffle=True is ignored for a tf.data.Dataset (training.augment shuffles).
    pytest.mark.filterwarnings("ignore:`shuffle=True` was passed, but will be ignored:UserWarning"),
    # Keras 3.15 saving .keras checkpoints under numpy 2.4: TF variables' __array__ lacks the copy keyword.
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
    # TF 2.21 full-int8 conversion: harmless, calibration comes from the representative dataset.
    pytest.mark.filterwarnings("ignore:Statistics for quantized inputs were expected:UserWarning"),
]

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
FER_CSV = DATA / "fer2013_sample.csv"
ICML_CSV = DATA / "icml_face_data_sample.csv"
SHARED = ROOT.parent / "shared" / "data" / "fer2013"
MAX_TFLITE_BYTES = 5 * 1024 * 1024


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with train.npz and val.npz: the shared FER2013 copy, or the fixture split in two."""
    if (SHARED / "train.npz").is_file() and (SHARED / "val.npz").is_file():
        return SHARED
    out = tmp_path_factory.mktemp("fer2013")
    x, y, usage = fersample.load()
    for name, use in (("train", "Training"), ("val", "PublicTest")):
        np.savez_compressed(out / f"{name}.npz", x=x[usage == use], y=y[usage == use])
    return out


@pytest.fixture(scope="module")
def sample_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture's 350 faces as an npz file in the format ``training.evaluate`` reads (``x``, ``y``)."""
    x, y, _ = fersample.load()
    path = tmp_path_factory.mktemp("sample") / "fer_sample.npz"
    np.savez_compressed(path, x=x, y=y)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> dict[str, Any]:
    """Train one epoch and export; returns the output paths and the metadata that train returned."""
    from training import train

    out, work = tmp_path_factory.mktemp("models"), tmp_path_factory.mktemp("work")
    argv = ["--data", str(data_dir), "--epochs", "1", "--limit", "300", "--batch-size", "64"]
    argv += ["--arch", "sepnet", "--class-weights", "sqrt"]  # the cheaper net; the default is "none"
    metadata = train.main([*argv, "--seed", "3", "--out", str(out), "--work-dir", str(work)])
    return {"out": out, "work": work, "metadata": metadata}


# --- data loading and cleaning ----------------------------------------------------------------------


def test_fixture_is_small_real_and_covers_every_class() -> None:
    assert fersample.SHEET.stat().st_size + fersample.LABELS.stat().st_size < 1_000_000
    x, y, usage = fersample.load()
    assert x.dtype == np.uint8 and x.shape == (350, INPUT_SIZE, INPUT_SIZE) and y.dtype == np.int8
    for use in ("Training", "PublicTest"):
        assert set(y[usage == use].tolist()) == set(range(NUM_CLASSES))
    assert x.std(axis=(1, 2)).min() > 5  # real faces, not constant images


def test_both_kaggle_csv_formats_parse_by_usage_and_agree() -> None:
    assert FER_CSV.read_text().splitlines()[0] == "emotion,pixels,Usage"
    assert ICML_CSV.read_text().splitlines()[0] == "emotion, Usage, pixels"
    x, y, _ = fersample.load()
    known = {face.tobytes(): int(label) for face, label in zip(x, y, strict=True)}
    for usage in ("Training", "PublicTest", "PrivateTest"):
        fer, icml = load_csv(FER_CSV, usage), load_csv(ICML_CSV, usage)
        assert len(fer) == 4
        np.testing.assert_array_equal(fer.x, icml.x)
        np.testing.assert_array_equal(fer.y, icml.y)
        assert fer.x.dtype == np.uint8 and fer.y.dtype == np.int64
        assert all(known[face.tobytes()] == label for face, label in zip(fer.x, fer.y.tolist(), strict=True))
    everything = load_file(ICML_CSV)
    assert len(everything) == 12 and everything.sha256() == load_file(FER_CSV).sha256()
    np.testing.assert_array_equal(load_split(FER_CSV, "test").x, load_csv(ICML_CSV, "PrivateTest").x)
    np.testing.assert_array_equal(load_split(ICML_CSV, "val").y, load_csv(FER_CSV, "PublicTest").y)


def _csv(pixels: str = " ".join(["128"] * INPUT_SIZE**2), emotion: str = "3", usage: str = "Training") -> str:
    return f"emotion,pixels,Usage\n{emotion},{pixels},{usage}\n"


@pytest.mark.parametrize(
    ("text", "usage", "message"),
    [
        ("", None, "empty CSV"),
        ("emotion,Usage\n3,Training\n", None, r"missing column\(s\) \['pixels'\]"),
        ("emotion,pixels\n3," + " ".join(["1"] * INPUT_SIZE**2) + "\n", "Training", r"missing column\(s\) \['Usage'\]"),
        (_csv(pixels="1 2 3"), None, ":2: expected 2304 pixels, got 3"),
        (_csv(pixels=" ".join(["300"] * INPUT_SIZE**2)), None, ":2: pixel values outside 0..255"),
        (_csv(pixels=" ".join(["-1"] * INPUT_SIZE**2)), None, ":2: pixel values outside 0..255"),
        (_csv(pixels="a b c"), None, ":2: unreadable row"),
        (_csv(emotion="happy"), None, ":2: unreadable row"),
        ("emotion,pixels,Usage\n3\n", None, ":2: unreadable row"),
        (_csv(emotion="7"), None, "labels outside 0..6"),
        (_csv(usage="Training"), "PrivateTest", "no rows with Usage=PrivateTest"),
    ],
)
def test_bad_csv_gives_clear_value_error(tmp_path: Path, text: str, usage: str | None, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_csv(path, usage)


def test_clean_training_set_removes_blank_duplicate_conflicting_and_val_copies() -> None:
    faces = np.random.default_rng(0).integers(1, 256, size=(5, INPUT_SIZE, INPUT_SIZE), dtype=np.uint8)
    a, b, c, d, v = faces
    blank = np.zeros_like(a)
    x = np.stack([a, blank, a, b, v, b, c, a, v, blank, d])
    y = np.array([0, 6, 0, 1, 3, 2, 4, 0, 5, 6, 5])
    val = Split(np.stack([v, faces[0] // 2 + 1]), np.array([3, 1]))
    kept, stats = clean_training_set(Split(x, y), val)
    assert stats == {"blank": 2, "duplicate": 2, "conflicting_label": 2, "in_val": 2}
    np.testing.assert_array_equal(kept.x, np.stack([a, c, d]))
    np.testing.assert_array_equal(kept.y, [0, 4, 5])


# --- training and export -----------------------------------------------------------------------------


def test_each_architecture_builds_with_its_stage_depths() -> None:
    import keras

    from training.model import ARCHITECTURES, build_model

    sizes = {}
    for name, stages in ARCHITECTURES.items():
        model = build_model(name)
        separable = [layer for layer in model.layers if isinstance(layer, keras.layers.SeparableConv2D)]
        assert len(separable) == sum(depth for _, depth in stages)
        assert model.output_shape == (None, NUM_CLASSES)
        assert model.name == "fer_" + name.replace("-", "_")
        sizes[name] = model.count_params()
    assert sizes["sepnet"] < sizes["sepnet-deep"] < 500_000


def test_training_can_start_from_a_trained_model(trained: dict[str, Any], data_dir: Path, tmp_path: Path) -> None:
    """``--init`` (a warm restart) starts from the given weights, not from random ones; ``--teacher`` and
    ``--average-from`` are recorded."""
    import keras

    from training import train

    start = keras.models.load_model(trained["work"] / "best.keras", compile=False)
    argv = ["--data", str(data_dir), "--epochs", "1", "--limit", "100", "--batch-size", "64", "--learning-rate", "1e-9",
            "--class-weights", "none"]
    argv += ["--teacher", str(trained["out"] / "emotion_classifier.tflite"), "--average-from", "1"]
    metadata = train.main([*argv, "--init", str(trained["work"] / "best.keras"), "--out", str(tmp_path / "out"),
                           "--work-dir", str(tmp_path / "work")])
    after = keras.models.load_model(tmp_path / "out" / "emotion_classifier.keras", compile=False)
    assert metadata["parameters"] == start.count_params()
    assert metadata["training"]["class_weights"] == [1.0] * NUM_CLASSES
    assert metadata["training"]["teachers"] == [str(trained["out"] / "emotion_classifier.tflite")]
    average = metadata["training"]["weight_average"]
    assert (average["from_epoch"], average["epochs"]) == (1, 1) and 0 <= average["val_accuracy"] <= 1
    # a learning rate of 1e-9 leaves the trainable weights where --init put them
    for before, now in zip(start.trainable_weights, after.trainable_weights, strict=True):
        np.testing.assert_allclose(now.numpy(), before.numpy(), atol=1e-6, err_msg=before.path)


# --- distillation --------------------------------------------------------------------------------------


def test_soften_keeps_rows_normalised_and_flattens_with_temperature() -> None:
    from training.distill import soften

    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype=np.float32)
    np.testing.assert_allclose(soften(probs, 1.0), probs, atol=1e-6)
    hot = soften(probs, 2.0)
    np.testing.assert_allclose(hot.sum(axis=1), 1.0, atol=1e-6)
    assert (hot.max(axis=1) < probs.max(axis=1)).all()
    assert (hot.argmax(axis=1) == probs.argmax(axis=1)).all()
    np.testing.assert_allclose(hot[0], np.sqrt(probs[0]) / np.sqrt(probs[0]).sum(), atol=1e-6)
    with pytest.raises(ValueError, match="temperature must be positive"):
        soften(probs, 0.0)


def test_teacher_targets_average_teachers_and_mirrors(trained: dict[str, Any]) -> None:
    from training.distill import teacher_targets
    from training.predict import predict_tflite

    path = trained["out"] / "emotion_classifier.tflite"
    x, _, _ = fersample.load()
    x = x[:40]
    blob = path.read_bytes()
    expected = (predict_tflite(blob, x) + predict_tflite(blob, x, flip=True)) / 2
    np.testing.assert_allclose(teacher_targets([path], x), expected, atol=1e-5)
    np.testing.assert_allclose(teacher_targets([path, path], x), expected, atol=1e-5)
    with pytest.raises(ValueError, match="at least one teacher"):
        teacher_targets([], x)


def test_teachers_answer_in_their_training_targets_space() -> None:
    """An adjusted, calibrated teacher's served probabilities are undone to what its balanced loss fitted:
    ``T * log p + (a + b) * log prior``; a plain model's are left as they are."""
    from training.distill import to_targets_space

    rng = np.random.default_rng(1)
    prior = rng.dirichlet(np.ones(NUM_CLASSES) * 5)
    raw = rng.normal(size=(6, NUM_CLASSES))
    a, b, temperature = -0.5, 1.0, 0.9

    def softmax(z: np.ndarray) -> np.ndarray:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    served = softmax((raw - a * np.log(prior)) / temperature)
    training = {"balance": {"tau": b, "prior": prior.tolist()},
                "logit_adjustment": {"tau": a, "prior": prior.tolist()}, "temperature": temperature}
    np.testing.assert_allclose(to_targets_space(served, training), softmax(raw + b * np.log(prior)), atol=1e-5)
    np.testing.assert_allclose(to_targets_space(softmax(raw), {}), softmax(raw), atol=1e-6)


def test_dataset_mixes_teacher_probabilities_into_smoothed_labels() -> None:
    from training.augment import dataset

    x = np.zeros((4, INPUT_SIZE, INPUT_SIZE), np.uint8)
    y = np.array([0, 3, 6, 1])
    soft = np.random.default_rng(0).dirichlet(np.ones(NUM_CLASSES), size=4).astype(np.float32)
    smoothed = np.eye(NUM_CLASSES)[y] * 0.9 + 0.1 / NUM_CLASSES
    _, plain = next(iter(dataset(x, y, 4, False, label_smoothing=0.1)))
    _, mixed = next(iter(dataset(x, y, 4, False, label_smoothing=0.1, soft=soft, distill=0.25)))
    np.testing.assert_allclose(plain.numpy(), smoothed, atol=1e-6)
    np.testing.assert_allclose(mixed.numpy(), 0.75 * smoothed + 0.25 * soft, atol=1e-6)


def square_sides(zoom: float, translation: float = 0.0, images: int = 256) -> np.ndarray:
    """Side (as a share of 24 px) of a centred 24 px bright square after augmentation, per image."""
    from training.augment import augmenter

    x = np.zeros((images, INPUT_SIZE, INPUT_SIZE, 1), np.float32)
    x[:, 12:36, 12:36] = 1.0
    out = augmenter(seed=5, erasing=0.0, zoom=zoom, translation=translation)(x, training=True).numpy()[..., 0]
    low, high = out.min(axis=(1, 2), keepdims=True), out.max(axis=(1, 2), keepdims=True)
    bright = (out > (low + high) / 2).sum(axis=(1, 2))  # contrast and brightness jitter move both levels
    return np.sqrt(bright) / 24


def test_zoom_covers_the_measured_spread_of_the_pipelines_crops() -> None:
    """``--zoom 0.3`` spans the spread (10th to 90th percentile) of the face's size in the pipeline's
    crops relative to FER2013's own frames, as ``training.framing`` measured it (a frame ``scale``
    times FER2013's shows the face at ``1 / scale``); the old 0.1 does not."""
    spread = json.loads((ROOT / "models" / "face_detection.json").read_text())["calibration"]["crop_spread"]
    smallest = min(1 / model["scale_p10_p90"][1] for model in spread.values())
    largest = max(1 / model["scale_p10_p90"][0] for model in spread.values())
    wide, narrow = square_sides(0.3), square_sides(0.1)
    assert np.quantile(wide, 0.05) < smallest and np.quantile(wide, 0.95) > largest
    assert np.quantile(narrow, 0.05) > smallest and np.quantile(narrow, 0.95) < largest
    assert 0.9 < np.median(wide) < 1.15  # about FER2013's framing, as the measured spread is


def test_translation_moves_the_face_by_up_to_its_share_of_the_frame() -> None:
    from training.augment import augmenter

    x = np.zeros((256, INPUT_SIZE, INPUT_SIZE, 1), np.float32)
    x[:, 20:28, 20:28] = 1.0
    out = augmenter(seed=5, erasing=0.0, zoom=0.0, translation=0.1)(x, training=True).numpy()[..., 0]
    cols = np.arange(INPUT_SIZE)
    weights = out - out.min(axis=(1, 2), keepdims=True)
    centre_x = (weights.sum(axis=1) * cols).sum(axis=1) / weights.sum(axis=(1, 2))
    shift = np.abs(centre_x - 23.5) / INPUT_SIZE
    assert shift.max() <= 0.1 + 1 / INPUT_SIZE and np.quantile(shift, 0.9) > 0.05


def test_photo_look_changes_gamma_and_sharpness_per_image_within_range() -> None:
    import tensorflow as tf

    from training.augment import photo_look

    rng = np.random.default_rng(0)
    x = np.repeat(rng.random((1, INPUT_SIZE, INPUT_SIZE, 1)).astype(np.float32), 64, axis=0)
    out = photo_look(tf.constant(x), gamma=0.4, sharpen=1.5).numpy()
    assert out.shape == x.shape and out.min() >= 0.0 and out.max() <= 1.0
    assert len({round(float(v), 4) for v in out.mean(axis=(1, 2, 3))}) > 50  # each image its own draw
    detail = np.abs(np.diff(out, axis=2)).mean(axis=(1, 2, 3))  # fine detail: blurred below, sharpened above
    original = np.abs(np.diff(x, axis=2)).mean()
    assert detail.min() < 0.8 * original and detail.max() > 1.2 * original
    np.testing.assert_allclose(photo_look(tf.constant(x), gamma=0.0, sharpen=0.0).numpy(), x)


# --- weight averaging ----------------------------------------------------------------------------------


def test_weight_average_is_the_mean_of_the_epochs_from_the_start_epoch() -> None:
    import keras

    from training.average import WeightAverage

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.BatchNormalization()])
    averager = WeightAverage(start_epoch=2)
    averager.set_model(model)
    with pytest.raises(ValueError, match="nothing was averaged"):
        averager.averaged_copy()
    for epoch, value in enumerate([1.0, 2.0, 4.0, 9.0]):
        model.set_weights([np.full(w.shape, value, w.dtype) for w in model.get_weights()])
        averager.on_epoch_end(epoch)
    averaged = averager.averaged_copy()
    assert averager.count == 3
    for w in averaged.get_weights():  # epochs 2, 3 and 4 (1-based): (2 + 4 + 9) / 3
        np.testing.assert_allclose(w, 5.0)
    for w in model.get_weights():  # the trained model itself is untouched
        np.testing.assert_allclose(w, 9.0)


def test_recompute_batch_norm_sets_the_statistics_of_the_inputs() -> None:
    import keras

    from training.average import recompute_batch_norm

    norm = keras.layers.BatchNormalization(momentum=0.99)
    model = keras.Sequential([keras.Input((4,)), norm])
    x = np.random.default_rng(0).normal(5.0, 2.0, size=(1024, 4)).astype(np.float32)
    recompute_batch_norm(model, x, batch_size=128)
    np.testing.assert_allclose(norm.moving_mean.numpy(), x.mean(axis=0), atol=1e-3)
    np.testing.assert_allclose(norm.moving_variance.numpy(), x.var(axis=0), rtol=0.05)
    assert norm.momentum == 0.99


def test_training_exports_litert_models_and_metadata(trained: dict[str, Any], data_dir: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    from training.export import FLOAT_NAME, INT8_NAME, KERAS_NAME, METADATA_NAME
    from training.labels import SCALE, to_inputs
    from training.predict import load_predictor

    out, work, returned = trained["out"], trained["work"], trained["metadata"]
    assert sorted(p.name for p in out.iterdir()) == sorted([FLOAT_NAME, INT8_NAME, KERAS_NAME, METADATA_NAME])
    assert (work / "best.keras").is_file() and (work / "history.csv").is_file()
    meta = json.loads((out / METADATA_NAME).read_text())
    assert meta == returned
    assert meta["labels"] == list(LABELS)
    assert meta["input"]["shape"] == [INPUT_SIZE, INPUT_SIZE, 1] and meta["input"]["dtype"] == "float32"
    assert meta["input"]["scale"] == pytest.approx(SCALE) and meta["input"]["offset"] == 0.0
    assert "git_commit" in meta and (meta["git_commit"] is None or len(meta["git_commit"]) == 40)
    training = meta["training"]
    assert training["data_sha256"] == load_split(data_dir, "train").sha256()
    assert 0 < training["train_images"] <= 300 and training["epochs_run"] == 1
    assert len(set(training["class_weights"])) > 1 and meta["architecture"] == "fer_sepnet"
    assert set(training["removed"]) == {"blank", "duplicate", "conflicting_label", "in_val"}

    import keras

    keras_model = keras.models.load_model(work / "best.keras", compile=False)
    assert meta["parameters"] == keras_model.count_params()
    faces = fersample.load()[0][:64]
    probs = {}
    for kind, name, dtype in (("float32", FLOAT_NAME, np.float32), ("int8", INT8_NAME, np.int8)):
        entry, blob = meta["models"][kind], (out / name).read_bytes()
        assert entry["file"] == name and entry["bytes"] == len(blob) <= MAX_TFLITE_BYTES
        assert entry["sha256"] == hashlib.sha256(blob).hexdigest()
        assert 0.0 <= entry["val_accuracy"] <= 1.0
        interpreter = Interpreter(model_path=str(out / name))
        interpreter.allocate_tensors()
        inp, outp = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        assert list(inp["shape"]) == [1, INPUT_SIZE, INPUT_SIZE, 1] and list(outp["shape"]) == [1, NUM_CLASSES]
        assert inp["dtype"] == dtype and outp["dtype"] == dtype
        for io, key in ((inp, "input"), (outp, "output")):
            scale, zero_point = io["quantization"]
            assert entry[f"{key}_dtype"] == np.dtype(dtype).name
            assert entry[f"{key}_quantization"] == {"scale": pytest.approx(scale), "zero_point": zero_point}
            assert (scale > 0) == (kind == "int8")
        probs[kind] = load_predictor(out / name, num_threads=1)(faces)
        np.testing.assert_allclose(probs[kind].sum(1), 1.0, atol=0.02)
    np.testing.assert_allclose(probs["float32"], keras_model.predict(to_inputs(faces), verbose=0), atol=1e-4)
    assert np.abs(probs["int8"] - probs["float32"]).max() < 0.05


# --- evaluation -----------------------------------------------------------------------------------


def test_metrics_match_hand_computed_values() -> None:
    from training.evaluate import metrics

    result = metrics(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 0]))
    assert result["accuracy"] == pytest.approx(0.6)
    per = result["per_class"]
    assert list(per) == list(LABELS)
    assert per["angry"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert per["disgust"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert per["fear"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert result["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)  # classes absent from both are skipped
    assert result["confusion"][0][:3] == [1, 1, 0] and np.array(result["confusion"]).sum() == 5


def test_flip_tta_averages_image_and_mirror() -> None:
    from training.evaluate import evaluate

    def fake(x: np.ndarray) -> np.ndarray:  # votes for (left corner % 7), as strongly as that pixel is bright
        probs = np.zeros((len(x), NUM_CLASSES), dtype=np.float32)
        probs[np.arange(len(x)), x[:, 0, 0] % NUM_CLASSES] = x[:, 0, 0] + 1.0
        return probs

    x = np.zeros((3, INPUT_SIZE, INPUT_SIZE), dtype=np.uint8)
    x[:, 0, 0], x[:, 0, -1] = [11, 21, 31], [101, 102, 103]  # the right corner is brighter: mirror wins
    result = evaluate(fake, Split(x, np.array([101, 102, 103]) % NUM_CLASSES))
    assert result["plain"]["accuracy"] == 0.0 and result["flip_tta"]["accuracy"] == 1.0
    assert result["flip_tta"]["ms_per_face"] >= result["plain"]["ms_per_face"] > 0


def _check_report(report: dict[str, Any], images: int) -> None:
    assert report["labels"] == list(LABELS) and report["data"]["images"] == images
    for key in ("plain", "flip_tta"):
        result = report[key]
        assert set(result) == {"accuracy", "macro_f1", "per_class", "confusion", "ms_per_face"}
        assert 0.0 <= result["accuracy"] <= 1.0 and 0.0 <= result["macro_f1"] <= 1.0 and result["ms_per_face"] > 0
        assert list(result["per_class"]) == list(LABELS)
        assert sum(c["support"] for c in result["per_class"].values()) == images == np.sum(result["confusion"])
        assert [c["support"] for c in result["per_class"].values()] == report["data"]["class_counts"]


def test_evaluate_float_tflite_on_npz_writes_report_and_confusion(
    trained: dict[str, Any], sample_npz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from training import evaluate

    model = trained["out"] / "emotion_classifier.tflite"
    report_path, png = tmp_path / "out" / "eval.json", tmp_path / "out" / "confusion.png"
    argv = [str(model), "--data", str(sample_npz), "--report", str(report_path), "--confusion", str(png)]
    returned = evaluate.main(argv)
    report = json.loads(report_path.read_text())
    assert report == json.loads(json.dumps(returned))
    _check_report(report, 350)
    assert report["model"]["input_dtype"] == "float32" and report["threads"] == 2
    assert report["data"]["sha256"] == load_file(sample_npz).sha256()
    printed = capsys.readouterr().out
    assert all(label in printed for label in LABELS) and "macro-F1" in printed and "flip TTA" in printed
    with Image.open(png) as image:
        assert image.format == "PNG" and image.width > 800 and image.height > 400


def test_evaluate_int8_tflite_on_one_csv_usage(trained: dict[str, Any], tmp_path: Path) -> None:
    from training import evaluate

    model = trained["out"] / "emotion_classifier_int8.tflite"
    report = evaluate.main([str(model), "--data", str(ICML_CSV), "--usage", "PrivateTest", "--threads", "1"])
    _check_report(report, 4)
    assert report["model"]["input_dtype"] == "int8" and report["data"]["usage"] == "PrivateTest"
    assert evaluate.main([str(model), "--data", str(FER_CSV)])["data"]["images"] == 12


def test_evaluate_keras_model_writes_nothing_unless_asked(
    trained: dict[str, Any], sample_npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from training import evaluate

    monkeypatch.chdir(tmp_path)
    report = evaluate.main([str(trained["work"] / "best.keras"), "--data", str(sample_npz)])
    _check_report(report, 350)
    assert report["model"]["format"] == "keras" and report["threads"] is None
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["model.onnx", "--data", "SAMPLE"], "must be a .keras or .tflite"),
        (["missing.tflite", "--data", "SAMPLE"], "no such model file"),
        (["MODEL", "--data", str(DATA)], "is a directory"),
        (["MODEL", "--data", "SAMPLE", "--usage", "PublicTest"], "--usage applies to Kaggle CSV files only"),
        (["MODEL", "--data", str(FER_CSV), "--usage", "Validation"], "invalid choice"),
        (["MODEL", "--data", "SAMPLE", "--threads", "0"], "--threads must be at least 1"),
    ],
)
def test_evaluate_rejects_bad_arguments(
    trained: dict[str, Any], sample_npz: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from training import evaluate

    model = str(trained["out"] / "emotion_classifier.tflite")
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main([{"MODEL": model, "SAMPLE": str(sample_npz)}.get(arg, arg) for arg in argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.slow
def test_a_killed_run_resumes_after_its_last_finished_epoch(data_dir: Path, tmp_path: Path) -> None:
    """kill -9 during epoch 3 of 4; the same command then runs epochs 3 and 4 only, the average too."""
    work, out = tmp_path / "work", tmp_path / "out"
    command = [sys.executable, "-m", "training.train", "--data", str(data_dir), "--epochs", "4", "--limit", "200",
               "--batch-size", "50", "--arch", "sepnet", "--average-from", "1", "--seed", "5",
               "--out", str(out), "--work-dir", str(work)]
    first = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    history = work / "history.csv"
    try:
        wait_until(lambda: history.exists() and len(history.read_text().splitlines()) >= 3, 240,
                   "two finished epochs")
    finally:
        first.kill()
        first.wait(30)
    assert (work / "backup").exists() and (work / "average.npz").exists()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming from" in done.stdout and "Epoch 1/4" not in done.stdout and "Epoch 4/4" in done.stdout
    epochs = [line.split(",")[0] for line in history.read_text().splitlines()[1:]]
    assert epochs[-1] == "3" and len(epochs) >= 4  # 0-3 logged (an epoch cut short may be logged twice)
    assert "average of 4 epochs" in done.stdout and not (work / "backup").exists()
    assert json.loads((out / "emotion_classifier.json").read_text())["training"]["epochs_run"] >= 4


def test_a_run_whose_export_failed_exports_again_without_training(data_dir: Path, tmp_path: Path) -> None:
    """Training finished, the export failed (here: --out is a file); the same command, once the
    cause is gone, averages and exports the trained weights, the balanced loss's included."""
    from training import train

    work, out = tmp_path / "work", tmp_path / "out"
    out.write_text("in the way")
    argv = ["--data", str(data_dir), "--epochs", "2", "--limit", "200", "--batch-size", "50", "--arch", "sepnet",
            "--average-from", "1", "--balance", "1", "--gamma", "0.3", "--sharpen", "1", "--seed", "6",
            "--out", str(out), "--work-dir", str(work)]
    with pytest.raises(OSError):
        train.main(argv)
    history = (work / "history.csv").read_text()
    assert (work / "fitted").exists() and len(history.splitlines()) == 3
    out.unlink()
    metadata = train.main(argv)
    assert (work / "history.csv").read_text() == history  # no epoch ran again
    assert metadata["training"]["weight_average"]["epochs"] == 2 and metadata["training"]["balance"]["tau"] == 1
    assert not (work / "fitted").exists() and (out / "emotion_classifier.tflite").exists()
