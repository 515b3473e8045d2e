"""The HTTP endpoints: jobs, CSV results, cancel, the Lambda-style /predict, health and readiness.

Handlers raise ``api.errors.ApiError``; the one error handler in ``api`` renders every failure as
JSON. Job state lives in Redis behind ``worker.store.jobs.JobStore``; work goes to the Celery queue by
task name only, so nothing here imports the worker's fetching or inference code.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import redis
from celery import Celery
from flask import Blueprint, Response, current_app, request, stream_with_context, url_for

from api import metrics
from api.auth import current_key, current_owner, may_see
from api.errors import BadRequest, NotFound, ServiceUnavailable, Timeout, UnprocessableUrl
from api.inputs import callback_url, faces_mode, job_request, read_json
from api.limits import admit
from worker import send_chunks, send_webhook
from worker.errors import InvalidUrl
from worker.facefilter import FaceFilter
from worker.net.urls import storable, validate_url
from worker.outcomes import (
    CSV_HEADER,
    FACES_CSV_HEADER,
    csv_row,
    error,
    face_rows,
    job_summary,
    lambda_dict,
    webhook_state,
)
from worker.settings import Settings
from worker.store.jobs import FacesMode, Job, JobStore

bp = Blueprint("fer", __name__)
log = logging.getLogger(__name__)

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
DEFAULT_JOBS = 20  # jobs per page of GET /jobs
MAX_JOBS = 100
CSV_FLUSH_ROWS = 500
# Larger offsets and limits read as this: past any job or list, and within Redis's 64-bit indexes.
MAX_INDEX = 10**15
READY_TIMEOUT = 1.0  # seconds a worker has to answer the readiness ping


def _settings() -> Settings:
    return current_app.extensions["fer.settings"]


def _store() -> JobStore:
    return current_app.extensions["fer.store"]


def _celery() -> Celery:
    return current_app.extensions["fer.celery"]


def job_json(job: Job, results: list[dict[str, Any]] | None = None, next_url: str | None = None) -> dict[str, Any]:
    """The one JSON shape of a job (``worker.outcomes.job_summary``), then ``webhook`` for a job with
    a callback_url; ``results`` and ``next`` are added for a page of results."""
    links = {"self": url_for("fer.get_job", job_id=job.id),
             "results_csv": url_for("fer.results_csv", job_id=job.id),
             "faces_csv": url_for("fer.faces_csv", job_id=job.id)}
    body = job_summary(job, links)
    if job.callback_url is not None:
        body["webhook"] = webhook_state(job)
    if results is not None:
        body["results"] = results
        body["next"] = next_url
    return body


def _get_job(job_id: str) -> Job:
    job = _store().get(job_id)
    if job is None or not may_see(job.owner):  # another key's job is unknown to this one
        raise NotFound(f"no job {job_id!r} (unknown, or expired after its retention time)", job_id=job_id)
    return job


def submit(entries: list[Any], faces: FacesMode = FacesMode.DETECT, callback: str | None = None,
           filters: FaceFilter | None = None) -> Job:
    """Store a job for the entries and queue its first chunks; each finished chunk queues the next.

    ``callback`` is a checked callback URL: the job's webhook (queued here if the job is done at
    once, every URL being invalid); ``filters`` the faces the job wants (checked)."""
    settings, store = _settings(), _store()
    urls: list[str] = []
    answered: dict[int, dict[str, Any]] = {}
    for index, entry in enumerate(entries):
        try:
            urls.append(validate_url(entry, settings.max_url_length))
        except InvalidUrl as exc:
            urls.append(storable(entry))
            answered[index] = error(exc)
    with admit(current_key(), len(urls) - len(answered)):  # API keys on: the key's quota and job limit
        job = store.create(urls, settings.chunk_size, outcomes=answered, faces=faces, owner=current_owner(),
                           callback_url=callback, filters=filters)
    try:
        send_chunks(_celery(), job.id, store.dispatch.claim(job.id, settings.job_window))
    except Exception:
        # A job with lost chunks would wait for the sweeper, and its id was never answered: drop it.
        with contextlib.suppress(redis.RedisError):
            store.discard(job.id)
        raise
    metrics.job_created(job.faces.value, len(urls), len(answered))
    if callback is not None and job.finished:
        _queue_webhook(job.id)
        job = store.get(job.id) or job
    return job


def _queue_webhook(job_id: str) -> None:
    """Queue the webhook of a job this request ended. If the broker fails, the job's webhook is
    due again after ``WEBHOOK_HOLD`` and the sweeper queues it: the answer does not fail for it."""
    try:
        if _store().deliveries.webhook_due(job_id, time.time()):
            send_webhook(_celery(), job_id)
    except Exception as exc:  # kombu's or Redis's errors
        log.warning("job %s: webhook not queued now (the sweeper will): %s", job_id, exc)


@bp.post("/jobs")
def create_job() -> tuple[dict[str, Any], int, dict[str, str]]:
    asked = job_request(request, _settings().max_urls)
    callback = None if asked.callback_url is None else callback_url(asked.callback_url, _settings())
    job = submit(asked.entries, asked.faces, callback, asked.filters)
    body = job_json(job)
    return body, 202, {"Location": body["links"]["self"]}


def _int_arg(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"\s*\d+\s*", raw):
        raise BadRequest(f"{name} must be a non-negative integer, got {raw!r}", code="invalid_parameter",
                         parameter=name)
    digits = raw.strip().lstrip("0") or "0"
    return min(int(digits), MAX_INDEX) if len(digits) <= len(str(MAX_INDEX)) else MAX_INDEX


@bp.get("/jobs")
def list_jobs() -> dict[str, Any]:
    """Recent jobs, newest first, in pages (with API keys on, the caller's own jobs only)."""
    offset = _int_arg("offset", 0)
    limit = min(_int_arg("limit", DEFAULT_JOBS), MAX_JOBS)
    if limit == 0:
        raise BadRequest("limit must be at least 1", code="invalid_parameter", parameter="limit")
    store = _store()
    ids, total = store.owners.recent(current_owner(), offset, limit)
    jobs = [job_json(job) for job in map(store.get, ids) if job is not None]
    next_url = url_for("fer.list_jobs", offset=offset + limit, limit=limit) if offset + limit < total else None
    return {"jobs": jobs, "total": total, "next": next_url}


@bp.get("/jobs/<job_id>")
def get_job(job_id: str) -> dict[str, Any]:
    offset = _int_arg("offset", 0)
    limit = min(_int_arg("limit", DEFAULT_LIMIT), MAX_LIMIT)
    if limit == 0:
        raise BadRequest("limit must be at least 1", code="invalid_parameter", parameter="limit")
    job = _get_job(job_id)
    results = _store().results(job, offset, offset + limit)
    next_url = url_for("fer.get_job", job_id=job.id, offset=offset + limit, limit=limit) \
        if offset + limit < job.total else None
    return job_json(job, results, next_url)


def _csv_response(job: Job, header: tuple[str, ...], rows: Callable[[dict[str, Any]], Iterable[list[Any]]],
                  filename: str) -> Response:
    """A job's results streamed as CSV: ``rows`` turns each result row into CSV rows."""
    store = _store()

    def generate() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        for count, result in enumerate(store.iter_results(job), start=1):
            writer.writerows(rows(result))
            if count % CSV_FLUSH_ROWS == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    return Response(stream_with_context(generate()), mimetype="text/csv", headers=headers)


@bp.get("/jobs/<job_id>/results.csv")
def results_csv(job_id: str) -> Response:
    """One row per input URL; an ok row carries its largest face."""
    job = _get_job(job_id)
    return _csv_response(job, CSV_HEADER, lambda result: [csv_row(result)], f"{job.id}.csv")


@bp.get("/jobs/<job_id>/faces.csv")
def faces_csv(job_id: str) -> Response:
    """One row per face found, in input order then largest first."""
    job = _get_job(job_id)
    return _csv_response(job, FACES_CSV_HEADER, face_rows, f"{job.id}-faces.csv")


@bp.delete("/jobs/<job_id>")
def cancel_job(job_id: str) -> dict[str, Any]:
    _get_job(job_id)  # 404 for another key's job, before touching it
    if _store().cancel(job_id) is None:
        raise NotFound(f"no job {job_id!r} (unknown, or expired after its retention time)", job_id=job_id)
    job = _get_job(job_id)
    if job.callback_url is not None:
        _queue_webhook(job_id)
        job = _get_job(job_id)
    return job_json(job)


@bp.post("/predict")
def predict() -> dict[str, float]:
    body = read_json(request)
    if not isinstance(body, dict) or "url" not in body:
        raise BadRequest('expected a JSON object {"url": "..."}', code="invalid_body")
    store = _store()
    job = submit([body["url"]], faces_mode(body.get("faces", request.args.get("faces"))))
    timeout = _settings().predict_timeout
    if not store.wait_finished(job.id, timeout):
        store.cancel(job.id)
        raise Timeout(f"no answer within {timeout:g} s", job_id=job.id)
    outcome = store.results(_get_job(job.id), 0, 1)[0]
    if outcome["status"] == "ok":
        return lambda_dict(outcome)
    if outcome["status"] == "error":
        err = outcome["error"]
        extra = {key: value for key, value in err.items() if key not in ("code", "message")}
        raise UnprocessableUrl(err["message"], code=err["code"], url=outcome["url"], **extra)
    raise Timeout(f"the job was {outcome['status']} before an answer", job_id=job.id)


@bp.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@bp.get("/readyz")
def readyz() -> dict[str, Any]:
    try:
        _store().redis.ping()
    except redis.RedisError as exc:
        raise ServiceUnavailable(f"Redis does not answer: {exc}", code="redis_unavailable",
                                 checks={"redis": "unavailable", "worker": "unknown"}) from None
    try:
        replies = _celery().control.ping(timeout=READY_TIMEOUT, limit=1) or []
    except Exception as exc:  # kombu raises its own OperationalError when the broker vanishes
        raise ServiceUnavailable(f"cannot ping workers: {exc}", code="redis_unavailable",
                                 checks={"redis": "unavailable", "worker": "unknown"}) from None
    workers = sorted(name for reply in replies for name in reply)
    if not workers:
        raise ServiceUnavailable(f"no Celery worker answered a ping within {READY_TIMEOUT:g} s", code="no_worker",
                                 checks={"redis": "ok", "worker": "missing"})
    return {"status": "ready", "checks": {"redis": "ok", "worker": "ok"}, "workers": workers}
