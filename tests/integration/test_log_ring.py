"""The log ring: bounded in memory whatever the line size, and fast to tail (#13, fault 6)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import tracemalloc

from runtime.logs.formats import LogFormat, Source
from runtime.logs.ring import DEFAULT_MAX_BYTES, MAX_TAIL_LINES, LogRing
from runtime.logs.sink import LogSink, WorkerLogs

TINY_LINES = "import sys, time\nw = sys.stdout.write\nf = sys.stdout.flush\nwhile True:\n    w('x\\n'); f(); time.sleep(0.0005)"
# long enough for the flood to pass 3 x the ring's blocks (about 6 s on an idle 2-core host)
FLOOD_LIMIT_S = 30.0
WORKERS = 4


def flood_ring(ring: LogRing, enough: int, limit_s: float) -> int:
    """Four real workers print 2-byte lines through a LogSink (to /dev/null) whose tap is `ring`,
    until the tap has seen `enough` blocks or `limit_s` has passed; returns how many it saw."""
    procs, pipes = [], []
    for _ in range(WORKERS):
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        procs.append(
            subprocess.Popen([sys.executable, "-c", TINY_LINES], stdout=out_w, stderr=err_w)
        )
        os.close(out_w)
        os.close(err_w)
        pipes.append((out_r, err_r))
    added = 0

    def counting(src: Source, stream: str, ts: str, data: bytes) -> None:
        nonlocal added
        added += 1
        ring.add(src, stream, ts, data)

    async def main() -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        sink = LogSink(devnull, LogFormat.JSON, asyncio.get_running_loop())
        sink.tap = counting
        readers = [
            WorkerLogs(sink, app="w", instance=i, pid=p.pid, stdout_fd=out, stderr_fd=err)
            for i, (p, (out, err)) in enumerate(zip(procs, pipes, strict=True))
        ]
        deadline = time.monotonic() + limit_s
        try:
            while added < enough and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
        finally:
            for reader in readers:
                reader.close()
            await sink.aclose()
            os.close(devnull)

    try:
        asyncio.run(main())
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)
    return added


def test_a_flood_of_tiny_lines_keeps_the_ring_within_its_bound() -> None:
    """Four workers printing 2-byte lines: the ring's memory stays near its 2 MiB bound."""
    ring = LogRing()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        blocks = flood_ring(ring, 3 * ring.max_blocks, FLOOD_LIMIT_S)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert blocks > 2 * ring.max_blocks, f"only {blocks} blocks: the flood did not fill the ring"
    assert len(ring) <= ring.max_blocks
    assert held < DEFAULT_MAX_BYTES * 3 // 2, f"the ring holds {held / 2**20:.1f} MiB"


def test_tail_is_proportional_to_the_lines_asked_for() -> None:
    """A full ring of many-line blocks: a tail of a million lines is capped at MAX_TAIL_LINES
    and, like a tail of 10,000, takes well under 100 ms (it used to block the loop for seconds)."""
    ring = LogRing()
    src = Source("w", 0, 1)
    n = 0
    while len(ring) < 3000 or ring.tail(1)[0]["message"] != f"line {n - 1}":
        ring.add(
            src,
            "stdout",
            "2026-01-01T00:00:00.000Z",
            b"".join(b"line %d\n" % (n + k) for k in range(25)),
        )
        n += 25
    for asked in (10_000, 1_000_000):
        started = time.monotonic()
        out = ring.tail(asked)
        took = time.monotonic() - started
        assert len(out) == MAX_TAIL_LINES
        assert [r["message"] for r in out[-2:]] == [f"line {n - 2}", f"line {n - 1}"]
        assert took < 0.1, f"tail({asked}) took {took * 1000:.0f} ms"
    assert [r["message"] for r in ring.tail(3)] == [f"line {n - k}" for k in (3, 2, 1)]
    assert ring.tail(0) == []
