"""How the client shows what the master answers: tables, sizes, uptimes, log records."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from runtime.control.listing import PLAIN, human_bytes, human_uptime, list_lines
from runtime.errors import UsageError

__all__ = [
    "SORT_KEYS",
    "format_record",
    "human_bytes",
    "human_uptime",
    "show_text",
    "sort_rows",
    "table",
]

SORT_KEYS = ("name", "id", "pid", "memory", "cpu", "status", "uptime")


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The processes as plain columns, as wide as they need (`show`)."""
    return "\n".join(list_lines(rows, None, PLAIN))


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
    """`rows` sorted by `--sort KEY[:asc|desc]`; rows without the value (no pid, memory or
    cpu yet) come last either way, in id order."""
    key, _, order = spec.partition(":")
    if key not in _SORT_FIELDS or order not in ("", "asc", "desc"):
        raise UsageError(f"--sort expects one of {'|'.join(SORT_KEYS)}[:asc|desc], got {spec!r}")
    field = _SORT_FIELDS[key]
    known = [r for r in rows if r.get(field) is not None]
    missing = [r for r in rows if r.get(field) is None]
    known.sort(key=lambda r: r[field], reverse=order == "desc")
    return known + sorted(missing, key=lambda r: r.get("id", 0))


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
