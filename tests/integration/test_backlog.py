"""Accept-queue depth read from the master's side, checked against the kernel's own `ss` view."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runtime.proc.backlog import open_diag, tcp_backlog, unix_backlog

QUEUED = 7
LIMIT = 32
DEADLINE_S = 5.0
SS_TIMEOUT_S = 10.0

needs_ss = pytest.mark.skipif(shutil.which("ss") is None, reason="iproute2's ss is not installed")


def wait_for(predicate: Callable[[], bool]) -> None:
    """Poll `predicate` until it holds, failing after DEADLINE_S."""
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def ss_queue(args: list[str], local: str) -> tuple[int, int]:
    """(Recv-Q, Send-Q) that `ss` prints for the listener whose local address is `local`."""
    out = subprocess.run(
        ["ss", "-H", "-l", *args], capture_output=True, text=True, check=True, timeout=SS_TIMEOUT_S
    ).stdout
    for line in out.splitlines():
        fields = line.split()
        if "LISTEN" in fields and local in fields:
            at = fields.index("LISTEN")
            return int(fields[at + 1]), int(fields[at + 2])
    raise AssertionError(f"ss does not list {local}:\n{out}")


@pytest.fixture
def closing() -> Iterator[list[socket.socket]]:
    """Sockets a test opens, all closed at its end (clients first, listeners last)."""
    opened: list[socket.socket] = []
    yield opened
    for sock in reversed(opened):
        sock.close()


@needs_ss
@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["ipv4", "ipv6"])
def test_tcp_backlog_counts_what_ss_counts(
    family: socket.AddressFamily, closing: list[socket.socket]
) -> None:
    """N connections to a listener that never accepts read as (N, limit), as ss's Recv-Q/Send-Q."""
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    listener = socket.socket(family, socket.SOCK_STREAM)
    closing.append(listener)
    try:
        listener.bind((host, 0))
    except OSError:
        pytest.skip(f"{host} is not configured here")
    listener.listen(LIMIT)
    port = listener.getsockname()[1]
    assert tcp_backlog(listener) == (0, LIMIT)
    closing.extend(socket.create_connection((host, port)) for _ in range(QUEUED))
    wait_for(lambda: tcp_backlog(listener)[0] == QUEUED)
    local = f"{host}:{port}" if family == socket.AF_INET else f"[{host}]:{port}"
    assert ss_queue(["-t", "-n"], local) == tcp_backlog(listener) == (QUEUED, LIMIT)
    conn, _ = listener.accept()
    closing.append(conn)
    assert tcp_backlog(listener) == (QUEUED - 1, LIMIT)
    assert ss_queue(["-t", "-n"], local) == (QUEUED - 1, LIMIT)


def test_tcp_backlog_queue_holds_limit_plus_one(closing: list[socket.socket]) -> None:
    """With listen(2), three handshakes complete and the rest wait on SYN retries: (3, 2)."""
    listener = socket.socket()
    closing.append(listener)
    listener.bind(("127.0.0.1", 0))
    listener.listen(2)
    port = listener.getsockname()[1]
    for _ in range(5):
        client = socket.socket()
        client.setblocking(False)
        closing.append(client)
        client.connect_ex(("127.0.0.1", port))
    wait_for(lambda: tcp_backlog(listener)[0] == 3)
    time.sleep(0.2)  # the other two stay out of the queue, not late into it
    assert tcp_backlog(listener) == (3, 2)


def test_tcp_backlog_refuses_a_connected_socket(closing: list[socket.socket]) -> None:
    """TCP_INFO of a connection means something else: ValueError, not a wrong backlog."""
    listener = socket.socket()
    closing.append(listener)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    client = socket.create_connection(listener.getsockname())
    closing.append(client)
    with pytest.raises(ValueError, match="not a listening socket"):
        tcp_backlog(client)


@needs_ss
def test_unix_backlog_counts_what_ss_counts(tmp_path: Path, closing: list[socket.socket]) -> None:
    """N connections to a Unix listener read as (N, limit) via sock_diag, as ss shows."""
    path = str(tmp_path / "app.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    closing.append(listener)
    listener.bind(path)
    listener.listen(LIMIT)
    if unix_backlog(listener) is None:
        pytest.skip("this kernel has no sock_diag for Unix sockets (CONFIG_UNIX_DIAG)")
    assert unix_backlog(listener) == (0, LIMIT)
    for _ in range(QUEUED):
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        closing.append(client)
        client.connect(path)
    assert unix_backlog(listener) == (QUEUED, LIMIT)
    assert ss_queue(["-x"], path) == (QUEUED, LIMIT)
    conn, _ = listener.accept()
    closing.append(conn)
    with open_diag() as diag:
        assert unix_backlog(listener, diag=diag) == (QUEUED - 1, LIMIT)
        assert unix_backlog(listener, diag=diag) == (QUEUED - 1, LIMIT)  # the socket is reusable
    assert ss_queue(["-x"], path) == (QUEUED - 1, LIMIT)


def test_unix_backlog_is_none_for_what_is_not_a_unix_listener(
    tmp_path: Path, closing: list[socket.socket]
) -> None:
    """A TCP listener, a connected Unix socket and a plain file give None, never a number."""
    tcp = socket.socket()
    closing.append(tcp)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(4)
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    closing.extend([left, right])
    assert unix_backlog(tcp) is None
    assert unix_backlog(left) is None
    with open(tmp_path / "plain", "wb") as plain:
        assert unix_backlog(plain) is None
