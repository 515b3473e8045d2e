"""Measure framing choices through the worker's own code: accuracy of the classifier on what it is given.

Every sample is an image file with a known expression. It is decoded and searched for faces once
(``FaceFinder.locate``, as in a worker), and its largest face is framed and cut by each
``Calibration`` variant (``FaceFinder.crops``); a sample without a face counts as wrong. ``whole`` is the same
file classified whole (the ``"whole"`` faces mode). Three sets:

- ``val_served_320px``: FER2013 validation faces served as 320x320 JPEGs (a user's face crops);
- ``val_in_a_photo``: the same faces at 192 px in the middle of a 480x480 photo whose surroundings
  continue the face's own border (edge pixels, blurred): the pipeline must find and re-frame them
  (``training.compare``);
- ``labelled_photos``: real photos whose ``photos.csv`` gives one of the seven expressions;
- ``labelled_photos_small_faces``: the same photos shrunk onto a grey 4:3 canvas so that the face
  is ``SMALL_FACE`` of its long side: the wide pass's faces, cut from fewer pixels.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from training.labels import LABELS
from worker.vision.classifier import Classifier
from worker.vision.detect import Face, FaceDetector
from worker.vision.faces import FaceFinder
from worker.vision.framing import Calibration, Framing
from worker.vision.images import decode, load_photo

SERVED = 320  # px: FER2013 faces are served as JPEGs of this size
SMALL_FACE = 0.12  # of the canvas's long side, in labelled_photos_small_faces
CANVAS = (800, 600)
Sample = tuple[bytes, int]  # an image file and its label id


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def served_faces(faces: np.ndarray, labels: np.ndarray) -> list[Sample]:
    return [(jpeg(Image.fromarray(face, "L").resize((SERVED, SERVED), Image.Resampling.BICUBIC)), int(label))
            for face, label in zip(faces, labels, strict=True)]


def in_photos(faces: np.ndarray, labels: np.ndarray, side: int = 192, canvas: int = 480) -> list[Sample]:
    """Each 48x48 face upscaled to ``side`` px in the middle of a ``canvas`` px photo: beyond the
    face, its edge pixels run on, blurred so that they read as background rather than streaks."""
    pad = (canvas - side) // 2
    samples = []
    for face, label in zip(faces, labels, strict=True):
        big = np.asarray(Image.fromarray(face, "L").resize((side, side), Image.Resampling.BICUBIC))
        padded = np.pad(big, pad, mode="edge")
        photo = Image.fromarray(padded).filter(ImageFilter.GaussianBlur(6))
        photo.paste(Image.fromarray(big), (pad, pad))
        samples.append((jpeg(photo), int(label)))
    return samples


def labelled_photos(folders: list[Path]) -> list[Sample]:
    samples = []
    for folder in folders:
        with open(folder / "photos.csv", newline="") as handle:
            samples += [((folder / row["file"]).read_bytes(), LABELS.index(row["expression"]))
                        for row in csv.DictReader(handle) if row.get("expression") in LABELS]
    return samples


def largest_faces(detector: FaceDetector, samples: list[Sample]) -> Iterator[tuple[Image.Image, Face, int]]:
    """Each sample's photo, its largest face and its label; samples without a face are left out."""
    for data, label in samples:
        photo = load_photo(data).image
        faces = detector.detect(photo)
        if faces:
            yield photo, faces[0], label


def small_faces(detector: FaceDetector, samples: list[Sample]) -> list[Sample]:
    """Each photo shrunk onto a grey canvas so that its largest face spans SMALL_FACE of it."""
    out = []
    for photo, face, label in largest_faces(detector, samples):
        scale = SMALL_FACE * max(CANVAS) / face.box[2]
        small = photo.convert("RGB").resize((max(1, round(photo.width * scale)), max(1, round(photo.height * scale))),
                                            Image.Resampling.LANCZOS)
        canvas = Image.new("RGB", CANVAS, (120, 120, 120))
        canvas.paste(small, ((CANVAS[0] - small.width) // 2, (CANVAS[1] - small.height) // 2))
        out.append((jpeg(canvas), label))
    return out


def variants(framings: dict[bool, dict[str, Framing]], whole_ious: tuple[float, ...]) -> dict[str, Calibration]:
    """The choices measured: rotation, margin, resampling (never using the photo whole), then whole_iou.

    "calibrated" is the shipped framing and resampling (an upright frame, Lanczos resize)."""
    plain, never = framings[False], math.inf

    def margin(factor: float) -> dict[str, Framing]:
        return {name: dataclasses.replace(f, scale=f.scale * factor) for name, f in plain.items()}

    found = {
        "calibrated": Calibration(plain, never),
        "rotated upright by the eyes": Calibration(framings[True], never),
        "margin x0.9": Calibration(margin(0.9), never),
        "margin x1.1": Calibration(margin(1.1), never),
        "bicubic resize": Calibration(plain, never, Image.Resampling.BICUBIC),
        "affine bicubic after box reduction": Calibration(plain, never, Image.Resampling.BICUBIC, affine=True),
        "affine bicubic alone": Calibration(plain, never, Image.Resampling.BICUBIC, affine=True, reduce=False),
    }
    for iou in whole_ious:
        found[f"calibrated, whole_iou={iou}"] = Calibration(plain, iou)
        found[f"rotated, whole_iou={iou}"] = Calibration(framings[True], iou)
    return found


@dataclasses.dataclass
class Cut:
    """A sample set searched and cut once, to be classified by any number of models."""

    labels: np.ndarray
    wholes: list[np.ndarray]  # each file decoded whole
    crops: dict[str, list[np.ndarray | None]]  # per calibration: the largest face's crop, or None
    found: int  # samples where a face was found


def cut(detector: FaceDetector, calibrations: dict[str, Calibration], samples: list[Sample],
        size: tuple[int, int]) -> Cut:
    """Search every sample once and cut its largest face by each calibration (``size`` px crops)."""
    finders = {name: FaceFinder(detector, calibration, size) for name, calibration in calibrations.items()}
    wholes = [decode(data, size) for data, _ in samples]
    chosen: dict[str, list[np.ndarray | None]] = {name: [] for name in finders}
    found = 0
    locator = FaceFinder(detector, next(iter(calibrations.values())), size)
    for (data, _), whole in zip(samples, wholes, strict=True):
        photo, faces = locator.locate(data)
        found += bool(faces)
        for name, finder in finders.items():
            crops = finder.crops(photo, faces, lambda whole=whole: whole)
            chosen[name].append(crops[0].pixels if crops else None)
    return Cut(np.array([label for _, label in samples]), wholes, chosen, found)


def classify(classifier: Classifier, done: Cut) -> dict[str, Any]:
    """Accuracy of ``whole`` and of every calibration's crops."""
    report: dict[str, Any] = {"samples": len(done.labels), "with_a_face": done.found,
                              "whole": accuracy(classifier, list(done.wholes), done.labels)}
    report.update({name: accuracy(classifier, crops, done.labels) for name, crops in done.crops.items()})
    return report


def score(classifier: Classifier, detector: FaceDetector, calibrations: dict[str, Calibration],
          samples: list[Sample]) -> dict[str, Any]:
    """Accuracy of ``whole`` and of every variant on ``samples`` (detection shared by all variants)."""
    return classify(classifier, cut(detector, calibrations, samples, classifier.size))


def accuracy(classifier: Classifier, crops: list[np.ndarray | None], labels: np.ndarray) -> float:
    """Share of right answers, rounded to 4 places; a None (no face found) is a wrong answer."""
    found = [i for i, crop in enumerate(crops) if crop is not None]
    if not found:
        return 0.0
    top = classifier.predict(np.stack([crops[i] for i in found])).argmax(1)
    return round(float((top == labels[found]).sum() / len(labels)), 4)
