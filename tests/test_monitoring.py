"""monitoring/prometheus.yml against docker-compose.yml and the settings (no promtool here: no PyPI
package ships it, so the checks are structural: the file's shape, and that every target is a
service and port that compose and the code really use)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.services import ROOT
from tests.test_containers import ENV_EXAMPLE, compose_config, env_example
from worker.settings import Settings

PROMETHEUS_FILE = ROOT / "monitoring" / "prometheus.yml"
DURATION = re.compile(r"\d+(ms|s|m|h|d|w|y)")
SCRAPE_KEYS = {"job_name", "metrics_path", "scrape_interval", "scrape_timeout", "static_configs", "dns_sd_configs"}


def scrape_configs() -> dict[str, dict]:
    config = yaml.safe_load(PROMETHEUS_FILE.read_text())
    assert set(config) == {"global", "scrape_configs"}
    for key, value in config["global"].items():
        assert key in {"scrape_interval", "scrape_timeout", "evaluation_interval"} and DURATION.fullmatch(value), key
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert len(jobs) == len(config["scrape_configs"]), "job names must be unique"
    for job in jobs.values():
        assert set(job) <= SCRAPE_KEYS, set(job) - SCRAPE_KEYS
    return jobs


def test_prometheus_scrapes_the_api_and_every_worker_replica(tmp_path: Path) -> None:
    jobs = scrape_configs()
    assert set(jobs) == {"fer-api", "fer-worker"}
    services = compose_config(tmp_path, ENV_EXAMPLE)["services"]

    api = jobs["fer-api"]
    assert api.get("metrics_path", "/metrics") == "/metrics"
    [static] = api["static_configs"]
    [target] = static["targets"]
    host, port = target.split(":")
    assert host == "api" and host in services
    assert int(port) in {p["target"] for p in services["api"]["ports"]}, "the api container's port"

    worker = jobs["fer-worker"]
    assert worker.get("metrics_path", "/metrics") == "/metrics"
    [dns] = worker["dns_sd_configs"]
    assert dns["names"] == ["worker"] and "worker" in services
    assert dns["type"] == "A", "an A lookup of the service name gives every replica"
    assert dns["port"] == Settings().metrics_port == 9808
    assert DURATION.fullmatch(dns["refresh_interval"])
    # The workers get FER_METRICS_PORT from compose, and .env.example keeps the port scraped here.
    assert "FER_METRICS_PORT" in services["worker"]["environment"]
    assert env_example()[0]["FER_METRICS_PORT"] == str(dns["port"])


def test_prometheus_service_is_pinned_mounted_and_on_loopback(tmp_path: Path) -> None:
    prometheus = compose_config(tmp_path, ENV_EXAMPLE)["services"]["prometheus"]
    assert re.fullmatch(r"prom/prometheus:v\d+\.\d+\.\d+", prometheus["image"]), "pin an exact version"
    assert prometheus["profiles"] == ["monitoring"]
    assert [(p["target"], p["published"], p.get("host_ip")) for p in prometheus["ports"]] == \
        [(9090, "9090", "127.0.0.1")]
    config_flag = next(arg for arg in prometheus["command"] if arg.startswith("--config.file="))
    mounts = {v["target"]: v for v in prometheus["volumes"]}
    mounted = mounts[config_flag.split("=", 1)[1]]
    assert mounted["type"] == "bind" and Path(mounted["source"]) == PROMETHEUS_FILE and mounted["read_only"]
    assert mounts["/prometheus"]["type"] == "volume"
    assert "pull_policy" not in prometheus
