"""Webhooks: signatures, the callback check at submit and at send, and real deliveries.

A local receiver (``Receiver``, http.server on 127.0.0.1) checks every signature, answers 500 to
the first two attempts of each delivery, dedupes by delivery id and records what it accepted.
Deliveries run in a real Celery worker against the session redis-server (its own database, so the
session worker never takes these tasks), with short retry waits and sweeps.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.services import ROOT, WorkerProcess, wait_until
from tests.test_netguard import FixedResolver
from worker import webhooks
from worker.net import netguard
from worker.settings import Settings
from worker.signatures import SignatureError, signature_header, verify_signature
from worker.store.jobs import JobStatus, JobStore, WebhookStatus, connect
from worker.sweeper import Sweeper

SECRET = "whsec-test-5f2a"
DB = 3  # the session redis-server's database for this module's API and worker
OPERATOR = "example-batch/1.0 (+mailto:ops@example.com)"  # FER_USER_AGENT of this module's worker
QUIET_DB = 6  # ... and one where no worker (so no sweeper) runs: what is stored there stays as the test left it


class Receiver:
    """A webhook endpoint: verifies, fails each delivery's first ``failures`` attempts, dedupes."""

    def __init__(self, secret: str, failures: int = 2) -> None:
        self.secret = secret
        self.failures = failures
        self.lock = threading.Lock()
        self.reset()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(receiver.receive(dict(self.headers), body))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802 - an "image" URL for jobs: slow, then 404
                if self.path.startswith("/slow"):
                    time.sleep(2)
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def reset(self) -> None:
        with self.lock:
            self.attempts: Counter[str] = Counter()
            self.answers: list[tuple[str, int]] = []  # (delivery id, status answered), in order
            self.accepted: dict[str, tuple[dict[str, str], dict[str, Any]]] = {}  # id -> (headers, payload)
            self.duplicates = 0

    def receive(self, headers: dict[str, str], body: bytes) -> int:
        try:
            verify_signature(self.secret, headers.get("X-Fer-Signature"), body)
        except SignatureError:
            status = 401
        else:
            delivery = headers["X-Fer-Delivery"]
            with self.lock:
                self.attempts[delivery] += 1
                if delivery in self.accepted:  # a duplicate: answered 2xx, handled once
                    self.duplicates += 1
                    status = 200
                elif self.attempts[delivery] <= self.failures:
                    status = 500
                else:
                    self.accepted[delivery] = (headers, json.loads(body))
                    status = 200
        with self.lock:
            self.answers.append((headers.get("X-Fer-Delivery", ""), status))
        return status

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver(SECRET) as server:
        yield server


@pytest.fixture()
def hook(receiver: Receiver) -> Receiver:
    receiver.reset()
    return receiver


@pytest.fixture(scope="module")
def hook_env(env: dict[str, str]) -> dict[str, str]:
    return {**env, "REDIS_URL": env["REDIS_URL"].rsplit("/", 1)[0] + f"/{DB}", "FER_WEBHOOK_SECRET": SECRET,
            "FER_WEBHOOK_RETRY_DELAY": "0.2", "FER_SWEEP_INTERVAL": "0.3", "FER_FETCH_TIMEOUT": "5",
            "FER_USER_AGENT": OPERATOR}


@pytest.fixture(scope="module")
def hook_settings(hook_env: dict[str, str]) -> Settings:
    return Settings.from_env(hook_env)


@pytest.fixture(scope="module")
def hook_worker(hook_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    proc = WorkerProcess(hook_env, "webhook-worker", concurrency=1, log_dir=tmp_path_factory.mktemp("workers"))
    try:
        yield proc.wait_ready()
    finally:
        proc.stop()


@pytest.fixture()
def api(make_app: Callable[..., Flask], hook_settings: Settings) -> FlaskClient:
    return make_app(hook_settings).test_client()


@pytest.fixture()
def hook_store(hook_settings: Settings) -> Iterator[JobStore]:
    client = connect(hook_settings.redis_url)
    yield JobStore(client, hook_settings.result_ttl)
    client.close()


@pytest.fixture(scope="module")
def quiet_settings(hook_settings: Settings) -> Settings:
    return hook_settings.replace(redis_url=hook_settings.redis_url.rsplit("/", 1)[0] + f"/{QUIET_DB}")


@pytest.fixture()
def quiet_api(make_app: Callable[..., Flask], quiet_settings: Settings) -> FlaskClient:
    return make_app(quiet_settings).test_client()


@pytest.fixture()
def quiet_store(quiet_settings: Settings) -> Iterator[JobStore]:
    client = connect(quiet_settings.redis_url)
    yield JobStore(client, quiet_settings.result_ttl)
    client.close()


def error_code(response: Any) -> str:
    assert response.status_code == 400, response.json
    return response.json["error"]["code"]


# -- signatures -------------------------------------------------------------------------------


def test_a_signature_verifies_and_returns_its_timestamp() -> None:
    body = b'{"job_id": "x", "status": "done"}'
    header = signature_header(SECRET, body, timestamp=1_700_000_000)
    assert header.startswith("t=1700000000,v1=") and len(header.split("v1=")[1]) == 64
    assert verify_signature(SECRET, header, body, now=1_700_000_100) == 1_700_000_000
    rotated = f"{header},v1={'0' * 64}"  # several v1 entries: any one may match
    assert verify_signature(SECRET.encode(), rotated, body, now=1_700_000_000) == 1_700_000_000


@pytest.mark.parametrize(
    ("secret", "header", "body", "now", "reason"),
    [
        (SECRET, "SIGNED", b'{"status": "cancelled"}', 1_700_000_000, "no signature matches"),  # tampered body
        ("another-secret", "SIGNED", b'{"status": "done"}', 1_700_000_000, "no signature matches"),
        (SECRET, "SIGNED", b'{"status": "done"}', 1_700_000_301, "over 300 s"),  # stale: a replay
        (SECRET, "SIGNED", b'{"status": "done"}', 1_699_999_000, "over 300 s"),  # from the future
        (SECRET, None, b'{"status": "done"}', 1_700_000_000, "no signature header"),
        (SECRET, "v1=abc", b'{"status": "done"}', 1_700_000_000, "one t="),
        (SECRET, "t=1700000000", b'{"status": "done"}', 1_700_000_000, "no v1="),
        (SECRET, "t=1700000000;v1=abc", b'{"status": "done"}', 1_700_000_000, "one t="),
        (SECRET, "garbage", b'{"status": "done"}', 1_700_000_000, "malformed"),
    ],
    ids=["tampered-body", "wrong-secret", "stale", "future", "missing", "no-timestamp", "no-digest", "bad-separator",
         "garbage"],
)
def test_a_bad_signature_is_refused(secret: str, header: str | None, body: bytes, now: float, reason: str) -> None:
    if header == "SIGNED":
        header = signature_header(SECRET, b'{"status": "done"}', timestamp=1_700_000_000)
    with pytest.raises(SignatureError, match=reason):
        verify_signature(secret, header, body, now=now)


def test_the_docs_snippet_verifies_as_verify_signature_does() -> None:
    docs = (ROOT / "docs" / "api.md").read_text()
    namespace: dict[str, Any] = {}
    exec(re.search(r"```python\n(import hashlib.*?)```", docs, re.S)[1], namespace)
    verify = namespace["verify"]
    body = b'{"job_id": "x", "status": "done"}'
    header = signature_header(SECRET, body)
    assert verify(SECRET.encode(), header, body)
    assert not verify(b"another-secret", header, body)
    assert not verify(SECRET.encode(), header, body + b" ")
    assert not verify(SECRET.encode(), signature_header(SECRET, body, timestamp=int(time.time()) - 301), body)
    assert not verify(SECRET.encode(), "garbage", body)


def test_retries_span_about_an_hour() -> None:
    settings = Settings()
    waits, elapsed = [], 0.0
    while elapsed + (wait := webhooks.backoff(len(waits) + 1, settings.webhook_retry_delay)) \
            <= settings.webhook_max_age:
        waits.append(wait)
        elapsed += wait
    assert waits[:4] == [10, 20, 40, 80] and max(waits) == webhooks.RETRY_CAP == 600
    assert len(waits) + 1 == 11 and 2400 < elapsed <= 3600  # 11 attempts, the last 50 minutes after the first


# -- the callback at submit -------------------------------------------------------------------


@pytest.mark.parametrize(
    "callback",
    ["http://10.0.0.1/hook", "http://169.254.169.254/latest/meta-data/", "http://localhost:8080/hook",
     "http://[::1]/hook", "http://[::ffff:10.0.0.1]/hook", "http://0.0.0.0/", "ftp://hooks.example/x", "not a url",
     42, ""],
)
def test_a_callback_to_a_private_address_or_a_bad_url_is_refused_at_submit(
    make_app: Callable[..., Flask], quiet_settings: Settings, callback: Any
) -> None:
    client = make_app(quiet_settings, allowed_networks=()).test_client()
    response = client.post("/jobs", json={"urls": ["http://a.example/1.jpg"], "callback_url": callback})
    assert error_code(response) == "invalid_callback_url"
    assert response.json["error"]["parameter"] == "callback_url"


def test_allowed_networks_apply_to_callbacks_and_the_query_parameter_works(quiet_api: FlaskClient) -> None:
    api = quiet_api
    # The test settings allow 127.0.0.1/32 only.
    assert error_code(api.post("/jobs", json={"urls": ["x"], "callback_url": "http://10.1.2.3/"})) == \
        "invalid_callback_url"
    assert error_code(api.post("/jobs?callback_url=http://127.0.0.2:9/", data="http://a.example/1.jpg",
                               content_type="text/csv")) == "invalid_callback_url"
    response = api.post("/jobs?callback_url=http://127.0.0.1:9/hook", data="not a url\n", content_type="text/csv")
    assert response.status_code == 202, response.json
    webhook = response.json["webhook"]
    assert list(response.json)[-1] == "webhook" and webhook["callback_url"] == "http://127.0.0.1:9/hook"
    assert webhook["status"] == "pending" and webhook["attempts"] == 0  # done at once: queued by the API
    assert list(webhook) == ["callback_url", "delivery_id", "status", "attempts", "delivered_at", "error"]
    quiet_api.application.extensions["fer.store"].discard(response.json["job_id"])


def test_without_a_secret_a_callback_is_refused(make_app: Callable[..., Flask], quiet_settings: Settings) -> None:
    client = make_app(quiet_settings, webhook_secret="").test_client()
    response = client.post("/jobs", json={"urls": ["http://a.example/1.jpg"], "callback_url": "http://127.0.0.1/"})
    assert error_code(response) == "webhooks_disabled"
    assert client.post("/jobs", json={"urls": ["bad"]}).status_code == 202  # jobs without a callback still work


# -- the callback at send: the SSRF guard again -------------------------------------------------


def test_a_callback_whose_host_resolves_to_a_private_address_at_send_time_is_refused(
    hook: Receiver, hook_settings: Settings
) -> None:
    body = b'{"status": "done"}'
    headers = {"X-Fer-Delivery": "d1", "X-Fer-Signature": signature_header(SECRET, body)}
    url = f"http://hooks.example:{hook.server.server_port}/hook"

    async def send(settings: Settings) -> webhooks.Answer:
        # The name now resolves to loopback (DNS rebinding after the submit-time check).
        connector = netguard.guarded_connector(settings, inner_resolver=FixedResolver("127.0.0.1"))
        return await webhooks.post(url, body, headers, settings, connector)

    refused = asyncio.run(send(hook_settings.replace(allowed_networks=())))
    assert not refused.accepted and refused.final and "non-public address" in refused.detail
    assert hook.answers == []  # nothing reached the receiver
    allowed = asyncio.run(send(hook_settings))  # loopback allowed: the same request arrives
    assert not allowed.accepted and not allowed.final and allowed.detail == "HTTP 500"
    assert hook.answers == [("d1", 500)]


def test_deliver_refuses_a_private_callback_and_gives_up_at_once(
    hook: Receiver, quiet_settings: Settings, quiet_store: JobStore
) -> None:
    hook_store, hook_settings = quiet_store, quiet_settings
    job = hook_store.create(["bad"], 8, {0: {"status": "error", "error": {"code": "invalid_url", "message": "x"}}},
                            callback_url=hook.url())
    assert hook_store.get(job.id).status is JobStatus.DONE
    assert hook_store.deliveries.webhook_due(job.id, time.time())
    strict = hook_settings.replace(allowed_networks=())
    assert webhooks.deliver(hook_store, strict, job.id) is WebhookStatus.FAILED
    failed = hook_store.get(job.id)
    assert failed.webhook_attempts == 1 and "non-public address 127.0.0.1" in (failed.webhook_error or "")
    assert hook.answers == []
    assert webhooks.deliver(hook_store, hook_settings, job.id) is None  # given up: nothing more is sent
    assert not hook_store.deliveries.webhook_due(job.id, time.time() + 3600)
    hook_store.discard(job.id)


# -- the store and the sweeper: one attempt queued at a time ----------------------------------


def test_webhook_due_answers_true_once_per_attempt(quiet_store: JobStore) -> None:
    store = quiet_store
    job = store.create(["http://a.example/1.jpg"], 8, {}, callback_url="http://127.0.0.1:9/")
    sent: list[str] = []  # this job's ids only: other tests' jobs may be active in this database

    def send_webhook(job_id: str) -> None:
        if job_id == job.id:
            sent.append(job_id)

    sweeper = Sweeper(store, lambda job_id, ranges: None, stall_timeout=1e9, window=8, send_webhook=send_webhook,
                      webhook_hold=30)
    t0 = time.time()
    assert not store.deliveries.webhook_due(job.id, t0)  # not ended yet
    assert store.cancel(job.id) is JobStatus.CANCELLED
    assert [store.deliveries.webhook_due(job.id, t0) for _ in range(5)] == [True, False, False, False, False]
    delivery = store.get(job.id).webhook_id
    sweeper.sweep(now=t0 + 10)
    assert sent == [] and job.id in store.dispatch.active_jobs()  # held: the queued attempt may still run
    sweeper.sweep(now=t0 + 61)  # WEBHOOK_HOLD passed without a result: queued again, same delivery id
    assert sent == [job.id] and store.get(job.id).webhook_id == delivery
    assert store.deliveries.webhook_attempted(job.id, t0 + 62, WebhookStatus.DELIVERED)
    # delivered stays delivered
    assert not store.deliveries.webhook_attempted(job.id, t0 + 63, WebhookStatus.PENDING, next_at=t0 + 70)
    done = store.get(job.id)
    assert done.webhook_status is WebhookStatus.DELIVERED and done.webhook_attempts == 1 and done.webhook_delivered_at
    sweeper.sweep(now=t0 + 200)
    assert sent == [job.id] and job.id not in store.dispatch.active_jobs()  # delivered: forgotten
    assert store.get(job.id).webhook_first_at == pytest.approx(t0 + 62)
    store.discard(job.id)


def test_jobs_without_a_callback_are_forgotten_when_they_end(quiet_store: JobStore) -> None:
    store = quiet_store
    job = store.create(["http://a.example/1.jpg"], 8, {})
    store.cancel(job.id)
    assert not store.deliveries.webhook_due(job.id, time.time())
    sent: list[str] = []
    Sweeper(store, lambda job_id, ranges: None, 1e9, 8, send_webhook=sent.append).sweep()
    assert job.id not in sent and job.id not in store.dispatch.active_jobs()
    store.discard(job.id)


# -- real deliveries: API, Redis, a Celery worker, the receiver --------------------------------


def wait_delivered(client: FlaskClient, hook: Receiver, job_id: str, timeout: float = 60) -> dict[str, Any]:
    def delivered() -> bool:
        return client.get(f"/jobs/{job_id}").json["webhook"]["status"] in ("delivered", "failed")

    wait_until(delivered, timeout, f"the webhook of job {job_id}", interval=0.1)
    job = client.get(f"/jobs/{job_id}").json
    assert job["webhook"]["status"] == "delivered", job["webhook"]
    return job


def summary(job: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in job.items() if key not in ("results", "next", "webhook")}


def test_a_finished_job_is_delivered_once_after_two_failures(
    api: FlaskClient, hook: Receiver, hook_worker: WorkerProcess
) -> None:
    urls = [hook.url("/missing.jpg"), hook.url("/gone.png"), "not a url"]
    job_id = api.post("/jobs", json={"urls": urls, "callback_url": hook.url()}).json["job_id"]
    job = wait_delivered(api, hook, job_id)
    assert job["status"] == "done" and job["failed"] == 3
    delivery = job["webhook"]["delivery_id"]
    assert job["webhook"]["attempts"] == 3 and job["webhook"]["error"] is None and job["webhook"]["delivered_at"]
    assert hook.answers == [(delivery, 500), (delivery, 500), (delivery, 200)]  # every signature was valid
    headers, payload = hook.accepted[delivery]
    assert list(hook.accepted) == [delivery]
    assert headers["X-Fer-Event"] == "job.done" and headers["X-Fer-Attempt"] == "3"
    assert headers["Content-Type"] == "application/json" and headers["User-Agent"] == OPERATOR
    assert payload == summary(job) and list(payload) == list(summary(job))  # GET /jobs/<id>'s shape and order
    time.sleep(1.5)  # several sweeps later: nothing more is sent
    assert len(hook.answers) == 3


def test_a_cancelled_job_is_delivered_once_with_its_status(
    api: FlaskClient, hook: Receiver, hook_worker: WorkerProcess
) -> None:
    job_id = api.post("/jobs", json={"urls": [hook.url("/slow")] * 3, "callback_url": hook.url()}).json["job_id"]
    cancelled = api.delete(f"/jobs/{job_id}").json
    assert cancelled["status"] == "cancelled" and cancelled["webhook"]["status"] == "pending"
    job = wait_delivered(api, hook, job_id)
    (headers, payload), = hook.accepted.values()
    assert headers["X-Fer-Event"] == "job.cancelled" and payload["status"] == "cancelled"
    assert payload == summary(job)
    assert [status for _, status in hook.answers] == [500, 500, 200]


def test_a_job_done_at_submit_is_delivered_and_a_duplicate_is_received_once(
    api: FlaskClient, hook: Receiver, hook_worker: WorkerProcess, hook_store: JobStore
) -> None:
    response = api.post("/jobs", json={"urls": ["nope", 3], "callback_url": hook.url()})
    assert response.json["status"] == "done"  # no chunk to run: the API queued the webhook
    job_id = response.json["job_id"]
    delivery = wait_delivered(api, hook, job_id)["webhook"]["delivery_id"]
    assert hook.answers == [(delivery, 500), (delivery, 500), (delivery, 200)]
    # A worker that sent the last attempt but stopped before recording it: the webhook is still
    # pending, due again, and sent again with the same delivery id. (Written straight into the job
    # hash, as only that crash would leave it.)
    hook_store.redis.hset(f"fer:job:{{{job_id}}}", mapping={"webhook_status": "pending", "webhook_next_at": 0})
    hook_store.redis.sadd("fer:jobs:active", job_id)
    wait_delivered(api, hook, job_id)
    wait_until(lambda: hook.duplicates == 1, 10, "the duplicate")
    assert hook.answers[-1] == (delivery, 200) and len(hook.accepted) == 1  # one accepted delivery
