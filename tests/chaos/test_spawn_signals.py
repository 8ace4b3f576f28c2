"""A stop signal that reaches a worker between fork and exec (#13, found by the reload churn
of tests/chaos/test_leaks.py): the worker dies of it, and the master never hears it.

Before the fix the child still had the master's handlers there: asyncio's C handler wrote
the signal to the wakeup fd the child shares with the master, so the master read a
SIGTERM sent to a just-forked worker as its own and shut down (`stop_requested`), while
the worker swallowed it and ran on after exec.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from runtime.proc.spawn import SpawnRequest, spawn

ROUNDS = 200


@pytest.fixture
def wakeup_pipe() -> Iterator[int]:
    """The test process's own SIGTERM handler and wakeup fd, as the master's loop has them."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.set_blocking(write_fd, False)
    old_handler = signal.signal(signal.SIGTERM, lambda *_: None)
    old_fd = signal.set_wakeup_fd(write_fd)
    try:
        yield read_fd
    finally:
        signal.set_wakeup_fd(old_fd)
        signal.signal(signal.SIGTERM, old_handler)
        os.close(read_fd)
        os.close(write_fd)


def _outcome(pid: int, timeout_s: float = 2.0) -> str:
    """How the child ended: the signal's name, `exit N`, or `survived` (then SIGKILLed)."""
    deadline = time.monotonic() + timeout_s
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "survived"
        time.sleep(0.001)
    status = done[1]
    if os.WIFSIGNALED(status):
        return signal.Signals(os.WTERMSIG(status)).name
    return f"exit {os.waitstatus_to_exitcode(status)}"


def test_sigterm_right_after_fork_kills_the_worker_not_the_master(wakeup_pipe: int) -> None:
    """SIGTERM to the worker's group as soon as fork returns: it dies of SIGTERM every
    time, and not one byte reaches the parent's wakeup fd."""
    null = os.open(os.devnull, os.O_WRONLY)
    outcomes: dict[str, int] = {}
    try:
        for _ in range(ROUNDS):
            req = SpawnRequest(
                argv=["/bin/sleep", "5"],
                cwd="/",
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                stdout_fd=null,
                stderr_fd=null,
            )
            pid = spawn(req)
            os.killpg(pid, signal.SIGTERM)
            key = _outcome(pid)
            outcomes[key] = outcomes.get(key, 0) + 1
            if outcomes.get("survived", 0) >= 3:
                break
    finally:
        os.close(null)
    try:
        leaked = os.read(wakeup_pipe, 4096)
    except BlockingIOError:
        leaked = b""
    assert leaked == b""
    assert outcomes == {"SIGTERM": ROUNDS}
