"""Each worker's Prometheus endpoint: the metrics of all its pool processes, added up, on ``FER_METRICS_PORT``.

Celery's prefork pool runs tasks in child processes, and a worker command's first node starts a node
per extra CPU (``worker.nodes``: they inherit this node's directory and serve no port of their own),
so the metrics (``worker.ops.metrics``) use prometheus_client's multiprocess mode. ``MetricsStep``, a
bootstep of the worker's main process:

- gives each worker a fresh directory (``PROMETHEUS_MULTIPROC_DIR``) before the pool forks; every
  pool process writes its values into its own files there;
- serves ``/metrics`` on ``0.0.0.0:FER_METRICS_PORT`` from a thread of the main process, adding up
  every file: counters and histograms of a pool process that exited (``--max-tasks-per-child``, a
  crash) keep counting; the in-progress gauge of a dead process is dropped (``mark_process_dead``,
  on ``worker_process_shutdown`` in the child, and at scrape time for a child that was killed),
  while the main process's own file holds it at zero, so the series never leaves the page;
- removes the directory when the worker exits (and, at start, those of killed workers).

``FER_METRICS_PORT=0`` turns it all off (the values then stay in each process's memory, unserved).
A port already taken is logged as an error and the worker runs on without its endpoint.
"""

from __future__ import annotations

import atexit
import glob
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from typing import Any

from celery import bootsteps
from celery.signals import worker_process_shutdown

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DIR_PREFIX = "fer-worker-metrics-"  # then the main process's pid
_LIVE_FILE = re.compile(r"gauge_live\w*?_(\d+)\.db$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_directories() -> None:
    """The directories of workers that were killed (SIGKILL runs no exit handler), by their pid."""
    for path in glob.glob(os.path.join(tempfile.gettempdir(), f"{DIR_PREFIX}*-*")):
        match = re.fullmatch(rf"{DIR_PREFIX}(\d+)-\w+", os.path.basename(path))
        if match and not _alive(int(match[1])):
            shutil.rmtree(path, ignore_errors=True)


class _PoolCollector:
    """prometheus_client's MultiProcessCollector, after dropping the live gauges of dead processes."""

    def __init__(self, path: str) -> None:
        from prometheus_client.multiprocess import MultiProcessCollector

        self.path = path
        self.collector = MultiProcessCollector(None, path)

    def collect(self) -> Iterable[Any]:
        from prometheus_client import multiprocess

        for name in glob.glob(os.path.join(self.path, "gauge_live*.db")):
            match = _LIVE_FILE.search(name)
            if match and not _alive(int(match[1])):
                multiprocess.mark_process_dead(int(match[1]), self.path)
        return self.collector.collect()


@worker_process_shutdown.connect
def _pool_process_exits(pid: int | None = None, **_: object) -> None:
    """A pool child's in-progress gauge goes with it."""
    path = os.environ.get(MULTIPROC_ENV)
    if path and os.path.isdir(path):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid(), path)


class MetricsStep(bootsteps.StartStopStep):
    """Serves the pool's metrics on ``FER_METRICS_PORT`` from the worker's main process."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, parent: object, **kwargs: object) -> None:
        from worker.settings import get_settings

        super().__init__(parent, **kwargs)
        self.port = get_settings().metrics_port
        self.server: Any = None
        self.path: str | None = None
        if self.port:  # before the Pool step forks the children: they inherit the variable
            _remove_stale_directories()
            self.path = tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{os.getpid()}-")
            os.environ[MULTIPROC_ENV] = self.path
            # The main process's own zeros: every unlabelled series (the in-progress gauge among
            # them) is on the page from the start, and stays there while the pool replaces a child.
            from worker.ops import metrics

            metrics.get()
            owner = os.getpid()
            # At exit of the main process only (pool children inherit atexit handlers).
            atexit.register(lambda: os.getpid() == owner and shutil.rmtree(self.path or "", ignore_errors=True))

    def start(self, worker: object) -> None:
        if not self.port or self.path is None:
            return
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry()
        registry.register(_PoolCollector(self.path))
        try:
            self.server, _ = start_http_server(self.port, addr="0.0.0.0", registry=registry)
        except OSError as exc:
            log.error("metrics not served: cannot listen on port %d (FER_METRICS_PORT): %s", self.port, exc)
            return
        log.info("metrics on http://0.0.0.0:%d/metrics", self.port)

    def stop(self, worker: object) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
