"""Where a worker's CPU goes: ``python -m bench.profile [--latency MS] [--processes N] [--images N]``.

Starts the full stack as the benchmark does, samples every Celery pool process and the image
server with py-spy while a few jobs run, and prints the share of samples per activity (Pillow
decoding, face detection, framing and crop, LiteRT inference, HTTP fetching, the asyncio loop, the
job store...) and the hottest functions. py-spy is not a project dependency; install it anywhere
for a one-off profile, e.g. ``pip install --target /tmp/pyspy py-spy`` and pass
``--py-spy /tmp/pyspy/bin/py-spy``.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from bench import BUILD, imageset
from bench.server import ImageServerProcess
from bench.stack import Stack
from bench.suite import bench_env

# First match wins: a frame path fragment -> activity.
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("worker/vision/images.py", "decode (Pillow)"),
    ("worker/vision/detect.py", "face detection (BlazeFace, LiteRT)"),
    ("worker/vision/boxes.py", "face detection (BlazeFace, LiteRT)"),
    ("worker/vision/framing.py", "framing and crop"),
    ("worker/vision/faces.py", "framing and crop"),
    ("worker/vision/classifier.py", "inference (LiteRT)"),
    ("worker/store/jobs.py", "job store (Redis)"),
    ("worker/net/fetch.py", "fetch (aiohttp client)"),
    ("worker/net/netguard.py", "SSRF guard"),
    ("selectors.py", "event loop waiting (select)"),
    ("asyncio/", "asyncio machinery"),
    ("concurrent/futures", "thread pools"),
    ("aiohttp/", "aiohttp (other)"),
    ("kombu/", "kombu (broker)"),
    ("celery/", "celery (other)"),
)


def categorize(raw: Path, top: int = 15) -> tuple[int, list[tuple[str, float]], list[tuple[str, float]]]:
    """py-spy ``--format raw`` output -> (samples, share per activity, share per hottest leaf function)."""
    total = 0
    activities: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        total += int(count)
        activity = next((name for key, name in CATEGORIES if any(key in frame for frame in frames)), "other")
        activities[activity] += int(count)
        leaves[frames[-1]] += int(count)
    share = [(name, n / max(1, total)) for name, n in activities.most_common()]
    return total, share, [(name, n / max(1, total)) for name, n in leaves.most_common(top)]


def spy(py_spy: str, pid: int, out: Path, subprocesses: bool) -> subprocess.Popen[bytes]:
    cmd = [py_spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "200", "--nonblocking", "-o", str(out)]
    if subprocesses:
        cmd.append("--subprocesses")
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=int, default=0, help="per-request latency of the image server, ms")
    parser.add_argument("--processes", type=int, default=2, help="Celery pool processes")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--jobs", type=int, default=3)
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy")
    args = parser.parse_args()
    images = imageset.build(args.images)
    names = list(images.names)
    out_dir = BUILD / "profile"
    out_dir.mkdir(parents=True, exist_ok=True)
    with ImageServerProcess(images.directory) as server, Stack(bench_env()) as stack:
        with stack.workers(args.processes, server.url(names[0], 0)) as workers:
            files = {"workers": out_dir / f"workers-{args.latency}ms.txt", "image server": out_dir / "server.txt"}
            spies = [spy(args.py_spy, workers.main_pids()[0], files["workers"], True),
                     spy(args.py_spy, server.pid, files["image server"], False)]
            time.sleep(1.0)  # py-spy attaches
            for _ in range(args.jobs):
                run = stack.run_job(server.urls(names, args.latency))
                print(f"job: {run['images'] / run['seconds']:,.0f} images/s")
            for proc in spies:
                proc.send_signal(signal.SIGINT)
                proc.wait(60)
    for name, path in files.items():
        if not path.exists():
            raise SystemExit(f"py-spy wrote nothing to {path}: is {args.py_spy} runnable (root or ptrace allowed)?")
        total, activities, leaves = categorize(path)
        print(f"\n{name}: {total} samples at 200 Hz ({os.path.relpath(path)})")
        for activity, share in activities:
            print(f"  {share:6.1%}  {activity}")
        print("  hottest functions:")
        for leaf, share in leaves:
            print(f"  {share:6.1%}  {leaf[:110]}")


if __name__ == "__main__":
    main()
