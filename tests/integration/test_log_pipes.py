"""The log pipeline on real pipes and real child processes, on a uvloop loop.

The supervisor is not involved: each test spawns `python -c` workers with
`make_pipe()` pipes, drives `WorkerLogs` and `LogSink` directly, and reads the
sink's output from a real pipe (or file), as a log router would.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import stat
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import structlog
import uvloop

from runtime.logs import events
from runtime.logs.formats import LogFormat, default_format
from runtime.logs.sink import READ_BUDGET, LogSink, WorkerLogs
from runtime.proc.pipes import make_pipe

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")
DEADLINE_S = 20.0


def run(coro: Callable[[], Awaitable[T]]) -> T:
    """Run `coro()` on a fresh uvloop loop in debug mode, bounded by a deadline."""

    async def bounded() -> T:
        async with asyncio.timeout(DEADLINE_S):
            return await coro()

    return uvloop.run(bounded(), debug=True)


@dataclass
class Output:
    """The read end of the sink's stdout pipe, collected as the loop runs."""

    fd: int
    data: bytearray = field(default_factory=bytearray, repr=False)  # reprs show in debug mode
    reading: bool = False

    def start(self) -> None:
        os.set_blocking(self.fd, False)
        asyncio.get_running_loop().add_reader(self.fd, self._read)
        self.reading = True

    def stop(self) -> None:
        if self.reading:
            asyncio.get_running_loop().remove_reader(self.fd)
            self.reading = False

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 1 << 20)
            except BlockingIOError:
                return
            if not chunk:
                self.stop()
                return
            self.data += chunk

    def records(self) -> list[dict[str, Any]]:
        assert self.data.endswith(b"\n"), bytes(self.data[-200:])
        return [json.loads(line) for line in bytes(self.data).split(b"\n")[:-1]]


def spawn(code: str) -> tuple[subprocess.Popen[bytes], int, int]:
    """A `python -c code` worker with its stdout and stderr on fresh pipes: (proc, out, err)."""
    out_r, out_w = make_pipe()
    err_r, err_w = make_pipe()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=out_w, stderr=err_w)
    os.close(out_w)
    os.close(err_w)
    return proc, out_r, err_r


async def wait_exit(proc: subprocess.Popen[bytes]) -> int:
    """Poll for the worker's exit without blocking the loop (the deadline is `run`'s)."""
    while (code := proc.poll()) is None:
        await asyncio.sleep(0.005)
    return code


async def until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait for `predicate()` to hold, at most `timeout_s`."""
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.005)


async def pipeline(
    code: str, fmt: LogFormat = LogFormat.JSON, *, max_line: int = 64 * 1024
) -> Output:
    """Run one worker through WorkerLogs -> LogSink -> a pipe; return what came out."""
    loop = asyncio.get_running_loop()
    read_fd, write_fd = os.pipe()
    out = Output(read_fd)
    out.start()
    sink = LogSink(write_fd, fmt, loop)
    proc, out_r, err_r = spawn(code)
    logs = WorkerLogs(
        sink, app="web", instance=0, pid=proc.pid, stdout_fd=out_r, stderr_fd=err_r,
        max_line=max_line,
    )  # fmt: skip
    code_ = await wait_exit(proc)
    logs.drain()
    events.configure(sink, cache=False)
    try:
        events.logger().info("worker_exited", app="web", instance=0, pid=proc.pid, code=code_)
    finally:
        structlog.reset_defaults()
    logs.close()
    await sink.aclose()
    os.close(write_fd)
    await until(lambda: not out.reading)
    os.close(read_fd)
    return out


def test_100k_numbered_lines_arrive_once_in_order_as_json() -> None:
    """100,000 lines written then exit: every one logged once, in order, as valid JSON."""
    code = "import sys\nsys.stdout.writelines(f'line {i}\\n' for i in range(100_000))"
    recs = run(lambda: pipeline(code)).records()
    *lines, exited = recs
    assert [r["message"] for r in lines] == [f"line {i}" for i in range(100_000)]
    assert {(r["app"], r["instance"], r["stream"], r["level"]) for r in lines} == {
        ("web", 0, "stdout", "info")
    }
    assert exited["event"] == "worker_exited"
    assert exited["code"] == 0


def test_megabyte_line_is_cut_into_parts_that_reassemble() -> None:
    """A 1 MiB line comes out as numbered parts of at most max_line that rejoin exactly."""
    code = (
        "import sys, random\nr = random.Random(7)\n"
        "sys.stdout.write(''.join(r.choice('abcé€😀') for _ in range(600_000)) + '\\nend\\n')"
    )
    recs = run(lambda: pipeline(code, max_line=64 * 1024)).records()
    parts = [r for r in recs if "part" in r]
    rnd = random.Random(7)
    expected = "".join(rnd.choice("abcé€😀") for _ in range(600_000))
    assert len(expected.encode()) > 1 << 20
    assert [p["part"] for p in parts] == list(range(1, len(parts) + 1))
    assert [p["last"] for p in parts] == [False] * (len(parts) - 1) + [True]
    assert all(len(p["message"].encode()) <= 64 * 1024 for p in parts)
    assert "".join(p["message"] for p in parts) == expected
    assert recs[len(parts)]["message"] == "end"


def test_binary_garbage_is_replaced_without_crashing() -> None:
    """Random bytes are logged with U+FFFD replacements, line for line, and nothing crashes."""
    code = (
        "import os, random\nr = random.Random(3)\nout = bytearray()\n"
        "for _ in range(5000):\n"
        "    out += bytes(r.randrange(256) for _ in range(r.randrange(1, 120))).replace(b'\\n', b'')"
        ".replace(b'\\r', b'').lstrip(b'{') + b'\\n'\n"
        "os.write(1, bytes(out))\nopen(os.environ['GARBAGE'], 'wb').write(bytes(out))"
    )
    path = Path(f"/tmp/garbage-{os.getpid()}")
    os.environ["GARBAGE"] = str(path)
    try:
        recs = run(lambda: pipeline(code)).records()
        sent = path.read_bytes()
    finally:
        os.environ.pop("GARBAGE")
        path.unlink(missing_ok=True)
    expected = [line.decode("utf-8", "replace") for line in sent.split(b"\n")[:-1]]
    assert [r["message"] for r in recs[:-1]] == expected
    assert any("\ufffd" in m for m in expected)


def test_json_object_line_is_merged() -> None:
    """A worker's JSON object line keeps its keys, ours are added, its level wins."""
    code = 'print(\'{"level": "warning", "msg": "slow", "ms": 812}\')'
    [rec, _] = run(lambda: pipeline(code)).records()
    assert rec["level"] == "warning"
    assert (rec["msg"], rec["ms"], rec["app"], rec["stream"]) == ("slow", 812, "web", "stdout")
    assert "message" not in rec


def test_stderr_lines_have_level_error() -> None:
    """Lines on stderr are logged with level error and stream stderr, stdout ones with info."""
    code = "import sys\nprint('out', flush=True)\nprint('err', file=sys.stderr)"
    recs = run(lambda: pipeline(code)).records()
    by_message = {r.get("message"): r for r in recs}
    assert (by_message["out"]["level"], by_message["out"]["stream"]) == ("info", "stdout")
    assert (by_message["err"]["level"], by_message["err"]["stream"]) == ("error", "stderr")


def test_partial_last_line_is_flushed_by_drain_before_the_exit_event() -> None:
    """Output without a final newline is logged by drain(), before worker_exited."""
    code = "import sys\nsys.stdout.write('one\\ntwo, no newline')"
    recs = run(lambda: pipeline(code)).records()
    assert [r.get("message", r.get("event")) for r in recs] == [
        "one",
        "two, no newline",
        "worker_exited",
    ]


@pytest.mark.parametrize("fmt", list(LogFormat), ids=[f.value for f in LogFormat])
def test_each_format_shape(fmt: LogFormat) -> None:
    """Every format writes one line per worker line and one per master event."""
    code = "import sys\nprint('hello', flush=True)\nprint('oops', file=sys.stderr)"
    out = bytes(run(lambda: pipeline(code, fmt)).data)
    lines = out.split(b"\n")[:-1]
    assert len(lines) == 3
    if fmt is LogFormat.JSON:
        recs = [json.loads(line) for line in lines]
        assert {r.get("message") for r in recs} >= {"hello", "oops"}
        assert recs[-1]["event"] == "worker_exited"
    elif fmt is LogFormat.PM2:
        recs = [json.loads(line) for line in lines]
        assert {(r.get("message"), r["type"]) for r in recs[:2]} == {
            ("hello", "out"),
            ("oops", "err"),
        }
        assert list(recs[0]) == ["message", "timestamp", "type", "process_id", "app_name"]
        assert (recs[-1]["type"], recs[-1]["status"]) == ("process_event", "exit")
    elif fmt is LogFormat.PRETTY:
        text = out.decode()
        assert "hello\n" in text
        assert "oops\n" in text
        assert "web#0" in text
        assert "worker_exited web#0" in text
    elif fmt is LogFormat.LOGFMT:  # pm2-runtime's --format
        assert {line.split(b" app=web id=0 ")[1] for line in lines[:2]} == {
            b"type=out message=hello",
            b"type=err message=oops",
        }
        assert b" type=process_event level=info event=worker_exited pid=" in lines[2]
    else:
        assert set(lines[:2]) == {b"hello", b"oops"}
        assert lines[2].startswith(b"runtime: worker_exited web#0 pid=")


def test_stalled_stdout_bounds_memory_and_blocks_the_worker_then_delivers_everything() -> None:
    """Unread stdout: bounded buffer, a blocked worker; once read, every line arrives."""
    n_lines = 100_000  # 10 MB of input, 23 MB of JSON: far more than the pipes hold
    high_water = 1 << 20

    async def scenario() -> tuple[Output, LogSink, bool]:
        loop = asyncio.get_running_loop()
        read_fd, write_fd = os.pipe()
        out = Output(read_fd)
        sink = LogSink(write_fd, LogFormat.JSON, loop, high_water=high_water)
        code = (
            "import sys\n"
            f"sys.stdout.writelines(f'{{i:08d}}' + 'x' * 91 + '\\n' for i in range({n_lines}))"
        )
        proc, out_r, err_r = spawn(code)
        logs = WorkerLogs(
            sink, app="web", instance=0, pid=proc.pid, stdout_fd=out_r, stderr_fd=err_r
        )
        await until(lambda: sink.paused)
        await asyncio.sleep(0.5)  # the stall: stdout unread for a while
        worker_blocked = proc.poll() is None and sink.paused
        out.start()
        await wait_exit(proc)
        logs.drain()
        logs.close()
        await sink.aclose()
        os.close(write_fd)
        await until(lambda: not out.reading)
        os.close(read_fd)
        return out, sink, worker_blocked

    out, sink, worker_blocked = run(scenario)
    assert worker_blocked
    # One readiness callback may add up to READ_BUDGET bytes of input, ~2.3x as JSON.
    assert sink.peak_buffered <= high_water + 3 * READ_BUDGET
    data = bytes(out.data)
    assert data.count(b"\n") == n_lines
    recs = [json.loads(line) for line in data.split(b"\n")[:-1]]
    assert [r["message"][:8] for r in recs] == [f"{i:08d}" for i in range(n_lines)]
    assert sink.lost_bytes == 0


def test_closed_stdout_drops_output_without_stalling_workers() -> None:
    """If the log reader goes away (EPIPE) output is counted as lost and workers keep running."""

    async def scenario() -> LogSink:
        loop = asyncio.get_running_loop()
        read_fd, write_fd = os.pipe()
        os.close(read_fd)
        sink = LogSink(write_fd, LogFormat.JSON, loop)
        proc, out_r, err_r = spawn("print('x' * 100_000)\nprint('done')")
        logs = WorkerLogs(
            sink, app="web", instance=0, pid=proc.pid, stdout_fd=out_r, stderr_fd=err_r
        )
        await wait_exit(proc)
        logs.drain()
        logs.close()
        events.configure(sink, cache=False)
        try:
            events.logger().info("worker_exited", app="web", instance=0, pid=proc.pid, code=0)
        finally:
            structlog.reset_defaults()
        await sink.aclose()
        os.close(write_fd)
        return sink

    sink = run(scenario)
    assert sink.lost_bytes > 100_000


def test_regular_file_stdout_and_flags_restored() -> None:
    """A regular file takes blocking writes; a pipe's blocking flag is restored by aclose."""

    async def scenario(path: Path) -> None:
        loop = asyncio.get_running_loop()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        sink = LogSink(fd, LogFormat.JSON, loop)
        proc, out_r, err_r = spawn("print('to a file')")
        logs = WorkerLogs(
            sink, app="web", instance=0, pid=proc.pid, stdout_fd=out_r, stderr_fd=err_r
        )
        await wait_exit(proc)
        logs.drain()
        logs.close()
        await sink.aclose()
        os.close(fd)
        read_fd, write_fd = os.pipe()
        pipe_sink = LogSink(write_fd, LogFormat.JSON, loop)
        assert not os.get_blocking(write_fd)
        await pipe_sink.aclose()
        assert os.get_blocking(write_fd)
        os.close(read_fd)
        os.close(write_fd)

    path = Path(f"/tmp/log-file-{os.getpid()}")
    try:
        run(lambda: scenario(path))
        assert stat.S_ISREG(path.stat().st_mode)
        [rec] = [json.loads(line) for line in path.read_bytes().splitlines()]
    finally:
        path.unlink(missing_ok=True)
    assert rec["message"] == "to a file"


def test_pid_learnt_later_is_used_on_later_lines() -> None:
    """The supervisor may set WorkerLogs.pid after creating it; later lines carry the new pid."""

    async def scenario() -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        read_fd, write_fd = os.pipe()
        out = Output(read_fd)
        out.start()
        sink = LogSink(write_fd, LogFormat.JSON, loop)
        proc, out_r, err_r = spawn("print('hi')")
        logs = WorkerLogs(sink, app="web", instance=2, pid=0, stdout_fd=out_r, stderr_fd=err_r)
        logs.pid = proc.pid
        await wait_exit(proc)
        logs.drain()
        logs.close()
        await sink.aclose()
        os.close(write_fd)
        await until(lambda: not out.reading)
        os.close(read_fd)
        return [{"pid": proc.pid}, *out.records()]

    expected, rec = run(scenario)
    assert (rec["pid"], rec["instance"]) == (expected["pid"], 2)


def test_structlog_events_go_through_the_sink() -> None:
    """After events.configure(sink), structlog events are written by the sink in its format."""

    async def scenario() -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        read_fd, write_fd = os.pipe()
        out = Output(read_fd)
        out.start()
        sink = LogSink(write_fd, LogFormat.JSON, loop)
        events.configure(sink, cache=False)
        try:
            log = structlog.get_logger().bind(app="web", instance=1, pid=42)
            log.debug("filtered_out")
            log.warning("restart_scheduled", delay_ms=250)
        finally:
            structlog.reset_defaults()
        await sink.aclose()
        os.close(write_fd)
        await until(lambda: not out.reading)
        os.close(read_fd)
        return out.records()

    [rec] = run(scenario)
    assert rec["event"] == "restart_scheduled"
    assert (rec["level"], rec["app"], rec["instance"], rec["pid"]) == ("warning", "web", 1, 42)
    assert rec["delay_ms"] == 250
    assert rec["timestamp"].endswith("Z")


def test_throughput_smoke() -> None:
    """A quick sanity bound on the JSON hot path (the real figure is bench/log_throughput.py)."""
    code = "import os\nos.write(1, (b'y' * 99 + b'\\n') * 200_000)"
    started = time.perf_counter()
    out = run(lambda: pipeline(code))
    elapsed = time.perf_counter() - started
    assert bytes(out.data).count(b"\n") == 200_001
    assert elapsed < 10


def test_make_pipe_is_cloexec_with_a_megabyte_buffer() -> None:
    """make_pipe() gives close-on-exec ends and asks for a 1 MiB pipe buffer."""
    import fcntl

    read_fd, write_fd = make_pipe()
    try:
        for fd in (read_fd, write_fd):
            assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        assert fcntl.fcntl(read_fd, 1032) >= 1 << 20  # F_GETPIPE_SZ
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_default_format_is_json_off_a_tty() -> None:
    """default_format() picks json for a pipe and pretty for a terminal."""
    read_fd, write_fd = os.pipe()
    try:
        assert default_format(write_fd) is LogFormat.JSON
    finally:
        os.close(read_fd)
        os.close(write_fd)
    primary, secondary = os.openpty()
    try:
        assert default_format(secondary) is LogFormat.PRETTY
    finally:
        os.close(primary)
        os.close(secondary)
