"""runtime.control.instances: the live metrics block of `show`, from process rows."""

from __future__ import annotations

from typing import Any

from runtime.control.instances import instances_text, number


def row(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "instance": 0,
        "pid": 4121,
        "status": "online",
        "cpu_percent": 1.5,
        "memory_bytes": 43_200_000,
        "fds": 23,
        "connections": 2,
        "uptime_s": 330.0,
        "app_metrics": {},
    }
    return {**base, **over}


def test_instances_text_shows_process_loop_and_app_metrics() -> None:
    """Each instance: its process figures, its loop line, its app's metrics; gaps are said."""
    metrics = {
        "queue_depth": 3,
        "mode": "very degraded",
        "Realtime users": 42,
        "loop_delay_p50_ms": 0.4,
        "loop_delay_p99_ms": 12.125,
        "active_handles": 5,
        "active_requests": 0,
        "age_s": 0.8,
    }
    rows = [
        row(app_metrics=metrics),
        row(instance=1, pid=4122, cpu_percent=None, fds=None, connections=None),
        row(instance=2, pid=None, status="stopped"),
    ]
    assert instances_text(rows) == [
        "  live metrics:",
        "    #0 pid 4121 online: cpu 1.5%  rss 41.2mb  fds 23  connections 2  age 5m",
        "       loop delay p50 0.4 ms  p99 12.125 ms  handles 5  requests 0  (reported 0.8 s ago)",
        '       queue_depth=3  mode="very degraded"  "Realtime users"=42',
        "    #1 pid 4122 online: cpu -  rss 41.2mb  fds -  connections -  age 5m",
        "       no app metrics reported",
        "    #2 pid - stopped",
    ]


def test_app_metrics_alone_carry_their_age_and_wrap() -> None:
    """Without loop figures the app's metrics say how old they are, wrapped at 100 columns."""
    metrics = {f"metric_{i:02}": 1000 + i for i in range(12)} | {"age_s": 2.0}
    lines = instances_text([row(app_metrics=metrics)])[2:]
    assert len(lines) == 3
    assert all(len(line) <= 100 for line in lines)
    assert lines[0].startswith("       metric_00=1000  metric_01=1001")
    assert lines[-1].endswith("(reported 2 s ago)")


def test_number() -> None:
    """Floats lose trailing zeros, tiny ones keep 3 digits; text with spaces is quoted."""
    assert [
        number(1.5),
        number(2.0),
        number(0.0001),
        number(0.0),
        number(7),
        number("ok"),
        number(""),
    ] == [
        "1.5",
        "2",
        "0.0001",
        "0",
        "7",
        "ok",
        '""',
    ]
