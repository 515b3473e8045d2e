"""The classifier: a small Xception-style CNN sized for CPU inference.

One full 3x3 convolution at 48x48, then three residual stages of depthwise-separable
convolutions (64, 128, 256 channels) with max-pooling between them, global average pooling and
a softmax over the seven FER2013 classes. Two depths (``ARCHITECTURES``), timed with LiteRT on
one core at batch 64:

- ``sepnet``: three convolutions per stage, 0.28M parameters, ~0.55 ms per face;
- ``sepnet-deep``: 3, 4 and 5 convolutions per stage, 0.43M parameters, ~0.68 ms per face. The
  extra depth sits at 12x12 and 6x6, where it is cheap;
- ``sepnet-wide``: the deep one at 1.5 times the width (96, 192, 384 channels).

(The original's VGG needed ~290M multiply-adds per face; a plain VGG of similar width costs
2.5 ms here.)

Augmentation lives in the input pipeline (``training.augment``), never in this graph, so the
exported TFLite model is deterministic and needs only builtin ops.
"""

from __future__ import annotations

import keras
from keras import layers

from training.labels import INPUT_SIZE, NUM_CLASSES

STEM_WIDTH = 32
ARCHITECTURES: dict[str, tuple[tuple[int, int], ...]] = {  # (width, convolutions) per stage
    "sepnet": ((64, 3), (128, 3), (256, 3)),
    "sepnet-deep": ((64, 3), (128, 4), (256, 5)),
    "sepnet-wide": ((96, 3), (192, 4), (384, 5)),
}


def _conv_bn_relu(x, filters: int, separable: bool, name: str):
    conv = layers.SeparableConv2D if separable else layers.Conv2D
    x = conv(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def build_model(
    architecture: str = "sepnet-deep", dropout: float = 0.3, weight_decay: float = 1e-4
) -> keras.Model:
    """Inputs: float32 (N, 48, 48, 1) in [0, 1]. Outputs: class probabilities (N, 7)."""
    stages = ARCHITECTURES[architecture]
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 1), name="face")
    x = _conv_bn_relu(inputs, STEM_WIDTH, separable=False, name="stem")
    x = layers.MaxPooling2D(name="stem_pool")(x)
    for s, (width, depth) in enumerate(stages, start=1):
        shortcut = layers.Conv2D(width, 1, use_bias=False, name=f"s{s}_proj")(x)
        shortcut = layers.BatchNormalization(name=f"s{s}_proj_bn")(shortcut)
        for d in range(depth):
            x = _conv_bn_relu(x, width, separable=True, name=f"s{s}_{d}")
        x = layers.Add(name=f"s{s}_add")([x, shortcut])
        x = layers.MaxPooling2D(name=f"s{s}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(
        NUM_CLASSES,
        activation="softmax",
        kernel_regularizer=keras.regularizers.L2(weight_decay),
        name="emotion",
    )(x)
    return keras.Model(inputs, outputs, name="fer_" + architecture.replace("-", "_"))
