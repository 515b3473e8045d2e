"""Shared fixtures: a real redis-server, real Celery worker processes, typed test settings.

Every test that needs Redis uses the one session server on a free loopback port; jobs have
random ids, so tests do not interfere. Settings reach worker processes through the environment
(``TEST_ENV``), exactly as in production.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.services import ROOT, WorkerProcess, redis_server
from worker.settings import Settings
from worker.store.jobs import JobStore, connect

if TYPE_CHECKING:
    from flask import Flask

# Settings shared by the API under test and the worker processes (small limits keep tests fast).
TEST_ENV = {
    "FER_ALLOWED_NETWORKS": "127.0.0.1/32",
    "FER_FETCH_TIMEOUT": "3",
    "FER_CHUNK_SIZE": "8",
    "FER_FETCH_CONCURRENCY": "8",
    "FER_PREDICT_TIMEOUT": "20",
    "FER_METRICS_PORT": "0",  # no metrics port per test worker (tests/test_metrics.py sets a free one)
}


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture(scope="session")
def env(redis_url: str) -> dict[str, str]:
    return {"REDIS_URL": redis_url, **TEST_ENV}


@pytest.fixture(scope="session")
def settings(env: dict[str, str]) -> Settings:
    return Settings.from_env(env)


@pytest.fixture()
def store(settings: Settings) -> Iterator[JobStore]:
    client = connect(settings.redis_url)
    yield JobStore(client, settings.result_ttl)
    client.close()


@pytest.fixture()
def make_app() -> Iterator[Callable[..., Flask]]:
    """Build API apps for given settings (plus updates); closes their Redis and broker connections
    afterwards."""
    from api import create_app

    apps: list[Flask] = []

    def make(settings: Settings, **updates: Any) -> Flask:
        apps.append(create_app(settings.replace(**updates), TESTING=True))
        return apps[-1]

    yield make
    for app in apps:
        app.extensions["fer.store"].redis.close()
        app.extensions["fer.celery"].close()


@pytest.fixture(scope="session")
def worker(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """One real ``python -m worker`` (as shipped: one process, threads) for the whole session."""
    proc = WorkerProcess(env, "session-worker", log_dir=tmp_path_factory.mktemp("workers"))
    try:
        yield proc.wait_ready()
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def photos_dir():
    return ROOT / "tests" / "data" / "photos"
