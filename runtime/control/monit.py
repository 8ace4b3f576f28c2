"""`python -m runtime monit`: a live terminal dashboard over the control socket, like `pm2 monit`.

It polls `list` every POLL_S and follows `logs --follow` of the selected app on a second,
non-blocking connection; drawing is a pure function of `MonitState` (no curses in it),
the curses loop only reads keys and paints. Up/Down (or k/j) select, q or Ctrl-C quit;
`curses.wrapper` gives the terminal back whatever happens.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runtime.control.connection import ClientError, Connection
from runtime.control.protocol import MAX_LINE, request
from runtime.control.render import human_bytes, human_uptime

if TYPE_CHECKING:
    import curses

POLL_S = 0.8
TICK_MS = 100
REQUEST_TIMEOUT_S = 2.0
BACKLOG_LINES = 50
KEPT_LINES = 500
HEADER = ("id", "name", "inst", "pid", "status", "↺", "cpu", "memory", "uptime")
WIDTHS = (4, 18, 5, 8, 16, 5, 8, 10, 8)


def fetch_rows(path: str) -> list[dict[str, Any]]:
    """One `list` request with a short timeout, so a stuck master cannot freeze the screen."""
    conn = Connection(path, timeout_s=REQUEST_TIMEOUT_S)
    try:
        conn.send(request("list"))
        for reply in conn.replies():
            if not reply.get("ok"):
                raise ClientError(str(reply.get("error", "list failed")))
            result = reply.get("result")
            return result if isinstance(result, list) else []
        raise ClientError("the runtime closed the connection")
    except OSError as exc:
        raise ClientError(f"the runtime does not answer: {exc}") from None
    finally:
        conn.close()


class LogFollower:
    """`logs APP --follow` on its own connection, read only when bytes are waiting."""

    def __init__(self, path: str, app: str) -> None:
        self.app = app
        self.closed = False
        self._buf = b""
        self._conn = Connection(path, timeout_s=REQUEST_TIMEOUT_S)
        self._conn.send(request("logs", app, lines=BACKLOG_LINES, follow=True))
        self._conn.sock.setblocking(False)

    def read(self) -> list[dict[str, Any]]:
        """Every complete record received so far (never blocks)."""
        while not self.closed:
            try:
                chunk = self._conn.sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                chunk = b""
            if not chunk:
                self.closed = True
            self._buf += chunk
            if len(self._buf) > MAX_LINE:
                self._buf = b""
        *lines, self._buf = self._buf.split(b"\n")
        records: list[dict[str, Any]] = []
        for line in lines:
            try:
                reply = json.loads(line)
            except (ValueError, RecursionError):  # not JSON, or nested past the limit
                continue
            if not isinstance(reply, dict):
                continue
            if "log" in reply:
                records.append(reply["log"])
            elif reply.get("ok") and isinstance(reply.get("result"), list):
                records.extend(reply["result"])
        return records

    def close(self) -> None:
        self._conn.close()


@dataclass
class MonitState:
    """What is on screen: the last `list`, the selected row and the followed app's lines."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    selected: int = 0
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=KEPT_LINES))
    error: str | None = None

    @property
    def app(self) -> str | None:
        if not self.rows:
            return None
        return str(self.rows[min(self.selected, len(self.rows) - 1)]["name"])

    def move(self, step: int) -> None:
        self.selected = max(0, min(len(self.rows) - 1, self.selected + step))

    def add_records(self, records: list[dict[str, Any]]) -> None:
        for r in records:
            mark = "!" if r.get("stream") == "stderr" else " "
            stamp = str(r.get("timestamp", ""))[11:19]
            self.lines.append(f"{stamp} {r.get('app')}#{r.get('instance')}{mark}{r.get('message')}")


def _cells(row: dict[str, Any]) -> list[str]:
    cpu = row.get("cpu_percent")
    return [
        str(row["id"]),
        str(row["name"]),
        str(row["instance"]),
        str(row["pid"] or "-"),
        str(row["status"]),
        str(row["restarts"]),
        "-" if cpu is None else f"{cpu}%",
        human_bytes(row.get("memory_bytes")),
        human_uptime(row.get("uptime_s")),
    ]


def _line(cells: list[str]) -> str:
    return " ".join(c[: w - 1].ljust(w) for c, w in zip(cells, WIDTHS, strict=True)).rstrip()


def render(state: MonitState, width: int, height: int) -> list[tuple[str, str]]:
    """The screen as (text, style) lines; style is header, selected, a status name or ''."""
    title = f"runtime monit · {len(state.rows)} processes · ↑/↓ select · q quit"
    out: list[tuple[str, str]] = [(title, "header"), (_line(list(HEADER)), "header")]
    for i, row in enumerate(state.rows):
        style = "selected" if i == state.selected else str(row["status"]).split()[0]
        out.append((_line(_cells(row)), style))
    if state.error:
        out.append((f"! {state.error}", "errored"))
    out.append((f"── logs: {state.app or '-'} " + "─" * width, "header"))
    room = max(0, height - len(out))
    out.extend((line, "") for line in list(state.lines)[-room:] if room)
    return [(text[: max(0, width - 1)], style) for text, style in out[:height]]


class Monit:
    """The curses loop: poll, follow, paint, read one key; repeat until q."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.state = MonitState()
        self.follower: LogFollower | None = None
        self.styles: dict[str, int] = {}

    def poll(self) -> None:
        try:
            self.state.rows = fetch_rows(self.path)
            self.state.error = None
        except ClientError as exc:
            self.state.error = str(exc)
        self.state.move(0)

    def follow(self) -> None:
        app = self.state.app
        if self.follower is not None and (self.follower.app != app or self.follower.closed):
            self.follower.close()
            self.follower = None
            self.state.lines.clear()
        if self.follower is None and app is not None and self.state.error is None:
            try:
                self.follower = LogFollower(self.path, app)
            except (ClientError, OSError) as exc:
                self.state.error = str(exc)
        if self.follower is not None:
            self.state.add_records(self.follower.read())

    def setup(self, screen: curses.window) -> None:
        import curses

        screen.timeout(TICK_MS)
        screen.keypad(True)
        with contextlib.suppress(curses.error):
            curses.curs_set(0)
        self.styles = {"header": curses.A_BOLD, "selected": curses.A_REVERSE}
        if curses.has_colors():
            curses.use_default_colors()
            for n, (name, color) in enumerate(
                (
                    ("online", curses.COLOR_GREEN),
                    ("errored", curses.COLOR_RED),
                    ("launching", curses.COLOR_YELLOW),
                    ("waiting", curses.COLOR_YELLOW),
                    ("stopping", curses.COLOR_YELLOW),
                ),
                start=1,
            ):
                curses.init_pair(n, color, -1)
                self.styles[name] = curses.color_pair(n)

    def paint(self, screen: curses.window) -> None:
        import curses

        height, width = screen.getmaxyx()
        screen.erase()
        for y, (text, style) in enumerate(render(self.state, width, height)):
            # the bottom-right cell, or a terminal shrinking under us, raise curses.error
            with contextlib.suppress(curses.error):
                screen.addstr(y, 0, text, self.styles.get(style, curses.A_NORMAL))
        screen.refresh()

    def run(self, screen: curses.window) -> int:
        import curses

        self.setup(screen)
        next_poll = 0.0
        try:
            while True:
                if time.monotonic() >= next_poll:
                    self.poll()
                    next_poll = time.monotonic() + POLL_S
                self.follow()
                self.paint(screen)
                key = screen.getch()
                if key in (ord("q"), ord("Q"), 27):
                    return 0
                if key in (curses.KEY_UP, ord("k")):
                    self.state.move(-1)
                elif key in (curses.KEY_DOWN, ord("j")):
                    self.state.move(1)
        finally:
            if self.follower is not None:
                self.follower.close()


def run_monit(path: str) -> int:
    """Fail with one line before touching the terminal if the runtime is not there."""
    import curses

    fetch_rows(path)
    try:
        return curses.wrapper(Monit(path).run)
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        raise ClientError(f"lost the runtime: {exc}") from None
