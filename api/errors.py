"""Errors the API answers with, each rendered as ``{"error": {"code", "message", ...}}``.

A request fails with one of these; ``code`` is stable (clients branch on it), ``message`` is for
people, and extra keyword arguments are added to the error object (e.g. ``parameter``);
``headers`` are added to the answer (``WWW-Authenticate``, ``Retry-After``)::

    ApiError                       any error answer (status, code, message)
    ├── BadRequest           400   invalid_json, invalid_body, invalid_csv, invalid_parameter, no_urls
    │                              invalid_callback_url, webhooks_disabled
    ├── Unauthorized         401   unauthorized (API keys on: no key, or not a known one)
    ├── NotFound             404   job_not_found (also another key's job)
    ├── PayloadTooLarge      413   too_many_urls, body_too_large
    ├── UnsupportedMediaType 415   unsupported_media_type
    ├── UnprocessableUrl     422   the URL's own error code (/predict): invalid_url, http_error, ...
    ├── TooManyRequests      429   quota_exceeded, too_many_jobs, rate_limited (with Retry-After)
    ├── InsufficientStorage  507   storage_full (Redis reached maxmemory: no new job until it frees)
    ├── ServiceUnavailable   503   redis_unavailable, no_worker
    └── Timeout              504   timeout

Per-URL errors of a batch job are not these: they are outcomes (``worker.errors``) stored on
their index, and never fail the request.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ApiError(Exception):
    """An error answer: HTTP ``status``, stable ``code``, human ``message`` and extra fields."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra
        self.headers: dict[str, str] = {}

    def to_dict(self) -> dict[str, Any]:
        """The JSON body: ``{"error": {"code", "message", **extra}}``."""
        return {"error": {"code": self.code, "message": self.message, **self.extra}}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.code!r}, {self.message!r})"


class _FixedStatus(ApiError):
    """An ApiError whose subclass fixes the status and a default code."""

    STATUS: ClassVar[int] = 500
    CODE: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(self.STATUS, code or self.CODE, message, **extra)


class BadRequest(_FixedStatus):
    STATUS = 400
    CODE = "invalid_body"


class Unauthorized(_FixedStatus):
    """No API key, or an unknown one; ``error`` is RFC 6750's (``invalid_token`` for a wrong key)."""

    STATUS = 401
    CODE = "unauthorized"

    def __init__(self, message: str, *, error: str | None = None, **extra: Any) -> None:
        super().__init__(message, **extra)
        self.headers["WWW-Authenticate"] = f'Bearer realm="fer-batch", error="{error}"' if error \
            else 'Bearer realm="fer-batch"'


class NotFound(_FixedStatus):
    STATUS = 404
    CODE = "job_not_found"


class PayloadTooLarge(_FixedStatus):
    STATUS = 413
    CODE = "too_many_urls"


class UnsupportedMediaType(_FixedStatus):
    STATUS = 415
    CODE = "unsupported_media_type"


class UnprocessableUrl(_FixedStatus):
    """/predict's URL could not be classified; ``code`` is the URL's error code."""

    STATUS = 422
    CODE = "invalid_url"


class TooManyRequests(_FixedStatus):
    """Over a key's limit for now: retry after ``retry_after`` seconds (header and body)."""

    STATUS = 429
    CODE = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None, **extra: Any) -> None:
        super().__init__(message, code=code, retry_after=retry_after, **extra)
        self.headers["Retry-After"] = str(retry_after)


class InsufficientStorage(_FixedStatus):
    STATUS = 507
    CODE = "storage_full"


class ServiceUnavailable(_FixedStatus):
    STATUS = 503
    CODE = "redis_unavailable"


class Timeout(_FixedStatus):
    STATUS = 504
    CODE = "timeout"
