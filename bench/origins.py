"""Small and rate-limiting origins against the full stack: ``python -m bench.origins`` (issue 27).

Two scenarios, each one job submitted with the defaults to the documented setup (the API under
gunicorn, redis-server, ``--processes`` worker processes as shipped, one per core):

- ``small``: ``--photos`` photos (the benchmark's images, ``bench.imageset``) served by what
  ``python -m http.server`` runs: a ThreadingHTTPServer, listen backlog 5 (``tests.originservers``),
  in a process of its own as the real one is;
- ``limited``: ``--limited-urls`` URLs of those photos from a server answering 429 with
  ``Retry-After: 1`` to every request beyond 4 in flight (answered requests take 50 ms);
- ``deep``: the same photos from the benchmark's own server (``bench.server``: aiohttp, listen
  backlog 2048), at each of ``--deep-latency`` milliseconds per request: one origin that takes any
  load, where the per-origin cap is all that differs (it counts no in-flight requests).

For each: the job's outcomes by error code, the requests the server saw, the most it saw in flight
and the statuses it sent, the job's seconds, and the SYNs the kernel dropped meanwhile because a
listen queue was full (``ListenOverflows``, for the whole machine). One JSON object is printed (and written to
``--out``). Nothing in it is asserted: the tests (``tests/test_politeness.py``) do that.

The before/after comparison runs this same file in a copy of the tree before the change; the
command is in docs/fetching.md.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench import ROOT, imageset
from bench.server import ImageServerProcess
from bench.stack import Stack
from tests.originservers import FolderServer, LimitedServer


class FolderServerProcess:
    """``python -m tests.originservers DIR`` (a backlog-5 folder server) as a subprocess."""

    def __init__(self, directory: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.originservers", str(directory)],
                                     cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    def url(self, name: str, n: int | None = None) -> str:
        return f"http://127.0.0.1:{self.port}/{name}" + ("" if n is None else f"?n={n}")

    def counts(self, reset: bool = False) -> dict[str, Any]:
        with urllib.request.urlopen(self.url("__counts__") + ("?reset=1" if reset else ""), timeout=30) as answer:
            return json.loads(answer.read())

    def __enter__(self) -> FolderServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def counts_of(server: FolderServer | FolderServerProcess, reset: bool = False) -> dict[str, Any]:
    if isinstance(server, FolderServerProcess):
        return server.counts(reset)
    counts = server.counts
    found = {"requests": counts.requests, "max_in_flight": counts.max_in_flight,
             "statuses": {str(k): v for k, v in sorted(counts.statuses.items())}}
    if reset:
        counts.reset()
    return found


def listen_overflows() -> int:
    """The kernel's count of connections dropped because a listen queue was full (all sockets)."""
    lines = [line.split() for line in Path("/proc/net/netstat").read_text().splitlines() if line.startswith("TcpExt:")]
    return int(dict(zip(lines[0], lines[1], strict=True)).get("ListenOverflows", 0)) if len(lines) == 2 else 0


def run(stack: Stack, server: FolderServer | FolderServerProcess | None, urls: list[str]) -> dict[str, Any]:
    if server is not None:
        counts_of(server, reset=True)  # forget the warm-up
    overflows = listen_overflows()
    job_id, started, _ = stack.submit(urls)
    _, ended = stack.wait_job(job_id, timeout=1800)
    assert stack.store is not None
    job = stack.store.get(job_id)
    assert job is not None
    codes = collections.Counter(row["error"]["code"] if row.get("status") != "ok" else "ok"
                                for row in stack.store.iter_results(job))
    counts = counts_of(server) if server is not None else {"requests": None, "max_in_flight": None, "statuses": {}}
    seconds = ended - started
    return {"urls": len(urls), "seconds": round(seconds, 2), "urls_per_s": round(len(urls) / seconds, 1),
            "outcomes": dict(sorted(codes.items())),
            "fetch_errors": sum(n for code, n in codes.items() if code not in ("ok", "no_face")),
            "server_requests": counts["requests"], "server_max_in_flight": counts["max_in_flight"],
            "server_statuses": counts["statuses"], "listen_overflows": listen_overflows() - overflows}


def scenarios(stack: Stack, directory: Path, names: list[str], limited_urls: int, processes: int = 2,
              which: tuple[str, ...] = ("small", "limited"), deep_latencies: tuple[int, ...] = (),
              extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``which`` scenarios on ``processes`` fresh worker processes of ``stack`` (with ``extra_env``)."""
    report: dict[str, Any] = {}
    small = FolderServerProcess(directory)
    limited = LimitedServer(directory, limit=4, retry_after="1", latency=0.05)
    warm = FolderServer(directory, backlog=128)
    with small, limited, warm, stack.workers(processes, warm.url(names[0]), extra_env=extra_env):
        if "small" in which:
            report["small"] = run(stack, small, [small.url(name) for name in names])
        if "limited" in which:
            urls = [limited.url(names[i % len(names)], i) for i in range(limited_urls)]
            report["limited"] = run(stack, limited, urls)
        if "deep" in which:
            with ImageServerProcess(directory) as deep:
                for ms in deep_latencies:
                    report[f"deep_{ms}ms"] = run(stack, None, deep.urls(names, ms))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=2, help="worker processes (default 2: one per core)")
    parser.add_argument("--photos", type=int, default=1496)
    parser.add_argument("--limited-urls", type=int, default=300)
    parser.add_argument("--scenario", choices=["small", "limited", "deep"], nargs="*",
                        default=["small", "limited", "deep"])
    parser.add_argument("--deep-latency", type=int, nargs="*", default=[0, 100])
    parser.add_argument("--images", type=Path, help="a folder of images (default: bench.imageset's)")
    parser.add_argument("--set", action="append", default=[], metavar="FER_NAME=VALUE",
                        help="a setting for the API and workers, e.g. FER_FETCH_PER_ORIGIN=192 (repeatable)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    directory = args.images or imageset.build(args.photos).directory
    names = sorted(p.name for p in directory.iterdir() if p.suffix.lower() in imageset.SUFFIXES)[: args.photos]
    settings = dict(item.split("=", 1) for item in args.set)
    env = {**os.environ, "FER_ALLOWED_NETWORKS": "127.0.0.1/32", **settings}
    report: dict[str, Any] = {"processes": args.processes, "tree": str(Path(__file__).resolve().parent.parent),
                              "settings": settings, "when": time.strftime("%Y-%m-%d %H:%M")}
    with Stack(env) as stack:
        report |= scenarios(stack, directory, names, args.limited_urls, args.processes, tuple(args.scenario),
                            tuple(args.deep_latency))
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
