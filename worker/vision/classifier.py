"""The emotion classifier as the workers run it: a LiteRT interpreter plus its metadata JSON.

The metadata written by ``training.export`` is the one source of truth for labels, input size
and scaling. Create a ``Classifier`` in each worker process after the fork and use it from one
thread at a time (LiteRT interpreters are not thread-safe).

The interpreter always runs batches of exactly ``batch_size`` faces: fewer are padded, more are
split. Its tensors are then allocated once; re-allocating them for every new batch length (as
faces per batch vary once photos hold 0, 1 or 29 faces) cost a transient 20-25 MB each time
with the XNNPACK delegate, measured here, besides the time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from worker.settings import Settings


class ModelError(RuntimeError):
    """The model or its metadata is missing or inconsistent (a deployment problem)."""


@dataclass(frozen=True)
class ModelInfo:
    labels: tuple[str, ...]
    width: int
    height: int
    scale: float
    offset: float

    @classmethod
    def load(cls, path: Path) -> ModelInfo:
        try:
            meta = json.loads(Path(path).read_text())
            height, width, channels = meta["input"]["shape"]
            if channels != 1 or meta["input"].get("color_mode", "L") != "L":
                raise ModelError(f"{path}: only single-channel grayscale models are supported")
            return cls(tuple(meta["labels"]), int(width), int(height),
                       float(meta["input"]["scale"]), float(meta["input"].get("offset", 0.0)))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"cannot read model metadata {path}: {exc}") from exc


class Classifier:
    def __init__(self, model_path: Path, metadata_path: Path, num_threads: int = 1, batch_size: int = 8) -> None:
        self.info = ModelInfo.load(metadata_path)
        self.batch_size = batch_size
        try:
            self._interpreter = Interpreter(model_path=str(model_path), num_threads=num_threads)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelError(f"cannot load model {model_path}: {exc}") from exc
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        if self._output["shape"][-1] != len(self.info.labels):
            raise ModelError(f"{model_path} has {self._output['shape'][-1]} outputs, "
                             f"metadata lists {len(self.info.labels)} labels")
        self._interpreter.resize_tensor_input(self._input["index"], [batch_size, self.info.height, self.info.width, 1])
        self._interpreter.allocate_tensors()

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) the faces must have."""
        return self.info.width, self.info.height

    def predict(self, faces: np.ndarray) -> np.ndarray:
        """uint8 faces (N, height, width) -> probabilities (N, labels), one invoke per ``batch_size``."""
        parts = [self._predict_batch(faces[start : start + self.batch_size])
                 for start in range(0, len(faces), self.batch_size)]
        return np.concatenate(parts) if parts else np.empty((0, len(self.info.labels)), dtype=np.float32)

    def _predict_batch(self, faces: np.ndarray) -> np.ndarray:
        n = len(faces)
        batch = np.zeros((self.batch_size, self.info.height, self.info.width, 1), dtype=np.float32)
        batch[:n, ..., 0] = faces
        x = batch * self.info.scale + self.info.offset
        self._interpreter.set_tensor(self._input["index"], _quantize(x, self._input))
        self._interpreter.invoke()
        return _dequantize(self._interpreter.get_tensor(self._output["index"]), self._output)[:n]


def load_classifier(settings: Settings) -> Classifier:
    """The classifier that ``settings`` describe (model, metadata, ``batch_size``)."""
    return Classifier(settings.model_path, settings.metadata_path, batch_size=settings.batch_size)


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return x
    scale, zero_point = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(detail["dtype"])


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return y.copy()
    scale, zero_point = detail["quantization"]
    return (y.astype(np.float32) - zero_point) * scale
