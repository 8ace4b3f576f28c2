"""The master's own events (`worker_started`, `restart_scheduled`...), rendered by structlog.

One processor chain for every event: the level from the method name, the timestamp,
the keys in the documented order (timestamp, level, app, instance, pid, event, then the
event's fields), then a renderer for the sink's format: structlog's JSONRenderer with
the same compact serializer the worker-line fast path uses (`formats.dumps`), or the
pretty, pm2 and raw formatters. Rendered lines go to the `LogSink`, the single writer of
stdout, so events and worker lines never interleave within a line. Just before rendering,
each event is also handed as a dict to the sink's `event_tap` when one is set (the log
ring keeps the last ones for the dashboard).

Call sites log with context in keys, bound once where it is known:

    log = events.logger().bind(app="web")
    log.info("worker_started", instance=0, pid=4121, restarts=0)

The start-up relay (`runtime.boot.relay`) writes its first announcements with the
formatter directly, before structlog is imported; `tests/unit/test_log_shape.py` pins
both paths to the same bytes.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, WrappedLogger

from runtime.logs.formats import Formatter, LogFormat, dumps, utc_timestamp
from runtime.logs.sink import LogSink

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
ORDER = ("timestamp", "level", "app", "instance", "pid", "event")


def add_timestamp(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """`timestamp`: ISO-8601 UTC with milliseconds, the same clock as worker lines."""
    event_dict["timestamp"] = utc_timestamp()
    return event_dict


def order_keys(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """The documented key order; `app`, `instance` and `pid` only when they are known."""
    ordered: EventDict = {}
    for key in ORDER:
        value = event_dict.pop(key, None)
        if value is not None or key in ("timestamp", "level", "event"):
            ordered[key] = value
    ordered.update(event_dict)
    return ordered


class FormatRenderer:
    """Renders an ordered event dict as one line of a non-JSON format (pretty, pm2, raw)."""

    def __init__(self, formatter: Formatter) -> None:
        self.formatter = formatter

    def __call__(self, _logger: WrappedLogger, _method: str, event_dict: EventDict) -> bytes:
        fields: MutableMapping[str, Any] = dict(event_dict)
        ts = str(fields.pop("timestamp"))
        level = str(fields.pop("level"))
        event = str(fields.pop("event"))
        app, instance, pid = (fields.pop(key, None) for key in ("app", "instance", "pid"))
        return self.formatter.event(ts, level, event, app, instance, pid, fields)


class EventTap:
    """Passes each ordered event dict to `sink.event_tap` (when set), then on unchanged."""

    def __init__(self, sink: LogSink) -> None:
        self._sink = sink

    def __call__(self, _logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
        tap = self._sink.event_tap
        if tap is not None:
            tap(event_dict)
        return event_dict


def _serialize(value: object, **_kw: object) -> str:
    return dumps(value)


class SinkLogger:
    """structlog's wrapped logger: every level writes the rendered line to the sink."""

    def __init__(self, sink: LogSink) -> None:
        self._sink = sink

    def msg(self, line: str | bytes) -> None:
        self._sink.write(line if isinstance(line, bytes) else line.encode() + b"\n")

    debug = info = warning = error = critical = msg


def processors(fmt: LogFormat, formatter: Formatter) -> list[Any]:
    """The chain for `fmt`: level, timestamp, key order, renderer."""
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_serialize)
        if fmt is LogFormat.JSON
        else FormatRenderer(formatter)
    )
    return [structlog.processors.add_log_level, add_timestamp, order_keys, renderer]


def configure(sink: LogSink, *, level: str = "info", cache: bool = True) -> None:
    """Route every `logger()` call into `sink`, in its format (once, before the first event).

    `cache=False` in tests, so `structlog.testing.capture_logs()` can take over.
    """
    chain = processors(sink.fmt, sink.formatter)
    chain.insert(-1, EventTap(sink))  # after the key order, before the renderer
    structlog.configure(
        processors=chain,
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=lambda *_args: SinkLogger(sink),
        cache_logger_on_first_use=cache,
    )


def logger() -> FilteringBoundLogger:
    """The master's event logger (bind `app`, `instance`, `pid` where they are known)."""
    log: FilteringBoundLogger = structlog.get_logger()
    return log
