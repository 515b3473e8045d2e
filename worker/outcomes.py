"""One URL's outcome, in the shapes users see: result JSON, CSV rows and the Lambda-style dict.

An outcome is a plain dict so that it can go to Redis as JSON unchanged::

    {"status": "ok", "top": "happy", "emotions": {"angry": 0.01, ..., "neutral": 0.05}}
    {"status": "error", "error": {"code": "http_error", "message": "...", "http_status": 404}}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from worker.errors import UrlError

# FER2013 id order; keys as in the fer and deepface libraries.
EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

# The original Lambda service's keys (it mislabelled ids 4-6; this mapping is by name).
LAMBDA_KEYS = {
    "angry": "Anger", "disgust": "Disgust", "fear": "Fear", "happy": "Happy",
    "neutral": "Neutral", "sad": "Sadness", "surprise": "Surprise",
}

CSV_HEADER: tuple[str, ...] = ("index", "url", "status", "top", *EMOTIONS, "error_code", "error_message")


def ok(labels: Sequence[str], probabilities: Sequence[float]) -> dict[str, Any]:
    values = [float(value) for value in probabilities]
    total = sum(values)
    emotions = {label: round(value / total, 6) for label, value in zip(labels, values, strict=True)}
    top = max(range(len(values)), key=values.__getitem__)
    return {"status": "ok", "top": labels[top], "emotions": emotions}


def error(exc: UrlError) -> dict[str, Any]:
    return {"status": "error", "error": exc.to_dict()}


def csv_row(result: dict[str, Any]) -> list[Any]:
    """A result row (``index``, ``url``, outcome fields) as the values of ``CSV_HEADER``."""
    emotions = result.get("emotions") or {}
    err = result.get("error") or {}
    return [
        result["index"], result["url"], result["status"], result.get("top", ""),
        *(emotions.get(name, "") for name in EMOTIONS),
        err.get("code", ""), err.get("message", ""),
    ]


def lambda_dict(outcome: dict[str, Any]) -> dict[str, float]:
    """The flat dict the original Lambda endpoint answered, correctly mapped."""
    return {LAMBDA_KEYS[name]: value for name, value in sorted(outcome["emotions"].items(),
                                                               key=lambda kv: LAMBDA_KEYS[kv[0]])}
