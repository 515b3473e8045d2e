"""The HTTP API through Flask's test client, against the real session Redis (and real workers).

Tests that must see tasks stay unconsumed use ``idle_app``: the same Redis server, another
database, where no worker listens. Tests that need results use the session ``worker`` fixture
and a local image server.
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.imageserver import ImageServer
from tests.services import free_port, redis_server
from worker.settings import Settings

EXPECTED_CSV_HEADER = ("index,url,status,top,angry,disgust,fear,happy,sad,surprise,neutral,error_code,error_message,"
                       "face_count,box_x,box_y,box_w,box_h")
JOB_KEYS = ["job_id", "status", "total", "processed", "succeeded", "failed", "created_at", "updated_at",
            "finished_at", "faces", "filters", "links"]
HAPPY = ("deepface_img25.jpg", "deepface_img50.jpg", "abhirup_test_image_happy.jpeg")
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


@pytest.fixture()
def client(make_app: Callable[..., Flask], settings: Settings) -> FlaskClient:
    return make_app(settings).test_client()


@pytest.fixture()
def idle(make_app: Callable[..., Flask], settings: Settings) -> FlaskClient:
    """An API whose tasks no worker consumes (Redis database 7 of the session server)."""
    return make_app(settings, redis_url=settings.redis_url.rsplit("/", 1)[0] + "/7").test_client()


@pytest.fixture(scope="module")
def images() -> Iterator[ImageServer]:
    with ImageServer() as server:
        yield server


def submit(client: FlaskClient, urls: list[Any]) -> dict[str, Any]:
    response = client.post("/jobs", json={"urls": urls})
    assert response.status_code == 202, response.json
    return response.json


def wait_done(client: FlaskClient, job_id: str, timeout: float = 90) -> tuple[dict[str, Any], list[str]]:
    """Poll until the job ends; returns the final body (all results) and the statuses seen."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/jobs/{job_id}?limit=1000").json
        if not seen or seen[-1] != body["status"]:
            seen.append(body["status"])
        if body["status"] in ("done", "cancelled"):
            return body, seen
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} not finished after {timeout} s: {body}")


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.data[:300]
    assert response.mimetype == "application/json", response.data[:300]
    error = response.json["error"]
    assert error["code"] == code and error["message"]
    return error


# -- submitting -------------------------------------------------------------------------------


def test_submit_json(idle: FlaskClient) -> None:
    response = idle.post("/jobs", json={"urls": ["http://a.example/1.jpg", "https://b.example/2.png"]})
    assert response.status_code == 202
    body = response.json
    assert re.fullmatch(r"[0-9a-f]{32}", body["job_id"])  # 128 random bits
    assert response.headers["Location"] == f"/jobs/{body['job_id']}"
    assert list(body) == JOB_KEYS
    assert body["status"] == "queued" and body["total"] == 2 and body["processed"] == 0
    assert body["links"] == {"self": f"/jobs/{body['job_id']}", "results_csv": f"/jobs/{body['job_id']}/results.csv",
                             "faces_csv": f"/jobs/{body['job_id']}/faces.csv"}
    assert body["faces"] == "detect"
    assert ISO_UTC.fullmatch(body["created_at"]) and body["finished_at"] is None
    assert submit(idle, ["http://a.example/1.jpg"])["job_id"] != body["job_id"]


def urls_of(client: FlaskClient, job_id: str) -> list[str]:
    return [row["url"] for row in client.get(f"/jobs/{job_id}").json["results"]]


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ("Name, URL \r\nx,http://a.example/1.jpg\r\n\r\ny,http://b.example/2.jpg\r\n", "text/csv"),
        ("\ufeffhttp://a.example/1.jpg\nhttp://b.example/2.jpg\n\n", "text/csv; charset=utf-8"),
        ({"file": (io.BytesIO(b"url,n\nhttp://a.example/1.jpg,1\nhttp://b.example/2.jpg,2\n"), "u.csv")},
         "multipart/form-data"),
        ({"file": (io.BytesIO(b"http://a.example/1.jpg\r\nhttp://b.example/2.jpg"), "u.csv", "text/csv")},
         "multipart/form-data"),
        ("http://a.example/1.jpg\n\nhttp://b.example/2.jpg\n", "text/plain"),
        ("name\tURL\r\nx\thttp://a.example/1.jpg\r\ny\thttp://b.example/2.jpg\r\n".encode("utf-16"), "text/csv"),
        ("Bild;url\neins;http://a.example/1.jpg\nzwei;http://b.example/2.jpg\n", "text/csv"),
    ],
    ids=["csv-header", "csv-headerless-bom", "multipart-header", "multipart-headerless", "plain-text",
         "excel-unicode-text", "semicolons"],
)
def test_submit_csv_and_multipart(idle: FlaskClient, data: Any, content_type: str) -> None:
    response = idle.post("/jobs", data=data, content_type=content_type)
    assert response.status_code == 202, response.json
    assert response.json["total"] == 2
    assert urls_of(idle, response.json["job_id"]) == ["http://a.example/1.jpg", "http://b.example/2.jpg"]


def test_invalid_urls_are_answered_on_their_own_index(idle: FlaskClient) -> None:
    urls = ["http://a.example/1.jpg", "ftp://a.example/x", 42, None, "   ", "no scheme", "http://b.example/2.jpg",
            "http://" + "x" * 3000 + ".example/"]
    body = submit(idle, urls)
    assert body["status"] == "queued" and body["total"] == 8 and body["failed"] == 6
    rows = idle.get(f"/jobs/{body['job_id']}").json["results"]
    assert [row["index"] for row in rows] == list(range(8))
    assert [row["status"] for row in rows] == ["pending"] + ["error"] * 5 + ["pending", "error"]
    assert all(row["error"]["code"] == "invalid_url" for row in rows if row["status"] == "error")
    assert [row["url"] for row in rows[2:4]] == ["42", "None"]


def test_a_job_of_invalid_urls_only_is_done_at_once(idle: FlaskClient) -> None:
    body = submit(idle, ["nope", "mailto:x@example.com"])
    assert body["status"] == "done" and body["processed"] == 2 and body["finished_at"]


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"data": "{not json", "content_type": "application/json"}, 400, "invalid_json"),
        ({"json": {"urls": "http://a.example/1.jpg"}}, 400, "invalid_body"),
        ({"json": {"links": []}}, 400, "invalid_body"),
        ({"json": {"urls": []}}, 400, "no_urls"),
        ({"data": "url\n", "content_type": "text/csv"}, 400, "no_urls"),
        ({"data": b"url\n\xff\xfe\n", "content_type": "text/csv"}, 400, "invalid_csv"),
        ({"data": {"nofile": "x"}, "content_type": "multipart/form-data"}, 400, "invalid_body"),
        ({"data": "http://a.example/1.jpg", "content_type": "application/xml"}, 415, "unsupported_media_type"),
        ({"data": {"urls": "http://a.example/1.jpg"}}, 415, "unsupported_media_type"),
        ({"data": "http://a.example/1.jpg"}, 415, "unsupported_media_type"),
    ],
)
def test_bad_submits_answer_json_errors(client: FlaskClient, kwargs: dict, status: int, code: str) -> None:
    assert_error(client.post("/jobs", **kwargs), status, code)


def test_too_many_urls_and_too_big_a_body(make_app: Callable[..., Flask], settings: Settings) -> None:
    client = make_app(settings, max_urls=3, max_body_bytes=2048).test_client()
    error = assert_error(client.post("/jobs", json={"urls": ["http://a.example/"] * 4}), 413, "too_many_urls")
    assert error["limit"] == 3
    assert_error(client.post("/jobs", data="http://a.example/\n" * 4, content_type="text/csv"), 413, "too_many_urls")
    big = "url\n" + "http://a.example/" + "x" * 3000 + "\n"
    assert_error(client.post("/jobs", data=big, content_type="text/csv"), 413, "body_too_large")
    upload = {"file": (io.BytesIO(big.encode()), "u.csv")}
    assert_error(client.post("/jobs", data=upload, content_type="multipart/form-data"), 413, "body_too_large")


def test_unknown_routes_and_methods_answer_json(client: FlaskClient) -> None:
    assert_error(client.get("/nothing/here"), 404, "not_found")
    response = client.put("/jobs")
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]
    assert_error(client.get("/predict"), 405, "method_not_allowed")
    assert_error(client.get("/jobs//results.csv"), 404, "not_found")  # an empty job id: no HTML redirect


def test_unexpected_errors_answer_500_json_and_are_logged(make_app: Callable[..., Flask], settings: Settings,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(settings)

    def boom() -> None:
        raise RuntimeError("a bug")

    app.add_url_rule("/boom", view_func=boom)
    assert_error(app.test_client().get("/boom"), 500, "internal_error")
    assert "GET /boom" in caplog.text and "RuntimeError: a bug" in caplog.text


# -- reading jobs -----------------------------------------------------------------------------


def test_pagination_and_next(idle: FlaskClient) -> None:
    urls = [f"http://a.example/{i}.jpg" for i in range(25)]
    job_id = submit(idle, urls)["job_id"]
    page = idle.get(f"/jobs/{job_id}?limit=10").json
    assert list(page) == [*JOB_KEYS, "results", "next"]
    seen = []
    while True:
        seen += page["results"]
        if page["next"] is None:
            break
        assert page["next"].startswith(f"/jobs/{job_id}?")
        page = idle.get(page["next"]).json
    assert [row["index"] for row in seen] == list(range(25))
    assert [row["url"] for row in seen] == urls
    assert all(row["status"] == "pending" for row in seen)
    default = idle.get(f"/jobs/{job_id}").json
    assert len(default["results"]) == 25 and default["next"] is None
    tail = idle.get(f"/jobs/{job_id}?offset=20&limit=3").json
    assert [row["index"] for row in tail["results"]] == [20, 21, 22]
    assert tail["next"] == f"/jobs/{job_id}?offset=23&limit=3"
    past = idle.get(f"/jobs/{job_id}?offset=99").json
    assert past["results"] == [] and past["next"] is None


def test_recent_jobs_newest_first_in_pages(idle: FlaskClient) -> None:
    ids = [submit(idle, [f"http://a.example/{n}.jpg"])["job_id"] for n in range(3)]
    page = idle.get("/jobs?limit=2").json
    assert [job["job_id"] for job in page["jobs"]] == ids[::-1][:2]  # the newest first
    assert list(page["jobs"][0]) == JOB_KEYS and page["total"] >= 3
    assert page["next"] == "/jobs?offset=2&limit=2"
    following = idle.get(page["next"]).json
    assert following["jobs"][0]["job_id"] == ids[0]
    assert len(idle.get("/jobs").json["jobs"]) == min(20, page["total"])  # 20 by default
    assert_error(idle.get("/jobs?limit=0"), 400, "invalid_parameter")
    assert_error(idle.get("/jobs?offset=-1"), 400, "invalid_parameter")


def test_limit_is_clamped_to_1000(idle: FlaskClient) -> None:
    job_id = submit(idle, [f"http://a.example/{i}" for i in range(1005)])["job_id"]
    page = idle.get(f"/jobs/{job_id}?limit=5000").json
    assert len(page["results"]) == 1000 and page["next"] == f"/jobs/{job_id}?offset=1000&limit=1000"
    assert len(idle.get(f"/jobs/{job_id}").json["results"]) == 100
    assert [row["index"] for row in idle.get(page["next"]).json["results"]] == list(range(1000, 1005))


@pytest.mark.parametrize("query", ["offset=-1", "limit=-5", "limit=abc", "offset=1.5", "limit=0", "offset="])
def test_bad_paging_parameters(idle: FlaskClient, query: str) -> None:
    job_id = submit(idle, ["http://a.example/1.jpg"])["job_id"]
    error = assert_error(idle.get(f"/jobs/{job_id}?{query}"), 400, "invalid_parameter")
    assert error["parameter"] == query.split("=")[0]


def test_unknown_job(client: FlaskClient) -> None:
    for response in (client.get("/jobs/0123456789abcdef0123456789abcdef"), client.get("/jobs/nope/results.csv"),
                     client.get("/jobs/nope/faces.csv"), client.delete("/jobs/nope")):
        assert_error(response, 404, "job_not_found")


def test_results_csv_header_and_order(idle: FlaskClient) -> None:
    urls = [f"http://a.example/{i}.jpg" for i in range(1200)]
    urls[3] = "not a url"
    job_id = submit(idle, urls)["job_id"]
    response = idle.get(f"/jobs/{job_id}/results.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    text = response.get_data(as_text=True)
    assert text.splitlines()[0] == EXPECTED_CSV_HEADER
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [int(row["index"]) for row in rows] == list(range(1200))
    assert [row["url"] for row in rows] == urls
    assert rows[3]["status"] == "error" and rows[3]["error_code"] == "invalid_url" and rows[3]["error_message"]
    assert rows[0]["status"] == "pending" and rows[0]["top"] == "" and rows[0]["error_code"] == ""


# -- cancel -----------------------------------------------------------------------------------


def test_cancel_a_queued_job(idle: FlaskClient) -> None:
    job_id = submit(idle, ["http://a.example/1.jpg", "bad", "http://a.example/2.jpg"])["job_id"]
    response = idle.delete(f"/jobs/{job_id}")
    assert response.status_code == 200
    body = response.json
    assert list(body) == JOB_KEYS
    assert body["status"] == "cancelled" and body["finished_at"] and body["processed"] == 1
    rows = idle.get(f"/jobs/{job_id}").json["results"]
    assert [row["status"] for row in rows] == ["cancelled", "error", "cancelled"]
    csv_rows = list(csv.DictReader(io.StringIO(idle.get(f"/jobs/{job_id}/results.csv").get_data(as_text=True))))
    assert [row["status"] for row in csv_rows] == ["cancelled", "error", "cancelled"]
    again = idle.delete(f"/jobs/{job_id}")
    assert again.status_code == 200 and again.json["status"] == "cancelled"


def test_cancelling_a_finished_job_answers_its_state(idle: FlaskClient) -> None:
    job_id = submit(idle, ["bad"])["job_id"]
    response = idle.delete(f"/jobs/{job_id}")
    assert response.status_code == 200 and response.json["status"] == "done"


# -- health, readiness, Redis down ------------------------------------------------------------


def test_healthz(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json == {"status": "ok"}


def test_redis_down_answers_503_quickly(make_app: Callable[..., Flask], settings: Settings) -> None:
    client = make_app(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0").test_client()
    started = time.monotonic()
    assert_error(client.post("/jobs", json={"urls": ["http://a.example/1.jpg"]}), 503, "redis_unavailable")
    assert_error(client.get("/jobs/0123456789abcdef0123456789abcdef"), 503, "redis_unavailable")
    assert_error(client.get("/jobs/x/results.csv"), 503, "redis_unavailable")
    assert_error(client.delete("/jobs/x"), 503, "redis_unavailable")
    assert_error(client.post("/predict", json={"url": "http://a.example/1.jpg"}), 503, "redis_unavailable")
    error = assert_error(client.get("/readyz"), 503, "redis_unavailable")
    assert error["checks"]["redis"] == "unavailable"
    assert client.get("/healthz").status_code == 200
    assert time.monotonic() - started < 5


def test_readyz_without_a_worker(make_app: Callable[..., Flask], settings: Settings) -> None:
    with redis_server() as lonely_redis:  # a server no worker listens to
        client = make_app(settings, redis_url=lonely_redis).test_client()
        error = assert_error(client.get("/readyz"), 503, "no_worker")
        assert error["checks"] == {"redis": "ok", "worker": "missing"}


def test_readyz_with_a_worker(client: FlaskClient, worker: object) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.json
    assert response.json["status"] == "ready" and response.json["workers"][0].startswith("session-worker@")


# -- with a real worker -----------------------------------------------------------------------


def test_job_lifecycle(client: FlaskClient, worker: object, images: ImageServer) -> None:
    # 2 chunks of 8 (FER_CHUNK_SIZE in the test env); the slow URL keeps the second one running.
    urls = [images.url(f"/photos/{name}") for name in sorted(images.photos)][:7]
    urls += ["not a url", images.url("/status/404"), images.url("/slow?seconds=2")] + urls[:6]
    body = submit(client, urls)
    assert body["status"] == "queued"
    final, seen = wait_done(client, body["job_id"])
    assert seen[0] in ("queued", "running") and seen[-1] == "done"
    assert "running" in seen
    assert final["total"] == final["processed"] == 16 and final["failed"] == 2 and final["succeeded"] == 14
    assert final["finished_at"] and final["next"] is None
    rows = final["results"]
    assert [row["index"] for row in rows] == list(range(16)) and [row["url"] for row in rows] == urls
    assert rows[7]["error"]["code"] == "invalid_url"
    assert rows[8]["error"] == {"code": "http_error", "message": rows[8]["error"]["message"], "http_status": 404}
    for row in rows[:7] + rows[9:]:
        assert row["status"] == "ok", row
        assert set(row["emotions"]) == {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}
        assert sum(row["emotions"].values()) == pytest.approx(1, abs=1e-4)
        assert row["top"] == max(row["emotions"], key=row["emotions"].get)
    csv_rows = list(csv.DictReader(io.StringIO(client.get(f"/jobs/{body['job_id']}/results.csv").get_data(True))))
    assert [row["url"] for row in csv_rows] == urls
    assert [row["status"] for row in csv_rows] == [row["status"] for row in rows]
    assert float(csv_rows[0][rows[0]["top"]]) == rows[0]["emotions"][rows[0]["top"]]
    assert client.delete(f"/jobs/{body['job_id']}").json["status"] == "done"


def test_predict_ok(client: FlaskClient, worker: object, images: ImageServer) -> None:
    response = client.post("/predict", json={"url": images.url(f"/photos/{HAPPY[0]}")})
    assert response.status_code == 200, response.json
    assert list(response.json) == ["Anger", "Disgust", "Fear", "Happy", "Neutral", "Sadness", "Surprise"]
    assert sum(response.json.values()) == pytest.approx(1, abs=1e-4)


def test_predict_url_errors(client: FlaskClient, worker: object, images: ImageServer) -> None:
    error = assert_error(client.post("/predict", json={"url": images.url("/status/404")}), 422, "http_error")
    assert error["http_status"] == 404 and error["url"] == images.url("/status/404")
    assert_error(client.post("/predict", json={"url": images.url("/text")}), 422, "not_an_image")
    assert_error(client.post("/predict", json={"url": "file:///etc/passwd"}), 422, "invalid_url")
    assert_error(client.post("/predict", json={"url": 3}), 422, "invalid_url")


def test_predict_bad_requests(client: FlaskClient) -> None:
    assert_error(client.post("/predict", json={"urls": ["http://a.example/"]}), 400, "invalid_body")
    assert_error(client.post("/predict", json=["http://a.example/"]), 400, "invalid_body")
    assert_error(client.post("/predict", data="{", content_type="application/json"), 400, "invalid_json")
    assert_error(client.post("/predict", data="http://a.example/", content_type="text/plain"), 415,
                 "unsupported_media_type")


def test_predict_timeout_cancels_the_job(make_app: Callable[..., Flask], settings: Settings) -> None:
    idle = make_app(settings, redis_url=settings.redis_url.rsplit("/", 1)[0] + "/7", predict_timeout=0.5)
    started = time.monotonic()
    error = assert_error(idle.test_client().post("/predict", json={"url": "http://a.example/1.jpg"}), 504, "timeout")
    assert 0.5 <= time.monotonic() - started < 3
    assert idle.extensions["fer.store"].status(error["job_id"]) == "cancelled"


def test_a_full_redis_refuses_new_jobs_with_storage_full_and_recovers(
    make_app: Callable[..., Flask], settings: Settings
) -> None:
    """Redis at ``maxmemory`` with ``noeviction``: 507 ``storage_full``, nothing half-written; then it recovers."""
    import redis

    with redis_server() as url:
        client = make_app(settings, redis_url=url).test_client()
        before = client.post("/jobs", json={"urls": ["http://127.0.0.1:9/a.jpg"]})
        assert before.status_code == 202
        admin = redis.Redis.from_url(url)
        try:
            admin.mset({f"filler:{i}": b"x" * 1024 for i in range(2048)})  # 2 MiB
            admin.config_set("maxmemory-policy", "noeviction")
            admin.config_set("maxmemory", int(admin.info("memory")["used_memory"]) - 1024 * 1024)
            with pytest.raises(redis.exceptions.OutOfMemoryError):
                admin.set("one:more", b"x")
            keys = set(admin.keys("*"))
            full = client.post("/jobs", json={"urls": ["http://127.0.0.1:9/b.jpg"]})
            assert full.status_code == 507 and full.is_json
            assert full.get_json()["error"]["code"] == "storage_full"
            assert set(admin.keys("*")) == keys  # no job half-written, no task queued
            assert client.get(before.get_json()["links"]["self"]).status_code == 200  # reads still answer
            admin.delete(*[key for key in keys if key.startswith(b"filler:")])
            assert client.post("/jobs", json={"urls": ["http://127.0.0.1:9/c.jpg"]}).status_code == 202
        finally:
            admin.close()


def test_a_job_whose_chunks_cannot_be_queued_is_dropped_not_left_queued(
    make_app: Callable[..., Flask], settings: Settings
) -> None:
    """The job store answers but the broker does not: 503, and no job is left behind without its tasks."""
    import redis

    with redis_server() as url:
        app = make_app(settings, redis_url=url)
        app.extensions["fer.celery"].conf.broker_url = f"redis://127.0.0.1:{free_port()}/0"  # nobody listens
        answer = app.test_client().post("/jobs", json={"urls": ["http://127.0.0.1:9/a.jpg"]})
        assert answer.status_code == 503 and answer.get_json()["error"]["code"] == "redis_unavailable"
        admin = redis.Redis.from_url(url)
        try:
            assert admin.keys("*") == []
        finally:
            admin.close()
