"""Cluster throughput and fairness: the runtime's pre-bound sockets against the baselines.

    .venv/bin/python bench/http_cluster.py            # full run (~2.5 min)
    .venv/bin/python bench/http_cluster.py --quick    # short run (~40 s)
    .venv/bin/python bench/http_cluster.py --write    # also update bench/RESULTS.md

Three measurements, every ratio taken within the same run, loopback only:

1. Throughput, `bench/apps/fast_server.py` (uvloop): 2 bare processes that bind the port
   themselves with SO_REUSEPORT, against the runtime with 2 instances in each sharing mode
   (`shared`, `reuseport`). The three set-ups run at once on three ports and wrk loads one
   at a time, in interleaved rounds (order rotated every round), so the machine's noise
   (other jobs share it) hits all of them alike; the figure is the median of the
   per-round ratios. The master is not in the data path, so the target is >= 0.98.
2. The same Node hello-world (`bench/apps/hello.js`) under `pm2-runtime` cluster mode
   (`instances: 2`, node's cluster module: pm2's process accepts and hands connections
   round-robin to the workers) against the runtime with 2 instances in each sharing
   mode: requests/s ratio and p99 latency, same interleaving. Skipped without npm.
   (Bare Node with `reusePort` needs Node >= 22.12; with an older Node that baseline is
   skipped and part 1 uses the Python server, which runs both ways.)
3. Fairness: requests served per worker (wrk tallies the bodies, which name the
   instance, with a Lua `response()` callback), max/min ratio, under keep-alive and under
   `Connection: close`, for every set-up above.

With `--unmodified` (issue #11) only the Node comparison runs, on
`bench/apps/hello_unmodified.js`, the lesson's unmodified `http.createServer(...)
.listen(process.env.PORT)`: `pm2-runtime start hello_unmodified.js -i 2` against
`python -m runtime hello_unmodified.js -i 2` (cluster inferred from `-i`; the node preload
makes its listen(PORT) serve on the pre-bound socket), in both sharing modes; the figures
go to their own RESULTS.md section. `--max-load 1.5` first waits (up to 10 min) for the
1-minute load average to drop below 1.5.

CPU split: the machine has 2 cores shared by wrk, the servers, the masters and whatever
else runs; each run reports the cores each party used (see `CpuSplit`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _http_common as c
from common import update_results


class Setup:
    """A running server set-up on its own port, with the pids to account CPU for."""

    def __init__(self, name: str, port: int, servers: Any, master: Any = None) -> None:
        self.name = name
        self.port = port
        self.servers = servers
        self.master = master

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def groups(self) -> dict[str, Any]:
        g = {"servers": self.servers}
        if self.master is not None:
            g["master"] = self.master
        return g


@contextmanager
def bare_setup(name: str, argv: list[str]) -> Iterator[Setup]:
    port = c.free_port()
    with c.bare_processes(argv, port, 2) as shell:
        yield Setup(name, port, c.pids_of_tree(shell.pid, include_root=False))


@contextmanager
def runtime_setup(name: str, workdir: Path, script: str, sharing: str) -> Iterator[Setup]:
    port = c.free_port()
    d = workdir / name
    d.mkdir()
    with c.runtime_cluster(d, script, port, sharing, 2) as m:
        pid = m.proc.pid
        yield Setup(name, port, c.pids_of_tree(pid, include_root=False), lambda: [pid])


@contextmanager
def pm2_setup(name: str, workdir: Path, bin_dir: Path) -> Iterator[Setup]:
    port = c.free_port()
    d = workdir / name
    d.mkdir()
    eco = d / "ecosystem.json"
    app = {
        "name": "hello",
        "script": c.HELLO_JS,
        "instances": 2,
        "exec_mode": "cluster",
        "wait_ready": True,
        "listen_timeout": 10000,
        "kill_timeout": 5000,
        "env": {"PORT": str(port), "HOST": "127.0.0.1"},
    }
    eco.write_text(json.dumps({"apps": [app]}))
    env = dict(os.environ, PM2_HOME=str(d / "home"))
    proc = subprocess.Popen(
        [str(bin_dir / "pm2-runtime"), "start", str(eco)],
        env=env,
        cwd=d,
        stdout=(d / "pm2.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        c.wait_serving(port, 30)
        deadline = time.monotonic() + 20
        while len(c.tree(proc.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        yield Setup(name, port, c.pids_of_tree(proc.pid, include_root=False), lambda: [proc.pid])
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


@contextmanager
def runtime_direct_setup(name: str, workdir: Path, sharing: str) -> Iterator[Setup]:
    """The direct form `python -m runtime hello_unmodified.js -i 2` (no LISTEN_FDS in the app)."""
    port = c.free_port()
    d = workdir / name.replace(" ", "_")
    d.mkdir()
    with c.runtime_direct(d, c.UNMODIFIED_JS, port, sharing, 2) as m:
        pid = m.proc.pid
        yield Setup(name, port, c.pids_of_tree(pid, include_root=False), lambda: [pid])


@contextmanager
def pm2_direct_setup(name: str, workdir: Path, bin_dir: Path) -> Iterator[Setup]:
    """`pm2-runtime start hello_unmodified.js -i 2` (node's cluster module, round-robin)."""
    port = c.free_port()
    d = workdir / "pm2-direct"
    d.mkdir()
    with c.pm2_runtime(d, bin_dir, [c.UNMODIFIED_JS, "-i", "2"], port) as (proc, _env):
        pid = proc.pid
        yield Setup(name, port, c.pids_of_tree(pid, include_root=False), lambda: [pid])


def load(
    setup: Setup,
    args: argparse.Namespace,
    *,
    close: bool = False,
    tally: bool = False,
    seconds: float | None = None,
) -> dict[str, Any]:
    with c.CpuSplit(setup.groups()) as cpu:
        res = c.run_wrk(
            setup.url,
            seconds or args.seconds,
            threads=args.threads,
            conns=args.conns,
            close=close,
            tally=tally,
            on_start=lambda p: cpu.add("wrk", lambda: [p.pid]),
        )
    res["cores"] = cpu.cores()
    errs = sum(res["errors"].values())
    c.log(
        f"  {setup.name:<22} {'close' if close else 'keep-alive':<10} {res['rps']:>9.0f} req/s"
        f"  p99 {res['p99_ms']:.2f} ms  errors {errs} non2xx {res['non2xx']}"
        f"  cores: {c.fmt_cores(res['cores'])}" + (f"  tally {res['tally']}" if tally else "")
    )
    return res


def rounds(setups: list[Setup], args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    """`args.rounds` interleaved rounds; with `--max-other X`, a round in which other jobs
    on the machine took more than X cores during any run is measured again (at most
    `args.rounds` times in all): `args.discarded` and `args.kept_busy` say how busy those were."""
    out: dict[str, list[dict[str, Any]]] = {s.name: [] for s in setups}
    args.discarded, args.kept_busy = [], []
    r = 0
    while r < args.rounds:
        c.log(f" round {r + 1}/{args.rounds}")
        k = r % len(setups)
        runs = {s.name: load(s, args) for s in setups[k:] + setups[:k]}
        other = max(x["cores"]["other"] for x in runs.values())
        if args.max_other is not None and other > args.max_other:
            if len(args.discarded) < args.rounds:
                args.discarded.append(other)
                c.log(f"  other jobs took {other:.2f} cores: round measured again")
                continue
            args.kept_busy.append(other)
        for name, x in runs.items():
            out[name].append(x)
        r += 1
    return out


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio_rows(
    runs: dict[str, list[dict[str, Any]]], base: str
) -> list[tuple[str, float, float, float, float, str]]:
    """(name, median rps, ratio to base (median of per-round ratios), min ratio, p99, cores)."""
    rows = []
    for name, rs in runs.items():
        ratios = [a["rps"] / b["rps"] for a, b in zip(rs, runs[base], strict=True) if b["rps"]]
        cores: dict[str, list[float]] = {}
        for x in rs:
            for k, v in x["cores"].items():
                cores.setdefault(k, []).append(v)
        rows.append(
            (
                name,
                med([x["rps"] for x in rs]),
                med(ratios),
                min(ratios) if ratios else float("nan"),
                med([x["p99_ms"] for x in rs]),
                ", ".join(f"{k} {med(v):.2f}" for k, v in cores.items()),
            )
        )
    return rows


def table(rows: list[tuple[str, float, float, float, float, str]], base: str) -> str:
    lines = [
        f"| set-up | req/s (median) | ratio to {base} (median of rounds) | worst round | p99 ms (median) | cores used (median): servers, master, wrk, other |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, rps, ratio, worst, p99, cores in rows:
        lines.append(f"| {name} | {rps:.0f} | {ratio:.3f} | {worst:.3f} | {p99:.2f} | {cores} |")
    return "\n".join(lines)


def fairness_table(results: list[tuple[str, str, dict[str, Any]]]) -> str:
    lines = [
        "| set-up | connections | requests per worker | max/min | req/s (with the Lua tally) |",
        "| --- | --- | --- | ---: | ---: |",
    ]
    for name, mode, res in results:
        counts = {"0": 0, "1": 0, **res["tally"]}
        tally = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
        lines.append(
            f"| {name} | {mode} | {tally} | {c.spread(res['tally']):.2f} | {res['rps']:.0f} |"
        )
    return "\n".join(lines)


def spread_table(runs: dict[str, list[dict[str, Any]]], base: str) -> str:
    """Median and spread (min-max over the rounds) of req/s, ratio to `base` and p99, and
    req/s per core the servers and their master used (less sensitive to other jobs)."""
    lines = [
        f"| set-up | req/s median (min-max) | ratio to {base}: median of rounds (min-max) | p99 ms median (min-max) | req/s per server+master core, median | cores used (median): servers, master, wrk, other |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, rs in runs.items():
        rps = [x["rps"] for x in rs]
        per_core = [
            x["rps"] / used
            for x in rs
            if (used := x["cores"].get("servers", 0.0) + x["cores"].get("master", 0.0))
        ]
        p99 = [x["p99_ms"] for x in rs]
        ratios = [a["rps"] / b["rps"] for a, b in zip(rs, runs[base], strict=True) if b["rps"]]
        cores: dict[str, list[float]] = {}
        for x in rs:
            for k, v in x["cores"].items():
                cores.setdefault(k, []).append(v)
        lines.append(
            f"| {name} | {med(rps):.0f} ({min(rps):.0f}-{max(rps):.0f}) | "
            f"{med(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f}) | "
            f"{med(p99):.2f} ({min(p99):.2f}-{max(p99):.2f}) | {med(per_core):.0f} | "
            + ", ".join(f"{k} {med(v):.2f}" for k, v in cores.items())
            + " |"
        )
    return "\n".join(lines)


def unmodified_main(args: argparse.Namespace, pm2: Path | None) -> None:
    """`--unmodified`: pm2-runtime -i 2 against the runtime's -i 2, on the unmodified app."""
    if pm2 is None or shutil.which("node") is None:
        sys.exit("--unmodified compares against pm2: it needs node and npm")
    t0 = time.monotonic()
    info = machine()
    c.log(info)
    base = "pm2-runtime -i 2"
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        setups = [
            stack.enter_context(pm2_direct_setup(base, work, pm2)),
            stack.enter_context(
                runtime_direct_setup("runtime -i 2 (reuseport)", work, "reuseport")
            ),
            stack.enter_context(runtime_direct_setup("runtime -i 2, shared", work, "shared")),
        ]
        runs = rounds(setups, args)
        fair = [
            (s.name, "close" if close else "keep-alive", load(s, args, close=close, tally=True))
            for s in setups
            for close in (False, True)
        ]
    cmd = " ".join(["bench/http_cluster.py", *(a for a in sys.argv[1:] if a != "--write")])
    wrk_line = (
        f"wrk -t {args.threads} -c {args.conns} -d {int(args.seconds)}s --latency --timeout 2s"
    )
    body = "\n".join(
        [
            f"Produced by `.venv/bin/python {cmd}` ({time.monotonic() - t0:.0f} s) on {info}; "
            f"load average after it {os.getloadavg()[0]:.2f}, "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
            "",
            f"The same unmodified `bench/apps/hello_unmodified.js` (node {c.node_version()}; "
            "`http.createServer(...).listen(process.env.PORT)`, no LISTEN_FDS, no ready "
            "message, no signal handler) under `pm2-runtime start hello_unmodified.js -i 2` "
            "(pm2 from npm in bench/out/pm2) and under `python -m runtime hello_unmodified.js "
            "-i 2` (`--socket-sharing shared` for the last row). Each run: "
            f"`{wrk_line} http://127.0.0.1:PORT/` against one set-up, the set-ups side by side "
            f"on their own ports, {args.rounds} interleaved rounds (order rotated each round)"
            + (
                f"; a round in which other jobs on the machine took more than {args.max_other} "
                f"cores was measured again, {len(args.discarded)} times"
                + (
                    f" (other: {', '.join(f'{x:.2f}' for x in args.discarded)})"
                    if args.discarded
                    else ""
                )
                + (
                    f", and {len(args.kept_busy)} busy rounds were kept after that "
                    f"(other: {', '.join(f'{x:.2f}' for x in args.kept_busy)})"
                    if args.kept_busy
                    else ""
                )
                if args.max_other is not None
                else ""
            )
            + ".",
            "",
            spread_table(runs, base),
            "",
            f"Fairness, same run (`{wrk_line} -s bench/out/tally.lua`, the body names the "
            "instance; the Lua tally slows wrk, so these req/s are not comparable with the "
            "table above):",
            "",
            fairness_table(fair),
        ]
    )
    print("\n## Cluster throughput, unmodified Node app (#11)\n\n" + body)
    if args.write:
        update_results("Cluster throughput, unmodified Node app (#11)", body)


def machine() -> str:
    return (
        f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), Linux {platform.release()}, "
        f"Python {platform.python_version()}, node {c.node_version() or 'absent'}, "
        f"load average before the run {os.getloadavg()[0]:.1f}; "
        f"net.ipv4.tcp_migrate_req={c.sysctl('net.ipv4.tcp_migrate_req')}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="short run (2 rounds of 2 s)")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=None, help="one wrk run")
    ap.add_argument("--threads", type=int, default=1, help="wrk threads (1-2 on 2 cores)")
    ap.add_argument("--conns", type=int, default=64, help="wrk connections")
    ap.add_argument("--no-pm2", action="store_true")
    ap.add_argument(
        "--unmodified",
        action="store_true",
        help="only pm2-runtime -i 2 vs runtime -i 2 on the unmodified hello_unmodified.js (#11)",
    )
    ap.add_argument("--max-load", type=float, default=None, help="first wait for a lower load")
    ap.add_argument(
        "--max-other",
        type=float,
        default=None,
        help="measure a round again when other jobs took more cores than this during it",
    )
    ap.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = ap.parse_args()
    args.rounds = args.rounds or (2 if args.quick else 5)
    args.seconds = args.seconds or (2 if args.quick else 4)
    c.ensure_wrk()
    pm2 = None if args.no_pm2 else c.ensure_pm2()
    c.wait_for_quiet(args.max_load)
    if args.unmodified:
        unmodified_main(args, pm2)
        return
    node = shutil.which("node")
    t0 = time.monotonic()
    info = machine()
    c.log(info)
    cmd = " ".join(["bench/http_cluster.py", *sys.argv[1:]])
    wrk_line = (
        f"wrk -t {args.threads} -c {args.conns} -d {int(args.seconds)}s --latency --timeout 2s"
    )

    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        fast = [c.PY, c.FAST_SERVER]
        c.log("== throughput: fast_server.py (uvloop), 2 workers")
        py_setups = [
            stack.enter_context(bare_setup("bare SO_REUSEPORT x2", fast)),
            stack.enter_context(
                runtime_setup("runtime reuseport", work, c.FAST_SERVER, "reuseport")
            ),
            stack.enter_context(runtime_setup("runtime shared", work, c.FAST_SERVER, "shared")),
        ]
        py_runs = rounds(py_setups, args)
        py_rows = ratio_rows(py_runs, "bare SO_REUSEPORT x2")

        node_setups: list[Setup] = []
        node_rows = []
        if node and pm2:
            c.log("== throughput: hello.js (node), 2 workers")
            node_setups = [stack.enter_context(pm2_setup("pm2-runtime -i 2", work, pm2))]
            if c.node_has_reuseport():
                node_setups.append(
                    stack.enter_context(bare_setup("bare node reusePort x2", [node, c.HELLO_JS]))
                )
            node_setups += [
                stack.enter_context(
                    runtime_setup("runtime reuseport (node)", work, c.HELLO_JS, "reuseport")
                ),
                stack.enter_context(
                    runtime_setup("runtime shared (node)", work, c.HELLO_JS, "shared")
                ),
            ]
            node_runs = rounds(node_setups, args)
            node_rows = ratio_rows(node_runs, "pm2-runtime -i 2")

        c.log("== fairness (wrk + Lua tally)")
        fair: list[tuple[str, str, dict[str, Any]]] = []
        for s in py_setups + node_setups:
            for close in (False, True):
                res = load(s, args, close=close, tally=True)
                fair.append((s.name, "close" if close else "keep-alive", res))

    elapsed = time.monotonic() - t0
    tput = [
        f"Produced by `{sys.executable.replace(str(c.ROOT) + '/', '')} {cmd}` "
        f"({elapsed:.0f} s) on {info}.",
        "",
        f"Each run: `{wrk_line} http://127.0.0.1:PORT/` against one set-up, the set-ups "
        f"running side by side on their own ports, {args.rounds} interleaved rounds (order "
        "rotated each round); ratio = median of the per-round ratios. **Caveat:** 2 cores "
        "shared by wrk, the servers, the masters and other jobs on the machine; the cores "
        'column says who used what ("other" is everything else on the box).',
        "",
        "### Runtime vs bare SO_REUSEPORT processes (`bench/apps/fast_server.py`, uvloop; the same file binds the port itself when `LISTEN_FDS` is absent)",
        "",
        table(py_rows, "bare"),
    ]
    if node_rows:
        tput += [
            "",
            "### Runtime vs pm2-runtime cluster mode (`bench/apps/hello.js`, node "
            f"{c.node_version()}; pm2 from npm in bench/out/pm2)",
            "",
            table(node_rows, "pm2-runtime"),
        ]
        if not c.node_has_reuseport():
            tput += [
                "",
                f"Bare Node with `reusePort` skipped: node {c.node_version()} lacks it (needs >= 22.12).",
            ]
    else:
        tput += ["", "pm2 comparison skipped: npm/node absent."]
    fairness = [
        f"Produced by the same `{cmd}` run: `{wrk_line} -s bench/out/tally.lua` "
        "(a Lua `response()` callback tallies the bodies, which name the instance; "
        "`Connection: close` runs add `-H 'Connection: close'`). The Lua callback slows wrk, "
        "so these req/s are not comparable with the throughput tables.",
        "",
        fairness_table(fair),
    ]
    print("\n## Cluster throughput\n\n" + "\n".join(tput))
    print("\n## Fairness\n\n" + "\n".join(fairness))
    if args.write:
        update_results("Cluster throughput", "\n".join(tput))
        update_results("Fairness", "\n".join(fairness))


if __name__ == "__main__":
    main()
