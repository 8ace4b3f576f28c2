"""The control socket's bounds and its client's errors (#13, faults 6, 8 and 11)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from runtime.control.server import REQUEST_TIMEOUT_S
from tests.integration.conftest import ROOT, Master, py, write_ecosystem

SLEEPER = "import time\nprint('up', flush=True)\nwhile True: time.sleep(1)"
# 12,000 lines of 150 bytes: a 10,000-line reply is about 2.5 MB of JSON
WIDE_LINES = "import sys, time\nfor i in range(12000):\n    sys.stdout.write('%06d ' % i + 'w' * 143 + '\\n')\nsys.stdout.flush()\nprint('done', flush=True)\nwhile True: time.sleep(1)"


def cli(ctl: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime", *args, "--control", str(ctl)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )


def start(
    run_master: Callable[..., Master], tmp_path: Path, apps: list[dict[str, Any]], wait: int = 1
) -> tuple[Master, Path]:
    ctl = tmp_path / "ctl.sock"
    eco = write_ecosystem(tmp_path / "eco.json", apps)
    master = run_master(str(eco), "--control", str(ctl))
    master.wait_event("worker_ready", count=wait)
    return master, ctl


def test_a_long_logs_reply_is_streamed_line_by_line(
    run_master: Callable[..., Master], tmp_path: Path
) -> None:
    """`logs --lines 10000` of wide lines (megabytes of JSON) prints every line, exit 0."""
    master, ctl = start(run_master, tmp_path, [{"name": "wide", **py(WIDE_LINES)}])
    master.wait_for(lambda: any(r.get("message") == "done" for r in master.lines("wide")))
    proc = cli(ctl, "logs", "wide", "--lines", "10000", "--raw")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    out = proc.stdout.splitlines()
    assert len(out) == 10000
    assert out[-1] == "done"
    assert out[-2].startswith("011999 ")
    records = [
        json.loads(x)
        for x in cli(ctl, "logs", "wide", "--lines", "3", "--json").stdout.splitlines()
    ]
    assert [r["message"][:6] for r in records] == ["011998", "011999", "done"]


@contextmanager
def fake_runtime(path: Path, reply: bytes) -> Iterator[None]:
    """A Unix socket that answers any request with `reply`, then closes."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(8)
    server.settimeout(10)

    def serve() -> None:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn, contextlib.suppress(OSError):  # the client may leave before the end
            conn.recv(65536)
            conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.close()
        thread.join(10)


@pytest.mark.parametrize(
    "reply",
    [
        b"{not json\n",
        b"[1, 2]\n",
        b'{"ok": true, "result": "' + b"x" * (2 << 20) + b'"}\n',
        b"\xff\xfe\n",
        b"[" * 100_000 + b"\n",
    ],
    ids=["malformed", "not-an-object", "over-1-MiB", "not-utf-8", "deep"],
)
@pytest.mark.parametrize("verb", [["list"], ["logs", "--lines", "5"]])
def test_a_bad_reply_is_one_line_not_a_traceback(
    tmp_path: Path, reply: bytes, verb: list[str]
) -> None:
    """A reply the client cannot read (malformed, over 1 MiB...) is one line on stderr, exit 1."""
    ctl = tmp_path / "fake.sock"
    with fake_runtime(ctl, reply):
        proc = cli(ctl, *verb)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("runtime: ")


def test_a_half_sent_request_is_timed_out(
    run_master: Callable[..., Master], tmp_path: Path
) -> None:
    """A request that never ends its line is dropped after a few seconds; the master serves on."""
    _master, ctl = start(run_master, tmp_path, [{"name": "w", **py(SLEEPER)}])
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(ctl))
        sock.sendall(b'{"v": 1, "cmd": "li')
        sock.settimeout(REQUEST_TIMEOUT_S + 5)
        started = time.monotonic()
        assert sock.recv(1) == b""
        assert time.monotonic() - started < REQUEST_TIMEOUT_S + 2
    assert cli(ctl, "ping").returncode == 0


def test_shutdown_with_a_follower_attached_prints_no_traceback(
    run_master: Callable[..., Master], tmp_path: Path
) -> None:
    """A `logs -f` client still attached at SIGTERM: the master exits 0 with nothing on stderr."""
    master, ctl = start(run_master, tmp_path, [{"name": "w", **py(SLEEPER)}])
    follow = subprocess.Popen(
        [sys.executable, "-m", "runtime", "logs", "-f", "--control", str(ctl)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    try:
        assert follow.stdout is not None
        assert b"up" in follow.stdout.readline()
        master.signal(signal.SIGTERM)
        assert master.wait_exit() == 0
        assert master.stderr() == ""
        assert follow.wait(10) == 0
    finally:
        if follow.poll() is None:
            follow.kill()
        follow.communicate(timeout=10)


@contextmanager
def closing_runtime(path: Path, reply: bytes = b"") -> Iterator[None]:
    """A Unix socket that writes `reply` to each connection and closes it without reading."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(64)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn, contextlib.suppress(OSError):
                conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)
        server.close()


@pytest.mark.parametrize("reply", [b"", b'{"ok": false, "error": "permission denied: uid 1"}\n'])
def test_a_connection_closed_by_the_runtime_is_an_error_not_exit_0(
    tmp_path: Path, reply: bytes
) -> None:
    """The runtime closing the connection before reading the request is exit 1 with one line,
    every time (a broken pipe on the socket used to pass for `| head` and exit 0)."""
    ctl = tmp_path / "closing.sock"
    big = "x" * 100_000  # a large request: sendall meets the close
    with closing_runtime(ctl, reply):
        for _ in range(10):
            proc = cli(ctl, "stop", big)
            assert proc.returncode == 1, proc.stderr
            assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
            if reply:
                assert proc.stderr == "runtime: permission denied: uid 1\n"


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv"
)
def test_another_uid_is_refused_with_exit_1_every_time(
    run_master: Callable[..., Master], tmp_path: Path
) -> None:
    """A client of another uid (nobody) gets `permission denied`, exit 1, on every try."""
    _master, ctl = start(run_master, tmp_path, [{"name": "w", **py(SLEEPER)}])
    os.chmod(tmp_path, 0o755)
    os.chmod(ctl, 0o777)  # the file mode lets nobody connect; SO_PEERCRED refuses it
    command = ["setpriv", "--reuid=nobody", "--regid=65534", "--clear-groups"]
    command += [sys.executable, "-m", "runtime", "stop", "all", "--control", str(ctl)]
    for _ in range(10):
        proc = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=30,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
        )
        assert proc.returncode == 1, proc.stderr
        assert "permission denied" in proc.stderr
