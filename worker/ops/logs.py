"""Log lines as text or as JSON (``FER_LOG_FORMAT``), carrying the job and chunk they concern.

``FER_LOG_FORMAT=json`` makes the API (``gunicorn.conf.py``: ``gunicorn_logconfig``) and the workers
(Celery's ``after_setup_logger`` and ``after_setup_task_logger`` signals: ``install_celery_hooks``)
write one JSON object per line: ``timestamp`` (UTC, ISO 8601, milliseconds), ``level``, ``logger``,
``message``, ``process``, then where they apply ``job_id``, ``start`` and ``stop`` (a chunk's index
range), ``task_id`` and ``task_name`` (inside a Celery task) and ``exc_info`` (a traceback, as one
string). The job fields come from ``extra={"job_id": ...}`` on a call, or from ``job_context``,
which a task sets around its work: every record logged meanwhile in that context, by any module,
carries them. The default, ``text``, keeps gunicorn's and Celery's usual human-readable lines.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

CONTEXT_FIELDS = ("job_id", "start", "stop")
_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("fer_log_context", default=None)


@contextlib.contextmanager
def job_context(job_id: str, start: int | None = None, stop: int | None = None) -> Iterator[None]:
    """Records logged inside carry ``job_id`` (and the chunk's ``start`` and ``stop``) in JSON lines."""
    fields: dict[str, Any] = {"job_id": job_id}
    if start is not None:
        fields.update(start=start, stop=stop)
    token = _context.set(fields)
    try:
        yield
    finally:
        _context.reset(token)


def _task_fields() -> dict[str, str]:
    """The running Celery task's id and name (as Celery's TaskFormatter adds them), if any."""
    from celery._state import get_current_task

    task = get_current_task()
    if task is None or task.request is None or task.request.id is None:
        return {}
    return {"task_id": task.request.id, "task_name": task.name}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (tracebacks included)."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds")
        entry: dict[str, Any] = {"timestamp": stamp.replace("+00:00", "Z"), "level": record.levelname,
                                 "logger": record.name, "message": record.getMessage(), "process": record.process}
        entry.update(_context.get() or {})
        for name in CONTEXT_FIELDS:
            if getattr(record, name, None) is not None:
                entry[name] = getattr(record, name)
        entry.update(_task_fields())
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def gunicorn_logconfig(log_format: str) -> dict[str, Any]:
    """gunicorn's ``logconfig_dict`` for ``FER_LOG_FORMAT``: JSON for gunicorn's error and access logs
    and the application's loggers; empty (gunicorn's own text lines) otherwise."""
    if log_format != "json":
        return {}
    handler = {"class": "logging.StreamHandler", "formatter": "json"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "worker.ops.logs.JsonFormatter"}},
        "handlers": {"stderr": {**handler, "stream": "ext://sys.stderr"},
                     "stdout": {**handler, "stream": "ext://sys.stdout"}},
        "root": {"level": "INFO", "handlers": ["stderr"]},
        # No level for gunicorn.error: --log-level keeps setting it.
        "loggers": {"gunicorn.error": {"handlers": ["stderr"], "propagate": False},
                    "gunicorn.access": {"level": "INFO", "handlers": ["stdout"], "propagate": False}},
    }


def _json_wanted() -> bool:
    from worker.settings import get_settings

    return get_settings().log_format == "json"


def _use_json(logger: logging.Logger, **_: object) -> None:
    """``after_setup_logger`` / ``after_setup_task_logger``: swap the formatter of Celery's handlers."""
    if _json_wanted():
        for handler in logger.handlers:
            handler.setFormatter(JsonFormatter())


def _json_from_the_start(instance: Any, **_: object) -> None:
    """``celeryd_init``, in JSON mode: no banner on stdout (``_log_banner`` logs it instead), and JSON
    for what is logged or warned before Celery sets up logging (e.g. its warning against running as
    root); Celery replaces this root handler with its own (``worker_hijack_root_logger``)."""
    if not _json_wanted():
        return
    instance.quiet = True
    logging.captureWarnings(True)
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)


def _log_banner(instance: Any, **_: object) -> None:
    """``celeryd_after_setup``: the banner's facts as one JSON record."""
    if _json_wanted():
        logging.getLogger("celery.apps.worker").info(
            "%s", " ".join(instance.startup_info(artlines=False).split()) + " " + " ".join(
                (instance.extra_info() or "").split()))


def install_celery_hooks() -> None:
    """Connect the signal handlers above (in the worker's main process, before logging is set up)."""
    from celery import signals

    signals.after_setup_logger.connect(_use_json, weak=False)
    signals.after_setup_task_logger.connect(_use_json, weak=False)
    signals.celeryd_init.connect(_json_from_the_start, weak=False)
    signals.celeryd_after_setup.connect(_log_banner, weak=False)


@contextlib.contextmanager
def native_stderr(logger: logging.Logger, enabled: bool = True) -> Iterator[None]:
    """Log what native code writes to file descriptor 2 meanwhile, one record per line.

    LiteRT's C++ prints ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` straight to fd 2
    when a process's first interpreter is made, past Python's logging; in JSON mode that line must
    become a record too. Anything else written to fd 2 meanwhile is captured the same way.
    """
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines():
                level, sep, text = line.partition(": ")
                known = sep and level in ("INFO", "WARNING", "ERROR")
                if line.strip():
                    logger.log(getattr(logging, level) if known else logging.WARNING, "%s", text if known else line)
