"""Load client for bench/swarm.py: runs inside a container on the service's overlay network.

Standard library only, because it runs on the bare base image (`python -c` with this
file's text). Every new connection re-resolves `tasks.<service>` (Swarm's DNS answer
with one A record per task, `--endpoint-mode dnsrr`) and goes to the next resolved
replica in turn, so fresh connections spread over whatever DNS says is alive
(`--dns-cache S` reuses an answer for S seconds instead, as a proxy's resolver would). Each
request is counted as ok (2xx) or as one failure kind, in one-second buckets of wall
clock time: the host runs the scenario in the same kernel, so `time.time()` here and
there are one clock. SIGTERM ends the run; the report is one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import signal
import socket
import sys
import time
from collections import Counter, defaultdict
from typing import Any

FAILURE_KINDS = ("refused", "reset", "closed", "timeout", "unreachable", "dns", "http", "other")
MAX_FAILURE_SAMPLES = 300
UNREACHABLE_ERRNOS = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN}


class RequestFailed(Exception):
    """One request that did not get a 2xx answer, with its kind (one of FAILURE_KINDS)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


class Tally:
    """Per-second counts, failure samples, and the changes of the resolved replica set."""

    def __init__(self) -> None:
        self.per_second: dict[int, Counter[str]] = defaultdict(Counter)
        self.by_ip: Counter[str] = Counter()
        self.failures: list[dict[str, Any]] = []
        self.dns_changes: list[dict[str, Any]] = []
        self._last_ips: tuple[str, ...] = ()

    def saw_ips(self, ips: tuple[str, ...]) -> None:
        if ips != self._last_ips:
            self._last_ips = ips
            self.dns_changes.append({"t": round(time.time(), 3), "ips": list(ips)})

    def ok(self, started: float, ip: str) -> None:
        self.per_second[int(started)]["ok"] += 1
        self.by_ip[ip] += 1

    def failed(self, started: float, ip: str, exc: RequestFailed) -> None:
        self.per_second[int(started)][exc.kind] += 1
        if len(self.failures) < MAX_FAILURE_SAMPLES:
            self.failures.append(
                {"t": round(started, 3), "kind": exc.kind, "ip": ip, "detail": exc.detail[:120]}
            )

    def report(self, began: float, ended: float) -> dict[str, Any]:
        seconds = []
        for second in sorted(self.per_second):
            counts = self.per_second[second]
            failed = sum(counts[k] for k in FAILURE_KINDS)
            seconds.append({"t": second, "ok": counts["ok"], "failed": failed, **dict(counts)})
        totals: Counter[str] = Counter()
        for counts in self.per_second.values():
            totals.update(counts)
        return {
            "began": round(began, 3),
            "ended": round(ended, 3),
            "ok": totals["ok"],
            "failed": sum(totals[k] for k in FAILURE_KINDS),
            "kinds": {k: totals[k] for k in FAILURE_KINDS if totals[k]},
            "by_ip": dict(self.by_ip),
            "per_second": seconds,
            "failures": self.failures,
            "dns_changes": self.dns_changes,
        }


def classify(exc: BaseException) -> RequestFailed:
    """The failure kind a client would report for this exception."""
    if isinstance(exc, RequestFailed):
        return exc
    if isinstance(exc, TimeoutError):
        return RequestFailed("timeout", "no complete answer in time")
    if isinstance(exc, ConnectionRefusedError):
        return RequestFailed("refused", str(exc))
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return RequestFailed("reset", str(exc))
    if isinstance(exc, asyncio.IncompleteReadError):
        return RequestFailed("closed", f"closed after {len(exc.partial)} bytes")
    if isinstance(exc, OSError) and exc.errno in UNREACHABLE_ERRNOS:
        return RequestFailed("unreachable", str(exc))
    return RequestFailed("other", f"{type(exc).__name__}: {exc}")


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, server keeps the connection) of one HTTP/1.1 answer with Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise RequestFailed("other", f"bad status line {lines[0][:60]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    await reader.readexactly(int(headers.get("content-length", "0")))
    return int(parts[1]), headers.get("connection", "").lower() != "close"


class Client:
    """`concurrency` paced loops sharing one target rate, until stopped."""

    def __init__(self, ns: argparse.Namespace) -> None:
        self.host = f"tasks.{ns.service}"
        self.port: int = ns.port
        self.timeout_s: float = ns.timeout
        self.per_conn: int = ns.requests_per_connection
        self.interval_s = ns.concurrency / ns.rate
        self.concurrency: int = ns.concurrency
        self.request = (
            f"GET {ns.path} HTTP/1.1\r\nHost: {ns.service}\r\n"
            + ("Connection: close\r\n" if self.per_conn == 1 else "")
            + "\r\n"
        ).encode()
        self.dns_cache_s: float = ns.dns_cache
        self.cached: tuple[float, tuple[str, ...]] = (0.0, ())
        self.tally = Tally()
        self.stop = asyncio.Event()
        self.turn = 0

    async def pick(self) -> str:
        """Resolve the service's tasks (or reuse a recent answer) and take the next in turn."""
        resolved_at, ips = self.cached
        if not ips or time.monotonic() - resolved_at >= self.dns_cache_s:
            ips = await self.resolve()
            self.cached = (time.monotonic(), ips)
        self.turn += 1
        return ips[self.turn % len(ips)]

    async def resolve(self) -> tuple[str, ...]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(
                self.host, self.port, family=socket.AF_INET, type=socket.SOCK_STREAM
            )
        except socket.gaierror as exc:
            self.tally.saw_ips(())
            raise RequestFailed("dns", str(exc)) from exc
        ips = tuple(sorted({str(info[4][0]) for info in infos}))
        self.tally.saw_ips(ips)
        return ips

    async def loop(self, index: int) -> None:
        await asyncio.sleep(self.interval_s * index / self.concurrency)  # stagger the loops
        due = time.monotonic()
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        used, ip = 0, "-"
        while not self.stop.is_set():
            started = time.time()
            try:
                async with asyncio.timeout(self.timeout_s):
                    if conn is None:
                        ip = await self.pick()
                        conn, used = await asyncio.open_connection(ip, self.port), 0
                    conn[1].write(self.request)
                    status, keep = await read_response(conn[0])
                used += 1
                if not 200 <= status < 300:
                    raise RequestFailed("http", f"status {status}")
                self.tally.ok(started, ip)
                if not keep or used >= self.per_conn:
                    close(conn)
                    conn = None
            except Exception as exc:
                self.tally.failed(started, ip, classify(exc))
                close(conn)
                conn = None
            due = max(due + self.interval_s, time.monotonic() - 1.0)  # no debt beyond 1 s
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        close(conn)

    async def run(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop.set)
        loop.add_signal_handler(signal.SIGINT, self.stop.set)
        began = time.time()
        print(json.dumps({"event": "client_started", "t": began}), flush=True)
        async with asyncio.TaskGroup() as group:
            for index in range(self.concurrency):
                group.create_task(self.loop(index))
        return self.tally.report(began, time.time())


def close(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None) -> None:
    if conn is not None:
        conn[1].close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="swarm_client")
    parser.add_argument("--service", required=True)
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--path", default="/")
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second, in all")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds per request")
    parser.add_argument("--requests-per-connection", type=int, default=1)
    parser.add_argument(
        "--dns-cache", type=float, default=0.0, help="reuse a DNS answer this long, s"
    )
    ns = parser.parse_args(argv)
    report = asyncio.run(Client(ns).run())
    print(json.dumps({"event": "client_report", **report}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
