"""What a method answered for each image, in one shape for every method: a label and a face count.

The label is the top emotion of the image's largest face, ``"no_face"`` when the detector found
none (a correct answer: the image is answered, with no face to classify), or ``"error"`` for a
failure. Every method's run is then counted the same way (:func:`tally`), and methods that ran in
the same faces mode are compared image by image (:func:`agreement`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

NO_FACE = "no_face"
ERROR = "error"
MISSING = "missing"  # an image the method never answered
FAILED = (ERROR, MISSING, "")


def answer_of(outcome: Mapping[str, Any]) -> tuple[str, int]:
    """(label, faces) of a worker outcome (``worker.outcomes``): a whole-mode ok is one face."""
    if outcome.get("status") == "ok":
        return str(outcome["top"]), int(outcome.get("face_count", 1))
    error = outcome.get("error") or {}
    return (NO_FACE if error.get("code") == NO_FACE else ERROR), 0


def tally(labels: Sequence[str], faces: Sequence[int]) -> dict[str, int]:
    """Counts of one run: ``ok`` (faces classified), ``no_face``, ``answered`` (both), ``faces``."""
    no_face = sum(label == NO_FACE for label in labels)
    ok = sum(label not in FAILED and label != NO_FACE for label in labels)
    return {"ok": ok, "no_face": no_face, "answered": ok + no_face, "faces": int(sum(faces))}


def agreement(labels: Sequence[str], reference: Sequence[str]) -> float | None:
    """Share of images whose label (top emotion, or no_face) equals the reference's.

    Only methods in the same faces mode are comparable: in ``detect`` mode the label is the
    largest detected face's, in ``whole`` mode the whole image's. Images the reference failed
    on are left out.
    """
    pairs = [(a, b) for a, b in zip(labels, reference, strict=False) if b not in FAILED]
    if not pairs:
        return None
    return round(sum(a == b for a, b in pairs) / len(pairs), 4)
