"""What reading a listener's backlog, and re-steering a group, cost per call.

    .venv/bin/python bench/backlog_cost.py [--calls 20000] [--unix-sockets 0,1000,4000]

- `tcp_backlog` on a listening TCP socket (one getsockopt);
- `unix_backlog` on a Unix listener, with a reused sock_diag socket and without one, while
  the host holds `--unix-sockets` extra Unix sockets (the kernel finds the listener by
  scanning its Unix socket table, so this is the figure that grows);
- `spread_program` + `attach` for a small set and for the worst set of a 4097-socket group.
"""

from __future__ import annotations

import argparse
import functools
import os
import socket
import sys
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runtime.proc import steer
from runtime.proc.backlog import open_diag, tcp_backlog, unix_backlog


def per_call_us(fn: Callable[[], object], calls: int) -> float:
    """Best of 5 runs of `calls` calls, in microseconds per call."""
    return min(timeit.repeat(fn, number=calls, repeat=5)) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--unix-sockets", default="0,1000,4000")
    args = parser.parse_args()
    tcp = socket.socket()
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(64)
    print(
        f"tcp_backlog                      {per_call_us(lambda: tcp_backlog(tcp), args.calls):8.2f} us"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "l.sock")
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        unix.bind(path)
        unix.listen(64)
        extra: list[socket.socket] = []
        with open_diag() as diag:
            for count in (int(v) for v in args.unix_sockets.split(",")):
                while len(extra) < count:
                    extra.extend(socket.socketpair())
                calls = max(args.calls // 10, 100)
                reused = per_call_us(lambda: unix_backlog(unix, diag=diag), calls)
                fresh = per_call_us(lambda: unix_backlog(unix), calls)
                print(
                    f"unix_backlog, +{count:5} unix sockets: {reused:8.2f} us with diag=, "
                    f"{fresh:8.2f} us opening its own"
                )
        for sock in extra:
            sock.close()
        unix.close()
    small = [0, 1, 3]
    worst = [i for i in range(4097) if i % 3]
    for label, indices in (("3 of 4", small), ("worst of 4097", worst)):
        program = steer.spread_program(indices)
        build = per_call_us(functools.partial(steer.spread_program, indices), 50)
        attach = per_call_us(functools.partial(steer.attach, tcp, program), 50)
        print(
            f"{label:14} {len(program):5} insns: spread_program {build:9.1f} us, "
            f"attach {attach:9.1f} us"
        )
    tcp.close()


if __name__ == "__main__":
    main()
