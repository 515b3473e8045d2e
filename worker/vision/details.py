"""What a face API tells about each face besides its emotions: landmarks, pose, quality and size.

``describe(face, photo, box, pixels)`` turns what detection and cutting already produced into a
``FaceDetails``; it decodes and resamples nothing, so it costs tens of microseconds per face
(``python -m bench.details``), against about a millisecond to classify one.

- ``landmarks``: BlazeFace's six keypoints (``worker.vision.boxes.KEYPOINTS``) in the photo's
  displayed pixels, the frame of ``box``: the detector ran on the displayed photo (EXIF orientation
  applied, ``worker.vision.images``), its windows' zoom and tile offsets were undone as the box's
  were (``Candidates.mapped``), and only the decoded size's scale is left to undo here. "Right" is
  the detector's: the subject's right eye, which appears on the viewer's LEFT of a photo (smaller
  x). Ears are the tragion points, estimated even when hidden (a turned head's far ear).
- ``roll``: degrees the eye line is turned counter-clockwise on screen from horizontal
  (``worker.vision.framing.eye_angle``, which frames the face too): positive when the face is
  turned as ``PIL.Image.rotate`` turns a photo by a positive angle, i.e. the subject's left eye
  (viewer's right) higher. Mirroring 147 faces of the shared photos changed it by 3.4 degrees RMS
  where it should only flip its sign: read it to a few degrees.
- ``brightness``: the mean luma of the classifier's face crop (grayscale, ITU-R 601), 0-100.
- ``sharpness``: the variance of the 4-neighbour Laplacian of the same crop at 48x48, divided by
  the crop's own pixel variance (at least ``FLAT_VARIANCE``): without that division a darker or
  flatter copy of a face reads as blurred (a 0.4x darkening cut the raw variance 5-6 times, as
  much as a blur of 1/200 of the photo). The ratio ``r`` is mapped to 0-100 on a log scale,
  ``100 * log(r / SHARP_LOW) / log(SHARP_HIGH / SHARP_LOW)`` clipped: ``SHARP_LOW`` is a face
  blurred to a smudge, ``SHARP_HIGH`` about the sharpest of the 154 faces found in the shared
  photos (../shared/data; their largest r was 1.66). On those faces the scale reads 29 at the 5th
  percentile, 69 at the median and 93 at the 95th. On the bundled portraits, a copy blurred
  (Gaussian, radius 1/200 of the photo's side) reads 21-32 lower (67 on the astronaut), a copy
  at half brightness within 5 of the original (docs/api.md, "Face details").
- ``size``: the box's shorter side in displayed pixels (what ``min_face_size`` compares).

Yaw is not given: see docs/api.md ("Face details") for what a keypoint estimate looked like.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from worker.vision.boxes import KEYPOINTS
from worker.vision.detect import Face
from worker.vision.framing import eye_angle
from worker.vision.images import Photo

QUALITY_SIDE = 48  # quality is measured on the classifier's crop at this size (resized if the model's differs)
FLAT_VARIANCE = 100.0  # a crop flatter than a 10-level standard deviation counts as that flat
SHARP_LOW = 0.02  # Laplacian / pixel variance of a smudge: sharpness 0
SHARP_HIGH = 1.5  # about the sharpest face of the shared photos: sharpness 100


@dataclass(frozen=True)
class FaceDetails:
    """One face's landmarks (6, 2) as x, y in displayed pixels, roll in degrees, brightness and
    sharpness in 0-100, and size in pixels."""

    landmarks: np.ndarray
    roll: float
    brightness: float
    sharpness: float
    size: int

    def as_json(self) -> dict[str, Any]:
        """The per-face fields of a result, as ``worker.outcomes`` stores them."""
        points = np.round(self.landmarks.astype(np.float64), 1).tolist()
        return {
            "size": self.size,
            "landmarks": dict(zip(KEYPOINTS, points, strict=True)),
            "pose": {"roll": round(self.roll, 1)},
            "quality": {"brightness": round(self.brightness, 1), "sharpness": round(self.sharpness, 1)},
        }


def describe(face: Face, photo: Photo, box: tuple[int, int, int, int], pixels: np.ndarray) -> FaceDetails:
    """The details of ``face`` (found in ``photo.image``), whose displayed ``box`` is given and
    whose classifier crop is ``pixels`` (uint8 grayscale)."""
    crop = _at_quality_side(pixels)
    return FaceDetails(face.keypoints / photo.scale, eye_angle(face.keypoints), brightness(crop), sharpness(crop),
                       min(box[2], box[3]))


def brightness(crop: np.ndarray) -> float:
    """Mean luma of a uint8 crop, as 0-100."""
    return float(crop.mean()) * (100 / 255)


def sharpness(crop: np.ndarray) -> float:
    """Laplacian variance over pixel variance of a uint8 crop, mapped to 0-100 (module docstring).

    Written for speed (in-place sums, variances from dot products): about 25 us at 48x48, half
    of what ``np.var`` on the plain expression costs."""
    values = crop.astype(np.float32)
    laplacian = values[:-2, 1:-1] + values[2:, 1:-1]
    laplacian += values[1:-1, :-2]
    laplacian += values[1:-1, 2:]
    laplacian -= 4 * values[1:-1, 1:-1]
    ratio = _variance(laplacian.ravel()) / max(_variance(values.ravel()), FLAT_VARIANCE)
    if ratio <= SHARP_LOW:
        return 0.0
    return min(100.0, 100 * math.log(ratio / SHARP_LOW) / math.log(SHARP_HIGH / SHARP_LOW))


def _variance(flat: np.ndarray) -> float:
    mean = float(flat.sum()) / flat.size
    return max(0.0, float(flat @ flat) / flat.size - mean * mean)


def _at_quality_side(pixels: np.ndarray) -> np.ndarray:
    if pixels.shape == (QUALITY_SIDE, QUALITY_SIDE):
        return pixels
    return np.asarray(Image.fromarray(pixels).resize((QUALITY_SIDE, QUALITY_SIDE), Image.Resampling.BILINEAR))
