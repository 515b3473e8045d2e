"""gunicorn settings for running the API by hand: `gunicorn 'api:create_app()'` reads this file.

POST /predict holds a request open for up to FER_PREDICT_TIMEOUT (30 s), so the default sync
worker and its 30 s timeout would kill it: threads keep other requests flowing meanwhile.
Environment variables (WEB_CONCURRENCY, GUNICORN_CMD_ARGS) override these values, as in the
Docker image.
"""

import os

bind = os.environ.get("FER_API_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = 4
timeout = 60
