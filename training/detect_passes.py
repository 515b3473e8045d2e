"""Measure each BlazeFace pass alone: the evidence behind how ``worker.vision.detect`` combines them.

Usage::

    python -m training.detect_passes --data ../shared/data/fer2013 --faces ../shared/data/faces
                                     [--fer-faces 600] [--report REPORT.json]

A pass is one model on the whole photo at one zoom (the photo fills 1/zoom of the model's input;
zoom 2: the middle half). For each pass it prints:

- on FER2013 validation faces served as 320x320 JPEGs (faces that fill the frame), the share
  with a face of at least 40 % of the image at the model's own score threshold;
- on the hand-counted photos of ``--faces`` with a certain count, the faces found (capped at the
  count) and, in the photos without a person, the false faces and the best false score.

Then the same for the detector as a worker runs it (``FaceFinder.locate``: a JPEG preview for the
close-up pass, the full photo for the wide pass).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from training import detect_eval, framing_eval
from training.data import load_split
from worker.settings import get_settings
from worker.vision.boxes import weighted_nms
from worker.vision.detect import FaceDetector, centred
from worker.vision.faces import FaceFinder
from worker.vision.images import load_photo

PASSES = (("short_range", 1.0), ("short_range", 1.5), ("short_range", 2.0),
          ("full_range", 1.0), ("full_range", 1.25), ("full_range", 1.5), ("full_range", 2.0))
FILLS = 0.4  # a face at least this share of the image's side counts as found in a face crop


Found = list[tuple[float, float]]  # (score, box width as a share of the image's long side) per face


def run_pass(detector: FaceDetector, name: str, zoom: float) -> Callable[[bytes], Found]:
    net = detector.short_range if name == "short_range" else detector.full_range

    def detect(data: bytes) -> Found:
        image = load_photo(data).image
        found = weighted_nms(net.run(image, centred(image.width, image.height, zoom)))
        long_side = max(image.size)
        return [(float(score), float(box[2] - box[0]) / long_side)
                for score, box in zip(found.scores, found.boxes, strict=True)]

    return detect


def shipped(finder: FaceFinder) -> Callable[[bytes], Found]:
    def detect(data: bytes) -> Found:
        photo, faces = finder.locate(data)
        return [(face.score, face.box[2] / max(photo.image.size)) for face in faces]

    return detect


def measure(detect: Callable[[bytes], Found], crops: list[bytes],
            photos: list[tuple[bytes, dict[str, Any]]]) -> dict[str, Any]:
    filled = sum(any(width >= FILLS for _, width in detect(data)) for data in crops)
    found = total = false_faces = 0
    best_false = 0.0
    for data, row in photos:
        if not row["certain"]:
            continue
        faces = detect(data)
        total += row["count"]
        found += min(len(faces), row["count"])
        if row["count"] == 0:
            false_faces += len(faces)
            best_false = max([best_false, *(score for score, _ in faces)])
    return {"fer_crops_found": round(filled / max(1, len(crops)), 4), "photo_faces_found": f"{found}/{total}",
            "false_faces_in_photos_without_a_person": false_faces, "best_false_score": round(best_false, 2)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with val.npz")
    parser.add_argument("--faces", type=Path, required=True, help="hand-counted photos (photos.csv)")
    parser.add_argument("--fer-faces", type=int, default=600)
    parser.add_argument("--report", type=Path)
    args = parser.parse_args(argv)
    val = load_split(args.data, "val")
    picks = np.random.default_rng(0).choice(len(val), min(args.fer_faces, len(val)), replace=False)
    crops = [data for data, _ in framing_eval.served_faces(val.x[picks], val.y[picks])]
    photos = [((args.faces / row["file"]).read_bytes(), row) for row in detect_eval.counted(args.faces)]
    finder = FaceFinder.load(get_settings().face_detector, (48, 48))
    report = {f"{name} zoom {zoom}": measure(run_pass(finder.detector, name, zoom), crops, photos)
              for name, zoom in PASSES}
    report["shipped: close-up pass, else wide pass (+ tiles)"] = measure(shipped(finder), crops, photos)
    print(f"{'pass':48} {'FER crops':>9} {'faces':>8} {'false':>5} {'best false':>10}")
    for name, row in report.items():
        print(f"{name:48} {row['fer_crops_found']:>9.1%} {row['photo_faces_found']:>8} "
              f"{row['false_faces_in_photos_without_a_person']:>5} {row['best_false_score']:>10.2f}")
    if args.report:
        args.report.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
