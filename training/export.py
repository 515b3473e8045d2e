"""Export a trained Keras model to the files the workers load.

Writes into ``--out`` (default ``models/``):

- ``emotion_classifier.tflite``: float32;
- ``emotion_classifier_int8.tflite``: full-integer, calibrated on training images;
- ``emotion_classifier.keras``: the same weights as a Keras model (no optimizer state), for
  fine-tuning and the train/serve parity test;
- ``emotion_classifier.json``: labels in id order, input shape, dtype and scaling, each model's
  quantization parameters and val accuracy, parameter count, training data SHA-256, date and
  git commit. The workers read labels and scaling from this file and nowhere else.

Usage: ``python -m training.export --model build/training/best.keras --data DIR [--out models/]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from training.data import Split, clean_training_set, load_split
from training.labels import INPUT_SIZE, LABELS, SCALE, to_inputs
from training.predict import predict_tflite

FLOAT_NAME = "emotion_classifier.tflite"
INT8_NAME = "emotion_classifier_int8.tflite"
KERAS_NAME = "emotion_classifier.keras"
METADATA_NAME = "emotion_classifier.json"
CALIBRATION_IMAGES = 500
PARITY_IMAGES = 64


def convert(model: Any, calibration: np.ndarray | None = None) -> bytes:
    """Keras model -> TFLite bytes: float32, or full int8 when calibration faces are given."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if calibration is not None:
        inputs = to_inputs(calibration)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([face[None]] for face in inputs)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def export(
    model: Any, out_dir: Path, train: Split, val: Split, training_info: dict[str, Any], seed: int = 0
) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    calibration = train.x[rng.choice(len(train), size=min(CALIBRATION_IMAGES, len(train)), replace=False)]
    files = {"float32": (FLOAT_NAME, convert(model)), "int8": (INT8_NAME, convert(model, calibration))}
    models: dict[str, Any] = {}
    _save_weights_only_model(model, out_dir / KERAS_NAME)
    for kind, (name, blob) in files.items():
        (out_dir / name).write_bytes(blob)
        models[kind] = {
            "file": name,
            "bytes": len(blob),
            "sha256": hashlib.sha256(blob).hexdigest(),
            **_io_details(blob),
            "val_accuracy": _accuracy(predict_tflite(blob, val.x), val.y),
        }
    metadata = {
        "name": "emotion_classifier",
        "architecture": model.name,
        "labels": list(LABELS),
        "input": {
            "shape": [INPUT_SIZE, INPUT_SIZE, 1],
            "dtype": "float32",
            "color_mode": "L",
            "scale": SCALE,
            "offset": 0.0,
            "note": "grayscale pixels 0..255 times scale plus offset; int8 models then quantize",
        },
        "parameters": int(model.count_params()),
        "models": models,
        "parity": parity(model, files["float32"][1], files["int8"][1], val, seed),
        "training": training_info,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
    }
    (out_dir / METADATA_NAME).write_text(json.dumps(metadata, indent=2) + "\n")
    return metadata


def parity(model: Any, float_blob: bytes, int8_blob: bytes, val: Split, seed: int = 0) -> dict[str, Any]:
    """Keras vs float TFLite vs int8 TFLite on the same val images: train/serve agreement."""
    pick = np.random.default_rng(seed).choice(len(val), size=min(PARITY_IMAGES, len(val)), replace=False)
    faces = val.x[pick]
    keras_probs = model.predict(to_inputs(faces), verbose=0)
    float_probs, int8_probs = predict_tflite(float_blob, faces), predict_tflite(int8_blob, faces)
    top = keras_probs.argmax(1)
    return {
        "images": len(faces),
        "keras_vs_float_max_abs_diff": float(np.abs(keras_probs - float_probs).max()),
        "keras_vs_float_top_agreement": float((float_probs.argmax(1) == top).mean()),
        "int8_vs_float_top_agreement": float((int8_probs.argmax(1) == float_probs.argmax(1)).mean()),
        "int8_vs_float_max_abs_diff": float(np.abs(int8_probs - float_probs).max()),
    }


def _save_weights_only_model(model: Any, path: Path) -> None:
    """Save an uncompiled copy: no optimizer state, even for a compiled model or a clone of one
    (Keras 3's ``clone_model`` copies the compiled optimizer, tripling the file)."""
    bare = type(model).from_config(model.get_config())
    bare.set_weights(model.get_weights())
    bare.save(path)


def _io_details(blob: bytes) -> dict[str, Any]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=blob)
    detail = {}
    for key, io in (("input", interpreter.get_input_details()[0]), ("output", interpreter.get_output_details()[0])):
        scale, zero_point = io["quantization"]
        detail[f"{key}_dtype"] = np.dtype(io["dtype"]).name
        detail[f"{key}_quantization"] = {"scale": float(scale), "zero_point": int(zero_point)}
    return detail


def _accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    return round(float((probs.argmax(1) == y).mean()), 4)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.export", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="trained .keras file")
    parser.add_argument("--data", type=Path, required=True, help="directory with train.npz/val.npz, or a Kaggle CSV")
    parser.add_argument("--out", type=Path, default=Path("models"))
    args = parser.parse_args(argv)

    import keras

    train, val = load_split(args.data, "train"), load_split(args.data, "val")
    train_clean, _ = clean_training_set(train, val)
    model = keras.models.load_model(args.model, compile=False)
    info = {"data_sha256": train.sha256(), "source": str(args.model)}
    previous = args.out / METADATA_NAME
    if previous.exists():  # a re-export keeps the record of the run that trained the weights
        info = {**json.loads(previous.read_text()).get("training", {}), **info}
    metadata = export(model, args.out, train_clean, val, info)
    print(json.dumps(metadata["models"], indent=2))


if __name__ == "__main__":
    main()
