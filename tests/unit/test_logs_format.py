"""Pure formatting of worker lines and master events (runtime.logs.formats)."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.logs.formats import (
    STDERR,
    STDOUT,
    Formatter,
    JsonFormatter,
    LogFormat,
    Pm2Formatter,
    PrettyFormatter,
    RawFormatter,
    Source,
    cut_point,
    has_long_line,
    json_safe,
    make_formatter,
    prefix_width,
    utc_timestamp,
)

SRC = Source("web", 0, 4121)
TS = "2026-11-28T22:47:29.123Z"


def json_lines(out: bytes) -> list[dict[str, object]]:
    assert out.endswith(b"\n")
    return [json.loads(line) for line in out.split(b"\n")[:-1]]


def test_timestamp_is_utc_milliseconds_with_z() -> None:
    """Timestamps are ISO-8601 UTC with exactly three fraction digits and a Z."""
    assert utc_timestamp(1.2345) == "1970-01-01T00:00:01.234Z"
    assert utc_timestamp(1795906049.123) == "2026-11-28T22:47:29.123Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", utc_timestamp())


def test_json_line_has_the_design_shape() -> None:
    """A stdout line becomes the documented record, keys in its order."""
    out = JsonFormatter().lines(SRC, STDOUT, TS, b"listening\n", 100)
    assert out == (
        b'{"timestamp":"2026-11-28T22:47:29.123Z","level":"info","app":"web","instance":0,'
        b'"pid":4121,"stream":"stdout","message":"listening"}\n'
    )


def test_stderr_lines_are_errors() -> None:
    """A stderr line gets level error and stream stderr."""
    [rec] = json_lines(JsonFormatter().lines(SRC, STDERR, TS, b"boom\n", 100))
    assert (rec["level"], rec["stream"], rec["message"]) == ("error", "stderr", "boom")


def test_json_object_line_is_merged_and_keeps_its_level_and_message() -> None:
    """A worker line that is a JSON object is merged; its level/timestamp/message win."""
    line = b'{"level":"debug","message":"hi","timestamp":"x","user":7,"app":"evil"}\n'
    [rec] = json_lines(JsonFormatter().lines(SRC, STDERR, TS, line, 100))
    assert rec == {
        "timestamp": "x",
        "level": "debug",
        "app": "web",
        "instance": 0,
        "pid": 4121,
        "stream": "stderr",
        "message": "hi",
        "user": 7,
    }


@pytest.mark.parametrize("line", [b"{not json", b"[1, 2]", b'{"a": 1} trailing', b"{}x"])
def test_not_an_object_stays_a_message(line: bytes) -> None:
    """A line that only looks like JSON is logged as text."""
    [rec] = json_lines(JsonFormatter().lines(SRC, STDOUT, TS, line + b"\n", 100))
    assert rec["message"] == line.decode()


def test_invalid_utf8_is_replaced() -> None:
    """Bytes that are not UTF-8 become U+FFFD instead of failing."""
    [rec] = json_lines(JsonFormatter().lines(SRC, STDOUT, TS, b"a\xff\xfeb\n", 100))
    assert rec["message"] == "a\ufffd\ufffdb"


def test_crlf_is_one_line_ending() -> None:
    """`\\r\\n` ends a line like `\\n`; a lone `\\r` inside a line is kept."""
    recs = json_lines(JsonFormatter().lines(SRC, STDOUT, TS, b"a\r\nb\rc\n\n", 100))
    assert [r["message"] for r in recs] == ["a", "b\rc", ""]


def test_long_line_is_cut_into_numbered_parts() -> None:
    """A line over max_line becomes parts 1..N, `last` on the final one, that rejoin."""
    line = "é" * 10 + "x"  # 21 bytes, two-byte characters: cuts must not split one
    recs = json_lines(JsonFormatter().lines(SRC, STDOUT, TS, line.encode() + b"\n", 5))
    assert [(r["part"], r["last"]) for r in recs] == [(i, i == 5) for i in range(1, 6)]
    assert "".join(str(r["message"]) for r in recs) == line
    assert all(len(str(r["message"]).encode()) <= 5 for r in recs)


def test_pm2_format_has_pm2_json_keys() -> None:
    """pm2 records carry message, timestamp, type out/err, process_id, app_name, in that order."""
    fmt = Pm2Formatter()
    out = fmt.lines(SRC, STDERR, TS, b'say "hi"\n', 100)
    assert out == (
        b'{"message":"say \\"hi\\"","timestamp":"2026-11-28T22:47:29.123Z","type":"err",'
        b'"process_id":0,"app_name":"web"}\n'
    )
    [rec] = json_lines(fmt.lines(SRC, STDOUT, TS, b'{"a":1}\n', 100))
    assert (rec["message"], rec["type"]) == ('{"a":1}', "out")


def test_pretty_prefix_marks_stderr_and_colours_per_app() -> None:
    """Pretty lines read `web#0 | msg`, stderr `web#0 ! msg`, with a stable colour per app."""
    plain = PrettyFormatter(colour=False)
    assert plain.lines(SRC, STDOUT, TS, b"up\n", 100) == b"web#0   | up\n"
    assert plain.lines(SRC, STDERR, TS, b"bad\n", 100) == b"web#0   ! bad\n"
    coloured = PrettyFormatter(colour=True).lines(SRC, STDOUT, TS, b"up\n", 100)
    assert coloured.startswith(b"\x1b[")
    assert coloured.endswith(b" up\n")
    assert coloured == PrettyFormatter(colour=True).lines(SRC, STDOUT, TS, b"up\n", 100)


def test_pretty_master_event_is_readable() -> None:
    """A master event reads `runtime | worker_started web#0 pid=4121`."""
    line = PrettyFormatter(colour=False).event(TS, "info", "worker_started", "web", 0, 4121, {})
    assert line == b"runtime | worker_started web#0 pid=4121\n"


def test_prefix_width_is_the_widest_name_and_instance() -> None:
    """The widest `name#N` over every app's possible instances, never under `runtime`."""
    assert prefix_width([]) == len("runtime")
    assert prefix_width([("web", 1)]) == len("runtime")
    assert prefix_width([("app-1", 2), ("b", 1)]) == len("app-1#1")
    assert prefix_width([("app-1", 10), ("api", 1)]) == len("app-1#9")
    assert prefix_width([("app-1", 11)]) == len("app-1#10")
    assert prefix_width([("billing-worker", 0)]) == len("billing-worker#0")


def _bar_column(line: bytes) -> int:
    text = line.decode()
    return min(i for i in (text.find(" | "), text.find(" ! ")) if i >= 0)


def test_pretty_prefixes_align_over_the_whole_ecosystem() -> None:
    """Every app's lines and the master's events put `|` in one column from the first line."""
    widest = prefix_width([("app-1", 2), ("worker-long", 12)])
    fmt = PrettyFormatter(colour=False, prefix_cells=widest)
    out = [
        fmt.event(TS, "info", "runtime_started", None, None, 1, {}),
        fmt.lines(Source("app-1", 0, 10), STDOUT, TS, b"a\n", 100),
        fmt.lines(Source("app-1", 1, 11), STDERR, TS, b"b\n", 100),
        fmt.lines(Source("worker-long", 11, 12), STDOUT, TS, b"c\nd\n", 100),
        fmt.lines(Source("app-1", 0, 10), STDOUT, TS, b"x" * 150 + b"\n", 100),
    ]
    lines = b"".join(out).splitlines()
    assert lines[1] == b"app-1#0        | a"
    assert lines[2] == b"app-1#1        ! b"
    assert {_bar_column(line) for line in lines} == {len("worker-long#11")}


def test_widen_makes_room_for_scaled_instances_and_never_narrows() -> None:
    """After `widen` (scale past the file's count) every prefix moves to the new width."""
    fmt = PrettyFormatter(colour=False, prefix_cells=prefix_width([("app-1", 2)]))
    before = fmt.lines(Source("app-1", 1, 11), STDOUT, TS, b"a\n", 100)
    fmt.widen(prefix_width([("app-1", 10)]))
    fmt.widen(3)
    after = [
        fmt.lines(Source("app-1", 1, 11), STDOUT, TS, b"a\n", 100),
        fmt.lines(Source("app-1", 9, 19), STDOUT, TS, b"a\n", 100),
        fmt.event(TS, "info", "scaled", "app-1", None, None, {"instances": 10}),
    ]
    assert before == b"app-1#1 | a\n"
    assert {_bar_column(line) for line in after} == {len("app-1#9")}
    assert make_formatter(LogFormat.PRETTY, 12).lines(SRC, STDOUT, TS, b"u\n", 9).index(b"|") == 13


def test_other_formats_ignore_widen() -> None:
    """widen changes nothing outside `pretty` (their prefixes are not padded)."""
    for fmt in (LogFormat.JSON, LogFormat.PM2, LogFormat.RAW, LogFormat.LOGFMT):
        formatter = make_formatter(fmt, 40)
        before = formatter.lines(SRC, STDOUT, TS, b"a\n", 100)
        formatter.widen(60)
        assert formatter.lines(SRC, STDOUT, TS, b"a\n", 100) == before


def test_raw_passes_bytes_through_line_by_line() -> None:
    """raw keeps the worker's bytes, even invalid UTF-8, and ends lines with `\\n`."""
    assert RawFormatter().lines(SRC, STDOUT, TS, b"a\xff\r\nb\n", 100) == b"a\xff\nb\n"
    event = RawFormatter().event(TS, "info", "worker_exited", "web", 1, 9, {"code": 0})
    assert event == b"runtime: worker_exited web#1 pid=9 code=0\n"


def test_json_event_has_the_worker_line_shape_with_an_event_key() -> None:
    """Master events share the worker line keys, with `event` and their own fields."""
    line = JsonFormatter().event(
        TS, "warning", "restart_scheduled", "web", 0, 4121, {"delay_ms": 100}
    )
    assert json.loads(line) == {
        "timestamp": TS,
        "level": "warning",
        "app": "web",
        "instance": 0,
        "pid": 4121,
        "event": "restart_scheduled",
        "delay_ms": 100,
    }
    bare = json.loads(JsonFormatter().event(TS, "info", "runtime_started", None, None, None, {}))
    assert bare == {"timestamp": TS, "level": "info", "event": "runtime_started"}


def test_pm2_event_is_a_process_event() -> None:
    """In pm2 format a master event is a pm2 process_event with a pm2 status."""
    rec = json.loads(Pm2Formatter().event(TS, "info", "worker_started", "web", 0, 5, {}))
    assert rec["type"] == "process_event"
    assert (rec["status"], rec["app_name"], rec["event"]) == ("online", "web", "worker_started")


@pytest.mark.parametrize(
    ("block", "objects", "safe"),
    [
        (b"plain\n", True, True),
        (b"caf\xc3\xa9\n", True, True),
        (b'say "x"\n', True, False),
        (b"back\\slash\n", True, False),
        (b"tab\there\n", True, False),
        (b"a{b}\n", True, True),
        (b"a\n{b}\n", True, False),
        (b"{b}\n", False, True),
        (b"\xff\n", True, False),
    ],
    ids=["ascii", "utf8", "quote", "backslash", "control", "brace", "object", "pm2", "bad-utf8"],
)
def test_json_safe(block: bytes, objects: bool, safe: bool) -> None:
    """The fast-path check rejects exactly what JSON would escape (and object lines)."""
    assert json_safe(block, objects_matter=objects) is safe


def test_cut_point_keeps_characters_whole() -> None:
    """A cut never lands inside a UTF-8 character, unless the bytes are not UTF-8."""
    assert cut_point("aé".encode(), 2) == 1
    assert cut_point(b"a\x80\x80\x80\x80", 2) == 2


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(st.integers(0, 40), max_size=30),
    max_line=st.integers(1, 50),
)
def test_has_long_line_never_misses_one(lines: list[int], max_line: int) -> None:
    """has_long_line may say yes wrongly but never no wrongly."""
    block = b"".join(b"x" * n + b"\n" for n in lines)
    if any(n > max_line for n in lines):
        assert has_long_line(block, max_line)


ALPHABET = st.sampled_from(
    [b"a", b" ", b"{", b"}", b'"', b"\\", b"\r", b"\t", b"\x00", b"\xc3\xa9", b"\xff", b"\n"]
)


@settings(max_examples=400, deadline=None)
@given(
    pieces=st.lists(ALPHABET, max_size=80),
    fmt=st.sampled_from(list(LogFormat)),
    max_line=st.integers(1, 30),
    stream=st.sampled_from([STDOUT, STDERR]),
)
def test_fast_path_equals_per_line_path(
    pieces: list[bytes], fmt: LogFormat, max_line: int, stream: str
) -> None:
    """Whatever the bytes, the one-replace fast path writes what the per-line path writes."""
    block = b"".join(pieces) + b"\n"
    formatter: Formatter = make_formatter(fmt)
    if isinstance(formatter, PrettyFormatter):
        formatter.colour = False
    fast = formatter.lines(SRC, stream, TS, block, max_line)
    slow = formatter.lines(SRC, stream, TS, block, max_line, fast=False)
    assert fast == slow
    assert fast.count(b"\n") >= block.count(b"\n")


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\r\n")),
    max_line=st.integers(4, 64),
)
def test_json_messages_round_trip(text: str, max_line: int) -> None:
    """Any one-line text comes back from the JSON records (joined parts) as it went in."""
    if text.startswith("{"):
        text = " " + text
    recs = json_lines(JsonFormatter().lines(SRC, STDOUT, TS, text.encode() + b"\n", max_line))
    assert "".join(str(r["message"]) for r in recs) == text
