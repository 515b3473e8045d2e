"""Score a trained model (.keras, or float32 / full-int8 .tflite) on one labelled FER2013 file.

Usage::

    python -m training.evaluate MODEL --data FILE [--usage {Training,PublicTest,PrivateTest}]
                                [--report REPORT.json] [--confusion CONFUSION.png] [--threads N]

``FILE`` is an npz archive (``x``, ``y``) or a Kaggle CSV (fer2013.csv or icml_face_data.csv);
a CSV is scored on all its rows unless ``--usage`` keeps one split, so a held-out split is scored
with the same command. Prints accuracy, macro-F1 and per-class precision/recall/F1/support in
label order, without and with horizontal-flip test-time augmentation (the mean of the
probabilities of each face and its mirror), and the inference time per face. ``--report`` writes
all of it as JSON; ``--confusion`` draws both row-normalised confusion matrices, with counts, to a
PNG. Nothing is written unless asked for.

Macro-F1 averages the classes that occur in the labels or the predictions (as scikit-learn does).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from training.data import Split, load_csv, load_file  # noqa: E402
from training.labels import LABELS, NUM_CLASSES  # noqa: E402

USAGE_CHOICES = ("Training", "PublicTest", "PrivateTest")
VARIANTS = {"plain": "no TTA", "flip_tta": "flip TTA"}
SUMMARY_ROWS = (("accuracy", "accuracy", ".4f"), ("macro_f1", "macro-F1", ".4f"), ("ms_per_face", "ms/face", ".3f"))


def confusion_matrix(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Counts (7, 7): row = true label, column = predicted label."""
    return np.bincount(y * NUM_CLASSES + pred, minlength=NUM_CLASSES**2).reshape(NUM_CLASSES, NUM_CLASSES)


def metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix."""
    cm = confusion_matrix(np.asarray(y, dtype=np.int64), np.asarray(pred, dtype=np.int64))
    hits, support, predicted = np.diag(cm), cm.sum(1), cm.sum(0)
    precision = np.divide(hits, predicted, out=np.zeros(NUM_CLASSES), where=predicted > 0)
    recall = np.divide(hits, support, out=np.zeros(NUM_CLASSES), where=support > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros(NUM_CLASSES), where=total > 0)
    present = (support > 0) | (predicted > 0)
    return {
        "accuracy": float(hits.sum() / max(cm.sum(), 1)),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(LABELS, precision, recall, f1, support, strict=True)
        },
        "confusion": cm.tolist(),
    }


def evaluate(predict: Callable[[np.ndarray], np.ndarray], data: Split) -> dict[str, dict[str, Any]]:
    """Metrics and ms per face without ("plain") and with horizontal-flip averaging ("flip_tta")."""
    predict(data.x[:64])  # warm-up: graph tracing, tensor allocation
    started = time.perf_counter()
    probs = predict(data.x)
    plain_s = time.perf_counter() - started
    mirrored = np.ascontiguousarray(data.x[:, :, ::-1])
    started = time.perf_counter()
    probs_flip = predict(mirrored)
    flip_s = time.perf_counter() - started
    n = max(len(data), 1)
    return {
        "plain": {**metrics(data.y, probs.argmax(1)), "ms_per_face": 1000 * plain_s / n},
        "flip_tta": {**metrics(data.y, (probs + probs_flip).argmax(1)), "ms_per_face": 1000 * (plain_s + flip_s) / n},
    }


def format_table(results: dict[str, dict[str, Any]]) -> str:
    plain, flip = results["plain"], results["flip_tta"]
    group = " precision recall     F1"
    lines = [f"{'':10}{'no TTA':^24}  {'flip TTA':^24}".rstrip(), f"{'class':10}{group}  {group}   support"]
    for label in LABELS:
        a, b = plain["per_class"][label], flip["per_class"][label]
        cells = [f"{m[k]:>{w}.3f}" for m in (a, b) for k, w in (("precision", 10), ("recall", 7), ("f1", 7))]
        lines.append(f"{label:10}{''.join(cells[:3])}  {''.join(cells[3:])}{a['support']:>10d}")
    for key, name, fmt in SUMMARY_ROWS:
        lines.append(f"{name:10}{plain[key]:>24{fmt}}  {flip[key]:>24{fmt}}")
    return "\n".join(lines)


def plot_confusion(results: dict[str, dict[str, Any]], path: Path, title: str) -> None:
    """Row-normalised confusion matrices (colour and fraction) with counts, side by side."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(VARIANTS))
    for ax, (key, name) in zip(axes, VARIANTS.items(), strict=True):
        cm = np.array(results[key]["confusion"])
        rows = cm.sum(1, keepdims=True)
        norm = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
        image = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
        for i, j in np.ndindex(cm.shape):
            colour = "white" if norm[i, j] > 0.55 else "black"
            ax.text(j, i, f"{norm[i, j]:.2f}\n({cm[i, j]})", ha="center", va="center", fontsize=8, color=colour)
        ax.set_xticks(range(NUM_CLASSES), LABELS, rotation=45, ha="right")
        ax.set_yticks(range(NUM_CLASSES), [f"{label} ({n})" for label, n in zip(LABELS, rows[:, 0], strict=True)])
        ax.set_xlabel("predicted label")
        ax.set_ylabel("true label (support)")
        ax.set_title(f"{name}: accuracy {results[key]['accuracy']:.3f}, macro-F1 {results[key]['macro_f1']:.3f}")
    fig.colorbar(image, ax=axes, shrink=0.7, label="fraction of the true class")
    fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def load_data(path: Path, usage: str | None) -> Split:
    if path.is_dir():
        raise ValueError(f"{path} is a directory; pass one file, e.g. {path / 'val.npz'}")
    if usage and path.suffix == ".npz":
        raise ValueError("--usage applies to Kaggle CSV files only; an npz file holds one split")
    return load_csv(path, usage) if usage else load_file(path)


def model_info(path: Path) -> dict[str, Any]:
    blob = path.read_bytes()
    info: dict[str, Any] = {"path": str(path), "format": path.suffix.lstrip("."), "bytes": len(blob)}
    info["sha256"] = hashlib.sha256(blob).hexdigest()
    if path.suffix == ".tflite":
        from ai_edge_litert.interpreter import Interpreter

        info["input_dtype"] = np.dtype(Interpreter(model_content=blob).get_input_details()[0]["dtype"]).name
    return info


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help=".keras or .tflite file")
    parser.add_argument("--data", type=Path, required=True, help="labelled npz file or Kaggle CSV")
    parser.add_argument("--usage", choices=USAGE_CHOICES, help="CSV only: score only rows of this Usage")
    parser.add_argument("--report", type=Path, help="write the results as JSON here")
    parser.add_argument("--confusion", type=Path, help="write the confusion-matrix PNG here")
    parser.add_argument("--threads", type=int, default=2, help="LiteRT threads for .tflite models (default 2)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    if args.model.suffix not in (".keras", ".tflite"):
        parser.error(f"model must be a .keras or .tflite file, got {args.model}")
    if not args.model.is_file():
        parser.error(f"no such model file: {args.model}")
    try:
        data = load_data(args.data, args.usage)
    except (OSError, ValueError) as err:
        parser.error(str(err))
    if not len(data):
        parser.error(f"{args.data}: no images")

    from training.predict import load_predictor  # imports TensorFlow: after the arguments are checked

    model = model_info(args.model)
    results = evaluate(load_predictor(args.model, num_threads=args.threads), data)
    where = f"{args.data}" + (f" (Usage={args.usage})" if args.usage else "")
    kind = model.get("input_dtype", "keras")
    print(f"model {args.model}" + (f" ({kind}, LiteRT threads: {args.threads})" if kind != "keras" else ""))
    print(f"data  {where}: {len(data)} images\n")
    print(format_table(results))
    report = {
        "model": model,
        "data": {
            "path": str(args.data),
            "usage": args.usage,
            "images": len(data),
            "sha256": data.sha256(),
            "class_counts": np.bincount(data.y, minlength=NUM_CLASSES).tolist(),
        },
        "labels": list(LABELS),
        "threads": args.threads if args.model.suffix == ".tflite" else None,
        **results,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nreport    -> {args.report}")
    if args.confusion:
        plot_confusion(results, args.confusion, f"{args.model.name} on {where}, {len(data)} faces")
        print(f"confusion -> {args.confusion}")
    return report


if __name__ == "__main__":
    main()
