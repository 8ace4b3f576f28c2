"""A minimal master for the preload tests: pre-bound listeners at fd 3.., app instances, probes.

It does for an unmodified app what the runtime's master does in cluster mode (bind the
listeners first, place them at fds 3.. of each worker, set RUNTIME_PORTS and the preload
variables) without importing `runtime`, whose modules are being moved.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRELOAD = ROOT / "runtime" / "preload"
NODE_PRELOAD = PRELOAD / "node.cjs"
PYTHON_PRELOAD = PRELOAD / "python"
APPS = ROOT / "tests" / "apps" / "unmodified"

BACKLOG = 2048  # the runtime's default listen backlog
FIRST_FD = 3  # LISTEN_FDS start here
START_TIMEOUT_S = 40.0  # a loaded 2-core machine can take seconds to import Django or aiohttp
REQUEST_TIMEOUT_S = 5.0
EXIT_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
SPREAD_REQUESTS = 20
SPREAD_MIN_EACH = 2  # of 20 hashed connections; fewer by chance: p < 1e-4 per batch

# variables of the runner's own environment that would change what the app does
STRIPPED_ENV = ("NODE_OPTIONS", "PYTHONPATH", "RUNTIME_PORTS", "LISTEN_FDS", "LISTEN_PID")


def reuseport_listener(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening SO_REUSEPORT socket, bound as the runtime binds one slot's listener."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    return sock


def _place_fds(fds: Sequence[int]) -> None:
    """In the child: put `fds` at 3, 4, ..., inheritable (copied out of the way first)."""
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 64) for fd in fds]
    for offset, fd in enumerate(high):
        os.dup2(fd, FIRST_FD + offset)


@dataclass
class Instance:
    """One started app process (its own session) and the file its output goes to."""

    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def preload_lines(self) -> list[str]:
        return [line for line in self.output().splitlines() if "runtime preload:" in line]

    def wait_line(self, marker: str) -> str:
        """The first output line containing `marker`, waiting for it while the process runs."""
        deadline = time.monotonic() + EXIT_TIMEOUT_S
        while time.monotonic() < deadline:
            for line in self.output().splitlines():
                if marker in line:
                    return line
            if self.proc.poll() is not None and marker not in self.output():
                break
            time.sleep(0.05)
        pytest.fail(f"no line with {marker!r}:\n{self.output()[-3000:]}")


@dataclass
class Cluster:
    """Starts app instances with given listeners at fd 3..; stops every one at the end."""

    tmp_path: Path
    tls: bool = False  # the apps answer over https
    instances: list[Instance] = field(default_factory=list)

    def start(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        fds: Sequence[socket.socket | int] = (),
        cwd: Path | None = None,
    ) -> Instance:
        full_env = {k: v for k, v in os.environ.items() if k not in STRIPPED_ENV}
        full_env.update(env)
        log = self.tmp_path / f"instance-{len(self.instances)}.log"
        numbers = [f if isinstance(f, int) else f.fileno() for f in fds]
        with log.open("wb") as out:
            proc = subprocess.Popen(
                list(argv),
                env=full_env,
                cwd=cwd or APPS,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                close_fds=False,  # fds 3.. survive; the runner's own fds are close-on-exec
                preexec_fn=(lambda: _place_fds(numbers)) if numbers else None,
                start_new_session=True,
            )
        instance = Instance(proc, log)
        self.instances.append(instance)
        return instance

    def stop(self) -> None:
        for instance in self.instances:
            _stop(instance.proc)

    def wait_serving(self, port: int, count: int = 2, host: str = "127.0.0.1") -> set[str]:
        """Request until `count` different pids have answered on `port`; fail if one exits."""
        deadline = time.monotonic() + START_TIMEOUT_S
        pids: set[str] = set()
        while len(pids) < count:
            self._fail_if_exited()
            if time.monotonic() > deadline:
                self._fail(f"{len(pids)} of {count} instances answered on port {port}")
            try:
                pids.add(get(port, host, self.tls))
            except (OSError, http.client.HTTPException):
                time.sleep(0.1)
        return pids

    def assert_spread(self, port: int) -> Counter[str]:
        """20 fresh connections reach 2 pids, at least 2 each (one batch retried for chance)."""
        counts: Counter[str] = Counter()
        for _ in range(2):
            counts = Counter(get(port, tls=self.tls) for _ in range(SPREAD_REQUESTS))
            if len(counts) == 2 and min(counts.values()) >= SPREAD_MIN_EACH:
                return counts
        self._fail(f"20 requests did not spread over 2 instances: {dict(counts)}")

    def assert_no_bind_error(self) -> None:
        for instance in self.instances:
            output = instance.output()
            assert "EADDRINUSE" not in output, output
            assert "Address already in use" not in output, output

    def _fail_if_exited(self) -> None:
        for instance in self.instances:
            if instance.proc.poll() is not None:
                self._fail(f"pid {instance.proc.pid} exited with {instance.proc.returncode}")

    def _fail(self, what: str) -> NoReturn:
        logs = "\n".join(f"--- {i.log.name}\n{i.output()[-3000:]}" for i in self.instances)
        pytest.fail(f"{what}\n{logs}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """TERM the instance's session, KILL what is left of it (npm's child, reloader children).

    The leader is reaped last: until then its pid, the session's group id, cannot be reused.
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and not _exited(proc):
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(STOP_TIMEOUT_S)


def _exited(proc: subprocess.Popen[bytes]) -> bool:
    """Whether the child has exited, without reaping it if it has not been reaped yet."""
    if proc.returncode is not None:
        return True
    return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def wait_exit(instance: Instance) -> int:
    """The exit code of an instance that is expected to stop on its own."""
    try:
        return instance.proc.wait(EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pid = instance.proc.pid
        pytest.fail(f"pid {pid} still runs ({signal_state(pid)})\n{instance.output()[-3000:]}")


def signal_state(pid: int) -> str:
    """A process's signal masks and its threads' states, from /proc: why a stop signal was
    not acted on (ignored, blocked, pending; a thread asleep in the kernel)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
        threads = [
            f"{task.name}:{(task / 'wchan').read_text() or '-'}"
            for task in sorted(Path(f"/proc/{pid}/task").iterdir())
        ]
    except OSError as exc:
        return f"no /proc entry: {exc.strerror}"
    masks = [line.replace("\t", " ") for line in status if line.startswith(("Sig", "ShdPnd"))]
    return ", ".join([*masks, f"threads {' '.join(threads)}"])


def get(port: int, host: str = "127.0.0.1", tls: bool = False) -> str:
    """One GET / on a fresh connection; the body, stripped (the apps answer their pid)."""
    conn: http.client.HTTPConnection
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(host, port, timeout=REQUEST_TIMEOUT_S, context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=REQUEST_TIMEOUT_S)
    try:
        conn.request("GET", "/", headers={"Connection": "close"})
        response = conn.getresponse()
        body = response.read().decode().strip()
        assert response.status == 200, f"{response.status} {body}"
        return body
    finally:
        conn.close()


class SlowRequest:
    """GET `path` on a fresh connection, on its own thread: its status and body, or the error."""

    def __init__(self, port: int, path: str = "/slow", timeout_s: float = 20.0) -> None:
        self.result: tuple[int, str] | None = None
        self.error: BaseException | None = None
        self._timeout_s = timeout_s
        self._thread = threading.Thread(target=self._run, args=(port, path), daemon=True)
        self._thread.start()

    def _run(self, port: int, path: str) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=self._timeout_s)
        try:
            conn.request("GET", path, headers={"Connection": "close"})
            response = conn.getresponse()
            self.result = (response.status, response.read().decode().strip())
        except (OSError, http.client.HTTPException) as exc:
            self.error = exc
        finally:
            conn.close()

    def wait(self) -> tuple[int, str]:
        """The answer; fails the test if the request failed or is still open."""
        self._thread.join(self._timeout_s + 5)
        assert self.error is None, f"the request failed: {self.error!r}"
        assert self.result is not None, "the request did not finish"
        return self.result


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A mini master whose instances are all stopped (TERM, then KILL) at the end."""
    started = Cluster(tmp_path)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def listeners() -> Iterator[list[socket.socket]]:
    """Two listeners on one free 127.0.0.1 port, one per instance (reuseport sharing)."""
    first = reuseport_listener()
    pair = [first, reuseport_listener(port=first.getsockname()[1])]
    yield pair
    for sock in pair:
        sock.close()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """One listener on a free 127.0.0.1 port, for a single instance."""
    with reuseport_listener() as sock:
        yield sock


def listener_backlogs(port: int) -> list[int] | None:
    """The accept-queue limit `ss` shows for each listener on `port` (None without `ss`)."""
    try:
        out = subprocess.run(
            ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, timeout=10
        ).stdout
    except FileNotFoundError:
        return None
    return [int(line.split()[2]) for line in out.splitlines() if line.strip()]
