"""What `monit` draws: the state as styled text in each pane's rectangle.

Pure: `MonitState` and a terminal size in, `Cell`s (row, column, text, style) out; the
curses loop only paints them. Widths are counted in terminal cells (a wide character
takes two, a combining one none), and control characters from a worker's line are
replaced, so no line spills out of its pane.
"""

from __future__ import annotations

import shlex
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from runtime.control.monitlayout import MIN_HEIGHT, MIN_WIDTH, Layout, Rect, plan_layout
from runtime.control.monitstate import KEY_HELP, MonitState
from runtime.control.render import human_bytes, human_uptime

Segment = tuple[str, str]  # (text, style)
Line = tuple[Segment, ...]
HINTS = "{arrows} select  r restart  R reload  s stop  S start  +/- scale  ? help  q quit"
STATUS_SHORT = {"waiting restart": "waiting"}
CPU_FLOOR_PERCENT = 5.0  # an idle process's 0.3 % stays a low bar, not a full one
KNOWN_METRICS = (
    "loop_delay_p50_ms",
    "loop_delay_p99_ms",
    "active_handles",
    "active_requests",
    "age_s",
)


@dataclass(frozen=True, slots=True)
class Glyphs:
    """Border and sparkline characters: Unicode on a UTF-8 terminal, ASCII otherwise."""

    corners: str = "┌┐└┘"
    horizontal: str = "─"
    vertical: str = "│"
    spark: str = " ▁▂▃▄▅▆▇█"
    dot: str = "·"
    restarts: str = "↺"
    arrows: str = "↑↓"
    ascii: bool = False  # every other character becomes `?` too


ASCII = Glyphs("++++", "-", "|", " ._-=+*#@", " ", "R", "up/down", ascii=True)


@dataclass(frozen=True, slots=True)
class Cell:
    """Text to paint at a row and column, in a style the loop maps to colours."""

    y: int
    x: int
    text: str
    style: str


def char_width(c: str) -> int:
    if unicodedata.combining(c):
        return 0
    return 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1


def text_width(text: str) -> int:
    return sum(char_width(c) for c in text)


def clean(text: str) -> str:
    """Tabs as spaces, every other control or format character as `?`."""
    text = text.replace("\t", "    ")
    return "".join("?" if unicodedata.category(c) in ("Cc", "Cf", "Cs") else c for c in text)


def clip(text: str, width: int) -> str:
    """The longest start of `text` that fits in `width` cells."""
    out, used = [], 0
    for c in text:
        used += char_width(c)
        if used > width:
            break
        out.append(c)
    return "".join(out)


def clip_left(text: str, width: int) -> str:
    """`text`, or `…` and its end when too wide: a path's file name stays readable."""
    if text_width(text) <= width:
        return text
    if width <= 1:
        return clip(text, width)
    out, used = [], 1
    for c in reversed(text):
        used += char_width(c)
        if used > width:
            break
        out.append(c)
    return "…" + "".join(reversed(out))


def wrap(text: str, width: int) -> list[str]:
    """`text` cut into pieces of at most `width` cells (at least one piece)."""
    pieces: list[str] = []
    current: list[str] = []
    used = 0
    for c in text:
        w = char_width(c)
        if used + w > width and current:
            pieces.append("".join(current))
            current, used = [], 0
        current.append(c)
        used += w
    pieces.append("".join(current))
    return pieces


def sparkline(values: Sequence[float | None], width: int, top: float, spark: str) -> str:
    """The last `width` values as bars from 0 to `top` (a gap where there was none)."""
    if width <= 0:
        return ""
    shown = list(values)[-width:]
    levels = len(spark) - 1
    bars = []
    for v in shown:
        if v is None or top <= 0:
            bars.append(" ")
        else:
            bars.append(spark[max(1, min(levels, round(v / top * levels)))])
    return "".join(bars).rjust(width)


def compact_bytes(n: float | None) -> str:
    """A memory size in at most six cells: `9.5mb`, `412mb`, `1.2gb`."""
    if n is None:
        return "-"
    for unit in ("b", "kb", "mb", "gb"):
        if n < 1000 or unit == "gb":
            return f"{n:.0f}{unit}" if n >= 10 or unit == "b" else f"{n:.1f}{unit}"
        n /= 1024
    return "-"


def metric_value(value: Any, unit: str = "") -> str:
    """A metric for the pane: numbers to four significant digits, `-` when absent."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}{unit}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value}{unit}"
    return str(value)


MIN_NAME_CELLS = 8
DROPPED_FIRST = ("restarts", "cpu")  # what a narrow process pane gives up for the name


def process_columns(rows: Sequence[dict[str, Any]], width: int) -> dict[str, int]:
    """Each shown column's width: id, name, status, cpu, mem, ↺, the name taking the rest;
    ↺ and then cpu go when the name would get fewer than MIN_NAME_CELLS."""
    columns = {
        "id": max([2, *(len(str(r["id"])) for r in rows)]),
        "name": 0,
        "status": 9,
        "cpu": 4,
        "mem": 6,
        "restarts": max([2, *(len(str(r["restarts"])) for r in rows)]),
    }
    drops = list(DROPPED_FIRST)
    while True:
        rest = width - sum(columns.values()) - (len(columns) - 1)
        if rest >= MIN_NAME_CELLS or not drops:
            columns["name"] = max(1, rest)
            return columns
        del columns[drops.pop(0)]


def process_lines(
    rows: Sequence[dict[str, Any]], selected: int, width: int, height: int, restarts: str = "↺"
) -> list[Line]:
    """The header and the rows that fit, scrolled so that the selected one shows."""
    columns = process_columns(rows, width)

    def line(cells: dict[str, str]) -> str:
        return " ".join(
            clip(cells[k], w).ljust(w) if k in ("name", "status") else cells[k].rjust(w)
            for k, w in columns.items()
        )

    header = {"id": "id", "name": "name", "status": "status", "cpu": "cpu", "mem": "mem"}
    out: list[Line] = [((line({**header, "restarts": restarts}), "header"),)]
    room = max(0, height - 1)
    first = max(0, min(selected - room + 1, len(rows) - room)) if room else 0
    for i, r in enumerate(rows[first : first + room], start=first):
        status = str(r["status"])
        cpu = r.get("cpu_percent")
        cells = {
            "id": str(r["id"]),
            "name": str(r["name"]),
            "status": STATUS_SHORT.get(status, status),
            "cpu": "-" if cpu is None else f"{cpu:.0f}%",
            "mem": compact_bytes(r.get("memory_bytes")),
            "restarts": str(r["restarts"]),
        }
        out.append(((line(cells), "selected" if i == selected else status.split()[0]),))
    return out


def metrics_lines(state: MonitState, width: int, glyphs: Glyphs) -> list[Line]:
    """CPU and memory sparklines of the selected process, then its connections, fds and
    app metrics (`-` for those it does not report)."""
    row = state.row
    if row is None:
        return [(("no process", "dim"),)]
    cpu = state.cpu.get(row["id"], ())
    mem = state.memory.get(row["id"], ())
    cpu_now, mem_now = row.get("cpu_percent"), row.get("memory_bytes")
    cpu_text = "-" if cpu_now is None else f"{cpu_now:.1f}%"
    mem_text = human_bytes(mem_now)
    spark_w = max(0, width - 6 - max(len(cpu_text), len(mem_text)) - 1)
    # headroom over the peak, as the dashboard draws them: a flat line is not a full bar
    cpu_top = max([CPU_FLOOR_PERCENT, *(v for v in cpu if v is not None)]) * 1.2
    mem_top = max([1.0, *(v for v in mem if v is not None)]) * 1.15
    found = row.get("app_metrics")
    metrics: dict[str, Any] = found if isinstance(found, dict) else {}
    lines: list[Line] = [
        (
            ("cpu   ", "label"),
            (sparkline(cpu, spark_w, cpu_top, glyphs.spark), "cpu"),
            (f" {cpu_text}", ""),
        ),
        (
            ("mem   ", "label"),
            (sparkline(mem, spark_w, mem_top, glyphs.spark), "mem"),
            (f" {mem_text}", ""),
        ),
        _pairs((("conns", row.get("connections"), ""), ("fds", row.get("fds"), "")), glyphs),
        _pairs(
            (
                ("loop p50", metrics.get("loop_delay_p50_ms"), "ms"),
                ("p99", metrics.get("loop_delay_p99_ms"), "ms"),
            ),
            glyphs,
        ),
        _pairs(
            (
                ("handles", metrics.get("active_handles"), ""),
                ("requests", metrics.get("active_requests"), ""),
            ),
            glyphs,
        ),
    ]
    for name in sorted(k for k in metrics if k not in KNOWN_METRICS):
        lines.append(_pairs(((str(name), metrics[name], ""),), glyphs))
    return lines


def _pairs(items: Iterable[tuple[str, Any, str]], glyphs: Glyphs) -> Line:
    """`label value · label value` as one line."""
    segments: list[Segment] = []
    for label, value, unit in items:
        if segments:
            segments.append((f" {glyphs.dot} ", "dim"))
        segments += [(f"{label} ", "label"), (metric_value(value, unit), "")]
    return tuple(segments)


def metadata_lines(state: MonitState, width: int, glyphs: Glyphs) -> list[Line]:
    """Script, args, interpreter, mode, pid, restarts, uptime, version and cwd."""
    row, info = state.row, state.info
    if row is None:
        return [(("no process", "dim"),)]
    info = info if info is not None and info.get("name") == row["name"] else {}
    value_w = max(1, width - 9)
    interpreter = " ".join(
        [str(info.get("interpreter") or "-"), *map(str, info.get("interpreter_args") or [])]
    )
    instances = info.get("instances")
    mode = str(row.get("mode") or info.get("exec_mode") or "-")
    if instances is not None:
        mode += f" {glyphs.dot} {instances} instance{'s' if instances != 1 else ''}"
    items = (
        ("script", clip_left(str(info.get("script") or "-"), value_w)),
        ("args", shlex.join(map(str, info.get("args") or [])) or "-"),
        ("interp", clip_left(interpreter, value_w)),
        ("mode", mode),
        ("pid", f"{row.get('pid') or '-'} {glyphs.dot} restarts {row.get('restarts', 0)}"),
        (
            "uptime",
            f"{human_uptime(row.get('uptime_s'))} {glyphs.dot} version {row.get('version') or '-'}",
        ),
        ("cwd", clip_left(str(info.get("cwd") or "-"), value_w)),
    )
    return [((label.ljust(9), "label"), (value, "")) for label, value in items]


def log_lines(state: MonitState, width: int, height: int) -> list[Line]:
    """The newest lines that fit, each wrapped to the pane's width."""
    out: list[Line] = []
    for text, style in reversed(state.logs):
        pieces = wrap(clean(text), max(1, width))
        out[:0] = [((p, style),) for p in pieces]
        if len(out) >= height:
            break
    return out[-height:] if height > 0 else []


def help_lines() -> list[Line]:
    return [((keys.ljust(11), "label"), (what, "")) for keys, what in KEY_HELP]


def box(rect: Rect, title: str, lines: Sequence[Line], glyphs: Glyphs) -> list[Cell]:
    """A bordered pane with its title in the top border and `lines` clipped inside."""
    if rect.h < 2 or rect.w < 2:
        return []
    tl, tr, bl, br = (glyphs.corners[i] for i in range(4))
    inner = rect.inner
    head = clip(f"{glyphs.horizontal} {clean(title)} ", inner.w)
    top = tl + head + glyphs.horizontal * (inner.w - text_width(head)) + tr
    cells = [
        Cell(rect.y, rect.x, top, "border"),
        Cell(rect.y + rect.h - 1, rect.x, bl + glyphs.horizontal * inner.w + br, "border"),
    ]
    for dy in range(inner.h):
        cells.append(Cell(inner.y + dy, rect.x, glyphs.vertical, "border"))
        cells.append(Cell(inner.y + dy, rect.x + rect.w - 1, glyphs.vertical, "border"))
    for dy, line in enumerate(lines[: inner.h]):
        x, room = inner.x, inner.w
        for text, style in line:
            piece = clip(clean(text), room)
            if piece:
                cells.append(Cell(inner.y + dy, x, piece, style))
            used = text_width(piece)
            x, room = x + used, room - used
    return cells


def status_line(state: MonitState, width: int, glyphs: Glyphs = Glyphs()) -> Cell:
    """The confirmation, the last action's result, a connection problem, or the key hints."""
    if state.message is not None:
        text, style = state.message
    elif state.trouble is not None:
        text, style = f"! {state.trouble}", "error"
    else:
        text, style = HINTS.format(arrows=glyphs.arrows), "dim"
    return Cell(0, 0, clip(clean(text), max(0, width - 1)), style)


def screen(state: MonitState, width: int, height: int, glyphs: Glyphs = Glyphs()) -> list[Cell]:
    """Every cell of one frame, or one line saying the terminal is too small."""
    layout = plan_layout(width, height)
    if layout is None:
        text = f"terminal too small ({width}x{height}): monit needs {MIN_WIDTH}x{MIN_HEIGHT}"
        return [Cell(0, 0, clip(text, max(0, width - 1)), "error")] if height > 0 else []
    cells = _frame(state, layout, glyphs)
    if glyphs.ascii:
        return [Cell(c.y, c.x, c.text.encode("ascii", "replace").decode(), c.style) for c in cells]
    return cells


def _frame(state: MonitState, layout: Layout, glyphs: Glyphs) -> list[Cell]:
    row = state.row
    who = "-" if row is None else f"{row['name']}#{row['instance']}"
    count = len(state.rows)
    procs = layout.processes.inner
    logs = layout.logs.inner
    cells = box(
        layout.processes,
        f"processes ({count})",
        process_lines(state.rows, state.selected, procs.w, procs.h, glyphs.restarts),
        glyphs,
    )
    if state.help:
        cells += box(layout.logs, "keys", help_lines(), glyphs)
    else:
        cells += box(layout.logs, f"{who} logs", log_lines(state, logs.w, logs.h), glyphs)
    cells += box(
        layout.metrics,
        f"{who} metrics",
        metrics_lines(state, layout.metrics.inner.w, glyphs),
        glyphs,
    )
    cells += box(
        layout.metadata,
        f"{who} metadata",
        metadata_lines(state, layout.metadata.inner.w, glyphs),
        glyphs,
    )
    status = status_line(state, layout.status.w, glyphs)
    cells.append(Cell(layout.status.y, 0, status.text, status.style))
    return cells
