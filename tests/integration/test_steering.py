"""Steering a real reuseport group: connections reach only the sockets the program names."""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Iterator

import pytest

from runtime.proc import steer
from runtime.proc.backlog import tcp_backlog
from runtime.proc.steer import ReuseportGroup

LOOPBACK = "127.0.0.1"
BACKLOG = 1024
DEADLINE_S = 5.0


class Slots:
    """Reuseport listeners on one port keyed by slot name, mirrored by a ReuseportGroup."""

    def __init__(self) -> None:
        self._holder = self._socket(0)  # bound, never listening: reserves the port
        self.port = self._holder.getsockname()[1]
        self.socks: dict[str, socket.socket] = {}
        self.group: ReuseportGroup[str] = ReuseportGroup()

    @staticmethod
    def _socket(port: int) -> socket.socket:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((LOOPBACK, port))
        return sock

    def open(self, name: str) -> None:
        sock = self._socket(self.port)
        sock.listen(BACKLOG)
        self.socks[name] = sock
        self.group.join(name)

    def close(self, name: str) -> None:
        self.socks.pop(name).close()
        self.group.leave(name)

    def steer(self, live: list[str]) -> None:
        steer.attach(next(iter(self.socks.values())), self.group.program_for(live))

    def connect(self, count: int) -> dict[str, int]:
        """Make `count` fresh connections; return how many each slot queued (then drained)."""
        clients = [socket.create_connection((LOOPBACK, self.port)) for _ in range(count)]
        deadline = time.monotonic() + DEADLINE_S
        while sum(tcp_backlog(s)[0] for s in self.socks.values()) < count:
            assert time.monotonic() < deadline, "connections did not all reach a queue"
            time.sleep(0.01)
        counts = {name: tcp_backlog(sock)[0] for name, sock in self.socks.items()}
        for name, sock in self.socks.items():
            for _ in range(counts[name]):  # queued, so accept() returns at once
                sock.accept()[0].close()  # the server closes first: no client TIME_WAIT
        for client in clients:
            client.close()
        return counts

    def close_all(self) -> None:
        for sock in self.socks.values():
            sock.close()
        self._holder.close()


@pytest.fixture
def slots() -> Iterator[Slots]:
    """A fresh group on a reserved loopback port, closed at the end."""
    made = Slots()
    yield made
    made.close_all()


def test_steered_group_skips_the_dead_slot(slots: Slots) -> None:
    """Steered to slots {0, 2} of 3, 30 fresh connections never reach slot 1, and both others get some."""
    for name in ("s0", "s1", "s2"):
        slots.open(name)
    slots.steer(["s0", "s2"])
    counts = slots.connect(30)
    assert counts["s1"] == 0
    assert counts["s0"] > 0
    assert counts["s2"] > 0  # P(one of two gets none of 30) is about 2e-9


def test_model_names_the_right_sockets_after_a_close(slots: Slots) -> None:
    """After a close the last socket takes the freed index; re-steering by name still holds."""
    for name in ("s0", "s1", "s2", "s3"):
        slots.open(name)
    slots.steer(["s0", "s2"])
    slots.close("s0")  # s3 moves into index 0
    assert slots.group.members() == ("s3", "s1", "s2")
    stale = slots.connect(30)  # the old program's indices {0, 2} now mean s3 and s2
    assert stale["s1"] == 0
    assert stale["s3"] > 0
    slots.steer(["s1", "s2"])
    counts = slots.connect(30)
    assert counts["s3"] == 0
    assert counts["s1"] > 0
    assert counts["s2"] > 0
    slots.open("s4")
    slots.steer(["s4"])
    assert slots.connect(20) == {"s1": 0, "s2": 0, "s3": 0, "s4": 20}


def test_large_fragmented_live_set_in_the_kernel(slots: Slots) -> None:
    """Over 120 sockets with 50 scattered dead, 600 connections reach only the 70 live ones."""
    names = [f"s{i}" for i in range(120)]
    for name in names:
        slots.open(name)
    live = sorted(random.Random(3).sample(names, 70))
    program = slots.group.program_for(live)
    assert len(program) > 40  # a many-step program, not the 3-instruction contiguous case
    slots.steer(live)
    counts = slots.connect(600)
    assert sum(counts[name] for name in names if name not in live) == 0
    assert sum(1 for name in live if counts[name] > 0) >= 60  # mean 8.6 each: spread, not piled
