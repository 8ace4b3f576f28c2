"""The `list` table: pm2's columns, fitted to the terminal's width, boxed on a TTY.

`list_lines(rows, width, look)` is the whole layout, a pure function of the `list --json`
rows. When the table is wider than `width`, `FIT_STEPS` are applied in order until it
fits: long names are cut (with `…`) and the least needed columns are left out, as pm2's
narrow layout does; `name` and `status` always stay. Colour (status: online green,
errored red, the rest yellow) only on a TTY and never with `NO_COLOR`.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

Row = Mapping[str, Any]

ELLIPSIS = "…"
NAME_MIN = 4  # cells a name keeps however narrow the terminal (`ab…` plus one)
PLAIN_GAP = "  "  # between two columns of the plain table
_RESET = "\x1b[0m"
_HEADER_SGR = "1;36"  # bold cyan, as pm2's header
_STATUS_SGR = {"online": "32", "errored": "31"}  # every other status: yellow
_OTHER_STATUS_SGR = "33"


def human_bytes(n: int | None) -> str:
    """`512b`, `12.3kb`, `1.5mb`, `2.0gb`; `-` when unknown."""
    if n is None:
        return "-"
    size = float(n)
    for unit in ("b", "kb", "mb", "gb"):
        if size < 1024 or unit == "gb":
            return f"{size:.0f}{unit}" if unit == "b" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{size}"  # not reached


def human_uptime(seconds: float | None) -> str:
    """`42s`, `5m`, `3h`, `2D` (the largest unit, as pm2); `0` when not running."""
    if not seconds:
        return "0"
    s = int(seconds)
    for size, unit in ((86400, "D"), (3600, "h"), (60, "m")):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def _cpu(row: Row) -> str:
    cpu = row.get("cpu_percent")
    return "-" if cpu is None else f"{cpu:.0f}%"


def _dash(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


# pm2's columns, in pm2's order: header and how a row's cell reads.
COLUMNS: dict[str, Callable[[Row], str]] = {
    "id": lambda r: _dash(r.get("id")),
    "name": lambda r: _dash(r.get("name")),
    "version": lambda r: _dash(r.get("version")),
    "mode": lambda r: _dash(r.get("mode")),
    "pid": lambda r: _dash(r.get("pid")),
    "uptime": lambda r: human_uptime(r.get("uptime_s")),
    "↺": lambda r: _dash(r.get("restarts")),
    "status": lambda r: _dash(r.get("status")),
    "cpu": _cpu,
    "mem": lambda r: human_bytes(r.get("memory_bytes")),
    "user": lambda r: _dash(r.get("user")),
    "watching": lambda r: "enabled" if r.get("watching") else "disabled",
}


class Drop(NamedTuple):
    """Leave a column out."""

    column: str


class CapName(NamedTuple):
    """Cut names to at most `cells` cells."""

    cells: int


# What gives way when the table is too wide, first to last.
FIT_STEPS: tuple[Drop | CapName, ...] = (
    CapName(24),
    Drop("watching"),
    Drop("user"),
    Drop("mode"),
    Drop("uptime"),
    Drop("pid"),
    CapName(16),
    Drop("version"),
    Drop("cpu"),
    Drop("↺"),
    Drop("id"),
    CapName(10),
    Drop("mem"),
)


@dataclass(frozen=True, slots=True)
class Look:
    """How the table is drawn: box lines (a TTY) or plain columns, with or without colour."""

    box: bool = False
    colour: bool = False


PLAIN = Look()


def cell_width(text: str) -> int:
    """Terminal cells `text` takes: wide (CJK) characters 2, combining marks 0."""
    width = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def clip(text: str, cells: int) -> str:
    """`text` cut to at most `cells` cells, ending in `…` when cut."""
    if cell_width(text) <= cells:
        return text
    out, used = [], 0
    for ch in text:
        w = cell_width(ch)
        if used + w > cells - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + ELLIPSIS


def table_width(widths: Mapping[str, int], box: bool) -> int:
    """Cells a table with these column widths takes on one line."""
    if box:  # "│ " + cell + " " per column, and the closing "│"
        return sum(w + 3 for w in widths.values()) + 1
    return sum(widths.values()) + len(PLAIN_GAP) * max(0, len(widths) - 1)


def fit_columns(natural: Mapping[str, int], width: int | None, box: bool) -> dict[str, int]:
    """The columns that are kept and their widths, so the table fits in `width` cells.

    `natural` is each column's widest cell (header included), in display order; with
    `width` None nothing is cut. When every step is not enough, the name is cut further,
    never below NAME_MIN; a name cut more than needed gets back the room that is left.
    """
    widths = dict(natural)
    if width is None:
        return widths
    for step in FIT_STEPS:
        if table_width(widths, box) <= width:
            break
        if isinstance(step, Drop):
            widths.pop(step.column, None)
        elif "name" in widths:
            widths["name"] = min(widths["name"], max(step.cells, NAME_MIN))
    if "name" in widths:
        room = width - table_width(widths, box)
        widths["name"] = max(NAME_MIN, min(natural["name"], widths["name"] + room))
    return widths


def _paint(sgr: str, text: str, look: Look) -> str:
    return f"\x1b[{sgr}m{text}{_RESET}" if look.colour else text


def _pad(text: str, cells: int) -> str:
    return text + " " * max(0, cells - cell_width(text))


def _line(cells: Sequence[str], widths: Sequence[int], look: Look, sgrs: Sequence[str]) -> str:
    padded = [
        _paint(sgr, _pad(clip(c, w), w), look) if sgr else _pad(clip(c, w), w)
        for c, w, sgr in zip(cells, widths, sgrs, strict=True)
    ]
    if look.box:
        return "│" + "│".join(f" {p} " for p in padded) + "│"
    return PLAIN_GAP.join(padded).rstrip()


def _rule(left: str, middle: str, right: str, widths: Sequence[int]) -> str:
    return left + middle.join("─" * (w + 2) for w in widths) + right


def list_lines(rows: Sequence[Row], width: int | None, look: Look = PLAIN) -> list[str]:
    """The `list` table for `rows`, fitted to `width` terminal cells (None: no limit)."""
    cells = [{name: read(row) for name, read in COLUMNS.items()} for row in rows]
    natural = {
        name: max([cell_width(name), *(cell_width(c[name]) for c in cells)]) for name in COLUMNS
    }
    kept = fit_columns(natural, width, look.box)
    names, widths = list(kept), list(kept.values())
    header_sgrs = [_HEADER_SGR] * len(names)
    body = []
    for c in cells:
        sgrs = [_STATUS_SGR.get(c[n], _OTHER_STATUS_SGR) if n == "status" else "" for n in names]
        body.append(_line([c[n] for n in names], widths, look, sgrs))
    header = _line(names, widths, look, header_sgrs)
    if not look.box:
        return [header, *body]
    top, bottom = _rule("┌", "┬", "┐", widths), _rule("└", "┴", "┘", widths)
    middle = [_rule("├", "┼", "┤", widths), *body] if body else []
    return [top, header, *middle, bottom]


def list_look(
    environ: Mapping[str, str], isatty: bool, terminal_columns: int | None
) -> tuple[int | None, Look]:
    """The width to fit and the look: `$COLUMNS` wins, then the terminal's width; off a
    TTY there is no limit (as pm2), no box and no colour; `$NO_COLOR` turns colour off."""
    given = environ.get("COLUMNS", "").strip()
    width = int(given) if given.isascii() and given.isdigit() and int(given) > 0 else None
    if width is None and isatty:
        width = terminal_columns
    look = Look(box=isatty, colour=isatty and not environ.get("NO_COLOR"))
    return width, look
