"""Pure formatting of worker lines and master events, one output line per input line.

No I/O here: `runtime.logs.sink` reads the pipes and writes the sink; this module turns a
block of complete lines into the bytes of the chosen format.

Rules shared by every format (README.md, "Logs"):

- A line ends at `\\n`; a `\\r` just before it is part of the ending (`\\r\\n`).
- A line longer than `max_line` bytes is cut into parts of at most `max_line` bytes
  (never inside a UTF-8 character). Each part is its own record with `"part": k`
  (1-based) and `"last": true|false`; concatenating the messages of parts 1..k where
  `last` is true gives back the line. The number of parts is not known when the first
  part is written (the reader never holds more than `max_line` bytes of one line), so
  the end is marked by `last` rather than by a total.
- Bytes that are not UTF-8 become U+FFFD, except in `raw`, which passes bytes through.
- `json`: a line that is itself a JSON object is merged: its keys win, except `app`,
  `instance` and `stream`, which name the source. stderr lines get `level: error`.

The hot path: a block of lines that needs no escaping becomes one `bytes.replace` of
`\\n` by `suffix \\n prefix`; `lines(fast=False)` is the per-line reference it must equal.
"""

from __future__ import annotations

import json
import math
import os
import time
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

STDOUT = "stdout"
STDERR = "stderr"
MASTER_NAME = "runtime"

# Bytes that need no JSON escaping ('"', '\\' and control characters do), plus '\n',
# which separates lines, and bytes >= 0x80, which are checked as UTF-8 separately.
# '{' is left out so a block with a JSON-object line is looked at more closely.
_SAFE_BYTES = bytes(b for b in range(256) if b == 0x0A or (b >= 0x20 and b not in b'"\\{'))

Chunk = bytes | memoryview  # a piece of output, written in order without joining

_IDENTITY_KEYS = frozenset({"app", "instance", "pid", "stream"})  # a worker cannot forge them

# pm2's process_event statuses for the master events that have one.
_PM2_STATUS = {
    "worker_started": "online",
    "worker_exited": "exit",
    "restart_scheduled": "restart",
    "reload_done": "graceful reload",
    "worker_stopping": "stop",
}


class LogFormat(StrEnum):
    """The formats of the master's stdout (`--log-format`)."""

    JSON = "json"
    PRETTY = "pretty"
    PM2 = "pm2"
    RAW = "raw"
    LOGFMT = "logfmt"


# --- JSON text -------------------------------------------------------------------------
# Compact, UTF-8, values JSON has no type for written with str(), never NaN or Infinity
# (invalid JSON: they become null), and a lone surrogate (read from a worker's JSON line,
# it cannot be UTF-8) written as a \u escape, so every line is valid JSON.

_ENCODE = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), default=str, allow_nan=False
).encode
_ENCODE_ASCII = json.JSONEncoder(separators=(",", ":"), default=str, allow_nan=False).encode


def _finite(value: object) -> object:
    """`value` with every non-finite float (nested in dicts, lists, tuples) as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def dumps(value: object) -> str:
    """Compact JSON text; raises RecursionError for structures nested beyond the stack."""
    try:
        return _ENCODE(value)
    except ValueError:  # a NaN or an infinity somewhere
        return _ENCODE(_finite(value))


def dumps_line(value: object) -> bytes:
    """`dumps(value)` plus a newline, as UTF-8 bytes."""
    text = dumps(value) + "\n"
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate: escape everything instead
        try:
            return (_ENCODE_ASCII(value) + "\n").encode()
        except ValueError:
            return (_ENCODE_ASCII(_finite(value)) + "\n").encode()


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def loads_object(data: bytes) -> dict[str, object] | None:
    """The JSON object in `data`, or None when it is not one (or not JSON at all)."""
    try:
        value = json.loads(data, parse_constant=_reject_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    return value if isinstance(value, dict) else None


@dataclass(frozen=True, slots=True)
class Source:
    """Who wrote a line: the worker's app, instance number and pid."""

    app: str
    instance: int
    pid: int


_ts_second = -1
_ts_prefix = ""


def utc_timestamp(now: float | None = None) -> str:
    """ISO-8601 UTC with milliseconds and `Z` (`2026-11-28T22:47:29.123Z`), cached per second."""
    global _ts_second, _ts_prefix
    second, ms = divmod(round((time.time() if now is None else now) * 1000), 1000)
    if second != _ts_second:
        _ts_prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _ts_second = second
    return f"{_ts_prefix}.{ms:03d}Z"


def cut_point(data: bytes, limit: int) -> int:
    """Where to cut `data` so the first piece has at most `limit` bytes and whole characters."""
    i = limit
    while i > limit - 3 and i > 1 and (data[i] & 0xC0) == 0x80:
        i -= 1
    return i if (data[i] & 0xC0) != 0x80 else limit


def has_long_line(block: bytes, max_line: int) -> bool:
    """True if `block` (ending in `\\n`) may hold a line over `max_line` bytes; never a false no.

    Any run of `max_line + 1` bytes without `\\n` contains a whole aligned window of
    `(max_line + 1) // 2` bytes, so one `find` per window (each stops at the first
    newline) is enough; a long but legal line only sends the block to the slow path.
    """
    size = len(block)
    if size <= max_line + 1:
        return False
    window = max(1, (max_line + 1) // 2)
    find = block.find
    return any(find(b"\n", start, start + window) < 0 for start in range(0, size, window))


def _valid_utf8(block: bytes) -> bool:
    if block.isascii():
        return True
    try:
        block.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def json_safe(block: bytes, *, objects_matter: bool) -> bool:
    """True if every line of `block` can go into a JSON string as is (and none is an object)."""
    rest = block.translate(None, _SAFE_BYTES)
    if rest:
        if rest.strip(b"{"):  # a quote, backslash or control character needs escaping
            return False
        if objects_matter and (block.startswith(b"{") or b"\n{" in block):
            return False
    return _valid_utf8(block)


def _splice(out: list[Chunk], block: bytes, prefix: bytes, suffix: bytes) -> bool:
    """Wrap every line of `block` (which ends in `\\n`) in prefix/suffix, in C, no extra copy."""
    body = block.replace(b"\n", suffix + b"\n" + prefix)
    if prefix:
        out.append(prefix)
        out.append(memoryview(body)[: len(body) - len(prefix)])
    else:
        out.append(body)
    return True


def _kv(value: object) -> str:
    text = value if isinstance(value, str) else dumps(value)
    return text if text and " " not in text and '"' not in text else dumps(text)


def event_text(
    event: str, app: str | None, instance: int | None, pid: int | None, fields: Mapping[str, object]
) -> str:
    """A master event as short text: `worker_started web#0 pid=4121 code=1`."""
    words = [event]
    if app is not None:
        words.append(app if instance is None else f"{app}#{instance}")
    elif instance is not None:
        words.append(f"instance={instance}")
    if pid is not None:
        words.append(f"pid={pid}")
    words.extend(f"{key}={_kv(value)}" for key, value in fields.items())
    return " ".join(words)


class Formatter(ABC):
    """Turns worker lines and master events into output lines of one format."""

    def lines(
        self, src: Source, stream: str, ts: str, block: bytes, max_line: int, *, fast: bool = True
    ) -> bytes:
        """Format `block`, complete lines each ending in `\\n`; long lines become parts."""
        out: list[Chunk] = []
        self.lines_into(out, src, stream, ts, block, max_line, fast=fast)
        return b"".join(out)

    def lines_into(
        self,
        pieces: list[Chunk],
        src: Source,
        stream: str,
        ts: str,
        block: bytes,
        max_line: int,
        *,
        fast: bool = True,
    ) -> None:
        """`lines`, appending the output to `pieces` (buffers to write in order)."""
        if (
            fast
            and not has_long_line(block, max_line)
            and self._fast(pieces, src, stream, ts, block)
        ):
            return
        for raw in block.split(b"\n")[:-1]:
            line = raw[:-1] if raw.endswith(b"\r") else raw
            if len(line) <= max_line:
                pieces.append(self.line(src, stream, ts, line))
            else:
                self.cut(pieces, src, stream, ts, line, max_line, first_part=1, last=True)

    def cut(
        self,
        out: list[Chunk],
        src: Source,
        stream: str,
        ts: str,
        data: bytes,
        max_line: int,
        *,
        first_part: int,
        last: bool,
    ) -> tuple[int, bytes]:
        """Append parts of `data`; with `last=False` keep a tail of at most `max_line` bytes.

        Returns the next part number and the tail that was kept.
        """
        part = first_part
        while len(data) > max_line:
            at = cut_point(data, max_line)
            out.append(self.line(src, stream, ts, data[:at], part=part, last=False))
            data = data[at:]
            part += 1
        if last:
            out.append(self.line(src, stream, ts, data, part=part, last=True))
            return part + 1, b""
        return part, data

    def _fast(self, out: list[Chunk], src: Source, stream: str, ts: str, block: bytes) -> bool:
        """The whole block in a few C calls, or False when a line needs the per-line path."""
        return False

    def widen(self, prefix_cells: int) -> None:
        """Make room for source prefixes this wide (`prefix_width`); only `pretty` pads."""
        return  # the other formats have no padded prefix

    @abstractmethod
    def line(
        self, src: Source, stream: str, ts: str, raw: bytes, *, part: int = 0, last: bool = True
    ) -> bytes:
        """One output line (with its `\\n`) for one worker line or part of one (`part` >= 1)."""

    @abstractmethod
    def event(
        self,
        ts: str,
        level: str,
        event: str,
        app: str | None,
        instance: int | None,
        pid: int | None,
        fields: Mapping[str, object],
    ) -> bytes:
        """One output line (with its `\\n`) for a master event."""


class JsonFormatter(Formatter):
    """The documented JSON line: timestamp, level, app, instance, pid, stream, message."""

    def _head(self, src: Source, stream: str, ts: str) -> dict[str, object]:
        level = "error" if stream == STDERR else "info"
        return {
            "timestamp": ts,
            "level": level,
            "app": src.app,
            "instance": src.instance,
            "pid": src.pid,
            "stream": stream,
        }

    def _fast(self, out: list[Chunk], src: Source, stream: str, ts: str, block: bytes) -> bool:
        if not json_safe(block, objects_matter=True):
            return False
        head = dumps_line({**self._head(src, stream, ts), "message": ""})
        return _splice(out, block, head[:-3], b'"}')

    def line(
        self, src: Source, stream: str, ts: str, raw: bytes, *, part: int = 0, last: bool = True
    ) -> bytes:
        record = self._head(src, stream, ts)
        if part:
            record["message"] = raw.decode("utf-8", "replace")
            record["part"] = part
            record["last"] = last
            return dumps_line(record)
        obj = loads_object(raw) if raw.startswith(b"{") else None
        if obj is not None:
            for key, value in obj.items():
                if key not in _IDENTITY_KEYS:
                    record[key] = value
            try:
                return dumps_line(record)
            except RecursionError:  # nested deeper than the encoder goes: keep the text
                record = self._head(src, stream, ts)
        record["message"] = raw.decode("utf-8", "replace")
        return dumps_line(record)

    def event(
        self,
        ts: str,
        level: str,
        event: str,
        app: str | None,
        instance: int | None,
        pid: int | None,
        fields: Mapping[str, object],
    ) -> bytes:
        record: dict[str, object] = {"timestamp": ts, "level": level}
        if app is not None:
            record["app"] = app
        if instance is not None:
            record["instance"] = instance
        if pid is not None:
            record["pid"] = pid
        record["event"] = event
        record.update(fields)
        return dumps_line(record)


class Pm2Formatter(Formatter):
    """`pm2-runtime --json` keys, but one record per line (pm2 merges a whole chunk)."""

    def _tail(self, src: Source, stream: str, ts: str) -> dict[str, object]:
        kind = "err" if stream == STDERR else "out"
        return {"timestamp": ts, "type": kind, "process_id": src.instance, "app_name": src.app}

    def _fast(self, out: list[Chunk], src: Source, stream: str, ts: str, block: bytes) -> bool:
        if not json_safe(block, objects_matter=False):
            return False
        tail = dumps_line(self._tail(src, stream, ts))
        return _splice(out, block, b'{"message":"', b'",' + tail[1:-1])

    def line(
        self, src: Source, stream: str, ts: str, raw: bytes, *, part: int = 0, last: bool = True
    ) -> bytes:
        record: dict[str, object] = {"message": raw.decode("utf-8", "replace")}
        record.update(self._tail(src, stream, ts))
        if part:
            record["part"] = part
            record["last"] = last
        return dumps_line(record)

    def event(
        self,
        ts: str,
        level: str,
        event: str,
        app: str | None,
        instance: int | None,
        pid: int | None,
        fields: Mapping[str, object],
    ) -> bytes:
        record: dict[str, object] = {
            "timestamp": ts,
            "type": "process_event",
            "status": _PM2_STATUS.get(event, event),
            "app_name": app if app is not None else MASTER_NAME,
        }
        if instance is not None:
            record["process_id"] = instance
        record.update({"event": event, "level": level})
        if pid is not None:
            record["pid"] = pid
        record.update(fields)
        return dumps_line(record)


_COLOURS = (36, 32, 33, 34, 35, 96, 92, 93, 94, 95)  # no red: red marks stderr and errors
_RESET = "\x1b[0m"


def _stdout_is_a_tty() -> bool:
    try:
        return os.isatty(1)
    except OSError:
        return False


def prefix_width(apps: Iterable[tuple[str, int]]) -> int:
    """The widest pretty prefix (`name#N`, or the master's `runtime`) of apps that run up
    to that many instances each: what every prefix is padded to, so they all align."""
    widths = (len(f"{name}#{max(count, 1) - 1}") for name, count in apps)
    return max([len(MASTER_NAME), *widths])


class PrettyFormatter(Formatter):
    """For a TTY: `web#0 | message`, `web#0 ! message` for stderr, `runtime | event ...`.

    Every prefix is padded to the same width: the widest the ecosystem can produce
    (`widen(prefix_width(...))`, told again when apps or instances are added), or a
    longer one once seen. Coloured per app (crc32 of the name, so the colour is stable
    across runs); `NO_COLOR` turns colour off.
    """

    def __init__(self, *, colour: bool | None = None, prefix_cells: int = 0) -> None:
        if colour is None:  # colour for a terminal only, and never with NO_COLOR
            colour = _stdout_is_a_tty() and not os.environ.get("NO_COLOR")
        self.colour = colour
        self._width = max(len(MASTER_NAME), prefix_cells)

    def widen(self, prefix_cells: int) -> None:
        self._width = max(self._width, prefix_cells)

    def _paint(self, code: int, text: str) -> str:
        return f"\x1b[{code}m{text}{_RESET}" if self.colour else text

    def _prefix(self, name: str, code: int, mark: str, mark_code: int) -> str:
        self._width = max(self._width, len(name))
        return f"{self._paint(code, name.ljust(self._width))} {self._paint(mark_code, mark)} "

    def _source_prefix(self, src: Source, stream: str) -> bytes:
        code = _COLOURS[zlib.crc32(src.app.encode()) % len(_COLOURS)]
        mark, mark_code = ("!", 31) if stream == STDERR else ("|", code)
        return self._prefix(f"{src.app}#{src.instance}", code, mark, mark_code).encode()

    def _fast(self, out: list[Chunk], src: Source, stream: str, ts: str, block: bytes) -> bool:
        if b"\r" in block or not _valid_utf8(block):
            return False
        return _splice(out, block, self._source_prefix(src, stream), b"")

    def line(
        self, src: Source, stream: str, ts: str, raw: bytes, *, part: int = 0, last: bool = True
    ) -> bytes:
        text = raw.decode("utf-8", "replace")
        if part:
            text = f"{text} [part {part}{', last' if last else ''}]"
        return self._source_prefix(src, stream) + text.encode() + b"\n"

    def event(
        self,
        ts: str,
        level: str,
        event: str,
        app: str | None,
        instance: int | None,
        pid: int | None,
        fields: Mapping[str, object],
    ) -> bytes:
        text = event_text(event, app, instance, pid, fields)
        if level in ("error", "critical"):
            text = self._paint(31, text)
        elif level == "warning":
            text = self._paint(33, text)
        return (self._prefix(MASTER_NAME, 1, "|", 1) + text + "\n").encode()


class RawFormatter(Formatter):
    """The worker's bytes line by line (`\\r\\n` becomes `\\n`); master events as short text."""

    def _fast(self, out: list[Chunk], src: Source, stream: str, ts: str, block: bytes) -> bool:
        if b"\r" in block:
            return False
        out.append(block)
        return True

    def line(
        self, src: Source, stream: str, ts: str, raw: bytes, *, part: int = 0, last: bool = True
    ) -> bytes:
        return raw + b"\n"

    def event(
        self,
        ts: str,
        level: str,
        event: str,
        app: str | None,
        instance: int | None,
        pid: int | None,
        fields: Mapping[str, object],
    ) -> bytes:
        return f"{MASTER_NAME}: {event_text(event, app, instance, pid, fields)}\n".encode()


class LogfmtFormatter(Formatter):
    """pm2-runtime's `--format`: `timestamp=... app=... id=... type=out message=...`.

    The message is the rest of the line, as pm2 writes it; master events are
    `type=process_event event=... key=value ...`.
    """

    def _prefix(self, src: Source, stream: str, ts: str) -> bytes:
        kind = "err" if stream == STDERR else "out"
        return f"timestamp={ts} app={_kv(src.app)} id={src.instance} type={kind} message=".encode()

    def _fast(self, out: list[Chunk], src: Source, stream: str, ts: str, block: bytes) -> bool:
        if b"\r" in block or not _valid_utf8(block):
            return False
        return _splice(out, block, self._prefix(src, stream, ts), b"")

    def line(
        self, src: Source, stream: str, ts: str, raw: bytes, *, part: int = 0, last: bool = True
    ) -> bytes:
        text = raw.decode("utf-8", "replace")
        if part:
            text = f"{text} [part {part}{', last' if last else ''}]"
        return self._prefix(src, stream, ts) + text.encode() + b"\n"

    def event(
        self,
        ts: str,
        level: str,
        event: str,
        app: str | None,
        instance: int | None,
        pid: int | None,
        fields: Mapping[str, object],
    ) -> bytes:
        words = [f"timestamp={ts}", f"app={_kv(app if app is not None else MASTER_NAME)}"]
        if instance is not None:
            words.append(f"id={instance}")
        words += ["type=process_event", f"level={level}", f"event={event}"]
        if pid is not None:
            words.append(f"pid={pid}")
        words += [f"{key}={_kv(value)}" for key, value in fields.items()]
        return (" ".join(words) + "\n").encode()


def make_formatter(fmt: LogFormat, prefix_cells: int = 0) -> Formatter:
    """The formatter for `fmt`; `pretty` pads its prefixes to `prefix_cells` (`prefix_width`)."""
    match fmt:
        case LogFormat.JSON:
            return JsonFormatter()
        case LogFormat.PM2:
            return Pm2Formatter()
        case LogFormat.PRETTY:
            return PrettyFormatter(prefix_cells=prefix_cells)
        case LogFormat.RAW:
            return RawFormatter()
        case LogFormat.LOGFMT:
            return LogfmtFormatter()
    raise ValueError(f"{fmt!r} is not a log format")


def default_format(fd: int = 1) -> LogFormat:
    """`pretty` when `fd` is a TTY, `json` otherwise (a log router reads it)."""
    try:
        return LogFormat.PRETTY if os.isatty(fd) else LogFormat.JSON
    except OSError:
        return LogFormat.JSON
