"""Which spreading source makes a reuseport steering program even, measured on loopback.

    .venv/bin/python bench/steer_spread.py [--sockets 4] [--connections 6000]

One SO_REUSEPORT group of `--sockets` listeners on 127.0.0.1; for each candidate the
program `load; (mix;) mod n; ret a` is attached (via `runtime.proc.steer`) and
`--connections` fresh loopback connections are made in batches; each listener's accept
queue is read with `tcp_backlog` and drained after every batch. Candidates:

- `kernel-hash`: no program, the kernel's own 4-tuple hash (the baseline);
- `random`: `SKF_AD_RANDOM`, a per-CPU pseudo-random u32 (`runtime.proc.steer`'s choice);
- `rxhash`: `SKF_AD_RXHASH`, the skb's flow hash (on loopback: the client's sk_txhash);
- `src-port`: the TCP source port straight from the IP packet (`SKF_NET_OFF + 20`);
- `4-tuple`: addresses and ports xor-ed, then xor-shift / multiply / xor-shift mixed
  (a bare multiply leaves the low bits, which `mod n` uses, stuck: ports step by 2).

Printed per candidate: the count per socket, the largest deviation from an even share,
and Pearson's chi-square with its 1 % critical value (a fair spread stays below it in 99
of 100 runs).
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runtime.proc import steer
from runtime.proc.backlog import tcp_backlog

SKF_NET_OFF = -0x100000  # negative offsets reach the network header (the IP packet)
BPF_TAX = 0x07 | 0x00
BPF_ALU_XOR_X = 0x04 | 0xA0 | 0x08
BPF_ALU_RSH_K = 0x04 | 0x70
BPF_LD_H_ABS = 0x00 | 0x08 | 0x20
GOLDEN_U32 = 0x9E3779B1
BATCH = 300
BACKLOG = 1024
CHI2_CRIT_1PCT = {1: 6.63, 2: 9.21, 3: 11.34, 4: 13.28, 5: 15.09, 6: 16.81, 7: 18.48}


def _net(offset: int) -> int:
    return (SKF_NET_OFF + offset) & 0xFFFF_FFFF


LOAD_SRC_PORT: tuple[steer.Instruction, ...] = ((BPF_LD_H_ABS, 0, 0, _net(20)),)
LOAD_4TUPLE: tuple[steer.Instruction, ...] = (
    (steer.BPF_LD_W_ABS, 0, 0, _net(12)),  # saddr
    (BPF_TAX, 0, 0, 0),
    (steer.BPF_LD_W_ABS, 0, 0, _net(16)),  # daddr
    (BPF_ALU_XOR_X, 0, 0, 0),
    (BPF_TAX, 0, 0, 0),
    (steer.BPF_LD_W_ABS, 0, 0, _net(20)),  # sport << 16 | dport (no IP options on a SYN)
    (BPF_ALU_XOR_X, 0, 0, 0),
    (BPF_TAX, 0, 0, 0),  # then x ^= x >> 16; x *= golden; x ^= x >> 16 (murmur-style)
    (BPF_ALU_RSH_K, 0, 0, 16),
    (BPF_ALU_XOR_X, 0, 0, 0),
    (steer.BPF_ALU_MUL_K, 0, 0, GOLDEN_U32),
    (BPF_TAX, 0, 0, 0),
    (BPF_ALU_RSH_K, 0, 0, 16),
    (BPF_ALU_XOR_X, 0, 0, 0),
)
CANDIDATES: dict[str, Sequence[steer.Instruction] | None] = {
    "kernel-hash": None,
    "random": steer.LOAD_RANDOM,
    "rxhash": steer.LOAD_RXHASH,
    "src-port": LOAD_SRC_PORT,
    "4-tuple": LOAD_4TUPLE,
}


def group(count: int) -> list[socket.socket]:
    """`count` reuseport listeners on one free loopback port, in join order."""
    socks: list[socket.socket] = []
    port = 0
    for _ in range(count):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
        port = sock.getsockname()[1]
        socks.append(sock)
    return socks


def drain(sock: socket.socket) -> None:
    """Accept and close everything queued (server closes first: no client TIME_WAIT)."""
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return
        conn.close()


def measure(socks: list[socket.socket], total: int) -> list[int]:
    """Connections that landed on each socket out of `total` fresh ones."""
    port = socks[0].getsockname()[1]
    counts = [0] * len(socks)
    made = 0
    while made < total:
        batch = min(BATCH, total - made)
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(batch)]
        for i, sock in enumerate(socks):
            counts[i] += tcp_backlog(sock)[0]
            drain(sock)
        for client in clients:
            client.close()
        made += batch
    return counts


def report(name: str, counts: list[int]) -> None:
    total = sum(counts)
    even = total / len(counts)
    chi2 = sum((c - even) ** 2 / even for c in counts)
    worst = max(abs(c - even) for c in counts) / even
    crit = CHI2_CRIT_1PCT.get(len(counts) - 1, float("nan"))
    verdict = "even" if chi2 < crit else "UNEVEN"
    print(
        f"{name:12} {counts!s:32} worst {worst * 100:5.1f}% off even  "
        f"chi2 {chi2:9.1f} (1% crit {crit}) {verdict}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sockets", type=int, default=4)
    parser.add_argument("--connections", type=int, default=6000)
    args = parser.parse_args()
    socks = group(args.sockets)
    try:
        print(f"{args.sockets} sockets, {args.connections} fresh loopback connections each")
        for name, load in CANDIDATES.items():
            if load is None:
                steer.detach(socks[0])
            else:
                steer.attach(socks[0], steer.spread_program(range(args.sockets), load=load))
            report(name, measure(socks, args.connections))
    finally:
        for sock in socks:
            sock.close()


if __name__ == "__main__":
    main()
