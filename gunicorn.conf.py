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

# Logs (worker/ops/logs.py): FER_LOG_FORMAT=json makes gunicorn's error and access logs and the API's own
# loggers one JSON object per line; the default, text, leaves gunicorn's logging as it is.
if os.environ.get("FER_LOG_FORMAT", "text").strip().lower() == "json":
    from worker.ops.logs import gunicorn_logconfig

    logconfig_dict = gunicorn_logconfig("json")

# Metrics (api/metrics.py): gunicorn's worker processes share their Prometheus values through files in
# PROMETHEUS_MULTIPROC_DIR, so that /metrics adds up every worker whichever one answers. Set here, when
# the configuration is read (before the app is loaded, even with --preload): a fresh directory for each
# start of the API, removed at exit; a directory given in the environment is emptied at start instead.
_METRICS_PREFIX = "fer-api-metrics-"
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    import tempfile

    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix=_METRICS_PREFIX)


def on_starting(server):
    """Once per start of the master: stale values from a previous run must not be added up."""
    import glob

    if not os.path.basename(os.environ["PROMETHEUS_MULTIPROC_DIR"]).startswith(_METRICS_PREFIX):
        for path in glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "*.db")):
            os.remove(path)


def child_exit(server, worker):
    """A worker process exited: its live gauges go (its counters keep counting in the sum)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    import shutil

    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if os.path.basename(path).startswith(_METRICS_PREFIX):
        shutil.rmtree(path, ignore_errors=True)
