"""worker.settings: reading the environment, converting, checking bounds, hiding the secret."""

from __future__ import annotations

import dataclasses
import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest

from worker.settings import USER_AGENT, VERSION, Settings, SettingsError, env_names


def test_defaults_read_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FER_CHUNK_SIZE", "7")
    assert Settings().chunk_size == 64
    assert Settings.from_env().chunk_size == 7


def test_from_env_converts_each_type() -> None:
    settings = Settings.from_env({
        "FER_CHUNK_SIZE": "8", "FER_FETCH_TIMEOUT": "2.5", "FER_WORKER_SCHED_IDLE": "off",
        "FER_MODEL_PATH": "/m/x_int8.tflite", "FER_API_KEYS_FILE": "", "FER_LOG_FORMAT": "json",
        "FER_ALLOWED_NETWORKS": "127.0.0.1/32, ::1/128,", "FER_WEBHOOK_SECRET": "s3cret",
    })
    assert settings.chunk_size == 8 and settings.fetch_timeout == 2.5 and settings.worker_sched_idle is False
    assert settings.model_path == Path("/m/x_int8.tflite") and settings.metadata_path == Path("/m/x.json")
    assert settings.api_keys_file is None and settings.log_format == "json"
    assert settings.allowed_networks == (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))
    assert settings.webhook_secret == "s3cret"


@pytest.mark.parametrize(("text", "value"), [("1", True), ("TRUE", True), ("yes", True), ("0", False),
                                             ("False", False), ("no", False)])
def test_booleans(text: str, value: bool) -> None:
    assert Settings.from_env({"FER_WORKER_SCHED_IDLE": text}).worker_sched_idle is value


def test_names_match_regardless_of_case_and_redis_url_wins() -> None:
    assert Settings.from_env({"fer_batch_size": "4"}).batch_size == 4
    both = {"FER_REDIS_URL": "redis://second:6379/0", "REDIS_URL": "redis://first:6379/0"}
    assert Settings.from_env(both).redis_url == "redis://first:6379/0"
    assert Settings.from_env({"FER_REDIS_URL": "redis://only:6379/0"}).redis_url == "redis://only:6379/0"
    assert env_names("redis_url") == ("REDIS_URL", "FER_REDIS_URL") and env_names("chunk_size") == ("FER_CHUNK_SIZE",)


def test_overrides_come_after_the_environment() -> None:
    assert Settings.from_env({"FER_CHUNK_SIZE": "8"}, chunk_size=9).chunk_size == 9


def test_every_bad_value_is_named_in_one_error() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"FER_CHUNK_SIZE": "0", "FER_FETCH_TIMEOUT": "soon", "FER_LOG_FORMAT": "xml",
                           "FER_WORKER_NICE": "20", "FER_WORKER_SCHED_IDLE": "maybe",
                           "FER_ALLOWED_NETWORKS": "10.0.0.0/33"})
    message = str(caught.value)
    for part in ("FER_CHUNK_SIZE='0': must be >= 1", "FER_FETCH_TIMEOUT='soon'", "FER_LOG_FORMAT='xml': must be one of",
                 "FER_WORKER_NICE='20': must be <= 19", "FER_WORKER_SCHED_IDLE='maybe': must be true or false",
                 "FER_ALLOWED_NETWORKS='10.0.0.0/33'"):
        assert part in message
    with pytest.raises(SettingsError, match="FER_STALL_TIMEOUT=.*must be > 0"):
        Settings(stall_timeout=0)
    with pytest.raises(SettingsError, match="FER_BATCH_SIZE=True: must be an integer"):
        Settings(batch_size=True)


def test_replace_checks_again_and_keeps_the_original() -> None:
    settings = Settings()
    assert settings.replace(batch_size="4").batch_size == 4 and settings.batch_size == 8
    with pytest.raises(SettingsError, match="FER_MAX_URLS"):
        settings.replace(max_urls=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.batch_size = 1  # type: ignore[misc]


def test_the_secret_stays_out_of_repr_and_errors() -> None:
    settings = Settings(webhook_secret="hunter2")
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings)
    with pytest.raises(SettingsError) as caught:
        Settings(webhook_secret=12345)  # not a string: the error shows no value
    assert "12345" not in str(caught.value) and "FER_WEBHOOK_SECRET=(hidden)" in str(caught.value)


def test_the_worker_imports_no_pydantic() -> None:
    """What the settings module exists for: every worker process saves pydantic's ~11 MB."""
    code = "import sys, worker.tasks; print(sorted(m for m in sys.modules if m.split('.')[0].startswith('pydantic')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.stdout.strip() == "[]"


def test_the_user_agent_names_the_version_and_refuses_line_breaks() -> None:
    import tomllib

    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    version = tomllib.loads(pyproject.read_text())["project"]["version"]
    assert VERSION == version
    assert Settings().user_agent == USER_AGENT == f"fer-batch/{version}"
    assert Settings(user_agent="").user_agent == USER_AGENT  # empty in an env file: the default
    assert Settings(user_agent=" mine/1 (+ops@example.com) ").user_agent == "mine/1 (+ops@example.com)"
    with pytest.raises(SettingsError, match="FER_USER_AGENT.*control characters"):
        Settings.from_env({"FER_USER_AGENT": "mine/1\r\nX-Injected: 1"})


def test_the_visibility_timeout_covers_a_chunk_at_one_origin() -> None:
    """Every URL of a process's chunks at one origin, in waves of FER_FETCH_PER_ORIGIN."""
    assert Settings().visibility_timeout == 2 * (4 * 64 // 8) * 10 + 10
    assert Settings(fetch_per_origin=500).visibility_timeout == 2 * 2 * 10 + 10  # the slots bind first
    with pytest.raises(SettingsError, match="FER_FETCH_PER_ORIGIN"):
        Settings(fetch_per_origin=0)
