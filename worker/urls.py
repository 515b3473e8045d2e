"""URL validation at submit time: stdlib only, so the API needs no fetching libraries."""

from __future__ import annotations

from urllib.parse import urlsplit

from worker.errors import InvalidUrl

SCHEMES = ("http", "https")


def validate_url(url: object, max_length: int = 2048) -> str:
    """Return the URL stripped of surrounding blanks, or raise InvalidUrl saying what is wrong."""
    if not isinstance(url, str):
        raise InvalidUrl(f"expected a URL string, got {type(url).__name__}")
    url = url.strip()
    if not url:
        raise InvalidUrl("empty URL")
    if len(url) > max_length:
        raise InvalidUrl(f"URL longer than {max_length} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise InvalidUrl(f"malformed URL: {exc}") from None
    if parts.scheme.lower() not in SCHEMES:
        raise InvalidUrl("only absolute http and https URLs are accepted")
    if not parts.hostname:
        raise InvalidUrl("URL has no host")
    if any(ch.isspace() for ch in url):
        raise InvalidUrl("URL contains white space")
    return url
