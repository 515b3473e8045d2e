"""Typed settings from the environment, shared by the API, the workers and the CLI.

Every variable has a default, listed in the README's configuration table. ``REDIS_URL`` has no
prefix; everything else is ``FER_*``.
"""

from __future__ import annotations

import ipaddress
import math
from functools import cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FER_", frozen=True, extra="ignore", populate_by_name=True)

    redis_url: str = Field(
        "redis://localhost:6379/0", validation_alias=AliasChoices("REDIS_URL", "FER_REDIS_URL")
    )
    model_path: Path = MODELS_DIR / "emotion_classifier.tflite"
    model_metadata: Path | None = None  # default: emotion_classifier.json beside the model
    face_detector: Path = MODELS_DIR / "face_detection.json"  # detector models beside it, and framing

    max_urls: int = Field(100_000, ge=1)
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    max_url_length: int = Field(2048, ge=16)
    chunk_size: int = Field(64, ge=1)
    worker_chunks: int = Field(4, ge=1)  # chunks one worker process runs at once (Celery's threads pool)
    # Celery's pool: threads (chunks share the process's model and downloads) or prefork (one process
    # per chunk, FER_WORKER_CHUNKS processes); set here because Celery ignores --pool=prefork once
    # the app configures another pool.
    worker_pool: Literal["threads", "prefork", "solo"] = "threads"
    # Added to a worker's niceness at start: on a host shared with the API, the API's requests get
    # the CPU first and a busy worker still takes what is left (0: as started).
    worker_nice: int = Field(19, ge=0, le=19)
    worker_sched_idle: bool = True  # Linux's SCHED_IDLE: the worker takes only CPU nothing else wants
    job_window: int = Field(8, ge=1)  # chunks of one job in the queue at once
    stall_timeout: float = Field(120.0, gt=0)  # seconds without progress before lost chunks are resent
    sweep_interval: float = Field(10.0, gt=0)
    batch_size: int = Field(16, ge=1)
    decode_threads: int = Field(1, ge=1)  # per process: decoding and face finding beside the download loop
    result_ttl: int = Field(24 * 3600, ge=60)
    predict_timeout: float = Field(30.0, gt=0)
    api_keys_file: Path | None = None  # the API's keys (api/keys.py); unset: no API keys needed

    fetch_concurrency: int = Field(192, ge=1)  # downloads in flight per worker process
    fetch_timeout: float = Field(10.0, gt=0)
    max_image_bytes: int = Field(10_000_000, ge=1)
    max_redirects: int = Field(5, ge=0)
    max_pixels: int = Field(50_000_000, ge=1)
    allowed_networks: Annotated[tuple[Network, ...], NoDecode] = ()

    # Webhooks (worker/webhooks.py): without a secret, a job with a callback_url is refused (400).
    webhook_secret: SecretStr = SecretStr("")
    webhook_retry_delay: float = Field(10.0, gt=0)  # first retry; doubles up to 10 minutes
    webhook_max_age: float = Field(3600.0, gt=0)  # seconds after the first attempt before giving up

    # Observability: each worker host's Prometheus port (worker/exporter.py; 0: none) and the log format
    # of the API and the workers (worker/logs.py): human-readable text, or one JSON object per line.
    metrics_port: int = Field(9808, ge=0, le=65535)
    log_format: Literal["text", "json"] = "text"

    @field_validator("allowed_networks", mode="before")
    @classmethod
    def _parse_networks(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(ipaddress.ip_network(part.strip()) for part in value.split(",") if part.strip())
        return value

    @property
    def metadata_path(self) -> Path:
        if self.model_metadata is not None:
            return self.model_metadata
        stem = self.model_path.stem.removesuffix("_int8")
        return self.model_path.with_name(f"{stem}.json")

    @property
    def visibility_timeout(self) -> int:
        """Seconds before the broker hands an unacknowledged chunk to another worker.

        A chunk's worst case is every URL using its whole fetch budget, behind the URLs of the
        other chunks its process runs, in waves of ``fetch_concurrency``; doubled, plus a margin
        for decoding and inference.
        """
        waves = math.ceil(self.worker_chunks * self.chunk_size / self.fetch_concurrency)
        return int(2 * waves * self.fetch_timeout + 10)


@cache
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()
