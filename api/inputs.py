"""Request bodies to lists of URL entries, and the CSV rules shared with the CLI.

Accepted bodies for ``POST /jobs``:

- ``application/json``: ``{"urls": [...], "faces": "detect"}``. Entries are returned as they are
  (a non-string entry becomes an ``invalid_url`` result on its own index, so indexes always match
  input rows);
- ``text/csv`` (or ``application/csv``): the raw CSV;
- ``text/plain``: one URL per line;
- ``multipart/form-data`` with a ``file`` field holding the CSV (or a plain list: the CSV rules
  read one URL per line too).

The job's faces mode (``detect``, the default, or ``whole``) comes from the JSON body's ``faces``
key, else from the ``?faces=`` query parameter (the way to set it for a CSV body). An optional
``callback_url`` (a webhook when the job ends) comes the same way; :func:`callback_url` checks it.
So do the face filters ``min_face_size``, ``min_score`` and ``max_faces`` (``worker.facefilter``):
a bad value is a 400 ``invalid_parameter`` naming it, before anything is stored or queued.

CSV and text files are read by ``api.urllists``: encoding from the BOM (Excel's UTF-16 "Unicode
text" included), delimiter sniffed (comma, semicolon, tab), a ``url`` column or the first one.

Neither Flask nor the worker package (which loads Celery) is imported at module level here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from api.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from api.urllists import CsvError, decode_text, urls_from_csv, urls_from_lines

if TYPE_CHECKING:
    from flask import Request

    from worker.facefilter import FaceFilter
    from worker.settings import Settings
    from worker.store.jobs import FacesMode

CSV_TYPES = ("text/csv", "application/csv")
CALLBACK_DNS_TIMEOUT = 2.0  # seconds to resolve a callback host at submit


@dataclass(frozen=True)
class JobRequest:
    """What a ``POST /jobs`` body asks for: URL entries in input order, the faces mode, the
    callback URL as given (None: no webhook), not checked yet, and the face filters (checked)."""

    entries: list[Any]
    faces: FacesMode
    callback_url: Any = None
    filters: FaceFilter | None = None


def _csv_entries(data: bytes, charset: str | None = None, plain: bool = False) -> list[str]:
    try:
        text = decode_text(data, charset)
        return urls_from_lines(text) if plain else urls_from_csv(text)
    except CsvError as exc:
        raise BadRequest(str(exc), code="invalid_csv") from None


def _parse_json(data: bytes) -> Any:
    """The JSON of a body, or 400 ``invalid_json`` (also for nesting deeper than Python's recursion)."""
    try:
        return json.loads(data)
    except ValueError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:
        raise BadRequest("the body's JSON is nested too deeply", code="invalid_json") from None


def _json_body(data: bytes) -> dict[str, Any]:
    body = _parse_json(data)
    if not isinstance(body, dict) or "urls" not in body:
        raise BadRequest('expected a JSON object {"urls": [...]}', code="invalid_body")
    if not isinstance(body["urls"], list):
        raise BadRequest('"urls" must be a list of URL strings', code="invalid_body")
    return body


def faces_mode(value: Any) -> FacesMode:
    """A faces mode from a request (None: the default), or 400 ``invalid_parameter``."""
    from worker.store.jobs import FacesMode

    if value is None:
        return FacesMode.DETECT
    try:
        return FacesMode(value)
    except ValueError:
        choices = " or ".join(repr(mode.value) for mode in FacesMode)
        raise BadRequest(f"faces must be {choices}, got {value!r}", code="invalid_parameter",
                         parameter="faces") from None


def face_filter(values: dict[str, Any]) -> FaceFilter:
    """The face filters among ``values`` (a JSON body's keys over the query string's), or 400
    ``invalid_parameter`` naming the bad one."""
    from worker.facefilter import FaceFilter, FilterError

    try:
        return FaceFilter.parse(values)
    except FilterError as exc:
        raise BadRequest(str(exc), code="invalid_parameter", parameter=exc.parameter) from None


def _multipart_entries(request: Request) -> list[str]:
    upload = request.files.get("file")
    if upload is not None:
        return _csv_entries(upload.read(), upload.mimetype_params.get("charset"))
    if "file" in request.form:  # a plain form field holding the CSV text
        return _csv_entries(request.form["file"].encode())
    raise BadRequest("a multipart body needs a `file` field holding a CSV of URLs", code="invalid_body")


def read_json(request: Request) -> Any:
    """The JSON body of a request that must be JSON: 415 for another type, 400 when malformed."""
    if not request.is_json:
        raise UnsupportedMediaType(f"expected application/json, got {request.mimetype or 'no Content-Type'}")
    return _parse_json(request.get_data(cache=True))


def job_request(request: Request, max_urls: int) -> JobRequest:
    """A ``POST /jobs`` body: between 1 and ``max_urls`` URL entries, in input order, and options.

    Entries are not validated here: strings from a CSV, anything from JSON.
    """
    from worker.facefilter import PARAMETERS

    mimetype = request.mimetype
    faces = request.args.get("faces")
    callback = request.args.get("callback_url")
    filters = {name: request.args.get(name) for name in PARAMETERS}
    if request.is_json:
        body = _json_body(request.get_data(cache=True))
        entries, faces = body["urls"], body.get("faces", faces)
        callback = body.get("callback_url", callback)
        filters.update({name: body[name] for name in PARAMETERS if name in body})
    elif mimetype in CSV_TYPES or mimetype == "text/plain":
        entries = _csv_entries(request.get_data(cache=True), request.mimetype_params.get("charset"),
                               plain=mimetype == "text/plain")
    elif mimetype == "multipart/form-data":
        entries = _multipart_entries(request)
    else:
        raise UnsupportedMediaType(
            f"unsupported Content-Type {mimetype or '(none)'}: send application/json "
            '{"urls": [...]}, text/csv, text/plain (one URL per line), or multipart/form-data with a '
            "`file` field"
        )
    checked = face_filter(filters)  # a bad filter is refused before the URLs are counted
    if not entries:
        raise BadRequest("no URLs in the request", code="no_urls")
    if len(entries) > max_urls:
        raise PayloadTooLarge(f"{len(entries)} URLs, at most {max_urls} per job", code="too_many_urls",
                              limit=max_urls)
    return JobRequest(entries, faces_mode(faces), callback, checked)


def callback_url(value: Any, settings: Settings) -> str:
    """A callback URL fit to receive webhooks, or 400: ``webhooks_disabled`` without
    ``FER_WEBHOOK_SECRET``; ``invalid_callback_url`` unless it is an absolute http(s) URL whose host
    is, or resolves (within ``CALLBACK_DNS_TIMEOUT``) only to, addresses the SSRF guard allows."""
    from urllib.parse import urlsplit

    from worker.errors import UrlError
    from worker.net.addresses import AddressGuard, check_host
    from worker.net.urls import validate_url

    if not settings.webhook_secret:
        raise BadRequest("this server sends no webhooks: FER_WEBHOOK_SECRET is not set", code="webhooks_disabled",
                         parameter="callback_url")
    try:
        url = validate_url(value, settings.max_url_length)
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        check_host(parts.hostname or "", port, AddressGuard.from_settings(settings), CALLBACK_DNS_TIMEOUT)
    except UrlError as exc:
        raise BadRequest(f"callback_url: {exc.message}", code="invalid_callback_url",
                         parameter="callback_url") from None
    return url
