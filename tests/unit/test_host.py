"""The host panel's facts: the cgroup memory limit (fake cgroup trees) and `node --version`
asked once without blocking the loop (a real child: a stand-in `node` on PATH)."""

from __future__ import annotations

import asyncio
import os
import platform
from pathlib import Path

import pytest

from runtime.observe.host import Host, NodeVersion, cgroup_memory_limit
from tests.unit.test_cpus import tree


@pytest.mark.parametrize(
    ("files", "own", "expected"),
    [
        ({}, "0::/\n", None),
        ({"memory.max": "max\n"}, "0::/\n", None),
        ({"memory.max": "536870912\n"}, "0::/\n", 512 << 20),
        ({"docker/abc/memory.max": "1073741824"}, "0::/docker/abc\n", 1 << 30),
        (
            {"docker/memory.max": "268435456", "docker/abc/memory.max": "max"},
            "0::/docker/abc\n",
            256 << 20,
        ),
        ({"memory/memory.limit_in_bytes": "9223372036854771712"}, "4:memory:/\n", None),
        (
            {"memory/kube/pod/memory.limit_in_bytes": "134217728"},
            "4:memory:/kube/pod\n",
            128 << 20,
        ),
        ({"memory.max": "garbage"}, "0::/\n", None),
        ({"cpu/kube/memory.limit_in_bytes": "1024"}, "3:cpu:/kube\n", None),
    ],
    ids=[
        "none",
        "v2-max",
        "v2-root",
        "v2-own",
        "v2-parent-tighter",
        "v1-unlimited",
        "v1-own",
        "garbage",
        "v1-other-controller",
    ],
)
def test_cgroup_memory_limit(
    tmp_path: Path, files: dict[str, str], own: str, expected: int | None
) -> None:
    """The tightest memory.max / memory.limit_in_bytes of our cgroups; none when unlimited."""
    proc = tree(tmp_path / "cgroup", files, own)
    assert cgroup_memory_limit(str(tmp_path / "cgroup"), proc_self_cgroup=proc) == expected


def fake_node(directory: Path, body: str) -> None:
    directory.mkdir(exist_ok=True)
    node = directory / "node"
    node.write_text(f"#!/bin/sh\n{body}\n")
    node.chmod(0o755)


async def ask(version: NodeVersion, timeout_s: float = 10.0) -> tuple[str | None, str]:
    """The first answer (None: still running) and the final one, waited for at most timeout_s."""
    first = version.get()
    async with asyncio.timeout(timeout_s):
        while (value := version.get()) is None:
            await asyncio.sleep(0.01)
    return first, value


def reap(pid: int) -> None:
    if pid:
        os.waitpid(pid, 0)  # the master's reaper does this; here nobody else would


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("echo v99.1.2", "v99.1.2"),
        ("exit 3", "-"),
        ("echo v1; echo v2", "-"),
        ("exec yes v1", "-"),
    ],
    ids=["answers", "says-nothing", "two-lines", "too-much"],
)
def test_node_version_is_asked_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, expected: str
) -> None:
    """The first ask starts `node --version` and answers None; its output comes next, or
    `-` when it says nothing usable; later asks start nothing more."""
    fake_node(tmp_path / "bin", body)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")

    async def scenario() -> None:
        version = NodeVersion(asyncio.get_running_loop())
        try:
            assert await ask(version) == (None, expected)
            pid = version.pid
            assert version.get() == expected
            assert version.pid == pid
        finally:
            version.close()
            reap(version.pid)

    asyncio.run(scenario())


def test_node_version_without_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No node on PATH: `-` at once, nothing started."""
    monkeypatch.setenv("PATH", str(tmp_path))

    async def scenario() -> None:
        version = NodeVersion(asyncio.get_running_loop())
        assert version.get() == "-"
        assert version.pid == 0

    asyncio.run(scenario())


def test_node_version_that_hangs_is_killed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A `node` that never answers is killed after the timeout and counts as absent."""
    fake_node(tmp_path / "bin", "exec sleep 30")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")

    async def scenario() -> int:
        version = NodeVersion(asyncio.get_running_loop(), timeout_s=0.3)
        started = asyncio.get_running_loop().time()
        assert await ask(version) == (None, "-")
        assert asyncio.get_running_loop().time() - started < 5
        return version.pid

    _, status = os.waitpid(asyncio.run(scenario()), 0)
    assert os.WIFSIGNALED(status)


def test_host_facts_shape() -> None:
    """CPUs, load, memory and versions as /status carries them."""

    async def scenario() -> None:
        host = Host(asyncio.get_running_loop())
        facts = host.facts()
        host.node.close()
        reap(host.node.pid)
        assert facts["cpus"] == os.cpu_count()
        assert 1 <= facts["cpus_usable"] <= facts["cpus"]
        assert len(facts["load"]) == 3
        assert 0 < facts["memory_available_bytes"] <= facts["memory_total_bytes"]
        assert facts["versions"]["python"] == platform.python_version()
        assert set(facts) >= {"cpu_quota", "memory_limit_bytes", "hostname"}

    asyncio.run(scenario())
