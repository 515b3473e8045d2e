"""Small and unfriendly origins on 127.0.0.1, for tests and ``bench.origins``: each counts what it saw.

- :class:`FolderServer`: what ``python -m http.server`` runs, a ``ThreadingHTTPServer`` with
  ``SimpleHTTPRequestHandler`` serving a folder, with its default listen backlog of 5 (``backlog``
  to change it). HTTP/1.0: one connection per request, as the real one.
- :class:`LimitedServer`: the same, with a deep backlog, answering ``429`` with ``Retry-After``
  to every request beyond ``limit`` in flight; each answered request takes ``latency`` seconds.
- :class:`QueueingServer`: the same, with a deep backlog, serving at most ``workers`` requests at
  a time, each in ``latency`` seconds; the others wait their turn, so its latency grows with the
  requests in flight (a slow origin that queues).
- :class:`SilentServer`: accepts connections and never answers (nor closes them).

Every server runs in daemon threads of this process and records ``requests``, ``in_flight`` and
``max_in_flight`` (requests being handled; for the silent one, connections held open), and the
statuses it sent. ``python -m tests.originservers DIR [--backlog N] [--limit N]`` runs a folder
server in a process of its own, as ``python -m http.server`` would be, printing its port; its
counts are then read (and reset) with ``GET /__counts__`` (``?reset=1``), which is not counted.
Query strings are ignored when serving files, so ``url(name, n)`` makes distinct URLs of one file.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import json
import socket
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any


class _Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.statuses: collections.Counter[int] = collections.Counter()

    def enter(self) -> int:
        with self.lock:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return self.in_flight

    def leave(self, status: int | None = None) -> None:
        with self.lock:
            self.in_flight -= 1
            if status is not None:
                self.statuses[status] += 1


class _Handler(SimpleHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        server = self.server
        if self.path.startswith("/__counts__"):
            return self._send_counts()
        now = server.counts.enter()
        status, left = 200, False
        try:
            if server.limit is not None and now > server.limit:
                status = 429
                self.send_response(429)
                self.send_header("Retry-After", server.retry_after)
                self.send_header("Content-Length", "0")
                server.counts.leave(status)  # closed before end_headers() sends the answer, as below
                left = True
                self.end_headers()
                return
            with server.turns:
                if server.latency:
                    time.sleep(server.latency)
            body = self.send_head()  # SimpleHTTPRequestHandler.do_GET, with the count closed first:
            server.counts.leave(status)  # once the body is sent the client may start its next request
            left = True  # before this thread would get back to count this one as done
            if body:
                with body:
                    self.copyfile(body, self.wfile)
        finally:
            if not left:
                server.counts.leave(status)

    def _send_counts(self) -> None:
        counts = self.server.counts
        with counts.lock:
            body = json.dumps({"requests": counts.requests, "max_in_flight": counts.max_in_flight,
                               "statuses": {str(k): v for k, v in sorted(counts.statuses.items())}}).encode()
        if "reset=1" in self.path:
            counts.reset()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        pass  # quiet, unlike python -m http.server


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, directory: Path, backlog: int, limit: int | None, retry_after: str, latency: float,
                 workers: int | None = None) -> None:
        self.request_queue_size = backlog  # read by server_activate(): the listen() backlog
        self.counts = _Counts()
        self.limit = limit
        self.retry_after = retry_after
        self.latency = latency
        # Requests served at once (the rest wait their turn); unbounded without ``workers``.
        self.turns: threading.Semaphore | contextlib.nullcontext[None] = (
            threading.Semaphore(workers) if workers else contextlib.nullcontext())
        super().__init__(("127.0.0.1", 0), functools.partial(_Handler, directory=str(directory)))


class FolderServer:
    """``python -m http.server`` in a thread: a folder served by ThreadingHTTPServer (backlog 5)."""

    def __init__(self, directory: Path, backlog: int = 5, limit: int | None = None, retry_after: str = "1",
                 latency: float = 0.0, workers: int | None = None) -> None:
        self.directory = directory
        self._server = _Server(directory, backlog, limit, retry_after, latency, workers)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="FolderServer", daemon=True)

    @property
    def counts(self) -> _Counts:
        return self._server.counts

    def url(self, name: str, n: int | None = None) -> str:
        return f"http://127.0.0.1:{self.port}/{name}" + ("" if n is None else f"?n={n}")

    def __enter__(self) -> FolderServer:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


class LimitedServer(FolderServer):
    """A folder server answering 429 (``Retry-After``) beyond ``limit`` requests in flight."""

    def __init__(self, directory: Path, limit: int = 4, retry_after: str = "1", latency: float = 0.05) -> None:
        super().__init__(directory, backlog=1024, limit=limit, retry_after=retry_after, latency=latency)


class QueueingServer(FolderServer):
    """A folder server with a deep backlog that serves ``workers`` requests at a time, each taking
    ``latency`` seconds: beyond that, requests wait in line, and each answer comes later."""

    def __init__(self, directory: Path, workers: int = 4, latency: float = 0.1) -> None:
        super().__init__(directory, backlog=1024, latency=latency, workers=workers)


class SilentServer:
    """Accepts every connection and never answers; ``counts`` holds the connections (open ones in flight)."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
        self.port = self._listener.getsockname()[1]
        self.counts = _Counts()
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="SilentServer", daemon=True)

    def url(self, name: str, n: int | None = None) -> str:
        return f"http://127.0.0.1:{self.port}/{name}" + ("" if n is None else f"?n={n}")

    def _serve(self) -> None:
        self._listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                self._reap()
                continue
            except OSError:
                return
            self._held.append(conn)
            self.counts.enter()
            self._reap()

    def _reap(self) -> None:
        """Connections the client closed leave the count (a read of 0 bytes: no answer was ever sent)."""
        for conn in list(self._held):
            conn.setblocking(False)
            try:
                closed = conn.recv(65536) == b""  # the request's bytes are read and dropped
            except BlockingIOError:
                continue
            except OSError:
                closed = True
            if closed:
                self._held.remove(conn)
                conn.close()
                self.counts.leave()

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(10)
        self._listener.close()
        for conn in self._held:
            conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="A folder server in a process of its own (see the module docstring).")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--backlog", type=int, default=5)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    server = FolderServer(args.directory, backlog=args.backlog, limit=args.limit, latency=args.latency)
    print(server.port, flush=True)
    try:
        server._server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
