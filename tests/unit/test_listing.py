"""The `list` table (runtime.control.listing) and `--sort` (runtime.control.render): pure."""

from __future__ import annotations

import re
from typing import Any

import pytest

from runtime.control.listing import (
    COLUMNS,
    FIT_STEPS,
    NAME_MIN,
    PLAIN,
    Drop,
    Look,
    cell_width,
    clip,
    fit_columns,
    list_lines,
    list_look,
    table_width,
)
from runtime.control.render import sort_rows
from runtime.errors import UsageError

BOX = Look(box=True)
ANSI = re.compile(r"\x1b\[[0-9;]*m")
HEADER = ["id", "name", "version", "mode", "pid", "uptime", "↺", "status"]
HEADER += ["cpu", "mem", "user", "watching"]


def row(i: int, name: str, **over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": i,
        "name": name,
        "mode": "cluster",
        "instance": 0,
        "pid": 41000 + i,
        "status": "online",
        "uptime_s": 3720.5,
        "restarts": i,
        "cpu_percent": 1.2,
        "memory_bytes": 52_400_000,
        "version": "1.4.2",
        "user": "root",
        "watching": False,
    }
    return {**base, **over}


ROWS = [
    row(0, "web"),
    row(1, "web", status="stopping"),
    row(
        2,
        "billing-worker-eu-west-with-a-long-name",
        mode="fork",
        pid=None,
        status="waiting restart",
        uptime_s=0,
        cpu_percent=None,
        memory_bytes=None,
        version=None,
        user="app",
        watching=True,
    ),
    row(3, "cron", mode="fork", status="errored", version="0.1.0"),
]


def columns_of(lines: list[str], box: bool) -> list[str]:
    header = ANSI.sub("", lines[1] if box else lines[0])
    return header.strip("│").replace("│", " ").split()


def fits(lines: list[str], width: int) -> bool:
    return all(cell_width(ANSI.sub("", line)) <= width for line in lines)


@pytest.mark.parametrize("box", [False, True], ids=["plain", "box"])
def test_200_columns_show_every_pm2_column(box: bool) -> None:
    """At 200 columns every pm2 column is there, in pm2's order, and no name is cut."""
    lines = list_lines(ROWS, 200, Look(box=box))
    assert columns_of(lines, box) == HEADER == list(COLUMNS)
    assert fits(lines, 200)
    assert any("billing-worker-eu-west-with-a-long-name" in line for line in lines)
    assert dropped_of(lines, box) == []


DROP_ORDER = [s.column for s in FIT_STEPS if isinstance(s, Drop)]


def dropped_of(lines: list[str], box: bool) -> list[str]:
    shown = columns_of(lines, box)
    return [c for c in DROP_ORDER if c not in shown]


@pytest.mark.parametrize(
    ("box", "dropped"), [(False, []), (True, ["watching"])], ids=["plain", "box"]
)
def test_120_columns_cut_the_long_name_and_drop_little(box: bool, dropped: list[str]) -> None:
    """At 120 the 39-character name is cut with `…` to fill the width; the box drops watching."""
    lines = list_lines(ROWS, 120, Look(box=box))
    assert fits(lines, 120)
    assert cell_width(lines[0]) == 120
    assert dropped_of(lines, box) == dropped
    assert columns_of(lines, box) == [c for c in HEADER if c not in dropped]
    cut = next(x for x in lines if "billing" in x)
    assert "billing-worker-eu-west-wi" in cut
    assert "long-name" not in cut
    assert "…" in cut


@pytest.mark.parametrize(
    ("box", "dropped"),
    [(False, ["watching", "user", "mode", "uptime"]), (True, DROP_ORDER[:5])],
    ids=["plain", "box"],
)
def test_80_columns_drop_in_the_fit_order(box: bool, dropped: list[str]) -> None:
    """At 80 columns go in FIT_STEPS order (the box, wider, loses pid too): what pm2 keeps
    narrow (id, name, ↺, status, cpu, mem) stays, with the version."""
    lines = list_lines(ROWS, 80, Look(box=box))
    assert fits(lines, 80)
    assert dropped_of(lines, box) == dropped
    assert {"id", "name", "version", "↺", "status", "cpu", "mem"} <= set(columns_of(lines, box))


@pytest.mark.parametrize("box", [False, True], ids=["plain", "box"])
def test_40_columns_still_show_every_row_by_name_and_status(box: bool) -> None:
    """At 40 each row still reads its (cut) name and whole status, within 40 cells."""
    lines = list_lines(ROWS, 40, Look(box=box))
    assert fits(lines, 40)
    names = columns_of(lines, box)
    assert names[0] == "name"
    assert "status" in names
    body = [ANSI.sub("", x) for x in (lines[3:-1] if box else lines[1:])]
    assert len(body) == len(ROWS)
    assert "waiting restart" in body[2]
    assert "…" in body[2]
    assert body[3].split("│" if box else "  ")[1 if box else 0].strip() == "cron"


def test_a_tiny_width_keeps_name_min_cells_of_a_name() -> None:
    """Narrower than name and status, a name keeps NAME_MIN cells (`bil…`) and nothing breaks."""
    lines = list_lines(ROWS, 10, PLAIN)
    assert columns_of(lines, False) == ["name", "status"]
    assert lines[3].startswith("bil… ")
    assert len("bil…") == NAME_MIN


def test_box_lines_are_all_the_same_width_and_closed() -> None:
    """The box's rules and rows line up: one width, ┌┬┐ ├┼┤ └┴┘ at the column joints."""
    lines = list_lines(ROWS, 120, BOX)
    assert len({cell_width(line) for line in lines}) == 1
    assert lines[0][0] + lines[0][-1] == "┌┐"
    assert lines[2][0] + lines[2][-1] == "├┤"
    assert lines[-1][0] + lines[-1][-1] == "└┘"
    joints = [i for i, ch in enumerate(lines[0]) if ch == "┬"]
    assert all(lines[3][i] == "│" for i in joints)
    assert all(lines[-1][i] == "┴" for i in joints)


def test_empty_list_is_a_header() -> None:
    """No processes: the header alone (plain), or the header in a closed box."""
    assert list_lines([], None, PLAIN) == ["  ".join(HEADER)]
    boxed = list_lines([], 200, BOX)
    assert len(boxed) == 3
    assert boxed[0].startswith("┌")
    assert boxed[2].startswith("└")


def test_colour_paints_the_status_and_header_only() -> None:
    """With colour: online green, errored red, any other status yellow; the rest unpainted."""
    lines = list_lines(ROWS, 200, Look(box=True, colour=True))
    assert "\x1b[32monline" in lines[3]
    assert "\x1b[33mstopping" in lines[4]
    assert "\x1b[33mwaiting restart" in lines[5]
    assert "\x1b[31merrored" in lines[6]
    assert "\x1b[1;36mid" in lines[1]
    assert "\x1b" not in lines[0]
    assert "\x1b[" not in lines[3].split("\x1b[32m")[0]
    assert not any("\x1b" in x for x in list_lines(ROWS, 200, BOX))


def test_cells_read_like_pm2() -> None:
    """Cells: `-` for what is unknown, memory in mb, uptime in its largest unit, watch words."""
    plain = list_lines(ROWS, None, PLAIN)
    first, stopped = plain[1].split(), plain[3].split()
    expected = ["0", "web", "1.4.2", "cluster", "41000", "1h", "0", "online", "1%"]
    assert first == [*expected, "50.0mb", "root", "disabled"]
    assert stopped[2:6] == ["-", "fork", "-", "0"]
    assert stopped[-4:] == ["-", "-", "app", "enabled"]


def test_wide_characters_count_two_cells() -> None:
    """A CJK name takes two cells a character: aligned, and cut on a character boundary."""
    lines = list_lines([row(0, "日本語のアプリ"), row(1, "web")], None, PLAIN)
    starts = {cell_width(line[: line.index("1.4.2")]) for line in lines[1:]}
    assert starts == {cell_width(lines[0][: lines[0].index("version")])} == {4 + 14 + 2}
    assert clip("日本語のアプリ", 6) == "日本…"
    assert cell_width(clip("日本語のアプリ", 6)) == 5


def test_fit_steps_drop_each_column_once_and_never_name_or_status() -> None:
    """FIT_STEPS names real columns, each once, and never `name` or `status`."""
    dropped = [s.column for s in FIT_STEPS if isinstance(s, Drop)]
    assert len(dropped) == len(set(dropped))
    assert set(dropped) <= set(COLUMNS)
    assert {"name", "status"}.isdisjoint(dropped)
    assert set(COLUMNS) - set(dropped) == {"name", "status"}


def test_fit_gives_a_cut_name_back_the_room_left() -> None:
    """A name cut at a step that dropped more than needed grows back up to the width."""
    natural = {"name": 40, "status": 15, "mem": 7}
    widths = fit_columns(natural, 60, box=False)
    assert table_width(widths, box=False) == 60
    assert widths["name"] == 34
    assert fit_columns(natural, None, box=True) == natural


@pytest.mark.parametrize(
    ("environ", "tty", "columns", "expected"),
    [
        ({}, True, 120, (120, Look(box=True, colour=True))),
        ({"NO_COLOR": "1"}, True, 120, (120, Look(box=True, colour=False))),
        ({"COLUMNS": "80"}, True, 120, (80, Look(box=True, colour=True))),
        ({}, False, None, (None, Look())),
        ({"COLUMNS": "100"}, False, None, (100, Look())),
        ({"COLUMNS": "wide"}, True, 90, (90, Look(box=True, colour=True))),
        ({"COLUMNS": "0", "NO_COLOR": ""}, True, 90, (90, Look(box=True, colour=True))),
    ],
    ids=["tty", "no-color", "columns-wins", "pipe", "pipe-columns", "bad-columns", "empty"],
)
def test_list_look(
    environ: dict[str, str], tty: bool, columns: int | None, expected: tuple[object, Look]
) -> None:
    """$COLUMNS, then the terminal; box and colour on a TTY only; NO_COLOR (non-empty) off."""
    assert list_look(environ, tty, columns) == expected


# --- --sort -----------------------------------------------------------------------------

MIXED = [
    row(0, "a", memory_bytes=30, cpu_percent=None, pid=None),
    row(1, "b", memory_bytes=None, cpu_percent=5.0),
    row(2, "c", memory_bytes=10, cpu_percent=1.0),
    row(3, "d", memory_bytes=None, cpu_percent=None, pid=None),
    row(4, "e", memory_bytes=20, cpu_percent=5.0),
]


@pytest.mark.parametrize(
    ("spec", "ids"),
    [
        ("memory", [2, 4, 0, 1, 3]),
        ("memory:asc", [2, 4, 0, 1, 3]),
        ("memory:desc", [0, 4, 2, 1, 3]),
        ("cpu:desc", [1, 4, 2, 0, 3]),
        ("cpu:asc", [2, 1, 4, 0, 3]),
        ("pid:desc", [4, 2, 1, 0, 3]),
        ("name:desc", [4, 3, 2, 1, 0]),
        ("id", [0, 1, 2, 3, 4]),
    ],
)
def test_sort_puts_rows_without_the_value_last(spec: str, ids: list[int]) -> None:
    """Rows with no memory/cpu/pid go last in both orders (in id order); ties keep id order."""
    assert [r["id"] for r in sort_rows(list(MIXED), spec)] == ids


@pytest.mark.parametrize("spec", ["size", "memory:up", "memory:desc:x"])
def test_bad_sort_is_a_usage_error(spec: str) -> None:
    """An unknown key or order is a one-line usage error naming the choices."""
    with pytest.raises(UsageError, match=r"--sort expects one of name\|id"):
        sort_rows(list(MIXED), spec)
