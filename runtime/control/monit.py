"""`python -m runtime monit`: pm2's terminal dashboard over the control socket.

Four panes (processes, the selected process's logs, its metrics, its metadata) and a
status line. Each POLL_S the loop asks `list` (CPU and memory history is kept here, one
sample a poll) and, now and then, `show` of the selected app; `monitfeed` follows the
selected process's `logs`. Keys go to `MonitState.press` (pure), frames come from
`monitview.screen` (pure); this module only reads keys, talks and paints.
`curses.wrapper` gives the terminal back whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from types import FrameType
from typing import TYPE_CHECKING

from runtime.control.connection import ClientError
from runtime.control.monitfeed import (
    LogFollower,
    MasterGone,
    PendingCall,
    fetch_info,
    fetch_rows,
)
from runtime.control.monitstate import Action, MonitState, Quit
from runtime.control.monitview import ASCII, Glyphs, screen
from runtime.errors import UsageError

if TYPE_CHECKING:
    import curses

POLL_S = 1.0
INFO_REFRESH_S = 5.0
FOLLOW_RETRY_S = 1.0
TICK_MS = 100
ESC_DELAY_MS = "25"  # curses waits 1 s after Escape for a sequence by default

COLORS = {  # style -> (colour name, bold)
    "online": ("GREEN", False),
    "errored": ("RED", False),
    "launching": ("YELLOW", False),
    "waiting": ("YELLOW", False),
    "stopping": ("YELLOW", False),
    "err": ("RED", False),
    "error": ("RED", True),
    "ok": ("GREEN", True),
    "prompt": ("YELLOW", True),
    "cpu": ("GREEN", False),
    "mem": ("CYAN", False),
    "event": ("MAGENTA", False),
    "border": ("BLUE", False),
    "label": ("CYAN", False),
}


def key_name(key: int) -> str:
    """A curses key code as the name `MonitState.press` knows ('' for none)."""
    import curses

    named = {
        -1: "",
        curses.KEY_UP: "up",
        curses.KEY_DOWN: "down",
        curses.KEY_RESIZE: "resize",
        27: "escape",
    }
    if key in named:
        return named[key]
    return chr(key) if 0 <= key < 0x110000 else ""


class Monit:
    """The loop: poll, follow, answer keys, paint; until a quit key."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.glyphs = Glyphs()
        self.state = MonitState()
        self.follower: LogFollower | None = None
        self.pending: PendingCall | None = None
        self.styles: dict[str, int] = {}
        self.info_due = 0.0
        self.follow_due = 0.0

    def poll(self) -> None:
        """A fresh `list` (and `show` when due); a failure short of the master being gone
        goes on the status line."""
        try:
            self.state.update_rows(fetch_rows(self.path))
            self.state.trouble = None
            if time.monotonic() >= self.info_due:
                self.refresh_info()
        except MasterGone:
            raise
        except ClientError as exc:
            self.state.trouble = str(exc)

    def sync_info(self) -> None:
        """`show` of the selected app as soon as the selection moves to another app."""
        info = self.state.info
        if info is not None and info.get("name") != self.state.app:
            self.refresh_info()

    def refresh_info(self) -> None:
        app = self.state.app
        self.state.info = None if app is None else fetch_info(self.path, app)
        self.info_due = time.monotonic() + INFO_REFRESH_S

    def follow(self) -> None:
        """Follow the selected process's logs, on a new stream when it changes (a stream
        that failed or ended is tried again after FOLLOW_RETRY_S)."""
        row = self.state.row
        wanted = None if row is None else int(row["id"])
        if self.follower is not None and (
            self.follower.process_id != wanted or self.follower.closed
        ):
            if self.follower.process_id != wanted:
                self.state.logs.clear()
                self.follow_due = 0.0
            else:
                self.follow_due = time.monotonic() + FOLLOW_RETRY_S
            self.follower.close()
            self.follower = None
        if self.follower is None and wanted is not None and time.monotonic() >= self.follow_due:
            try:
                self.follower = LogFollower(self.path, wanted)
            except ClientError as exc:
                self.state.trouble = str(exc)
                self.follow_due = time.monotonic() + FOLLOW_RETRY_S
                return
            self.state.logs.clear()  # the backlog comes again
        if self.follower is not None:
            self.state.add_logs(self.follower.read())

    def send(self, action: Action) -> None:
        try:
            self.pending = PendingCall(self.path, action)
        except ClientError as exc:
            self.state.done(action, str(exc))

    def collect(self) -> None:
        """The answer to the action in flight, once it is there."""
        if self.pending is None:
            return
        answer = self.pending.result()
        if answer is None:
            return
        self.pending.close()
        action, self.pending = self.pending.action, None
        self.state.done(action, answer[1])
        self.info_due = 0.0  # restarts and instances changed: ask `show` again

    def setup(self, window: curses.window) -> None:
        import curses

        window.timeout(TICK_MS)
        window.keypad(True)
        with contextlib.suppress(curses.error):
            curses.curs_set(0)
        self.styles = {"header": curses.A_BOLD, "selected": curses.A_REVERSE}
        self.styles["dim"] = self.styles["stopped"] = curses.A_DIM
        if not curses.has_colors():
            return
        with contextlib.suppress(curses.error):
            curses.use_default_colors()
        for n, (style, (color, bold)) in enumerate(COLORS.items(), start=1):
            try:
                curses.init_pair(n, getattr(curses, f"COLOR_{color}"), -1)
            except curses.error:  # no default colours, or too few pairs: plain text
                continue
            self.styles[style] = curses.color_pair(n) | (curses.A_BOLD if bold else 0)

    def paint(self, window: curses.window) -> None:
        import curses

        height, width = window.getmaxyx()
        window.erase()
        for cell in screen(self.state, width, height, self.glyphs):
            # the bottom-right cell, or a terminal shrinking under us, raise curses.error
            with contextlib.suppress(curses.error):
                window.addstr(cell.y, cell.x, cell.text, self.styles.get(cell.style, 0))
        window.refresh()

    def run(self, window: curses.window) -> int:
        import curses

        self.setup(window)
        # box drawing where curses writes UTF-8, ASCII where the locale cannot show it
        utf8 = window.encoding.lower().replace("-", "").replace("_", "") == "utf8"
        self.glyphs = Glyphs() if utf8 else ASCII
        next_poll = 0.0
        try:
            while True:
                if time.monotonic() >= next_poll:
                    self.poll()
                    next_poll = time.monotonic() + POLL_S
                self.sync_info()
                self.follow()
                self.collect()
                self.paint(window)
                key = key_name(window.getch())
                if key == "resize":
                    curses.update_lines_cols()
                    window.clear()
                answer = self.state.press(key)
                if isinstance(answer, Quit):
                    return 0
                if isinstance(answer, Action):
                    self.send(answer)
        finally:
            for stream in (self.follower, self.pending):
                if stream is not None:
                    stream.close()


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_monit(path: str) -> int:
    """Refuse without a terminal (exit 2) and fail with one line before drawing if the
    runtime is not there; a runtime gone meanwhile ends it with one line, exit 1."""
    import curses

    _check_terminal()
    try:
        fetch_rows(path)
    except MasterGone as exc:  # not there to begin with: say why, as the other verbs do
        raise exc.reason from None
    _follow_resizes()
    os.environ.setdefault("ESCDELAY", ESC_DELAY_MS)
    signal.signal(signal.SIGTERM, _interrupt)  # so the terminal is given back on a kill
    try:
        return curses.wrapper(Monit(path).run)
    except KeyboardInterrupt:
        return 0
    except curses.error as exc:
        raise UsageError(f"monit cannot drive this terminal ({_term()}): {exc}") from None


def _term() -> str:
    return f"TERM={os.environ.get('TERM', '')!r}"


def _follow_resizes() -> None:
    """Drop LINES and COLUMNS when the terminal tells its size: with them in the
    environment (tmux sets them; `docker exec -e COLUMNS=...` is the usual cure for its
    0x0 start) curses keeps that size and ignores every resize."""
    try:
        size = os.get_terminal_size(sys.stdout.fileno())
    except OSError:
        return
    if size.columns and size.lines:
        os.environ.pop("LINES", None)
        os.environ.pop("COLUMNS", None)


def _check_terminal() -> None:
    """A terminal curses knows and can move the cursor on (not TERM=dumb), or exit 2."""
    import curses

    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError("monit needs a terminal (docker exec -it ...); use list or logs -f")
    try:
        curses.setupterm()
    except curses.error as exc:
        raise UsageError(f"monit cannot drive this terminal ({_term()}): {exc}") from None
    if not curses.tigetstr("cup"):
        raise UsageError(f"monit cannot move the cursor on this terminal ({_term()})")
