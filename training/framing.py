"""Calibrate how a detected face is framed for the classifier, measure it, write face_detection.json.

Usage::

    python -m training.framing --data ../shared/data/fer2013 [--out models/face_detection.json]
                               [--faces 3000] [--rotate] [--whole-iou 0.5] [--margin 1.0] [--photos DIR ...]

1. **Calibrate** on FER2013 training faces: each face, upscaled to 192 px, is shown to each
   BlazeFace model as the detector shows it a photo: the short-range model sees the face alone,
   zoomed out as in the close-up pass; the full-range model sees it in an edge-padded canvas four
   times larger, as in the wide pass. Where the box lies in the 48x48 frame, inverted and
   averaged (median), is that model's ``Framing``: frame side = ``scale`` x box size, frame
   centre = box centre + ``offset`` box sizes (along the eye line with ``--rotate``).
2. **Measure** the choices (rotation, margin, resampling, ``whole_iou``) through the worker's own
   code, on FER2013 validation faces served as 320x320 JPEGs and, with ``--photos``, on real
   photos whose ``photos.csv`` gives an expression (e.g. ../shared/data/photos): see
   ``training.framing_eval``.
3. **Write** the chosen calibration (``--rotate``, ``--whole-iou``; ``--margin`` multiplies each
   model's frame side, chosen on posed photos with ``training.posed``), the models' provenance, every
   measurement, and how far the calibrated frames still fall from FER2013's own (``spread``:
   what augmentation should teach the classifier) to ``--out``. Nothing here needs TensorFlow.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from training import framing_eval
from training.data import load_split
from worker.settings import MODELS_DIR, get_settings
from worker.vision.boxes import LEFT_EYE, RIGHT_EYE, weighted_nms
from worker.vision.classifier import load_classifier
from worker.vision.detect import FULL_RANGE, SHORT_RANGE, ZOOM_OUT, DetectorModel, FaceDetector, centred
from worker.vision.framing import Framing

UPSCALE = 192  # px: FER2013 faces are shown to the detector at this size
CANVAS = 4  # the full-range model sees the face in a canvas this many times its size
WHOLE_IOU_CHOICES = (0.4, 0.5, 0.6)
SOURCE = {
    "package": "mediapipe==0.10.14 (PyPI wheel, manylinux x86_64)",
    "path": "mediapipe/modules/face_detection/",
    "licence": "Apache-2.0",
    "paper": "BlazeFace: Sub-millisecond Neural Face Detection on Mobile GPUs (arXiv:1907.05047)",
}


def face_image(face: np.ndarray, size: int = UPSCALE) -> Image.Image:
    return Image.fromarray(face, "L").resize((size, size), Image.Resampling.BICUBIC)


def measure_box(detector: FaceDetector, model: DetectorModel, face: np.ndarray) -> np.ndarray | None:
    """The best box (x1, y1, x2, y2) and keypoints of ``face`` in its 48x48 frame's units, or None."""
    image = face_image(face)
    if model is SHORT_RANGE:
        found = detector.short_range.run(image, centred(UPSCALE, UPSCALE, ZOOM_OUT))
        origin = 0
    else:
        pad = UPSCALE * (CANVAS - 1) // 2
        image = Image.fromarray(np.pad(np.asarray(image), pad, mode="edge"))
        found = detector.full_range.run(image, centred(image.width, image.height))
        origin = pad
    found = weighted_nms(found)
    if not len(found):
        return None
    best = int(np.argmax(found.scores))
    units = 48 / UPSCALE
    return np.concatenate([(found.boxes[best] - origin) * units, ((found.keypoints[best] - origin) * units).ravel()])


def fit_framing(measured: np.ndarray, rotate: bool) -> Framing:
    """The median framing that maps measured boxes (N, 16) back onto the 48x48 frame."""
    boxes, points = measured[:, :4], measured[:, 4:].reshape(len(measured), -1, 2)
    size = ((boxes[:, 2] - boxes[:, 0]) + (boxes[:, 3] - boxes[:, 1])) / 2
    to_x, to_y = 24 - (boxes[:, 0] + boxes[:, 2]) / 2, 24 - (boxes[:, 1] + boxes[:, 3]) / 2
    angle = np.zeros(len(measured))
    if rotate:
        right, left = points[:, RIGHT_EYE], points[:, LEFT_EYE]
        angle = np.arctan2(right[:, 1] - left[:, 1], left[:, 0] - right[:, 0])
    # The image offset (to_x, to_y) along the face's axes (see Framing.frame).
    along_x = to_x * np.cos(angle) - to_y * np.sin(angle)
    along_y = to_x * np.sin(angle) + to_y * np.cos(angle)
    return Framing(float(np.median(48 / size)), float(np.median(along_x / size)), float(np.median(along_y / size)),
                   rotate)


def spread(measured: np.ndarray, framing: Framing) -> dict[str, float]:
    """How far the pipeline's frames (``framing`` applied to the measured boxes) fall from FER2013's
    own 48x48 frame: the spread of their scale (log), centre shift (share of the frame) and eye
    line, the distribution a classifier trained on FER2013 meets in the pipeline's crops."""
    boxes, points = measured[:, :4], measured[:, 4:].reshape(len(measured), -1, 2)
    size = ((boxes[:, 2] - boxes[:, 0]) + (boxes[:, 3] - boxes[:, 1])) / 2
    centre_x = (boxes[:, 0] + boxes[:, 2]) / 2 + framing.offset_x * size
    centre_y = (boxes[:, 1] + boxes[:, 3]) / 2 + framing.offset_y * size
    log_scale = np.log(framing.scale * size / 48)
    eyes = np.degrees(np.arctan2(points[:, RIGHT_EYE, 1] - points[:, LEFT_EYE, 1],
                                 points[:, LEFT_EYE, 0] - points[:, RIGHT_EYE, 0]))
    return {"log_scale_sd": round(float(log_scale.std()), 3),
            "scale_p10_p90": np.exp(np.percentile(log_scale, [10, 90])).round(3).tolist(),
            "shift_x_sd": round(float(((centre_x - 24) / 48).std()), 3),
            "shift_y_sd": round(float(((centre_y - 24) / 48).std()), 3),
            "eye_line_degrees_sd": round(float(eyes.std()), 1)}


def calibrate(detector: FaceDetector, faces: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    measured, stats = {}, {}
    for model in (SHORT_RANGE, FULL_RANGE):
        rows = [row for face in faces if (row := measure_box(detector, model, face)) is not None]
        measured[model.name] = np.array(rows)
        widths = measured[model.name][:, 2] - measured[model.name][:, 0]
        stats[model.name] = {"faces": len(faces), "found": len(rows), "found_rate": round(len(rows) / len(faces), 4),
                             "box_width_quartiles_px_of_48": np.percentile(widths, [25, 50, 75]).round(2).tolist()}
    return measured, stats


def provenance(models_dir: Path) -> dict[str, Any]:
    out = {}
    for model in (SHORT_RANGE, FULL_RANGE):
        blob = (models_dir / model.file).read_bytes()
        out[model.name] = {"file": model.file, "bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest(),
                           "input": [model.size, model.size, 3], "score_threshold": model.threshold, **SOURCE}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with train.npz and val.npz")
    parser.add_argument("--out", type=Path, default=MODELS_DIR / "face_detection.json")
    parser.add_argument("--faces", type=int, default=3000, help="training faces to calibrate on")
    parser.add_argument("--rotate", action="store_true", help="turn frames with the eye line")
    parser.add_argument("--whole-iou", type=float, default=0.5, help="IoU with the photo above which it is used whole")
    parser.add_argument("--margin", type=float, default=1.0,
                        help="the written frame side is the calibrated one times this (<1: tighter)")
    parser.add_argument("--photos", type=Path, nargs="*", default=[], help="folders with a photos.csv of expressions")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    models_dir = args.out.parent
    detector = FaceDetector(models_dir)
    train = load_split(args.data, "train")
    picks = np.random.default_rng(args.seed).choice(len(train), min(args.faces, len(train)), replace=False)
    measured, stats = calibrate(detector, train.x[np.sort(picks)])
    framings = {rotate: {name: fit_framing(rows, rotate) for name, rows in measured.items()}
                for rotate in (False, True)}

    classifier = load_classifier(get_settings())
    choices = framing_eval.variants(framings, WHOLE_IOU_CHOICES)
    val = load_split(args.data, "val")
    sets = {"val_served_320px": framing_eval.served_faces(val.x, val.y)}
    if args.photos:
        sets["labelled_photos"] = framing_eval.labelled_photos(args.photos)
        sets["labelled_photos_small_faces"] = framing_eval.small_faces(detector, sets["labelled_photos"])
    measurements = {name: framing_eval.score(classifier, detector, choices, samples)
                    for name, samples in sets.items()}

    calibrated = framings[args.rotate]
    chosen = {name: dataclasses.replace(framing, scale=framing.scale * args.margin)
              for name, framing in calibrated.items()}
    command = " ".join(["python -m training.framing", *(sys.argv[1:] if argv is None else argv)])
    document = {
        "name": "face_detection",
        "models": provenance(models_dir),
        "framing": {"whole_iou": args.whole_iou, "resample": "lanczos", "affine": False, "reduce": True,
                    "margin": args.margin, "models": {name: vars(framing) for name, framing in chosen.items()}},
        "calibration": {"command": command, "train_faces": stats, "upscale_px": UPSCALE,
                        "crop_spread": {name: spread(rows, calibrated[name]) for name, rows in measured.items()},
                        "full_range_canvas": CANVAS, "measurements": measurements},
    }
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps(document["framing"], indent=2))
    print(json.dumps(measurements, indent=2))


if __name__ == "__main__":
    main()
