"""Score classifiers on sets of labelled photos as the workers answer them: per class, and how often neutral.

Usage::

    python -m training.posed NAME=MODEL.tflite[+MODEL.tflite] ... --sets build/devsets/cfee-dev ...
        [--data ../shared/data/fer2013 --adjust TAU ...] [--flip] [--margin F ...] [--whole-iou X ...]
        [--rotate] [--gray] [--tight F ...] [--served ../shared/data/fer2013] [--out build/posed]

A set is a folder with a ``photos.csv`` (``file``, ``expression``; ``training.devsets`` builds the
development sets, ``../shared/data/photos`` has the same form). Each photo is searched once with
the worker's own detector (``worker.vision.faces.FaceFinder``, the defaults of
``face_detection.json``); its largest face is framed and cut by each framing variant and
classified by each model. A photo without a face counts as wrong and is not counted as a
prediction.

Per model, framing and set: ``accuracy``, ``recall`` per class, ``mean_recall``, ``predicted``
(the share of each answer among the photos with a face; ``neutral`` is the lean this module
watches) and ``found``. Models: ``--adjust TAU`` and ``--flip`` add each logit-adjusted and with
test-time flip (``training.variants``). Framings: ``--margin F`` the shipped one with its frame
side times F, ``--whole-iou X`` each margin with that ``whole_iou``, ``--rotate`` the frame turned
upright by the eyes. Sets: ``--gray`` each set as greyscale JPEGs of at most 640 px (older lab
databases: monochrome cameras, smaller frames), as "<set> gray"; ``--tight F`` cut to F times the
face's box at 256 px grey (tightly cropped lab portraits), as "<set> tightF"; ``--served DATA``
FER2013 PublicTest served as 320x320 JPEGs, as "publictest 320px" (the face crops a framing must
still serve). Writes ``<out>/posed.json`` and prints a Markdown table. Nothing here needs TensorFlow.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from training import framing_eval
from training import variants as compared
from training.data import load_split
from training.labels import LABELS
from worker.settings import MODELS_DIR, get_settings
from worker.vision.detect import FaceDetector
from worker.vision.framing import Calibration
from worker.vision.images import load_photo

SHIPPED = "shipped"
GRAY_SIDE = 640
TIGHT_SIDE = 256


def tight(detector: FaceDetector, samples: list[framing_eval.Sample], factor: float) -> list[framing_eval.Sample]:
    """Each photo cut to a square ``factor`` times its largest face's box, as a 256 px greyscale
    JPEG: the look of tightly cropped lab portraits, which the pipeline may take for face crops."""
    out = []
    for photo, face, label in framing_eval.largest_faces(detector, samples):
        x, y, width, height = face.box
        half = factor * max(width, height) / 2
        cx, cy = x + width / 2, y + height / 2
        square = photo.convert("L").crop((round(cx - half), round(cy - half), round(cx + half), round(cy + half)))
        out.append((framing_eval.jpeg(square.resize((TIGHT_SIDE, TIGHT_SIDE), Image.Resampling.LANCZOS)), label))
    return out


def gray(samples: list[framing_eval.Sample]) -> list[framing_eval.Sample]:
    """Each photo as a grayscale JPEG (quality 90) whose long side is at most GRAY_SIDE."""
    out = []
    for data, label in samples:
        image = load_photo(data).image.convert("L")
        image.thumbnail((GRAY_SIDE, GRAY_SIDE), Image.Resampling.LANCZOS)
        out.append((framing_eval.jpeg(image), label))
    return out


def framings(margins: list[float], rotate: bool, whole_ious: list[float] = ()) -> dict[str, Calibration]:
    """The shipped framing, and the variants asked for: each margin, with each ``whole_iou`` too."""
    shipped = Calibration.load(get_settings().face_detector)
    found = {SHIPPED: shipped}
    for factor in margins:
        scaled = {name: dataclasses.replace(f, scale=f.scale * factor) for name, f in shipped.framings.items()}
        found[f"margin x{factor:g}"] = dataclasses.replace(shipped, framings=scaled)
        for iou in whole_ious:
            found[f"margin x{factor:g} whole_iou={iou:g}"] = dataclasses.replace(shipped, framings=scaled,
                                                                                  whole_iou=iou)
    if rotate:
        turned = {name: dataclasses.replace(f, rotate=True) for name, f in shipped.framings.items()}
        found["rotated"] = dataclasses.replace(shipped, framings=turned)
    return found


def score(classifier: Any, crops: list[np.ndarray | None], labels: np.ndarray) -> dict[str, Any]:
    """Accuracy (a photo without a face is wrong), recall per class, and the share of each answer."""
    found = [i for i, crop in enumerate(crops) if crop is not None]
    predicted = np.full(len(labels), -1)
    if found:
        predicted[found] = classifier.predict(np.stack([crops[i] for i in found])).argmax(1)
    recall = {label: round(float((predicted[labels == i] == i).mean()), 3)
              for i, label in enumerate(LABELS) if (labels == i).any()}
    answered = predicted[predicted >= 0]
    return {
        "photos": len(labels),
        "found": len(found),
        "accuracy": round(float((predicted == labels).mean()), 4),
        "mean_recall": round(float(np.mean(list(recall.values()))), 4),
        "recall": recall,
        "predicted": {label: round(float((answered == i).mean()), 3) if len(answered) else 0.0
                      for i, label in enumerate(LABELS)},
    }


def markdown(reports: dict[str, dict[str, dict[str, dict[str, Any]]]]) -> str:
    """One row per model and framing: per set accuracy, predicted neutral, worst recall."""
    sets = list(next(iter(next(iter(reports.values())).values())))
    head = ["model", "framing", *[f"{s}: right / neutral / worst class" for s in sets]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for model, by_framing in reports.items():
        for framing, by_set in by_framing.items():
            cells = [model, framing]
            for s in sets:
                r = by_set[s]
                worst = min(r["recall"], key=r["recall"].get)
                neutral, least = r["predicted"]["neutral"], r["recall"][worst]
                cells.append(f"{r['accuracy']:.1%} / {neutral:.0%} / {worst} {least:.0%}")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m training.posed", description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="NAME=MODEL.tflite[+MODEL.tflite...] (training.variants)")
    parser.add_argument("--sets", type=Path, nargs="+", required=True, help="folders with a photos.csv")
    parser.add_argument("--data", type=Path, help="FER2013 folder (for --adjust: the training targets' prior)")
    parser.add_argument("--adjust", type=float, action="append", default=[], metavar="TAU")
    parser.add_argument("--flip", action="store_true", help="also each model with test-time flip")
    parser.add_argument("--margin", type=float, action="append", default=[], metavar="FACTOR")
    parser.add_argument("--rotate", action="store_true")
    parser.add_argument("--gray", action="store_true", help="also score each set as 640 px grayscale JPEGs")
    parser.add_argument("--tight", type=float, action="append", default=[], metavar="FACTOR",
                        help="also each set cut to FACTOR x the face box, 256 px grey (training.posed.tight)")
    parser.add_argument("--whole-iou", type=float, action="append", default=[], metavar="IOU",
                        help="also each --margin with this whole_iou (the IoU above which a photo is used whole)")
    parser.add_argument("--served", type=Path, metavar="DATA", help="also PublicTest as 320 px JPEGs (DATA/val.npz)")
    parser.add_argument("--out", type=Path, default=Path("build/posed"))
    args = parser.parse_args(argv)
    missing = [str(s) for s in args.sets if not (s / "photos.csv").is_file()]
    if missing:
        raise SystemExit(f"no photos.csv in {', '.join(missing)}: build the sets with python -m training.devsets")
    detector = FaceDetector(MODELS_DIR)
    variants = framings(args.margin, args.rotate, args.whole_iou)
    models = {name: classifier for name, (classifier, _) in
              compared.expand(args.models, args.data, args.adjust, flip=args.flip).items()}
    size = next(iter(models.values())).size
    reports: dict[str, Any] = {name: {framing: {} for framing in variants} for name in models}
    looks: list[tuple[str, list[framing_eval.Sample]]] = []
    for folder in args.sets:
        samples = framing_eval.labelled_photos([folder])
        looks += [(folder.name, samples)] + ([(f"{folder.name} gray", gray(samples))] if args.gray else [])
        looks += [(f"{folder.name} tight{factor:g}", tight(detector, samples, factor)) for factor in args.tight]
    if args.served:
        val = load_split(args.served, "val")
        looks.append(("publictest 320px", framing_eval.served_faces(val.x, val.y)))
    for set_name, photos in looks:
        done = framing_eval.cut(detector, variants, photos, size)
        for name, classifier in models.items():
            for framing, crops in done.crops.items():
                reports[name][framing][set_name] = score(classifier, crops, done.labels)
        print(f"{set_name}: {len(done.labels)} photos, a face in {done.found}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "posed.json").write_text(json.dumps(reports, indent=1) + "\n")
    print(markdown(reports))
    return reports


if __name__ == "__main__":
    main()
