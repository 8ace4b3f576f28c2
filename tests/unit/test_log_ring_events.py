"""The log ring keeps the master's events apart from worker lines, bounded, for the dashboard."""

from __future__ import annotations

import asyncio

from runtime.logs.formats import STDOUT, Source
from runtime.logs.ring import MAX_EVENT_FIELDS, MAX_EVENT_VALUE_CHARS, MAX_EVENTS, LogRing


def event(name: str, **fields: object) -> dict[str, object]:
    return {"timestamp": "2026-11-28T22:47:29.123Z", "level": "info", "event": name, **fields}


def test_events_are_bounded_in_count_and_size() -> None:
    """At most MAX_EVENTS are kept, each value cut and non-scalars kept as JSON text."""
    ring = LogRing()
    for i in range(MAX_EVENTS + 50):
        ring.add_event(event("worker_started", pid=i))
    kept = ring.events(10 * MAX_EVENTS)
    assert len(kept) == MAX_EVENTS
    assert kept[0]["pid"] == 50
    assert [e["pid"] for e in ring.events(2)] == [MAX_EVENTS + 48, MAX_EVENTS + 49]
    assert ring.events(0) == []
    ring.add_event(event("hint", message="x" * 10_000, ports=[80, 443], ok=True, code=None))
    last = ring.events(1)[0]
    assert len(last["message"]) == MAX_EVENT_VALUE_CHARS
    assert last["ports"] == "[80,443]"
    assert (last["ok"], last["code"]) == (True, None)
    ring.add_event(event("wide", **{f"k{i}": i for i in range(100)}))
    assert len(ring.events(1)[0]) == MAX_EVENT_FIELDS


def test_only_followers_that_ask_get_events_in_order_with_lines() -> None:
    """`subscribe(events=True)` gets events and lines as they happen; `logs` followers
    (the default) and the worker-line tail never see events."""

    async def scenario() -> None:
        ring = LogRing()
        plain = ring.subscribe()
        both = ring.subscribe(events=True)
        ring.add(Source("web", 0, 42), STDOUT, "2026-11-28T22:47:29.100Z", b"one\n")
        ring.add_event(event("worker_exited", app="web", instance=0, pid=42, code=1))
        ring.add(Source("web", 0, 43), STDOUT, "2026-11-28T22:47:29.200Z", b"two\n")
        got = [both.get_nowait() for _ in range(both.qsize())]
        assert [r.get("message", r.get("event")) for r in got] == ["one", "worker_exited", "two"]
        assert [r["message"] for r in [plain.get_nowait() for _ in range(plain.qsize())]] == [
            "one",
            "two",
        ]
        assert [r["message"] for r in ring.tail(10)] == ["one", "two"]
        ring.unsubscribe(both)
        ring.add_event(event("worker_started"))
        assert both.empty()

    asyncio.run(scenario())
