"""What workers report about themselves (loop delay, handles, the app's own metrics), bounded.

Wire forms (docs/metrics.md has the user's side):

- node, on the IPC channel (`process.send`): the preload's `{type: 'runtime:loop', data:
  {loop_delay_p50_ms, loop_delay_p99_ms, active_handles, active_requests}}`; pm2's
  `{type: 'axm:monitor', data: {NAME: {value, unit, ...}}}` (what @pm2/io's `io.metric()`
  sends); and the plain `{type: 'runtime:metrics', data: {NAME: value}}`;
- any worker, on NOTIFY_SOCKET: `X_RUNTIME_LOOP=<json object>` (the preload's figures) and
  `X_RUNTIME_METRICS=<json object>` (the app's), one line each, as sd_notify variables.

A loop report replaces the previous one; the app's metrics merge by name (null removes
one). Bounds: MAX_CUSTOM names per worker (later new names are dropped), names of at most
MAX_NAME_CHARS, strings cut to MAX_TEXT_CHARS, numbers finite, MAX_ITEMS_PER_REPORT entries
read per report. So a flood costs the master CPU for the messages, never memory. One process
of the worker's tree reports at a time: another one (a worker's child) is heard once the
reporting one has been silent for REPORTER_STALE_S. Pure: time comes in as `now`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from itertools import islice
from typing import Any

Value = int | float | str

LOOP_TYPE = "runtime:loop"  # the preloads' own report
METRICS_TYPE = "runtime:metrics"  # the plain form for apps
PM2_TYPE = "axm:monitor"  # @pm2/io, pmx and tx2
LOOP_FIELD = "X_RUNTIME_LOOP"  # the same two, on NOTIFY_SOCKET
METRICS_FIELD = "X_RUNTIME_METRICS"
LOOP_KEYS = ("loop_delay_p50_ms", "loop_delay_p99_ms", "active_handles", "active_requests")
COUNT_KEYS = frozenset(("active_handles", "active_requests"))
AGE_KEY = "age_s"  # seconds since the last loop report (or the last app report, without one)
MAX_CUSTOM = 32
MAX_NAME_CHARS = 64
MAX_TEXT_CHARS = 128
MAX_ITEMS_PER_REPORT = 256
MAX_INT = 2**53  # past this a JSON reader in a browser loses digits
REPORTER_STALE_S = 5.0


def metric_value(raw: object) -> Value | None:
    """A reported value as stored: a finite number or a string (cut); None if unusable.

    pm2's form wraps it (`{value: 3, unit: 'ms'}`); a boolean becomes "true"/"false", as
    pm2 shows it; control characters in a string (terminal escapes) become U+FFFD.
    """
    if isinstance(raw, dict):
        raw = raw.get("value")
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, int):
        return raw if -MAX_INT <= raw <= MAX_INT else None
    if isinstance(raw, float):
        return raw if math.isfinite(raw) else None
    if isinstance(raw, str):
        text = raw[:MAX_TEXT_CHARS]
        return text if text.isprintable() else "".join(_printable(c) for c in text)
    return None


def _printable(c: str) -> str:
    """A character as shown: control characters (a terminal's escapes) become U+FFFD."""
    return c if c.isprintable() or c == " " else "\ufffd"


def metric_name(raw: object) -> str | None:
    """A usable metric name: printable text of 1..MAX_NAME_CHARS characters."""
    if isinstance(raw, str) and 0 < len(raw) <= MAX_NAME_CHARS and raw.isprintable():
        return raw
    return None


def loop_figures(data: object) -> dict[str, Value] | None:
    """The preload's report as stored (known keys, non-negative numbers), None if unusable."""
    if not isinstance(data, dict):
        return None
    figures: dict[str, Value] = {}
    for key in LOOP_KEYS:
        raw = data.get(key)
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            continue
        if not math.isfinite(raw) or raw < 0 or raw > MAX_INT:
            continue
        figures[key] = int(raw) if key in COUNT_KEYS else round(float(raw), 3)
    return figures or None


def decode_field(text: str) -> object:
    """The JSON value of a notify variable, None if it is not JSON (or nested too deep)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


class AppMetrics:
    """The latest report of one worker: its loop figures and its app's metrics by name."""

    __slots__ = ("custom", "custom_at", "loop", "loop_at", "reporter")

    def __init__(self) -> None:
        self.loop: dict[str, Value] = {}
        self.custom: dict[str, Value] = {}
        self.loop_at: float | None = None
        self.custom_at: float | None = None
        self.reporter: int | None = None  # the pid whose reports are taken

    def clear(self) -> None:
        """Forget everything (the worker exited)."""
        self.loop, self.custom = {}, {}
        self.loop_at = self.custom_at = None
        self.reporter = None

    def _hears(self, pid: int, now: float) -> bool:
        """Whether a report from `pid` counts: the reporting process, or a successor."""
        if self.reporter is None or self.reporter == pid:
            return True
        heard = [at for at in (self.loop_at, self.custom_at) if at is not None]
        return not heard or now - max(heard) > REPORTER_STALE_S

    def take_loop(self, data: object, pid: int, now: float) -> bool:
        """A loop report from `pid`: replaces the previous figures. False if dropped."""
        figures = loop_figures(data)
        if figures is None or not self._hears(pid, now):
            return False
        if self.reporter != pid:
            self.custom, self.custom_at = {}, None  # a new reporter starts a new picture
        self.reporter, self.loop, self.loop_at = pid, figures, now
        return True

    def take_custom(self, data: object, pid: int, now: float) -> bool:
        """The app's metrics from `pid`, merged by name (null removes one). False if dropped."""
        if not isinstance(data, dict) or not self._hears(pid, now):
            return False
        if self.reporter != pid:
            self.loop, self.loop_at, self.custom = {}, None, {}
        self.reporter, self.custom_at = pid, now
        for raw_name, raw in islice(data.items(), MAX_ITEMS_PER_REPORT):
            name = metric_name(raw_name)
            if name is None or name == AGE_KEY:
                continue
            if raw is None:
                self.custom.pop(name, None)
                continue
            value = metric_value(raw)
            if value is not None and (name in self.custom or len(self.custom) < MAX_CUSTOM):
                self.custom[name] = value
        return True

    def take_message(self, message: object, pid: int, now: float) -> bool:
        """An IPC message, if it is a metrics report; False for anything else."""
        if not isinstance(message, dict):
            return False
        kind, data = message.get("type"), message.get("data")
        if kind == LOOP_TYPE:
            return self.take_loop(data, pid, now)
        if kind in (METRICS_TYPE, PM2_TYPE):
            return self.take_custom(data, pid, now)
        return False

    def take_notify(self, fields: Mapping[str, str], pid: int, now: float) -> bool:
        """The X_RUNTIME_LOOP / X_RUNTIME_METRICS variables of one notify datagram."""
        taken = False
        if LOOP_FIELD in fields:
            taken |= self.take_loop(decode_field(fields[LOOP_FIELD]), pid, now)
        if METRICS_FIELD in fields:
            taken |= self.take_custom(decode_field(fields[METRICS_FIELD]), pid, now)
        return taken

    def view(self, now: float) -> dict[str, Any]:
        """The `app_metrics` of a process row: {} until the worker reports; the loop
        figures win over an app metric of the same name; `age_s` says how fresh it is."""
        at = self.loop_at if self.loop_at is not None else self.custom_at
        if at is None:
            return {}
        return {**self.custom, **self.loop, AGE_KEY: round(max(0.0, now - at), 1)}
