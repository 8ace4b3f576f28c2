"""Unmodified Node servers on the master's pre-bound port, through runtime/preload/node.cjs.

The test is the master (tests/integration/preload_cluster.py): one SO_REUSEPORT listener per
instance on 127.0.0.1:<port>, placed at fd 3, RUNTIME_PORTS=<port>=3, PORT=<port> and
NODE_OPTIONS=--require node.cjs. Express, Koa and Fastify come from the npm registry into
a session-scoped directory (the `node` and `npm_dir` fixtures, in conftest.py); without the
registry those cases skip.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.conftest import free_port
from tests.integration.preload_cluster import (
    APPS,
    NODE_PRELOAD,
    Cluster,
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


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    """A throw-away self-signed key and certificate for the https app."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("`openssl` is not on PATH")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    args = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"]
    subprocess.run(
        [openssl, *args, "-keyout", key, "-out", cert],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return key, cert


def preload_env(port: int, runtime_ports: str | None = None) -> dict[str, str]:
    env = {"PORT": str(port), "LISTEN_FDS": "1", "NODE_OPTIONS": f"--require {NODE_PRELOAD}"}
    env["RUNTIME_PORTS"] = f"{port}=3" if runtime_ports is None else runtime_ports
    return env


def start_pair(
    cluster: Cluster,
    argv: list[str],
    listeners: list[socket.socket],
    cwd: Path | None = None,
    **extra: str,
) -> int:
    """Start two instances of `argv`, one listener each at fd 3; return the port."""
    port = listeners[0].getsockname()[1]
    for sock in listeners:
        cluster.start(argv, {**preload_env(port), **extra}, fds=[sock], cwd=cwd)
    return int(port)


def assert_two_serve(cluster: Cluster, port: int) -> None:
    cluster.wait_serving(port)
    cluster.assert_spread(port)
    cluster.assert_no_bind_error()


@pytest.mark.parametrize("app", ["http_app.js", "net_app.js"])
def test_core_modules_share_the_port(
    cluster: Cluster, node: str, listeners: list[socket.socket], app: str
) -> None:
    """http and net servers that listen(process.env.PORT) both serve on the master's listeners."""
    port = start_pair(cluster, [node, app], listeners)
    assert_two_serve(cluster, port)


def test_https_shares_the_port(
    cluster: Cluster, node: str, listeners: list[socket.socket], tls_files: tuple[Path, Path]
) -> None:
    """An https server's listen(PORT) serves TLS on the master's listeners in both instances."""
    key, cert = tls_files
    cluster.tls = True
    port = start_pair(
        cluster, [node, "https_app.js"], listeners, TLS_KEY=str(key), TLS_CERT=str(cert)
    )
    assert_two_serve(cluster, port)


@pytest.mark.parametrize("app", ["express_app.js", "koa_app.js", "fastify_app.js"])
def test_frameworks_share_the_port(
    cluster: Cluster, node: str, npm_dir: Path, listeners: list[socket.socket], app: str
) -> None:
    """Express app.listen(PORT), Koa app.listen(PORT) and fastify.listen({port}) serve in both instances."""
    shutil.copy(APPS / app, npm_dir / app)
    port = start_pair(cluster, [node, app], listeners, cwd=npm_dir)
    assert_two_serve(cluster, port)


def test_npm_start_passes_fd_and_preload_to_the_app(
    cluster: Cluster, node: str, tmp_path: Path, listeners: list[socket.socket]
) -> None:
    """Under `npm start`, npm (node with the preload) is undisturbed and the app node it spawns serves fd 3."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("`npm` is not on PATH")
    app_dir = tmp_path / "npm-app"
    app_dir.mkdir()
    shutil.copy(APPS / "http_app.js", app_dir / "http_app.js")
    (app_dir / "package.json").write_text(
        '{"private": true, "scripts": {"start": "node http_app.js"}}\n'
    )
    port = start_pair(cluster, [npm, "start"], listeners, cwd=app_dir)
    pids = cluster.wait_serving(port)
    assert not pids & {str(i.proc.pid) for i in cluster.instances}, "npm itself must not serve"
    cluster.assert_spread(port)
    cluster.assert_no_bind_error()


@pytest.mark.parametrize(
    "form",
    [
        "port",
        "string-port",
        "port-cb",
        "port-host",
        "port-host-backlog-cb",
        "options",
        "options-string-port",
    ],
)
def test_listen_call_forms(
    cluster: Cluster, node: str, listeners: list[socket.socket], form: str
) -> None:
    """Every listen() form on a listed port (number, string, host, backlog, cb, options) serves fd 3."""
    port = start_pair(cluster, [node, "listen_forms.js", form], listeners)
    assert_two_serve(cluster, port)


def test_without_runtime_ports_instances_hit_eaddrinuse(
    cluster: Cluster, node: str, listeners: list[socket.socket]
) -> None:
    """Without RUNTIME_PORTS the preload changes nothing: listen(PORT) binds and fails on the held port."""
    port = listeners[0].getsockname()[1]
    env = {**preload_env(port), "RUNTIME_PORTS": ""}
    instances = [cluster.start([node, "listen_forms.js", "port"], env, fds=[s]) for s in listeners]
    for instance in instances:
        assert wait_exit(instance) == 1
        assert "EADDRINUSE" in instance.output()
        assert not instance.preload_lines()


@pytest.mark.parametrize(
    ("runtime_ports", "patched"), [(None, False), ("", False), ("3000=3", True)]
)
def test_patches_only_with_runtime_ports(
    node: str, runtime_ports: str | None, patched: bool
) -> None:
    """With RUNTIME_PORTS unset or empty, net.Server's listen and ChildProcess's spawn are Node's own."""
    check = (
        "const net = require('net'); const cp = require('child_process');"
        "console.log(net.Server.prototype.listen.toString().includes('pickFd'),"
        " cp.ChildProcess.prototype.spawn.toString().includes('inheritedFds'))"
    )
    env = {"NODE_OPTIONS": f"--require {NODE_PRELOAD}"}
    if runtime_ports is not None:
        env["RUNTIME_PORTS"] = runtime_ports
    out = subprocess.run([node, "-e", check], env=env, capture_output=True, text=True, timeout=30)
    assert out.stdout.split() == [str(patched).lower()] * 2, out.stderr
    assert out.stderr == ""


def test_unlisted_port_binds_normally(
    cluster: Cluster, node: str, listeners: list[socket.socket]
) -> None:
    """listen(PORT) on a port that RUNTIME_PORTS does not list binds that port itself."""
    listed = listeners[0].getsockname()[1]
    own = free_port()
    instance = cluster.start(
        [node, "listen_forms.js", "port"],
        {**preload_env(own), "RUNTIME_PORTS": f"{listed}=3"},
        fds=[listeners[0]],
    )
    assert cluster.wait_serving(own, count=1) == {str(instance.proc.pid)}
    assert not instance.preload_lines()


def test_port_zero_is_untouched(
    cluster: Cluster, node: str, listeners: list[socket.socket]
) -> None:
    """listen(0) picks a free port of its own even when RUNTIME_PORTS is set."""
    listed = listeners[0].getsockname()[1]
    instance = cluster.start(
        [node, "listen_forms.js", "port"],
        {**preload_env(0), "RUNTIME_PORTS": f"{listed}=3"},
        fds=[listeners[0]],
    )
    address = json.loads(instance.wait_line("listening on").split("listening on ", 1)[1])
    assert address["port"] not in (0, listed)


def test_fd_app_is_unaffected(cluster: Cluster, node: str, listeners: list[socket.socket]) -> None:
    """An app that already listens on {fd: 3} serves as before, with no preload message."""
    port = start_pair(cluster, [node, "fd_app.js"], listeners)
    assert_two_serve(cluster, port)
    assert not any(i.preload_lines() for i in cluster.instances)


@pytest.mark.parametrize("fd3", ["closed", "file"])
def test_unusable_fd_falls_back_to_bind(
    cluster: Cluster, node: str, tmp_path: Path, fd3: str
) -> None:
    """A listed fd that is not a listening socket: one stderr line, then the normal bind serves."""
    port = free_port()
    fds: list[int] = []
    if fd3 == "file":
        fds.append(os.open(tmp_path / "not-a-socket", os.O_CREAT | os.O_RDWR, 0o600))
    try:
        # "closed": nothing is placed at fd 3, so node's own first fd (its epoll) lands there
        instance = cluster.start([node, "listen_forms.js", "port"], preload_env(port), fds=fds)
        assert cluster.wait_serving(port, count=1) == {str(instance.proc.pid)}
    finally:
        for fd in fds:
            os.close(fd)
    lines = instance.preload_lines()
    assert len(lines) == 1, instance.output()
    assert f"binding port {port} normally" in lines[0]


def test_ipv6_host_takes_the_ipv6_listener(cluster: Cluster, node: str) -> None:
    """With an IPv4 and an IPv6 fd on one port, listen(port, '::1') serves the IPv6 one."""
    v4 = reuseport_listener()
    port = v4.getsockname()[1]
    try:
        v6 = reuseport_listener("::1", port)
    except OSError as exc:
        v4.close()
        pytest.skip(f"no IPv6 loopback: {exc}")
    try:
        env = {**preload_env(port, f"{port}=3,{port}=4"), "LISTEN_FDS": "2", "HOST": "::1"}
        instance = cluster.start([node, "listen_forms.js", "port-host"], env, fds=[v4, v6])
        assert cluster.wait_serving(port, count=1, host="::1") == {str(instance.proc.pid)}
        assert '"family":"IPv6"' in instance.wait_line("listening on")
    finally:
        v4.close()
        v6.close()


def test_second_server_on_the_port_gets_eaddrinuse(
    cluster: Cluster, node: str, listeners: list[socket.socket]
) -> None:
    """A second server on a listed port whose only fd is in use gets EADDRINUSE; the first serves."""
    port = listeners[0].getsockname()[1]
    instance = cluster.start([node, "two_servers.js"], preload_env(port), fds=[listeners[0]])
    assert instance.wait_line("second server:") == "second server: EADDRINUSE"
    assert cluster.wait_serving(port, count=1) == {str(instance.proc.pid)}


def test_backlog_is_nodes_own(cluster: Cluster, node: str) -> None:
    """Node re-listens on the inherited fd with its default backlog (511): documented, not hidden."""
    with reuseport_listener() as listener:
        port = start_pair(cluster, [node, "listen_forms.js", "port"], [listener])
        cluster.wait_serving(port, count=1)
        backlogs = listener_backlogs(port)
        if backlogs is None:
            pytest.skip("`ss` is not available")
        assert backlogs == [511]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stop_signal_drains_an_app_without_a_handler(
    cluster: Cluster, node: str, listener: socket.socket, sig: signal.Signals
) -> None:
    """An app with no handler for the stop signal answers its in-flight request, then dies of that signal."""
    port = start_pair(cluster, [node, "slow_app.js"], [listener])
    instance = cluster.instances[0]
    cluster.wait_serving(port, count=1)
    slow = SlowRequest(port)
    instance.wait_line("slow request started")
    instance.proc.send_signal(sig)
    assert slow.wait() == (200, str(instance.proc.pid))
    assert wait_exit(instance) == -sig


def test_drain_closes_idle_keep_alive_connections(
    cluster: Cluster, node: str, listener: socket.socket
) -> None:
    """While draining, an idle keep-alive connection is closed, so it does not hold the stop until kill_timeout."""
    port = start_pair(cluster, [node, "slow_app.js"], [listener])
    instance = cluster.instances[0]
    cluster.wait_serving(port, count=1)
    idle = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    idle.request("GET", "/")
    assert idle.getresponse().read().decode().strip() == str(instance.proc.pid)
    started = time.monotonic()
    instance.proc.send_signal(signal.SIGINT)
    assert wait_exit(instance) == -signal.SIGINT
    assert time.monotonic() - started < 2.0
    idle.close()


def test_drain_answers_the_next_request_of_a_keep_alive_client(
    cluster: Cluster, node: str, listener: socket.socket
) -> None:
    """A keep-alive client between two requests when the drain starts gets its next answer, with `Connection: close`."""
    port = start_pair(cluster, [node, "slow_app.js"], [listener])
    instance = cluster.instances[0]
    cluster.wait_serving(port, count=1)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/")
        conn.getresponse().read()
        instance.proc.send_signal(signal.SIGINT)
        time.sleep(0.1)  # the connection sits idle as the drain starts
        conn.request("GET", "/")
        response = conn.getresponse()
        assert (response.status, response.getheader("Connection")) == (200, "close")
        assert response.read().decode().strip() == str(instance.proc.pid)
    finally:
        conn.close()
    assert wait_exit(instance) == -signal.SIGINT


def test_app_with_its_own_stop_handler_is_left_to_it(
    cluster: Cluster, node: str, listener: socket.socket
) -> None:
    """An app that handles SIGINT itself keeps running after SIGINT: the drain does not take over."""
    app = (
        "const s = require('http').createServer((q, r) => r.end(`${process.pid}\\n`));"
        "process.on('SIGINT', () => console.log('app got SIGINT'));"
        "s.listen(process.env.PORT, () => console.log('listening'));"
    )
    port = start_pair(cluster, [node, "-e", app], [listener])
    instance = cluster.instances[0]
    cluster.wait_serving(port, count=1)
    instance.proc.send_signal(signal.SIGINT)
    instance.wait_line("app got SIGINT")
    time.sleep(0.3)
    assert instance.proc.poll() is None
    assert get(port) == str(instance.proc.pid)
