"""Unmodified Python servers on the master's pre-bound port, through runtime/preload/python.

The test is the master (tests/integration/preload_cluster.py): one SO_REUSEPORT listener per
instance on 127.0.0.1:<port>, placed at fd 3, RUNTIME_PORTS=<port>=3, PORT=<port> and
PYTHONPATH=runtime/preload/python. aiohttp and uvicorn are in the test extra; flask and
django are optional (missing, their cases skip).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import free_port
from tests.integration.preload_cluster import (
    PYTHON_PRELOAD,
    ROOT,
    START_TIMEOUT_S,
    Cluster,
    Instance,
    SlowRequest,
    cluster,
    get,
    listener,
    listener_backlogs,
    listeners,
    reuseport_listener,
    wait_exit,
)

__all__ = ["cluster", "listener", "listeners"]  # fixtures, imported for the tests below

PY = sys.executable

# (id, argv, module the app needs)
SERVERS = [
    ("http.server", [PY, "http_server_app.py"], None),
    ("ThreadingHTTPServer", [PY, "http_server_app.py", "--threading"], None),
    ("socketserver", [PY, "socketserver_app.py"], None),
    ("asyncio-create_server", [PY, "asyncio_app.py", "create_server"], None),
    ("asyncio-start_server", [PY, "asyncio_app.py", "start_server"], None),
    ("uvloop-create_server", [PY, "asyncio_app.py", "create_server", "--uvloop"], "uvloop"),
    ("aiohttp", [PY, "aiohttp_app.py"], "aiohttp"),
    ("flask", [PY, "flask_app.py"], "flask"),
    ("flask-reloader", [PY, "flask_app.py", "--reload"], "flask"),
    ("uvicorn", [PY, "-m", "uvicorn", "asgi_app:app", "--port", "$PORT"], "uvicorn"),
    ("django-noreload", [PY, "django_app.py", "--noreload"], "django"),
    ("django-reloader", [PY, "django_app.py"], "django"),
]

# a program that binds nothing and prints the modules it has loaded
LIST_MODULES = "import json, sys; print(json.dumps(sorted(sys.modules)))"


def need(module: str | None) -> None:
    if module is not None and importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install {module})")


def preload_env(port: int, runtime_ports: str | None = None) -> dict[str, str]:
    env = {"PORT": str(port), "LISTEN_FDS": "1", "PYTHONPATH": str(PYTHON_PRELOAD)}
    env["RUNTIME_PORTS"] = f"{port}=3" if runtime_ports is None else runtime_ports
    return env


@pytest.mark.parametrize(("argv", "module"), [s[1:] for s in SERVERS], ids=[s[0] for s in SERVERS])
def test_server_shares_the_port(
    cluster: Cluster, listeners: list[socket.socket], argv: list[str], module: str | None
) -> None:
    """Two instances of an unmodified server both start on the master's port and share 20 requests."""
    need(module)
    port = listeners[0].getsockname()[1]
    argv = [str(port) if a == "$PORT" else a for a in argv]
    for sock in listeners:
        cluster.start(argv, preload_env(port), fds=[sock])
    cluster.wait_serving(port)
    cluster.assert_spread(port)
    cluster.assert_no_bind_error()


def test_uvicorn_runs_on_uvloop_when_installed(
    cluster: Cluster, listeners: list[socket.socket]
) -> None:
    """uvicorn's default loop is uvloop when it is installed, so the uvicorn case covers uvloop's bind."""
    need("uvicorn")
    need("uvloop")
    port = listeners[0].getsockname()[1]
    instance = cluster.start(
        [PY, "-m", "uvicorn", "asgi_app:app", "--port", str(port)],
        preload_env(port),
        fds=[listeners[0]],
    )
    assert instance.wait_line("event loop:") == "event loop: uvloop"
    cluster.wait_serving(port, count=1)


def test_without_runtime_ports_instances_hit_eaddrinuse(
    cluster: Cluster, listeners: list[socket.socket]
) -> None:
    """Without RUNTIME_PORTS the preload changes nothing: HTTPServer binds and fails on the held port."""
    port = listeners[0].getsockname()[1]
    env = {**preload_env(port), "RUNTIME_PORTS": ""}
    instances = [cluster.start([PY, "http_server_app.py"], env, fds=[s]) for s in listeners]
    for instance in instances:
        assert wait_exit(instance) == 1
        assert "Address already in use" in instance.output()
        assert not instance.preload_lines()


def test_unlisted_port_binds_normally(cluster: Cluster, listeners: list[socket.socket]) -> None:
    """A bind to a port RUNTIME_PORTS does not list binds that port itself."""
    listed = listeners[0].getsockname()[1]
    own = free_port()
    instance = cluster.start(
        [PY, "http_server_app.py"],
        {**preload_env(own), "RUNTIME_PORTS": f"{listed}=3"},
        fds=[listeners[0]],
    )
    assert cluster.wait_serving(own, count=1) == {str(instance.proc.pid)}
    assert not instance.preload_lines()


@pytest.mark.parametrize("fd3", ["closed", "file", "other-port"])
def test_unusable_fd_falls_back_to_bind(cluster: Cluster, tmp_path: Path, fd3: str) -> None:
    """A listed fd that is closed, a file or a listener on another port: one stderr line, normal bind."""
    port = free_port()
    fds: list[int | socket.socket] = []
    if fd3 == "file":
        fds.append(os.open(tmp_path / "not-a-socket", os.O_CREAT | os.O_RDWR, 0o600))
    elif fd3 == "other-port":
        fds.append(reuseport_listener())
    try:
        instance = cluster.start([PY, "http_server_app.py"], preload_env(port), fds=fds)
        assert cluster.wait_serving(port, count=1) == {str(instance.proc.pid)}
    finally:
        for fd in fds:
            os.close(fd) if isinstance(fd, int) else fd.close()
    lines = instance.preload_lines()
    assert len(lines) == 1, instance.output()
    assert f"binding port {port} normally" in lines[0]


def test_master_backlog_is_kept(cluster: Cluster) -> None:
    """HTTPServer's listen(5) on the adopted socket is skipped: the master's backlog (2048) stays."""
    with reuseport_listener() as listener:
        port = listener.getsockname()[1]
        cluster.start([PY, "http_server_app.py"], preload_env(port), fds=[listener])
        cluster.wait_serving(port, count=1)
        backlogs = listener_backlogs(port)
        if backlogs is None:
            pytest.skip("`ss` is not available")
        assert backlogs == [2048]


def test_uvloop_backlog_is_the_apps(cluster: Cluster) -> None:
    """uvloop re-listens through libuv with the app's backlog (100 by default): documented, not hidden."""
    need("uvloop")
    with reuseport_listener() as listener:
        port = listener.getsockname()[1]
        cluster.start(
            [PY, "asyncio_app.py", "create_server", "--uvloop"], preload_env(port), fds=[listener]
        )
        cluster.wait_serving(port, count=1)
        backlogs = listener_backlogs(port)
        if backlogs is None:
            pytest.skip("`ss` is not available")
        assert backlogs == [100]


BIND_REPORT = """
import fcntl, json, os, socket, sys
family = socket.AF_INET6 if sys.argv[1] == "v6" else socket.AF_INET
sock = socket.socket(family, socket.SOCK_STREAM)
sock.setblocking(sys.argv[2] == "blocking")
sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", int(os.environ["PORT"])))
sock.listen(5)
nonblocking = bool(fcntl.fcntl(sock.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK)
print(json.dumps({"name": sock.getsockname()[:2], "inheritable": sock.get_inheritable(),
                  "nonblocking": nonblocking, "same": os.path.samestat(os.fstat(3), os.fstat(sock.fileno()))}))
"""


def bind_report(
    cluster: Cluster, env: dict[str, str], fds: list[socket.socket], *argv: str
) -> dict[str, object]:
    instance = cluster.start([PY, "-c", BIND_REPORT, *argv], env, fds=fds)
    assert wait_exit(instance) == 0, instance.output()
    report: dict[str, object] = json.loads(instance.output().splitlines()[-1])
    report["preload_lines"] = instance.preload_lines()
    return report


@pytest.mark.parametrize("mode", ["blocking", "nonblocking"])
def test_adopted_socket_keeps_its_own_flags(cluster: Cluster, mode: str) -> None:
    """After adoption the socket is the listener, keeps its blocking mode and stays non-inheritable."""
    with reuseport_listener() as listener:
        port = listener.getsockname()[1]
        report = bind_report(cluster, preload_env(port), [listener], "v4", mode)
    assert report["same"] is True
    assert report["name"] == ["127.0.0.1", port]
    assert report["nonblocking"] is (mode == "nonblocking")
    assert report["inheritable"] is False
    assert report["preload_lines"] == []


def test_ipv6_socket_takes_the_ipv4_listener(cluster: Cluster) -> None:
    """A `::` socket on a port the master bound on IPv4 only adopts that listener."""
    with reuseport_listener() as listener:
        port = listener.getsockname()[1]
        report = bind_report(cluster, preload_env(port), [listener], "v6", "blocking")
    assert report["same"] is True
    assert report["name"] == ["127.0.0.1", port]


def test_ipv4_socket_is_parked_when_the_port_is_ipv6_only(cluster: Cluster) -> None:
    """An IPv4 socket on a port the master bound on IPv6 only goes to 127.0.0.1:<ephemeral>, with one line."""
    try:
        listener = reuseport_listener("::1")
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback: {exc}")
    with listener:
        port = listener.getsockname()[1]
        report = bind_report(cluster, preload_env(port), [listener], "v4", "blocking")
    assert report["same"] is False
    name = report["name"]
    assert isinstance(name, list)
    assert name[0] == "127.0.0.1"
    assert name[1] != port
    lines = report["preload_lines"]
    assert isinstance(lines, list)
    assert len(lines) == 1
    assert "IPv6 only" in lines[0]


def test_ipv6_listener_serves_an_ipv6_socket(cluster: Cluster) -> None:
    """With an IPv4 and an IPv6 fd on one port, each socket adopts the listener of its own family."""
    v4 = reuseport_listener()
    port = v4.getsockname()[1]
    try:
        v6 = reuseport_listener("::1", port)
    except OSError as exc:
        v4.close()
        pytest.skip(f"no IPv6 loopback: {exc}")
    with v4, v6:
        env = {**preload_env(port, f"{port}=3,{port}=4"), "LISTEN_FDS": "2"}
        report = bind_report(cluster, env, [v6, v4], "v6", "blocking")
    # fd 3 is the IPv6 listener here: `same` compares with fd 3
    assert report["same"] is True
    assert report["name"] == ["::1", port]


def modules(
    env: dict[str, str], fds: list[socket.socket], cluster: Cluster, code: str = LIST_MODULES
) -> set[str]:
    instance = cluster.start([PY, "-c", code], env, fds=fds)
    assert wait_exit(instance) == 0, instance.output()
    return set(json.loads(instance.output().splitlines()[-1]))


# Modules the preload may add to a program that binds nothing: itself, and what it imports to
# look for the sitecustomize it shadows (already loaded by most installs' .pth files).
PRELOAD_MODULES = {
    "sitecustomize",
    "importlib",
    "importlib._bootstrap",
    "importlib._bootstrap_external",
    "importlib.machinery",
}


def test_program_that_binds_nothing_keeps_its_modules(cluster: Cluster) -> None:
    """The preload adds only itself to sys.modules without RUNTIME_PORTS, and only `socket` with it."""
    with reuseport_listener() as listener:
        port = listener.getsockname()[1]
        plain = modules({"PORT": str(port)}, [], cluster)
        unset = modules({**preload_env(port), "RUNTIME_PORTS": ""}, [], cluster)
        listed = modules(preload_env(port), [listener], cluster)
        with_socket = modules({"PORT": str(port)}, [], cluster, "import socket; " + LIST_MODULES)
    assert "socket" not in plain
    assert unset - plain <= PRELOAD_MODULES
    assert plain - unset == set()
    assert listed - with_socket <= PRELOAD_MODULES
    assert "socket" in listed


def test_shadowed_sitecustomize_runs_once(cluster: Cluster, tmp_path: Path) -> None:
    """The sitecustomize later on sys.path runs exactly once, after the hook is in place."""
    other = tmp_path / "site"
    other.mkdir()
    (other / "sitecustomize.py").write_text(
        "import socket\nprint('chained', socket.socket.bind.__qualname__, flush=True)\n"
    )
    with reuseport_listener() as listener:
        port = listener.getsockname()[1]
        # our directory twice, as a worker's own child that prepends it again would have it
        path = os.pathsep.join([str(PYTHON_PRELOAD), str(PYTHON_PRELOAD), str(other)])
        code = "import sitecustomize as s; print(s.__file__); print(s.chained.__file__)"
        instance = cluster.start(
            [PY, "-c", code], {**preload_env(port), "PYTHONPATH": path}, fds=[listener]
        )
        assert wait_exit(instance) == 0, instance.output()
    lines = instance.output().splitlines()
    assert lines == [
        "chained install.<locals>.bind",
        str(PYTHON_PRELOAD / "sitecustomize.py"),
        str(other / "sitecustomize.py"),
    ]


def test_no_shadowed_sitecustomize_is_fine(cluster: Cluster) -> None:
    """Without another sitecustomize on sys.path the preload loads alone and says nothing."""
    instance = cluster.start(
        [PY, "-c", "import sitecustomize as s; print(s.chained)"],
        {"PYTHONPATH": str(PYTHON_PRELOAD), "RUNTIME_PORTS": ""},
    )
    assert wait_exit(instance) == 0, instance.output()
    assert instance.output().splitlines() == ["None"]


def test_imported_by_package_name_it_does_nothing(cluster: Cluster) -> None:
    """`import runtime.preload.python.sitecustomize` (a tool walking the package) patches nothing."""
    code = "import runtime.preload.python.sitecustomize as m, socket; print(m.chained, socket.socket.bind.__qualname__)"
    with reuseport_listener() as listener:
        port = listener.getsockname()[1]
        env = {"PORT": str(port), "RUNTIME_PORTS": f"{port}=3", "PYTHONPATH": str(ROOT)}
        instance = cluster.start([PY, "-c", code], env, fds=[listener])
        assert wait_exit(instance) == 0, instance.output()
    assert instance.output().splitlines() == ["None socket.bind"]


def first_with_line(instances: list[Instance], marker: str) -> Instance:
    """The first of `instances` to print `marker` (waiting for one, bounded)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        for instance in instances:
            if marker in instance.output():
                return instance
        time.sleep(0.05)
    pytest.fail(f"no instance printed {marker!r}")


@pytest.mark.parametrize(
    ("threaded", "env", "signum"),
    [
        (False, {}, signal.SIGTERM),
        (True, {}, signal.SIGTERM),
        # slower than the 3 s default: answered as $RUNTIME_DRAIN_MS (kill_timeout 10 s) allows
        (True, {"SLOW_MS": "4000", "RUNTIME_DRAIN_MS": "9500"}, signal.SIGTERM),
        # `kill_signal: SIGINT`: drained too, then KeyboardInterrupt as Python does
        (False, {}, signal.SIGINT),
    ],
    ids=["HTTPServer", "ThreadingHTTPServer", "long-drain", "SIGINT"],
)
def test_stop_signal_drains_an_app_without_a_handler(
    cluster: Cluster, listener: socket.socket, threaded: bool, env: dict[str, str], signum: int
) -> None:
    """An app with no handler for the stop signal answers its in-flight request, then ends
    as Python ends it (SIGTERM: dies of it; SIGINT: KeyboardInterrupt, which kills it with
    SIGINT once the traceback is printed)."""
    port = listener.getsockname()[1]
    argv = [PY, "http_server_app.py", *(["--threading"] if threaded else [])]
    instance = cluster.start(argv, {**preload_env(port), **env}, fds=[listener])
    cluster.wait_serving(port, count=1)
    slow = SlowRequest(port)
    instance.wait_line("slow request started")
    instance.proc.send_signal(signum)
    assert slow.wait() == (200, str(instance.proc.pid))
    assert wait_exit(instance) == -signum
    if signum == signal.SIGINT:
        assert "KeyboardInterrupt" in instance.output()


def test_draining_worker_leaves_the_queue_to_the_others(cluster: Cluster) -> None:
    """While one instance drains its slow request, new connections on the shared listener go to the other."""
    with reuseport_listener() as shared:
        port = shared.getsockname()[1]
        first, second = (
            cluster.start(
                [PY, "http_server_app.py", "--threading"], preload_env(port), fds=[shared]
            )
            for _ in range(2)
        )
        cluster.wait_serving(port)
        slow = SlowRequest(port)
        draining = first_with_line([first, second], "slow request started")
        draining.proc.send_signal(signal.SIGTERM)
        other = second if draining is first else first
        assert {get(port) for _ in range(10)} == {str(other.proc.pid)}
        assert slow.wait()[1] == str(draining.proc.pid)
        assert wait_exit(draining) == -signal.SIGTERM


@pytest.mark.parametrize(
    ("env", "bound_s"),
    [({}, 6.0), ({"RUNTIME_DRAIN_MS": "200"}, 1.5)],  # the 3 s default; kill_timeout 700 ms
    ids=["default", "short"],
)
def test_drain_ends_when_an_idle_connection_stays_open(
    cluster: Cluster, listener: socket.socket, env: dict[str, str], bound_s: float
) -> None:
    """A client that connects and sends nothing holds the drain at most $RUNTIME_DRAIN_MS
    (DRAIN_LIMIT_S without it), then SIGTERM ends it."""
    port = listener.getsockname()[1]
    instance = cluster.start(
        [PY, "http_server_app.py", "--threading"], {**preload_env(port), **env}, fds=[listener]
    )
    cluster.wait_serving(port, count=1)
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        time.sleep(0.2)  # accepted by the server's thread, which waits for a request line
        started = time.monotonic()
        instance.proc.send_signal(signal.SIGTERM)
        assert wait_exit(instance) == -signal.SIGTERM
        elapsed = time.monotonic() - started
    assert elapsed < bound_s, f"the drain took {elapsed:.1f} s"


def test_app_with_its_own_sigterm_handler_is_left_to_it(
    cluster: Cluster, listener: socket.socket
) -> None:
    """An app that set its own SIGTERM handler before binding keeps it: the preload installs none."""
    app = (
        "import http.server, os, signal\n"
        "def handle(*args):\n"
        "    print('app got SIGTERM', flush=True)\n"
        "    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the next one ends the test\n"
        "signal.signal(signal.SIGTERM, handle)\n"
        "s = http.server.HTTPServer(('', int(os.environ['PORT'])), http.server.BaseHTTPRequestHandler)\n"
        "print('handler kept:', signal.getsignal(signal.SIGTERM).__name__, flush=True)\n"
        "s.serve_forever()\n"
    )
    port = listener.getsockname()[1]
    instance = cluster.start([PY, "-c", app], preload_env(port), fds=[listener])
    assert instance.wait_line("handler kept:") == "handler kept: handle"
    instance.proc.send_signal(signal.SIGTERM)
    instance.wait_line("app got SIGTERM")
    time.sleep(0.3)
    assert instance.proc.poll() is None
