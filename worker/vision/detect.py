"""The face detector: MediaPipe's two BlazeFace models on LiteRT, run over windows of a photo.

``FaceDetector(models_dir).detect(image)`` returns every face found in an RGB ``PIL.Image`` as
``Face`` boxes in that image's pixels, largest first. Like the classifier, it is a per-process
resource: create it after the fork and use it from one thread at a time.

The two models see different faces, so each runs where it is good (numbers in models/README.md):

1. **Close-up pass.** The short-range model (128x128) on the whole photo shrunk into the middle
   half of its input. It finds a face that fills the frame (a portrait, a FER2013-style crop,
   even a 48x48 one) and sees no face in photos of cats, cups or owl-shaped candle holders, which
   it does when the photo fills its input. If it finds a face at least ``CLOSE_UP`` of the photo's
   long side, the photo is a close-up and this pass's faces are the answer: one model run.
2. **Wide pass.** Otherwise the full-range model (192x192) on the whole photo, for faces from
   about a twentieth of the photo's side (10 px of its input) up to a half, at two zooms a quarter apart (its score
   for one face moves with the face's size in its input: together they miss fewer faces, and
   found no false ones in the photos of things). The second zoom runs only when the first saw
   something near a face: a candidate scoring at least ``NEAR`` (0.3; the threshold is 0.6).
   Every face the second zoom alone found in the counted photos scored 0.41 or more at the first,
   and most photos without a face score under 0.3 there: they cost one full-range run, not two.
3. **Tiles.** When the photo is big and the wide pass shows small-face evidence (a face under
   ``SMALL_FACE`` of the long side, or a candidate that small scoring at least ``EVIDENCE``,
   0.2: the Solvay photo's 50 px faces score 0.33-0.41 at the first zoom), the full-range model
   also runs on overlapping square tiles, so that a face of 50 px in a 2,048 px group photo is
   seen at 19 px instead of 5. A big photo with no such evidence (a landscape, a product shot) is
   not tiled: tiles were most of what a faceless photo cost (12 runs for 1024x768). Detections
   that touch a tile's inner edge are dropped (the face lies whole in a neighbouring tile). The
   close-up pass's faces that overlap none of these are kept too.

``runs``, a list that the passes append to when given, names every model run a photo took
(``close_up``, ``wide``, ``tile``): the face finder reports them, and the metrics count them.

Candidates from every window are decoded and merged by ``worker.vision.boxes`` (weighted suppression).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from PIL import Image

from worker.vision.boxes import NMS_IOU, Candidates, anchor_centres, decode, iou, weighted_nms

Window = tuple[float, float, float]  # x0, y0, side: a square of the photo, possibly past its edges


@dataclass(frozen=True)
class DetectorModel:
    """One BlazeFace model file and the decoding options of its MediaPipe graph."""

    name: str
    file: str
    size: int
    strides: tuple[int, ...]
    interpolated: bool
    threshold: float


SHORT_RANGE = DetectorModel("short_range", "face_detection_short_range.tflite", 128, (8, 16, 16, 16), True, 0.5)
FULL_RANGE = DetectorModel("full_range", "face_detection_full_range_sparse.tflite", 192, (4,), False, 0.6)

ZOOM_OUT = 2.0  # the close-up pass sees the photo in a window this many times its long side
CLOSE_UP = 0.3  # a face this fraction of the photo's long side makes it a close-up
WIDE_ZOOMS = (1.0, 1.25)  # the wide pass runs the full-range model on the whole photo at these zooms
TILE_ABOVE = 720  # photos with a longer side than this may be tiled
TILE_SPLIT = 4  # a tile is the long side / TILE_SPLIT, within TILE_SIDE px
TILE_SIDE = (384, 768)
TILE_OVERLAP = 0.25  # of the tile side: a face smaller than this lies whole in some tile
SMALL_FACE = 0.075  # a face this small (1.5x what the whole pass can see) hints at smaller ones
NEAR = 0.3  # a first-zoom candidate scoring this much (under the 0.6 threshold) earns the second zoom
EVIDENCE = 0.2  # a small candidate scoring this much at the first zoom is evidence for tiles
EDGE = 2.0  # px: a tile detection this close to an inner tile edge is a cut face


@dataclass(frozen=True)
class Face:
    """A detected face: ``box`` as x, y, width, height in image pixels; keypoints (6, 2) as x, y;
    ``model`` names the DetectorModel that drew the box (framing is calibrated per model)."""

    box: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray
    model: str

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]


class BlazeFace:
    """One BlazeFace interpreter and its anchors."""

    def __init__(self, spec: DetectorModel, models_dir: Path, num_threads: int) -> None:
        self.spec = spec
        self._interpreter = Interpreter(model_path=str(models_dir / spec.file), num_threads=num_threads)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        regressors, scores = self._interpreter.get_output_details()
        self._regressors, self._scores = regressors["index"], scores["index"]
        self._anchors = anchor_centres(spec.size, spec.strides, spec.interpolated)

    def run(self, image: Image.Image, window: Window, threshold: float | None = None) -> Candidates:
        """Candidates in ``window`` of ``image``, in image pixels (outside the image is black),
        scoring at least ``threshold`` (the model's own by default)."""
        x0, y0, side = window
        size = self.spec.size
        scale = size / side
        # Only the part of the window inside the photo is resized; the rest of the input stays black.
        left, top = max(x0, 0.0), max(y0, 0.0)
        right, bottom = min(x0 + side, image.width), min(y0 + side, image.height)
        into_x, into_y = round((left - x0) * scale), round((top - y0) * scale)
        width = min(max(1, round((right - left) * scale)), size - into_x)
        height = min(max(1, round((bottom - top) * scale)), size - into_y)
        patch = image.resize((width, height), Image.Resampling.BILINEAR, box=(left, top, right, bottom),
                             reducing_gap=2.0)
        if patch.mode != "RGB":
            patch = patch.convert("RGB")
        tensor = np.full((1, size, size, 3), -1.0, dtype=np.float32)  # black, in the model's [-1, 1]
        tensor[0, into_y : into_y + height, into_x : into_x + width] = np.asarray(patch, np.float32) * (2 / 255) - 1
        self._interpreter.set_tensor(self._input, tensor)
        self._interpreter.invoke()
        found = decode(self._interpreter.get_tensor(self._regressors)[0],
                       self._interpreter.get_tensor(self._scores)[0], self._anchors,
                       self.spec.threshold if threshold is None else threshold)
        return found.mapped(x0, y0, 1 / scale)


def centred(width: int, height: int, zoom: float = 1.0) -> Window:
    """The square window centred on the photo whose side is ``zoom`` times the long side."""
    side = max(width, height) * zoom
    return (width - side) / 2, (height - side) / 2, side


def tiles(width: int, height: int, side: float, overlap: float) -> list[Window]:
    """Square windows of ``side`` covering the photo, neighbours sharing at least ``overlap`` px."""

    def starts(length: int) -> Iterator[float]:
        if length <= side:
            yield (length - side) / 2
            return
        count = math.ceil((length - side) / (side - overlap)) + 1
        for i in range(count):
            yield i * (length - side) / (count - 1)

    return [(x, y, side) for y in starts(height) for x in starts(width)]


def _inner_edge_cut(found: Candidates, window: Window, width: int, height: int) -> np.ndarray:
    """True where a box touches an edge of ``window`` that lies inside the photo."""
    x0, y0, side = window
    boxes = found.boxes
    cut = np.zeros(len(found), dtype=bool)
    if x0 > 0:
        cut |= boxes[:, 0] < x0 + EDGE
    if y0 > 0:
        cut |= boxes[:, 1] < y0 + EDGE
    if x0 + side < width:
        cut |= boxes[:, 2] > x0 + side - EDGE
    if y0 + side < height:
        cut |= boxes[:, 3] > y0 + side - EDGE
    return cut


class FaceDetector:
    def __init__(self, models_dir: Path, num_threads: int = 1) -> None:
        self.short_range = BlazeFace(SHORT_RANGE, models_dir, num_threads)
        self.full_range = BlazeFace(FULL_RANGE, models_dir, num_threads)

    def detect(self, image: Image.Image, runs: list[str] | None = None) -> list[Face]:
        """Every face in an RGB (or L) image, largest first: the close-up pass, else the wide pass."""
        close = self.close_up(image, runs)
        if is_close_up(close, image.width, image.height):
            return faces_of(close, SHORT_RANGE)
        return self.wide(image, close, runs)

    def close_up(self, image: Image.Image, runs: list[str] | None = None) -> Candidates:
        """The close-up pass's faces: it needs little resolution (a preview of the photo will do)."""
        _note(runs, "close_up")
        return weighted_nms(self.short_range.run(image, centred(image.width, image.height, ZOOM_OUT)))

    def wide(self, image: Image.Image, close: Candidates, runs: list[str] | None = None) -> list[Face]:
        """The wide pass over ``image`` (and its tiles, if warranted), joined with the close-up pass's
        faces (``close``, in ``image``'s pixels) that it did not find itself; largest first."""
        view = self.look(image, runs)
        found = list(view.found)
        if view.wants_tiles(close, max(image.size)):
            found += self.tiles(image, runs)
        return merge(found, close)

    def look(self, image: Image.Image, runs: list[str] | None = None) -> WideView:
        """The wide pass's whole-photo runs: the first zoom, and the second if the first saw
        something near a face. ``image`` needs little detail: the model sees it at 154-192 px."""
        width, height = image.size
        _note(runs, "wide")
        first = self.full_range.run(image, centred(width, height, WIDE_ZOOMS[0]), threshold=EVIDENCE)
        strong = first.scores >= FULL_RANGE.threshold
        found, weak = [first.select(strong)], first.select(~strong)
        if len(first) and first.scores.max() >= NEAR:
            for zoom in WIDE_ZOOMS[1:]:
                _note(runs, "wide")
                found.append(self.full_range.run(image, centred(width, height, zoom)))
        return WideView(tuple(found), weak, max(width, height))

    def tiles(self, image: Image.Image, runs: list[str] | None = None) -> list[Candidates]:
        """The full-range model on overlapping square tiles of ``image`` (at full detail), less the
        detections cut by an inner tile edge."""
        width, height = image.size
        long_side = max(width, height)
        side = min(max(long_side / TILE_SPLIT, TILE_SIDE[0]), TILE_SIDE[1])
        found = []
        for window in tiles(width, height, side, side * TILE_OVERLAP):
            _note(runs, "tile")
            part = self.full_range.run(image, window)
            found.append(part.select(~_inner_edge_cut(part, window, width, height)))
        return found


@dataclass(frozen=True)
class WideView:
    """What the wide pass's whole-photo runs saw, in the pixels of the image they ran on (``side``
    px long): the faces of each run (``found``) and the candidates under the threshold (``weak``)."""

    found: tuple[Candidates, ...]
    weak: Candidates
    side: int

    @property
    def faces(self) -> bool:
        return any(len(part) for part in self.found)

    def wants_tiles(self, close: Candidates, photo_side: int) -> bool:
        """True when a photo ``photo_side`` px long (as decoded in full) has small-face evidence:
        a face, or a candidate scoring ``EVIDENCE``, under ``SMALL_FACE`` of its long side. ``close``:
        the close-up pass's faces in this view's pixels."""
        seen = Candidates.concat([close, weighted_nms(Candidates.concat(list(self.found))), self.weak])
        return photo_side > TILE_ABOVE and bool(len(seen)) and _widths(seen).min() < SMALL_FACE * self.side

    def scaled(self, scale: float) -> tuple[Candidates, ...]:
        """``found`` in the pixels of an image ``scale`` times as large (the photo decoded in full)."""
        return tuple(part.mapped(0, 0, scale) for part in self.found)


def merge(found: list[Candidates], close: Candidates) -> list[Face]:
    """The wide pass's faces (every run's, merged by suppression) and the close-up pass's faces that
    overlap none of them, all in one image's pixels; largest first."""
    wide = weighted_nms(Candidates.concat(found))
    return _largest_first([*faces_of(wide, FULL_RANGE), *faces_of(_apart(close, wide), SHORT_RANGE)])


def _note(runs: list[str] | None, name: str) -> None:
    if runs is not None:
        runs.append(name)


def is_close_up(close: Candidates, width: int, height: int) -> bool:
    """True when the close-up pass found a face of at least CLOSE_UP of the photo's long side."""
    return bool(len(close)) and _widths(close).max() >= CLOSE_UP * max(width, height)


def _apart(these: Candidates, others: Candidates) -> Candidates:
    """``these`` without the ones that overlap one of ``others`` (as suppression would merge them)."""
    if not len(these) or not len(others):
        return these
    keep = np.array([(iou(box, others.boxes) <= NMS_IOU).all() for box in these.boxes])
    return these.select(keep)


def _widths(found: Candidates) -> np.ndarray:
    return found.boxes[:, 2] - found.boxes[:, 0]


def _largest_first(faces: list[Face]) -> list[Face]:
    return sorted(faces, key=lambda face: -face.area)


def faces_of(found: Candidates, model: DetectorModel) -> list[Face]:
    """Candidates drawn by ``model`` as Faces, largest first."""
    return _largest_first([
        Face((float(x1), float(y1), float(x2 - x1), float(y2 - y1)), float(score), points, model.name)
        for (x1, y1, x2, y2), score, points in zip(found.boxes, found.scores, found.keypoints, strict=True)
    ])
