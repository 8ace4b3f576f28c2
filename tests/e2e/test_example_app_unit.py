"""The example app (examples/heroku-app) on its own, without the runtime.

Each test starts `app.py` (or `worker.py`) as a real subprocess, either binding
`$PORT` itself or serving on a listening socket handed over as fd 3 with the
systemd protocol, waits for `READY=1` on a datagram socket the test owns, and
talks HTTP to it over loopback. Every wait has a deadline.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from tests.integration.conftest import free_port

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "heroku-app"
APP = EXAMPLE / "app.py"
WORKER = EXAMPLE / "worker.py"
START_TIMEOUT = 20.0  # loaded CI machines start Python slowly
IO_TIMEOUT = 10.0
OWN_VARS = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "PORT", "MESSAGE")


def base_env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in OWN_VARS and not k.startswith("RUNTIME_")
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass
class Notify:
    """A datagram socket the test binds; the app sends READY=1 to it."""

    address: str  # as given in NOTIFY_SOCKET (a leading '@' is abstract)
    sock: socket.socket
    received: list[bytes] = field(default_factory=list)

    def wait_for(self, state: bytes, proc: subprocess.Popen[bytes], deadline: float) -> None:
        """Wait for a datagram carrying `state` and consume it (several apps may share one)."""
        while True:
            for i, msg in enumerate(self.received):
                if state in msg.split(b"\n"):
                    del self.received[i]
                    return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"no {state!r} on NOTIFY_SOCKET in time (got {self.received})")
            exited = proc.poll() is not None  # read before recv: queued datagrams still count
            self.sock.settimeout(min(0.2, remaining))
            try:
                self.received.append(self.sock.recv(4096))
            except TimeoutError:
                if exited:
                    pytest.fail(f"process exited with {proc.returncode} before {state!r}")


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    port: int
    stdout: Path
    notify: Notify

    def log_lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.stdout.read_text().splitlines() if line]

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=IO_TIMEOUT)

    def get(self, path: str) -> tuple[int, http.client.HTTPMessage, dict[str, object]]:
        conn = self.connection()
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.headers, json.loads(resp.read())
        finally:
            conn.close()

    def wait_exit(self, timeout: float = IO_TIMEOUT) -> int:
        return self.proc.wait(timeout=timeout)


@pytest.fixture
def notify() -> Iterator[Notify]:
    """An abstract-namespace NOTIFY_SOCKET (Linux), like the runtime's."""
    address = f"@runtime-example-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + address[1:])
    yield Notify(address, sock)
    sock.close()


@pytest.fixture
def path_notify() -> Iterator[Notify]:
    """A filesystem NOTIFY_SOCKET in a short temporary directory (sun_path is 108 bytes)."""
    directory = tempfile.mkdtemp(prefix="rt-", dir="/tmp")
    address = os.path.join(directory, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    yield Notify(address, sock)
    sock.close()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    """Start app.py (or another script) with PORT or an fd-3 socket; kill leftovers at teardown."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(
        notify: Notify,
        *,
        listener: socket.socket | None = None,
        script: Path = APP,
        wait_ready: bool = True,
        **env_vars: str,
    ) -> Running:
        out = tmp_path / f"{script.stem}-{len(procs)}.out"
        env = base_env(NOTIFY_SOCKET=notify.address, **env_vars)
        with out.open("wb") as stdout:
            if listener is None:
                port = int(env.setdefault("PORT", str(free_port())))
                argv = [sys.executable, str(script)]
                proc = subprocess.Popen(argv, env=env, stdout=stdout, stderr=subprocess.STDOUT)
            else:
                port = int(listener.getsockname()[1])
                env.setdefault("LISTEN_FDS", "1")
                fd = listener.fileno()

                def onto_fd3() -> None:  # runs in the child between fork and exec
                    if fd == 3:
                        os.set_inheritable(3, True)
                    else:
                        os.dup2(fd, 3, inheritable=True)

                # LISTEN_PID must be the app's own pid: the shell knows it ($$) and
                # `exec` keeps it. close_fds=False keeps the dup'ed fd 3 (every fd
                # Python opens is close-on-exec already).
                argv = ["/bin/sh", "-c", 'LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"']
                argv += [sys.executable, str(script)]
                proc = subprocess.Popen(
                    argv,
                    env=env,
                    stdout=stdout,
                    stderr=subprocess.STDOUT,
                    close_fds=False,
                    preexec_fn=onto_fd3,
                )
        procs.append(proc)
        running = Running(proc, port, out, notify)
        if wait_ready:
            notify.wait_for(b"READY=1", proc, time.monotonic() + START_TIMEOUT)
        return running

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=IO_TIMEOUT)


def read_response(
    sock: socket.socket, pending: bytearray | None = None, *, head_only: bool = False
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response from a raw socket (Content-Length framed).

    `pending` carries bytes already received past the previous response (pipelining)."""
    buf = pending if pending is not None else bytearray()
    sock.settimeout(IO_TIMEOUT)

    def fill() -> None:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a full response: {bytes(buf)!r}")
        buf.extend(chunk)

    while b"\r\n\r\n" not in buf:
        fill()
    end = buf.index(b"\r\n\r\n")
    status_line, *header_lines = buf[:end].decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = 0 if head_only else int(headers["content-length"])
    while len(buf) < end + 4 + length:
        fill()
    body = bytes(buf[end + 4 : end + 4 + length])
    del buf[: end + 4 + length]
    return int(status_line.split(" ")[1]), headers, body


def closed_by_peer(sock: socket.socket) -> bool:
    sock.settimeout(IO_TIMEOUT)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


# --- how the app gets its socket ---------------------------------------------------------


def test_binds_port_itself_and_notifies_a_path_socket(spawn, path_notify):
    """Without LISTEN_FDS it binds 127.0.0.1:$PORT, says so, and sends READY=1 to a path socket."""
    app = spawn(path_notify)
    status, _, body = app.get("/health")
    assert status == 200
    assert body == {"ok": True}
    first = app.log_lines()[0]
    assert first["message"] == f"listening on 127.0.0.1:{app.port}"
    assert first["level"] == "info"


def test_serves_on_the_inherited_fd3_socket(spawn, notify):
    """With LISTEN_FDS=1 and LISTEN_PID=its pid it serves on fd 3 and does not bind $PORT."""
    unused_port = free_port()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        app = spawn(notify, listener=listener, PORT=str(unused_port))
        status, _, body = app.get("/")
    assert status == 200
    assert body["pid"] == app.proc.pid
    assert app.log_lines()[0]["message"] == "listening on fd 3"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", unused_port), timeout=IO_TIMEOUT).close()


def test_ignores_listen_fds_meant_for_another_pid(spawn, notify):
    """LISTEN_FDS with a LISTEN_PID that is not its own is ignored: it binds $PORT instead."""
    app = spawn(notify, LISTEN_FDS="1", LISTEN_PID="1")
    assert app.get("/health")[0] == 200
    assert app.log_lines()[0]["message"] == f"listening on 127.0.0.1:{app.port}"


def test_instances_under_the_runtime_share_a_port_it_binds_itself(spawn, notify):
    """With $RUNTIME_APP set, two instances bind one $PORT (SO_REUSEPORT); without it, the
    second one exits 1."""
    port = str(free_port())
    first = spawn(notify, PORT=port, RUNTIME_APP="web", RUNTIME_INSTANCE="0")
    second = spawn(notify, PORT=port, RUNTIME_APP="web", RUNTIME_INSTANCE="1")
    assert first.get("/health")[0] == 200
    assert second.proc.poll() is None
    first.proc.send_signal(signal.SIGTERM)
    assert first.wait_exit() == 0
    assert second.get("/")[2]["pid"] == second.proc.pid  # the port is still served

    alone = spawn(notify, PORT=str(free_port()))
    clash = spawn(notify, wait_ready=False, PORT=str(alone.port))
    assert clash.wait_exit() == 1
    assert clash.log_lines()[-1]["message"] == "cannot listen"


# --- routes ------------------------------------------------------------------------------


def test_index_reports_message_app_instance_and_pid(spawn, notify):
    """GET / returns $MESSAGE, $RUNTIME_APP, int($RUNTIME_INSTANCE) and the pid as JSON."""
    app = spawn(notify, MESSAGE="hello from tests", RUNTIME_APP="web", RUNTIME_INSTANCE="3")
    status, headers, body = app.get("/")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert body == {"message": "hello from tests", "app": "web", "instance": 3, "pid": app.proc.pid}


def test_index_has_a_default_message(spawn, notify):
    """Without $MESSAGE the index still answers with a non-empty default message."""
    body = spawn(notify).get("/")[2]
    assert isinstance(body["message"], str)
    assert body["message"]
    assert body["instance"] == 0


def test_unknown_path_is_404_and_other_methods_405(spawn, notify):
    """An unknown path answers 404 JSON and a POST to a known path answers 405."""
    app = spawn(notify)
    status, _, body = app.get("/no/such/path")
    assert status == 404
    assert body["path"] == "/no/such/path"
    conn = app.connection()
    conn.request("POST", "/", body=b"x=1")
    resp = conn.getresponse()
    assert resp.status == 405
    assert resp.headers["Allow"] == "GET, HEAD"
    resp.read()
    conn.close()


def test_keep_alive_and_pipelining_on_one_connection(spawn, notify):
    """Several requests, sent one after another or pipelined, share one TCP connection."""
    app = spawn(notify)
    conn = app.connection()
    conn.request("GET", "/health")
    resp = conn.getresponse()
    assert resp.headers["Connection"] == "keep-alive"
    assert int(resp.headers["Content-Length"]) == len(resp.read())
    first_sock = conn.sock
    conn.request("GET", "/")
    resp = conn.getresponse()
    assert resp.status == 200
    resp.read()
    assert conn.sock is first_sock
    conn.close()

    with socket.create_connection(("127.0.0.1", app.port), timeout=IO_TIMEOUT) as raw:
        raw.sendall(
            b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n"
            b"HEAD / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        pending = bytearray()
        assert read_response(raw, pending)[0] == 200
        assert read_response(raw, pending)[0] == 404
        status, headers, _ = read_response(raw, pending, head_only=True)
        assert status == 200
        assert int(headers["content-length"]) > 0
        assert headers["connection"] == "close"
        assert not pending  # no body for HEAD
        assert closed_by_peer(raw)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host
        b"GET / HTTP/1.1\r\nHost: t\r\nbad header line\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    ],
    ids=["garbage", "no-host", "bad-header", "bad-length", "two-lengths"],
)
def test_malformed_requests_get_400_and_a_closed_connection(spawn, notify, request_bytes):
    """A malformed request gets a 400 JSON answer, then the server closes the connection."""
    app = spawn(notify)
    with socket.create_connection(("127.0.0.1", app.port), timeout=IO_TIMEOUT) as raw:
        raw.sendall(request_bytes)
        status, headers, body = read_response(raw)
        assert status == 400
        assert headers["connection"] == "close"
        assert "error" in json.loads(body)
        assert closed_by_peer(raw)
    assert app.get("/health")[0] == 200  # and the server is still fine


# --- crash, leak, graceful stop ------------------------------------------------------------


def test_leak_grows_rss_and_reports_the_total(spawn, notify):
    """Each GET /leak?mb=N keeps N more MiB referenced, visible in the process's RSS."""
    app = spawn(notify)
    rss_before = psutil.Process(app.proc.pid).memory_info().rss
    assert app.get("/leak?mb=30")[2]["leaked_mb"] == 30
    status, _, body = app.get("/leak?mb=30")
    assert status == 200
    assert body["leaked_mb"] == 60
    grown = psutil.Process(app.proc.pid).memory_info().rss - rss_before
    assert grown >= 55 * 2**20, f"RSS grew by {grown / 2**20:.1f} MiB only"
    assert app.get("/leak")[2]["leaked_mb"] == 80  # default step is 20
    assert app.get("/leak?mb=zero")[0] == 400


def test_crash_answers_then_exits_with_code_1(spawn, notify):
    """GET /crash answers 200 with the pid, then the process exits with code 1."""
    app = spawn(notify)
    status, _, body = app.get("/crash")
    assert status == 200
    assert body == {"crashing": app.proc.pid}
    assert app.wait_exit() == 1


def test_sigterm_finishes_the_in_flight_request_then_exits_0(spawn, notify):
    """On SIGTERM (sent twice) it stops accepting, completes the in-flight request, exits 0."""
    app = spawn(notify)
    with socket.create_connection(("127.0.0.1", app.port), timeout=IO_TIMEOUT) as raw:
        raw.sendall(b"GET /slow?ms=1500 HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.5)  # the request is being served (the app is ready and on loopback)
        sent_at = time.monotonic()
        app.proc.send_signal(signal.SIGTERM)
        time.sleep(0.1)
        app.proc.send_signal(signal.SIGTERM)  # the platform's and the master's: routine
        status, headers, body = read_response(raw)
        assert status == 200
        assert json.loads(body)["slept_ms"] == 1500
        assert headers["connection"] == "close"
        assert closed_by_peer(raw)
    assert app.wait_exit() == 0
    assert time.monotonic() - sent_at >= 0.5  # it waited for the request
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", app.port), timeout=IO_TIMEOUT).close()
    notify.wait_for(b"STOPPING=1", app.proc, time.monotonic() + IO_TIMEOUT)
    messages = [line["message"] for line in app.log_lines()]
    assert "shutting down" in messages
    assert messages[-1] == "stopped"


def test_sigterm_with_idle_keep_alive_connections_exits_promptly(spawn, notify):
    """An idle keep-alive connection does not hold up a SIGTERM: exit 0 well within the grace."""
    app = spawn(notify)
    conn = app.connection()
    conn.request("GET", "/health")
    conn.getresponse().read()
    started = time.monotonic()
    app.proc.send_signal(signal.SIGTERM)
    assert app.wait_exit() == 0
    assert time.monotonic() - started < 3.0
    conn.close()


def signal_masks(pid: int) -> dict[str, set[int]]:
    """The SigBlk, SigIgn and SigCgt sets of /proc/PID/status, as signal numbers."""
    masks: dict[str, set[int]] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("SigBlk", "SigIgn", "SigCgt"):
            bits = int(value.strip(), 16)
            masks[key] = {n for n in range(1, 65) if bits >> (n - 1) & 1}
    return masks


def test_worker_heartbeats_then_stops_on_sigterm(spawn, notify):
    """worker.py prints JSON heartbeats carrying $MESSAGE and exits 0 promptly on SIGTERMs."""
    worker = spawn(
        notify, script=WORKER, wait_ready=False, MESSAGE="beat", HEARTBEAT_INTERVAL="0.1"
    )
    deadline = time.monotonic() + START_TIMEOUT
    while sum(line.get("message") == "heartbeat" for line in worker.log_lines()) < 3:
        assert time.monotonic() < deadline, "fewer than 3 heartbeats in time"
        assert worker.proc.poll() is None
        time.sleep(0.05)
    beats = [line for line in worker.log_lines() if line.get("message") == "heartbeat"]
    assert [b["beat"] for b in beats[:3]] == [1, 2, 3]
    assert beats[0]["note"] == "beat"
    # No handler for SIGTERM: it is blocked and waited for. A Python handler that sets a
    # threading.Event can deadlock inside the Event's own wait() (seen once in CI as a
    # worker SIGKILLed at its kill_timeout). /proc shows no SigBlk here: sigtimedwait
    # unblocks what it waits for while it waits.
    masks = signal_masks(worker.proc.pid)
    assert signal.SIGTERM not in masks["SigCgt"] | masks["SigIgn"], masks
    started = time.monotonic()
    for _ in range(3):  # repeated signals while it stops must not change the exit code
        worker.proc.send_signal(signal.SIGTERM)
        time.sleep(0.02)
    assert worker.wait_exit() == 0
    assert time.monotonic() - started < 2.0
    assert worker.log_lines()[-1]["message"] == "worker stopping"
