"""API keys, tenants and a key's limits, against the real session Redis.

Apps are built by ``create_app`` with ``api_keys_file`` set to a file written by ``api.keys``
(what ``fer-batch keys add`` writes); no worker consumes their tasks (Redis database 7), so jobs
stay queued and count against their key's quota. The CLI runs against a real gunicorn.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from api.cli import main
from api.keys import KeysFileError, add_key, hash_key, remove_key
from tests.services import ROOT, gunicorn
from tests.test_api import assert_error
from worker.settings import Settings
from worker.store.jobs import OwnerLoad
from worker.store.owners import Owners

API_DOCS = (ROOT / "docs" / "api.md").read_text()
JOB_ENDPOINTS = [("get", "/jobs/{id}"), ("get", "/jobs/{id}?offset=0&limit=1"), ("get", "/jobs/{id}/results.csv"),
                 ("get", "/jobs/{id}/faces.csv"), ("delete", "/jobs/{id}")]
UNKNOWN_JOB = "0123456789abcdef0123456789abcdef"


@dataclass
class Keys:
    """A keys file and the keys in it, by short name (each test gets fresh key names)."""

    path: Path
    keys: dict[str, str]
    names: dict[str, str]

    def header(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}


def idle_settings(settings: Settings, path: Path, **updates: Any) -> Settings:
    return settings.replace(**{"redis_url": settings.redis_url.rsplit("/", 1)[0] + "/7",
                                "api_keys_file": path, **updates})


@pytest.fixture()
def keys(tmp_path: Path) -> Keys:
    path = tmp_path / "keys.json"
    tag = secrets.token_hex(4)
    limits = {"a": {"quota_urls": 10}, "b": {"quota_urls": 10}, "jobs": {"quota_urls": 100, "max_jobs": 2},
              "rate": {"quota_urls": 100, "rate_per_minute": 3}}
    names = {who: f"{who}-{tag}" for who in limits}
    return Keys(path, {who: add_key(path, names[who], **kw) for who, kw in limits.items()}, names)


@pytest.fixture()
def keyed(make_app: Callable[..., Flask], settings: Settings, keys: Keys) -> FlaskClient:
    return make_app(idle_settings(settings, keys.path), predict_timeout=0.5).test_client()


def submit(client: FlaskClient, headers: dict[str, str], urls: list[Any]) -> Any:
    return client.post("/jobs", json={"urls": urls}, headers=headers)


def job_id_of(response: Any) -> str:
    assert response.status_code == 202, response.json
    return response.json["job_id"]


def urls(count: int) -> list[str]:
    return [f"http://a.example/{secrets.token_hex(4)}.jpg" for _ in range(count)]


# -- keys off, keys on ------------------------------------------------------------------------


def test_keys_off_needs_no_header(make_app: Callable[..., Flask], settings: Settings) -> None:
    client = make_app(idle_settings(settings, None)).test_client()
    for headers in ({}, {"Authorization": "Bearer fer_whatever"}):
        job_id = job_id_of(submit(client, headers, urls(2)))
        assert client.get(f"/jobs/{job_id}", headers=headers).status_code == 200
        assert client.get(f"/jobs/{job_id}/results.csv", headers=headers).status_code == 200
        assert client.delete(f"/jobs/{job_id}", headers=headers).json["status"] == "cancelled"


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer  ", "Basic YWxpY2U6c2VjcmV0", "fer_abc",
                                           "Bearer fer_not-a-key", "hash", "Token key"])
def test_every_endpoint_but_health_needs_a_valid_key(keyed: FlaskClient, keys: Keys, authorization: str | None
                                                     ) -> None:
    if authorization == "hash":  # the stored hash is not a key
        authorization = f"Bearer {hash_key(keys.keys['a'])}"
    elif authorization == "Token key":
        authorization = f"Token {keys.keys['a']}"
    headers = {} if authorization is None else {"Authorization": authorization}
    job_id = job_id_of(submit(keyed, keys.header("a"), urls(1)))
    calls = [("post", "/jobs", {"json": {"urls": urls(1)}}), ("post", "/predict", {"json": {"url": urls(1)[0]}}),
             ("get", "/nothing/here", {}), ("put", "/jobs", {})]
    calls += [(method, path.format(id=job_id), {}) for method, path in JOB_ENDPOINTS]
    calls += [(method, path.format(id=UNKNOWN_JOB), {}) for method, path in JOB_ENDPOINTS]
    for method, path, kwargs in calls:
        response = getattr(keyed, method)(path, headers=headers, **kwargs)
        error = assert_error(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Bearer realm=")
        assert ("invalid_token" in response.headers["WWW-Authenticate"]) == ("not valid" in error["message"])
    assert keyed.get("/healthz", headers=headers).json == {"status": "ok"}
    ready = keyed.get("/readyz", headers=headers)  # no worker on database 7: 503, but not 401
    assert ready.status_code == 503 and ready.json["error"]["code"] == "no_worker"
    assert keyed.get(f"/jobs/{job_id}", headers=keys.header("a")).json["status"] == "queued"  # B did not cancel


def test_the_scheme_is_case_insensitive(keyed: FlaskClient, keys: Keys) -> None:
    job_id = job_id_of(submit(keyed, {"Authorization": f"bearer {keys.keys['a']}"}, urls(1)))
    assert keyed.get(f"/jobs/{job_id}", headers={"Authorization": f"BEARER  {keys.keys['a']} "}).status_code == 200


def test_another_keys_job_is_not_found_on_every_endpoint(keyed: FlaskClient, keys: Keys) -> None:
    a, b = keys.header("a"), keys.header("b")
    secret_urls = urls(3)
    batch = job_id_of(submit(keyed, a, secret_urls))
    predicted = assert_error(keyed.post("/predict", json={"url": secret_urls[0]}, headers=a), 504, "timeout")
    for job_id in (batch, predicted["job_id"]):
        assert keyed.get(f"/jobs/{job_id}", headers=a).status_code == 200  # its own key sees it
        for method, path in JOB_ENDPOINTS:
            theirs = getattr(keyed, method)(path.format(id=job_id), headers=b)
            unknown = getattr(keyed, method)(path.format(id=UNKNOWN_JOB), headers=b)
            assert_error(theirs, 404, "job_not_found")
            # Exactly an unknown job's answer: nothing tells that the job exists.
            assert theirs.get_data(as_text=True).replace(job_id, UNKNOWN_JOB) == unknown.get_data(as_text=True)
            assert dict(theirs.headers) == dict(unknown.headers)
            assert not any(url in theirs.get_data(as_text=True) for url in secret_urls)
    listed_by_b = keyed.get("/jobs?limit=100", headers=b).json
    assert not {batch, predicted["job_id"]} & {job["job_id"] for job in listed_by_b["jobs"]}  # nor listed
    listed_by_a = keyed.get("/jobs?limit=2", headers=a).json
    assert [job["job_id"] for job in listed_by_a["jobs"]] == [predicted["job_id"], batch]  # its own, newest first
    assert keyed.get(f"/jobs/{batch}", headers=a).json["status"] == "queued"  # B's DELETE changed nothing
    assert keyed.delete(f"/jobs/{batch}", headers=a).json["status"] == "cancelled"
    rows = keyed.get(f"/jobs/{batch}/results.csv", headers=a).get_data(as_text=True).splitlines()[1:]
    assert [row.split(",")[1] for row in rows] == secret_urls


def test_a_job_stored_without_keys_belongs_to_no_key(make_app: Callable[..., Flask], settings: Settings,
                                                     keyed: FlaskClient, keys: Keys) -> None:
    open_app = make_app(idle_settings(settings, None)).test_client()
    job_id = job_id_of(submit(open_app, {}, urls(1)))
    assert_error(keyed.get(f"/jobs/{job_id}", headers=keys.header("a")), 404, "job_not_found")
    assert open_app.get(f"/jobs/{job_id}").status_code == 200  # keys off: every job is visible


# -- limits -----------------------------------------------------------------------------------


def test_quota_of_queued_urls(keyed: FlaskClient, keys: Keys) -> None:
    a = keys.header("a")  # quota_urls 10
    first = job_id_of(submit(keyed, a, urls(6)))
    over = submit(keyed, a, urls(5))
    error = assert_error(over, 429, "quota_exceeded")
    assert over.headers["Retry-After"] == "30" and error["retry_after"] == 30
    assert (error["quota"], error["queued"], error["asked"]) == (10, 6, 5)
    assert "6 URLs queued" in error["message"] and "at most 10 URLs" in error["message"]
    assert "5 URLs more" in error["message"]
    assert job_id_of(submit(keyed, b := keys.header("b"), urls(10)))  # another key has its own quota
    assert_error(submit(keyed, b, urls(1)), 429, "quota_exceeded")
    job_id_of(submit(keyed, a, urls(4) + ["not a url"] * 3))  # 10 queued: invalid URLs are answered at once
    assert_error(submit(keyed, a, urls(1)), 429, "quota_exceeded")
    assert_error(keyed.post("/predict", json={"url": urls(1)[0]}, headers=a), 429, "quota_exceeded")
    assert keyed.delete(f"/jobs/{first}", headers=a).json["status"] == "cancelled"  # frees its 6 URLs
    job_id_of(submit(keyed, a, urls(6)))
    assert_error(submit(keyed, a, urls(1)), 429, "quota_exceeded")


def test_quota_counts_only_unanswered_urls(keyed: FlaskClient, keys: Keys) -> None:
    a = keys.header("a")
    job_id = job_id_of(submit(keyed, a, urls(8)))
    store = keyed.application.extensions["fer.store"]
    store.record(job_id, {i: {"status": "error", "error": {"code": "x", "message": "y"}} for i in range(5)})
    assert store.owners.owner_load(keys.names["a"]).urls == 3
    job_id_of(submit(keyed, a, urls(7)))  # 3 + 7 = 10
    assert_error(submit(keyed, a, urls(1)), 429, "quota_exceeded")


def test_simultaneous_submissions_cannot_overshoot_the_quota(make_app: Callable[..., Flask], settings: Settings,
                                                              keys: Keys, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two API instances (as two gunicorn processes), 8 threads, 3 URLs each, quota 10: exactly 3 jobs,
    even with 0.1 s between reading the key's load and storing the job (without the lock, all 8 pass)."""
    read_load = Owners.owner_load

    def slow_owner_load(self: Owners, owner: str) -> OwnerLoad:
        load = read_load(self, owner)
        time.sleep(0.1)
        return load

    monkeypatch.setattr(Owners, "owner_load", slow_owner_load)
    apps = [make_app(idle_settings(settings, keys.path)) for _ in range(2)]
    barrier = threading.Barrier(8)

    def one(number: int) -> int:
        client = apps[number % 2].test_client()
        barrier.wait()
        return submit(client, keys.header("a"), urls(3)).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(one, range(8)))
    assert statuses == [202] * 3 + [429] * 5
    assert read_load(apps[0].extensions["fer.store"], keys.names["a"]).urls == 9


def test_max_jobs(keyed: FlaskClient, keys: Keys) -> None:
    jobs = keys.header("jobs")  # max_jobs 2
    first = job_id_of(submit(keyed, jobs, urls(1)))
    job_id_of(submit(keyed, jobs, urls(1)))
    job_id_of(submit(keyed, jobs, ["not a url"]))  # done at once: not queued, not counted
    response = submit(keyed, jobs, urls(1))
    error = assert_error(response, 429, "too_many_jobs")
    assert response.headers["Retry-After"] == "30"
    assert "2 jobs queued or running, at most 2 at once" in error["message"]
    keyed.delete(f"/jobs/{first}", headers=jobs)
    job_id_of(submit(keyed, jobs, urls(1)))


def test_rate_limit(keyed: FlaskClient, keys: Keys) -> None:
    if time.time() % 60 > 55:  # the fixed window must not roll over during the test
        time.sleep(61 - time.time() % 60)
    rate = keys.header("rate")  # 3 requests per minute
    for _ in range(3):
        assert_error(keyed.get(f"/jobs/{UNKNOWN_JOB}", headers=rate), 404, "job_not_found")
    assert keyed.get("/healthz", headers=rate).status_code == 200  # not counted
    response = keyed.get(f"/jobs/{UNKNOWN_JOB}", headers=rate)
    error = assert_error(response, 429, "rate_limited")
    wait = int(response.headers["Retry-After"])
    assert 1 <= wait <= 60 and error["retry_after"] == wait
    assert "3 requests per minute" in error["message"]
    assert_error(submit(keyed, rate, urls(1)), 429, "rate_limited")
    job_id_of(submit(keyed, keys.header("a"), urls(1)))  # other keys are not limited


def test_every_limit_answers_in_words_and_is_in_the_docs(make_app: Callable[..., Flask],
                                                           settings: Settings) -> None:
    client = make_app(settings, max_urls=3, max_body_bytes=2048).test_client()
    error = assert_error(client.post("/jobs", json={"urls": urls(4)}), 413, "too_many_urls")
    assert "4 URLs, at most 3 per job" in error["message"]
    error = assert_error(client.post("/jobs", data="url\n" + "x" * 3000, content_type="text/csv"), 413,
                         "body_too_large")
    assert "at most 2,048 bytes" in error["message"] and error["limit"] == 2048
    errors = API_DOCS[API_DOCS.index("## Error codes"):API_DOCS.index("### URL safety")]
    for status, code in [(401, "unauthorized"), (404, "job_not_found"), (413, "too_many_urls"),
                         (413, "body_too_large"), (429, "quota_exceeded"), (429, "too_many_jobs"),
                         (429, "rate_limited")]:
        assert re.search(rf"\| {status} \| `{code}` \|", errors), f"docs/api.md error table: {status} {code}"


# -- the keys file ----------------------------------------------------------------------------


def test_the_key_is_never_logged_nor_answered(keyed: FlaskClient, keys: Keys, caplog: pytest.LogCaptureFixture
                                              ) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "fer_" + secrets.token_urlsafe(32)
    bodies: list[str] = []
    for header in (keys.header("a"), {"Authorization": f"Bearer {wrong}"}):
        job = submit(keyed, header, urls(2))
        job_id = job.json.get("job_id", UNKNOWN_JOB)
        answers = [job, submit(keyed, header, urls(50)), keyed.get(f"/jobs/{job_id}", headers=header),
                   keyed.get(f"/jobs/{job_id}/results.csv", headers=header),
                   keyed.post("/predict", json={"url": "x"}, headers=header),
                   keyed.delete(f"/jobs/{job_id}", headers=header), keyed.get("/nothing", headers=header)]
        bodies += [answer.get_data(as_text=True) + str(answer.headers) for answer in answers]
    assert {answer.status_code for answer in answers} == {401}
    for secret in (keys.keys["a"], wrong, hash_key(keys.keys["a"])):
        assert secret not in caplog.text
        assert not any(secret in body for body in bodies)


@pytest.mark.parametrize(("content", "expected"), [
    (None, "cannot read the API keys file"),
    ("{not json", "not valid JSON"),
    ('{"users": []}', 'must hold {"keys": [...]}'),
    ('{"keys": [{"name": "a", "sha256": "' + "0" * 64 + '"}]}', "quota_urls must be a positive integer"),
    ('{"keys": [{"name": "a", "sha256": "abc", "quota_urls": 5}]}', "sha256 must be 64 lowercase hex digits"),
    ('{"keys": [{"name": "a b", "sha256": "' + "0" * 64 + '", "quota_urls": 5}]}', "name must be"),
    ('{"keys": [{"name": "a", "sha256": "' + "0" * 64 + '", "quota_urls": 5, "max_jobs": 0}]}', "max_jobs"),
    ('{"keys": [{"name": "a", "sha256": "' + "0" * 64 + '", "quota_urls": 5}, {"name": "a", "sha256": "'
     + "1" * 64 + '", "quota_urls": 5}]}', "the same name is used twice (a)"),
])
def test_a_bad_keys_file_stops_the_api_from_starting(settings: Settings, tmp_path: Path, content: str | None,
                                                     expected: str) -> None:
    from api import create_app

    path = tmp_path / "keys.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(KeysFileError, match=re.escape(expected)) as caught:
        create_app(idle_settings(settings, path))
    assert str(path) in str(caught.value)


def test_key_changes_apply_without_a_restart(keyed: FlaskClient, keys: Keys, caplog: pytest.LogCaptureFixture
                                             ) -> None:
    new = add_key(keys.path, f"new-{secrets.token_hex(4)}", quota_urls=5)
    job_id_of(submit(keyed, {"Authorization": f"Bearer {new}"}, urls(1)))
    remove_key(keys.path, keys.names["b"])
    assert_error(keyed.get(f"/jobs/{UNKNOWN_JOB}", headers=keys.header("b")), 401, "unauthorized")
    keys.path.write_text("{broken")
    for _ in range(2):
        assert_error(keyed.get(f"/jobs/{UNKNOWN_JOB}", headers=keys.header("a")), 404, "job_not_found")
    assert caplog.text.count("is not valid JSON") == 1  # logged once, the last good keys still apply


def test_cli_keys_add_list_remove(tmp_path: Path) -> None:
    path = tmp_path / "deploy" / "keys.json"
    runner = CliRunner()
    added = runner.invoke(main, ["keys", "add", "alice", "--quota", "500", "--max-jobs", "3", "--file", str(path)])
    assert added.exit_code == 0, added.output
    key = added.stdout.strip()
    assert re.fullmatch(r"fer_[A-Za-z0-9_-]{43}", key) and added.output.count(key) == 1
    assert "shown only this once" in added.stderr
    entry = json.loads(path.read_text())["keys"][0]
    assert key not in path.read_text() and entry["sha256"] == hash_key(key)
    assert (entry["name"], entry["quota_urls"], entry["max_jobs"], entry["rate_per_minute"]) == ("alice", 500, 3, None)
    other = runner.invoke(main, ["keys", "add", "bob", "--quota", "9", "--rate", "60"],
                          env={"FER_API_KEYS_FILE": str(path)})
    assert other.exit_code == 0 and other.stdout.strip() != key
    listed = runner.invoke(main, ["keys", "list", "--file", str(path)])
    assert listed.exit_code == 0 and re.search(r"alice\s+500\s+3\s+-", listed.output)
    assert re.search(r"bob\s+9\s+-\s+60", listed.output) and entry["sha256"] not in listed.output
    again = runner.invoke(main, ["keys", "add", "alice", "--quota", "5", "--file", str(path)])
    assert again.exit_code == 2 and "already has a key named 'alice'" in again.output
    assert runner.invoke(main, ["keys", "add", "carol", "--quota", "0", "--file", str(path)]).exit_code == 2
    assert runner.invoke(main, ["keys", "add", "carol", "--quota", "5"], env={"FER_API_KEYS_FILE": ""}).exit_code == 2
    assert runner.invoke(main, ["keys", "remove", "alice", "--file", str(path)]).exit_code == 0
    assert [k["name"] for k in json.loads(path.read_text())["keys"]] == ["bob"]
    assert runner.invoke(main, ["keys", "remove", "alice", "--file", str(path)]).exit_code == 2


# -- the CLI against a real gunicorn with keys on ---------------------------------------------


@pytest.fixture(scope="module")
def keyed_api(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Path]]:
    """``gunicorn 'api:create_app()'`` with FER_API_KEYS_FILE (no worker: database 7)."""
    folder = tmp_path_factory.mktemp("keyed-api")
    keys_file = folder / "keys.json"
    add_key(keys_file, "placeholder", quota_urls=1)
    server_env = {**env, "REDIS_URL": env["REDIS_URL"].rsplit("/", 1)[0] + "/7", "FER_API_KEYS_FILE": str(keys_file)}
    with gunicorn(server_env, folder / "gunicorn.log", ("--workers", "1")) as url:
        yield url, keys_file, folder / "gunicorn.log"


def fer_batch(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {name: value for name, value in os.environ.items() if name != "FER_API_KEY"}
    return subprocess.run([sys.executable, "-m", "api.cli", *args], cwd=ROOT, env={**clean, **(env or {})},
                          capture_output=True, text=True, timeout=60)


def test_cli_api_key_round_trip(keyed_api: tuple[str, Path, Path], tmp_path: Path) -> None:
    url, keys_file, log = keyed_api
    tag = secrets.token_hex(4)
    alice = fer_batch("keys", "add", f"alice-{tag}", "--quota", "3", "--file", str(keys_file)).stdout.strip()
    bob = fer_batch("keys", "add", f"bob-{tag}", "--quota", "3", "--file", str(keys_file)).stdout.strip()
    csv_file = tmp_path / "urls.csv"
    csv_file.write_text("url\nhttp://127.0.0.1:9/a.jpg\nhttp://127.0.0.1:9/b.jpg\n")

    denied = fer_batch("submit", str(csv_file), "--api", url)
    assert denied.returncode == 5 and "needs an API key" in denied.stderr and "FER_API_KEY" in denied.stderr
    wrong = fer_batch("status", UNKNOWN_JOB, "--api", url, "--api-key", "fer_wrong")
    assert wrong.returncode == 5 and "not valid" in wrong.stderr and "fer_wrong" not in wrong.stderr

    submitted = fer_batch("submit", str(csv_file), "--api", url, env={"FER_API_KEY": alice})
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    status = fer_batch("status", job_id, "--api", url, "--api-key", alice)
    assert status.returncode == 0 and f"job {job_id}: queued, 0/2 processed" in status.stdout
    over = fer_batch("submit", str(csv_file), "--api", url, "--api-key", alice)
    assert over.returncode == 6 and "quota exceeded" in over.stderr and "retry after 30 s" in over.stderr
    for command in ("status", "results", "cancel"):
        theirs = fer_batch(command, job_id, "--api", url, "--api-key", bob)
        assert theirs.returncode == 4 and "no job" in theirs.stderr
    results = fer_batch("results", job_id, "--api", url, "--api-key", alice, "--out", str(tmp_path / "r.csv"))
    assert results.returncode == 0 and len((tmp_path / "r.csv").read_text().splitlines()) == 3
    cancel = fer_batch("cancel", job_id, "--api", url, env={"FER_API_KEY": alice})
    assert cancel.returncode == 0 and "cancelled" in cancel.stdout
    assert fer_batch("submit", str(csv_file), "--api", url, "--api-key", alice).returncode == 0  # quota freed
    assert alice not in log.read_text() and bob not in log.read_text()
