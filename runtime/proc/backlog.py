"""Accept-queue depth of the master's own listeners: connections waiting for a worker.

The master holds every listening socket, so it can read what no worker can see: how many
connections the kernel has completed and queued that nobody has accepted yet. That is the
load signal of `runtime_listen_backlog`, and the "is this socket drained" test a rolling
reload needs before it stops a worker it has steered away from.

Kernel facts, checked on Linux 6.18 (`tests/integration/test_backlog.py`, and `ss -ltn`,
whose Recv-Q/Send-Q columns read the same two numbers):

- TCP: `getsockopt(IPPROTO_TCP, TCP_INFO)` on a listener fills `tcpi_unacked` with the
  accept queue's length (`sk_ack_backlog`) and `tcpi_sacked` with its limit
  (`sk_max_ack_backlog`: `listen()`'s backlog capped by `net.core.somaxconn`). The kernel
  queues up to limit + 1 before it drops SYNs. Handshakes not yet completed (SYN_RECV)
  are not counted.
- Unix stream: no socket option tells, but sock_diag does: a `SOCK_DIAG_BY_FAMILY` request
  for AF_UNIX with the listener's inode and `UDIAG_SHOW_RQLEN` answers `UNIX_DIAG_RQLEN`,
  whose `rqueue` is the number of pending connections and `wqueue` the limit for a
  listener (needs `CONFIG_UNIX_DIAG`; `unix_backlog` returns None without it). The kernel
  finds the socket by scanning its Unix socket table, so the cost grows with the number of
  Unix sockets on the host.
"""

from __future__ import annotations

import os
import socket
import struct
from typing import Protocol

TCP_LISTEN = 10  # tcpi_state of a listening socket (include/net/tcp_states.h)
# struct tcp_info up to tcpi_sacked: 8 one-byte fields, then rto, ato, snd_mss, rcv_mss,
# unacked, sacked; the layout is fixed ABI, later kernels only append fields.
TCP_INFO_HEAD = struct.Struct("=8B6I")

NETLINK_SOCK_DIAG = 4  # linux/netlink.h (socket.NETLINK_SOCK_DIAG is not exported)
SOCK_DIAG_BY_FAMILY = 20  # linux/sock_diag.h
NLM_F_REQUEST = 0x01
NLMSG_ERROR = 0x02
NLMSG_DONE = 0x03
UDIAG_SHOW_RQLEN = 0x10  # linux/unix_diag.h
UNIX_DIAG_RQLEN = 4
NO_COOKIE = 0xFFFF_FFFF  # INET_DIAG_NOCOOKIE: look the socket up by inode alone
NLMSG_HEADER = struct.Struct("=IHHII")  # len, type, flags, seq, pid
UNIX_DIAG_REQ = struct.Struct("=BBHIII2I")  # family, protocol, pad, states, ino, show, cookie
UNIX_DIAG_MSG = struct.Struct("=BBBBI2I")  # family, type, state, pad, ino, cookie
NLATTR_HEADER = struct.Struct("=HH")  # len, type
RQLEN = struct.Struct("=II")  # rqueue, wqueue
DIAG_REPLY_BYTES = 8192
DIAG_TIMEOUT_S = 1.0  # the kernel answers synchronously; this only bounds a surprise


class Sockopts(Protocol):
    """What reading a TCP backlog needs: `socket.socket` and the master's raw sockets fit."""

    def getsockopt(self, level: int, optname: int, buflen: int, /) -> bytes: ...


class HasFileno(Protocol):
    """Anything that names a socket by file descriptor."""

    def fileno(self) -> int: ...


def tcp_backlog(sock: Sockopts) -> tuple[int, int]:
    """(connections queued for accept now, the queue's limit) of a TCP listener.

    ValueError when `sock` is not listening: a connected socket's TCP_INFO means otherwise.
    """
    raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_HEAD.size)
    fields = TCP_INFO_HEAD.unpack(raw[: TCP_INFO_HEAD.size])
    if fields[0] != TCP_LISTEN:
        raise ValueError(f"not a listening socket (tcpi_state {fields[0]})")
    return fields[12], fields[13]


def unix_backlog(sock: HasFileno, *, diag: socket.socket | None = None) -> tuple[int, int] | None:
    """(connections queued for accept now, the limit) of a Unix stream listener, or None.

    None when the kernel cannot tell (no sock_diag for Unix sockets, or `sock` is not a
    listening Unix socket). Pass a reusable `diag` socket from `open_diag()` to save the
    socket setup on each call; without one a socket is opened and closed for this call.
    """
    inode = os.fstat(sock.fileno()).st_ino
    if diag is not None:
        return _query_unix(diag, inode)
    try:
        own = open_diag()
    except OSError:
        return None
    with own:
        return _query_unix(own, inode)


def open_diag() -> socket.socket:
    """A sock_diag netlink socket for `unix_backlog`, owned and closed by the caller."""
    diag = socket.socket(
        socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG
    )
    diag.settimeout(DIAG_TIMEOUT_S)
    return diag


def _query_unix(diag: socket.socket, inode: int) -> tuple[int, int] | None:
    request = UNIX_DIAG_REQ.pack(
        socket.AF_UNIX,
        0,
        0,
        1 << TCP_LISTEN,
        inode & 0xFFFF_FFFF,
        UDIAG_SHOW_RQLEN,
        NO_COOKIE,
        NO_COOKIE,
    )
    header = NLMSG_HEADER.pack(
        NLMSG_HEADER.size + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, inode, 0
    )
    try:
        diag.send(header + request)
        reply = diag.recv(DIAG_REPLY_BYTES)
    except OSError:
        return None
    return _parse_reply(reply, inode)


def _parse_reply(reply: bytes, inode: int) -> tuple[int, int] | None:
    """The RQLEN attribute of the diag message for `inode`, if the reply carries one."""
    offset = 0
    while offset + NLMSG_HEADER.size <= len(reply):
        length, kind, _flags, _seq, _pid = NLMSG_HEADER.unpack_from(reply, offset)
        if length < NLMSG_HEADER.size or kind in (NLMSG_ERROR, NLMSG_DONE):
            return None
        body = offset + NLMSG_HEADER.size
        _family, _type, state, _pad, ino, _c0, _c1 = UNIX_DIAG_MSG.unpack_from(reply, body)
        if ino == inode & 0xFFFF_FFFF and state == TCP_LISTEN:
            return _rqlen(reply, body + UNIX_DIAG_MSG.size, offset + length)
        offset += _align4(length)
    return None


def _rqlen(reply: bytes, start: int, end: int) -> tuple[int, int] | None:
    offset = start
    while offset + NLATTR_HEADER.size <= end:
        length, kind = NLATTR_HEADER.unpack_from(reply, offset)
        if length < NLATTR_HEADER.size:
            return None
        if kind == UNIX_DIAG_RQLEN and length >= NLATTR_HEADER.size + RQLEN.size:
            queued, limit = RQLEN.unpack_from(reply, offset + NLATTR_HEADER.size)
            return queued, limit
        offset += _align4(length)
    return None


def _align4(length: int) -> int:
    return (length + 3) & ~3
