"""Listeners on real kernel sockets: parsing, binding, errors, reuseport spread, fd hand-off."""

from __future__ import annotations

import _socket
import errno
import os
import re
import select
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runtime.proc.listeners import bind_app_listeners
from runtime.proc.sockets import (
    ListenAddress,
    ListenError,
    bind_listener,
    describe_error,
    listen_env,
    migrate_req_enabled,
    parse_listen,
)

ENV = {"PORT": "5000", "OTHER": "6000"}

PARSE_CASES = [
    (":8000", {}, ListenAddress("tcp", "127.0.0.1", 8000)),
    (":$PORT", ENV, ListenAddress("tcp", "127.0.0.1", 5000)),
    (":${PORT}", ENV, ListenAddress("tcp", "127.0.0.1", 5000)),
    (":$PORT", {}, ListenAddress("tcp", "127.0.0.1", 3000)),
    (":$PORT", {"PORT": "5000", "DYNO": "web.1"}, ListenAddress("tcp", "0.0.0.0", 5000)),
    ("127.0.0.1:$PORT", {"PORT": "5000", "DYNO": "web.1"}, ListenAddress("tcp", "127.0.0.1", 5000)),
    ("0.0.0.0:8000", {}, ListenAddress("tcp", "0.0.0.0", 8000)),
    ("127.0.0.1:8000", {}, ListenAddress("tcp", "127.0.0.1", 8000)),
    ("0.0.0.0:$OTHER", ENV, ListenAddress("tcp", "0.0.0.0", 6000)),
    ("localhost:8000", {}, ListenAddress("tcp", "localhost", 8000)),
    ("[::]:8000", {}, ListenAddress("tcp6", "::", 8000)),
    ("[::1]:8000", {}, ListenAddress("tcp6", "::1", 8000)),
    ("  :0 ", {}, ListenAddress("tcp", "127.0.0.1", 0)),
    ("unix:/run/x.sock", {}, ListenAddress("unix", path="/run/x.sock")),
    ("unix:/run/x.sock?mode=0660", {}, ListenAddress("unix", path="/run/x.sock", mode=0o660)),
    ("unix:/run/x.sock?mode=600", {}, ListenAddress("unix", path="/run/x.sock", mode=0o600)),
]


@pytest.mark.parametrize(
    ("text", "environ", "expected"), PARSE_CASES, ids=[c[0].strip() or "blank" for c in PARSE_CASES]
)
def test_parse_listen_accepts(text: str, environ: dict[str, str], expected: ListenAddress) -> None:
    """Every documented form parses to the expected address."""
    assert parse_listen(text, environ=environ) == expected


JUNK_CASES = [
    ("", "expected HOST:PORT"),
    ("8000", "expected HOST:PORT"),
    (":http", "expected a port number"),
    (":70000", "port out of range"),
    (":$NOPE", "$NOPE is not set"),
    (":$OTHER", "$OTHER is not a port number"),
    ("::1:8000", "IPv6 hosts need brackets"),
    ("[::1]8000", "expected [IPv6]:PORT"),
    ("[nothost]:80", "expected [IPv6]:PORT"),
    ("bad host:80", "bad host"),
    ("unix:", "expected unix:/path"),
    ("unix:@abstract", "abstract sockets are not supported"),
    ("unix:/x?mode=0999", "expected unix:/path?mode=0660"),
    ("unix:/x?perm=0600", "expected unix:/path?mode=0660"),
    ("unix:/x?mode=00660", "expected unix:/path?mode=0660"),
    (":${PORT", "expected a port number"),
    (":$1PORT", "expected a port number"),
    (":$", "expected a port number"),
    (":٣٠٠٠", "expected a port number"),  # non-ASCII digits are not a port
    ("-host:80", "bad host"),
    ("host-:80", "bad host"),
    ("unix:/" + "a" * 200, "longer than 107 bytes"),
]


@pytest.mark.parametrize(("text", "message"), JUNK_CASES, ids=[c[0][:20] for c in JUNK_CASES])
def test_parse_listen_rejects(text: str, message: str) -> None:
    """Junk raises ValueError whose message says what was expected."""
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_listen(text, environ={"OTHER": "x"})


@pytest.mark.parametrize(
    ("addr", "text", "fd_name"),
    [
        (ListenAddress("tcp", "127.0.0.1", 8000), "127.0.0.1:8000", "127.0.0.1_8000"),
        (ListenAddress("tcp6", "::1", 8000), "[::1]:8000", "[__1]_8000"),
        (ListenAddress("unix", path="/run/x.sock"), "unix:/run/x.sock", "unix_/run/x.sock"),
    ],
    ids=["tcp", "tcp6", "unix"],
)
def test_address_str_and_fd_name(addr: ListenAddress, text: str, fd_name: str) -> None:
    """Addresses print log-ready and name their fd without the LISTEN_FDNAMES separator."""
    assert str(addr) == text
    assert addr.fd_name == fd_name


def _connect(port: int, host: str = "127.0.0.1") -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    client = socket.socket(family, socket.SOCK_STREAM)
    client.settimeout(5)
    client.connect((host, port))
    return client


def _wrap(raw: _socket.socket) -> socket.socket:
    """A `socket.socket` on a dup of a listener's fd (listeners are bound as raw sockets)."""
    return socket.socket(fileno=os.dup(raw.fileno()))


def _accept(raw: _socket.socket, timeout_s: float = 5.0) -> socket.socket:
    with _wrap(raw) as sock:
        readable, _, _ = select.select([sock], [], [], timeout_s)
        assert readable, "no connection arrived before the deadline"
        conn, _ = sock.accept()
    return conn


def test_bind_tcp_port_zero_accepts_a_connection() -> None:
    """A listener bound on port 0 reports its real port and accepts on it."""
    listener = bind_listener(ListenAddress("tcp", "127.0.0.1", 0))
    try:
        port = listener.address.port
        assert port > 0
        assert str(listener) == f"127.0.0.1:{port}"
        assert listener.name == f"127.0.0.1_{port}"
        assert listener.fileno() == listener.sock.fileno()
        assert not os.get_inheritable(listener.fileno())
        assert listener.sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        with _connect(port), _accept(listener.sock) as conn:
            assert conn.getsockname()[1] == port
    finally:
        listener.close()


def test_bind_localhost_resolves_to_ipv4() -> None:
    """A host name is resolved at bind time and keeps its name in logs."""
    listener = bind_listener(ListenAddress("tcp", "localhost", 0))
    try:
        assert listener.sock.getsockname()[0] == "127.0.0.1"
        assert str(listener).startswith("localhost:")
    finally:
        listener.close()


def test_bind_ipv6_sets_v6only() -> None:
    """An IPv6 listener is v6-only, so [::] leaves the IPv4 port to 0.0.0.0."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this kernel")
    try:
        listener = bind_listener(ListenAddress("tcp6", "::1", 0))
    except ListenError as exc:
        pytest.skip(f"no IPv6 loopback: {exc}")
    try:
        assert listener.sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        with _connect(listener.address.port, "::1"), _accept(listener.sock):
            pass
    finally:
        listener.close()


def test_port_in_use_is_one_clear_line() -> None:
    """Binding a port someone listens on raises ListenError '<addr>: address already in use'."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ListenError) as info:
            bind_listener(ListenAddress("tcp", "127.0.0.1", port))
    assert str(info.value) == f"127.0.0.1:{port}: address already in use"


def _reuseport_listener() -> socket.socket:
    """Another process's reuseport listener on a free loopback port (same uid: ours)."""
    other = socket.socket()
    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    other.bind(("127.0.0.1", 0))
    other.listen()
    return other


def test_a_reuseport_port_someone_listens_on_is_in_use_for_a_new_group() -> None:
    """The kernel lets a reuseport socket of the same uid join a listening group; the
    first socket of a runtime's group (`sole`) refuses it as a plain bind would, and
    leaves the other listener alone."""
    with _reuseport_listener() as other:
        port = other.getsockname()[1]
        addr = ListenAddress("tcp", "127.0.0.1", port)
        joined = bind_listener(addr, reuseport=True)  # what the kernel allows
        joined.close()
        with pytest.raises(ListenError) as info:
            bind_listener(addr, reuseport=True, sole=True)
        assert str(info.value) == f"127.0.0.1:{port}: address already in use"
        with _connect(port), _accept(other):
            pass  # still listening, still accepting


def test_a_reuseport_group_binds_a_free_port() -> None:
    """`sole` on a free port (and on port 0) binds a reuseport socket that others join."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    for port in (free, 0):
        first = bind_listener(ListenAddress("tcp", "127.0.0.1", port), reuseport=True, sole=True)
        try:
            assert first.sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
            bound = ListenAddress("tcp", "127.0.0.1", first.address.port)
            bind_listener(bound, reuseport=True).close()  # the rest of the group
        finally:
            first.close()


def test_bind_app_listeners_refuses_a_reuseport_port_in_use() -> None:
    """A second runtime's reuseport app on a port already served this way is an error, so
    it can never share the first one's group (and override its steering)."""
    with _reuseport_listener() as other:
        port = other.getsockname()[1]
        with pytest.raises(ListenError, match=f"127.0.0.1:{port}: address already in use"):
            bind_app_listeners([ListenAddress("tcp", "127.0.0.1", port)], "reuseport", [0, 1])
    app = bind_app_listeners([ListenAddress("tcp", "127.0.0.1", port)], "reuseport", [0, 1])
    try:
        assert len(app.per_slot) == 2  # the port freed, both slots bind it
    finally:
        app.close()


def test_unresolvable_host_is_one_clear_line() -> None:
    """A host name that does not resolve raises 'cannot resolve'."""
    with pytest.raises(ListenError, match=r"^no-such-host\.invalid:80: cannot resolve "):
        bind_listener(ListenAddress("tcp", "no-such-host.invalid", 80))


def test_foreign_address_is_not_available() -> None:
    """An IP this host does not own is 'address not available on this host'."""
    with pytest.raises(ListenError) as info:
        bind_listener(ListenAddress("tcp", "192.0.2.1", 0))  # TEST-NET-1, never local
    assert str(info.value) == "192.0.2.1:0: address not available on this host"


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (errno.EADDRINUSE, "address already in use"),
        (errno.EACCES, "permission denied"),
        (errno.EADDRNOTAVAIL, "address not available on this host"),
        (errno.EMFILE, "too many open files"),
    ],
    ids=["inuse", "acces", "notavail", "fallback"],
)
def test_describe_error(code: int, reason: str) -> None:
    """Each errno maps to a lowercase reason after the address."""
    exc = OSError(code, os.strerror(code))
    assert describe_error(ListenAddress("tcp", "0.0.0.0", 80), exc) == f"0.0.0.0:80: {reason}"


def test_privileged_port_is_permission_denied() -> None:
    """An unprivileged user binding port 80 gets '0.0.0.0:80: permission denied'."""
    unprivileged_start = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    if unprivileged_start <= 80:
        pytest.skip("this network namespace lets anyone bind port 80")
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: drop root if we have it, try port 80, report the line
        try:
            "x".encode("idna")  # getaddrinfo's lazy codec import, while the stdlib is readable
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            bind_listener(ListenAddress("tcp", "0.0.0.0", 80)).close()
            os.write(write_fd, b"bound")
        except BaseException as exc:  # the line, or what went wrong, for the assert below
            os.write(write_fd, (str(exc) if isinstance(exc, ListenError) else repr(exc)).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        readable, _, _ = select.select([pipe], [], [], 10)
        line = pipe.read().decode() if readable else "timeout"
    os.waitpid(pid, 0)
    assert line == "0.0.0.0:80: permission denied"


def test_unix_socket_gets_mode_and_accepts(short_dir: str) -> None:
    """A Unix listener is chmod'ed to its mode, accepts, and removes its file on close."""
    path = os.path.join(short_dir, "app.sock")
    listener = bind_listener(parse_listen(f"unix:{path}?mode=0660", environ={}))
    try:
        st = os.stat(path)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o660
        assert str(listener) == f"unix:{path}"
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(5)
            client.connect(path)
            _accept(listener.sock).close()
    finally:
        listener.close()
    assert not os.path.exists(path)


def test_stale_unix_file_is_replaced(short_dir: str) -> None:
    """A socket file nobody listens on is removed and bound afresh."""
    path = os.path.join(short_dir, "stale.sock")
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(path)  # bound, never listening, then closed: a stale file
    assert os.path.exists(path)
    listener = bind_listener(ListenAddress("unix", path=path))
    try:
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(5)
            client.connect(path)
    finally:
        listener.close()


def test_live_unix_socket_is_refused(short_dir: str) -> None:
    """A socket file someone accepts on is 'address already in use' and left alone."""
    path = os.path.join(short_dir, "live.sock")
    with socket.socket(socket.AF_UNIX) as live:
        live.bind(path)
        live.listen()
        with pytest.raises(ListenError) as info:
            bind_listener(ListenAddress("unix", path=path))
        assert str(info.value) == f"unix:{path}: address already in use"
        assert os.path.exists(path)


def test_unix_path_that_is_a_file_is_refused(short_dir: str) -> None:
    """A regular file at the socket path is never deleted."""
    path = os.path.join(short_dir, "data")
    Path(path).write_text("keep me")
    with pytest.raises(ListenError, match="file exists and is not a socket"):
        bind_listener(ListenAddress("unix", path=path))
    assert Path(path).read_text() == "keep me"


def test_unix_missing_directory(short_dir: str) -> None:
    """A socket path in a missing directory is 'no such directory'."""
    path = os.path.join(short_dir, "nope", "x.sock")
    with pytest.raises(ListenError) as info:
        bind_listener(ListenAddress("unix", path=path))
    assert str(info.value) == f"unix:{path}: no such directory"


def _accepted_per_listener(raws: list[_socket.socket], total: int, deadline: float) -> list[int]:
    """Accept from every socket until `total` connections arrived or the deadline passed."""
    socks = [_wrap(raw) for raw in raws]
    counts = [0] * len(socks)
    try:
        while sum(counts) < total and time.monotonic() < deadline:
            readable, _, _ = select.select(socks, [], [], 0.2)
            for sock in readable:
                conn, _ = sock.accept()
                conn.close()
                counts[socks.index(sock)] += 1
    finally:
        for sock in socks:
            sock.close()
    return counts


def test_reuseport_sockets_share_a_port_and_spread_connections() -> None:
    """N SO_REUSEPORT sockets bind one port and the kernel spreads 200 connects over all."""
    slots = 4
    app = bind_app_listeners(
        [ListenAddress("tcp", "127.0.0.1", 0)], "reuseport", range(slots), backlog=256
    )
    try:
        socks = [app.per_slot[slot][0].sock for slot in range(slots)]
        port = socks[0].getsockname()[1]
        assert {s.getsockname() for s in socks} == {("127.0.0.1", port)}
        assert len({s.fileno() for s in socks}) == slots
        assert app.shared == []
        counts = [0] * slots
        deadline = time.monotonic() + 10
        for _ in range(4):  # 4 batches of 50 keep the client fds bounded
            clients = [_connect(port) for _ in range(50)]
            batch = _accepted_per_listener(socks, 50, deadline)
            counts = [a + b for a, b in zip(counts, batch, strict=True)]
            for client in clients:
                client.close()
        assert sum(counts) == 200
        assert all(count > 0 for count in counts), counts
    finally:
        app.close()


def test_shared_mode_gives_every_slot_the_same_fds(short_dir: str) -> None:
    """In shared mode every slot inherits the same sockets in `listen:` order."""
    path = os.path.join(short_dir, "s.sock")
    addresses = [ListenAddress("tcp", "127.0.0.1", 0), ListenAddress("unix", path=path)]
    app = bind_app_listeners(addresses, "shared", range(3))
    try:
        port = app.addresses[0].port
        assert port > 0
        fds = [listener.fileno() for listener in app.shared]
        assert app.fds_for_slot(0) == app.fds_for_slot(2) == fds
        assert app.names_for_slot(1) == [f"127.0.0.1_{port}", f"unix_{path}"]
        app.ensure_slot(7)  # no-op in shared mode
        app.release_slot(0)  # no-op in shared mode
        assert app.fds_for_slot(7) == fds
    finally:
        app.close()
    assert not os.path.exists(path)


def test_reuseport_slots_keep_order_and_scale(short_dir: str) -> None:
    """Reuseport slots get their own TCP socket, share the Unix one, and scale up and down."""
    path = os.path.join(short_dir, "r.sock")
    addresses = [ListenAddress("unix", path=path), ListenAddress("tcp", "127.0.0.1", 0)]
    app = bind_app_listeners(addresses, "reuseport", [0, 1])
    try:
        port = app.addresses[1].port
        unix_fd = app.shared[0].fileno()
        fds0, fds1 = app.fds_for_slot(0), app.fds_for_slot(1)
        assert fds0[0] == fds1[0] == unix_fd
        assert fds0[1] != fds1[1]
        assert app.names_for_slot(1) == [f"unix_{path}", f"127.0.0.1_{port}"]
        with pytest.raises(KeyError):
            app.fds_for_slot(2)
        app.ensure_slot(2)
        assert app.per_slot[2][0].address.port == port
        app.ensure_slot(2)  # idempotent
        assert len(app.per_slot[2]) == 1
        closed = app.per_slot[1][0].sock
        app.release_slot(1)
        assert closed.fileno() == -1
        assert sorted(app.per_slot) == [0, 2]
        with _connect(port):  # slots 0 and 2 still take connections on the port
            pass
    finally:
        app.close()
    assert app.per_slot == {}
    assert app.shared == []


def test_reuseport_with_no_slots_fixes_the_port_on_first_scale_up() -> None:
    """With no slots at start, port 0 is chosen by the first slot and reused by the next."""
    app = bind_app_listeners([ListenAddress("tcp", "127.0.0.1", 0)], "reuseport", [])
    try:
        app.ensure_slot(0)
        app.ensure_slot(1)
        ports = {app.per_slot[s][0].address.port for s in (0, 1)}
        assert len(ports) == 1
        assert ports != {0}
    finally:
        app.close()


def test_bind_app_listeners_is_all_or_nothing() -> None:
    """When one address fails, the ones already bound are closed before the error."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]
        addresses = [
            ListenAddress("tcp", "127.0.0.1", free),
            ListenAddress("tcp", "127.0.0.1", busy),
        ]
        with pytest.raises(ListenError, match=f"127.0.0.1:{busy}: address already in use"):
            bind_app_listeners(addresses, "shared", [0])
    listener = bind_listener(ListenAddress("tcp", "127.0.0.1", free))  # was released
    listener.close()


def test_listener_survives_being_dup_ed_into_a_child() -> None:
    """A child that gets the listener as fd 3 accepts on it (the spawner's hand-off)."""
    listener = bind_listener(ListenAddress("tcp", "127.0.0.1", 0))
    code = (
        "import socket\n"
        "s = socket.socket(fileno=3)\n"
        "c, _ = s.accept()\n"
        "c.sendall(b'hello from fd 3')\n"
        "c.close()\n"
    )
    fd = listener.fileno()

    def dup_to_3() -> None:
        os.dup2(fd, 3)  # dup2 clears FD_CLOEXEC on the new fd

    try:
        with subprocess.Popen(
            [sys.executable, "-c", code], preexec_fn=dup_to_3, pass_fds=(3,)
        ) as child:
            with _connect(listener.address.port) as client:
                assert client.recv(100) == b"hello from fd 3"
            assert child.wait(timeout=10) == 0
    finally:
        listener.close()


@pytest.mark.parametrize(
    ("count", "names", "expected"),
    [
        (0, [], {}),
        (1, ["web"], {"LISTEN_FDS": "1", "LISTEN_FDNAMES": "web"}),
        (2, ["a", "b"], {"LISTEN_FDS": "2", "LISTEN_FDNAMES": "a:b"}),
    ],
    ids=["none", "one", "two"],
)
def test_listen_env(count: int, names: list[str], expected: dict[str, str]) -> None:
    """listen_env gives LISTEN_FDS/LISTEN_FDNAMES and never LISTEN_PID."""
    assert listen_env(count, names) == expected


@pytest.mark.parametrize(
    ("count", "names"), [(2, ["a"]), (1, ["a:b"])], ids=["count-mismatch", "colon-in-name"]
)
def test_listen_env_rejects(count: int, names: list[str]) -> None:
    """A count that does not match the names, or a name with ':', is a bug: ValueError."""
    with pytest.raises(ValueError, match=r"fds but|cannot contain"):
        listen_env(count, names)


@pytest.mark.parametrize(("text", "expected"), [("0\n", False), ("1\n", True), ("", False)])
def test_migrate_req_enabled_reads_the_sysctl(tmp_path: Path, text: str, expected: bool) -> None:
    sysctl = tmp_path / "tcp_migrate_req"
    sysctl.write_text(text)
    assert migrate_req_enabled(str(sysctl)) is expected


def test_migrate_req_unreadable_is_off(tmp_path: Path) -> None:
    assert migrate_req_enabled(str(tmp_path / "missing")) is False
