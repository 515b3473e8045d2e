"""Train the classifier on FER2013 Training, select on PublicTest, and export to models/.

Usage::

    python -m training.train --data ../shared/data/fer2013 --out models/ [--epochs 50] [--seed 2]

The defaults are the first of the shipped model's two runs (``make train``; models/README.md);
``--arch sepnet --class-weights sqrt --dropout 0.4 --erasing 0.5 --epochs 60 --seed 1`` is the
first model's.

``--data`` is a directory with train.npz/val.npz, or a Kaggle CSV (fer2013.csv or
icml_face_data.csv, split by ``Usage``). Checkpoints and the epoch log go to ``--work-dir``
(default build/training); the best epoch on val is exported (see ``training.export``).
``--init models/emotion_classifier.keras`` starts from trained weights instead (a warm restart
with a fresh schedule).

**Resuming.** After every epoch the run's state (weights, optimizer, epoch; the running weight
average with ``--average-from``) is saved under ``--work-dir``. If a run is interrupted (a killed
session, a reboot), running the same command again resumes after its last finished epoch; if it
stopped after training but before its export (a ``fitted`` file marks that), the same command
averages and exports without training again. A run that exports removes that state, so the next
run in the same work dir starts afresh.
"""

from __future__ import annotations

import argparse
import csv
import os
import shlex
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from training.adjust import balanced_loss  # noqa: E402
from training.augment import dataset  # noqa: E402
from training.average import WeightAverage, choose_average  # noqa: E402
from training.data import clean_training_mask, load_split  # noqa: E402
from training.distill import teacher_targets  # noqa: E402
from training.export import export  # noqa: E402
from training.labels import NUM_CLASSES  # noqa: E402
from training.model import ARCHITECTURES, build_model  # noqa: E402
from training.votes import load_votes, vote_targets  # noqa: E402


def class_weights(y: np.ndarray) -> np.ndarray:
    """Square-root inverse-frequency weights, mean 1: lifts rare disgust without drowning it out."""
    counts = np.bincount(y, minlength=NUM_CLASSES).astype(np.float64)
    weights = np.sqrt(counts.sum() / np.maximum(counts, 1))
    return (weights / (weights * counts).sum() * counts.sum()).astype(np.float32)


def val_accuracies(history: Path) -> list[float]:
    """The val accuracy of each epoch logged in ``history.csv`` (empty when there is none)."""
    if not history.exists():
        return []
    with open(history, newline="") as handle:
        return [float(row["val_accuracy"]) for row in csv.DictReader(handle)]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("models"))
    parser.add_argument("--work-dir", type=Path, default=Path("build/training"))
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--patience", type=int, default=15, help="early-stopping patience in epochs")
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--arch", choices=sorted(ARCHITECTURES), default="sepnet-deep")
    parser.add_argument("--class-weights", choices=("sqrt", "none"), default="none",
                        help="sqrt: square-root inverse-frequency loss weights; none: plain loss")
    parser.add_argument("--dropout", type=float, default=0.3)
    parser.add_argument("--erasing", type=float, default=0.25, help="random-erasing probability")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N shuffled images (smoke runs)")
    parser.add_argument("--init", type=Path, default=None,
                        help="start from this trained .keras model instead of random weights (a warm restart)")
    parser.add_argument("--teacher", type=Path, action="append", default=[],
                        help="a trained .keras/.tflite model to distill from (repeatable: their mean)")
    parser.add_argument("--distill", type=float, default=0.5,
                        help="weight of the teachers' probabilities in the targets (with --teacher; with --votes as "
                             "well, of the two, half each)")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="softening of the teachers' probabilities (with --teacher)")
    parser.add_argument("--average-from", type=int, default=None, metavar="EPOCH",
                        help="average the weights of this epoch (1-based) to the last (SWA)")
    parser.add_argument("--votes", type=Path, default=None,
                        help="FER+ votes (ferplus_votes.npz): mix the raters' distribution into the targets")
    parser.add_argument("--vote-weight", type=float, default=0.5,
                        help="weight of the vote distribution in the targets (with --votes, without --teacher)")
    parser.add_argument("--min-emotion-share", type=float, default=0.5,
                        help="rows with fewer of their votes on an emotion keep their label (with --votes)")
    parser.add_argument("--zoom", type=float, default=0.1, help="random zoom range, as a share of the frame")
    parser.add_argument("--translation", type=float, default=0.1, help="random shift range, as a share")
    parser.add_argument("--gamma", type=float, default=0.0,
                        help="random gamma: x ** exp(U(-g, g)) per image (training.augment.photo_look)")
    parser.add_argument("--sharpen", type=float, default=0.0,
                        help="random unsharp-mask amount in U(-1, s): from a blur to a sharpening")
    parser.add_argument("--balance", type=float, default=0.0, metavar="TAU",
                        help="logit-adjusted loss against the targets' prior (training.adjust.balanced_loss)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    started = time.monotonic()

    raw_train, val = load_split(args.data, "train"), load_split(args.data, "val")
    keep, cleaned = clean_training_mask(raw_train, val)
    rows = np.flatnonzero(keep)  # train.npz rows used, in order
    if args.limit:
        rows = rows[np.random.default_rng(args.seed).permutation(len(rows))[: args.limit]]
        pick = np.random.default_rng(args.seed).permutation(len(val))[: args.limit]
        val = type(val)(val.x[pick], val.y[pick])
    train = type(raw_train)(raw_train.x[rows], raw_train.y[rows])
    print(f"train {len(train)} images (removed {cleaned}), val {len(val)}", flush=True)

    soft, mix = None, 0.0
    if args.votes:
        votes = load_votes(args.votes, "train", len(raw_train)).select(rows)
        soft, mix = vote_targets(train.y, votes, args.min_emotion_share), args.vote_weight
        print(f"votes: {int((votes.emotion_share >= args.min_emotion_share).sum())} of {len(train)} images use "
              f"the raters' distribution", flush=True)
    if args.teacher:
        taught = teacher_targets(args.teacher, train.x, args.temperature)
        agree = float((taught.argmax(1) == train.y).mean())
        print(f"teachers {len(args.teacher)}: agree with {agree:.1%} of the training labels", flush=True)
        soft, mix = taught if soft is None else (soft + taught) / 2, args.distill  # with votes: half each
    if soft is not None:
        print(f"soft targets: weight {mix}", flush=True)

    smoothed = np.eye(NUM_CLASSES)[train.y] * (1 - args.label_smoothing) + args.label_smoothing / NUM_CLASSES
    prior = ((1 - mix) * smoothed + (mix * soft if soft is not None else 0)).mean(axis=0)
    weights = class_weights(train.y) if args.class_weights == "sqrt" else np.ones(NUM_CLASSES, np.float32)
    steps = -(-len(train) // args.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=args.learning_rate / 10,
        warmup_target=args.learning_rate,
        warmup_steps=2 * steps,
        decay_steps=max(1, (args.epochs - 2) * steps),
        alpha=0.01,
    )
    if args.init is None:
        model = build_model(args.arch, args.dropout)
    else:
        model = keras.models.load_model(args.init, compile=False)
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=5e-4),
        loss=balanced_loss(prior, args.balance) if args.balance else keras.losses.CategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    args.work_dir.mkdir(parents=True, exist_ok=True)
    best_path, history_path = args.work_dir / "best.keras", args.work_dir / "history.csv"
    backup = args.work_dir / "backup"  # the last finished epoch: the same command resumes from it
    fitted = args.work_dir / "fitted"  # training ended: the same command goes straight to the export
    if backup.exists():
        print(f"resuming from {backup}", flush=True)
    elif fitted.exists():
        print(f"{fitted} marks a finished fit: averaging and exporting", flush=True)
    else:  # a fresh run: nothing an earlier run left in this work dir counts
        for stale in (history_path, args.work_dir / "average.npz"):
            stale.unlink(missing_ok=True)
    earlier = val_accuracies(history_path)
    averager = WeightAverage(args.average_from, args.work_dir / "average.npz") if args.average_from else None
    if not fitted.exists() or backup.exists():
        model.fit(
            dataset(train.x, train.y, args.batch_size, True, args.seed, args.label_smoothing, args.erasing,
                    soft, mix, zoom=args.zoom, translation=args.translation, gamma=args.gamma,
                    sharpen=args.sharpen),
            validation_data=dataset(val.x, val.y, 512, False),
            epochs=args.epochs,
            class_weight=dict(enumerate(weights.tolist())),
            callbacks=[
                keras.callbacks.BackupAndRestore(backup),  # first, and the log last: a logged epoch is saved
                *([averager] if averager else []),
                keras.callbacks.ModelCheckpoint(best_path, monitor="val_accuracy", save_best_only=True,
                                                initial_value_threshold=max(earlier, default=None)),
                keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=args.patience),
                keras.callbacks.CSVLogger(history_path, append=True),
            ],
            shuffle=False,  # the dataset shuffles itself
            verbose=2,
        )
        fitted.touch()
    elif averager is not None:  # the saved running mean, on the trained network's architecture
        averager.set_model(model)
        averager.on_train_begin()
    best = keras.models.load_model(best_path, compile=False)
    accuracies = val_accuracies(history_path)  # every epoch, those before a resume included
    averaged = None
    if averager is not None:
        best, averaged = choose_average(best, averager, train, val, max(accuracies))
    info = {
        "data_sha256": raw_train.sha256(),
        "train_images": len(train),
        "removed": cleaned,
        "val_images": len(val),
        "epochs_run": len(accuracies),
        "best_epoch": int(np.argmax(accuracies)) + 1,
        "seed": args.seed,
        "class_weights": [round(float(w), 3) for w in weights],
        "teachers": [str(p) for p in args.teacher],
        **({"distill": {"weight": args.distill, "temperature": args.temperature}} if args.teacher else {}),
        **({"votes": {"file": args.votes.name, "weight": args.vote_weight, "min_emotion_share": args.min_emotion_share}}
           if args.votes else {}),
        "augment": {"zoom": args.zoom, "translation": args.translation, "erasing": args.erasing,
                    "gamma": args.gamma, "sharpen": args.sharpen},
        **({"balance": {"tau": args.balance, "prior": prior.round(4).tolist()}} if args.balance else {}),
        **({"weight_average": averaged} if averaged else {}),
        "command": "python -m training.train " + shlex.join(sys.argv[1:] if argv is None else argv),
        "train_wall_time_s": round(time.monotonic() - started),
    }
    metadata = export(best, args.out, train, val, info, seed=args.seed)
    fitted.unlink()  # exported: the same command in this work dir trains afresh
    for kind, entry in metadata["models"].items():
        print(f"{kind}: val accuracy {entry['val_accuracy']:.4f}, {entry['bytes'] / 1e6:.2f} MB", flush=True)
    return metadata


if __name__ == "__main__":
    main()
