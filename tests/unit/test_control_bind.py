"""Binding the control socket (runtime.control.bind): a socket at the path always answers,
one master wins when several start at once, and a dead master's socket is replaced."""

from __future__ import annotations

import os
import select
import socket
import stat
import time

import pytest

from runtime.control.bind import AlreadyRunning, bind_control

ROUNDS = 100  # the old bind-then-listen lost about 2 runs in 3 of this
RACERS = 12
RACE_TIMEOUT_S = 10.0


def test_the_path_answers_and_nothing_else_is_left(short_dir: str) -> None:
    """Once bound, the path is a 0600 socket that accepts; the directory holds only it."""
    path = os.path.join(short_dir, "c.sock")
    sock = bind_control(path)
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert os.listdir(short_dir) == ["c.sock"]
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(path)
            sock.setblocking(True)
            conn, _ = sock.accept()
            conn.close()
    finally:
        sock.close()


def test_a_dead_masters_socket_is_replaced_and_a_live_one_refused(short_dir: str) -> None:
    path = os.path.join(short_dir, "c.sock")
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(path)  # bound and closed without listening: what a killed master leaves
    sock = bind_control(path)
    try:
        with pytest.raises(AlreadyRunning, match="already running this ecosystem"):
            bind_control(path)
        assert os.listdir(short_dir) == ["c.sock"]  # the loser left nothing behind
    finally:
        sock.close()


def _race(path: str, go: int, hold: int, report: int) -> None:
    """In a child: wait for the start (the `go` pipe closed), try to bind, report b"1"
    (won) or b"0", and keep the socket until the `hold` pipe is closed."""
    try:
        os.read(go, 1)
        try:
            sock = bind_control(path)
        except AlreadyRunning:
            os.write(report, b"0")
        else:
            os.write(report, b"1")
            os.read(hold, 1)
            sock.close()
    finally:
        os._exit(0)


def _read_reports(fd: int, count: int) -> bytes:
    """`count` bytes from the racers, or what came before RACE_TIMEOUT_S."""
    reports = b""
    deadline = time.monotonic() + RACE_TIMEOUT_S
    while len(reports) < count:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(fd, count - len(reports)) if ready else b""
        if not chunk:
            break
        reports += chunk
    return reports


def _one_round(path: str) -> bytes:
    """RACERS children bind `path` at once; what they reported."""
    (go_r, go_w), (hold_r, hold_w), (report_r, report_w) = (os.pipe() for _ in range(3))
    parent_ends = {go_r, go_w, hold_r, hold_w, report_r, report_w}
    pids = []
    try:
        for _ in range(RACERS):
            pid = os.fork()
            if pid == 0:
                for fd in (go_w, hold_w, report_r):
                    os.close(fd)
                _race(path, go_r, hold_r, report_w)
            pids.append(pid)
        os.close(go_w)  # every racer wakes at once
        parent_ends.discard(go_w)
        return _read_reports(report_r, RACERS)
    finally:
        for fd in parent_ends:  # hold_w too: the winner lets go
            os.close(fd)
        for pid in pids:
            os.waitpid(pid, 0)


def test_one_of_several_masters_started_at_once_wins(short_dir: str) -> None:
    """RACERS processes bind the same path at the same moment, ROUNDS times: one wins
    each round. (Bound then listening at the path, a second master could find it not
    answering yet, take it for a dead one's, remove it and bind its own.)"""
    path = os.path.join(short_dir, "c.sock")
    for _ in range(ROUNDS):
        reports = _one_round(path)
        assert sorted(reports) == sorted(b"1" + b"0" * (RACERS - 1)), reports
        os.unlink(path)  # the winner closed without removing it: a stale one now
