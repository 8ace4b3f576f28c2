"""Every master event reaches the sink's event tap once, as a dict, and its line is unchanged."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

import structlog

from runtime.logs import events
from runtime.logs.formats import LogFormat
from runtime.logs.sink import LogSink


def run(tap: bool) -> tuple[bytes, list[dict[str, Any]]]:
    """The bytes written and the dicts tapped for two events."""
    seen: list[dict[str, Any]] = []

    def keep(event: Mapping[str, Any]) -> None:
        seen.append(dict(event))

    async def scenario() -> bytes:
        read_fd, write_fd = os.pipe()
        sink = LogSink(write_fd, LogFormat.JSON, asyncio.get_running_loop())
        if tap:
            sink.event_tap = keep
        events.configure(sink, cache=False)
        try:
            log = events.logger().bind(app="web", instance=0)
            log.info("worker_exited", pid=41, code=1, signal=None)
            log.warning("restart_scheduled", pid=41, delay_ms=3000)
            log.debug("filtered_out")
        finally:
            structlog.reset_defaults()
        await sink.aclose()
        os.close(write_fd)
        data = os.read(read_fd, 1 << 16)
        os.close(read_fd)
        return data

    return asyncio.run(scenario()), seen


def test_events_are_tapped_once_in_the_documented_key_order() -> None:
    """The tap gets each event (not the filtered ones) with the keys in their line order."""
    data, seen = run(tap=True)
    assert [e["event"] for e in seen] == ["worker_exited", "restart_scheduled"]
    assert list(seen[0]) == [
        "timestamp",
        "level",
        "app",
        "instance",
        "pid",
        "event",
        "code",
        "signal",
    ]
    assert seen[1]["level"] == "warning"
    assert data.count(b"\n") == 2


def test_the_tap_does_not_change_the_lines() -> None:
    """The lines written are the same with and without a tap (timestamps aside)."""
    with_tap, _ = run(tap=True)
    without, _ = run(tap=False)

    def shape(data: bytes) -> list[bytes]:
        return [line.split(b",", 1)[1] for line in data.splitlines()]

    assert shape(with_tap) == shape(without)
