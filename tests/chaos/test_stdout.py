"""A stdout nobody reads (#13, "Prove it"): stalled for a while, then read, and dead (the
read end closed). Workers keep running, the master keeps answering `ping` and `/health`,
its memory stays bounded, and a stall loses no line.

The master's stdout is a pipe the test reads on a thread it can pause. Two workers wait
for a `go` file, then print LINES numbered lines each (far more than the pipes and the
sink's buffer hold) and touch a `done` file.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.chaos.load import children
from tests.chaos.probes import alive, health, ping, rss_bytes
from tests.integration.conftest import ROOT, free_port, write_ecosystem

LINES = 60_000  # per worker, 100 bytes each: 12 MB in all, about 20 MB of JSON
STALL_S = 3.0
# The sink buffers up to 4 MiB past its high water mark plus one 4 MiB read budget, the
# log ring holds 2 MiB: the master's RSS may grow by this much while stalled, no more.
RSS_BOUND_BYTES = 32 * 1024 * 1024

WORKER = r"""
import os, sys, time
d, i = sys.argv[1], os.environ["RUNTIME_INSTANCE"]
while not os.path.exists(os.path.join(d, "go")):
    time.sleep(0.01)
pad = "x" * 80
for n in range(int(sys.argv[2])):
    sys.stdout.write(f"w{i} {n:08d} {pad}\n")
sys.stdout.flush()
open(os.path.join(d, f"done{i}"), "w").close()
time.sleep(600)
"""


class PipedMaster:
    """A master whose stdout is a pipe read by a thread that the test pauses at will."""

    def __init__(self, eco: Path, cwd: Path, control: Path, web_port: int) -> None:
        read_fd, write_fd = os.pipe()
        self.read_fd: int | None = read_fd
        self.stderr_path = cwd / "stderr"
        with self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "runtime", str(eco), "--log-format", "json"),
                    *("--control", str(control), "--web", f"127.0.0.1:{web_port}"),
                ],
                cwd=cwd,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdout=write_fd,
                stderr=err,
            )
        os.close(write_fd)
        self.records: list[dict[str, object]] = []
        self.reading = threading.Event()
        self.reading.set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        partial = b""
        while not self._stop.is_set():
            if not self.reading.wait(0.05):
                continue
            fd = self.read_fd
            if fd is None:
                return
            try:
                chunk = os.read(fd, 1 << 20)
            except OSError:
                return
            if not chunk:
                return
            *lines, partial = (partial + chunk).split(b"\n")
            parsed = [json.loads(line) for line in lines]
            with self._lock:
                self.records.extend(parsed)

    def events(self, name: str) -> list[dict[str, object]]:
        with self._lock:
            return [r for r in self.records if r.get("event") == name]

    def messages(self) -> list[str]:
        with self._lock:
            return [str(r["message"]) for r in self.records if "event" not in r]

    def wait(self, predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
            time.sleep(0.02)

    def pause(self) -> None:
        """Stop reading; the thread's read in progress (at most 50 ms) ends first."""
        self.reading.clear()
        time.sleep(0.2)

    def close_read_end(self) -> None:
        """The consumer dies: nobody will ever read the pipe again."""
        self.pause()
        fd, self.read_fd = self.read_fd, None
        if fd is not None:
            os.close(fd)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.reading.set()
        try:
            code = self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(5)
        self._stop.set()
        self._thread.join(5)
        if self.read_fd is not None:
            os.close(self.read_fd)
            self.read_fd = None
        return code


@pytest.fixture
def piped(tmp_path: Path) -> Iterator[tuple[PipedMaster, Path, Path, int]]:
    """A running PipedMaster with both workers ready and waiting for `go`."""
    app = {
        "name": "chatty",
        "script": sys.executable,
        "args": ["-c", WORKER, str(tmp_path), str(LINES)],
        "interpreter": "none",
        "instances": 2,
        "exec_mode": "fork",
        "min_uptime": 200,
    }
    control, web = tmp_path / "c.sock", free_port()
    m = PipedMaster(write_ecosystem(tmp_path / "eco.json", [app]), tmp_path, control, web)
    try:
        m.wait(lambda: len(m.events("worker_ready")) >= 2, 20, "two workers ready")
        m.wait(lambda: health(web)[0] == 200, 10, "/health 200")
        yield m, tmp_path, control, web
    finally:
        m.stop()


def _still_serving(m: PipedMaster, control: Path, web: int, workers: list[int]) -> list[int]:
    """Checks while nobody reads: workers alive, ping and /health answered; returns RSS."""
    samples = []
    deadline = time.monotonic() + STALL_S
    while time.monotonic() < deadline:
        assert all(alive(pid) for pid in workers)
        assert ping(control)
        status, took = health(web)
        assert status == 200
        assert took < 1.0
        samples.append(rss_bytes(m.proc.pid))
        time.sleep(0.2)
    return samples


def test_stalled_stdout_loses_nothing(piped: tuple[PipedMaster, Path, Path, int]) -> None:
    """Nobody reads stdout for 3 s while workers flood it: they are held back, not killed,
    the master answers and stays bounded, and once read every line arrives, in order."""
    m, tmp, control, web = piped
    workers = children(m.proc.pid)
    assert len(workers) == 2
    base = rss_bytes(m.proc.pid)
    m.pause()
    (tmp / "go").touch()
    samples = _still_serving(m, control, web, workers)
    held_back = not (tmp / "done0").exists() or not (tmp / "done1").exists()
    m.reading.set()
    m.wait(lambda: (tmp / "done0").exists() and (tmp / "done1").exists(), 30, "both done")
    m.wait(lambda: len(m.messages()) >= 2 * LINES, 30, f"{2 * LINES} lines")
    messages = m.messages()
    print(
        f"\nstdout stalled rss_base={base} rss_max={max(samples)} lines={len(messages)}"
        f" held_back={held_back}"
    )
    assert held_back  # a slow stdout slows the workers (DESIGN: back-pressure)
    assert max(samples) - base <= RSS_BOUND_BYTES
    for i in (0, 1):
        mine = [line.split()[1] for line in messages if line.startswith(f"w{i} ")]
        assert mine == [f"{n:08d}" for n in range(LINES)]
    assert m.stop() == 0
    assert "Traceback" not in m.stderr_path.read_text()


def test_dead_stdout_stalls_nothing(piped: tuple[PipedMaster, Path, Path, int]) -> None:
    """With stdout's read end closed, workers write everything and keep running, the master
    answers `ping` and `/health`, stays bounded, and still stops cleanly."""
    m, tmp, control, web = piped
    workers = children(m.proc.pid)
    base = rss_bytes(m.proc.pid)
    m.close_read_end()
    (tmp / "go").touch()
    deadline = time.monotonic() + 20
    while not ((tmp / "done0").exists() and (tmp / "done1").exists()):
        assert time.monotonic() < deadline, "the workers were held back by a dead stdout"
        time.sleep(0.05)
    samples = _still_serving(m, control, web, workers)
    print(f"\nstdout dead rss_base={base} rss_max={max(samples)}")
    assert max(samples) - base <= RSS_BOUND_BYTES
    with contextlib.suppress(subprocess.TimeoutExpired):
        m.proc.send_signal(signal.SIGTERM)
        m.proc.wait(20)
    assert m.proc.returncode == 0
    assert "Traceback" not in m.stderr_path.read_text()
