"""The tf.data input pipeline: scaling to [0, 1] and, for training only, random augmentation.

Augmentation follows common FER2013 practice: horizontal flips, small shifts, rotations and
zooms, contrast and brightness jitter, and random erasing. It runs on batches inside tf.data so
that it never becomes part of the exported model.

``photo_look`` (``--gamma``, ``--sharpen``) goes further, towards what the service is shown: faces
cut from sharp photos and downscaled once (crisper edges, studio light) as well as FER2013's often
soft, unevenly exposed web thumbnails. Per image, a random gamma and a random unsharp mask whose
amount runs from a blur (negative) to a sharpening (positive).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from training.labels import NUM_CLASSES, to_inputs


def augmenter(seed: int, erasing: float = 0.25, zoom: float = 0.1, translation: float = 0.1) -> keras.Sequential:
    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomTranslation(translation, translation, fill_mode="nearest", seed=seed + 1),
            keras.layers.RandomRotation(0.04, fill_mode="nearest", seed=seed + 2),  # about ±14°
            keras.layers.RandomZoom(zoom, fill_mode="nearest", seed=seed + 3),
            keras.layers.RandomContrast(0.3, value_range=(0.0, 1.0), seed=seed + 4),
            keras.layers.RandomBrightness(0.15, value_range=(0.0, 1.0), seed=seed + 5),
            keras.layers.RandomErasing(factor=erasing, scale=(0.02, 0.15), seed=seed + 6),
        ],
        name="augment",
    )


BLUR_KERNEL = np.outer([1.0, 2.0, 1.0], [1.0, 2.0, 1.0]).astype(np.float32)[:, :, None, None] / 16.0


def photo_look(images: tf.Tensor, gamma: float, sharpen: float) -> tf.Tensor:
    """Per image of a batch (N, 48, 48, 1) in [0, 1]: ``x ** exp(U(-gamma, gamma))``, then
    ``x + a * (x - blur(x))`` with ``a ~ U(-1, sharpen)`` (a = -1 is a 3x3 Gaussian blur)."""
    n = tf.shape(images)[0]
    if gamma > 0:
        exponent = tf.exp(tf.random.uniform([n, 1, 1, 1], -gamma, gamma))
        images = tf.pow(tf.clip_by_value(images, 1e-4, 1.0), exponent)
    if sharpen > 0:
        padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")
        blurred = tf.nn.depthwise_conv2d(padded, BLUR_KERNEL, [1, 1, 1, 1], "VALID")
        amount = tf.random.uniform([n, 1, 1, 1], -1.0, sharpen)
        images = images + amount * (images - blurred)
    return tf.clip_by_value(images, 0.0, 1.0)


def dataset(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    training: bool,
    seed: int = 0,
    label_smoothing: float = 0.0,
    erasing: float = 0.25,
    soft: np.ndarray | None = None,
    distill: float = 0.0,
    zoom: float = 0.1,
    translation: float = 0.1,
    gamma: float = 0.0,
    sharpen: float = 0.0,
) -> tf.data.Dataset:
    """Batches of (images, target probabilities); ``soft`` (N, 7) are other targets (a teacher's
    probabilities, ``training.distill``, or the raters' votes, ``training.votes``) mixed into the
    smoothed one-hot labels with weight ``distill``."""
    if soft is None:
        soft, distill = np.zeros((len(y), NUM_CLASSES), np.float32), 0.0
    ds = tf.data.Dataset.from_tensor_slices((to_inputs(x), y.astype(np.int32), soft.astype(np.float32)))
    if training:
        ds = ds.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if training:
        aug = augmenter(seed, erasing, zoom, translation)
        ds = ds.map(
            lambda images, labels, soft: (photo_look(tf.clip_by_value(aug(images, training=True), 0.0, 1.0),
                                                     gamma, sharpen), labels, soft),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    smooth = label_smoothing
    ds = ds.map(
        lambda images, labels, soft: (
            images,
            (1.0 - distill) * (tf.one_hot(labels, NUM_CLASSES) * (1.0 - smooth) + smooth / NUM_CLASSES)
            + distill * soft,
        )
    )
    return ds.prefetch(tf.data.AUTOTUNE)
