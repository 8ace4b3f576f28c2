"""SIGKILL chaos against this runtime, gunicorn and pm2-runtime (#13, "Prove it").

    .venv/bin/python bench/chaos.py [--rounds 3] [--chaos-s 20] [--quick] [--write]

Each set-up runs two workers behind one port. One run: a no-kill baseline (BASELINE_S),
then CHAOS_S of SIGKILL to a random worker of the set-up every 200 ms, under the load
generator of tests/chaos/load.py (4 threads of sequential GETs, each bounded by a 3 s
timeout), first with fresh connections (`Connection: close`), then with keep-alive
ones. Rounds are interleaved (the set-ups' order rotates each round); a table gives the
median over rounds and the spread (min-max):

- throughput under chaos as % of the same set-up's own no-kill baseline (same run);
- % served (answered / asked) during the chaos window;
- failed requests per kill, and requests left hanging (no answer nor error in 3 s);
- connections left open on the port after the run (server side, /proc/net/tcp).

Set-ups: the runtime (reuseport and shared) on tests/apps/lean_http.py; gunicorn -w 2
(sync workers) on bench/apps/wsgi_hello.py; pm2-runtime -i 2 (npm, bench/out/pm2) and the
runtime (reuseport and shared) on bench/apps/hello.js. The runtime's apps restart at once for ever
(`restart_delay: 0`, `max_restarts: 0`); pm2's get `max_restarts: 1000000` (its default
16 would leave them errored); gunicorn respawns its workers anyway.

`--migrate-req` (run as `unshare --net .venv/bin/python bench/chaos.py --migrate-req ...`,
as root): everything in a private network namespace, where `net.ipv4.tcp_migrate_req`
is 0 but for two more set-ups, the runtime's reuseport rows with it set to 1.

`--flood` also measures the master's RSS under a flood of tiny lines (4 workers printing
2-byte lines for 60 s, stdout read by a consumer). Before measuring, the bench waits
(at most 10 minutes) for the 1-minute load average to fall under 1.5, and records it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _http_common as c
from common import update_results

from runtime.proc.sockets import MIGRATE_REQ_SYSCTL
from tests.chaos.load import Killer, Load, children, lingering, loopback_up

LEAN = str(c.ROOT / "tests" / "apps" / "lean_http.py")
WSGI_DIR = str(c.APPS)
KILL_INTERVAL_S = 0.2
BASELINE_S = 5.0
THREADS = 4
TIMEOUT_S = 3.0
QUIET_LOAD = 1.5
QUIET_WAIT_S = 600
FLOOD_S = 60
FLOOD_WORKERS = 4


@dataclass
class Setup:
    """A running set-up: its port and a function listing the workers to kill."""

    name: str
    port: int
    workers: Callable[[], list[int]]


@dataclass
class Run:
    """One baseline + chaos run of one set-up in one mode."""

    baseline_rps: float
    chaos_rps: float
    served: float
    asked: int
    failed: int
    kills: int
    hung: int
    lingering: int

    @property
    def ratio(self) -> float:
        return self.chaos_rps / self.baseline_rps if self.baseline_rps else 0.0


@dataclass
class Row:
    runs: dict[str, list[Run]] = field(default_factory=lambda: {"close": [], "keep-alive": []})


# ----- set-ups -----------------------------------------------------------------------


def _runtime_app(port: int, sharing: str, script: str) -> dict[str, Any]:
    app: dict[str, Any] = {
        "name": "web",
        "exec_mode": "cluster",
        "instances": 2,
        "listen": [f"127.0.0.1:{port}"],
        "socket_sharing": sharing,
        "wait_ready": True,
        "listen_timeout": 10000,
        "restart_delay": 0,
        "max_restarts": 0,
    }
    if script.endswith(".js"):
        app.update(script=script)
    else:
        app.update(script=c.PY, args=[script], interpreter="none")
    return app


@contextlib.contextmanager
def runtime_setup(name: str, work: Path, sharing: str, script: str) -> Iterator[Setup]:
    port = c.free_port()
    d = work / name.replace(" ", "-")
    d.mkdir()
    eco = d / "eco.json"
    eco.write_text(json.dumps({"apps": [_runtime_app(port, sharing, script)]}))
    m = c.Master(eco, d)
    try:
        m.wait_event("worker_ready", count=2, timeout=30)
        c.wait_serving(port)
        yield Setup(name, port, lambda: children(m.proc.pid))
    finally:
        m.stop()


@contextlib.contextmanager
def _process_setup(
    name: str, argv: list[str], port: int, cwd: Path, env: dict[str, str]
) -> Iterator[Setup]:
    with (cwd / "out.log").open("wb") as out:
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        c.wait_serving(port, 30)
        deadline = time.monotonic() + 20
        while len(children(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        yield Setup(name, port, lambda: children(proc.pid))
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextlib.contextmanager
def gunicorn_setup(name: str, work: Path) -> Iterator[Setup]:
    port = c.free_port()
    d = work / name.replace(" ", "-")
    d.mkdir()
    argv = [c.PY, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}"]
    argv += ["--chdir", WSGI_DIR, "--log-level", "warning", "wsgi_hello:app"]
    with _process_setup(name, argv, port, d, dict(os.environ)) as setup:
        yield setup


@contextlib.contextmanager
def pm2_setup(name: str, work: Path, bin_dir: Path) -> Iterator[Setup]:
    port = c.free_port()
    d = work / name.replace(" ", "-")
    d.mkdir()
    app = {
        "name": "hello",
        "script": c.HELLO_JS,
        "instances": 2,
        "exec_mode": "cluster",
        "wait_ready": True,
        "listen_timeout": 10000,
        "max_restarts": 1_000_000,
        "env": {"PORT": str(port), "HOST": "127.0.0.1"},
    }
    eco = d / "ecosystem.json"
    eco.write_text(json.dumps({"apps": [app]}))
    env = dict(os.environ, PM2_HOME=str(d / "home"))
    argv = [str(bin_dir / "pm2-runtime"), "start", str(eco)]
    with _process_setup(name, argv, port, d, env) as setup:
        yield setup


@contextlib.contextmanager
def node_cluster_setup(name: str, work: Path, policy: str) -> Iterator[Setup]:
    """bench/apps/node_cluster.js: node's own cluster module, re-forking at once."""
    port = c.free_port()
    d = work / name.replace(" ", "-")
    d.mkdir()
    env = dict(os.environ, PORT=str(port), HOST="127.0.0.1", NODE_CLUSTER_SCHED_POLICY=policy)
    argv = ["node", str(c.APPS / "node_cluster.js")]
    with _process_setup(name, argv, port, d, env) as setup:
        yield setup


# ----- one run -----------------------------------------------------------------------


def _window(load: Load, seconds: float) -> tuple[float, int, int]:
    ok0, failed0 = load.snapshot()
    t0 = time.monotonic()
    time.sleep(seconds)
    ok1, failed1 = load.snapshot()
    return (ok1 - ok0) / (time.monotonic() - t0), ok1 - ok0, failed1 - failed0


def _recovered(setup: Setup, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(setup.workers()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)


def run_once(setup: Setup, keepalive: bool, chaos_s: float) -> Run:
    """Baseline, then chaos, on one load generator; what lingers is read after it stops."""
    with Load(setup.port, threads=THREADS, keepalive=keepalive, timeout_s=TIMEOUT_S) as load:
        base_rps, _, _ = _window(load, BASELINE_S)
        with Killer(setup.workers, KILL_INTERVAL_S, seed=int(time.time())) as killer:
            chaos_rps, ok, failed = _window(load, chaos_s)
        _recovered(setup)
    left: list[tuple[str, int]] = []
    deadline = time.monotonic() + 5
    while (left := lingering(setup.port)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return Run(
        base_rps,
        chaos_rps,
        ok / (ok + failed) if ok + failed else 0.0,
        ok + failed,
        failed,
        len(killer.killed),
        len(load.tally.hung),
        len(left),
    )


# ----- flood -------------------------------------------------------------------------

FLOOD_WORKER = "import sys\nw = sys.stdout.write\nwhile True:\n    w('x\\n' * 4096)\n"


def flood(work: Path, seconds: float) -> dict[str, Any]:
    """The master's RSS, sampled each second, while FLOOD_WORKERS print 2-byte lines."""
    d = work / "flood"
    d.mkdir()
    app = {
        "name": "flood",
        "script": c.PY,
        "args": ["-c", FLOOD_WORKER],
        "interpreter": "none",
        "instances": FLOOD_WORKERS,
    }
    eco = d / "eco.json"
    eco.write_text(json.dumps({"apps": [app]}))
    env = dict(os.environ, PYTHONPATH=str(c.ROOT))
    proc = subprocess.Popen(
        [c.PY, "-m", "runtime", str(eco), "--log-format", "json"],
        cwd=d,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    lines = [0]

    def consume() -> None:
        assert proc.stdout is not None
        while chunk := proc.stdout.read1(1 << 20):
            lines[0] += chunk.count(b"\n")

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    samples: list[tuple[float, int]] = []
    t0 = time.monotonic()
    try:
        while (elapsed := time.monotonic() - t0) < seconds:
            time.sleep(1.0)
            samples.append((elapsed, rss_mb(proc.pid)))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(10)
    rss = [r for _, r in samples]
    return {
        "seconds": seconds,
        "lines": lines[0],
        "first": rss[0],
        "max": max(rss),
        "last": rss[-1],
        "max_first_half": max(rss[: len(rss) // 2]),
        "max_second_half": max(rss[len(rss) // 2 :]),
    }


def rss_mb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    return 0


# ----- machine -----------------------------------------------------------------------


def wait_quiet() -> tuple[float, float]:
    """Wait until the 1-minute load is under QUIET_LOAD (at most QUIET_WAIT_S)."""
    t0 = time.monotonic()
    while os.getloadavg()[0] >= QUIET_LOAD and time.monotonic() - t0 < QUIET_WAIT_S:
        c.log(f"waiting for a quiet machine: load {os.getloadavg()[0]:.2f}")
        time.sleep(15)
    return os.getloadavg()[0], time.monotonic() - t0


MIGRATE_REQ = Path(MIGRATE_REQ_SYSCTL)


def private_netns() -> None:
    """Bring up the loopback of the network namespace we run in, refusing our parent's
    (`unshare --net` execs us in a new one; run from a shell, we would share the shell's)."""
    if os.readlink("/proc/self/ns/net") == os.readlink(f"/proc/{os.getppid()}/ns/net"):
        sys.exit("--migrate-req: run under `unshare --net`, not in the host's network namespace")
    loopback_up()
    MIGRATE_REQ.write_text("0")


@contextlib.contextmanager
def migrate_req_on(setup: contextlib.AbstractContextManager[Setup]) -> Iterator[Setup]:
    """Run `setup` with net.ipv4.tcp_migrate_req=1 (in the private namespace), then 0."""
    MIGRATE_REQ.write_text("1")
    try:
        with setup as inner:
            yield inner
    finally:
        MIGRATE_REQ.write_text("0")


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


# ----- report ------------------------------------------------------------------------


def _spread(values: list[float], fmt: str) -> str:
    med = statistics.median(values)
    return f"{fmt.format(med)} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def table(rows: dict[str, Row]) -> list[str]:
    out = [
        "| set-up | connections | throughput under chaos, % of no-kill | % served | failed per kill | hanging | left open | no-kill req/s | kills |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in rows.items():
        for mode, runs in row.runs.items():
            if not runs:
                continue
            per_kill = [r.failed / r.kills if r.kills else 0.0 for r in runs]
            out.append(
                f"| {name} | {mode} | {_spread([100 * r.ratio for r in runs], '{:.0f}')} | "
                f"{_spread([100 * r.served for r in runs], '{:.2f}')} | "
                f"{_spread(per_kill, '{:.2f}')} | {sum(r.hung for r in runs)} | "
                f"{sum(r.lingering for r in runs)} | "
                f"{statistics.median(r.baseline_rps for r in runs):.0f} | "
                f"{sum(r.kills for r in runs)} |"
            )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--chaos-s", type=float, default=20.0)
    ap.add_argument("--quick", action="store_true", help="1 round of 5 s, no wait for quiet")
    ap.add_argument("--no-pm2", action="store_true")
    ap.add_argument("--flood", action="store_true", help="also the tiny-line flood (60 s)")
    ap.add_argument("--flood-only", action="store_true")
    ap.add_argument("--only", default="", help="run only the set-ups whose name has this")
    ap.add_argument("--write", action="store_true", help="write the figures to RESULTS.md")
    ap.add_argument(
        "--migrate-req",
        action="store_true",
        help="in a network namespace of its own (run under `unshare --net`, as root): also"
        " the runtime's reuseport set-ups with net.ipv4.tcp_migrate_req=1",
    )
    args = ap.parse_args()
    if args.migrate_req:
        private_netns()
    rounds, chaos_s = (1, 5.0) if args.quick else (args.rounds, args.chaos_s)
    load, waited = (os.getloadavg()[0], 0.0) if args.quick else wait_quiet()
    before = uptime()
    c.log(f"start: {before} (waited {waited:.0f} s)")
    work = Path(c.OUT) / f"chaos-{os.getpid()}"
    work.mkdir(parents=True)
    rows: dict[str, Row] = {}
    flood_res = None
    try:
        if not args.flood_only:
            rows = run_rounds(work, rounds, chaos_s, args)
        if args.flood or args.flood_only:
            flood_res = flood(work, 10.0 if args.quick else FLOOD_S)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    after = uptime()
    body = report(rows, flood_res, rounds, chaos_s, before, after, load, waited)
    print(body)
    if args.write:
        update_results("Chaos: SIGKILL under load", body)
    return 0


def run_rounds(work: Path, rounds: int, chaos_s: float, args: argparse.Namespace) -> dict[str, Row]:
    pm2 = None if args.no_pm2 else c.ensure_pm2()
    makers: list[tuple[str, Callable[[str], Any]]] = [
        ("runtime reuseport, lean_http.py", lambda n: runtime_setup(n, work, "reuseport", LEAN)),
        ("runtime shared, lean_http.py", lambda n: runtime_setup(n, work, "shared", LEAN)),
        ("gunicorn -w 2 (sync), wsgi_hello.py", lambda n: gunicorn_setup(n, work)),
    ]
    if pm2 is not None:
        makers += [
            (
                "runtime reuseport, hello.js",
                lambda n: runtime_setup(n, work, "reuseport", c.HELLO_JS),
            ),
            (
                "runtime shared, hello.js",
                lambda n: runtime_setup(n, work, "shared", c.HELLO_JS),
            ),
            ("pm2-runtime -i 2, hello.js", lambda n: pm2_setup(n, work, pm2)),
        ]
    if shutil.which("node"):
        makers += [
            (
                "node cluster module (bare), shared handle, hello.js",
                lambda n: node_cluster_setup(n, work, "none"),
            ),
            (
                "node cluster module (bare), round-robin, hello.js",
                lambda n: node_cluster_setup(n, work, "rr"),
            ),
        ]
    if args.migrate_req:
        makers += [
            (
                f"runtime reuseport, tcp_migrate_req=1, {Path(script).name}",
                lambda n, script=script: migrate_req_on(
                    runtime_setup(n, work, "reuseport", script)
                ),
            )
            for script in (LEAN, c.HELLO_JS)
        ]
    if args.only:
        makers = [m for m in makers if args.only in m[0]]
    rows = {name: Row() for name, _ in makers}
    for r in range(rounds):
        order = makers[r % len(makers) :] + makers[: r % len(makers)]
        for name, make in order:
            for keepalive in (False, True):
                with make(f"{name} r{r}{'k' if keepalive else 'c'}") as setup:
                    run = run_once(setup, keepalive, chaos_s)
                mode = "keep-alive" if keepalive else "close"
                rows[name].runs[mode].append(run)
                c.log(
                    f"round {r} {name} {mode}: {100 * run.ratio:.0f}% of {run.baseline_rps:.0f}"
                    f" req/s, served {100 * run.served:.3f}%, {run.failed} failed / {run.kills}"
                    f" kills, hung {run.hung}, open {run.lingering}"
                )
    return rows


def report(
    rows: dict[str, Row],
    flood_res: dict[str, Any] | None,
    rounds: int,
    chaos_s: float,
    before: str,
    after: str,
    load: float,
    waited: float,
) -> str:
    lines = [
        f"Produced by `{' '.join(['.venv/bin/python', 'bench/chaos.py', *[a for a in sys.argv[1:] if a != '--write']])}`"
        f" on {os.cpu_count()} cores, Linux {os.uname().release}, node {c.node_version() or '-'}, "
        f"net.ipv4.tcp_migrate_req={c.sysctl('net.ipv4.tcp_migrate_req')}.",
        "",
        f"Load: 1-minute average {load:.2f} when the run started (after waiting {waited:.0f} s "
        f"for it to fall under {QUIET_LOAD}); `uptime` before: `{before}`; after: `{after}`.",
        "",
    ]
    if rows:
        lines += [
            f"Each cell: median over {rounds} interleaved rounds (min-max in brackets). A run: "
            f"{BASELINE_S:g} s without kills, then {chaos_s:g} s with SIGKILL to a random worker "
            f"every {KILL_INTERVAL_S * 1000:.0f} ms; load from tests/chaos/load.py ({THREADS} "
            f"threads of sequential GETs, {TIMEOUT_S:g} s timeout each). Hanging and left-open "
            "counts are totals over the rounds.",
            "",
            *table(rows),
        ]
    if flood_res is not None:
        lines += [
            "",
            f"Master RSS under a flood of tiny lines ({FLOOD_WORKERS} workers printing 2-byte "
            f"lines for {flood_res['seconds']:.0f} s, stdout read by a consumer): "
            f"{flood_res['first']} MB after 1 s, max {flood_res['max']} MB (first half "
            f"{flood_res['max_first_half']} MB, second half {flood_res['max_second_half']} MB), "
            f"{flood_res['last']} MB at the end; {flood_res['lines']:,} lines out.",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
