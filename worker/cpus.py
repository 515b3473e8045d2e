"""How many CPUs this process may use: its affinity, capped by its cgroup's CPU quota.

``os.cpu_count()`` counts the host's CPUs. A worker in a container started with ``cpus: 1.5``, or
run under ``taskset -c 0``, may use fewer, and one worker process per CPU it may not use only
contends for the ones it may. So a worker command counts:

- the CPUs in its affinity mask (``os.sched_getaffinity``: ``taskset``, cpusets, Docker's ``--cpuset-cpus``);
- capped by the CPU quota of its cgroup and every cgroup above it (cgroup v2 ``cpu.max``, v1
  ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``: Docker's ``--cpus``, Kubernetes' CPU limits), rounded
  up: 1.5 CPUs of quota make 2 processes, the second using what the first leaves;
- at least 1.

The cgroup files are read where the kernel shows them (``/proc/self/cgroup``, ``/sys/fs/cgroup``);
``allowed_cpus`` takes both paths so that tests can give it a made-up hierarchy.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

PROC_CGROUP = Path("/proc/self/cgroup")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def affinity_cpus() -> int:
    """CPUs in this process's affinity mask (every CPU where the platform has no such mask)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _ancestors(root: Path, relative: str) -> list[Path]:
    """``root/relative`` and each folder above it, up to ``root`` itself (a quota anywhere above counts)."""
    parts = [part for part in relative.strip("/").split("/") if part and part not in (".", "..")]
    return [root.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1)]


def _v2_quota(folder: Path) -> float | None:
    text = _read(folder / "cpu.max")  # "max 100000" (no limit) or "150000 100000" (1.5 CPUs)
    if not text:
        return None
    quota, _, period = text.partition(" ")
    if quota == "max":
        return None
    try:
        return int(quota) / int(period or "100000")
    except (ValueError, ZeroDivisionError):
        return None


def _v1_quota(folder: Path) -> float | None:
    quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
    try:
        if quota is None or period is None or int(quota) <= 0:  # -1: no limit
            return None
        return int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None


def cgroup_quota(proc_cgroup: Path = PROC_CGROUP, root: Path = CGROUP_ROOT) -> float | None:
    """The smallest CPU quota (in CPUs) on this process's cgroup path, v2 or v1; None when none is set."""
    text = _read(proc_cgroup)
    if text is None:
        return None
    quotas: list[float] = []
    for line in text.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, relative = rest.partition(":")
        if hierarchy == "0" and controllers == "":  # cgroup v2 (unified)
            base = root / "unified" if (root / "unified" / "cgroup.controllers").exists() else root
            found = [_v2_quota(folder) for folder in _ancestors(base, relative)]
        elif "cpu" in controllers.split(","):  # cgroup v1: mounted as cpu, or cpu,cpuacct
            mounts = [root / name for name in ("cpu", "cpu,cpuacct", "cpuacct,cpu") if (root / name).is_dir()]
            found = [_v1_quota(folder) for mount in mounts[:1] for folder in _ancestors(mount, relative)]
        else:
            continue
        quotas += [quota for quota in found if quota is not None]
    return min(quotas) if quotas else None


def allowed_cpus(proc_cgroup: Path = PROC_CGROUP, root: Path = CGROUP_ROOT) -> int:
    """The CPUs this process may use: its affinity, capped by its cgroup quota rounded up; at least 1."""
    count = affinity_cpus()
    quota = cgroup_quota(proc_cgroup, root)
    if quota is not None:
        count = min(count, math.ceil(quota))
    return max(1, count)
