"""One URL's outcome, in the shapes users see: result JSON, CSV rows and the Lambda-style dict.

An outcome is a plain dict so that it can go to Redis as JSON unchanged. With face detection (the
default), ``top`` and ``emotions`` are the largest face's, and ``faces`` lists every face, largest
first; boxes are x, y, width, height in pixels of the image as displayed (EXIF rotation applied)::

    {"status": "ok", "top": "happy", "emotions": {"angry": 0.01, ..., "neutral": 0.05},
     "face_count": 2, "faces": [{"box": [412, 96, 180, 180], "score": 0.94, "top": "happy",
                                 "emotions": {...}, "size": 180, "landmarks": {"right_eye": [461.5, 150.2], ...},
                                 "pose": {"roll": -2.5}, "quality": {"brightness": 52.1, "sharpness": 71.0}},
                                {...}]}
    {"status": "ok", "top": "happy", "emotions": {...}}                   the "whole" faces mode
    {"status": "error", "error": {"code": "http_error", "message": "...", "http_status": 404}}
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from worker.errors import UrlError

if TYPE_CHECKING:
    from worker.store.jobs import Job

# FER2013 id order; keys as in the fer and deepface libraries.
EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

# The original Lambda service's keys (it mislabelled ids 4-6; this mapping is by name).
LAMBDA_KEYS = {
    "angry": "Anger", "disgust": "Disgust", "fear": "Fear", "happy": "Happy",
    "neutral": "Neutral", "sad": "Sadness", "surprise": "Surprise",
}

BOX_COLUMNS: tuple[str, ...] = ("box_x", "box_y", "box_w", "box_h")
# One row per URL. Columns added since the first release go at the end, so positions stay valid.
CSV_HEADER: tuple[str, ...] = (
    "index", "url", "status", "top", *EMOTIONS, "error_code", "error_message", "face_count", *BOX_COLUMNS,
)
LANDMARKS: tuple[str, ...] = ("right_eye", "left_eye", "nose", "mouth", "right_ear", "left_ear")  # BlazeFace's order
DETAIL_COLUMNS: tuple[str, ...] = ("size", "roll", "brightness", "sharpness",
                                   *(f"{name}_{axis}" for name in LANDMARKS for axis in "xy"))
# One row per face (``faces.csv``); a "whole"-mode image is one face without a box or details.
FACES_CSV_HEADER: tuple[str, ...] = ("index", "url", "face", *BOX_COLUMNS, "score", "top", *EMOTIONS,
                                     *DETAIL_COLUMNS)

Box = Sequence[int]
# A detected face for ``ok_faces``: box, score, probabilities, and its details (``worker.vision.details``) or None.
FaceAnswer = tuple[Box, float, Sequence[float]] | tuple[Box, float, Sequence[float], Mapping[str, Any] | None]


def classified(labels: Sequence[str], probabilities: Sequence[float]) -> dict[str, Any]:
    """``top`` and ``emotions`` (normalised, rounded) for one face's probabilities."""
    values = [float(value) for value in probabilities]
    total = sum(values)
    emotions = {label: round(value / total, 6) for label, value in zip(labels, values, strict=True)}
    top = max(range(len(values)), key=values.__getitem__)
    return {"top": labels[top], "emotions": emotions}


def ok(labels: Sequence[str], probabilities: Sequence[float]) -> dict[str, Any]:
    """A whole image classified as one face (the "whole" mode)."""
    return {"status": "ok", **classified(labels, probabilities)}


def ok_faces(labels: Sequence[str], faces: Sequence[FaceAnswer]) -> dict[str, Any]:
    """Detected faces, largest first, as (box, score, probabilities[, details]); at least one."""
    listed = [{"box": [int(v) for v in box], "score": round(float(score), 4), **classified(labels, probs),
               **((details[0] or {}) if details else {})}
              for box, score, probs, *details in faces]
    return {"status": "ok", "top": listed[0]["top"], "emotions": listed[0]["emotions"],
            "face_count": len(listed), "faces": listed}


def error(exc: UrlError) -> dict[str, Any]:
    return {"status": "error", "error": exc.to_dict()}


def csv_row(result: dict[str, Any]) -> list[Any]:
    """A result row (``index``, ``url``, outcome fields) as the values of ``CSV_HEADER``."""
    emotions = result.get("emotions") or {}
    err = result.get("error") or {}
    faces = result.get("faces") or []
    box = faces[0]["box"] if faces else ("",) * len(BOX_COLUMNS)
    return [
        result["index"], result["url"], result["status"], result.get("top", ""),
        *(emotions.get(name, "") for name in EMOTIONS),
        err.get("code", ""), err.get("message", ""), result.get("face_count", ""), *box,
    ]


def face_rows(result: dict[str, Any]) -> Iterator[list[Any]]:
    """A result's faces as rows of ``FACES_CSV_HEADER``; none for an error or an unanswered URL."""
    if result["status"] != "ok":
        return
    faces = result.get("faces") or [{"box": ("",) * len(BOX_COLUMNS), "score": "", **result}]
    for number, face in enumerate(faces):
        yield [result["index"], result["url"], number, *face["box"], face["score"], face["top"],
               *(face["emotions"][name] for name in EMOTIONS), *_detail_cells(face)]


def _detail_cells(face: dict[str, Any]) -> list[Any]:
    """A face's ``DETAIL_COLUMNS``; blank for a face without details (whole mode, older results)."""
    if "landmarks" not in face:
        return [""] * len(DETAIL_COLUMNS)
    quality = face["quality"]
    return [face["size"], face["pose"]["roll"], quality["brightness"], quality["sharpness"],
            *(value for name in LANDMARKS for value in face["landmarks"][name])]


def lambda_dict(outcome: dict[str, Any]) -> dict[str, float]:
    """The flat dict the original Lambda endpoint answered (the largest face), correctly mapped."""
    return {LAMBDA_KEYS[name]: value for name, value in sorted(outcome["emotions"].items(),
                                                               key=lambda kv: LAMBDA_KEYS[kv[0]])}


def job_links(job_id: str) -> dict[str, str]:
    """A job's links, relative to the API's root (the API builds the same with ``url_for``)."""
    return {"self": f"/jobs/{job_id}", "results_csv": f"/jobs/{job_id}/results.csv",
            "faces_csv": f"/jobs/{job_id}/faces.csv"}


def job_summary(job: Job, links: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The one JSON shape of a job, without results: ``GET /jobs/<id>``'s keys, in its order, and
    a webhook's payload. A job with a callback adds ``webhook`` (the API shows it, a payload not)."""
    return {
        "job_id": job.id,
        "status": job.status.value,
        "total": job.total,
        "processed": job.processed,
        "succeeded": job.succeeded,
        "failed": job.failed,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "finished_at": job.finished_at,
        "faces": job.faces.value,
        "filters": job.filters.as_json(),
        "links": dict(links) if links is not None else job_links(job.id),
    }


def webhook_state(job: Job) -> dict[str, Any]:
    """The ``webhook`` object of a job with a callback_url: where its delivery stands."""
    return {"callback_url": job.callback_url, "delivery_id": job.webhook_id, "status": job.webhook_status.value,
            "attempts": job.webhook_attempts, "delivered_at": job.webhook_delivered_at, "error": job.webhook_error}
