"""The drain a rolling reload needs in reuseport mode: steer away, wait for an empty queue, close.

    .venv/bin/python bench/steer_drain.py [--reps 20] [--clients 4] [--settle-ms 0,2,20]

Two SO_REUSEPORT listeners share one loopback port: A (the old worker's) and B (its
replacement's). Each has a "worker" thread that accepts, reads one line, answers and
closes, taking `--service-ms` per connection so that A's accept queue is not empty when
the switch comes. `--clients` threads make fresh connections without pause and classify
each one: served, reset (RST or EOF before the answer), refused, or hanging (no answer in
`--hang-s`). Each repetition runs both workers for `--warm-s`, switches from A to B by one
of the procedures below, keeps the load on for `--after-s`, and counts failures:

- `steer+drain(S ms)`: attach a program that returns only B's index; poll A's accept queue
  (`tcp_backlog`) until it is empty, wait S ms more for handshakes in flight, stop A's
  worker (it finishes the connection in hand), close A. Also recorded: connections A's
  worker still accepted after its queue first read empty, and how long after the steer
  the last one arrived (the settle time the kernel actually needed).
- `close-unsteered`: stop A's worker and close A at once, the kernel's hash still
  spreading over both (what closing a slot socket does today).
- `stop-unsteered-keep-open`: stop A's worker and keep A open (the master holds every
  slot socket): connections hashed to A are never answered.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runtime.proc import steer
from runtime.proc.backlog import tcp_backlog
from runtime.proc.steer import ReuseportGroup

HOST = "127.0.0.1"
BACKLOG = 1024
POLL_S = 0.0005
ACCEPT_POLL_S = 0.02
DRAIN_DEADLINE_S = 5.0
REQUEST = b"ping\n"
ANSWER = b"pong\n"


@dataclass
class Worker:
    """A thread serving one listener until told to stop, like an app's accept loop."""

    sock: socket.socket
    service_s: float
    stop: threading.Event = field(default_factory=threading.Event)
    accepted_at: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.sock.settimeout(ACCEPT_POLL_S)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # the listener was closed under us
            self.accepted_at.append(time.monotonic())
            with conn:
                conn.settimeout(2.0)
                try:
                    conn.recv(64)
                    time.sleep(self.service_s)
                    conn.sendall(ANSWER)
                except OSError:
                    pass

    def halt(self) -> None:
        """Stop accepting, finish the connection in hand, and return when done."""
        self.stop.set()
        self.thread.join(timeout=5.0)


class Load:
    """Client threads making fresh connections back to back, each outcome counted."""

    def __init__(self, port: int, clients: int, hang_s: float) -> None:
        self.port = port
        self.hang_s = hang_s
        self.outcomes: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]
        for thread in self._threads:
            thread.start()

    def _one(self) -> str:
        try:
            with socket.create_connection((HOST, self.port), timeout=self.hang_s) as conn:
                conn.sendall(REQUEST)
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(64)
                    if not chunk:
                        return "reset"
                    data += chunk
                return "served" if data == ANSWER else "reset"
        except TimeoutError:
            return "hanging"
        except ConnectionRefusedError:
            return "refused"
        except (ConnectionResetError, BrokenPipeError):
            return "reset"

    def _run(self) -> None:
        while not self._stop.is_set():
            outcome = self._one()
            with self._lock:
                self.outcomes[outcome] += 1

    def finish(self) -> Counter[str]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.hang_s + 5.0)
        return self.outcomes


def listener(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((HOST, port))
    sock.listen(BACKLOG)
    return sock


@dataclass
class Result:
    outcomes: Counter[str]
    drain_ms: float = 0.0
    late: int = 0
    last_after_steer_ms: float = 0.0


def drain_after_steer(a: socket.socket, old: Worker, steered_at: float, settle_s: float) -> Result:
    """Wait for A's queue to empty, then settle_s; report what still arrived meanwhile."""
    deadline = steered_at + DRAIN_DEADLINE_S
    while tcp_backlog(a)[0] and time.monotonic() < deadline:
        time.sleep(POLL_S)
    empty_at = time.monotonic()
    time.sleep(settle_s)
    old.halt()
    late = sum(1 for t in old.accepted_at if t > empty_at)
    last = max((t for t in old.accepted_at if t > steered_at), default=steered_at)
    return Result(Counter(), (empty_at - steered_at) * 1000, late, (last - steered_at) * 1000)


def repetition(procedure: str, settle_s: float, args: argparse.Namespace) -> Result:
    """One switch from A to B under load, by `procedure`; the clients' outcomes."""
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind((HOST, 0))  # reserves the port, never listens, so never in the group
    port = holder.getsockname()[1]
    group: ReuseportGroup[str] = ReuseportGroup()
    a, b = listener(port), listener(port)
    group.join("A")
    group.join("B")
    old, new = Worker(a, args.service_ms / 1000), Worker(b, args.service_ms / 1000)
    steered = procedure == "steer+drain"
    if steered:
        steer.attach(a, group.program_for(["A", "B"]))
    load = Load(port, args.clients, args.hang_s)
    time.sleep(args.warm_s)
    result = Result(Counter())
    if steered:
        steer.attach(b, group.program_for(["B"]))
        result = drain_after_steer(a, old, time.monotonic(), settle_s)
        a.close()
        group.leave("A")
    elif procedure == "close-unsteered":
        old.halt()
        a.close()
    else:
        old.halt()
    time.sleep(args.after_s)
    result.outcomes = load.finish()
    new.halt()
    for sock in (a, b, holder):
        sock.close()
    return result


def run(label: str, procedure: str, settle_s: float, args: argparse.Namespace) -> None:
    totals: Counter[str] = Counter()
    failed_reps = 0
    drains, lates, lasts = [], [], []
    for _ in range(args.reps):
        result = repetition(procedure, settle_s, args)
        totals += result.outcomes
        failed = sum(n for k, n in result.outcomes.items() if k != "served")
        failed_reps += failed > 0
        drains.append(result.drain_ms)
        lates.append(result.late)
        lasts.append(result.last_after_steer_ms)
    failed_total = sum(n for k, n in totals.items() if k != "served")
    line = (
        f"{label:28} served {totals['served']:6}  reset {totals['reset']:4}  "
        f"hanging {totals['hanging']:4}  refused {totals['refused']:3}  "
        f"failed {failed_total:4} in {failed_reps:2}/{args.reps} reps"
    )
    if procedure == "steer+drain":
        line += (
            f"  | queue empty after {max(drains):.1f} ms max, accepted after empty: "
            f"{sum(lates)} total, last accept {max(lasts):.1f} ms after steer"
        )
    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--service-ms", type=float, default=1.0)
    parser.add_argument("--warm-s", type=float, default=0.3)
    parser.add_argument("--after-s", type=float, default=0.3)
    parser.add_argument("--hang-s", type=float, default=1.0)
    parser.add_argument("--settle-ms", default="0,2,20")
    parser.add_argument("--skip-baselines", action="store_true")
    args = parser.parse_args()
    print(
        f"{args.reps} reps, {args.clients} clients on fresh loopback connections, "
        f"{args.service_ms} ms per connection, {args.warm_s}s before / {args.after_s}s after"
    )
    for settle_ms in (float(v) for v in args.settle_ms.split(",")):
        run(f"steer+drain({settle_ms:g} ms)", "steer+drain", settle_ms / 1000, args)
    if not args.skip_baselines:
        run("close-unsteered", "close-unsteered", 0.0, args)
        run("stop-unsteered-keep-open", "stop-unsteered-keep-open", 0.0, args)


if __name__ == "__main__":
    main()
