"""One documented log shape, written by three paths: the worker-line fast path, structlog for
the master's events, and the start-up relay's formatter (README.md, "Logs")."""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path

import pytest
import structlog

from runtime.logs import events
from runtime.logs.formats import STDOUT, JsonFormatter, LogFormat, Source, make_formatter
from runtime.logs.sink import LogSink

ROOT = Path(__file__).resolve().parents[2]
TS = "2026-11-28T22:47:29.123Z"
TS_RE = re.compile(rb'"timestamp":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"')
ANY_TS = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
WORKER_KEYS = ["timestamp", "level", "app", "instance", "pid", "stream", "message"]
EVENT_KEYS = ["timestamp", "level", "app", "instance", "pid", "event"]


def documented_line() -> bytes:
    """The example worker line of README.md's Logs section."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r'^    (\{"timestamp".*"message":"listening"\})$', readme, re.M)
    assert match, "README.md lost its example log line"
    return match.group(1).encode() + b"\n"


def structlog_line(fmt: LogFormat, **fields: object) -> bytes:
    """What structlog writes through a real LogSink for one master event."""

    async def scenario() -> bytes:
        read_fd, write_fd = os.pipe()
        sink = LogSink(write_fd, fmt, asyncio.get_running_loop())
        events.configure(sink, cache=False)
        try:
            events.logger().bind(app="web", instance=0).info("worker_exited", **fields)
        finally:
            structlog.reset_defaults()
        await sink.aclose()
        os.close(write_fd)
        data = os.read(read_fd, 1 << 16)
        os.close(read_fd)
        return data

    return asyncio.run(scenario())


def test_worker_lines_match_the_documented_example() -> None:
    """The fast path and the per-line path write the README's line byte for byte."""
    fmt = JsonFormatter()
    src = Source("web", 0, 4121)
    fast = fmt.lines(src, STDOUT, TS, b"listening\n", 1 << 16)
    slow = fmt.lines(src, STDOUT, TS, b"listening\n", 1 << 16, fast=False)
    assert fast == slow == documented_line()
    assert list(json.loads(fast)) == WORKER_KEYS


@pytest.mark.parametrize("fmt", list(LogFormat), ids=[f.value for f in LogFormat])
def test_structlog_events_equal_the_formatter_events(fmt: LogFormat) -> None:
    """structlog's chain and the relay's formatter give the same bytes for the same event."""
    line = structlog_line(fmt, pid=4121, code=1, signal=None, uptime_s=2.5)
    found = ANY_TS.search(line)  # pretty and raw write no timestamp
    stamp = found.group(0).decode() if found else TS
    fields = {"code": 1, "signal": None, "uptime_s": 2.5}
    expected = make_formatter(fmt).event(stamp, "info", "worker_exited", "web", 0, 4121, fields)
    assert line == expected


def test_event_keys_come_in_the_documented_order() -> None:
    """timestamp, level, app, instance, pid, event, then the event's own fields."""
    record = json.loads(structlog_line(LogFormat.JSON, pid=4121, code=0, delay_ms=100))
    assert list(record) == [*EVENT_KEYS, "code", "delay_ms"]
    assert (record["level"], record["event"], record["pid"]) == ("info", "worker_exited", 4121)
    assert TS_RE.search(json.dumps(record, separators=(",", ":")).encode())


def test_unknown_values_stay_valid_json() -> None:
    """NaN becomes null and an object JSON has no type for is written with str()."""
    record = json.loads(structlog_line(LogFormat.JSON, ratio=float("nan"), where=Path("/x")))
    assert record["ratio"] is None
    assert record["where"] == "/x"
