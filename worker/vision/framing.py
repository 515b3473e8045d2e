"""Frame a detected face as FER2013 frames its faces, and cut it out at the classifier's size.

FER2013's 48x48 faces show roughly the whole face, eyebrows to chin, centred. A detector box is
not that frame: it is tighter and sits lower. ``Framing`` holds the measured relation, calibrated
by ``python -m training.framing`` (run BlazeFace on FER2013 training faces, measure where its box
lies in the 48x48 frame, invert) and stored per detector model in ``models/face_detection.json``:

- the frame's side is ``scale`` times the box size (the mean of its width and height);
- its centre is the box centre plus ``(offset_x, offset_y)`` box widths, measured along the
  face's own axes;
- with ``rotate``, the frame turns with the line through the eyes, so that the face comes out
  upright (FER2013's faces are upright give or take about 13 degrees).

``cut`` takes that square from the decoded photo, not from the detector's small input: the face
region is converted to grayscale and resampled once to the output (Lanczos, filtered over each
output pixel's footprint). Outside the photo is filled with its edge pixels, so a face at the
border is not framed in black.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from worker.vision.boxes import LEFT_EYE, RIGHT_EYE
from worker.vision.detect import Face

_AFFINE_SAMPLING = (Image.Resampling.NEAREST, Image.Resampling.BILINEAR, Image.Resampling.BICUBIC)


@dataclass(frozen=True)
class Frame:
    """A square in photo pixels: centre, side, and angle in degrees (counter-clockwise on screen)."""

    cx: float
    cy: float
    side: float
    angle: float = 0.0


@dataclass(frozen=True)
class Framing:
    scale: float
    offset_x: float
    offset_y: float
    rotate: bool

    def frame(self, face: Face) -> Frame:
        x, y, width, height = face.box
        size = (width + height) / 2
        angle = eye_angle(face.keypoints) if self.rotate else 0.0
        cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        dx, dy = self.offset_x * size, self.offset_y * size
        # The face's axes turn with ``angle``: rotate the offset the same way (y points down).
        return Frame(x + width / 2 + dx * cos + dy * sin, y + height / 2 - dx * sin + dy * cos,
                     self.scale * size, angle)


@dataclass(frozen=True)
class Calibration:
    """Framing per detector model, when a frame counts as the whole image, and how to resample.

    ``whole_iou``: when the frame overlaps the photo itself by at least this IoU, the photo is
    already a face crop and is used whole (resized, like the ``"whole"`` mode): re-cutting it
    would only add the detector's jitter to a framing that is already right. ``resample`` and
    ``affine`` and ``reduce`` are ``cut``'s options.
    """

    framings: dict[str, Framing]
    whole_iou: float
    resample: Image.Resampling = Image.Resampling.LANCZOS
    affine: bool = False
    reduce: bool = True

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        framing = data["framing"]
        return cls({name: Framing(**params) for name, params in framing["models"].items()},
                   float(framing["whole_iou"]), Image.Resampling[framing.get("resample", "lanczos").upper()],
                   bool(framing.get("affine", False)), bool(framing.get("reduce", True)))

    @classmethod
    def load(cls, path: Path) -> Calibration:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def frame(self, face: Face) -> Frame:
        return self.framings[face.model].frame(face)

    def cut(self, image: Image.Image, frame: Frame, size: tuple[int, int]) -> np.ndarray:
        return cut(image, frame, size, self.resample, self.affine, self.reduce)

    def is_whole(self, frame: Frame, width: int, height: int) -> bool:
        """True when ``frame`` is (nearly) the whole ``width`` x ``height`` photo."""
        half = frame.side / 2
        inter_w = max(0.0, min(frame.cx + half, width) - max(frame.cx - half, 0))
        inter_h = max(0.0, min(frame.cy + half, height) - max(frame.cy - half, 0))
        inter = inter_w * inter_h
        return inter / (frame.side**2 + width * height - inter) >= self.whole_iou


def eye_angle(keypoints: np.ndarray) -> float:
    """Degrees the eye line is turned counter-clockwise (on screen) from horizontal."""
    (rx, ry), (lx, ly) = keypoints[RIGHT_EYE], keypoints[LEFT_EYE]
    return math.degrees(math.atan2(ry - ly, lx - rx))


def cut(image: Image.Image, frame: Frame, size: tuple[int, int] = (48, 48),
        resample: Image.Resampling = Image.Resampling.LANCZOS, affine: bool = False, reduce: bool = True) -> np.ndarray:
    """The ``frame`` of ``image`` (any mode) as a uint8 grayscale array of shape (size[1], size[0]).

    An upright frame is resampled once with ``resample`` by Pillow's resize, which filters over
    each output pixel's whole footprint: no aliasing, however much the face shrinks. A turned
    frame (or ``affine``) is sampled by an affine transform, which does not filter; with
    ``reduce`` it is first box-reduced by the largest whole factor that keeps it at least the
    output's size, and then sampled with ``resample`` (bicubic for filters the transform lacks).
    """
    width, height = size
    turn = math.radians(frame.angle)
    half = frame.side / 2 * (abs(math.cos(turn)) + abs(math.sin(turn)))
    left, top = math.floor(frame.cx - half), math.floor(frame.cy - half)
    right, bottom = math.ceil(frame.cx + half), math.ceil(frame.cy + half)
    region = _region(image, left, top, right, bottom)
    if frame.angle == 0 and not affine:
        box = (frame.cx - half - left, frame.cy - half - top, frame.cx + half - left, frame.cy + half - top)
        return np.asarray(region.resize(size, resample, box=box), dtype=np.uint8)
    factor = max(1, int(frame.side / max(width, height))) if reduce else 1
    if factor > 1:
        region = region.reduce(factor)
    # Output pixel (u, v) samples the region at centre + R(angle) (u - w/2, v - h/2) * side / w.
    step = frame.side / width / factor
    cos, sin = math.cos(turn), math.sin(turn)
    cx, cy = (frame.cx - left) / factor, (frame.cy - top) / factor
    a, b = step * cos, step * sin
    d, e = -step * sin, step * cos
    c = cx - a * width / 2 - b * height / 2
    f = cy - d * width / 2 - e * height / 2
    sampling = resample if resample in _AFFINE_SAMPLING else Image.Resampling.BICUBIC
    out = region.transform(size, Image.Transform.AFFINE, (a, b, c, d, e, f), resample=sampling)
    return np.asarray(out, dtype=np.uint8)


def _region(image: Image.Image, left: int, top: int, right: int, bottom: int) -> Image.Image:
    """``image``'s [left, right) x [top, bottom) in grayscale, edge pixels repeated outside it."""
    inside = (max(left, 0), max(top, 0), min(right, image.width), min(bottom, image.height))
    if inside[0] >= inside[2] or inside[1] >= inside[3]:
        return Image.new("L", (right - left, bottom - top), 0)
    gray = image.crop(inside).convert("L")
    if inside == (left, top, right, bottom):
        return gray
    pad = ((inside[1] - top, bottom - inside[3]), (inside[0] - left, right - inside[2]))
    return Image.fromarray(np.pad(np.asarray(gray), pad, mode="edge"))
