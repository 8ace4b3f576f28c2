"""Metrics of a Python worker for the runtime's `show`: its asyncio loop's delay, and the app's own.

An app reports its own figures with one call; outside the runtime (no NOTIFY_SOCKET) it
does nothing:

    import runtime_metrics            # on PYTHONPATH where the runtime loads its preload
    runtime_metrics.set("queue_depth", 12)
    runtime_metrics.set("mode", "degraded")
    runtime_metrics.set("queue_depth", None)   # removes it

Values are numbers or strings (cut to MAX_TEXT_CHARS); names have 1..MAX_NAME_CHARS
printable characters; at most MAX_CUSTOM names (later new ones are ignored). A bad name or
value is ignored, never raised: metrics are not worth breaking the app for.

Loop figures: the preload (sitecustomize) calls `watch_loop` when an asyncio loop (the
default one or uvloop) starts running in the main thread. A timer callback every TICK_S
measures how late it runs; every REPORT_S the worker sends the p50 and p99 of those delays
and the number of asyncio tasks of the loop (`active_handles`: Python's nearest analogue of
node's active handles).

Transport: sd_notify variables on the worker's NOTIFY_SOCKET, one non-blocking datagram of
at most MAX_DATAGRAM_BYTES (`X_RUNTIME_LOOP={...}` and `X_RUNTIME_METRICS={...}` lines;
systemd ignores unknown variables). With a watched loop, the app's metrics ride along with
each loop report; without one, a set() is sent at once, or at most REPORT_S after the
previous send (a daemon threading.Timer, started only then). A full queue drops a report.
"""

from __future__ import annotations

import os
import socket
import time

TYPE_CHECKING = False  # not typing's: this runs in the user's worker

if TYPE_CHECKING:
    import asyncio
    import threading

Value = int | float | str

TICK_S = 0.1
REPORT_S = 1.0
MAX_CUSTOM = 32
MAX_NAME_CHARS = 64
MAX_TEXT_CHARS = 128
MAX_DATAGRAM_BYTES = 4000  # the master reads 4096 at most
NOTIFY_ENV = "NOTIFY_SOCKET"

_custom: dict[str, Value | None] = {}  # None: removed, still to be sent once
_sock: socket.socket | None = None
_sent_at = -REPORT_S  # time.monotonic() of the last send
_timer: threading.Timer | None = None
_watch: _LoopWatch | None = None


def _address() -> str | None:
    path = os.environ.get(NOTIFY_ENV, "")
    if path.startswith("@"):
        return "\0" + path[1:]  # the abstract namespace
    return path if path.startswith("/") else None


def _send(lines: list[str]) -> None:
    """One datagram to NOTIFY_SOCKET; any failure drops it."""
    global _sock, _sent_at
    address = _address()
    if address is None or not lines:
        return
    try:
        if _sock is None:
            _sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            _sock.setblocking(False)
        _sock.sendto("\n".join(lines).encode(), address)
    except OSError:
        pass
    _sent_at = time.monotonic()


def _encode(name: str, data: dict[str, object]) -> str:
    import json  # only once the app reports its own metrics: the loop line needs none

    return f"{name}={json.dumps(data, separators=(',', ':'), allow_nan=False)}"


def _loop_line(data: dict[str, float | int]) -> str:
    """The loop figures (numbers only) as an X_RUNTIME_LOOP line."""
    return "X_RUNTIME_LOOP={" + ",".join(f'"{k}":{v!r}' for k, v in data.items()) + "}"


def _custom_lines(budget: int) -> list[str]:
    """The app's metrics as X_RUNTIME_METRICS lines of at most `budget` bytes each."""
    pending = dict(_custom)
    for name in [n for n, v in pending.items() if v is None]:
        if name in _custom and _custom[name] is None:
            del _custom[name]  # sent once as a removal, then forgotten
    lines: list[str] = []
    chunk: dict[str, object] = {}
    for name, value in pending.items():
        if chunk and len(_encode("X_RUNTIME_METRICS", {**chunk, name: value})) > budget:
            lines.append(_encode("X_RUNTIME_METRICS", chunk))
            chunk = {}
        chunk[name] = value
    if chunk:
        lines.append(_encode("X_RUNTIME_METRICS", chunk))
    return lines


def _flush() -> None:
    """Send the app's metrics now (datagrams of at most MAX_DATAGRAM_BYTES)."""
    global _timer
    _timer = None
    for line in _custom_lines(MAX_DATAGRAM_BYTES):
        _send([line])


def _value(value: object) -> Value | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value if abs(value) < float("inf") else None  # not NaN, not infinite
    if isinstance(value, str):
        return value[:MAX_TEXT_CHARS]
    return None


def set(name: str, value: float | str | None) -> None:  # the documented name (shadows a builtin)
    """Report the app's metric `name` (None removes it); ignored outside the runtime."""
    global _timer
    try:
        if _address() is None or not isinstance(name, str):
            return
        if not 0 < len(name) <= MAX_NAME_CHARS or not name.isprintable():
            return
        stored = None if value is None else _value(value)
        if stored is None and value is not None:
            return
        if name not in _custom and (stored is None or len(_custom) >= MAX_CUSTOM):
            return
        _custom[name] = stored
        if _watch is not None and _watch.running():
            return  # goes with the next loop report
        wait_s = _sent_at + REPORT_S - time.monotonic()
        if wait_s <= 0:
            _flush()
        elif _timer is None:
            import threading

            _timer = threading.Timer(wait_s, _flush)
            _timer.daemon = True
            _timer.start()
    except Exception:  # never into the app
        pass


def percentile(sorted_values: list[float], q: int) -> float:
    """The nearest-rank percentile `q` (1..100) of a sorted, non-empty list."""
    rank = max(1, (len(sorted_values) * q + 99) // 100)  # ceil(n * q / 100)
    return sorted_values[rank - 1]


class _LoopWatch:
    """Measures one running loop's lateness every TICK_S and reports every REPORT_S."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pid = os.getpid()  # a forked child holds a copy of the loop, not running
        self.delays_s: list[float] = []
        self.due = 0.0
        self.report_at = 0.0
        self.skip = False  # the loop was not running for a while: the next delay means nothing
        self.handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        now = self.loop.time()
        self.report_at = now + REPORT_S
        self._arm(now)

    def running(self) -> bool:
        return self.pid == os.getpid() and self.loop.is_running()

    def resumed(self) -> None:
        """The loop runs again (run_until_complete once more): restart the measure."""
        self.skip = True
        if self.handle is None or self.handle.cancelled():
            self.start()

    def _arm(self, now: float) -> None:
        self.due = now + TICK_S
        self.handle = self.loop.call_at(self.due, self._tick)

    def _tick(self) -> None:
        now = self.loop.time()
        try:
            if self.skip:
                self.skip = False
            else:
                self.delays_s.append(max(0.0, now - self.due))
            if now >= self.report_at:
                self.report_at = now + REPORT_S
                self._report()
        except Exception:  # never into the app's loop
            pass
        try:
            self._arm(now)
        except Exception:  # a closed loop, say
            self.handle = None

    def _report(self) -> None:
        import asyncio

        delays, self.delays_s = sorted(self.delays_s), []
        data: dict[str, float | int] = {"active_handles": len(asyncio.all_tasks(self.loop))}
        if delays:
            data["loop_delay_p50_ms"] = round(percentile(delays, 50) * 1000, 3)
            data["loop_delay_p99_ms"] = round(percentile(delays, 99) * 1000, 3)
        loop_line = _loop_line(data)
        custom = _custom_lines(MAX_DATAGRAM_BYTES - len(loop_line) - 1) if _custom else []
        _send([loop_line, *custom[:1]])
        for line in custom[1:]:
            _send([line])


def watch_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Measure `loop` (called as it starts running in the main thread); never raises."""
    global _watch
    try:
        if _address() is None:
            return
        if _watch is not None and _watch.loop is loop:
            _watch.resumed()
            return
        _watch = _LoopWatch(loop)
        _watch.start()
    except Exception:  # never into the app
        pass
