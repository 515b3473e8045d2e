"""The API's OpenAPI 3.1 description (``GET /openapi.json``) and its interactive docs (``GET /docs``).

The document is kept by hand, as Python data, but built from the code's own constants: the per-URL
error codes (``worker.errors``), emotions and the Lambda keys (``worker.outcomes``), job, result,
faces and webhook statuses (``worker.store.jobs``, ``worker.store.deliveries``) and the paging limits
(``api.routes``). Every error answer is one schema, ``Error`` (``{"error": {code, message, ...}}``,
as ``api.errors`` renders it), whose ``code`` is the enum ``ErrorCode`` of every stable code; each
answer lists the codes it can carry in its description and in ``x-error-codes``. One schema, not
one per answer: a client generated from the document gets one error class.

tests/test_openapi.py keeps it honest: every Flask URL rule is described (and nothing else), and
Schemathesis fuzzes a live API (gunicorn, a real Redis) with keys off and on, checking that no
answer is a 5xx and that every status, content type, body and header conforms to this document.

Paths that other parts of the API add are written here too (``OPTIONAL_PATHS``): the document
served describes them only when the app has their route, so it always matches the running server.

``/docs`` is Swagger UI from the pinned ``swagger-ui-bundle-v2`` package (Swagger UI 5.31.0,
Apache-2.0, its licence at ``/docs/LICENSE``), served by the API itself: no CDN, and nothing is
loaded from anywhere else (the validator badge, which would call swagger.io, is off).
"""

from __future__ import annotations

import copy
import functools
import re
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request, url_for
from werkzeug.exceptions import NotFound

from api.routes import DEFAULT_JOBS, DEFAULT_LIMIT, MAX_JOBS, MAX_LIMIT
from worker.errors import ERROR_CODES
from worker.outcomes import CSV_HEADER, EMOTIONS, FACES_CSV_HEADER, LAMBDA_KEYS, LANDMARKS
from worker.store.deliveries import WebhookStatus
from worker.store.jobs import FacesMode, JobStatus

bp = Blueprint("docs", __name__)

SWAGGER_UI_DIST = "swagger-ui-bundle-v2"
# The files of the bundle that /docs uses (and only these are served).
ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png", "favicon-16x16.png")
ASSET_TYPES = {".css": "text/css", ".js": "text/javascript", ".png": "image/png"}
# Routes that are not API operations and stay out of the document.
UNDESCRIBED_RULES = frozenset({"/static/<path:filename>"})  # Flask's static files (the web page's)

SCHEMAS = "#/components/schemas/"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": SCHEMAS + name}


def _obj(properties: dict[str, Any], required: list[str] | None = None, *, closed: bool = True,
         **extra: Any) -> dict[str, Any]:
    """An object schema; ``required`` defaults to every property; closed: no other property."""
    schema: dict[str, Any] = {"type": "object", "properties": properties,
                              "required": list(properties) if required is None else required}
    if closed:
        schema["additionalProperties"] = False
    return {**schema, **extra}


def _json(schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"application/json": {"schema": schema, **extra}}


# -- schemas ------------------------------------------------------------------------------------

STAMP = {"type": "string", "format": "date-time", "description": "ISO 8601, UTC (`2026-11-29T20:10:24.952Z`)"}
COUNT = {"type": "integer", "minimum": 0}
PROBABILITY = {"type": "number", "minimum": 0, "maximum": 1}
EMOTION = {"type": "string", "enum": list(EMOTIONS)}

JOB_PROPERTIES: dict[str, Any] = {
    "job_id": {"type": "string", "pattern": "^[0-9a-f]{32}$", "description": "128 random bits, hex"},
    "status": {"type": "string", "enum": [status.value for status in JobStatus],
               "description": "`done`: every URL answered"},
    "total": {**COUNT, "description": "URLs in the job, invalid ones included"},
    "processed": {**COUNT, "description": "succeeded + failed"},
    "succeeded": COUNT,
    "failed": {**COUNT, "description": "URLs answered with an error code, `no_face` included"},
    "created_at": STAMP,
    "updated_at": STAMP,
    "finished_at": {"oneOf": [STAMP, {"type": "null"}]},
    "faces": _ref("FacesMode"),
    "filters": _ref("FaceFilters"),
    "links": _ref("JobLinks"),
}
JOB_REQUIRED = list(JOB_PROPERTIES)
JOB_PROPERTIES["webhook"] = _ref("Webhook")

ERROR_EXTRAS: dict[str, Any] = {
    "parameter": {"type": "string", "description": "`invalid_parameter`, `invalid_callback_url`: which one"},
    "limit": {"type": "integer", "description": "413, `too_many_jobs`, `rate_limited`: the limit passed"},
    "retry_after": {"type": "integer", "minimum": 0, "description": "429: seconds, as `Retry-After`"},
    "quota": {"type": "integer", "description": "`quota_exceeded`: the key's `quota_urls`"},
    "queued": {"type": "integer", "description": "`quota_exceeded`: the key's URLs queued now"},
    "asked": {"type": "integer", "description": "`quota_exceeded`: the URLs this job would queue"},
    "jobs": {"type": "integer", "description": "`too_many_jobs`: the key's jobs queued or running"},
    "job_id": {"type": "string", "description": "404: the id asked for; 504: the job that timed out"},
    "url": {"type": "string", "description": "422: the URL that failed"},
    "http_status": {"type": "integer", "description": "422 `http_error`: what the image server answered"},
    "checks": {"type": "object", "description": "`/readyz`: each dependency's state",
               "properties": {"redis": {"type": "string"}, "worker": {"type": "string"}}},
}

# The face filters (worker.facefilter): a JSON body's keys, or query parameters for other bodies.
FILTER_SCHEMAS: dict[str, Any] = {
    "min_face_size": {"type": "number", "minimum": 0, "default": 0,
                      "description": "drop faces whose box's shorter side is under this many pixels"},
    "min_score": {"type": "number", "minimum": 0, "maximum": 1,
                  "description": "drop faces the detector scored under this (default: its own thresholds, 0.5 "
                                 "and 0.6; a lower value changes nothing)"},
    "max_faces": {"type": "integer", "minimum": 1, "description": "keep only this many faces, the largest "
                                                                  "(default: every face)"},
}

SCHEMA_DEFS: dict[str, Any] = {
    "Error": _obj({"error": _ref("ErrorDetail")},
                  description="Every error answer: a stable `code`, a `message` and, for some, more fields."),
    "ErrorDetail": _obj({"code": _ref("ErrorCode"), "message": {"type": "string", "description": "for people"},
                         **ERROR_EXTRAS}, ["code", "message"], closed=False),
    # "ErrorCode", the enum of every code an error answer below carries, is added after the paths.
    "FacesMode": {"type": "string", "enum": [mode.value for mode in FacesMode], "default": FacesMode.DETECT.value,
                  "description": "`detect`: every face in each photo; `whole`: each image is one face (crops)"},
    "Emotions": _obj({name: PROBABILITY for name in EMOTIONS},
                     description="Probabilities summing to 1, keys as in the `fer` and `deepface` libraries"),
    "Face": _obj({"box": {"type": "array", "items": {"type": "integer"}, "minItems": 4, "maxItems": 4,
                          "description": "[x, y, width, height] in pixels of the image as displayed"},
                  "score": {"type": "number", "description": "the detector's confidence"},
                  "top": EMOTION, "emotions": _ref("Emotions"),
                  "size": {"type": "integer", "minimum": 0, "description": "the box's shorter side, pixels"},
                  "landmarks": _ref("Landmarks"), "pose": _ref("Pose"), "quality": _ref("Quality")},
                 ["box", "score", "top", "emotions"],
                 description="One detected face. `size`, `landmarks`, `pose` and `quality` are in every face "
                             "answered since 2026-12-07 (docs/api.md, \"Face details\")"),
    "Point": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2,
              "description": "[x, y] in pixels of the image as displayed (the frame of `box`); may lie outside "
                             "the image"},
    "Landmarks": _obj({name: _ref("Point") for name in LANDMARKS},
                      description="BlazeFace's six keypoints. `right_*` is the subject's right, on the viewer's "
                                  "left; ears are tragion points, estimated even when hidden"),
    "Pose": _obj({"roll": {"type": "number", "minimum": -180, "maximum": 180,
                           "description": "degrees the eye line is turned counter-clockwise on screen (the "
                                          "subject's left eye higher is positive)"}},
                 description="No yaw nor pitch: a keypoint estimate did not hold up (docs/api.md)"),
    "Quality": _obj({"brightness": {"type": "number", "minimum": 0, "maximum": 100,
                                    "description": "mean luma of the face crop"},
                     "sharpness": {"type": "number", "minimum": 0, "maximum": 100,
                                   "description": "Laplacian variance over pixel variance of the 48x48 face crop, "
                                                  "on a log scale calibrated on the shared photos (median face 69)"}}),
    "FaceFilters": _obj({"min_face_size": {"type": "number", "minimum": 0,
                                           "description": "pixels: smaller faces (box's shorter side) are dropped"},
                         "min_score": {"type": ["number", "null"], "minimum": 0, "maximum": 1,
                                       "description": "null: each detector model's threshold (0.5 close-up, "
                                                      "0.6 full-range)"},
                         "max_faces": {"type": ["integer", "null"], "minimum": 1,
                                       "description": "null: every face; else the largest ones"}},
                        description="The faces a job keeps (detected faces only; the `whole` mode ignores them). "
                                    "A photo whose faces are all dropped is `no_face`, its message saying how many "
                                    "and by which filter"),
    "UrlError": _obj({"code": {"type": "string", "enum": list(ERROR_CODES)}, "message": {"type": "string"},
                      "http_status": {"type": "integer", "description": "`http_error` only"}},
                     ["code", "message"]),
    "ResultOk": _obj({"index": COUNT, "url": {"type": "string"}, "status": {"const": "ok"}, "top": EMOTION,
                      "emotions": _ref("Emotions"), "face_count": {"type": "integer", "minimum": 1},
                      "faces": {"type": "array", "items": _ref("Face"), "minItems": 1,
                                "description": "every face found, largest first"}},
                     ["index", "url", "status", "top", "emotions"],
                     dependentRequired={"faces": ["face_count"], "face_count": ["faces"]},
                     description="`top` and `emotions` are the largest face's; `\"faces\": \"whole\"` jobs have "
                                 "no `faces` nor `face_count`"),
    "ResultError": _obj({"index": COUNT, "url": {"type": "string"}, "status": {"const": "error"},
                         "error": _ref("UrlError")}),
    "ResultPending": _obj({"index": COUNT, "url": {"type": "string"}, "status": {"const": "pending"}},
                          description="not answered yet"),
    "ResultCancelled": _obj({"index": COUNT, "url": {"type": "string"}, "status": {"const": "cancelled"}},
                            description="not answered: the job was cancelled"),
    "Result": {"oneOf": [_ref("ResultOk"), _ref("ResultError"), _ref("ResultPending"), _ref("ResultCancelled")],
               "discriminator": {"propertyName": "status", "mapping": {
                   "ok": SCHEMAS + "ResultOk", "error": SCHEMAS + "ResultError",
                   "pending": SCHEMAS + "ResultPending", "cancelled": SCHEMAS + "ResultCancelled"}}},
    "JobLinks": _obj({"self": {"type": "string"}, "results_csv": {"type": "string"},
                      "faces_csv": {"type": "string"}}),
    "Webhook": _obj({"callback_url": {"type": "string"}, "delivery_id": {"type": ["string", "null"]},
                     "status": {"type": "string", "enum": [status.value for status in WebhookStatus]},
                     "attempts": COUNT, "delivered_at": {"oneOf": [STAMP, {"type": "null"}]},
                     "error": {"type": ["string", "null"], "description": "the last failed attempt's reason"}},
                    description="Only for a job with a `callback_url`: where its delivery stands"),
    "Job": _obj(JOB_PROPERTIES, JOB_REQUIRED),
    "JobPage": _obj({**JOB_PROPERTIES, "results": {"type": "array", "items": _ref("Result"),
                                                   "description": "indexes [offset, offset+limit), input order"},
                     "next": {"type": ["string", "null"], "description": "the next page's URL, or null"}},
                    [*JOB_REQUIRED, "results", "next"]),
    "JobList": _obj({"jobs": {"type": "array", "items": _ref("Job"), "description": "newest first"},
                     "total": COUNT, "next": {"type": ["string", "null"]}}),
    "JobRequest": _obj({"urls": {"type": "array", "minItems": 1, "items": {"type": "string", "format": "uri"},
                                 "description": "1 to FER_MAX_URLS (100,000) absolute http(s) URLs; an entry that "
                                                "is not one is answered `invalid_url` on its own index"},
                        "faces": _ref("FacesMode"),
                        "callback_url": {"type": "string", "format": "uri",
                                         "description": "a webhook when the job ends (needs FER_WEBHOOK_SECRET)"},
                        **FILTER_SCHEMAS},
                       ["urls"], closed=False),
    "PredictRequest": _obj({"url": {"type": "string", "format": "uri", "description": "an absolute http(s) URL"},
                            "faces": _ref("FacesMode")}, ["url"], closed=False),
    "Prediction": _obj({LAMBDA_KEYS[name]: PROBABILITY for name in sorted(LAMBDA_KEYS, key=LAMBDA_KEYS.get)},
                       description="The original Lambda service's flat dict, for the largest face"),
    "Health": _obj({"status": {"const": "ok"}}),
    "Ready": _obj({"status": {"const": "ready"},
                   "checks": _obj({"redis": {"const": "ok"}, "worker": {"const": "ok"}}),
                   "workers": {"type": "array", "items": {"type": "string"}, "minItems": 1}}),
}

# -- parameters and responses -------------------------------------------------------------------


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


PARAMETERS: dict[str, Any] = {
    "JobId": {"name": "job_id", "in": "path", "required": True, "description": "the job's id",
              "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}},
    "Offset": _query("offset", {"type": "integer", "minimum": 0, "default": 0}, "the first index of the page"),
    "ResultsLimit": _query("limit", {"type": "integer", "minimum": 1, "default": DEFAULT_LIMIT},
                           f"rows in the page; more than {MAX_LIMIT} is read as {MAX_LIMIT}"),
    "JobsLimit": _query("limit", {"type": "integer", "minimum": 1, "default": DEFAULT_JOBS},
                        f"jobs in the page; more than {MAX_JOBS} is read as {MAX_JOBS}"),
    "Faces": _query("faces", _ref("FacesMode"), "the faces mode for a CSV, text or multipart body (a JSON "
                                                "body's `faces` key wins)"),
    **{"".join(part.title() for part in name.split("_")): _query(
        name, schema, f"{schema['description']}; for a CSV, text or multipart body (a JSON body's `{name}` wins); "
                      "a bad value is 400 `invalid_parameter` naming it") for name, schema in FILTER_SCHEMAS.items()},
    "CallbackUrl": _query("callback_url", {"type": "string", "format": "uri"},
                          "a webhook when the job ends, for a CSV, text or multipart body (a JSON body's "
                          "`callback_url` wins); 400 `webhooks_disabled` without FER_WEBHOOK_SECRET"),
}

HEADERS: dict[str, Any] = {
    "WWW-Authenticate": {"required": True, "schema": {"type": "string", "pattern": "^Bearer realm="},
                         "description": "`Bearer realm=\"fer-batch\"`, with `error=\"invalid_token\"` for a wrong key"},
    "Retry-After": {"required": True, "schema": {"type": "integer", "minimum": 0},
                    "description": "seconds to wait before retrying"},
}


ANSWERED_CODES: list[str] = []  # every code of every error answer, in first-seen order: ErrorCode's enum


def _error(description: str, *codes: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    """An error answer: an ``Error`` whose ``code`` is one of ``codes`` (named in its description and
    ``x-error-codes``)."""
    ANSWERED_CODES.extend(code for code in codes if code not in ANSWERED_CODES)
    response: dict[str, Any] = {"description": f"{description}; `code`: {', '.join(f'`{c}`' for c in codes)}",
                                "content": _json(_ref("Error")), "x-error-codes": list(codes)}
    if headers:
        response["headers"] = headers
    return response


RESPONSES: dict[str, Any] = {
    "Unauthorized": _error("API keys on: no `Authorization: Bearer <key>`, or not a valid key", "unauthorized",
                           headers={"WWW-Authenticate": {"$ref": "#/components/headers/WWW-Authenticate"}}),
    "RateLimited": _error("API keys on: the key's `rate_per_minute` is used up", "rate_limited",
                          headers={"Retry-After": {"$ref": "#/components/headers/Retry-After"}}),
    "OverLimits": _error("API keys on: over the key's quota of queued URLs, its `max_jobs` or its rate",
                         "quota_exceeded", "too_many_jobs", "rate_limited",
                         headers={"Retry-After": {"$ref": "#/components/headers/Retry-After"}}),
    "JobNotFound": _error("unknown or expired job, or another API key's", "job_not_found"),
    "BadPaging": _error("a bad `offset` or `limit` (`parameter` says which)", "invalid_parameter"),
    "RedisUnavailable": _error("Redis (job store or broker) does not answer", "redis_unavailable"),
    "StorageFull": _error("Redis reached its maxmemory: no new job is stored until memory frees", "storage_full"),
    "UnsupportedMediaType": _error("a Content-Type this endpoint does not read", "unsupported_media_type"),
    # Not an operation's: any path answers these to a method or a path it does not have.
    "MethodNotAllowed": _error("a method the path does not have", "method_not_allowed", headers={
        "Allow": {"required": True, "schema": {"type": "string"}, "description": "the path's methods"}}),
    "NotFound": _error("no such path (with API keys on, 401 comes first)", "not_found"),
    # Answered by gunicorn before the API sees the request, so not an Error (docs/api.md, "OpenAPI and docs").
    "UriTooLong": {"description": "gunicorn's own answer to a request line over 4,094 bytes (its "
                                  "`limit_request_line`): an HTML page, not JSON",
                   "content": {"text/html": {"schema": {"type": "string"}}}},
}


def _responses(*refs: tuple[str, str], **inline: Any) -> dict[str, Any]:
    """Responses by status: inline ones, then (status, name) references to components."""
    answers = {str(status).removeprefix("s"): value for status, value in inline.items()}
    answers.update({status: {"$ref": f"#/components/responses/{name}"} for status, name in refs})
    return dict(sorted(answers.items()))


OPEN: list[dict[str, Any]] = []  # no key needed, even with API keys on
READ_ERRORS = (("401", "Unauthorized"), ("429", "RateLimited"), ("503", "RedisUnavailable"))
JOB_READ_ERRORS = (*READ_ERRORS, ("404", "JobNotFound"))
JOB_LINK_PARAMETERS = {"job_id": "$response.body#/job_id"}
CSV_COLUMNS = ", ".join(f"`{name}`" for name in CSV_HEADER)
FACES_COLUMNS = ", ".join(f"`{name}`" for name in FACES_CSV_HEADER)


HTML = {"text/html": {"schema": {"type": "string"}}}


def _csv_answer(description: str, header: tuple[str, ...]) -> dict[str, Any]:
    return {"description": description,
            "headers": {"Content-Disposition": {"schema": {"type": "string"}, "required": True,
                                                "description": "`attachment; filename=\"<job_id>.csv\"`"}},
            "content": {"text/csv": {"schema": {"type": "string"}, "example": ",".join(header) + "\n"}}}


PATHS: dict[str, Any] = {
    "/jobs": {
        "post": {
            "operationId": "createJob", "tags": ["jobs"], "summary": "Submit a job of image URLs",
            "description": "The URLs as JSON, a CSV (raw or as the `file` of a multipart upload) or plain text, "
                           "one URL per line. A CSV has a `url` column (any case) or the URLs in its first "
                           "column; its delimiter (comma, semicolon, tab) is sniffed and its encoding taken from a "
                           "byte-order mark, else the declared charset, else UTF-8.",
            "parameters": [{"$ref": "#/components/parameters/Faces"},
                           {"$ref": "#/components/parameters/CallbackUrl"},
                           {"$ref": "#/components/parameters/MinFaceSize"},
                           {"$ref": "#/components/parameters/MinScore"},
                           {"$ref": "#/components/parameters/MaxFaces"}],
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": _ref("JobRequest"),
                                     "example": {"urls": ["https://example.com/a.jpg", "https://example.com/b.png"],
                                                 "faces": "detect"}},
                "text/csv": {"schema": {"type": "string"},
                             "example": "name,url\na,https://example.com/a.jpg\nb,https://example.com/b.png\n"},
                "text/plain": {"schema": {"type": "string"},
                               "example": "https://example.com/a.jpg\nhttps://example.com/b.png\n"},
                "multipart/form-data": {"schema": _obj({"file": {"type": "string", "contentMediaType": "text/csv",
                                                                 "description": "the CSV of URLs"}}, closed=False),
                                        "encoding": {"file": {"contentType": "text/csv, text/plain"}}},
            }},
            "responses": _responses(
                ("401", "Unauthorized"), ("415", "UnsupportedMediaType"), ("429", "OverLimits"),
                ("503", "RedisUnavailable"), ("507", "StorageFull"),
                s202={"description": "the job is stored and queued (or done at once: every URL invalid)",
                      "headers": {"Location": {"required": True, "schema": {"type": "string"},
                                               "description": "the job's URL, `/jobs/<job_id>`"}},
                      "content": _json(_ref("Job")),
                      "links": {"getJob": {"operationId": "getJob", "parameters": JOB_LINK_PARAMETERS},
                                "cancelJob": {"operationId": "cancelJob", "parameters": JOB_LINK_PARAMETERS},
                                "resultsCsv": {"operationId": "resultsCsv", "parameters": JOB_LINK_PARAMETERS},
                                "facesCsv": {"operationId": "facesCsv", "parameters": JOB_LINK_PARAMETERS}}},
                s400=_error("the body or a parameter is not what this endpoint reads", "invalid_json",
                            "invalid_body", "invalid_csv", "invalid_parameter", "no_urls", "invalid_callback_url",
                            "webhooks_disabled"),
                s413=_error("more than FER_MAX_URLS URLs, or a body over FER_MAX_BODY_BYTES (`limit`)",
                            "too_many_urls", "body_too_large"),
            ),
        },
        "get": {
            "operationId": "listJobs", "tags": ["jobs"], "summary": "Recent jobs, newest first",
            "description": "Jobs still kept (FER_RESULT_TTL), in pages. With API keys on, a key lists its own.",
            "parameters": [{"$ref": "#/components/parameters/Offset"}, {"$ref": "#/components/parameters/JobsLimit"}],
            "responses": _responses(*READ_ERRORS, ("400", "BadPaging"),
                                    s200={"description": "a page of jobs", "content": _json(_ref("JobList"))}),
        },
    },
    "/jobs/{job_id}": {
        "parameters": [{"$ref": "#/components/parameters/JobId"}],
        "get": {
            "operationId": "getJob", "tags": ["jobs"], "summary": "A job's progress and a page of its results",
            "parameters": [{"$ref": "#/components/parameters/Offset"},
                           {"$ref": "#/components/parameters/ResultsLimit"}],
            "responses": _responses(*JOB_READ_ERRORS, ("400", "BadPaging"),
                                    s200={"description": "the job, with results [offset, offset+limit)",
                                          "content": _json(_ref("JobPage"))}),
        },
        "delete": {
            "operationId": "cancelJob", "tags": ["jobs"], "summary": "Cancel a job",
            "description": "Workers stop taking its URLs; results so far stay, unanswered URLs read `cancelled`. "
                           "A finished job answers its final state.",
            "responses": _responses(*JOB_READ_ERRORS, s200={"description": "the job after cancelling",
                                                             "content": _json(_ref("Job"))}),
        },
    },
    "/jobs/{job_id}/results.csv": {
        "parameters": [{"$ref": "#/components/parameters/JobId"}],
        "get": {
            "operationId": "resultsCsv", "tags": ["jobs"], "summary": "All results as CSV, one row per URL",
            "description": f"Streamed, in input order; an ok row carries its largest face. Columns: {CSV_COLUMNS}.",
            "responses": _responses(*JOB_READ_ERRORS, s200=_csv_answer("one row per input URL", CSV_HEADER)),
        },
    },
    "/jobs/{job_id}/faces.csv": {
        "parameters": [{"$ref": "#/components/parameters/JobId"}],
        "get": {
            "operationId": "facesCsv", "tags": ["jobs"], "summary": "All faces as CSV, one row per face",
            "description": f"In input order, then largest first. Columns: {FACES_COLUMNS}.",
            "responses": _responses(*JOB_READ_ERRORS, s200=_csv_answer("one row per face found", FACES_CSV_HEADER)),
        },
    },
    "/predict": {
        "post": {
            "operationId": "predict", "tags": ["predict"], "summary": "One URL, like the original Lambda",
            "description": "Goes through the same queue and waits up to FER_PREDICT_TIMEOUT (30 s).",
            "parameters": [{"$ref": "#/components/parameters/Faces"}],
            "requestBody": {"required": True, "content": _json(_ref("PredictRequest"),
                                                               example={"url": "https://example.com/a.jpg"})},
            "responses": _responses(
                ("401", "Unauthorized"), ("415", "UnsupportedMediaType"), ("429", "OverLimits"),
                ("503", "RedisUnavailable"), ("507", "StorageFull"),
                s200={"description": "the largest face's emotions", "content": _json(_ref("Prediction"))},
                s400=_error("not a JSON object with `url`, or a bad `faces`", "invalid_json", "invalid_body",
                            "invalid_parameter"),
                s413=_error("a body over FER_MAX_BODY_BYTES", "body_too_large"),
                s422=_error("the URL failed: its own error code (`no_face` included), with `url`", *ERROR_CODES),
                s504=_error("no answer within FER_PREDICT_TIMEOUT (the job is cancelled; `job_id`)", "timeout"),
            ),
        },
    },
    "/healthz": {
        "get": {
            "operationId": "healthz", "tags": ["health"], "summary": "Liveness: 200 while the process runs",
            "security": OPEN,
            "responses": {"200": {"description": "alive", "content": _json(_ref("Health"))}},
        },
    },
    "/readyz": {
        "get": {
            "operationId": "readyz", "tags": ["health"], "summary": "Readiness: Redis answers and a worker is alive",
            "security": OPEN,
            "responses": {"200": {"description": "ready", "content": _json(_ref("Ready"))},
                          "503": _error("not ready (`checks` says what is missing)", "redis_unavailable",
                                        "no_worker")},
        },
    },
    "/openapi.json": {
        "get": {
            "operationId": "openapi", "tags": ["docs"], "summary": "This document", "security": OPEN,
            "responses": {"200": {"description": "OpenAPI 3.1", "content": _json(
                {"type": "object", "required": ["openapi", "info", "paths"]})}},
        },
    },
    "/docs": {
        "get": {
            "operationId": "docs", "tags": ["docs"], "summary": "Interactive docs (Swagger UI, served offline)",
            "security": OPEN,
            "responses": {"200": {"description": "an HTML page", "content": HTML}},
        },
    },
    "/docs/{filename}": {
        "get": {
            "operationId": "docsAsset", "tags": ["docs"], "summary": "The docs page's files, and Swagger UI's licence",
            "security": OPEN,
            "parameters": [{"name": "filename", "in": "path", "required": True,
                            "schema": {"type": "string", "enum": [*ASSETS, "init.js", "LICENSE"]}}],
            "responses": {
                "200": {"description": "the file", "content": {
                    media: {"schema": {"type": "string"}} for media in
                    ("text/css", "text/javascript", "image/png", "text/plain")}},
                "404": _error("not one of the docs' files", "not_found"),
            },
        },
    },
}

# Written here for routes that other parts of the API add: served only when the app has the route.
OPTIONAL_PATHS: dict[str, Any] = {
    "/": {
        "get": {
            "operationId": "page", "tags": ["page"], "summary": "The web page: submit URLs, watch jobs",
            "security": OPEN,
            "responses": {"200": {"description": "an HTML page", "content": HTML}},
        },
    },
    "/metrics": {
        "get": {
            "operationId": "metrics", "tags": ["health"], "summary": "Prometheus metrics",
            "security": OPEN,
            "responses": {"200": {"description": "Prometheus text exposition format", "content": {
                "text/plain; version=0.0.4": {"schema": {"type": "string"}}}}},
        },
    },
}

SCHEMA_DEFS["ErrorCode"] = {"type": "string", "enum": ANSWERED_CODES,
                             "description": "stable: branch on it (each answer lists the codes it can carry)"}

TAGS = [
    {"name": "jobs", "description": "Batch jobs: submit, poll, read results, cancel"},
    {"name": "predict", "description": "One URL at a time, as the original service"},
    {"name": "health", "description": "Liveness, readiness and metrics: no key needed"},
    {"name": "docs", "description": "This description and its interactive docs: no key needed"},
    {"name": "page", "description": "The web page"},
]

DESCRIPTION = """Recognise the facial emotion in large batches of images.

Submit many image URLs in one job (`POST /jobs`), poll it for progress and read per-URL results as JSON \
pages or CSV. Every URL gets an answer: its faces, each with a box and seven emotion probabilities, or a \
stable error code saying why not. Every error answer is JSON: `{"error": {"code", "message", ...}}`.

**Access control** is optional: when the server has `FER_API_KEYS_FILE` set, every operation but the \
health checks and these docs needs `Authorization: Bearer <key>` (else 401 `unauthorized` with \
`WWW-Authenticate`), and a key's limits answer 429 with `Retry-After`.

Any other path answers 404 `not_found`, and a method a path does not have 405 `method_not_allowed` (with \
`Allow`)."""


def _with_server_limits(paths: dict[str, Any]) -> dict[str, Any]:
    """Every operation can get gunicorn's own 414 (a request line over 4,094 bytes)."""
    paths = copy.deepcopy(paths)
    for item in paths.values():
        for method, operation in item.items():
            if method != "parameters":
                operation["responses"]["414"] = {"$ref": "#/components/responses/UriTooLong"}
    return paths


def document() -> dict[str, Any]:
    """The whole document, every optional path included."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "fer-batch", "version": "0.1.0", "description": DESCRIPTION,
                 "license": {"name": "MIT", "identifier": "MIT"}},
        "tags": TAGS,
        "security": [{}, {"apiKey": []}],
        "paths": _with_server_limits({**PATHS, **OPTIONAL_PATHS}),
        "components": {
            "schemas": SCHEMA_DEFS,
            "parameters": PARAMETERS,
            "headers": HEADERS,
            "responses": RESPONSES,
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer", "bearerFormat": "fer_<43 characters>",
                                           "description": "Only when the server has FER_API_KEYS_FILE set"}},
        },
    }


def openapi_path(rule: str) -> str:
    """A Flask rule as an OpenAPI path: ``/jobs/<job_id>`` -> ``/jobs/{job_id}``."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def document_for(app: Flask) -> dict[str, Any]:
    """The document for ``app``: the optional paths only where the app has their route."""
    cached = app.extensions.get("fer.openapi")
    if cached is None:
        routes = {openapi_path(rule.rule) for rule in app.url_map.iter_rules()}
        cached = copy.deepcopy(document())
        for path in OPTIONAL_PATHS:
            if path not in routes:
                del cached["paths"][path]
        used = {tag for item in cached["paths"].values() for operation in item.values() if isinstance(operation, dict)
                for tag in operation.get("tags", ())}
        cached["tags"] = [tag for tag in cached["tags"] if tag["name"] in used]
        app.extensions["fer.openapi"] = cached
    return cached


# -- the endpoints ------------------------------------------------------------------------------

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fer-batch API</title>
<link rel="stylesheet" href="{css}">
<link rel="icon" type="image/png" href="{icon}">
</head>
<body>
<div id="swagger-ui"></div>
<p style="font: 12px sans-serif; margin: 1em 2em; color: #666">Swagger UI {version}, Apache-2.0:
<a href="{license}">licence</a>. The description: <a href="{spec}">openapi.json</a>.</p>
<script src="{bundle}"></script>
<script src="{init}"></script>
</body>
</html>
"""

INIT = """window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: %s,
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  });
});
"""


def _swagger_ui_version() -> str:
    from importlib.metadata import version

    return version(SWAGGER_UI_DIST)


@bp.get("/openapi.json")
def openapi_json() -> dict[str, Any]:
    return document_for(current_app)


@bp.get("/docs")
def docs() -> Response:
    def asset(name: str) -> str:
        return url_for("docs.docs_asset", filename=name)

    html = PAGE.format(css=asset("swagger-ui.css"), icon=asset("favicon-32x32.png"),
                       bundle=asset("swagger-ui-bundle.js"), init=asset("init.js"), license=asset("LICENSE"),
                       spec=url_for("docs.openapi_json"),
                       version=_swagger_ui_version())
    return Response(html, mimetype="text/html")


@bp.get("/docs/<path:filename>")
def docs_asset(filename: str) -> Response:
    import json
    from importlib.metadata import distribution

    if filename == "init.js":
        return Response(INIT % json.dumps(url_for("docs.openapi_json")), mimetype="text/javascript")
    if filename == "LICENSE":
        dist = distribution(SWAGGER_UI_DIST)
        licence = next((file.read_text() for file in dist.files or () if file.name == "LICENSE"), None)
        if licence is None:
            raise NotFound("Swagger UI's licence file is missing from its package")
        return Response(licence, mimetype="text/plain")
    if filename not in ASSETS:
        raise NotFound(f"no docs file {filename!r}")
    response = Response(_asset(filename), mimetype=ASSET_TYPES[filename[filename.rindex("."):]])
    response.cache_control.public = True
    response.cache_control.max_age = 3600
    response.add_etag()
    return response.make_conditional(request)


@functools.cache
def _asset(filename: str) -> bytes:
    """One of ``ASSETS``, read once from the installed bundle (1.7 MB in all)."""
    from swagger_ui_bundle import swagger_ui_path

    return (swagger_ui_path / filename).read_bytes()
