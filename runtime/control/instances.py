"""The live metrics block of `show`: per instance its process figures and what it reports."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from runtime.control.render import human_bytes, human_uptime

LOOP_KEYS = ("loop_delay_p50_ms", "loop_delay_p99_ms", "active_handles", "active_requests")
AGE_KEY = "age_s"
LINE_CHARS = 100  # app metrics wrap here


def number(value: object) -> str:
    """A metric as text: ints as they are, floats with at most 3 decimals (tiny ones in
    3 significant digits); text quoted when it has spaces, quotes or `=`, or is empty."""
    if isinstance(value, float):
        if value and abs(value) < 0.001:
            return f"{value:.3g}"
        return f"{value:.3f}".rstrip("0").rstrip(".")
    if isinstance(value, str):
        return quoted(value)
    return str(value)


def quoted(text: str) -> str:
    """Text as it is, or JSON-quoted when it is empty or has a space, `=` or `"`."""
    return text if text and not any(c in text for c in ' ="') else json.dumps(text)


def process_line(row: dict[str, Any]) -> str:
    """`#0 pid 4121 online: cpu 1.5%  rss 41.2mb  fds 23  connections 2  age 5m`."""
    head = f"#{row['instance']} pid {row['pid'] or '-'} {row['status']}"
    if not row["pid"]:
        return head
    cpu = "-" if row.get("cpu_percent") is None else f"{row['cpu_percent']}%"
    conns = "-" if row.get("connections") is None else str(row["connections"])
    fds = "-" if row.get("fds") is None else str(row["fds"])
    rss = human_bytes(row.get("memory_bytes"))
    age = human_uptime(row.get("uptime_s"))
    return f"{head}: cpu {cpu}  rss {rss}  fds {fds}  connections {conns}  age {age}"


def loop_line(metrics: dict[str, Any]) -> str | None:
    """`loop delay p50 0.4 ms  p99 12.1 ms  handles 5  requests 0  (0.8 s ago)`."""
    parts = []
    if "loop_delay_p50_ms" in metrics or "loop_delay_p99_ms" in metrics:
        p50 = number(metrics.get("loop_delay_p50_ms", "-"))
        p99 = number(metrics.get("loop_delay_p99_ms", "-"))
        parts.append(f"loop delay p50 {p50} ms  p99 {p99} ms")
    if "active_handles" in metrics:
        parts.append(f"handles {metrics['active_handles']}")
    if "active_requests" in metrics:
        parts.append(f"requests {metrics['active_requests']}")
    if not parts:
        return None
    return "  ".join(parts) + f"  (reported {number(metrics.get(AGE_KEY, 0.0))} s ago)"


def custom_lines(metrics: dict[str, Any], indent: str) -> list[str]:
    """The app's own metrics as `name=value` pairs, wrapped at LINE_CHARS."""
    skip = (*LOOP_KEYS, AGE_KEY)
    pairs = [f"{quoted(k)}={number(v)}" for k, v in metrics.items() if k not in skip]
    lines: list[str] = []
    for pair in pairs:
        if lines and len(lines[-1]) + 2 + len(pair) <= LINE_CHARS:
            lines[-1] += "  " + pair
        else:
            lines.append(indent + pair)
    return lines


def instances_text(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The `show` lines for each instance: its process, its loop, its app's metrics."""
    lines = ["  live metrics:"]
    for row in rows:
        lines.append("    " + process_line(row))
        metrics = row.get("app_metrics") or {}
        if not row["pid"]:
            continue
        if not metrics:
            lines.append("       no app metrics reported")
            continue
        loop = loop_line(metrics)
        custom = custom_lines(metrics, "       ")
        if loop is not None:
            lines.append("       " + loop)
        elif custom:
            custom[-1] += f"  (reported {number(metrics.get(AGE_KEY, 0.0))} s ago)"
        lines += custom
    if not rows:
        lines.append("    -")
    return lines
