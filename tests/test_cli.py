"""The ``fer-batch`` CLI: argument errors through click's runner, the rest as real subprocesses
against a real gunicorn serving ``api:create_app()``, a real worker and a local image server."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from api.cli import main
from tests import faceimages
from tests.imageserver import ImageServer
from tests.services import ROOT, free_port, gunicorn
from tests.test_api import EXPECTED_CSV_HEADER  # noqa: E402

FACES_HEADER = ("index,url,face,box_x,box_y,box_w,box_h,score,top,angry,disgust,fear,happy,sad,surprise,neutral,"
                "size,roll,brightness,sharpness,right_eye_x,right_eye_y,left_eye_x,left_eye_y,nose_x,nose_y,"
                "mouth_x,mouth_y,right_ear_x,right_ear_y,left_ear_x,left_ear_y")
UNKNOWN_JOB = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def images() -> Iterator[ImageServer]:
    with ImageServer() as server:
        yield server


@pytest.fixture(scope="module")
def api_url(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with gunicorn(env, tmp_path_factory.mktemp("gunicorn") / "gunicorn.log") as url:
        yield url


def fer_batch(*args: str, env: dict[str, str] | None = None, stdin: str | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "api.cli", *args], cwd=ROOT, env={**os.environ, **(env or {})},
                          input=stdin, capture_output=True, text=True, timeout=timeout)


@pytest.fixture()
def urls_csv(images: ImageServer, tmp_path: Path) -> tuple[Path, list[str]]:
    """A CSV with a header and extra column: 3 photos, a 404, a line that is not a URL."""
    urls = [images.url(f"/photos/{name}") for name in ("fer_justin.jpg", "deepface_img25.jpg", "vnsst_sad.jpg")]
    urls += [images.url("/status/404"), "not a url"]
    path = tmp_path / "urls.csv"
    path.write_text("name,URL\r\n" + "".join(f"n{i},{url}\r\n" for i, url in enumerate(urls)))
    return path, urls


def check_rows(rows: list[dict], urls: list[str]) -> None:
    assert [int(row["index"]) for row in rows] == list(range(len(urls)))
    assert [row["url"] for row in rows] == urls
    assert [row["status"] for row in rows] == ["ok", "ok", "ok", "error", "error"]


# -- argument and environment errors (no services needed) ------------------------------------


def test_usage_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(main, ["submit", str(tmp_path / "missing.csv")])
    assert missing.exit_code == 2 and "cannot read" in missing.output and "missing.csv" in missing.output
    empty = tmp_path / "empty.csv"
    empty.write_text("url\n\n")
    result = runner.invoke(main, ["submit", str(empty)])
    assert result.exit_code == 2 and "no URLs" in result.output
    assert runner.invoke(main, ["run", str(empty)]).exit_code == 2
    result = runner.invoke(main, ["submit", str(empty), "--out", "results.txt"])
    assert result.exit_code == 2 and ".csv or .json" in result.output
    assert runner.invoke(main, ["status"]).exit_code == 2
    assert runner.invoke(main, ["frobnicate"]).exit_code == 2
    assert "Exit codes" in runner.invoke(main, ["--help"]).output


def test_unreachable_api(tmp_path: Path) -> None:
    path = tmp_path / "urls.csv"
    path.write_text("http://a.example/1.jpg\n")
    dead = f"http://127.0.0.1:{free_port()}"
    runner = CliRunner()
    for args in (["submit", str(path)], ["status", UNKNOWN_JOB], ["results", UNKNOWN_JOB], ["cancel", UNKNOWN_JOB]):
        result = runner.invoke(main, args, env={"FER_API_URL": dead})
        assert result.exit_code == 3, result.output
        assert "cannot reach the API" in result.output and dead in result.output


# -- against gunicorn and a worker -----------------------------------------------------------


def test_unknown_job(api_url: str) -> None:
    for command in ("status", "results", "cancel"):
        result = fer_batch(command, UNKNOWN_JOB, "--api", api_url)
        assert result.returncode == 4, result.stderr
        assert "no job" in result.stderr and UNKNOWN_JOB in result.stderr


def test_submit_wait_writes_csv(api_url: str, worker: object, urls_csv: tuple[Path, list[str]],
                                tmp_path: Path) -> None:
    path, urls = urls_csv
    out = tmp_path / "results.csv"
    result = fer_batch("submit", str(path), "--wait", "--out", str(out), env={"FER_API_URL": api_url})
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"[0-9a-f]{32}", result.stdout.strip())
    assert "done, 5/5 processed (3 ok, 2 failed)" in result.stderr and f"wrote {out}" in result.stderr
    text = out.read_text()
    assert text.splitlines()[0] == EXPECTED_CSV_HEADER
    rows = list(csv.DictReader(io.StringIO(text)))
    check_rows(rows, urls)
    assert [row["error_code"] for row in rows[3:]] == ["http_error", "invalid_url"]


def test_submit_stdin_then_status_results_cancel(api_url: str, worker: object, urls_csv: tuple[Path, list[str]],
                                                 tmp_path: Path) -> None:
    path, urls = urls_csv
    out = tmp_path / "results.json"
    result = fer_batch("submit", "-", "--api", api_url, "--wait", "--out", str(out), stdin=path.read_text())
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip()
    check_rows(json.loads(out.read_text()), urls)

    status = fer_batch("status", job_id, "--api", api_url)
    assert status.returncode == 0 and f"job {job_id}: done, 5/5 processed" in status.stdout
    as_json = json.loads(fer_batch("status", job_id, "--api", api_url, "--json").stdout)
    assert as_json["status"] == "done" and as_json["job_id"] == job_id

    table = fer_batch("results", job_id, "--api", api_url)
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert len(lines) == 6 and "http_error 404" in lines[4] and "invalid_url" in lines[5]
    assert all(" ok " in line for line in lines[1:4])

    again = tmp_path / "again.csv"
    assert fer_batch("results", job_id, "--api", api_url, "--out", str(again)).returncode == 0
    check_rows(list(csv.DictReader(io.StringIO(again.read_text()))), urls)

    cancel = fer_batch("cancel", job_id, "--api", api_url)
    assert cancel.returncode == 0 and f"job {job_id}: done" in cancel.stdout

    listed = fer_batch("jobs", "--api", api_url, "--limit", "1")
    assert listed.returncode == 0, listed.stderr
    assert f"job {job_id}: done, 5/5 processed" in listed.stdout.splitlines()[0]  # the newest job
    assert "; next: --offset 1" in listed.stdout or "1 of 1 jobs" in listed.stdout
    page = json.loads(fer_batch("jobs", "--api", api_url, "--json").stdout)
    assert page["jobs"][0]["job_id"] == job_id and page["total"] >= 1


def test_a_file_bigger_than_a_job_goes_as_several_jobs(api_url: str, worker: object,
                                                        urls_csv: tuple[Path, list[str]], tmp_path: Path) -> None:
    path, urls = urls_csv
    out = tmp_path / "results.csv"
    result = fer_batch("submit", str(path), "--api", api_url, "--job-size", "2", "--wait", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.split()) == 3  # 2 + 2 + 1 URLs: three job ids, in input order
    assert result.stderr.count("done, ") == 3
    check_rows(list(csv.DictReader(io.StringIO(out.read_text()))), urls)  # one file, indexes of the whole input
    as_json = tmp_path / "results.json"
    again = fer_batch("submit", "-", "--api", api_url, "--job-size", "3", "--wait", "--out", str(as_json),
                      stdin=path.read_text())
    assert again.returncode == 0, again.stderr
    check_rows(json.loads(as_json.read_text()), urls)


def test_parts_are_halved_when_the_server_holds_fewer_urls_per_job(env: dict[str, str], worker: object,
                                                                   urls_csv: tuple[Path, list[str]],
                                                                   tmp_path: Path) -> None:
    path, urls = urls_csv
    with gunicorn({**env, "FER_MAX_URLS": "2"}, tmp_path / "gunicorn.log") as small_api:
        out = tmp_path / "results.csv"
        result = fer_batch("submit", str(path), "--api", small_api, "--wait", "--out", str(out))
        assert result.returncode == 0, result.stderr
        assert len(result.stdout.split()) == 3  # 5 URLs -> 3 + 2 (refused: too_many_urls) -> 2, 1, 2
        check_rows(list(csv.DictReader(io.StringIO(out.read_text()))), urls)


def test_submit_without_wait_and_cancel(api_url: str, tmp_path: Path) -> None:
    path = tmp_path / "urls.csv"
    path.write_text("".join(f"http://127.0.0.1:9/{i}.jpg\n" for i in range(3)))
    result = fer_batch("submit", str(path), "--api", api_url)
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip()
    cancel = fer_batch("cancel", job_id, "--api", api_url)
    assert cancel.returncode == 0 and job_id in cancel.stdout


def test_run_embedded(urls_csv: tuple[Path, list[str]], env: dict[str, str], tmp_path: Path) -> None:
    path, urls = urls_csv
    out = tmp_path / "run.json"
    # No Redis and no API: a dead REDIS_URL proves neither is used.
    run_env = {**env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "FER_API_URL": "http://127.0.0.1:9"}
    result = fer_batch("run", str(path), "--out", str(out), env=run_env)
    assert result.returncode == 0, result.stderr
    assert "5 URLs: 3 ok, 2 failed" in result.stderr
    rows = json.loads(out.read_text())
    check_rows(rows, urls)
    assert rows[3]["error"]["code"] == "http_error" and rows[4]["error"]["code"] == "invalid_url"
    for row in rows[:3]:
        assert row["top"] == max(row["emotions"], key=row["emotions"].get)
    out_csv = tmp_path / "run.csv"
    assert fer_batch("run", str(path), "--out", str(out_csv), env=run_env).returncode == 0
    assert out_csv.read_text().splitlines()[0] == EXPECTED_CSV_HEADER
    table = fer_batch("run", str(path), env=run_env)
    assert table.returncode == 0 and len(table.stdout.splitlines()) == 6


def test_run_without_a_model(urls_csv: tuple[Path, list[str]], env: dict[str, str], tmp_path: Path) -> None:
    result = fer_batch("run", str(urls_csv[0]), env={**env, "FER_MODEL_PATH": str(tmp_path / "none.tflite")})
    assert result.returncode == 1 and "FER_MODEL_PATH" in result.stderr
    result = fer_batch("run", str(urls_csv[0]), env={**env, "FER_FACE_DETECTOR": str(tmp_path / "none.json")})
    assert result.returncode == 1 and "cannot load the face detector" in result.stderr


def test_cli_imports_neither_the_api_server_nor_the_worker() -> None:
    """``submit`` and friends need only the cli extra (click, httpx, tqdm)."""
    code = (
        "import sys, api.cli\n"
        "loaded = {'flask', 'celery', 'worker', 'redis', 'numpy'} & {name.split('.')[0] for name in sys.modules}\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=60)


def test_writing_results_builds_no_celery_app() -> None:
    """``results --out x.csv`` imports ``worker.outcomes``, and so the ``worker`` package: that builds no
    Celery app from the environment and imports no Celery (``worker.app`` is built on first use)."""
    code = (
        "import sys, api.cli, worker.outcomes, worker\n"
        "assert 'app' not in vars(worker) and not {'celery', 'kombu'} & {m.split('.')[0] for m in sys.modules}\n"
        "assert type(worker.app).__name__ == 'Celery' and worker.app is worker.app\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=60)


@pytest.fixture()
def faces_csv_input(images: ImageServer, tmp_path: Path) -> tuple[Path, list[str]]:
    """Four portraits tiled into one photo (4 faces), one portrait (1 face), a 404."""
    urls = [images.add("/made/tiled.jpg", faceimages.tiled()[0], "image/jpeg"),
            images.url("/photos/fer_justin.jpg"), images.url("/status/404")]
    path = tmp_path / "urls.csv"
    path.write_text("".join(f"{url}\n" for url in urls))
    return path, urls


def test_per_face_output_and_whole_mode(faces_csv_input: tuple[Path, list[str]], env: dict[str, str],
                                        api_url: str, worker: object, tmp_path: Path) -> None:
    path, urls = faces_csv_input
    run_env = {**env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    per_face = tmp_path / "per-face.csv"
    result = fer_batch("run", str(path), "--per-face", "--out", str(per_face), env=run_env)
    assert result.returncode == 0, result.stderr
    lines = per_face.read_text().splitlines()
    assert lines[0] == FACES_HEADER and len(lines) == 1 + 4 + 1  # faces only; the 404 has none
    rows = list(csv.DictReader(io.StringIO(per_face.read_text())))
    assert [(row["index"], row["face"]) for row in rows] == [("0", "0"), ("0", "1"), ("0", "2"), ("0", "3"),
                                                             ("1", "0")]
    table = fer_batch("run", str(path), "--per-face", env=run_env).stdout.splitlines()
    assert len(table) == 1 + 4 + 1 + 1  # header, four face lines for the tiled photo, one, the 404
    summary = fer_batch("run", str(path), env=run_env).stdout.splitlines()
    assert len(summary) == 4 and "+3 faces" in summary[1]

    whole = tmp_path / "whole.json"
    assert fer_batch("run", str(path), "--faces", "whole", "--out", str(whole), env=run_env).returncode == 0
    rows = json.loads(whole.read_text())
    assert [row["status"] for row in rows] == ["ok", "ok", "error"] and "faces" not in rows[0]

    # Through the API: the same faces, and the API's faces.csv streamed by --per-face --out x.csv.
    submitted = tmp_path / "submitted.csv"
    result = fer_batch("submit", str(path), "--api", api_url, "--wait", "--per-face", "--out", str(submitted))
    assert result.returncode == 0, result.stderr
    api_rows = list(csv.DictReader(io.StringIO(submitted.read_text())))
    assert [(row["index"], row["face"], row["box_x"]) for row in api_rows] == \
        [(row["index"], row["face"], row["box_x"]) for row in csv.DictReader(io.StringIO(per_face.read_text()))]
    job_id = result.stdout.strip()
    as_json = tmp_path / "faces.json"
    assert fer_batch("results", job_id, "--api", api_url, "--per-face", "--out", str(as_json)).returncode == 0
    assert [face["face"] for face in json.loads(as_json.read_text())] == [0, 1, 2, 3, 0]
    whole_job = fer_batch("submit", str(path), "--api", api_url, "--faces", "whole", "--wait")
    assert whole_job.returncode == 0 and "3/3 processed (2 ok, 1 failed)" in whole_job.stderr


def test_face_filters_on_the_command_line(faces_csv_input: tuple[Path, list[str]], env: dict[str, str],
                                          api_url: str, worker: object, tmp_path: Path) -> None:
    """--max-faces, --min-face-size and --min-score, embedded and through the API; bad values are usage errors."""
    path, _ = faces_csv_input
    run_env = {**env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    embedded = tmp_path / "two.json"
    result = fer_batch("run", str(path), "--max-faces", "2", "--out", str(embedded), env=run_env)
    assert result.returncode == 0, result.stderr
    tiled, portrait, _ = json.loads(embedded.read_text())
    assert tiled["face_count"] == 2 and portrait["face_count"] == 1
    submitted = tmp_path / "big.json"
    result = fer_batch("submit", str(path), "--api", api_url, "--min-face-size", "1000", "--min-score", "0.5",
                       "--wait", "--out", str(submitted))
    assert result.returncode == 0, result.stderr
    tiled, portrait, _ = json.loads(submitted.read_text())
    assert tiled["error"]["code"] == portrait["error"]["code"] == "no_face"
    assert "4 faces found in the 640x640 image, all filtered out: 4 by min_face_size 1000" in tiled["error"]["message"]
    status = json.loads(fer_batch("status", result.stdout.strip(), "--api", api_url, "--json").stdout)
    assert status["filters"] == {"min_face_size": 1000, "min_score": 0.5, "max_faces": None}
    runner = CliRunner()
    for option, value in (("--max-faces", "0"), ("--min-face-size", "-3"), ("--min-score", "2")):
        bad = runner.invoke(main, ["run", str(path), option, value])
        assert bad.exit_code == 2 and option in bad.output
