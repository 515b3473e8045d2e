"""Webhook signatures: HMAC-SHA256 over a timestamp and the body, in Stripe's header scheme.

A delivery carries ``X-Fer-Signature: t=<unix seconds>,v1=<hex digest>``, the digest being
HMAC-SHA256 with ``FER_WEBHOOK_SECRET`` over ``f"{t}.".encode() + body``. The timestamp is
signed, so a captured delivery cannot be replayed later than the receiver's tolerance. Standard
library only: a receiver can copy :func:`verify_signature`.

    SignatureError              the header is missing, malformed, stale, or matches no digest
"""

from __future__ import annotations

import hashlib
import hmac
import time

SCHEME = "v1"
DEFAULT_TOLERANCE = 300.0  # seconds between the signed timestamp and the receiver's clock


class SignatureError(ValueError):
    """The signature does not prove that the body came, recently, from the holder of the secret."""


def digest(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``f"{timestamp}." + body`` under ``secret``."""
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: str | bytes, body: bytes, timestamp: int | None = None) -> str:
    """The ``X-Fer-Signature`` value for ``body``, signed now (or at ``timestamp``)."""
    stamp = int(time.time()) if timestamp is None else timestamp
    return f"t={stamp},{SCHEME}={digest(secret, stamp, body)}"


def verify_signature(secret: str | bytes, header: str | None, body: bytes,
                     tolerance: float = DEFAULT_TOLERANCE, now: float | None = None) -> int:
    """Check an ``X-Fer-Signature`` header against the raw ``body``; returns the signed timestamp.

    Raises SignatureError unless the header has a timestamp within ``tolerance`` seconds of
    ``now`` (default: the current time) and a ``v1`` digest equal to the body's (compared in
    constant time; any one of several ``v1`` entries may match, e.g. while rotating secrets).
    """
    if not header:
        raise SignatureError("no signature header")
    stamps: list[str] = []
    digests: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureError(f"malformed signature header: {header!r}")
        if key == "t":
            stamps.append(value)
        elif key == SCHEME:
            digests.append(value)
    if len(stamps) != 1 or not stamps[0].isdigit():
        raise SignatureError(f"the signature header needs one t=<unix seconds>: {header!r}")
    if not digests:
        raise SignatureError(f"the signature header has no {SCHEME}= digest: {header!r}")
    timestamp = int(stamps[0])
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError(f"signed at {timestamp}, {current - timestamp:.0f} s from now: over {tolerance:g} s")
    expected = digest(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in digests):
        raise SignatureError("no signature matches the body")
    return timestamp
