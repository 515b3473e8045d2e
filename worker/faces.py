"""A photo's faces as the classifier needs them: detected, framed as in FER2013, cut at its size.

``FaceFinder.find(photo)`` runs the detector (``worker.detect``), frames each face with the
calibration in ``models/face_detection.json`` (``worker.framing``) and cuts it out, largest face
first. When the largest face's frame is (nearly) the whole photo, the photo already is a face
crop and is used whole, with exactly the pixels of the ``"whole"`` mode (``whole()``, the
caller's ``worker.images.decode`` of the same bytes): see ``Calibration.is_whole``.

Like the classifier, a FaceFinder holds LiteRT interpreters: one per thread, after the fork.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from worker.detect import Face, FaceDetector
from worker.framing import Calibration


@dataclass(frozen=True)
class FaceCrop:
    """One face: ``box`` as x, y, width, height in the photo's displayed pixels, the detector's
    ``score`` and the classifier's input ``pixels`` (uint8, height x width)."""

    box: tuple[int, int, int, int]
    score: float
    pixels: np.ndarray


class FaceFinder:
    def __init__(self, detector: FaceDetector, calibration: Calibration, size: tuple[int, int]) -> None:
        self.detector = detector
        self.calibration = calibration
        self.size = size

    @classmethod
    def load(cls, metadata_path: Path, size: tuple[int, int]) -> FaceFinder:
        """The detector and calibration described by ``face_detection.json`` (models beside it)."""
        metadata = json.loads(Path(metadata_path).read_text())
        return cls(FaceDetector(Path(metadata_path).parent), Calibration.from_dict(metadata), size)

    def find(self, photo: Image.Image, whole: Callable[[], np.ndarray]) -> list[FaceCrop]:
        """Every face in ``photo`` (RGB or L), largest (box area) first; empty when there is none.

        ``whole()`` gives the whole image at the classifier's size, used when the photo is a crop.
        """
        return self.crops(photo, self.detector.detect(photo), whole)

    def crops(self, photo: Image.Image, faces: list[Face], whole: Callable[[], np.ndarray]) -> list[FaceCrop]:
        """``faces`` found in ``photo``, framed and cut (``find`` without the detection)."""
        boxed = [(_pixel_box(face, photo.width, photo.height), face) for face in faces]
        boxed.sort(key=lambda pair: -pair[0][2] * pair[0][3])  # by the area of the box reported
        crops = []
        for rank, (box, face) in enumerate(boxed):
            frame = self.calibration.frame(face)
            if rank == 0 and self.calibration.is_whole(frame, photo.width, photo.height):
                pixels = whole()
            else:
                pixels = self.calibration.cut(photo, frame, self.size)
            crops.append(FaceCrop(box, face.score, pixels))
        return crops


def _pixel_box(face: Face, width: int, height: int) -> tuple[int, int, int, int]:
    """The face's box in whole pixels, clipped to the photo."""
    x, y, w, h = face.box
    left, top = max(0, round(x)), max(0, round(y))
    right, bottom = min(width, round(x + w)), min(height, round(y + h))
    return left, top, max(0, right - left), max(0, bottom - top)
