"""The benchmark's image server: aiohttp on 127.0.0.1, in its own process, with per-request latency.

``GET /<ms>/<name>`` waits ``ms`` milliseconds (asyncio.sleep, so waits overlap like a remote
server's round trips), then answers the bytes of ``<name>`` from the image directory, held in
memory. One server process serves every latency; the URL says which, and each latency has a port
of its own (``ORIGINS`` of them), so that each is an origin of its own to the workers: their
per-origin limits (worker/net/limits.py) learn an origin's latency, and one origin whose latency
jumped tenfold between rows would look like a server queueing its requests.

It runs in a separate process (not in a thread of the benchmark, as ``tests.imageserver`` does) so
that the in-process methods do not share their GIL with it. It still shares the machine's cores
with the method under test, as a real server would not: at 0 ms that cost is part of every number.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from aiohttp import web

from bench import ROOT

ORIGINS = 8  # ports, one per latency in the order the latencies are first asked for
TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}


def make_app(directory: Path) -> web.Application:
    images = {path.name: (path.read_bytes(), TYPES[path.suffix.lower()])
              for path in directory.iterdir() if path.suffix.lower() in TYPES}

    async def image(request: web.Request) -> web.StreamResponse:
        found = images.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        delay = int(request.match_info["ms"]) / 1000
        if delay > 0:
            await asyncio.sleep(delay)
        return web.Response(body=found[0], content_type=found[1])

    app = web.Application()
    app.add_routes([web.get(r"/{ms:\d+}/{name}", image)])
    return app


async def serve(directory: Path, port: int, origins: int = ORIGINS) -> None:
    runner = web.AppRunner(make_app(directory), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    for n in range(origins):
        await web.TCPSite(runner, "127.0.0.1", port + n if port else 0, backlog=2048).start()
    print(" ".join(str(address[1]) for address in runner.addresses), flush=True)  # the parent reads the ports
    try:
        await asyncio.Event().wait()  # until the parent terminates us
    finally:
        await runner.cleanup()


class ImageServerProcess:
    """``python -m bench.server DIR`` as a subprocess; ``url(name, ms)`` builds its URLs."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.proc: subprocess.Popen[str] | None = None
        self.ports: list[int] = []
        self.origins: dict[int, int] = {}  # latency (ms) -> its port

    def __enter__(self) -> ImageServerProcess:
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.server", str(self.directory)], cwd=ROOT,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        words = line.split()
        if not words or not all(word.isdigit() for word in words):
            self.proc.kill()
            raise RuntimeError(f"image server did not start (said {line!r})")
        self.ports = [int(word) for word in words]
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def port(self, latency_ms: int) -> int:
        """The port of the origin at ``latency_ms``: each latency its own, in the order first asked."""
        if latency_ms not in self.origins:
            self.origins[latency_ms] = self.ports[len(self.origins) % len(self.ports)]
        return self.origins[latency_ms]

    def url(self, name: str, latency_ms: int) -> str:
        return f"http://127.0.0.1:{self.port(latency_ms)}/{latency_ms}/{name}"

    def urls(self, names: Iterator[str] | tuple[str, ...] | list[str], latency_ms: int) -> list[str]:
        return [self.url(name, latency_ms) for name in names]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.directory, args.port))


if __name__ == "__main__":
    main()
