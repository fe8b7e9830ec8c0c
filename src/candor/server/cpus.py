"""How many CPUs this process may really use: what ``--workers auto`` starts.

``os.cpu_count()`` is the host's count; a container sees the host's too. Two things bound it:

* the CPU affinity mask (``os.sched_getaffinity``: ``taskset``, cpusets, Kubernetes' static CPU manager);
* the cgroup CPU quota (Docker's ``--cpus``, a Kubernetes pod's CPU limit): cgroup v2's ``cpu.max``
  ("QUOTA PERIOD" or "max PERIOD"), or cgroup v1's ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``, at the
  process's own cgroup and every cgroup above it (the tightest wins). A fractional quota rounds up: a
  1.5-CPU limit gets 2 workers, which the kernel then throttles to 1.5 CPUs between them.

>>> usable_cpus() >= 1
True
"""

from __future__ import annotations

import math
import os
from pathlib import Path


def _quota_v2(cgroup_root: Path, relative: str) -> float | None:
    """The tightest cpu.max quota, in CPUs, from the process's cgroup up to the root; None when unlimited."""
    tightest = None
    node = cgroup_root / relative.lstrip("/")
    while True:
        try:
            quota, period = (node / "cpu.max").read_text().split()[:2]
            if quota != "max" and int(period) > 0:
                cpus = int(quota) / int(period)
                tightest = cpus if tightest is None else min(tightest, cpus)
        except (OSError, ValueError):
            pass  # no such file at this level (the root has none), or one that does not parse: no limit from it
        if node == cgroup_root or node.parent == node:
            return tightest
        node = node.parent


def _quota_v1(cgroup_root: Path, relative: str) -> float | None:
    for mount in ("cpu,cpuacct", "cpu"):
        node = cgroup_root / mount / relative.lstrip("/")
        for candidate in (node, cgroup_root / mount):  # inside a container the own cgroup is usually the mount's root
            try:
                quota = int((candidate / "cpu.cfs_quota_us").read_text())
                period = int((candidate / "cpu.cfs_period_us").read_text())
            except (OSError, ValueError):
                continue
            return quota / period if quota > 0 and period > 0 else None
    return None


PROC_SELF_CGROUP = Path("/proc/self/cgroup")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_cpu_limit(proc_self_cgroup: Path = PROC_SELF_CGROUP, cgroup_root: Path = CGROUP_ROOT) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (1.5 for a 1.5-CPU limit); None when there is none."""
    try:
        lines = proc_self_cgroup.read_text().splitlines()
    except OSError:
        return None
    v2 = next((line.split(":", 2)[2] for line in lines if line.startswith("0::")), None)
    if v2 is not None and (cgroup_root / "cgroup.controllers").exists():
        return _quota_v2(cgroup_root, v2)
    for line in lines:  # cgroup v1: "ID:CONTROLLERS:PATH", the cpu controller among others
        parts = line.split(":", 2)
        if len(parts) == 3 and "cpu" in parts[1].split(","):
            return _quota_v1(cgroup_root, parts[2])
    return None


def usable_cpus(proc_self_cgroup: Path = PROC_SELF_CGROUP, cgroup_root: Path = CGROUP_ROOT) -> int:
    """CPUs in the affinity mask, capped by the cgroup quota (rounded up); at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    limit = cgroup_cpu_limit(proc_self_cgroup, cgroup_root)
    if limit is not None:
        cpus = min(cpus, math.ceil(limit))
    return max(1, cpus)
