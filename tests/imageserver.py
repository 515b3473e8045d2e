"""A real local HTTP image server for tests and benchmarks.

:class:`ImageServer` runs an aiohttp web server on 127.0.0.1 (a free port) in a background
thread, so synchronous tests, asyncio tests and worker subprocesses can all fetch from it::

    with ImageServer() as server:
        url = server.url("/photos/fer_justin.jpg")

It also listens, on the same port and when the machine allows it, on 127.0.0.2 and [::1]
(:attr:`ImageServer.extra_hosts`): URLs there are reachable but must be refused by the SSRF guard,
and :meth:`ImageServer.hits` shows whether anything ever arrived there.

Routes (all data is real; generated images are made with Pillow or zlib at start-up)::

    /photos/<name>           the files of tests/data/photos (image/jpeg)
    /faces/<name>            the files of tests/data/faces (a group photo, a portrait, a cat)
    /status/<code>           an empty answer with that HTTP status
    /flaky/<key>             500 the first time for each key (?failures=N times), then a photo
    /status/429-once/<key>   429 with Retry-After (?retry_after=0) the first time, then a photo
    /slow?seconds=N          sleeps N seconds, then a photo
    /drip?seconds=N          sends headers and a photo's first bytes, then stalls N seconds
    /endless                 chunked body that never ends
    /liar                    declares a 100 kB Content-Length, sends 1 kB, then closes
    /reset                   resets the TCP connection (RST) without answering
    /text                    a small HTML page
    /headers                 the request's headers as JSON
    /truncated.jpg           the first half of a real JPEG
    /bomb.png                a 20000 x 20000 1-bit PNG of ~50 kB (decompression bomb)
    /webp-named.jpg          a real photo re-encoded as WebP, served as image/jpeg
    /redirect/<n>            n relative 302 redirects, then a photo
    /redirect-to?url=U       a redirect (?status=302) to any URL U
    anything added with server.add(path, body, content_type, status, headers)
"""

from __future__ import annotations

import asyncio
import collections
import functools
import io
import socket
import struct
import threading
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web
from PIL import Image

PHOTOS_DIR = Path(__file__).resolve().parent / "data" / "photos"
FACES_DIR = PHOTOS_DIR.parent / "faces"
IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}
DEFAULT_PHOTO = "fer_justin.jpg"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@functools.cache
def png_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A valid all-black 1-bit grayscale PNG of ``width`` x ``height``: tiny file, huge image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = bytes(1 + (width + 7) // 8)  # filter byte 0, then packed pixels
    compressor = zlib.compressobj(9)
    block = 1000
    parts = [compressor.compress(row * min(block, height - y)) for y in range(0, height, block)]
    idat = b"".join(parts) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def reencode(data: bytes, fmt: str, **params: Any) -> bytes:
    """``data`` (any image) re-encoded in Pillow format ``fmt``."""
    with Image.open(io.BytesIO(data)) as img:
        out = io.BytesIO()
        img.save(out, fmt, **params)
        return out.getvalue()


class ImageServer:
    """Context manager running the test image server in a daemon thread."""

    def __init__(self, photos_dir: Path = PHOTOS_DIR, extra_hosts: tuple[str, ...] = ("127.0.0.2", "::1")) -> None:
        self.photos = {p.name: p.read_bytes() for p in sorted(photos_dir.iterdir()) if p.suffix in (".jpg", ".jpeg")}
        self.faces = {p.name: p.read_bytes() for p in sorted(FACES_DIR.iterdir()) if p.suffix in IMAGE_TYPES}
        self.host = "127.0.0.1"
        self.port = 0
        self.extra_hosts: tuple[str, ...] = ()
        self._wanted_extra = extra_hosts
        self._added: dict[str, tuple[bytes, int, dict[str, str]]] = {}
        self._counts: collections.Counter[str] = collections.Counter()
        self._hits: collections.Counter[tuple[str, str]] = collections.Counter()
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        photo = self.photos[DEFAULT_PHOTO]
        self.photo = photo
        big = self.photos.get("deepface_img30.jpg", photo)
        self.truncated_jpeg = big[: len(big) // 2]
        self.webp = reencode(photo, "WEBP", quality=80)
        self.bomb = png_bomb()

    # -- public API -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str, host: str | None = None) -> str:
        """Absolute URL of ``path`` on this server, on ``host`` (default 127.0.0.1)."""
        host = host or self.host
        netloc = f"[{host}]" if ":" in host else host
        return f"http://{netloc}:{self.port}/{path.lstrip('/')}"

    def add(
        self,
        path: str,
        body: bytes,
        content_type: str = "application/octet-stream",
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> str:
        """Serve ``body`` at ``path`` from now on (with extra ``headers``); returns its URL."""
        path = "/" + path.lstrip("/")
        with self._lock:
            self._added[path] = (body, status, {"Content-Type": content_type, **(headers or {})})
        return self.url(path)

    def hits(self, host: str | None = None, path: str | None = None) -> int:
        """Requests received so far, optionally only on one listening address (e.g. "127.0.0.2")
        and/or for one path (e.g. "/status/404", without the query string)."""
        with self._lock:
            return sum(
                n for (h, p), n in self._hits.items() if (host is None or h == host) and (path is None or p == path)
            )

    def start(self) -> ImageServer:
        self._thread = threading.Thread(target=self._run, name="ImageServer", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("image server did not start within 30 s")
        if self._error is not None:
            self._thread.join()
            raise RuntimeError(f"image server failed to start: {self._error!r}") from self._error
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        self._thread = None

    def __enter__(self) -> ImageServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- server thread ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start() if it happens before "ready"
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        app = web.Application(middlewares=[self._count_middleware])
        app.add_routes(self._routes())
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0, handler_cancellation=True)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, 0, backlog=1024)
            await site.start()
            self.port = runner.addresses[0][1]
            extra = []
            for host in self._wanted_extra:
                try:
                    await web.TCPSite(runner, host, self.port, backlog=128).start()
                    extra.append(host)
                except OSError:
                    pass  # no such address on this machine: those URLs are simply refused
            self.extra_hosts = tuple(extra)
            self._ready.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()

    @web.middleware
    async def _count_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        with self._lock:
            self._hits[(str(sockname[0]) if sockname else "?", request.path)] += 1
        return await handler(request)

    def _routes(self) -> list[web.RouteDef]:
        return [
            web.get("/photos/{name}", self._photo),
            web.get("/faces/{name}", self._face_photo),
            web.get("/status/429-once/{key}", self._once_429),
            web.get("/status/{code:\\d+}", self._status),
            web.get("/flaky/{key}", self._flaky),
            web.get("/slow", self._slow),
            web.get("/drip", self._drip),
            web.get("/endless", self._endless),
            web.get("/liar", self._liar),
            web.get("/reset", self._reset),
            web.get("/text", self._text),
            web.get("/headers", self._headers),
            web.get("/truncated.jpg", self._bytes(lambda: self.truncated_jpeg, "image/jpeg")),
            web.get("/bomb.png", self._bytes(lambda: self.bomb, "image/png")),
            web.get("/webp-named.jpg", self._bytes(lambda: self.webp, "image/jpeg")),
            web.get("/redirect/{n:\\d+}", self._redirect),
            web.get("/redirect-to", self._redirect_to),
            web.get("/{path:.*}", self._added_route),
        ]

    def _bytes(self, body: Callable[[], bytes], content_type: str) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            return web.Response(body=body(), content_type=content_type)

        return handler

    def _photo_response(self) -> web.Response:
        return web.Response(body=self.photo, content_type="image/jpeg")

    def _first_times(self, name: str, times: int) -> bool:
        """True for the first ``times`` calls with this name."""
        with self._lock:
            self._counts[name] += 1
            return self._counts[name] <= times

    async def _photo(self, request: web.Request) -> web.StreamResponse:
        body = self.photos.get(request.match_info["name"])
        if body is None:
            raise web.HTTPNotFound()
        return web.Response(body=body, content_type="image/jpeg")

    async def _face_photo(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in self.faces:
            raise web.HTTPNotFound()
        return web.Response(body=self.faces[name], content_type=IMAGE_TYPES[Path(name).suffix])

    async def _status(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=int(request.match_info["code"]), text="status\n")

    async def _flaky(self, request: web.Request) -> web.StreamResponse:
        failures = int(request.query.get("failures", "1"))
        if self._first_times("flaky/" + request.match_info["key"], failures):
            return web.Response(status=500, text="try again\n")
        return self._photo_response()

    async def _once_429(self, request: web.Request) -> web.StreamResponse:
        if self._first_times("429/" + request.match_info["key"], 1):
            headers = {"Retry-After": request.query.get("retry_after", "0")}
            return web.Response(status=429, text="slow down\n", headers=headers)
        return self._photo_response()

    async def _slow(self, request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(float(request.query.get("seconds", "1")))
        return self._photo_response()

    async def _drip(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        response.content_length = len(self.photo)
        await response.prepare(request)
        await response.write(self.photo[:100])
        await asyncio.sleep(float(request.query.get("seconds", "1")))
        await response.write(self.photo[100:])
        return response

    async def _endless(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        block = b"\xff" * 65536
        try:
            while True:  # until the client goes away (the write fails or the handler is cancelled)
                await response.write(block)
        except ConnectionError:
            return response

    async def _liar(self, request: web.Request) -> web.StreamResponse:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n"
        return self._raw_close(request, head + self.photo[:1000])

    async def _reset(self, request: web.Request) -> web.StreamResponse:
        return self._raw_close(request, b"", reset=True)

    def _raw_close(self, request: web.Request, data: bytes, reset: bool = False) -> web.StreamResponse:
        """Write raw bytes, then close (RST if ``reset``) the connection under aiohttp's feet."""
        transport = request.transport
        if transport is None:
            raise web.HTTPInternalServerError()
        if reset:
            sock = transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if data:
            transport.write(data)
        if reset:
            transport.abort()
        else:
            transport.close()
        return web.Response()  # never sent: the connection is gone

    async def _text(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="<!doctype html><title>hello</title><p>not an image</p>\n", content_type="text/html")

    async def _headers(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(dict(request.headers))

    async def _redirect(self, request: web.Request) -> web.StreamResponse:
        n = int(request.match_info["n"])
        if n <= 0:
            return self._photo_response()
        raise web.HTTPFound(location=str(n - 1))  # relative: /redirect/3 -> /redirect/2

    async def _redirect_to(self, request: web.Request) -> web.StreamResponse:
        status = int(request.query.get("status", "302"))
        return web.Response(status=status, headers={"Location": request.query["url"]})

    async def _added_route(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            entry = self._added.get(request.path)
        if entry is None:
            raise web.HTTPNotFound()
        body, status, headers = entry
        return web.Response(body=body, status=status, headers=headers)
