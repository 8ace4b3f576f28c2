"""Pre-bound listeners: parsed from `listen:`, bound once by the master, inherited by workers.

Address forms accepted by `parse_listen` (the README quotes this list):

- `HOST:PORT` with an IPv4 literal or a host name: `127.0.0.1:8000`, `0.0.0.0:8000`,
  `localhost:8000`. Names are resolved to IPv4 at bind time; write `[addr]:PORT` for IPv6.
- `[V6]:PORT`: `[::]:8000`, `[::1]:8000`; bound with `IPV6_V6ONLY`, so `[::]` does not
  also take the IPv4 port (list `0.0.0.0:PORT` too for dual stack).
- `:PORT`: the port alone. **Binding rule:** the project listens on 127.0.0.1 unless told
  to bind wider, so `:PORT` means `127.0.0.1:PORT`, except on Heroku (the `DYNO`
  variable is set), where the router must reach `$PORT` and `:PORT` means
  `0.0.0.0:PORT`. Writing the host (`0.0.0.0:$PORT`) always binds exactly that host.
- `unix:/path` and `unix:/path?mode=0660`: a Unix stream socket, chmod'ed to the octal
  mode when given (otherwise the umask decides). A stale socket file (nothing accepts on
  it) is replaced; a live one is "address already in use"; any other file is refused.

The port may be a number (0 picks a free port) or `$VAR` / `${VAR}` read from the
environment; `$PORT` defaults to 3000 when `PORT` is unset, as in pm2.

Sharing (`socket_sharing:`): `shared` binds one socket per address that every worker
inherits; `reuseport` binds one `SO_REUSEPORT` socket per instance slot per TCP address,
all held by the master (Unix addresses are always shared: the kernel does not balance
them). Closing a slot's socket resets the connections queued on it unless
`net.ipv4.tcp_migrate_req=1` (Linux 5.14+, per network namespace, default 0), with which
the kernel moves them to another listener of the port; `migrate_req_enabled` reads it,
nothing here changes it.

Sockets are created non-inheritable and left in blocking mode (O_NONBLOCK is shared by
every process holding the socket, so each worker picks its own); the spawner dups them
onto fds 3.. of the child and sets `LISTEN_PID` there (see `listen_env`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import socket
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from runtime.config.keys import DEFAULT_PORT
from runtime.errors import RuntimeUserError

ListenKind = Literal["tcp", "tcp6", "unix"]
Sharing = Literal["shared", "reuseport"]

MIGRATE_REQ_SYSCTL = "/proc/sys/net/ipv4/tcp_migrate_req"  # of the reader's network namespace
DEFAULT_BACKLOG = 2048
UNIX_PATH_MAX_BYTES = 107  # sun_path is 108 bytes including the trailing NUL
FDNAME_MAX_CHARS = 255  # systemd's limit for one LISTEN_FDNAMES entry


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """One `listen:` entry; `str()` is its log-ready form."""

    kind: ListenKind
    host: str = ""
    port: int = 0
    path: str = ""
    mode: int | None = None

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        if self.kind == "tcp6":
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"

    @property
    def fd_name(self) -> str:
        """The `LISTEN_FDNAMES` entry: `str()` with colons (the separator) made `_`."""
        return str(self).replace(":", "_")[:FDNAME_MAX_CHARS]


def parse_listen(text: str, *, environ: Mapping[str, str]) -> ListenAddress:
    """Parse one `listen:` entry (forms in the module docstring); ValueError on junk."""
    text = text.strip()
    if text.startswith("unix:"):
        return _parse_unix(text)
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep or not _is_ip(socket.AF_INET6, host):
            raise ValueError(f"expected [IPv6]:PORT, got {text!r}")
        return ListenAddress("tcp6", host=host, port=_parse_port(port_text, text, environ))
    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise ValueError(f"expected HOST:PORT, :PORT or unix:/path, got {text!r}")
    if not host:
        host = "0.0.0.0" if "DYNO" in environ else "127.0.0.1"
    elif ":" in host:
        raise ValueError(f"IPv6 hosts need brackets ([::1]:8000), got {text!r}")
    elif not _host_ok(host):
        raise ValueError(f"bad host {host!r} in {text!r}")
    return ListenAddress("tcp", host=host, port=_parse_port(port_text, text, environ))


_PORT_OR_VAR = re.compile(r"([0-9]+)|\$([A-Za-z_][A-Za-z0-9_]*)|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_OCTAL_MODE = re.compile(r"0?[0-7]{3}")


def _port_or_var(port_text: str) -> tuple[str | None, str | None] | None:
    """`(digits, None)` for `8000`, `(None, NAME)` for `$NAME` or `${NAME}`, else None."""
    match = _PORT_OR_VAR.fullmatch(port_text)
    if match is None:
        return None
    digits, name, braced = match.groups()
    return digits, name or braced


def _parse_port(port_text: str, text: str, environ: Mapping[str, str]) -> int:
    parts = _port_or_var(port_text)
    if parts is None:
        raise ValueError(f"expected a port number or $VAR, got {text!r}")
    number, var = parts
    if var is not None:
        number = environ.get(var, str(DEFAULT_PORT) if var == "PORT" else None)
        if number is None:
            raise ValueError(f"{text!r}: ${var} is not set")
        if not (number.isascii() and number.isdigit()):
            raise ValueError(f"{text!r}: ${var} is not a port number: {number!r}")
    port = int(number or "")
    if port > 65535:
        raise ValueError(f"port out of range 0-65535 in {text!r}")
    return port


def _host_ok(host: str) -> bool:
    """ASCII letters, digits, dots and dashes, starting and ending with a letter or digit."""
    return _HOST.fullmatch(host) is not None


def _parse_unix(text: str) -> ListenAddress:
    path, sep, query = text[len("unix:") :].partition("?")
    if not path or path.startswith("@"):
        raise ValueError(f"expected unix:/path (abstract sockets are not supported), got {text!r}")
    if len(os.fsencode(path)) > UNIX_PATH_MAX_BYTES:
        raise ValueError(f"unix socket path longer than {UNIX_PATH_MAX_BYTES} bytes: {path!r}")
    mode = None
    if sep:
        key, _, value = query.partition("=")
        if key != "mode" or _OCTAL_MODE.fullmatch(value) is None:
            raise ValueError(f"expected unix:/path?mode=0660 (octal), got {text!r}")
        mode = int(value, 8)
    return ListenAddress("unix", path=path, mode=mode)


def _is_ip(family: int, host: str) -> bool:
    try:
        socket.inet_pton(family, host)
    except (OSError, ValueError):
        return False
    return True


class ListenError(RuntimeUserError):
    """A listener could not be bound; `str()` is one line naming the address."""


class Listener:
    """One bound, listening socket held by the master for its whole life."""

    def __init__(self, address: ListenAddress, sock: socket.socket, name: str) -> None:
        self.address = address  # with the real port when 0 was asked for
        self.sock = sock
        self.name = name  # its LISTEN_FDNAMES entry
        self._inode: tuple[int, int] | None = None

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        """Close the socket and, for Unix sockets, remove the file if it is still ours."""
        if self.address.kind == "unix" and self._inode is not None:
            with contextlib.suppress(OSError):
                st = os.stat(self.address.path)
                if (st.st_dev, st.st_ino) == self._inode:
                    os.unlink(self.address.path)
            self._inode = None
        self.sock.close()

    def __str__(self) -> str:
        return str(self.address)

    def __repr__(self) -> str:
        return f"<Listener {self.address} fd={self.sock.fileno()}>"


def bind_listener(
    addr: ListenAddress,
    *,
    reuseport: bool = False,
    backlog: int = DEFAULT_BACKLOG,
    sole: bool = False,
) -> Listener:
    """Bind and listen on `addr`; raise ListenError with one clear line on failure.

    `sole` (a reuseport socket that starts its port's group): refuse a port that another
    socket listens on, as a plain bind would. Any `SO_REUSEPORT` socket of the same uid
    may join a listening group, so a second runtime started on the same port would share
    it silently, and the steering program it attaches would decide for both.
    """
    if addr.kind == "unix":
        return _bind_unix(addr, backlog)
    family = socket.AF_INET6 if addr.kind == "tcp6" else socket.AF_INET
    try:
        infos = socket.getaddrinfo(
            addr.host, addr.port, family, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ListenError(f"{addr}: cannot resolve {addr.host!r}: {exc.strerror}") from exc
    sockaddr = infos[0][4]
    if sole and reuseport and addr.port != 0:  # a port 0 is never one in use
        with _tcp_socket(family, reuseport=False) as probe:
            try:
                probe.bind(sockaddr)
            except OSError as exc:
                raise ListenError(describe_error(addr, exc)) from exc
    sock = _tcp_socket(family, reuseport=reuseport)
    try:
        sock.bind(sockaddr)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ListenError(describe_error(addr, exc)) from exc
    bound = replace(addr, port=sock.getsockname()[1])
    return Listener(bound, sock, bound.fd_name)


def _tcp_socket(family: socket.AddressFamily, *, reuseport: bool) -> socket.socket:
    """A TCP socket with the master's options, not bound yet (SO_REUSEADDR: a port whose
    old connections wait in TIME_WAIT is free)."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    except OSError:
        sock.close()
        raise
    return sock


def _bind_unix(addr: ListenAddress, backlog: int) -> Listener:
    _remove_stale_unix(addr)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(addr.path)
        st = os.stat(addr.path)
        if addr.mode is not None:
            # After bind: with any usual umask the file starts at least this tight.
            os.chmod(addr.path, addr.mode)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ListenError(describe_error(addr, exc)) from exc
    listener = Listener(addr, sock, addr.fd_name)
    listener._inode = (st.st_dev, st.st_ino)
    return listener


def _remove_stale_unix(addr: ListenAddress) -> None:
    """Unlink a socket file nobody accepts on; refuse a live socket or any other file."""
    try:
        st = os.lstat(addr.path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ListenError(describe_error(addr, exc)) from exc
    if not stat.S_ISSOCK(st.st_mode):
        raise ListenError(f"{addr}: file exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(addr.path)
    except (ConnectionRefusedError, FileNotFoundError):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(addr.path)
        return
    except OSError as exc:
        raise ListenError(describe_error(addr, exc)) from exc
    finally:
        probe.close()
    raise ListenError(f"{addr}: address already in use")


_ERRNO_TEXT = {
    errno.EADDRINUSE: "address already in use",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EADDRNOTAVAIL: "address not available on this host",
    errno.ENOENT: "no such directory",
    errno.ETIMEDOUT: "an existing socket does not answer",
}


def describe_error(addr: ListenAddress, exc: OSError) -> str:
    """The one-line message for a bind failure: `<address>: <reason>`."""
    reason = _ERRNO_TEXT.get(exc.errno or 0) or (exc.strerror or str(exc)).lower()
    return f"{addr}: {reason}"


def migrate_req_enabled(path: str = MIGRATE_REQ_SYSCTL) -> bool:
    """Whether closing a listener moves its queued connections to the port's other
    listeners instead of resetting them (`net.ipv4.tcp_migrate_req`); False if unreadable."""
    try:
        with open(path, "rb") as f:
            return f.read(16).strip() not in (b"", b"0")
    except OSError:
        return False


def listen_env(fds_count: int, names: Sequence[str]) -> dict[str, str]:
    """`LISTEN_FDS` and `LISTEN_FDNAMES` for a worker (the spawner adds `LISTEN_PID`)."""
    if len(names) != fds_count:
        raise ValueError(f"{fds_count} fds but {len(names)} names")
    if any(":" in name for name in names):
        raise ValueError(f"LISTEN_FDNAMES entries cannot contain ':': {list(names)!r}")
    if fds_count == 0:
        return {}
    return {"LISTEN_FDS": str(fds_count), "LISTEN_FDNAMES": ":".join(names)}
