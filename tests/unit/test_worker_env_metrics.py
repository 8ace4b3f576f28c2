"""Which workers get the node preload and the RUNTIME_IPC flag (runtime.proc.spawn), and the
IPC channel's reader under hostile lines (runtime.proc.ipc)."""

from __future__ import annotations

import asyncio
import shutil
import socket
from pathlib import Path

import pytest

from runtime.config.load import direct_app
from runtime.config.spec import AppSpec
from runtime.proc.ipc import RUNTIME_CHANNEL_ENV, Channel
from runtime.proc.spawn import (
    DRAIN_ENV,
    NODE_PRELOAD,
    PORTS_ENV,
    WorkerEnv,
    worker_environment,
)


def spec(tmp_path: Path, script: str, **keys: object) -> AppSpec:
    (tmp_path / script).write_text("")
    return direct_app(script, keys, cwd=str(tmp_path), environ={"PATH": "/usr/bin:/bin"}).apps[0]


@pytest.fixture
def node_on_path() -> None:
    if shutil.which("node", path="/usr/bin:/bin") is None:
        pytest.skip("node is not in /usr/bin or /bin")


@pytest.mark.usefixtures("node_on_path")
def test_node_fork_worker_gets_the_preload_for_its_metrics(tmp_path: Path) -> None:
    """A fork-mode node worker has its IPC channel, RUNTIME_IPC=1 and the preload (no ports)."""
    env = worker_environment(
        spec(tmp_path, "server.js"),
        0,
        WorkerEnv(base={"NODE_OPTIONS": "--max-old-space-size=64"}, notify_socket=None),
    )
    assert env[RUNTIME_CHANNEL_ENV] == "1"
    assert env["NODE_OPTIONS"] == f'--max-old-space-size=64 --require "{NODE_PRELOAD}"'
    assert PORTS_ENV not in env
    assert "PYTHONPATH" not in env


@pytest.mark.usefixtures("node_on_path")
def test_preload_false_leaves_node_options_alone(tmp_path: Path) -> None:
    """`preload: false`: the channel (and RUNTIME_IPC) stay, NODE_OPTIONS is the user's."""
    env = worker_environment(
        spec(tmp_path, "server.js", preload=False), 0, WorkerEnv(base={}, notify_socket=None)
    )
    assert env[RUNTIME_CHANNEL_ENV] == "1"
    assert "NODE_OPTIONS" not in env


def test_python_fork_worker_is_left_alone(tmp_path: Path) -> None:
    """A fork-mode Python worker gets no IPC flag and no preload; a stray RUNTIME_IPC is dropped."""
    env = worker_environment(
        spec(tmp_path, "app.py"), 0, WorkerEnv(base={RUNTIME_CHANNEL_ENV: "1"}, notify_socket=None)
    )
    assert RUNTIME_CHANNEL_ENV not in env
    assert "NODE_OPTIONS" not in env
    assert "PYTHONPATH" not in env


@pytest.mark.parametrize(("kill_timeout", "drain"), [(None, "4500"), (30000, "29500"), (300, "0")])
def test_cluster_python_worker_drains_within_its_kill_timeout(
    tmp_path: Path, kill_timeout: int | None, drain: str
) -> None:
    """The Python preload's drain bound is kill_timeout less 500 ms (default 5000), never
    negative; a stray value in the environment is replaced."""
    keys: dict[str, object] = {"exec_mode": "cluster", "instances": 2}
    if kill_timeout is not None:
        keys["kill_timeout"] = kill_timeout
    wenv = WorkerEnv(
        base={DRAIN_ENV: "1"},
        notify_socket=None,
        listen_fds=(3,),
        listen_names=("127.0.0.1_8000",),
        listen_ports=(8000,),
    )
    env = worker_environment(spec(tmp_path, "app.py", **keys), 0, wenv)
    assert env[DRAIN_ENV] == drain


def test_fork_worker_gets_no_drain_bound(tmp_path: Path) -> None:
    """No inherited port, no preload, no drain: a stray RUNTIME_DRAIN_MS is dropped."""
    env = worker_environment(
        spec(tmp_path, "app.py"), 0, WorkerEnv(base={DRAIN_ENV: "1"}, notify_socket=None)
    )
    assert DRAIN_ENV not in env


def test_channel_drops_lines_too_deep_to_decode() -> None:
    """64 KiB of `[` is dropped like bad JSON, and the next message still arrives."""

    async def main() -> list[object]:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ours.setblocking(False)
        got: list[object] = []
        channel = Channel(ours, got.append)
        channel.start(asyncio.get_running_loop())
        try:
            theirs.sendall(b"[" * 60_000 + b"\n" + b'{"type":"runtime:metrics","data":{"a":1}}\n')
            async with asyncio.timeout(5):
                while not got:
                    await asyncio.sleep(0.01)
        finally:
            channel.close()
            theirs.close()
        return got

    assert asyncio.run(main(), debug=True) == [{"type": "runtime:metrics", "data": {"a": 1}}]
