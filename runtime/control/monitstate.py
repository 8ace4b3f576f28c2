"""What `monit` knows and how a key changes it: rows, history, logs, the status line.

Pure (no curses, no sockets, no clock): the loop feeds it the rows it polled, the log
records it read and the keys pressed (as names: "up", "r", "y", ...); a key that asks
for an action only arms a confirmation, and `y` turns it into an `Action` for the loop
to send. So every key's effect is unit-tested without a terminal or a master.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

HISTORY_SAMPLES = 240  # one a poll: four minutes at 1 s, wider than a 200-cell pane
KEPT_LOG_LINES = 500

# key -> (verb, scale step): what each action key asks for the selected app
ACTION_KEYS: dict[str, tuple[str, str | None]] = {
    "r": ("restart", None),
    "R": ("reload", None),
    "l": ("reload", None),
    "s": ("stop", None),
    "S": ("start", None),
    "+": ("scale", "+1"),
    "-": ("scale", "-1"),
}
QUIT_KEYS = frozenset({"q", "Q", "escape"})
UP_KEYS = frozenset({"up", "k"})
DOWN_KEYS = frozenset({"down", "j"})
IDLE_KEYS = frozenset({"", "resize"})  # no key this tick, or a resize: nothing to answer

KEY_HELP = (
    ("↑ ↓  k j", "select a process"),
    ("r", "restart its app"),
    ("R  l", "reload its app, no downtime"),
    ("s  S", "stop / start its app"),
    ("+  -", "add / remove an instance"),
    ("y  n", "confirm / cancel an action"),
    ("?", "these keys (any key closes)"),
    ("q  Ctrl-C", "quit"),
)


@dataclass(frozen=True, slots=True)
class Action:
    """A control request for one app, as the keys build it."""

    verb: str
    app: str
    n: str | None = None  # the step of `scale`

    @property
    def label(self) -> str:
        return f"{self.verb} {self.app}" + (f" {self.n}" if self.n else "")


class Quit:
    """The answer to a quit key."""


@dataclass
class MonitState:
    """Everything on screen; `message` is the status line's (text, style) when not the
    key hints."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    selected: int = 0
    cpu: dict[int, deque[float | None]] = field(default_factory=dict)
    memory: dict[int, deque[float | None]] = field(default_factory=dict)
    logs: deque[tuple[str, str]] = field(default_factory=lambda: deque(maxlen=KEPT_LOG_LINES))
    info: dict[str, Any] | None = None  # `show` of the selected app (secrets masked)
    message: tuple[str, str] | None = None
    confirm: Action | None = None
    pending: Action | None = None  # sent, no answer yet
    help: bool = False
    trouble: str | None = None  # the last poll failed: why

    @property
    def row(self) -> dict[str, Any] | None:
        """The selected process's row."""
        return self.rows[self.selected] if self.rows else None

    @property
    def app(self) -> str | None:
        row = self.row
        return None if row is None else str(row["name"])

    def update_rows(self, rows: list[dict[str, Any]]) -> None:
        """Take a fresh `list`, keeping the same process selected, and add one sample of
        each process's CPU and memory to its history (None while it has none)."""
        chosen = self.row["id"] if self.row else None
        self.rows = rows
        ids = [r["id"] for r in rows]
        self.selected = ids.index(chosen) if chosen in ids else min(self.selected, len(rows) - 1)
        self.selected = max(0, self.selected)
        for r in rows:
            cpu = self.cpu.setdefault(r["id"], deque(maxlen=HISTORY_SAMPLES))
            cpu.append(_number(r.get("cpu_percent")))
            mem = self.memory.setdefault(r["id"], deque(maxlen=HISTORY_SAMPLES))
            mem.append(_number(r.get("memory_bytes")))
        for gone in set(self.cpu) - set(ids):
            del self.cpu[gone], self.memory[gone]

    def add_logs(self, records: list[dict[str, Any]]) -> None:
        """Keep each record as one (text, style) line: its time, then its message."""
        for r in records:
            stamp = str(r.get("timestamp", ""))[11:19]
            text = r.get("message")
            if text is None:
                text = r.get("event", "")
            style = "err" if r.get("stream") == "stderr" or r.get("level") == "error" else ""
            if "event" in r:
                style = "event"
            self.logs.append((f"{stamp} {text}".strip(), style))

    def press(self, key: str) -> Action | Quit | None:
        """What a key does: move, arm or answer a confirmation, toggle the help, quit."""
        if key in IDLE_KEYS:
            return None
        if self.help:
            self.help = False
            return None
        if self.confirm is not None:
            return self._answer(key)
        if key in QUIT_KEYS:
            return Quit()
        if key in UP_KEYS or key in DOWN_KEYS:
            step = -1 if key in UP_KEYS else 1
            self.selected = max(0, min(len(self.rows) - 1, self.selected + step))
        elif key == "?":
            self.help = True
        elif key in ACTION_KEYS:
            self._arm(key)
        return None

    def _arm(self, key: str) -> None:
        app = self.app
        if app is None:
            self.message = ("no process selected", "error")
        elif self.pending is not None:
            self.message = (f"wait: {self.pending.label} is still running", "error")
        else:
            verb, n = ACTION_KEYS[key]
            self.confirm = Action(verb, app, n)
            self.message = (f"{self.confirm.label}? (y/n)", "prompt")

    def _answer(self, key: str) -> Action | None:
        action, self.confirm = self.confirm, None
        assert action is not None
        if key in ("y", "Y"):
            self.pending = action
            self.message = (f"{action.label}…", "prompt")
            return action
        self.message = (f"{action.label}: cancelled", "")
        return None

    def done(self, action: Action, error: str | None) -> None:
        """The master's answer to the action in flight."""
        self.pending = None
        if error is None:
            self.message = (f"{action.label}: ok", "ok")
        else:
            self.message = (f"{action.label}: {error}", "error")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
