"""What ``--workers auto`` counts: the affinity mask capped by the cgroup CPU quota, read from files laid out
as the kernel lays them (cgroup v2 and v1), and every spelling of ``auto``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from candor.server.core.settings import Settings
from candor.server.cpus import cgroup_cpu_limit, usable_cpus

AFFINITY = len(os.sched_getaffinity(0))


def v2_tree(root: Path, own: str, limits: dict[str, str]) -> Path:
    """A cgroup v2 hierarchy under ``root`` with ``cpu.max`` at the given relative paths; the /proc/self/cgroup file."""
    (root / "cgroup.controllers").parent.mkdir(parents=True, exist_ok=True)
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / own.lstrip("/")).mkdir(parents=True, exist_ok=True)
    for where, value in limits.items():
        (root / where.lstrip("/") / "cpu.max").write_text(value + "\n")
    proc = root.parent / "proc-self-cgroup"
    proc.write_text(f"0::{own}\n")
    return proc


@pytest.mark.parametrize(("limits", "expected"), [
    ({"/kubepods/pod1/c1": "150000 100000"}, 1.5),                    # a pod's 1.5-CPU limit
    ({"/kubepods/pod1/c1": "max 100000"}, None),                      # no limit
    ({"/kubepods/pod1": "100000 100000", "/kubepods/pod1/c1": "300000 100000"}, 1.0),  # the tighter parent wins
    ({}, None),                                                        # no cpu.max anywhere
])  # fmt: skip
def test_cgroup_v2_quota_from_the_own_cgroup_up(tmp_path, limits, expected):
    proc = v2_tree(tmp_path / "cgroup", "/kubepods/pod1/c1", limits)
    assert cgroup_cpu_limit(proc, tmp_path / "cgroup") == expected


def test_cgroup_v1_quota(tmp_path):
    root = tmp_path / "cgroup"
    cpu = root / "cpu,cpuacct" / "docker" / "abc"
    cpu.mkdir(parents=True)
    (cpu / "cpu.cfs_quota_us").write_text("250000\n")
    (cpu / "cpu.cfs_period_us").write_text("100000\n")
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text("12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n")
    assert cgroup_cpu_limit(proc, root) == 2.5
    (cpu / "cpu.cfs_quota_us").write_text("-1\n")  # v1's "no limit"
    assert cgroup_cpu_limit(proc, root) is None


def test_usable_cpus_rounds_a_quota_up_and_never_exceeds_the_affinity(tmp_path):
    proc = v2_tree(tmp_path / "cgroup", "/c", {"/c": "50000 100000"})  # half a CPU
    assert usable_cpus(proc, tmp_path / "cgroup") == 1
    (tmp_path / "cgroup" / "c" / "cpu.max").write_text(f"{(AFFINITY + 4) * 100000} 100000\n")
    assert usable_cpus(proc, tmp_path / "cgroup") == AFFINITY
    assert usable_cpus(tmp_path / "absent", tmp_path / "cgroup") == AFFINITY  # no cgroup file: the affinity


def test_auto_is_zero_in_every_source(tmp_path):
    assert Settings.load(cli={"workers": 0}, env={}).workers == 0
    assert Settings.load(env={"CANDOR_WORKERS": "auto"}).workers == 0
    (tmp_path / "s.toml").write_text('workers = "auto"\n')
    assert Settings.load(env={}, file=str(tmp_path / "s.toml")).workers == 0
    assert Settings.load(env={"CANDOR_WORKERS": "auto"}).worker_count() == usable_cpus()
    with pytest.raises(ValueError, match="field 'workers' must be greater than or equal to 0, got -1"):
        Settings.load(cli={"workers": -1}, env={})


def test_a_bad_workers_flag_is_one_line():
    result = subprocess.run([sys.executable, "-m", "candor", "serve", "--workers", "many"], capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[0].startswith("candor serve: error: argument --workers: expected a number "
                                                            "of processes or auto, got 'many'")  # fmt: skip
