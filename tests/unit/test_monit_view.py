"""`monit`'s layout and frames as pure functions: sizes to panes, state to cells."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from runtime.control.monitlayout import MIN_HEIGHT, MIN_WIDTH, Layout, Rect, plan_layout
from runtime.control.monitstate import MonitState
from runtime.control.monitview import (
    ASCII,
    Cell,
    Glyphs,
    clip,
    clip_left,
    compact_bytes,
    metric_value,
    process_columns,
    screen,
    sparkline,
    text_width,
    wrap,
)
from tests.unit.test_pure_imports import FORBIDDEN, imported_roots

SCRIPT = "/srv/apps/shop/releases/2026-11-28/bin/server.py"


def row(i: int, name: str, **extra: Any) -> dict[str, Any]:
    """A `list --json` row as the master sends it."""
    base = {
        "id": i,
        "name": name,
        "mode": "cluster",
        "instance": 0,
        "pid": 4000 + i,
        "status": "online",
        "uptime_s": 125.0,
        "restarts": 2,
        "cpu_percent": 12.5,
        "memory_bytes": 48 << 20,
        "version": "1.4.2",
        "connections": 3,
    }
    return {**base, **extra}


def info(name: str) -> dict[str, Any]:
    """The parts of `show --json` monit reads."""
    return {
        "name": name,
        "script": SCRIPT,
        "args": ["--port", "8000"],
        "interpreter": "/usr/bin/python3",
        "interpreter_args": ["-X", "dev"],
        "cwd": "/srv/apps/shop",
        "exec_mode": "cluster",
        "instances": 2,
    }


def state(**overrides: Any) -> MonitState:
    """Three processes, the first selected, with history, logs and app metrics."""
    s = MonitState()
    metrics = {
        "loop_delay_p50_ms": 1.5,
        "loop_delay_p99_ms": 7.25,
        "active_handles": 4,
        "requests": 12,
    }
    rows = [row(0, "web", app_metrics=metrics, fds=21), row(1, "web", instance=1), row(2, "jobs")]
    for cpu in (5.0, 40.0, 12.5):
        s.update_rows([{**r, "cpu_percent": cpu} for r in rows])
    s.add_logs([{"timestamp": "2026-11-28T22:47:29.123Z", "message": "listening on :8000"}])
    s.info = info("web")
    for key, value in overrides.items():
        setattr(s, key, value)
    return s


def grid(cells: list[Cell], width: int, height: int) -> list[str]:
    """The cells painted on a blank screen; fails if one spills over its edge."""
    lines = [[" "] * width for _ in range(height)]
    for cell in cells:
        assert 0 <= cell.y < height, cell
        assert cell.x + text_width(cell.text) <= width, cell
        for dx, c in enumerate(cell.text):
            lines[cell.y][cell.x + dx] = c
    return ["".join(line).rstrip() for line in lines]


def covered(layout: Layout) -> list[list[int]]:
    """How many panes cover each cell of the screen."""
    rects = (layout.processes, layout.logs, layout.metrics, layout.metadata, layout.status)
    width = layout.status.w
    height = layout.status.y + 1
    counts = [[0] * width for _ in range(height)]
    for r in rects:
        for y in range(r.y, r.y + r.h):
            for x in range(r.x, r.x + r.w):
                counts[y][x] += 1
    return counts


def test_layout_at_80x24() -> None:
    """At 80x24 two columns of 40 cells, 14 rows of processes and logs over a 9-row band."""
    layout = plan_layout(80, 24)
    assert layout == Layout(
        processes=Rect(0, 0, 14, 40),
        logs=Rect(0, 40, 14, 40),
        metrics=Rect(14, 0, 9, 40),
        metadata=Rect(14, 40, 9, 40),
        status=Rect(23, 0, 1, 80),
    )


def test_layout_at_200x50() -> None:
    """At 200x50 the left column stops at 64 cells and the bottom band at 12 rows."""
    layout = plan_layout(200, 50)
    assert layout == Layout(
        processes=Rect(0, 0, 37, 64),
        logs=Rect(0, 64, 37, 136),
        metrics=Rect(37, 0, 12, 64),
        metadata=Rect(37, 64, 12, 136),
        status=Rect(49, 0, 1, 200),
    )


@pytest.mark.parametrize("size", [(60, 16), (80, 24), (81, 25), (120, 40), (200, 50), (300, 90)])
def test_panes_tile_the_screen(size: tuple[int, int]) -> None:
    """Every cell of the terminal belongs to exactly one pane or the status line."""
    layout = plan_layout(*size)
    assert layout is not None
    assert layout.status.w == size[0]
    assert all(count == 1 for line in covered(layout) for count in line)


@pytest.mark.parametrize("size", [(59, 24), (80, 15), (20, 5), (1, 1)])
def test_a_small_terminal_gets_one_line(size: tuple[int, int]) -> None:
    """Under 60x16 there are no panes, only a line saying so, cut to the width."""
    assert plan_layout(*size) is None
    cells = screen(state(), *size)
    assert len(cells) == 1
    assert cells[0].text == clip(
        f"terminal too small ({size[0]}x{size[1]}): monit needs {MIN_WIDTH}x{MIN_HEIGHT}",
        size[0] - 1,
    )
    assert screen(state(), 10, 0) == []


@pytest.mark.parametrize("size", [(80, 24), (200, 50)])
def test_frame_shows_the_four_panes_with_their_data(size: tuple[int, int]) -> None:
    """Processes, the selected one's log, metrics and metadata all show, inside the screen."""
    width, height = size
    lines = grid(screen(state(), width, height), width, height)
    left = plan_layout(width, height).logs.x  # type: ignore[union-attr]
    top = "\n".join(line[:left] for line in lines)
    right = "\n".join(line[left:] for line in lines)
    assert lines[0].startswith("┌─ processes (3) ─")
    assert "web#0 logs" in lines[0]
    assert "22:47:29 listening on :8000" in right
    assert " 2 jobs " in top
    assert "12%" in top
    assert "48mb" in top
    assert "cpu " in top
    assert "48.0mb" in top
    assert "loop p50 1.5ms · p99 7.25ms" in top
    assert "conns 3 · fds 21" in top
    assert "handles 4" in top
    assert "requests 12" in top
    assert "interp   /usr/bin/python3 -X dev" in right
    assert "args     --port 8000" in right
    assert "mode     cluster · 2 instances" in right
    assert "pid      4000 · restarts 2" in right
    assert "uptime   2m · version 1.4.2" in right
    assert "cwd      /srv/apps/shop" in right
    assert "server.py" in right
    assert lines[-1].startswith("↑↓ select  r restart")


def test_long_script_path_keeps_its_end_at_80_columns() -> None:
    """A script path wider than the pane shows as `…` and its end, file name included."""
    lines = grid(screen(state(), 80, 24), 80, 24)
    script = next(line for line in lines if "script" in line)
    assert "…" in script
    assert script.rstrip("│ ").endswith("2026-11-28/bin/server.py")


def test_absent_metrics_show_a_dash() -> None:
    """A process with no samples, connections, fds or app metrics shows `-`, no error."""
    bare = row(0, "web", cpu_percent=None, memory_bytes=None, connections=None, pid=None)
    s = MonitState()
    s.update_rows([bare])
    lines = grid(screen(s, 80, 24), 80, 24)
    text = "\n".join(lines)
    assert "conns - · fds -" in text
    assert "loop p50 - · p99 -" in text
    assert "handles -" in text
    assert "script   -" in text  # `show` not answered yet


def test_metadata_of_another_app_is_not_shown() -> None:
    """While `show` of the newly selected app is on its way, the old app's script is not shown."""
    s = state(selected=2)
    text = "\n".join(grid(screen(s, 80, 24), 80, 24))
    assert "server.py" not in text
    assert "jobs#0 metadata" in text


def test_selected_row_scrolls_into_view() -> None:
    """With more processes than rows, the selected one stays visible."""
    s = MonitState()
    s.update_rows([row(i, f"app{i}") for i in range(30)])
    s.selected = 25
    text = "\n".join(grid(screen(s, 80, 24), 80, 24))
    assert "25 app25" in text
    assert " 0 app0 " not in text


def test_log_lines_wrap_and_lose_control_characters() -> None:
    """A long line wraps inside the pane; ESC and other control characters become `?`."""
    s = state()
    s.logs.clear()
    s.add_logs([{"timestamp": "2026-11-28T22:47:30Z", "message": "x" * 90 + "END"}])
    s.add_logs(
        [{"timestamp": "2026-11-28T22:47:31Z", "message": "\x1b[31mred\x07", "stream": "stderr"}]
    )
    lines = grid(screen(s, 80, 24), 80, 24)
    right = [line[40:] for line in lines[1:13]]
    assert any(line.startswith("│xxxxxxxx") and "END" in line for line in right)
    assert any("?[31mred?" in line for line in right)


def test_wide_characters_stay_inside_their_pane() -> None:
    """A log line of double-width characters is cut by cells, not by characters."""
    s = state()
    s.add_logs([{"timestamp": "2026-11-28T22:47:30Z", "message": "日本語" * 20}])
    cells = screen(s, 80, 24)
    logs = plan_layout(80, 24).logs.inner  # type: ignore[union-attr]
    for cell in cells:
        if cell.x == logs.x and logs.y <= cell.y < logs.y + logs.h:
            assert text_width(cell.text) <= logs.w


def test_ascii_glyphs_draw_only_ascii() -> None:
    """Where curses cannot write UTF-8, borders, bars and every other character are ASCII."""
    s = state()
    s.add_logs([{"timestamp": "2026-11-28T22:47:30Z", "message": "naïve ↺"}])
    cells = screen(s, 80, 24, ASCII)
    assert all(c.text.isascii() for c in cells)
    lines = grid(cells, 80, 24)
    assert lines[0].startswith("+- processes (3) -")
    assert lines[-1].startswith("up/down select")


def test_help_replaces_the_log_pane() -> None:
    """`?` shows the keys where the logs were."""
    text = "\n".join(grid(screen(state(help=True), 80, 24), 80, 24))
    assert "─ keys ─" in text
    assert "restart its app" in text
    assert "reload its app, no downtime" in text  # every line fits at 80x24
    assert "these keys (any key closes)" in text
    assert "confirm / cancel" in text
    assert "listening on :8000" not in text


def test_status_line_shows_a_prompt_over_the_hints() -> None:
    """A pending confirmation replaces the key hints, in its own style."""
    cells = screen(state(message=("restart web? (y/n)", "prompt")), 80, 24)
    assert cells[-1] == Cell(23, 0, "restart web? (y/n)", "prompt")
    trouble = screen(state(trouble="no answer from the runtime within 2 s"), 80, 24)
    assert trouble[-1] == Cell(23, 0, "! no answer from the runtime within 2 s", "error")


def test_sparkline_scales_to_the_top_and_leaves_gaps() -> None:
    """Bars go from the lowest (never blank) to the full block; a missing sample is a gap."""
    spark = Glyphs().spark
    assert sparkline([0.0, 50.0, 100.0, None], 6, 100.0, spark) == "  ▁▄█ "
    assert sparkline([float(i) for i in range(50)], 5, 49.0, spark) == "▇████"
    assert sparkline([1.0], 0, 1.0, spark) == ""
    assert sparkline([1.0], 3, 0.0, spark) == "   "


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        (None, "-"),
        (512, "512b"),
        (9.5 * 1024 * 1024, "9.5mb"),
        (412 * 1024 * 1024, "412mb"),
        (1200 * 1024 * 1024, "1.2gb"),
        (40 << 30, "40gb"),
    ],
)
def test_compact_bytes(size: float | None, shown: str) -> None:
    """Memory sizes fit the process table's six cells."""
    assert compact_bytes(size) == shown


def test_text_helpers() -> None:
    """Clipping counts cells, paths keep their end, wrapping never loses a character."""
    assert clip("日本語", 5) == "日本"
    assert clip_left("/a/very/long/path/file.py", 12) == "…ath/file.py"
    assert clip_left("short", 12) == "short"
    assert wrap("abcdefg", 3) == ["abc", "def", "g"]
    assert wrap("", 3) == [""]
    assert metric_value(None) == "-"
    assert metric_value(1.23456, "ms") == "1.235ms"
    assert metric_value(True) == "True"
    assert metric_value({"a": 1}) == "{'a': 1}"


@pytest.mark.parametrize("module", ["monitlayout", "monitstate", "monitview"])
def test_monit_decisions_are_pure(module: str) -> None:
    """Layout, key handling and drawing import no curses, sockets, clock or processes."""
    path = Path(__file__).resolve().parents[2] / "runtime" / "control" / f"{module}.py"
    roots = imported_roots(ast.parse(path.read_text(encoding="utf-8")))
    assert roots & (FORBIDDEN | {"curses"}) == set()


@pytest.mark.parametrize(
    ("width", "shown"),
    [
        (38, ["id", "name", "status", "cpu", "mem", "restarts"]),
        (33, ["id", "name", "status", "cpu", "mem"]),
        (28, ["id", "name", "status", "mem"]),
    ],
    ids=["80-columns", "70-columns", "60-columns"],
)
def test_narrow_process_pane_gives_up_restarts_then_cpu(width: int, shown: list[str]) -> None:
    """The name keeps at least eight cells: the ↺ column goes first, then cpu."""
    columns = process_columns([row(0, "web")], width)
    assert list(columns) == shown
    assert sum(columns.values()) + len(columns) - 1 == width
    assert columns["name"] >= 8
