"""Process facts from /proc (Linux): peak RSS, CPU time, children, and how busy the machine is."""

from __future__ import annotations

import os
import time
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _status_mb(pid: int | str, field: str) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        return None
    return None


def vmhwm_mb(pid: int | str = "self") -> float | None:
    """Peak resident set size (VmHWM) of a process in MB (10^6 bytes); None if it is gone."""
    return _status_mb(pid, "VmHWM")


def vmrss_mb(pid: int | str = "self") -> float | None:
    """Resident set size now (VmRSS) of a process in MB (10^6 bytes); None if it is gone."""
    return _status_mb(pid, "VmRSS")


def _stat_fields(pid: int, stat: str = "") -> list[str] | None:
    try:
        text = Path(stat or f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields after "pid (comm) ", starting at state


def _cpu(fields: list[str] | None) -> float:
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (0 if it is gone)."""
    return _cpu(_stat_fields(pid))


def thread_cpu_seconds(tid: int) -> float:
    """User + system CPU seconds one thread of this process has used so far (0 if it is gone)."""
    return _cpu(_stat_fields(tid, f"/proc/self/task/{tid}/stat"))


def children(pid: int) -> list[int]:
    """Direct children of ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and int(fields[1]) == pid:
                found.append(int(entry.name))
    return sorted(found)


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and its live direct children (e.g. gunicorn or Celery and their pool)."""
    return cpu_seconds(pid) + sum(cpu_seconds(child) for child in children(pid))


def load_average() -> float:
    """The 1-minute load average: other work on the machine shows up here."""
    return os.getloadavg()[0]


def busy_processes(exclude: set[int] | None = None, seconds: float = 1.0, threshold: float = 0.3) -> list[str]:
    """Commands of processes (not in ``exclude``) using over ``threshold`` of a core, sampled over ``seconds``.

    Recorded with the results to say that something else (a training run, a test suite) was
    competing for the cores.
    """
    exclude = exclude or set()

    def snapshot() -> dict[int, float]:
        return {int(e.name): cpu_seconds(int(e.name)) for e in Path("/proc").iterdir() if e.name.isdigit()}

    before = snapshot()
    time.sleep(seconds)
    after = snapshot()
    busy = []
    for pid, used in after.items():
        if pid in exclude or pid == os.getpid() or (used - before.get(pid, used)) / seconds < threshold:
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        busy.append(f"{cmd[:90]} ({(used - before[pid]) / seconds:.0%} of a core)")
    return busy
