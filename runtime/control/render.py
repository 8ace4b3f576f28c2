"""How the client shows what the master answers: tables, sizes, uptimes, log records."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from runtime.errors import UsageError

SORT_KEYS = ("name", "id", "pid", "memory", "cpu", "status", "uptime")


def human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("b", "kb", "mb", "gb"):
        if n < 1024 or unit == "gb":
            return f"{n:.0f}{unit}" if unit == "b" else f"{n:.1f}{unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n}"


def human_uptime(seconds: float | None) -> str:
    if not seconds:
        return "0"
    s = int(seconds)
    for size, unit in ((86400, "D"), (3600, "h"), (60, "m")):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


COLUMNS = (
    "id",
    "name",
    "mode",
    "instance",
    "pid",
    "status",
    "uptime",
    "↺",
    "cpu",
    "memory",
    "version",
)


def table(rows: Sequence[dict[str, Any]]) -> str:
    cells = [
        [
            str(r["id"]),
            r["name"],
            r["mode"],
            str(r["instance"]),
            str(r["pid"] or "-"),
            r["status"],
            human_uptime(r["uptime_s"]),
            str(r["restarts"]),
            "-" if r["cpu_percent"] is None else f"{r['cpu_percent']}%",
            human_bytes(r["memory_bytes"]),
            r["version"] or "-",
        ]
        for r in rows
    ]
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(COLUMNS)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(COLUMNS, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


_SORT_FIELDS = {
    "name": "name",
    "id": "id",
    "pid": "pid",
    "memory": "memory_bytes",
    "cpu": "cpu_percent",
    "status": "status",
    "uptime": "uptime_s",
}


def sort_rows(rows: list[dict[str, Any]], spec: str) -> list[dict[str, Any]]:
    key, _, order = spec.partition(":")
    if key not in _SORT_FIELDS or order not in ("", "asc", "desc"):
        raise UsageError(f"--sort expects one of {'|'.join(SORT_KEYS)}[:asc|desc], got {spec!r}")
    field = _SORT_FIELDS[key]
    return sorted(
        rows,
        key=lambda r: (
            (r[field] is None, r[field] or 0) if field not in ("name", "status") else r[field]
        ),
        reverse=order == "desc",
    )


def format_record(record: dict[str, Any], raw: bool) -> str:
    if raw:
        return str(record.get("message", ""))
    prefix = f"{record.get('app')}#{record.get('instance')}"
    mark = " err" if record.get("stream") == "stderr" else ""
    return f"{record.get('timestamp', '')} {prefix}{mark} | {record.get('message', '')}"


def show_text(info: dict[str, Any]) -> str:
    lines = [f"{info['name']}"]
    skip = {"name", "env", "processes", "exits", "settings"}
    width = max(len(k) for k in info)
    lines += [f"  {k.ljust(width)}  {v}" for k, v in info.items() if k not in skip]
    lines.append("  env:")
    lines += [f"    {k}={v}" for k, v in sorted(info["env"].items())] or ["    -"]
    lines.append("  recent exits:")
    for e in info["exits"] or []:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(e["at"]))
        how = f"signal {e['signal']}" if e["signal"] is not None else f"code {e['code']}"
        lines.append(f"    {when} #{e['instance']} {how}")
    if not info["exits"]:
        lines.append("    -")
    lines.append(table(info["processes"]))
    return "\n".join(lines)
