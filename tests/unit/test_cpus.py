"""The CPU count honours affinity and the cgroup v1/v2 quota (fake cgroup trees)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.config.cpus import affinity_count, cgroup_cpu_limit, cpu_count


def tree(root: Path, files: dict[str, str], own: str = "0::/\n") -> str:
    """Write fake cgroup files under `root` and a fake /proc/self/cgroup; return its path."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="ascii")
    proc = root.parent / "proc-self-cgroup"
    proc.write_text(own, encoding="ascii")
    return str(proc)


@pytest.mark.parametrize(
    ("files", "own", "affinity", "expected"),
    [
        ({}, "0::/\n", 8, 8),
        ({"cpu.max": "max 100000\n"}, "0::/\n", 8, 8),
        ({"cpu.max": "200000 100000\n"}, "0::/\n", 8, 2),
        ({"cpu.max": "150000 100000\n"}, "0::/\n", 8, 2),
        ({"cpu.max": "50000 100000\n"}, "0::/\n", 8, 1),
        ({"cpu.max": "400000 100000\n"}, "0::/\n", 2, 2),
        ({"cpu.max": "garbage\n"}, "0::/\n", 4, 4),
        ({"docker/abc/cpu.max": "300000 100000"}, "0::/docker/abc\n", 8, 3),
        (
            {"docker/cpu.max": "100000 100000", "docker/abc/cpu.max": "max 100000"},
            "0::/docker/abc\n",
            8,
            1,
        ),
        (
            {"cpu/cpu.cfs_quota_us": "250000", "cpu/cpu.cfs_period_us": "100000"},
            "1:cpu,cpuacct:/\n",
            8,
            3,
        ),
        (
            {"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"},
            "1:cpu:/\n",
            8,
            8,
        ),
        (
            {
                "cpu,cpuacct/kube/pod/cpu.cfs_quota_us": "100000",
                "cpu,cpuacct/kube/pod/cpu.cfs_period_us": "50000",
            },
            "4:cpu,cpuacct:/kube/pod\n",
            8,
            2,
        ),
        ({"cpu.cfs_quota_us": "300000", "cpu.cfs_period_us": "100000"}, "", 8, 3),
    ],
    ids=[
        "no-cgroup",
        "v2-max",
        "v2-two",
        "v2-round-up",
        "v2-at-least-one",
        "affinity-wins",
        "v2-garbage",
        "v2-nested",
        "v2-parent-limits",
        "v1-quota",
        "v1-unlimited",
        "v1-nested",
        "v1-at-root",
    ],
)
def test_cpu_count_is_the_tightest_limit(
    tmp_path: Path, files: dict[str, str], own: str, affinity: int, expected: int
) -> None:
    """min(affinity, ceil(quota/period)) from v2 cpu.max or v1 cfs files, never below 1."""
    root = tmp_path / "cgroup"
    root.mkdir()
    proc = tree(root, files, own)
    assert cpu_count(str(root), proc_self_cgroup=proc, affinity=affinity) == expected


def test_missing_cgroup_root_means_no_limit(tmp_path: Path) -> None:
    """Without any cgroup files there is no quota."""
    assert cgroup_cpu_limit(str(tmp_path / "none"), proc_self_cgroup=str(tmp_path / "x")) is None


def test_never_below_one(tmp_path: Path) -> None:
    """Even an affinity of zero (impossible, but) yields one CPU."""
    assert cpu_count(str(tmp_path), proc_self_cgroup=str(tmp_path / "x"), affinity=0) == 1


def test_real_machine_count_is_positive() -> None:
    """On the machine running the tests the count is at least 1 and at most the affinity."""
    assert 1 <= cpu_count() <= affinity_count()
