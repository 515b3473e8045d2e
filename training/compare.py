"""Compare classifier models on every truth we hold: FER2013's labels, the raters' votes, and photos.

Usage::

    python -m training.compare NAME=MODEL.tflite [NAME=MODEL.tflite ...] --data ../shared/data/fer2013
                               [--photos DIR ...] [--adjust TAU ...] [--lean TAU ...]
                               [--out build/compare]

Each model runs as the workers run it (LiteRT, ``worker.vision.classifier.Classifier``). For each one, on the
validation split (PublicTest):

- ``fer2013_accuracy`` and ``macro_f1`` against FER2013's labels, ``recall`` per class;
- ``plurality_agreement``: on the rows whose FER+ plurality is an emotion, the share predicted as
  (one of) it (``training.votes``), with a confusion matrix against the plurality (rows without a
  tie), every model's drawn side by side to ``<out>/plurality.png``;
- ``predicted``: how often each class is predicted (the neutral drift shows here);
- ``pipeline``: the same faces through the worker's faces pipeline, served as 320x320 JPEGs (the
  crop case) and placed in a photo (the pipeline must find and re-frame them), and, with
  ``--photos``, real photos with an expression in a ``photos.csv``: see ``training.framing_eval``;
- ``ms_per_face`` at batch ``SPEED_BATCH`` on one core (the fastest of ``SPEED_ROUNDS`` passes).

A model may be an ensemble (``NAME=A.tflite+B.tflite``). With ``--adjust TAU``, each model is
also scored with its answers logit-adjusted by ``TAU`` against the prior of its own training
targets (``training.adjust``), as "NAME tau=TAU"; with ``--lean TAU``, against that prior over
FER2013's label prior (only the votes' lean), as "NAME lean=TAU"; with ``--flip``, with test-time
flip, as "NAME flip" (``training.variants``).

Writes ``<out>/compare.json`` and prints a Markdown table. Nothing here needs TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from training import framing_eval, posed, variants
from training.calibration import ece, fit_temperature, reliability, scale
from training.data import Split, load_split
from training.evaluate import confusion_matrix, metrics
from training.labels import LABELS, NUM_CLASSES
from training.votes import Votes, load_votes, plurality_agreement
from worker.settings import MODELS_DIR
from worker.vision.classifier import Classifier
from worker.vision.detect import FaceDetector

VOTES = "ferplus_votes.npz"
SPEED_BATCH, SPEED_ROUNDS = 16, 3  # the cost floor: ms per face at batch 16, one core
CLASSIFIER_SIZE = (48, 48)  # px: every compared model takes FER2013's 48x48 faces


def speed(model: Path, metadata: Path, faces: np.ndarray) -> float:
    """Milliseconds per face at batch SPEED_BATCH on one thread: the fastest of SPEED_ROUNDS passes
    (another process on the machine only ever slows a pass down)."""
    classifier = Classifier(model, metadata, batch_size=SPEED_BATCH)
    classifier.predict(faces[:SPEED_BATCH])
    rounds = []
    for _ in range(SPEED_ROUNDS):
        started = time.perf_counter()
        classifier.predict(faces)
        rounds.append(time.perf_counter() - started)
    return 1000 * min(rounds) / len(faces)


def plot_pluralities(reports: dict[str, dict[str, Any]], path: Path, columns: int = 3) -> None:
    """Every model's confusion matrix against the raters' plurality, row-normalised, in one picture."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    named = {name: np.array(r["plurality_confusion"]) for name, r in reports.items() if "plurality_confusion" in r}
    rows = -(-len(named) // columns)
    fig = Figure(figsize=(4.4 * columns, 4.2 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    for ax, (name, confusion) in zip(axes, named.items(), strict=False):
        totals = confusion.sum(1, keepdims=True)
        norm = np.divide(confusion, totals, out=np.zeros(confusion.shape), where=totals > 0)
        ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
        for i, j in np.ndindex(confusion.shape):
            ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.55 else "black")
        ax.set_xticks(range(NUM_CLASSES), LABELS, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(NUM_CLASSES), [f"{label} ({n})" for label, n in zip(LABELS, totals[:, 0], strict=True)],
                      fontsize=8)
        ax.set_title(f"{name}: {reports[name]['plurality_agreement']:.1%}", fontsize=9)
    for ax in axes[len(named):]:
        ax.set_axis_off()
    fig.supxlabel("predicted")
    fig.supylabel("raters' plurality (rows without a tie)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def compare_one(classifier: Any, val: Split, votes: Votes | None, photo_sets: dict[str, framing_eval.Cut],
                posed_sets: dict[str, framing_eval.Cut] | None = None) -> dict[str, Any]:
    """Every truth for one classifier (``ms_per_face`` is the caller's: one timing per model file)."""
    probabilities = classifier.predict(val.x)
    predicted = probabilities.argmax(1)
    fer = metrics(val.y, predicted)
    report: dict[str, Any] = {
        "fer2013_accuracy": round(fer["accuracy"], 4),
        "macro_f1": round(fer["macro_f1"], 4),
        "recall": {label: round(fer["per_class"][label]["recall"], 3) for label in LABELS},
        "predicted": {label: round(float((predicted == i).mean()), 3) for i, label in enumerate(LABELS)},
    }
    if votes is not None:
        share, rows = plurality_agreement(predicted, votes)
        single = votes.plurality.sum(1) == 1
        truth = votes.plurality[single].argmax(1)
        confusion = confusion_matrix(truth, predicted[single])
        report["plurality_agreement"] = round(share, 4)
        report["plurality_rows"] = rows
        report["plurality_confusion"] = confusion.tolist()
        rated = votes.distribution.sum(1) > 0
        report["calibration"] = calibration_report(probabilities, val.y, votes.distribution, rated)
    report["posed"] = {name: posed.score(classifier, next(iter(done.crops.values())), done.labels)
                       for name, done in (posed_sets or {}).items()}
    report["pipeline"] = {set_name: framing_eval.classify(classifier, done) for set_name, done in photo_sets.items()}
    return report


def calibration_report(probabilities: np.ndarray, labels: np.ndarray, distribution: np.ndarray,
                       rated: np.ndarray) -> dict[str, Any]:
    """ECE against the raters (on the faces they rated) and the labels; the fitted temperature."""
    temperature = fit_temperature(probabilities[rated], distribution[rated])
    scaled = scale(probabilities, temperature)
    return {"ece_votes": round(ece(probabilities[rated], distribution[rated]), 4),
            "ece_labels": round(ece(probabilities, labels), 4),
            "temperature": temperature,
            "ece_votes_scaled": round(ece(scaled[rated], distribution[rated]), 4),
            "reliability_votes": reliability(probabilities[rated], distribution[rated])}


def markdown(reports: dict[str, dict[str, Any]]) -> str:
    sets = sorted({name for report in reports.values() for name in report["pipeline"]})
    posed_sets = list(dict.fromkeys(name for report in reports.values() for name in report.get("posed", {})))
    head = ["model", *[f"{name}: right / neutral / lowest recall" for name in posed_sets], "FER2013 labels",
            "plurality", "ECE (raters)", "macro-F1", "predicted neutral",
            *[f"{name} (detect / whole)" for name in sets], "ms/face"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in reports.items():
        cells = [name]
        for s in posed_sets:
            p = r["posed"][s]
            worst = min(p["recall"], key=p["recall"].get)
            cells.append(f"{p['accuracy']:.1%} / {p['predicted']['neutral']:.0%} / {worst} {p['recall'][worst]:.0%}")
        ece_votes = r.get("calibration", {}).get("ece_votes")
        cells += [f"{r['fer2013_accuracy']:.2%}", f"{r.get('plurality_agreement', float('nan')):.2%}",
                  "-" if ece_votes is None else f"{ece_votes:.3f}", f"{r['macro_f1']:.3f}",
                  f"{r['predicted']['neutral']:.1%}"]
        cells += [f"{r['pipeline'][s]['detect']:.1%} / {r['pipeline'][s]['whole']:.1%}" for s in sets]
        cells.append(f"{r['ms_per_face']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="NAME=MODEL.tflite[+MODEL.tflite...] (training.variants)")
    parser.add_argument("--data", type=Path, required=True, help="folder with val.npz (and ferplus_votes.npz)")
    parser.add_argument("--photos", type=Path, nargs="*", default=[])
    parser.add_argument("--no-served", action="store_true",
                        help="skip PublicTest served as photos (val_served_320px, val_in_a_photo): minutes saved")
    parser.add_argument("--posed", type=Path, nargs="*", default=[],
                        help="sets of posed photos with a photos.csv (training.devsets), scored per class")
    parser.add_argument("--margin", type=float, default=1.0,
                        help="the framing's frame side times this, for every photo set (training.posed)")
    parser.add_argument("--out", type=Path, default=Path("build/compare"))
    parser.add_argument("--adjust", type=float, action="append", default=[], metavar="TAU")
    parser.add_argument("--lean", type=float, action="append", default=[], metavar="TAU")
    parser.add_argument("--flip", action="store_true", help="also each model with test-time flip")
    args = parser.parse_args(argv)
    val = load_split(args.data, "val")
    votes = load_votes(args.data / VOTES, "val", len(val)) if (args.data / VOTES).is_file() else None
    detector = FaceDetector(MODELS_DIR)
    photo_sets = {} if args.no_served else {"val_served_320px": framing_eval.served_faces(val.x, val.y),
                                            "val_in_a_photo": framing_eval.in_photos(val.x, val.y)}
    if args.photos:
        photo_sets["labelled_photos"] = framing_eval.labelled_photos(args.photos)
        photo_sets["labelled_photos_small_faces"] = framing_eval.small_faces(detector, photo_sets["labelled_photos"])
    shipped = {"detect": posed.framings([args.margin], False)[f"margin x{args.margin:g}"]}
    cuts = {name: framing_eval.cut(detector, shipped, samples, CLASSIFIER_SIZE) for name, samples in photo_sets.items()}
    posed_cuts = {folder.name: framing_eval.cut(detector, shipped, framing_eval.labelled_photos([folder]),
                                                CLASSIFIER_SIZE) for folder in args.posed}
    reports = {}
    timed: dict[Path, float] = {}
    for label, (variant, files) in variants.expand(args.models, args.data, args.adjust, args.lean, args.flip).items():
        for model in files:
            if model not in timed:
                timed[model] = round(speed(model, model.parent / "emotion_classifier.json", val.x[:1024]), 3)
        ms_per_face = sum(timed[model] for model in files) * (2 if isinstance(variant, variants.Flipped) else 1)
        reports[label] = {"model": "+".join(map(str, files)), **compare_one(variant, val, votes, cuts, posed_cuts),
                          "ms_per_face": round(ms_per_face, 3)}
        print(f"{label}: {json.dumps({k: v for k, v in reports[label].items() if k != 'plurality_confusion'})}",
              flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compare.json").write_text(json.dumps(reports, indent=2) + "\n")
    plot_pluralities(reports, args.out / "plurality.png")
    print(markdown(reports))
    return reports


if __name__ == "__main__":
    main()
