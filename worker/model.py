"""The emotion classifier as the workers run it: a LiteRT interpreter plus its metadata JSON.

The metadata written by ``training.export`` is the one source of truth for labels, input size
and scaling. Create a ``Classifier`` in each worker process after the fork and use it from one
thread at a time (LiteRT interpreters are not thread-safe).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter


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
    def __init__(self, model_path: Path, metadata_path: Path, num_threads: int = 1) -> None:
        self.info = ModelInfo.load(metadata_path)
        try:
            self._interpreter = Interpreter(model_path=str(model_path), num_threads=num_threads)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelError(f"cannot load model {model_path}: {exc}") from exc
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        if self._output["shape"][-1] != len(self.info.labels):
            raise ModelError(f"{model_path} has {self._output['shape'][-1]} outputs, "
                             f"metadata lists {len(self.info.labels)} labels")
        self._batch = 0

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) the faces must have."""
        return self.info.width, self.info.height

    def predict(self, faces: np.ndarray) -> np.ndarray:
        """uint8 faces (N, height, width) -> probabilities (N, labels), one invoke per call."""
        n = len(faces)
        if n == 0:
            return np.empty((0, len(self.info.labels)), dtype=np.float32)
        if n != self._batch:
            self._interpreter.resize_tensor_input(self._input["index"], [n, self.info.height, self.info.width, 1])
            self._interpreter.allocate_tensors()
            self._batch = n
        x = faces.astype(np.float32)[..., None] * self.info.scale + self.info.offset
        self._interpreter.set_tensor(self._input["index"], _quantize(x, self._input))
        self._interpreter.invoke()
        return _dequantize(self._interpreter.get_tensor(self._output["index"]), self._output)


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
