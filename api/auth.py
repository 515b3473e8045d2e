"""Access control (optional): API keys, and which key a job belongs to.

Off unless ``FER_API_KEYS_FILE`` names a keys file (``api.keys``). On, every request except
``/healthz``, ``/readyz``, ``/metrics``, the web page (``/`` and ``/static/``) and the API's
description (``/openapi.json``, ``/docs`` and its files) needs ``Authorization: Bearer <key>``
(401 ``unauthorized`` with ``WWW-Authenticate: Bearer`` otherwise, unknown routes included), the
key's rate limit applies (``api.limits``), and a job is visible only to the key that created it:
another key's job answers 404 ``job_not_found``, exactly as an unknown job does.

The key itself is never logged nor repeated in an answer: only its name is kept, in ``g.api_key``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask, current_app, g, request

from api.errors import Unauthorized
from api.keys import ApiKey, Keyring
from api.limits import check_rate

log = logging.getLogger(__name__)

# The web page and its static files hold no data: they load without a key, then ask for one.
# /metrics too: Prometheus scrapes without a key, and its labels name no job, URL or key (api/metrics.py).
OPEN_ENDPOINTS = frozenset({"fer.healthz", "fer.readyz", "page.index", "static", "metrics"})


def init_app(app: Flask, keys_file: Path | None) -> None:
    """Turn access control on for ``keys_file`` (None: off). An invalid file raises KeysFileError,
    so that the API refuses to start rather than run open or answer 500s."""
    if keys_file is None:
        app.extensions["fer.keys"] = None
        return
    keyring = Keyring(keys_file)
    if not len(keyring):
        log.warning("the API keys file %s holds no key: every request answers 401 but those of /healthz, "
                    "/readyz, /metrics, /openapi.json, /docs and the web page", keys_file)
    app.extensions["fer.keys"] = keyring
    app.before_request(authenticate)


def _keyring() -> Keyring | None:
    return current_app.extensions.get("fer.keys")


def authenticate() -> None:
    """``before_request``: the presented key's entry in ``g.api_key``, or 401; then its rate limit."""
    keyring = _keyring()
    if keyring is None or request.endpoint in OPEN_ENDPOINTS or request.blueprint == "docs":  # /openapi.json, /docs
        return
    if (problem := keyring.refresh()) is not None:  # keys added or removed apply without a restart
        log.error("%s; keeping the %d keys read before", problem, len(keyring))
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("this API needs an API key: send the header 'Authorization: Bearer <key>'")
    entry = keyring.find(token)
    if entry is None:
        raise Unauthorized("the API key is not valid (unknown or revoked)", error="invalid_token")
    g.api_key = entry
    check_rate(entry)


def current_key() -> ApiKey | None:
    """The request's key entry; None when access control is off."""
    return g.get("api_key")


def current_owner() -> str | None:
    """The name that owns the jobs this request creates; None when access control is off."""
    key = current_key()
    return key.name if key is not None else None


def may_see(owner: str | None) -> bool:
    """Whether this request may see a job owned by ``owner``: always with access control off;
    with it on, only the job's own key (a job stored while keys were off belongs to no key)."""
    if _keyring() is None:
        return True
    return owner is not None and owner == current_owner()
