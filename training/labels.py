"""The model's contract, free of TensorFlow: FER2013 label ids in order, input size and scaling."""

import numpy as np

LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NUM_CLASSES = len(LABELS)
INPUT_SIZE = 48
SCALE = 1.0 / 255.0  # the model takes grayscale pixels scaled to [0, 1]


def to_inputs(x: np.ndarray) -> np.ndarray:
    """uint8 faces (N, 48, 48) -> float32 (N, 48, 48, 1) scaled to [0, 1], as the workers do."""
    return (x.astype(np.float32) * SCALE)[..., None]
