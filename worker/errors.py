"""Per-URL errors: why one URL of a job got no emotions. None of them fails a job.

Each class carries a stable ``code`` that users see in results (JSON and CSV)::

    UrlError                      any per-URL failure
    ├── InvalidUrl                invalid_url         not an absolute http(s) URL
    ├── BlockedAddress            blocked_address     host resolves to a non-public address
    ├── FetchError                (fetching failed)
    │   ├── DnsError              dns_error           host name does not resolve
    │   ├── ConnectionFailed      connection_error    refused, reset, TLS or protocol failure
    │   ├── FetchTimeout          fetch_timeout       the URL's time budget ran out
    │   ├── HttpError             http_error          non-2xx answer (adds http_status)
    │   ├── TooManyRedirects      too_many_redirects  more redirects than allowed
    │   └── TooLarge              too_large           body over FER_MAX_IMAGE_BYTES
    ├── ImageError                (the bytes are not a usable image)
    │   ├── NotAnImage            not_an_image        no image format recognised
    │   ├── DecodeError           decode_error        a recognised format that fails to decode
    │   └── ImageTooLarge         image_too_large     more pixels than FER_MAX_PIXELS
    ├── NoFace                    no_face             a good image, but the detector finds no face in it
    └── InternalError             internal_error      unexpected failure on our side
"""

from __future__ import annotations

from typing import Any


class UrlError(Exception):
    code = "url_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}


class InvalidUrl(UrlError):
    code = "invalid_url"


class BlockedAddress(UrlError):
    code = "blocked_address"


class FetchError(UrlError):
    code = "fetch_error"


class DnsError(FetchError):
    code = "dns_error"


class ConnectionFailed(FetchError):
    code = "connection_error"


class FetchTimeout(FetchError):
    code = "fetch_timeout"


class HttpError(FetchError):
    code = "http_error"

    def __init__(self, status: int, message: str | None = None) -> None:
        super().__init__(message or f"server answered HTTP {status}")
        self.status = status

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "http_status": self.status}


class TooManyRedirects(FetchError):
    code = "too_many_redirects"


class TooLarge(FetchError):
    code = "too_large"


class ImageError(UrlError):
    code = "image_error"


class NotAnImage(ImageError):
    code = "not_an_image"


class DecodeError(ImageError):
    code = "decode_error"


class ImageTooLarge(ImageError):
    code = "image_too_large"


class NoFace(UrlError):
    code = "no_face"


class InternalError(UrlError):
    code = "internal_error"


ERROR_CODES: tuple[str, ...] = tuple(
    cls.code
    for cls in (
        InvalidUrl, BlockedAddress, DnsError, ConnectionFailed, FetchTimeout, HttpError,
        TooManyRedirects, TooLarge, NotAnImage, DecodeError, ImageTooLarge, NoFace, InternalError,
    )
)
