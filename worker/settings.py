"""Typed settings from the environment, shared by the API, the workers and the CLI.

Every variable has a default, listed in docs/configuration.md (tests/test_docs.py keeps it so). ``REDIS_URL`` has no
prefix (``FER_REDIS_URL`` is read when it is absent); everything else is ``FER_`` and the field's
name in capitals, e.g. ``FER_CHUNK_SIZE``. Names are matched regardless of case.

``Settings.from_env()`` reads the environment; ``Settings(**values)`` takes the given values over
the defaults and reads nothing. Either way each value is converted to its field's type (strings as
the environment gives them, e.g. ``"127.0.0.1/32, ::1/128"`` for a network list) and checked
against its bounds; anything wrong raises one :class:`SettingsError` naming every bad variable.

A plain frozen dataclass, not pydantic-settings: importing pydantic costs each worker process about
11 MB of its 150 MB budget (bench/results/HISTORY.md, "Memory").
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import typing
from collections.abc import Callable, Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from types import UnionType
from typing import Any, Literal


def _models_dir() -> Path:
    """The model files' folder: the package ``models`` (importlib.resources), in the checkout, the worker
    image and an installed wheel alike. The API image has no models: there, the folder beside worker/."""
    try:
        return Path(str(resources.files("models")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "models"


MODELS_DIR = _models_dir()
VERSION = "0.1.0"  # pyproject.toml's version (the worker image does not install the package's metadata)
# The default User-Agent names the software only: the project has no public home to link yet, and
# an operator's own name and contact belong in FER_USER_AGENT (docs/fetching.md).
USER_AGENT = f"fer-batch/{VERSION}"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class SettingsError(ValueError):
    """One or more settings have a value of the wrong type or out of bounds."""


def _setting(default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
             parse: Callable[[Any], Any] | None = None, secret: bool = False) -> Any:
    checks = {"ge": ge, "gt": gt, "le": le, "parse": parse}
    metadata = {key: value for key, value in checks.items() if value is not None}
    return dataclasses.field(default=default, repr=not secret, metadata=metadata)


def _parse_user_agent(value: Any) -> str:
    """A header-safe User-Agent; empty means the default."""
    if not isinstance(value, str):
        raise TypeError("must be a string")
    value = value.strip()
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise ValueError("must not contain control characters (line breaks included)")
    return value or USER_AGENT


def _parse_networks(value: Any) -> tuple[Network, ...]:
    """``"10.0.0.0/8, ::1/128"`` (or networks, or their strings) as a tuple of networks."""
    parts = value.split(",") if isinstance(value, str) else value
    return tuple(ipaddress.ip_network(part.strip() if isinstance(part, str) else part) for part in parts
                 if not isinstance(part, str) or part.strip())


@dataclasses.dataclass(frozen=True)
class Settings:
    redis_url: str = "redis://localhost:6379/0"
    model_path: Path = MODELS_DIR / "emotion_classifier.tflite"
    model_metadata: Path | None = None  # default: emotion_classifier.json beside the model
    face_detector: Path = MODELS_DIR / "face_detection.json"  # detector models beside it, and framing

    max_urls: int = _setting(100_000, ge=1)
    max_body_bytes: int = _setting(16 * 1024 * 1024, ge=1024)
    max_url_length: int = _setting(2048, ge=16)
    chunk_size: int = _setting(64, ge=1)
    worker_chunks: int = _setting(4, ge=1)  # chunks one worker process runs at once (Celery's threads pool)
    # Worker processes one worker command runs (worker/nodes.py); 0: the CPUs it may use (worker/cpus.py).
    worker_processes: int = _setting(0, ge=0)
    # Celery's pool: threads (chunks share the process's model and downloads) or prefork (one process
    # per chunk, FER_WORKER_CHUNKS processes); set here because Celery ignores --pool=prefork once
    # the app configures another pool.
    worker_pool: Literal["threads", "prefork", "solo"] = "threads"
    # Added to a worker's niceness at start: on a host shared with the API, the API's requests get
    # the CPU first and a busy worker still takes what is left (0: as started).
    worker_nice: int = _setting(19, ge=0, le=19)
    worker_sched_idle: bool = True  # Linux's SCHED_IDLE: the worker takes only CPU nothing else wants
    job_window: int = _setting(8, ge=1)  # chunks of one job in the queue at once
    stall_timeout: float = _setting(120.0, gt=0)  # seconds without progress before lost chunks are resent
    sweep_interval: float = _setting(10.0, gt=0)
    batch_size: int = _setting(8, ge=1)
    decode_threads: int = _setting(1, ge=1)  # per process: decoding and face finding beside the download loop
    result_ttl: int = _setting(24 * 3600, ge=60)
    predict_timeout: float = _setting(30.0, gt=0)
    api_keys_file: Path | None = None  # the API's keys (api/keys.py); unset: no API keys needed

    fetch_concurrency: int = _setting(192, ge=1)  # downloads in flight per worker process
    fetch_per_origin: int = _setting(8, ge=1)  # requests in flight per origin per process, at first (net/origins.py)
    # ... and the most an origin's limit grows to while it answers slowly and steadily (worker/net/limits.py;
    # Little's law bounds the growth below this); at most FER_FETCH_CONCURRENCY, which is the default;
    # FER_FETCH_PER_ORIGIN or less keeps the limit fixed.
    fetch_per_origin_max: int = _setting(192, ge=1)
    user_agent: str = _setting(USER_AGENT, parse=_parse_user_agent)  # on image fetches and webhooks
    fetch_timeout: float = _setting(10.0, gt=0)
    max_image_bytes: int = _setting(10_000_000, ge=1)
    max_redirects: int = _setting(5, ge=0)
    max_pixels: int = _setting(50_000_000, ge=1)
    allowed_networks: tuple[Network, ...] = _setting((), parse=_parse_networks)

    # Webhooks (worker/webhooks.py): without a secret, a job with a callback_url is refused (400).
    webhook_secret: str = _setting("", secret=True)  # never in repr() or logs
    webhook_retry_delay: float = _setting(10.0, gt=0)  # first retry; doubles up to 10 minutes
    webhook_max_age: float = _setting(3600.0, gt=0)  # seconds after the first attempt before giving up

    # Observability: each worker host's Prometheus port (worker/ops/exporter.py; 0: none) and the log format
    # of the API and the workers (worker/ops/logs.py): human-readable text, or one JSON object per line.
    metrics_port: int = _setting(9808, ge=0, le=65535)
    metrics_origins: int = _setting(10, ge=0)  # origins named in the per-origin metrics; the rest are "other"
    log_format: Literal["text", "json"] = "text"

    def __post_init__(self) -> None:
        problems = []
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            try:
                object.__setattr__(self, spec.name, _convert(spec, value))
            except (TypeError, ValueError) as exc:
                shown = "(hidden)" if not spec.repr else repr(value)
                problems.append(f"{env_names(spec.name)[0]}={shown}: {exc}")
        if problems:
            raise SettingsError("invalid settings: " + "; ".join(problems))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``environ`` (default: ``os.environ``), then ``overrides``, over the defaults."""
        found = {key.upper(): value for key, value in (os.environ if environ is None else environ).items()}
        values: dict[str, Any] = {}
        for spec in dataclasses.fields(cls):
            name = next((name for name in env_names(spec.name) if name in found), None)
            if name is not None:
                values[spec.name] = found[name]
        return cls(**(values | overrides))

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes``, converted and checked like any other value."""
        return dataclasses.replace(self, **changes)

    @property
    def metadata_path(self) -> Path:
        if self.model_metadata is not None:
            return self.model_metadata
        stem = self.model_path.stem.removesuffix("_int8")
        return self.model_path.with_name(f"{stem}.json")

    @property
    def per_origin_ceiling(self) -> int:
        """The most requests in flight one origin's limit may grow to in one process."""
        return min(self.fetch_concurrency, max(self.fetch_per_origin, self.fetch_per_origin_max))

    @property
    def visibility_timeout(self) -> int:
        """Seconds before the broker hands an unacknowledged chunk to another worker.

        A chunk's worst case is every URL using its whole fetch budget, behind the URLs of the
        other chunks its process runs, all at one origin: in waves of ``fetch_per_origin`` (or of
        ``fetch_concurrency``, if smaller); doubled, plus a margin for decoding and inference.
        """
        waves = math.ceil(self.worker_chunks * self.chunk_size / min(self.fetch_concurrency, self.fetch_per_origin))
        return int(2 * waves * self.fetch_timeout + 10)


def env_names(field: str) -> tuple[str, ...]:
    """The environment variables a field is read from, the first present winning."""
    return ("REDIS_URL", "FER_REDIS_URL") if field == "redis_url" else (f"FER_{field.upper()}",)


@cache
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings.from_env()


# -- conversion -----------------------------------------------------------------------------------

_TRUE = frozenset({"1", "true", "yes", "on", "t", "y"})
_FALSE = frozenset({"0", "false", "no", "off", "f", "n"})


def _convert(spec: dataclasses.Field[Any], value: Any) -> Any:
    value = _to_type(_TYPES[spec.name], value, spec.metadata.get("parse"))
    for bound, holds, words in (("ge", float.__ge__, ">="), ("gt", float.__gt__, ">"), ("le", float.__le__, "<=")):
        limit = spec.metadata.get(bound)
        if limit is not None and not holds(float(value), float(limit)):
            raise ValueError(f"must be {words} {limit}")
    return value


def _to_type(kind: Any, value: Any, parse: Callable[[Any], Any] | None) -> Any:
    if parse is not None:
        return parse(value)
    if isinstance(kind, UnionType):  # X | None: None, or an empty variable, means unset
        if value is None or value == "":
            return None
        (kind,) = [arg for arg in typing.get_args(kind) if arg is not type(None)]
    if typing.get_origin(kind) is Literal:
        if value not in typing.get_args(kind):
            raise ValueError(f"must be one of {', '.join(typing.get_args(kind))}")
        return value
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
        raise ValueError("must be true or false")
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise TypeError("must be an integer")
        return int(value)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise TypeError("must be a number")
        number = float(value)
        if math.isnan(number):
            raise ValueError("must be a number")
        return number
    if kind is Path:
        return Path(value)
    if not isinstance(value, str):
        raise TypeError("must be a string")
    return value


_TYPES = typing.get_type_hints(Settings, {"Network": Network, **globals()})
