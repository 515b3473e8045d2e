"""`make demo`: one real batch end to end on this machine, with nothing from the internet.

Starts a throw-away redis-server, the API under gunicorn, one worker command (``python -m worker``
with its defaults: a process per core) and a local HTTP server for the bundled photos; submits a
CSV of their URLs (the portraits, a 29-person group photo, a cat, and two URLs that fail on
purpose) with `fer-batch submit --wait`; prints one line per URL, then every face of the group
photo; stops everything it started.
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
FACES = ROOT / "tests" / "data" / "faces"
OUT = ROOT / "build" / "demo"
GROUP = "solvay1927.jpg"


def expectations() -> dict[str, str]:
    """File name -> what a person sees in it (expression, or the number of faces)."""
    with open(PHOTOS / "photos.csv", newline="") as fh:
        expected = {row["file"]: row["expression"] for row in csv.DictReader(fh)}
    with open(FACES / "faces.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            expected[row["file"]] = row["expression"] or "no person"
            if row["faces"] not in ("0", "1"):
                expected[row["file"]] = f"{row['faces']} faces"
    return expected


def write_csv(server: ImageServer) -> Path:
    path = OUT / "urls.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["url", "note"])
        for photo in sorted(PHOTOS.glob("*.jp*")):
            writer.writerow([server.url(f"/photos/{photo.name}"), "bundled portrait"])
        writer.writerow([server.url(f"/faces/{GROUP}"), "group photo: one result per face"])
        writer.writerow([server.url("/faces/chelsea.png"), "a cat: reported as no_face"])
        writer.writerow([server.url("/status/404"), "missing on the server: reported as http_error"])
        writer.writerow(["not a url", "reported as invalid_url"])
    return path


def api_ready(url: str) -> bool:
    with contextlib.suppress(OSError):
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
            return response.status == 200
    return False


def show(results: Path, faces: Path) -> None:
    expected = expectations()
    print(f"  {'#':>3}  {'image':38}  {'faces':>5}  {'answer (largest face)':22}  expected")
    with open(results, newline="") as fh:
        for row in csv.DictReader(fh):
            name = row["url"].rsplit("/", 1)[-1]
            start = f"  {row['index']:>3}  {name:38.38}  {row['face_count']:>5}  "
            if row["top"]:
                answer = f"{row['top']:10} {float(row[row['top']]):5.2f}"
                print(f"{start}{answer:22}  {expected.get(name, '')}")
            else:
                print(f"{start}{row['error_code']}: {row['error_message']}")
    with open(faces, newline="") as fh:
        group = [row for row in csv.DictReader(fh) if row["url"].endswith(GROUP)]
    print(f"\nEvery face of {GROUP} ({len(group)}; box = x, y, width, height in pixels), largest first:\n")
    for row in group:
        box = f"{row['box_x']:>4} {row['box_y']:>4} {row['box_w']:>3} {row['box_h']:>3}"
        print(f"  face {row['face']:>2}  box {box}  {row['top']:10} {float(row[row['top']]):.2f}")


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    with redis_server() as redis_url, ImageServer() as images:
        env = {**os.environ, "REDIS_URL": redis_url, "FER_ALLOWED_NETWORKS": "127.0.0.1/32"}
        port = free_port()
        api_url = f"http://127.0.0.1:{port}"
        api = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "api:create_app()", "--bind", f"127.0.0.1:{port}",
             "--log-level", "warning"], cwd=ROOT, env=env)
        worker = WorkerProcess(env, "demo-worker", log_dir=OUT, processes=None)  # the command's own count
        try:
            worker.wait_ready()
            wait_until(lambda: api_ready(api_url), 30, "the API to be ready")
            print(f"Redis {redis_url}, API {api_url}, worker log {worker.log_path.relative_to(ROOT)}\n")
            cli = [sys.executable, "-m", "api.cli"]
            results, faces = OUT / "results.csv", OUT / "faces.csv"
            submitted = subprocess.run([*cli, "submit", str(write_csv(images)), "--api", api_url, "--wait",
                                        "--out", str(results)], cwd=ROOT, env=env, check=True,
                                       stdout=subprocess.PIPE, text=True)
            job_id = submitted.stdout.strip()
            subprocess.run([*cli, "results", job_id, "--api", api_url, "--per-face", "--out", str(faces)],
                           cwd=ROOT, env=env, check=True)
            print(f"\nJob {job_id}: one row per URL in {results.relative_to(ROOT)}, one per face in "
                  f"{faces.relative_to(ROOT)}:\n")
            show(results, faces)
            return 0
        finally:
            worker.stop()
            api.terminate()
            api.wait(15)


if __name__ == "__main__":
    sys.exit(main())
