"""fer-batch's HTTP API: the Flask application factory, served by ``gunicorn 'api:create_app()'``.

``create_app`` keeps the settings, the job store and the Celery app (used only to send tasks by
name) in ``app.extensions`` and installs one error handler that answers every failure as JSON
``{"error": {"code", "message"}}``: the API's own errors, HTTP errors from routing or body limits
(404, 405, 413 ...), Redis being down (503 ``redis_unavailable``) and, logged, anything unexpected
(500 ``internal_error``). With ``FER_API_KEYS_FILE`` set, ``api.auth`` requires an API key.
``api.metrics`` counts and times every request and serves ``GET /metrics``.

Flask and the worker package are imported inside ``create_app`` so that the CLI can import
``api.inputs`` and ``api.client`` with the CLI's dependencies only.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from api.errors import ApiError, InsufficientStorage, PayloadTooLarge, ServiceUnavailable

if TYPE_CHECKING:
    from flask import Flask, Response

    from worker.settings import Settings

log = logging.getLogger(__name__)

# Werkzeug's HTTP errors as stable codes, where the generic snake_case name is not the one we want.
HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


def to_api_error(exc: Exception) -> ApiError:
    """Any exception raised while handling a request, as the ApiError to answer."""
    from kombu.exceptions import OperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import OutOfMemoryError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, RequestEntityTooLarge):
        return _body_too_large()
    if isinstance(exc, HTTPException):
        status = exc.code or 500
        code = HTTP_CODES.get(status) or re.sub(r"\W+", "_", (exc.name or "http_error").lower()).strip("_")
        return ApiError(status, code, exc.description or exc.name or "HTTP error")
    if isinstance(exc, OutOfMemoryError):
        return InsufficientStorage("the job store is full (Redis reached its maxmemory); retry when "
                                   "jobs have expired or results have been fetched and deleted")
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | OperationalError):
        return ServiceUnavailable(f"Redis is unavailable: {exc}", code="redis_unavailable")
    log.exception("unexpected error on %s", _request_line(), exc_info=exc)
    return ApiError(500, "internal_error", "unexpected error on the server; it has been logged")


def _body_too_large() -> PayloadTooLarge:
    from flask import current_app

    limit = current_app.config["MAX_CONTENT_LENGTH"]
    return PayloadTooLarge(f"the request body is too large: at most {limit:,} bytes are accepted "
                           "(FER_MAX_BODY_BYTES); split the list into several jobs",
                           code="body_too_large", limit=limit)


def _request_line() -> str:
    from flask import request

    return f"{request.method} {request.path}"


def _error_response(exc: Exception) -> Response:
    from flask import jsonify
    from werkzeug.exceptions import MethodNotAllowed

    api_error = to_api_error(exc)
    response = jsonify(api_error.to_dict())
    response.status_code = api_error.status
    response.headers.update(api_error.headers)
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response


def create_app(settings: Settings | None = None, **config: Any) -> Flask:
    """Build the API for ``settings`` (default: from the environment); ``config`` updates Flask's."""
    from flask import Flask

    from api import auth, metrics
    from api.jsonprovider import FastJSON
    from api.openapi import bp as docs_bp
    from api.page import bp as page_bp
    from api.routes import bp
    from worker import create_celery
    from worker.settings import get_settings
    from worker.store.jobs import JobStore, connect

    settings = settings or get_settings()
    app = Flask(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        MAX_FORM_MEMORY_SIZE=settings.max_body_bytes,
        **config,
    )
    app.json = FastJSON(app)  # keeps the documented key order
    app.url_map.merge_slashes = False  # "/jobs//results.csv" is a JSON 404, not an HTML redirect
    app.extensions["fer.settings"] = settings
    app.extensions["fer.store"] = JobStore(connect(settings.redis_url), settings.result_ttl)
    app.extensions["fer.celery"] = create_celery(settings)
    metrics.init_app(app, app.extensions["fer.store"])  # before auth: requests answered 401 are timed too
    auth.init_app(app, settings.api_keys_file)
    app.register_blueprint(bp)
    app.register_blueprint(page_bp)  # the web page at / (api/static/)
    app.register_error_handler(Exception, _error_response)
    app.register_blueprint(docs_bp)  # /openapi.json and /docs (api/openapi.py)
    return app
