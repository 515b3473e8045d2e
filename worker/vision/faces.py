"""An image file's faces as the classifier needs them: detected, framed as in FER2013, cut at its size.

``FaceFinder.find(data)`` decodes the file, runs the detector (``worker.vision.detect``), frames each
face with the calibration in ``models/face_detection.json`` (``worker.vision.framing``) and cuts it out,
largest face first. It decodes as little as it can: one small decode first (a JPEG is decoded at
1/2 to 1/8 scale) gives a preview, enough for the detector's close-up pass and for cutting a
close-up face at 48x48, and a view of ``WIDE_SIDE`` px for the wide pass's whole-photo runs (the
model sees the photo at 154-192 px); the full photo is decoded only when there are faces to cut or
tiles to search. A photo without a face is never decoded in full.

When the largest face's frame is (nearly) the whole photo, the photo already is a face crop and
is classified whole, as the ``"whole"`` mode would (``worker.vision.images.squash`` of the preview: the
same pixels as ``decode`` for JPEGs, give or take a level of colour conversion): see
``Calibration.is_whole``. Boxes are in pixels of the photo as displayed, whatever was decoded.
Each crop carries its face's details (``worker.vision.details``: landmarks, roll, quality, size),
measured from what detection and cutting produced. A job's filters (``worker.facefilter``) drop
faces before they are cut.

Like the classifier, a FaceFinder holds LiteRT interpreters: create it after the fork. Threads may
share it: decoding and cutting run in parallel, the detector serves one thread at a time (one
detector per process costs about 14 MB; a second one per thread would cost as much again).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from worker.facefilter import FaceFilter
from worker.ops import metrics
from worker.vision.classifier import ModelError
from worker.vision.details import FaceDetails, describe
from worker.vision.detect import SHORT_RANGE, Face, FaceDetector, faces_of, is_close_up, merge
from worker.vision.framing import Calibration
from worker.vision.images import PREVIEW_SIDE, WIDE_SIDE, Photo, load_photo, load_photos, squash


@dataclass(frozen=True)
class FaceCrop:
    """One face: ``box`` as x, y, width, height in the photo's displayed pixels, the detector's
    ``score`` and the classifier's input ``pixels`` (uint8, height x width)."""

    box: tuple[int, int, int, int]
    score: float
    pixels: np.ndarray
    details: FaceDetails | None = None  # landmarks, pose, quality, size (none for a whole image)


@dataclass(frozen=True)
class Found:
    """What ``FaceFinder.find`` saw: the photo's displayed size and its faces, largest first;
    ``dropped`` counts the faces a job's filters dropped, by filter (``FaceFilter.keep``); ``runs``
    names the detector runs it took (``close_up``, ``wide``, ``tile``: ``worker.vision.detect``)."""

    width: int
    height: int
    crops: list[FaceCrop]
    dropped: dict[str, int] = field(default_factory=dict)
    runs: tuple[str, ...] = ()


class FaceFinder:
    def __init__(self, detector: FaceDetector, calibration: Calibration, size: tuple[int, int]) -> None:
        self.detector = detector
        self.calibration = calibration
        self.size = size
        self._detecting = threading.Lock()  # LiteRT interpreters serve one thread at a time

    @classmethod
    def load(cls, metadata_path: Path, size: tuple[int, int]) -> FaceFinder:
        """The detector and calibration described by ``face_detection.json`` (models beside it)."""
        try:
            return cls(FaceDetector(Path(metadata_path).parent), Calibration.load(metadata_path), size)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise ModelError(f"cannot load the face detector {metadata_path}: {exc}") from exc

    def find(self, data: bytes, max_pixels: int = 50_000_000, face_filter: FaceFilter | None = None) -> Found:
        """Every face in an image file that passes ``face_filter``; raises ``worker.errors.ImageError``s
        as ``load_photo``."""
        runs: list[str] = []
        preview, photo, faces = self._locate(data, max_pixels, runs)
        metrics.detector_runs(runs)
        dropped: dict[str, int] = {}
        if face_filter is not None and face_filter.active and faces:
            boxes = [_photo_box(face, photo) for face in faces]
            order = sorted(range(len(faces)), key=lambda i: -boxes[i][2] * boxes[i][3])
            kept, dropped = face_filter.keep([(min(boxes[i][2:]), faces[i].score) for i in order])
            faces = [faces[order[position]] for position in kept]
        crops = self.crops(photo, faces, lambda: squash(preview.image, self.size))
        return Found(photo.width, photo.height, crops, dropped, tuple(runs))

    def locate(self, data: bytes, max_pixels: int = 50_000_000) -> tuple[Photo, list[Face]]:
        """The faces of an image file, in the pixels of the returned Photo's image (a preview for a
        close-up, else the photo at ``DETECT_SIDE``)."""
        _, photo, faces = self._locate(data, max_pixels, [])
        return photo, faces

    def _locate(self, data: bytes, max_pixels: int, runs: list[str]) -> tuple[Photo, Photo, list[Face]]:
        # One decode for both passes: the close-up pass's preview, and the view the wide pass's
        # whole-photo runs see at 154-192 px (a second decode would cost nearly as much as the first).
        with metrics.timed("decode"):
            preview, view = load_photos(data, max_pixels, (PREVIEW_SIDE, WIDE_SIDE))
        with self._detecting, metrics.timed("detect", **{"pass": "close_up"}):
            close = self.detector.close_up(preview.image, runs)
        if is_close_up(close, preview.image.width, preview.image.height):
            return preview, preview, faces_of(close, SHORT_RANGE)
        with self._detecting, metrics.timed("detect", **{"pass": "wide"}):
            look = self.detector.look(view.image, runs)
        close_in_view = close.mapped(0, 0, view.image.width / preview.image.width)
        tiled = look.wants_tiles(close_in_view, max(view.width, view.height))
        if not (tiled or look.faces or len(close)):
            return preview, view, []  # no face: the full photo is never decoded
        photo = view
        if view.reduced:  # faces are cut, and tiles searched, at full detail
            with metrics.timed("decode"):
                photo = load_photo(data, max_pixels)
        scale = photo.image.width / view.image.width
        found = list(look.scaled(scale))
        if tiled:
            with self._detecting, metrics.timed("detect", **{"pass": "wide"}):
                found += self.detector.tiles(photo.image, runs)
        return preview, photo, merge(found, close.mapped(0, 0, photo.image.width / preview.image.width))

    def crops(self, photo: Photo, faces: list[Face], whole: Callable[[], np.ndarray]) -> list[FaceCrop]:
        """``faces`` found in ``photo.image``, framed and cut, largest (reported box area) first.

        ``whole()`` gives the whole image at the classifier's size, used when the photo is a crop.
        """
        boxed = [(_photo_box(face, photo), face) for face in faces]
        boxed.sort(key=lambda pair: -pair[0][2] * pair[0][3])
        crops = []
        for rank, (box, face) in enumerate(boxed):
            frame = self.calibration.frame(face)
            if rank == 0 and self.calibration.is_whole(frame, photo.image.width, photo.image.height):
                pixels = whole()
            else:
                pixels = self.calibration.cut(photo.image, frame, self.size)
            crops.append(FaceCrop(box, face.score, pixels, describe(face, photo, box, pixels)))
        return crops


def _photo_box(face: Face, photo: Photo) -> tuple[int, int, int, int]:
    """The face's box in whole pixels of the photo as displayed, clipped to it."""
    x, y, w, h = (value / photo.scale for value in face.box)
    left, top = max(0, round(x)), max(0, round(y))
    right, bottom = min(photo.width, round(x + w)), min(photo.height, round(y + h))
    return left, top, max(0, right - left), max(0, bottom - top)
