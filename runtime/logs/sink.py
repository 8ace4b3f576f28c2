"""The log pipeline: worker pipes in, one line per event out on the master's stdout.

`LogSink` is the only writer of the master's stdout; `WorkerLogs` reads one worker's
stdout and stderr pipes into it. Both run on the master's event loop with no threads.

- Reading: `loop.add_reader` per pipe, `os.read` of up to 64 KiB, looping while data
  is there up to a budget, one timestamp per chunk. Each pipe keeps its own partial
  line, so lines are never split or merged (formatting rules: `runtime.logs.formats`).
- Writing: non-blocking when stdout is a pipe or socket (flags restored by `aclose`),
  `loop.add_writer` on EAGAIN; a regular file, TTY or character device takes blocking
  writes (making a TTY non-blocking would leak into the shell that shares it).
- Back-pressure: past `high_water` buffered bytes every `WorkerLogs` stops reading, so
  workers block on their full pipes; reading resumes below `high_water // 4`. The
  buffer is bounded by `high_water` plus one read's formatted output: a read is small
  because formatting multiplies tiny lines (64 KiB of 2-byte lines is about 4 MiB of
  JSON records; 1 MiB reads let a flood of them hold 60-70 MB, 64 KiB ones 40 MB, at
  the same lines per second).
- If stdout is gone (EPIPE) or fails, output is counted in `lost_bytes` and dropped, so
  a dead log consumer never stalls the workers.
- Exit: `WorkerLogs.drain()` reads what the worker left in its pipes and flushes a
  trailing partial line; `close()` then closes the pipes at once. A grandchild still
  holding the pipe gets EPIPE afterwards: we do not keep reading it (treekill or the
  worker's own shutdown is what stops grandchildren).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import os
import select
import stat
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from runtime.logs.formats import (
    STDERR,
    STDOUT,
    Chunk,
    LogFormat,
    Source,
    make_formatter,
    utc_timestamp,
)
from runtime.proc.pipes import grow_pipe

__all__ = ["LogSink", "WorkerLogs"]

READ_SIZE = 64 << 10  # one os.read (small: see back-pressure above)
READ_BUDGET = 4 << 20  # bytes read per readiness callback before yielding to the loop
DRAIN_BUDGET = 64 << 20  # drain() stops here even if a grandchild keeps writing
_IOV_MAX = 512  # buffers per writev (Linux allows 1024)
LINE_FINISH_S = 1.0  # at the stop's deadline, how long the half-written line may still take


class LogSink:
    """The single writer of the master's stdout: buffered, never blocking the loop."""

    def __init__(
        self,
        fd: int,
        fmt: LogFormat,
        loop: asyncio.AbstractEventLoop,
        *,
        high_water: int = 4 << 20,
        prefix_cells: int = 0,
    ) -> None:
        self.fd = fd
        self.fmt = fmt
        self.formatter = make_formatter(self.fmt, prefix_cells)  # pretty pads to prefix_cells
        self.high_water = high_water
        self.low_water = high_water // 4
        self.paused = False
        self.tap: Callable[[Source, str, str, bytes], None] | None = None  # the log ring
        # the master's events as dicts, before rendering (runtime.logs.events): the log ring
        self.event_tap: Callable[[Mapping[str, Any]], None] | None = None
        self.lost_bytes = 0
        self.lost_lines = 0
        self._cut = False  # the head chunk was partly written: a line is half out
        self.peak_buffered = 0
        self._loop = loop
        self._chunks: deque[memoryview] = deque()  # written in order, never joined
        self._size = 0
        self._readers: set[WorkerLogs] = set()
        self._writing = False  # add_writer is armed
        self._broken = False
        self._closed = False
        self._drained: asyncio.Future[None] | None = None
        mode = os.fstat(fd).st_mode
        self._was_blocking = os.get_blocking(fd)
        self._nonblocking = stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)
        if self._nonblocking:
            os.set_blocking(fd, False)
            if stat.S_ISFIFO(mode):
                grow_pipe(fd)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop the sink and its readers run on."""
        return self._loop

    def write(self, data: Chunk) -> None:
        """Queue `data` (whole lines) and write what the kernel takes now."""
        self.writelines((data,))

    def writelines(self, pieces: Iterable[Chunk]) -> None:
        """Queue several buffers, in order, without joining them (one writev)."""
        if self._broken or self._closed:
            for piece in pieces:
                self._write_after_close(piece)
            return
        chunks = self._chunks
        for piece in pieces:
            if piece:
                view = memoryview(piece)
                chunks.append(view)
                self._size += view.nbytes
        if not self._writing:
            self._flush()
        size = self._size
        if size > self.peak_buffered:
            self.peak_buffered = size
        if size > self.high_water and not self.paused:
            self.paused = True
            for reader in self._readers:
                reader._pause_reading()

    async def aclose(self, timeout_s: float = 5.0) -> None:
        """Flush what is buffered (up to `timeout_s`), then give stdout back its flags.

        A line is never cut: one already partly written is finished (waiting at most
        LINE_FINISH_S more), the whole lines left are dropped, and how many is said on
        stderr in one line, for the platform's log of the stop.
        """
        if self._closed:
            return
        try:
            if self._size and not self._broken:
                if not self._writing:
                    self._flush()
                if self._size:
                    self._drained = self._loop.create_future()
                    try:
                        async with asyncio.timeout(timeout_s):
                            await self._drained
                    except TimeoutError:
                        self._give_up(timeout_s)
        finally:
            self._closed = True
            self._stop_writing()
            if self._nonblocking:
                with contextlib.suppress(OSError):
                    os.set_blocking(self.fd, self._was_blocking)

    def _attach(self, reader: WorkerLogs) -> None:
        self._readers.add(reader)

    def _detach(self, reader: WorkerLogs) -> None:
        self._readers.discard(reader)

    def _flush(self) -> None:
        chunks = self._chunks
        while chunks:
            try:
                if len(chunks) == 1:
                    n = os.write(self.fd, chunks[0])
                else:
                    n = os.writev(self.fd, list(itertools.islice(chunks, _IOV_MAX)))
            except BlockingIOError:
                if not self._writing:
                    self._loop.add_writer(self.fd, self._on_writable)
                    self._writing = True
                return
            except OSError as exc:
                self._break(exc)
                return
            self._size -= n
            last = 0x0A
            while n:
                head = chunks[0]
                if head.nbytes <= n:
                    n -= head.nbytes
                    last = head[-1]
                    chunks.popleft()
                else:
                    last = head[n - 1]
                    chunks[0] = head[n:]
                    n = 0
            self._cut = last != 0x0A  # stdout holds the first part of a line
        self._stop_writing()
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _on_writable(self) -> None:
        self._flush()
        if self.paused and self._size <= self.low_water:
            self.paused = False
            for reader in list(self._readers):
                reader._resume_reading()

    def _stop_writing(self) -> None:
        if self._writing:
            self._loop.remove_writer(self.fd)
            self._writing = False

    def _break(self, exc: OSError) -> None:
        """stdout failed for good: drop output from now on, and never stall the workers."""
        self._broken = True
        self._drop()
        self._stop_writing()
        if self.paused:
            self.paused = False
            for reader in list(self._readers):
                reader._resume_reading()
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        if exc.errno != errno.EPIPE:
            with contextlib.suppress(OSError, ValueError):
                print(f"runtime: stdout failed, dropping logs: {exc}", file=sys.stderr)

    def _drop(self) -> int:
        """Forget what is buffered; returns how many lines that was."""
        lines = sum(chunk.tobytes().count(b"\n") for chunk in self._chunks)
        self.lost_bytes += self._size
        self.lost_lines += lines
        self._chunks.clear()
        self._size = 0
        return lines

    def _give_up(self, timeout_s: float) -> None:
        """The stop's deadline passed: finish the line stdout holds half of, drop the rest."""
        self._stop_writing()
        cut = self._cut and not self._finish_line()
        lines = self._drop()
        self._cut = False
        note = "; 1 line was cut" if cut else ""
        with contextlib.suppress(OSError, ValueError):
            print(
                f"runtime: {lines} log lines ({self.lost_bytes} bytes) not written: stdout did "
                f"not take them within {timeout_s:g} s of the stop{note}",
                file=sys.stderr,
                flush=True,
            )

    def _finish_line(self) -> bool:
        """Write the rest of the partly written line (a bounded wait); True if it got out."""
        rest = b""
        while self._chunks and not rest.endswith(b"\n"):
            head = self._chunks.popleft().tobytes()
            end = head.find(b"\n")
            if end >= 0 and end + 1 < len(head):
                self._chunks.appendleft(memoryview(head)[end + 1 :])
                head = head[: end + 1]
            rest += head
            self._size -= len(head)
        view = memoryview(rest)
        deadline = time.monotonic() + LINE_FINISH_S
        while view and (left := deadline - time.monotonic()) > 0:
            if not select.select([], [self.fd], [], left)[1]:
                break
            try:
                view = view[os.write(self.fd, view) :]
            except BlockingIOError:
                continue
            except OSError:
                break
        self.lost_bytes += view.nbytes
        return not view

    def _write_after_close(self, data: Chunk) -> None:
        """After `aclose` stdout is blocking again: write directly, best effort (counted as
        lost if stdout is gone or was too slow to flush at the stop: never block on it)."""
        view = memoryview(data)
        if self._broken or self.lost_lines:
            self.lost_bytes += view.nbytes
            return
        try:
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError:
            self.lost_bytes += view.nbytes


class _Pipe:
    """One of a worker's two pipes and the partial line read from it."""

    __slots__ = ("fd", "next_part", "pending", "reading", "stream")

    def __init__(self, fd: int, stream: str) -> None:
        self.fd = fd
        self.stream = stream
        self.pending = b""  # bytes after the last newline, at most max_line of them
        self.next_part = 0  # > 0 while inside a line cut into parts: the next part number
        self.reading = False


class WorkerLogs:
    """Reads one worker's stdout and stderr pipes into the sink; owns (and closes) both fds."""

    def __init__(
        self,
        sink: LogSink,
        *,
        app: str,
        instance: int,
        pid: int,
        stdout_fd: int,
        stderr_fd: int,
        max_line: int = 64 * 1024,
        pending: tuple[bytes, bytes] = (b"", b""),
    ) -> None:
        if max_line < 1:
            raise ValueError("max_line must be at least 1")
        self._sink = sink
        self._loop = sink.loop
        self._source = Source(app, instance, pid)
        self.max_line = max_line
        self._pipes = (_Pipe(stdout_fd, STDOUT), _Pipe(stderr_fd, STDERR))
        for p, partial in zip(self._pipes, pending, strict=True):
            p.pending = partial  # a partial line the start-up relay read (runtime.boot.relay)
        for p in self._pipes:
            os.set_blocking(p.fd, False)
        sink._attach(self)
        if not sink.paused:
            self._resume_reading()

    @property
    def pid(self) -> int:
        """The worker's pid, as written on each line."""
        return self._source.pid

    @pid.setter
    def pid(self, pid: int) -> None:
        self._source = Source(self._source.app, self._source.instance, pid)

    def __repr__(self) -> str:
        return f"<WorkerLogs {self._source.app}#{self._source.instance} pid {self.pid}>"

    def drain(self) -> None:
        """Read everything in the pipes now, ignoring back-pressure, and flush partial lines."""
        for p in self._pipes:
            budget = DRAIN_BUDGET
            while p.fd >= 0 and budget > 0:
                got = self._read_once(p)
                if got <= 0:
                    break
                budget -= got
            self._flush_partial(p, utc_timestamp())

    def close(self) -> None:
        """Stop reading and close both pipes (call `drain()` first to keep their tail)."""
        for p in self._pipes:
            self._close_pipe(p)
        self._sink._detach(self)

    def _pause_reading(self) -> None:
        for p in self._pipes:
            if p.reading:
                self._loop.remove_reader(p.fd)
                p.reading = False

    def _resume_reading(self) -> None:
        for p in self._pipes:
            if p.fd >= 0 and not p.reading:
                self._loop.add_reader(p.fd, self._on_readable, p)
                p.reading = True

    def _on_readable(self, p: _Pipe) -> None:
        budget = READ_BUDGET
        sink = self._sink
        while p.fd >= 0 and budget > 0 and not sink.paused:
            got = self._read_once(p)
            if got <= 0:
                return
            budget -= got

    def _read_once(self, p: _Pipe) -> int:
        """Read and emit one chunk: its size, 0 if nothing is there, -1 at EOF."""
        try:
            data = os.read(p.fd, READ_SIZE)
        except BlockingIOError:
            return 0
        except OSError:
            data = b""
        if not data:
            self._flush_partial(p, utc_timestamp())
            self._close_pipe(p)
            return -1
        self._emit(p, data)
        return len(data)

    def _emit(self, p: _Pipe, data: bytes) -> None:
        ts = utc_timestamp()
        fmt = self._sink.formatter
        src = self._source
        max_line = self.max_line
        if p.pending:
            data = p.pending + data
            p.pending = b""
        out: list[Chunk] = []
        if p.next_part:  # the first line here ends a line already cut into parts
            end = data.find(b"\n")
            if end < 0:
                p.next_part, p.pending = fmt.cut(
                    out, src, p.stream, ts, data, max_line, first_part=p.next_part, last=False
                )
                self._write(out)
                return
            line = data[:end]
            fmt.cut(
                out,
                src,
                p.stream,
                ts,
                line.removesuffix(b"\r"),
                max_line,
                first_part=p.next_part,
                last=True,
            )
            p.next_part = 0
            data = data[end + 1 :]
        end = data.rfind(b"\n")
        if end >= 0:
            block = data if end == len(data) - 1 else data[: end + 1]
            fmt.lines_into(out, src, p.stream, ts, block, max_line)
            if self._sink.tap is not None:
                self._sink.tap(src, p.stream, ts, block)
            data = data[end + 1 :]
        if len(data) > max_line:
            p.next_part, data = fmt.cut(
                out, src, p.stream, ts, data, max_line, first_part=1, last=False
            )
        p.pending = data
        self._write(out)

    def _write(self, out: list[Chunk]) -> None:
        if out:
            self._sink.writelines(out)

    def _flush_partial(self, p: _Pipe, ts: str) -> None:
        """Emit the partial line of `p` as a line of its own (the worker is gone or at EOF)."""
        if not p.pending and not p.next_part:
            return
        data = p.pending.removesuffix(b"\r")
        p.pending = b""
        out: list[Chunk] = []
        fmt = self._sink.formatter
        if p.next_part:
            fmt.cut(
                out,
                self._source,
                p.stream,
                ts,
                data,
                self.max_line,
                first_part=p.next_part,
                last=True,
            )
            p.next_part = 0
        else:
            out.append(fmt.line(self._source, p.stream, ts, data))
            if self._sink.tap is not None:
                self._sink.tap(self._source, p.stream, ts, data + b"\n")
        self._write(out)

    def _close_pipe(self, p: _Pipe) -> None:
        if p.reading:
            self._loop.remove_reader(p.fd)
            p.reading = False
        if p.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(p.fd)
            p.fd = -1
