"""runtime/preload/python/runtime_metrics.py in this process, on a real datagram socket and real loops."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
import uvloop

from runtime.observe.appmetrics import AppMetrics

MODULE = (
    Path(__file__).resolve().parents[2] / "runtime" / "preload" / "python" / "runtime_metrics.py"
)
RECV_TIMEOUT_S = 5.0


def load() -> ModuleType:
    """A fresh copy of the module (its state is module-level)."""
    spec = importlib.util.spec_from_file_location("runtime_metrics_under_test", MODULE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def rm() -> Iterator[ModuleType]:
    """A fresh module; its socket is closed and its timer cancelled afterwards."""
    module = load()
    yield module
    if module._timer is not None:
        module._timer.cancel()
    if module._sock is not None:
        module._sock.close()


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A datagram socket standing in for the master's NOTIFY_SOCKET."""
    with tempfile.TemporaryDirectory(prefix="rm-") as where:
        path = os.path.join(where, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(RECV_TIMEOUT_S)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        try:
            yield sock
        finally:
            sock.close()


def fields(data: bytes) -> dict[str, object]:
    out: dict[str, object] = {}
    for line in data.decode().split("\n"):
        key, _, value = line.partition("=")
        out[key] = json.loads(value)
    return out


def test_set_sends_at_once_without_a_loop(rm: ModuleType, receiver: socket.socket) -> None:
    """Without a watched loop the first set() goes out at once as X_RUNTIME_METRICS."""
    rm.set("jobs", 3)
    assert fields(receiver.recv(4096)) == {"X_RUNTIME_METRICS": {"jobs": 3}}


def test_sets_within_a_second_go_out_together_soon(rm: ModuleType, receiver: socket.socket) -> None:
    """set()s right after a send are sent once, by a timer, within REPORT_S: none is lost."""
    rm.set("a", 1)
    receiver.recv(4096)
    started = time.monotonic()
    rm.set("b", "two")
    rm.set("a", None)
    got = fields(receiver.recv(4096))
    assert got == {"X_RUNTIME_METRICS": {"a": None, "b": "two"}}
    assert time.monotonic() - started < rm.REPORT_S + 0.5
    rm.set("c", 1)
    assert fields(receiver.recv(4096)) == {"X_RUNTIME_METRICS": {"b": "two", "c": 1}}


def test_bad_input_is_ignored_never_raised(rm: ModuleType, receiver: socket.socket) -> None:
    """Bad names and values do nothing; past 32 names new ones are ignored."""
    for name, value in [
        (3, 1),
        ("", 1),
        ("x" * 65, 1),
        ("a\tb", 1),
        ("v", [1]),
        ("n", float("nan")),
    ]:
        rm.set(name, value)  # type: ignore[arg-type]
    rm.set("unknown", None)
    assert rm._custom == {}
    for i in range(40):
        rm.set(f"m{i}", "x" * 500)
    assert len(rm._custom) == rm.MAX_CUSTOM
    assert all(len(v) == rm.MAX_TEXT_CHARS for v in rm._custom.values())


def test_outside_the_runtime_nothing_happens(
    rm: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No NOTIFY_SOCKET: set() and watch_loop() are no-ops and open no socket."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    rm.set("x", 1)
    loop = asyncio.new_event_loop()
    try:
        rm.watch_loop(loop)
    finally:
        loop.close()
    assert rm._sock is None
    assert rm._watch is None
    assert rm._custom == {}


def test_big_reports_are_split_under_the_datagram_size(
    rm: ModuleType, receiver: socket.socket
) -> None:
    """32 long values are sent as several datagrams, each under what the master reads."""
    for i in range(rm.MAX_CUSTOM):
        rm._custom[f"metric-{i:02}-" + "n" * 50] = "v" * rm.MAX_TEXT_CHARS
    rm._flush()
    store, seen = AppMetrics(), 0
    receiver.settimeout(0.5)
    while True:
        try:
            data = receiver.recv(8192)
        except TimeoutError:
            break
        assert len(data) <= rm.MAX_DATAGRAM_BYTES
        seen += 1
        store.take_notify({"X_RUNTIME_METRICS": data.decode().partition("=")[2]}, 1, 0.0)
    assert seen > 1
    assert len(store.view(0.0)) == rm.MAX_CUSTOM + 1


@pytest.mark.parametrize(("q", "expected"), [(50, 5.0), (99, 10.0), (1, 1.0), (100, 10.0)])
def test_percentile_is_nearest_rank(q: int, expected: float) -> None:
    """p50 of 1..10 is 5, p99 is the largest: a one-off stall shows in p99."""
    assert load().percentile([float(i) for i in range(1, 11)], q) == expected


LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


@pytest.mark.parametrize("kind", sorted(LOOPS))
def test_watched_loop_reports_a_stall_in_p99(
    rm: ModuleType, receiver: socket.socket, kind: str
) -> None:
    """A 250 ms blocking callback shows in loop_delay_p99_ms; p50 stays low; tasks counted."""
    rm.set("jobs", 1)
    receiver.recv(4096)  # the direct send, before any loop
    loop = LOOPS[kind]()

    def stall() -> None:
        time.sleep(0.25)  # the blocking callback being measured

    async def main() -> None:
        rm.watch_loop(asyncio.get_running_loop())
        rm.set("jobs", 2)  # rides along with the loop report now
        asyncio.get_running_loop().call_later(1.3, stall)
        await asyncio.sleep(2.5)

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    reports = []
    receiver.settimeout(0.2)
    try:
        while len(reports) < 10:
            reports.append(fields(receiver.recv(4096)))
    except TimeoutError:
        pass  # all read
    assert 1 <= len(reports) <= 3
    loops = [r["X_RUNTIME_LOOP"] for r in reports]
    assert max(r["loop_delay_p99_ms"] for r in loops) >= 200  # type: ignore[index]
    assert min(r["loop_delay_p50_ms"] for r in loops) < 50  # type: ignore[index]
    assert all(r["active_handles"] >= 1 for r in loops)  # type: ignore[index]
    assert reports[-1]["X_RUNTIME_METRICS"] == {"jobs": 2}
