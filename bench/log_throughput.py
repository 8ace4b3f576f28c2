"""Log throughput: 100-byte lines from a worker's pipe to the master's stdout, in lines/s.

    python bench/log_throughput.py [--lines 2000000] [--format json] [--repeat 3]
    python bench/log_throughput.py --via-master      # also through `python -m runtime`

Three set-ups feed the same counting consumer (this file, `--consume`) the same data
file of numbered 100-byte lines (`%010d` + padding), produced at C speed by `cat`:

- `ceiling`: `cat data | consumer`: the bare pipe, the best any log pipeline can do;
- `in-process` (default): `cat data` -> pipe -> `WorkerLogs` -> `LogSink` -> pipe ->
  consumer, driven on uvloop (the master's loop) in this process (the master's code path, no CLI);
- `via-master` (`--via-master`): `python -m runtime eco.json --log-format json` with
  its stdout piped to the consumer (one app that execs `cat data`, no autorestart),
  so the figure includes the master's start-up and shutdown.

The consumer checks every record without a per-line Python loop: worker lines have a
constant length, so each newline must sit at a multiple of it, every line's last four
digits are compared with a strided slice, and each block's first number in full. Master
event lines (`"event":`) are skipped. So a lost, split, merged, reordered or repeated
line fails the run. All pipes get a 1 MiB buffer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runtime.logs.formats import LogFormat  # noqa: E402  (light: the consumer imports it too)

DIGITS = 10
LOW_DIGITS = 4
PERIOD = 10**LOW_DIGITS
CHUNK = 1 << 20
DEADLINE_S = 300.0


def make_data(path: Path, lines: int, width: int) -> None:
    """Write `lines` lines of `width` bytes: a 10-digit number, a space, padding, newline."""
    pad = b" " + b"x" * (width - DIGITS - 2) + b"\n"
    with path.open("wb") as f:
        for start in range(0, lines, 100_000):
            end = min(lines, start + 100_000)
            f.write(b"".join(b"%010d" % i + pad for i in range(start, end)))


# --- the consumer (a separate process reading stdin) -------------------------------

_EVENT_LINE = re.compile(rb'[^\n]*"event":[^\n]*\n')


class Checker:
    """Verifies a stream of constant-length numbered lines, block by block, at C speed."""

    def __init__(self, expect: int, marker: bytes) -> None:
        self.expect = expect
        self.marker = marker  # what comes right before the number in each line
        self.size = 0  # line length, learnt from the first worker line
        self.offset = 0  # where the number starts in a line
        self.next = 0  # the number the next line must carry
        self.carry = b""
        self.bytes = 0
        self.error: str | None = None
        self.patterns: list[bytes] = []

    def _learn(self, data: bytes) -> bool:
        end = data.find(b"\n")
        if end < 0:
            return False
        at = data.find(self.marker)
        if at < 0 or at > end:
            self.error = f"first line has no number: {data[:end][:200]!r}"
            return False
        self.size = end + 1
        self.offset = at + len(self.marker)
        per_block = (CHUNK + self.size * 2) // self.size + 2
        self.patterns = [
            bytes(48 + (n // 10**d) % 10 for n in range(PERIOD + per_block))
            for d in range(LOW_DIGITS)
        ]
        return True

    def feed(self, chunk: bytes) -> None:
        """Check every whole line in `carry + chunk`; keep the rest for next time."""
        self.bytes += len(chunk)
        data = self.carry + chunk if self.carry else chunk
        if b'"event":' in data:
            data = _EVENT_LINE.sub(b"", data)  # master events: rare, not counted
        if not self.size and not self._learn(data):
            self.carry = data
            return
        size = self.size
        count = len(data) // size
        block = data[: count * size]
        self.carry = data[count * size :]
        if not count or self.error:
            return
        if block[size - 1 :: size] != b"\n" * count:
            self.error = f"line near #{self.next} is not {size} bytes (split or merged)"
            return
        first = block[self.offset : self.offset + DIGITS]
        if first != b"%010d" % self.next:
            self.error = f"expected line #{self.next}, got {first!r}"
            return
        start = self.next % PERIOD
        for d, pattern in enumerate(self.patterns):
            column = block[self.offset + DIGITS - 1 - d :: size]
            if column != pattern[start : start + count]:
                self.error = f"a line lost, repeated or out of order after #{self.next}"
                return
        self.next += count

    def result(self) -> dict[str, Any]:
        error = self.error
        if error is None and self.carry:
            error = f"{len(self.carry)} bytes of a partial last line"
        if error is None and self.next != self.expect:
            error = f"got {self.next} lines, expected {self.expect}"
        return {"lines": self.next, "bytes": self.bytes, "ok": error is None, "error": error}


def consume(expect: int, marker: bytes) -> None:
    """Read stdin to EOF through a `Checker`; print its verdict as JSON."""
    checker = Checker(expect, marker)
    read = os.read
    sys.stdout.buffer.write(b"ready\n")  # the clock starts once we are reading
    sys.stdout.flush()
    first_at = last_at = 0.0
    while chunk := read(0, CHUNK):
        if not checker.next and not first_at and b'"event":' not in chunk[:200]:
            first_at = time.perf_counter()  # the first worker line has arrived
        checker.feed(chunk)
        last_at = time.perf_counter()
    result = checker.result()
    result["streaming_s"] = last_at - first_at if first_at else 0.0
    sys.stdout.buffer.write(json.dumps(result).encode() + b"\n")


# --- the set-ups -------------------------------------------------------------------


def make_pipe() -> tuple[int, int]:
    """`runtime.proc.pipes.make_pipe` (1 MiB buffer), imported late to keep the consumer light."""
    from runtime.proc.pipes import make_pipe as _make_pipe

    return _make_pipe()


def _consumer(read_fd: int, expect: int, marker: bytes) -> subprocess.Popen[bytes]:
    argv = [sys.executable, __file__, "--consume", "--lines", str(expect)]
    argv += ["--marker", marker.decode()]
    consumer = subprocess.Popen(argv, stdin=read_fd, stdout=subprocess.PIPE)
    assert consumer.stdout is not None
    if consumer.stdout.readline() != b"ready\n":
        raise RuntimeError("the consumer did not start")
    return consumer


def _verdict(consumer: subprocess.Popen[bytes], started: float) -> dict[str, Any]:
    out, _ = consumer.communicate(timeout=DEADLINE_S)
    elapsed = time.perf_counter() - started
    verdict: dict[str, Any] = json.loads(out)
    verdict["seconds"] = elapsed
    verdict["lines_per_s"] = verdict["lines"] / elapsed
    # From the first worker line to the last: the master's steady state, without its
    # own start-up and exit (measured by bench/startup.py).
    streaming = verdict.get("streaming_s") or 0.0
    verdict["streaming_lines_per_s"] = verdict["lines"] / streaming if streaming > 0 else 0.0
    return verdict


def run_ceiling(data: Path, lines: int) -> dict[str, Any]:
    """`cat data | consumer`: the same bytes with no log pipeline in between."""
    read_fd, write_fd = make_pipe()
    consumer = _consumer(read_fd, lines, b"")
    os.close(read_fd)
    started = time.perf_counter()
    subprocess.run(["cat", str(data)], stdout=write_fd, check=True, timeout=DEADLINE_S)
    os.close(write_fd)
    return _verdict(consumer, started)


def _marker(fmt: LogFormat) -> bytes:
    return b"" if fmt is LogFormat.RAW else b'"message":"'


async def _pipeline(fmt: LogFormat, worker_pid: int, fds: tuple[int, int, int]) -> None:
    from runtime.logs.sink import LogSink, WorkerLogs

    out_fd, stdout_fd, stderr_fd = fds
    sink = LogSink(out_fd, fmt, asyncio.get_running_loop())
    logs = WorkerLogs(
        sink, app="bench", instance=0, pid=worker_pid, stdout_fd=stdout_fd, stderr_fd=stderr_fd
    )
    async with asyncio.timeout(DEADLINE_S):
        while any(p.fd >= 0 for p in logs._pipes):  # both pipes closed: the worker's EOF
            await asyncio.sleep(0.005)
    logs.drain()
    logs.close()
    await sink.aclose(timeout_s=DEADLINE_S)


def run_in_process(data: Path, lines: int, fmt: LogFormat) -> dict[str, Any]:
    """`cat data` -> WorkerLogs -> LogSink -> consumer, on an asyncio loop in this process."""

    read_fd, write_fd = make_pipe()
    consumer = _consumer(read_fd, lines, _marker(fmt))
    os.close(read_fd)
    src_r, src_w = make_pipe()
    err_r, err_w = make_pipe()
    started = time.perf_counter()
    cpu_started = time.process_time()
    worker = subprocess.Popen(["cat", str(data)], stdout=src_w, stderr=err_w)
    os.close(src_w)
    os.close(err_w)
    import uvloop  # the master's loop

    uvloop.run(_pipeline(fmt, worker.pid, (write_fd, src_r, err_r)))
    cpu_s = time.process_time() - cpu_started
    os.close(write_fd)
    worker.wait(timeout=DEADLINE_S)
    verdict = _verdict(consumer, started)
    verdict["master_cpu_s"] = cpu_s
    return verdict


def run_via_master(data: Path, lines: int, fmt: LogFormat, workdir: Path) -> dict[str, Any]:
    """`python -m runtime eco.json --log-format FMT` (one `cat data` app, no autorestart)."""
    script = workdir / "cat.sh"
    script.write_text(f"#!/bin/sh\nexec cat '{data}'\n")
    script.chmod(0o755)
    eco = workdir / "eco.json"
    app = {"name": "bench", "script": str(script), "autorestart": False}
    eco.write_bytes(json.dumps({"apps": [app]}).encode())
    read_fd, write_fd = make_pipe()
    consumer = _consumer(read_fd, lines, _marker(fmt))
    os.close(read_fd)
    argv = [sys.executable, "-m", "runtime", str(eco), "--log-format", fmt.value]
    started = time.perf_counter()
    subprocess.run(argv, stdout=write_fd, cwd=ROOT, check=False, timeout=DEADLINE_S)
    os.close(write_fd)
    return _verdict(consumer, started)


def _best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    bad = [r for r in runs if not r["ok"]]
    return (
        bad[0] if bad else max(runs, key=lambda r: r["streaming_lines_per_s"] or r["lines_per_s"])
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--width", type=int, default=100, help="bytes per line, newline included")
    parser.add_argument("--format", default="json", choices=[f.value for f in LogFormat])
    parser.add_argument("--repeat", type=int, default=3, help="runs per set-up; the best counts")
    parser.add_argument("--via-master", action="store_true", help="also run python -m runtime")
    parser.add_argument("--consume", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--marker", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.consume:
        consume(args.lines, args.marker.encode())
        return 0
    if args.format == "pretty":
        parser.error("pretty lines vary in length; use json, pm2 or raw")
    fmt = LogFormat(args.format)
    workdir = Path(tempfile.mkdtemp(prefix="log-bench-"))
    try:
        data = workdir / "lines.txt"
        make_data(data, args.lines, args.width)
        setups: dict[str, Any] = {
            "ceiling (cat | consumer)": lambda: run_ceiling(data, args.lines),
            f"in-process WorkerLogs -> LogSink({fmt})": lambda: run_in_process(
                data, args.lines, fmt
            ),
        }
        if args.via_master:
            setups[f"python -m runtime --log-format {fmt}"] = lambda: run_via_master(
                data, args.lines, fmt, workdir
            )
        print(f"{args.lines:,} lines of {args.width} bytes, best of {args.repeat}")
        results = {name: _best([run() for _ in range(args.repeat)]) for name, run in setups.items()}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ceiling = next(iter(results.values()))["lines_per_s"]
    failed = False
    for name, r in results.items():
        status = "ok: all lines once, in order, whole" if r["ok"] else f"FAILED: {r['error']}"
        cpu = r.get("master_cpu_s")
        per_cpu = f"  master: {r['lines'] / cpu:>10,.0f} lines per CPU-s" if cpu else ""
        stream = r.get("streaming_lines_per_s") or 0.0
        print(
            f"{name:42} {r['lines_per_s']:>10,.0f} lines/s  {r['seconds']:5.2f} s  "
            f"{r['lines_per_s'] / ceiling:6.1%} of ceiling{per_cpu}  {status}\n"
            f"{'':42} {stream:>10,.0f} lines/s first line to last "
            f"({stream / ceiling:.1%} of the ceiling's end-to-end rate)"
        )
        failed |= not r["ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
