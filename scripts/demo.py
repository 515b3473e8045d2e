"""`make demo`: one real batch end to end on this machine, with nothing from the internet.

Starts a throw-away redis-server, the API under gunicorn, one Celery worker and a local HTTP
server for the bundled example photos; submits a CSV of their URLs (plus two that fail on
purpose) with `fer-batch submit --wait`; prints the results; stops everything it started.
"""

from __future__ import annotations

import contextlib
import csv
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.imageserver import ImageServer  # noqa: E402
from tests.services import WorkerProcess, free_port, redis_server, wait_until  # noqa: E402

PHOTOS = ROOT / "tests" / "data" / "photos"
OUT = ROOT / "build" / "demo"


def write_csv(server: ImageServer) -> Path:
    path = OUT / "urls.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["url", "note"])
        for photo in sorted(PHOTOS.glob("*.jp*")):
            writer.writerow([server.url(f"/photos/{photo.name}"), "bundled example photo"])
        writer.writerow([server.url("/status/404"), "missing on the server: reported as http_error"])
        writer.writerow(["not a url", "reported as invalid_url"])
    return path


def api_ready(url: str) -> bool:
    with contextlib.suppress(OSError):
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
            return response.status == 200
    return False


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    with redis_server() as redis_url, ImageServer() as images:
        env = {**os.environ, "REDIS_URL": redis_url, "FER_ALLOWED_NETWORKS": "127.0.0.1/32"}
        port = free_port()
        api_url = f"http://127.0.0.1:{port}"
        api = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "api:create_app()", "--bind", f"127.0.0.1:{port}",
             "--log-level", "warning"], cwd=ROOT, env=env)
        worker = WorkerProcess(env, "demo-worker", concurrency=2, log_dir=OUT)
        try:
            worker.wait_ready()
            wait_until(lambda: api_ready(api_url), 30, "the API to be ready")
            print(f"Redis {redis_url}, API {api_url}, worker log {worker.log_path.relative_to(ROOT)}\n")
            cli = [sys.executable, "-m", "api.cli"]
            subprocess.run([*cli, "submit", str(write_csv(images)), "--api", api_url, "--wait",
                            "--out", str(OUT / "results.csv")], cwd=ROOT, env=env, check=True)
            print(f"\nResults written to {(OUT / 'results.csv').relative_to(ROOT)}:\n")
            with open(PHOTOS / "photos.csv", newline="") as fh:
                expected = {row["file"]: row["expression"] for row in csv.DictReader(fh)}
            print(f"  {'#':>3}  {'image':38}  {'answer':10} {'p':>5}  expected")
            with open(OUT / "results.csv", newline="") as fh:
                for row in csv.DictReader(fh):
                    name = row["url"].rsplit("/", 1)[-1]
                    if row["top"]:
                        answer = f"{row['top']:10} {float(row[row['top']]):5.2f}  {expected.get(name, '')}"
                    else:
                        answer = f"{row['error_code']}: {row['error_message']}"
                    print(f"  {row['index']:>3}  {name:38.38}  {answer}")
            return 0
        finally:
            worker.stop()
            api.terminate()
            api.wait(15)


if __name__ == "__main__":
    sys.exit(main())
