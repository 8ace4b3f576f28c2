"""The sd_notify receiver on a real datagram socket, with real sender processes."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import sys
import tempfile
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
import uvloop

from runtime.proc.notify import NotifyServer, notify_socket_path, parse_notify

Message = tuple[int, dict[str, str]]
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


@pytest.fixture(params=sorted(LOOPS))
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, None]], None]:
    """Run a coroutine on a fresh debug-mode loop of each kind the master may use."""
    factory = LOOPS[request.param]

    def runner(coro: Coroutine[Any, Any, None]) -> None:
        with asyncio.Runner(debug=True, loop_factory=factory) as loop_runner:
            loop_runner.run(coro)

    return runner


@pytest.fixture
def runtime_dir() -> Iterator[str]:
    """A short private 0700 directory, like the master's runtime dir."""
    with tempfile.TemporaryDirectory(prefix="rt-") as path:
        os.chmod(path, 0o700)
        yield path


class Inbox:
    """Collects callbacks and lets a test await the n-th one with a deadline."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._changed = asyncio.Event()

    def __call__(self, pid: int, fields: dict[str, str]) -> None:
        self.messages.append((pid, fields))
        self._changed.set()

    async def wait_for(self, count: int, timeout_s: float = 5.0) -> list[Message]:
        async with asyncio.timeout(timeout_s):
            while len(self.messages) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.messages


def _send(path: str, *payloads: bytes) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:
        for payload in payloads:
            client.sendto(payload, path)


CHILD = """
import os, socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"READY=1\\nSTATUS=x", os.environ["NOTIFY_SOCKET"])
s.sendto(b"STOPPING=1\\n", os.environ["NOTIFY_SOCKET"])
"""


def test_child_ready_arrives_with_its_real_pid(
    run: Callable[[Coroutine[Any, Any, None]], None], runtime_dir: str
) -> None:
    """A child process sending READY=1 and STATUS=x is identified by its kernel-given pid."""

    async def scenario() -> None:
        inbox = Inbox()
        server = NotifyServer(notify_socket_path(runtime_dir), inbox)
        await server.start()
        try:
            env = {**os.environ, "NOTIFY_SOCKET": server.path}
            child = await asyncio.create_subprocess_exec(sys.executable, "-c", CHILD, env=env)
            try:
                messages = await inbox.wait_for(2)
            finally:
                async with asyncio.timeout(10):
                    assert await child.wait() == 0
        finally:
            server.close()
        pid = child.pid
        assert messages == [(pid, {"READY": "1", "STATUS": "x"}), (pid, {"STOPPING": "1"})]

    run(scenario())


def test_garbage_is_ignored_and_the_next_message_arrives(
    run: Callable[[Coroutine[Any, Any, None]], None], runtime_dir: str
) -> None:
    """Bad UTF-8, lines without '=', empty and oversized datagrams are dropped, never raised."""

    async def scenario() -> None:
        inbox = Inbox()
        server = NotifyServer(notify_socket_path(runtime_dir), inbox)
        await server.start()
        try:
            _send(
                server.path,
                b"\xff\xfe READY=1",
                b"no equals sign",
                b"",
                b"=1\n\n",
                b"STATUS=" + b"x" * 10_000,  # truncated by the 4 KiB read: dropped whole
                b"READY=1\nbogus line\nMAINPID=42",
            )
            messages = await inbox.wait_for(1)
            await asyncio.sleep(0.05)  # room for a wrongly delivered extra message
        finally:
            server.close()
        assert messages == [(os.getpid(), {"READY": "1", "MAINPID": "42"})]

    run(scenario())


def test_every_queued_datagram_is_drained(
    run: Callable[[Coroutine[Any, Any, None]], None], runtime_dir: str
) -> None:
    """A full receive queue, filled before the loop wakes up, is delivered in full and in order."""

    async def scenario() -> None:
        inbox = Inbox()
        server = NotifyServer(notify_socket_path(runtime_dir), inbox)
        await server.start()
        sent = 0
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:
                client.setblocking(False)
                # The queue holds net.unix.max_dgram_qlen datagrams; stop when it is full.
                while sent < 1000:
                    try:
                        client.sendto(f"STATUS={sent}".encode(), server.path)
                    except BlockingIOError:
                        break
                    sent += 1
            messages = await inbox.wait_for(sent)
        finally:
            server.close()
        assert sent > 1
        assert [fields["STATUS"] for _, fields in messages] == [str(i) for i in range(sent)]

    run(scenario())


def test_passed_fds_are_closed_not_leaked(
    run: Callable[[Coroutine[Any, Any, None]], None], runtime_dir: str
) -> None:
    """An fd sent with SCM_RIGHTS (FDSTORE) is closed by the receiver."""

    async def scenario() -> None:
        inbox = Inbox()
        server = NotifyServer(notify_socket_path(runtime_dir), inbox)
        await server.start()
        read_fd, write_fd = os.pipe()
        try:
            before = len(os.listdir("/proc/self/fd"))
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:
                client.connect(server.path)
                socket.send_fds(client, [b"FDSTORE=1\nFDNAME=x"], [read_fd, write_fd])
            messages = await inbox.wait_for(1)
            after = len(os.listdir("/proc/self/fd"))
        finally:
            server.close()
            os.close(read_fd)
            os.close(write_fd)
        assert messages == [(os.getpid(), {"FDSTORE": "1", "FDNAME": "x"})]
        assert after == before

    run(scenario())


def test_start_replaces_a_leftover_file_and_close_removes_it(
    run: Callable[[Coroutine[Any, Any, None]], None], runtime_dir: str
) -> None:
    """A leftover socket file is replaced on start; close removes it and is idempotent."""
    path = notify_socket_path(runtime_dir)

    async def scenario() -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as dead:
            dead.bind(path)
        server = NotifyServer(path, Inbox())
        await server.start()
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        assert repr(server) == f"<NotifyServer unix:{path}>"
        server.close()
        server.close()

    run(scenario())
    assert not os.path.exists(path)


def test_notify_socket_path() -> None:
    """The path lives in the runtime dir; one too long for sun_path is refused."""
    assert notify_socket_path("/run/rt") == "/run/rt/notify.sock"
    with pytest.raises(ValueError, match="longer than 107 bytes"):
        notify_socket_path("/" + "d" * 100)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"READY=1", {"READY": "1"}),
        (b"READY=1\nSTATUS=Serving 3 = three\n", {"READY": "1", "STATUS": "Serving 3 = three"}),
        (b"STATUS=a\nSTATUS=b", {"STATUS": "b"}),
        (b"STOPPING=1\nMAINPID=4121", {"STOPPING": "1", "MAINPID": "4121"}),
        (b"X_APP=1\nnoise\n=x\nK\x00=v", {"X_APP": "1"}),
        (b"STATUS=", {"STATUS": ""}),
        (b"\xc3\x28", {}),
        (b"", {}),
    ],
    ids=["ready", "status-with-equals", "last-wins", "stopping-mainpid", "bad-lines", "empty-value",
         "bad-utf8", "empty"],
)  # fmt: skip
def test_parse_notify(data: bytes, expected: dict[str, str]) -> None:
    """KEY=VALUE lines parse into a dict; anything else is skipped."""
    assert parse_notify(data) == expected
