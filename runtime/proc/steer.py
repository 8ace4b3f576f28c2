"""Steering a reuseport group: new connections go only to the sockets whose worker is live.

In `reuseport` sharing mode every slot has its own `SO_REUSEPORT` listener on one port,
and the kernel picks one socket of the group per incoming SYN. Left alone it hashes over
every socket, so a slot whose worker is stopped, errored or backing off swallows its share
of connections. A classic BPF program attached to the group (`SO_ATTACH_REUSEPORT_CBPF`)
returns the *group index* of the socket to use instead; this module builds that program,
mirrors the kernel's index array, and attaches or detaches the program.

Kernel facts this module relies on, checked on Linux 6.18 with real sockets
(`tests/unit/test_steer.py`) and in `net/core/sock_reuseport.c`:

- A TCP socket joins the group at `listen()`, not at `bind()`, and is appended at the end:
  the indices are the listen order.
- A socket leaves at `close()` or `shutdown(SHUT_RD)` of the listener
  (`reuseport_detach_sock`): the **last** socket moves into the freed index, nothing else
  shifts. With `tcp_migrate_req=1` the leaving socket goes to a "closed section" that
  selection never sees, so the listening indices behave the same. A shut-down listener
  keeps its fd and, if it was bound to an explicit port, the port; `listen()` again
  appends it. One bound to port 0 gives the port back and relistens on a new one.
- The program belongs to the group, not to the socket it was attached through: it outlives
  that socket's close, and re-attaching replaces it at once. When the last socket leaves,
  the kernel frees the group *with its program*; sockets that listen again form a new
  group with no program, which the owner must attach again.
- Attaching through a socket that has not listened yet gives it a private group, and its
  later `listen()` fails with EADDRINUSE; `attach` therefore refuses non-listening sockets.
- A return value outside `0..len(group)-1` is not an error: the kernel falls back to its
  hash over every socket of the group (`reuseport_select_sock`, "invalid bpf result").
  No cBPF return value refuses or drops a connection, so "no live worker at all" cannot be
  expressed as a program (see `spread_program`); with every listener of the port shut
  down or closed, clients get ECONNREFUSED.
- A failed attach leaves the previous program in place. The kernel also charges the
  program, once converted to eBPF, against `net.core.optmem_max` (per network namespace):
  131072 here; at the older default of 20480 the longest accepted program measured 2545
  instructions, and a longer one fails with ENOMEM.

Spreading source: `SKF_AD_RANDOM` (a per-CPU pseudo-random u32 per SYN). Measured with
`bench/steer_spread.py` on loopback, 6,000 fresh connections over 4 sockets: random,
`SKF_AD_RXHASH` and a mixed 4-tuple hash all spread within a few percent of even, the raw
source port does not (ephemeral ports step by 2). RXHASH is even on loopback only because
the SYN carries the client socket's random `sk_txhash`; the program reads `skb->hash` as
it is, which from a NIC without receive hashing can be 0 (from the source, not measurable
on loopback) and would send everything to one socket. Random holds anywhere.
A SYN is steered once (its request socket is found by the later ACK), so per-packet
randomness costs no affinity.
"""

from __future__ import annotations

import ctypes
import errno
import itertools
import os
import socket
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from typing import Any, Generic, Protocol, TypeVar

Instruction = tuple[int, int, int, int]  # (code, jt, jf, k) as in struct sock_filter

SO_ATTACH_REUSEPORT_CBPF = 51  # asm-generic/socket.h
SO_DETACH_REUSEPORT_BPF = 68  # since Linux 5.3; 52 is SO_ATTACH_REUSEPORT_EBPF
BPF_MAXINSNS = 4096  # the kernel's limit on a classic BPF program's length
MAX_GROUP_SOCKETS = 65535  # struct sock_reuseport counts sockets in a u16

# Classic BPF opcodes (linux/bpf_common.h): class | size/op | source.
BPF_LD_W_ABS = 0x00 | 0x00 | 0x20  # A = u32 at absolute offset k (or ancillary data)
BPF_ALU_ADD_K = 0x04 | 0x00 | 0x00  # A += k (32-bit, wraps)
BPF_ALU_MUL_K = 0x04 | 0x20 | 0x00  # A *= k
BPF_ALU_MOD_K = 0x04 | 0x90 | 0x00  # A %= k
BPF_JMP_JGT_K = 0x05 | 0x20 | 0x00  # pc += (A > k) ? jt : jf
BPF_RET_K = 0x06 | 0x00  # return k
BPF_RET_A = 0x06 | 0x10  # return A
SKF_AD_OFF = -0x1000  # ancillary data lives at negative offsets from here
SKF_AD_RXHASH = 32
SKF_AD_RANDOM = 56
U32_MASK = 0xFFFF_FFFF

LOAD_RANDOM: tuple[Instruction, ...] = (
    (BPF_LD_W_ABS, 0, 0, (SKF_AD_OFF + SKF_AD_RANDOM) & U32_MASK),
)
LOAD_RXHASH: tuple[Instruction, ...] = (
    (BPF_LD_W_ABS, 0, 0, (SKF_AD_OFF + SKF_AD_RXHASH) & U32_MASK),
)

K = TypeVar("K", bound=Hashable)


class ProgramTooLarge(ValueError):
    """The index set needs more instructions than a classic BPF program may have."""


def spread_program(
    indices: Iterable[int], *, load: Sequence[Instruction] = LOAD_RANDOM
) -> list[Instruction]:
    """A program that sends each new connection to one of `indices`, evenly.

    `load` leaves a u32 in A (random by default); A % n picks a position in the sorted
    set, and the position becomes the index as `stride * position + steps`, where the
    stride is the most common gap between neighbours and each other gap is one step, a
    `jgt`/`add` pair. Jumps only ever skip one instruction, so the 8-bit jump offsets
    never overflow. Length is at most 5 + 2 * steps:
    - steps <= the number of runs of absent indices between the smallest and the
      largest, so a set with at most 1269 such runs fits even `optmem_max` = 20480
      (measured: 2542 instructions);
    - steps <= (largest - smallest) / 3, so any set of indices below 6137 fits in 4096
      instructions (2735 at most for a 4097-socket group, MAX_INSTANCES + 1).
    Beyond that `ProgramTooLarge` is raised, never a partial program.
    An empty set raises ValueError: no return value refuses connections (see module doc).
    """
    wanted = sorted(set(indices))
    if not wanted:
        raise ValueError("no socket index to steer to: a program cannot refuse connections")
    if wanted[0] < 0 or wanted[-1] >= MAX_GROUP_SOCKETS:
        raise ValueError(f"group indices run from 0 to {MAX_GROUP_SOCKETS - 1}, got {wanted}")
    if len(wanted) == 1:
        return [(BPF_RET_K, 0, 0, wanted[0])]
    gaps = [b - a for a, b in itertools.pairwise(wanted)]
    stride = min(Counter(gaps).most_common(), key=lambda item: (-item[1], item[0]))[0]
    program = [*load, (BPF_ALU_MOD_K, 0, 0, len(wanted))]
    if stride != 1:
        program.append((BPF_ALU_MUL_K, 0, 0, stride))
    if wanted[0]:
        program.append((BPF_ALU_ADD_K, 0, 0, wanted[0]))
    for position, gap in enumerate(gaps):
        if gap != stride:
            # A equals wanted[position] exactly when the position is <= this one, and
            # grows with the position, so `A > wanted[position]` means "later position".
            program.append((BPF_JMP_JGT_K, 0, 1, wanted[position]))
            program.append((BPF_ALU_ADD_K, 0, 0, (gap - stride) & U32_MASK))
    program.append((BPF_RET_A, 0, 0, 0))
    if len(program) > BPF_MAXINSNS:
        raise ProgramTooLarge(
            f"{len(wanted)} indices need {len(program)} instructions (limit {BPF_MAXINSNS})"
        )
    return program


def run_program(program: Sequence[Instruction], a_in: int) -> int:
    """What `program` returns when its load yields `a_in`: the subset `spread_program` emits.

    A reference interpreter for tests and reasoning; the kernel runs the real thing.
    """
    acc = 0
    pc = 0
    while True:
        code, jt, jf, k = program[pc]
        pc += 1
        if code == BPF_LD_W_ABS:
            acc = a_in & U32_MASK
        elif code == BPF_ALU_MOD_K:
            acc %= k
        elif code == BPF_ALU_MUL_K:
            acc = (acc * k) & U32_MASK
        elif code == BPF_ALU_ADD_K:
            acc = (acc + k) & U32_MASK
        elif code == BPF_JMP_JGT_K:
            pc += jt if acc > k else jf
        elif code == BPF_RET_K:
            return k
        elif code == BPF_RET_A:
            return acc
        else:
            raise ValueError(f"opcode {code:#x} is outside what spread_program emits")


class ReuseportGroup(Generic[K]):
    """The kernel's index array for one reuseport group, as sockets listen and close.

    Keys are whatever names a socket for the owner (a slot number, a Listener). Call
    `join` right after the socket's `listen()` and `leave` right after its `close()` (or
    `shutdown(SHUT_RD)`), in the order they happen; a group that becomes empty has lost
    its program in the kernel, which `leave` reports.
    """

    def __init__(self) -> None:
        self._keys: list[K] = []

    def join(self, key: K) -> int:
        """Record a socket that just listened; it takes the next index."""
        if key in self._keys:
            raise ValueError(f"{key!r} is already in the group")
        self._keys.append(key)
        return len(self._keys) - 1

    def leave(self, key: K) -> bool:
        """Record a socket that just closed: the last socket moves into its index.

        Returns True when the group is now empty (the kernel freed it and its program).
        """
        position = self.index_of(key)
        last = self._keys.pop()
        if position < len(self._keys):
            self._keys[position] = last
        return not self._keys

    def index_of(self, key: K) -> int:
        """The index the kernel gives `key`'s socket now; ValueError if not in the group."""
        try:
            return self._keys.index(key)
        except ValueError:
            raise ValueError(f"{key!r} is not in the group") from None

    def members(self) -> tuple[K, ...]:
        """The members in index order."""
        return tuple(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def program_for(self, live: Iterable[K]) -> list[Instruction]:
        """A spreading program over the sockets of `live` (ValueError if `live` is empty)."""
        return spread_program(self.index_of(key) for key in live)


class ListeningSocket(Protocol):
    """What steering needs of a socket: `socket.socket` and the master's raw sockets fit."""

    def fileno(self) -> int: ...
    def getsockname(self) -> Any: ...
    def getsockopt(self, level: int, optname: int, /) -> int: ...
    def setsockopt(self, level: int, optname: int, value: int | bytes, /) -> None: ...


class SteerError(OSError):
    """Attaching or detaching a reuseport program failed; the message says on which socket."""


class _SockFilter(ctypes.Structure):
    _fields_ = (
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    )


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter)))


def attach(sock: ListeningSocket, program: Sequence[Instruction]) -> None:
    """Attach `program` to the reuseport group of the listening socket `sock`.

    It replaces any program already on the group, at once, for every socket in it.
    """
    if not 0 < len(program) <= BPF_MAXINSNS:
        raise ValueError(f"a program has 1 to {BPF_MAXINSNS} instructions, got {len(program)}")
    _check_listening_reuseport(sock, "steer")
    table = (_SockFilter * len(program))(*(_SockFilter(*insn) for insn in program))
    fprog = _SockFprog(len(program), ctypes.cast(table, ctypes.POINTER(_SockFilter)))
    try:
        # bytes(fprog) carries the table's address; `table` stays alive until we return
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, bytes(fprog))
    except OSError as exc:
        hint = " (the program is over net.core.optmem_max)" if exc.errno == errno.ENOMEM else ""
        raise SteerError(
            exc.errno,
            f"cannot attach a {len(program)}-instruction reuseport program to "
            f"{_name(sock)}: {os.strerror(exc.errno or 0)}{hint}",
        ) from exc


def detach(sock: ListeningSocket) -> bool:
    """Remove the group's program (back to the kernel's hash); False if it had none."""
    _check_listening_reuseport(sock, "detach the reuseport program of")
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, 0)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return False
        raise SteerError(
            exc.errno,
            f"cannot detach the reuseport program of {_name(sock)}: {os.strerror(exc.errno or 0)}",
        ) from exc
    return True


def _check_listening_reuseport(sock: ListeningSocket, action: str) -> None:
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT):
        raise SteerError(errno.EINVAL, f"cannot {action} {_name(sock)}: SO_REUSEPORT is not set")
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        raise SteerError(
            errno.EINVAL,
            f"cannot {action} {_name(sock)}: not listening (the group forms at listen)",
        )


def _name(sock: ListeningSocket) -> str:
    """`fd 7 (127.0.0.1:8000)`: the socket as a log line names it."""
    try:
        host, port = sock.getsockname()[:2]
    except (OSError, TypeError, ValueError):
        return f"fd {sock.fileno()}"
    address = f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return f"fd {sock.fileno()} ({address})"
