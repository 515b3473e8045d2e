"""URL validation at submit time: stdlib only, so the API needs no fetching libraries."""

from __future__ import annotations

from urllib.parse import urlsplit

from worker.errors import InvalidUrl

SCHEMES = ("http", "https")


def is_text(value: str) -> bool:
    """Whether a string is Unicode text that UTF-8 can encode: JSON's ``"\\ud800"`` escape gives a
    lone surrogate, which no URL, Redis key or answer can carry."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def storable(value: object) -> str:
    """Any entry as text to store beside its result: lone surrogates escaped (``\\ud800``)."""
    text = value if isinstance(value, str) else str(value)
    return text if text.isascii() or is_text(text) else text.encode("utf-8", "backslashreplace").decode()


def validate_url(url: object, max_length: int = 2048) -> str:
    """Return the URL stripped of surrounding blanks, or raise InvalidUrl saying what is wrong."""
    if not isinstance(url, str):
        raise InvalidUrl(f"expected a URL string, got {type(url).__name__}")
    if not url.isascii() and not is_text(url):
        raise InvalidUrl("the URL is not valid Unicode text (a lone surrogate such as \\ud800)")
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
