"""The web page at ``/``: submit URLs or a CSV, watch a job's progress, browse and filter its results.

The page is static (``api/static/``: ``index.html``, ``app.js``, ``style.css``; no build step, no
CDN, nothing fetched from elsewhere) and talks to the API from the browser exactly as any client
does. Flask serves ``api/static/`` at ``/static/`` (the app's own static folder); this blueprint
adds ``/`` (also ``/?job=<id>``, which the script opens). Both are open with API keys on: they
hold no data, and the page asks for a key when the API answers 401.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app

bp = Blueprint("page", __name__)

# The page loads only its own files and talks only to this API; thumbnails are the submitted
# images, loaded by the browser from their own URLs. Nothing else may be fetched or run.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                           "img-src http: https: data: blob:; base-uri 'none'; form-action 'self'; "
                           "frame-ancestors 'none'")


@bp.get("/")
def index() -> Response:
    response = current_app.send_static_file("index.html")
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
