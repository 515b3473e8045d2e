"""Class probabilities from a .keras or .tflite model file, for evaluation and export checks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from training.labels import to_inputs

BATCH = 64


def predict_file(path: Path, x: np.ndarray) -> np.ndarray:
    """uint8 faces (N, 48, 48) -> probabilities (N, 7) from a .keras or .tflite file."""
    return load_predictor(path)(x)


def load_predictor(path: Path, num_threads: int = 2) -> Callable[[np.ndarray], np.ndarray]:
    """Load a .keras or .tflite file once; the result maps uint8 faces (N, 48, 48) to probabilities (N, 7).

    ``num_threads`` applies to LiteRT only (TensorFlow keeps its own thread pool).
    """
    path = Path(path)
    if path.suffix == ".tflite":
        blob = path.read_bytes()
        return lambda x: predict_tflite(blob, x, num_threads=num_threads)
    import keras

    model = keras.models.load_model(path, compile=False)
    return lambda x: model.predict(to_inputs(x), batch_size=256, verbose=0)


def predict_tflite(model: bytes, x: np.ndarray, flip: bool = False, num_threads: int = 2) -> np.ndarray:
    """Run a float32 or full-int8 TFLite model with LiteRT in batches of 64."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model, num_threads=num_threads)
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    inputs = to_inputs(x[:, :, ::-1] if flip else x)
    probs = np.empty((len(x), out["shape"][-1]), dtype=np.float32)
    current = None
    for start in range(0, len(x), BATCH):
        batch = inputs[start : start + BATCH]
        if current != len(batch):
            interpreter.resize_tensor_input(inp["index"], [len(batch), *inp["shape"][1:]])
            interpreter.allocate_tensors()
            current = len(batch)
        interpreter.set_tensor(inp["index"], quantize(batch, inp))
        interpreter.invoke()
        probs[start : start + BATCH] = dequantize(interpreter.get_tensor(out["index"]), out)
    return probs


def quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return x.astype(np.float32)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(detail["dtype"])


def dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return y
    scale, zero_point = detail["quantization"]
    return (y.astype(np.float32) - zero_point) * scale
