"""Rolling reloads under load: what a client sees while the workers are replaced.

    .venv/bin/python bench/reload_under_load.py            # full: 30 s runs, 20 reloads each (~3 min)
    .venv/bin/python bench/reload_under_load.py --quick    # 5 s runs, 3 reloads each
    .venv/bin/python bench/reload_under_load.py --write    # also update bench/RESULTS.md

For each sharing mode (`shared`, `reuseport`) and each app (`bench/apps/fast_server.py`,
uvloop, and the Node `bench/apps/hello.js`), a runtime master runs 2 instances with
`wait_ready`. During one wrk run (keep-alive, `--timeout 2s`) the master gets SIGHUP
20 times, evenly spaced; each reload is waited for (`reload_done` / `reload_failed` on
its JSON stdout) before the next. Beside wrk a probe opens a fresh connection every
5 ms and does one `Connection: close` request: a refused or reset connection is a
probe failure, an answer other than 200 a non-2xx, and a request with no complete
answer within 2 s counts as hanging. Reported: wrk's socket errors and non-2xx, probe
failures / non-2xx / hanging, reloads done / failed. Target: all zero.

pm2-runtime beside it: the same hello.js in cluster mode (`instances: 2`,
`wait_ready`), reloaded with `pm2 reload all` with `PM2_HOME` pointing at the
pm2-runtime's home (pm2-runtime itself has no reload signal), as many times as fit in
the same run (a `pm2 reload` of 2 instances takes seconds, so fewer than 20 fit).

`--unmodified` (issue #11): the app is `bench/apps/hello_unmodified.js`, the lesson's
unmodified `http.createServer(...).listen(process.env.PORT)` with no ready message and no
signal handler, under `python -m runtime hello_unmodified.js -i 2` (the direct form; the
node preload serves its listen(PORT) on the pre-bound socket and drains it on SIGINT) and
under `pm2-runtime start hello_unmodified.js -i 2`. Without a ready message a replacement
counts as ready after `min_uptime` (1 s) here, and on 'listening' under pm2; runs default
to 60 s so that 20 reloads fit. Its figures go to their own RESULTS.md section.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _http_common as c
from common import update_results

PROBE_EVERY_S = 0.005
HANG_S = 2.0
REQUEST = b"GET /probe HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


class Probe:
    """A fresh connection every 5 ms, one request each, on its own thread and event loop."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.counts: Counter[str] = Counter()
        self.samples: dict[str, list[str]] = {}
        self.problems: list[tuple[float, str]] = []  # (monotonic start of the request, kind)
        self.t0 = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)

    def start(self) -> None:
        self.t0 = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(HANG_S + 10)

    def _note(self, kind: str, detail: str, started: float) -> None:
        self.counts[kind] += 1
        self.problems.append((started, kind))
        bucket = self.samples.setdefault(kind, [])
        if len(bucket) < 5:
            bucket.append(f"sent at t={started - self.t0:.2f}s: {detail}")

    async def _one(self) -> None:
        writer = None
        started = time.monotonic()
        try:
            async with asyncio.timeout(HANG_S):
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.write(REQUEST)
                data = await reader.read()  # to EOF: the server closes after answering
        except TimeoutError:
            self._note("hanging", "no complete answer within 2 s", started)
            return
        except OSError as exc:
            self._note("failed", repr(exc), started)
            return
        finally:
            if writer is not None:
                writer.close()
        if data.startswith(b"HTTP/1.1 200") and data.endswith(b"\n"):
            self.counts["ok"] += 1
        elif data.startswith(b"HTTP/"):
            self._note("non2xx", data.split(b"\r\n", 1)[0].decode(errors="replace"), started)
        else:
            self._note("failed", f"closed with {len(data)} bytes and no answer", started)

    async def _run(self) -> None:
        tasks: set[asyncio.Task[None]] = set()
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while not self._stop.is_set():
            t = asyncio.create_task(self._one())
            tasks.add(t)
            t.add_done_callback(tasks.discard)
            next_at += PROBE_EVERY_S
            delay = next_at - loop.time()
            if delay < -0.1:  # fell behind (busy machine): do not burst to catch up
                next_at = loop.time()
                self.counts["ticks_skipped"] += 1
            await asyncio.sleep(max(0.0, delay))
        if tasks:
            await asyncio.wait(tasks)

    def _main(self) -> None:
        asyncio.run(self._run())

    @property
    def sent(self) -> int:
        return sum(v for k, v in self.counts.items() if k != "ticks_skipped")


def reload_schedule(seconds: float, reloads: int) -> list[float]:
    """Times (s from start) of the SIGHUPs: from 1 s to `seconds - 3` s, evenly spaced."""
    span = max(0.5, seconds - 4.0)
    return [1.0 + span * i / max(1, reloads - 1) for i in range(reloads)]  # [] for 0: a control run


def sighup_reloader(
    m: c.Master,
    args: argparse.Namespace,
    outcomes: Counter[str],
    durations: list[float],
    windows: list[tuple[float, float]],
) -> Any:
    """`args.reloads` SIGHUPs to the master on reload_schedule, each waited for."""

    def reloader(wrk: subprocess.Popen[str]) -> None:
        t0 = time.monotonic()
        for at in reload_schedule(args.seconds, args.reloads):
            time.sleep(max(0.0, t0 + at - time.monotonic()))
            if wrk.poll() is not None:
                outcomes["not sent (wrk over)"] += 1
                continue
            mark = m.mark()
            start = time.monotonic()
            m.signal(signal.SIGHUP)
            rec = m.wait_any(("reload_done", "reload_failed", "reload_skipped"), mark, 60)
            durations.append(time.monotonic() - start)
            windows.append((start, time.monotonic()))
            outcomes[rec["event"] if rec else "no reload event in 60 s"] += 1

    return reloader


def runtime_run(work: Path, script: str, sharing: str, args: argparse.Namespace) -> dict[str, Any]:
    port = c.free_port()
    d = work / f"{Path(script).stem}-{sharing}"
    d.mkdir()
    outcomes: Counter[str] = Counter()
    durations: list[float] = []
    windows: list[tuple[float, float]] = []
    cluster = (
        c.runtime_direct(d, script, port, sharing, 2)
        if args.unmodified
        else c.runtime_cluster(d, script, port, sharing, 2)
    )
    with cluster as m:
        reloader = sighup_reloader(m, args, outcomes, durations, windows)
        res = loaded_run(port, args, reloader, windows)
        res["stopped"] = Counter(
            f"{r.get('code', '?')}/{r.get('signal', '-')}" for r in m.events("worker_stopped")
        )
    res.update(reloads=outcomes, reload_s=durations)
    return res


def pm2_direct_run(work: Path, bin_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """`pm2-runtime start hello_unmodified.js -i 2`, reloaded with `pm2 reload all`."""
    port = c.free_port()
    d = work / "pm2-direct"
    d.mkdir()
    outcomes: Counter[str] = Counter()
    durations: list[float] = []
    windows: list[tuple[float, float]] = []
    with c.pm2_runtime(d, bin_dir, [c.UNMODIFIED_JS, "-i", "2"], port) as (_proc, env):

        def reloader(wrk: subprocess.Popen[str]) -> None:
            t0 = time.monotonic()
            for at in reload_schedule(args.seconds, args.reloads):
                time.sleep(max(0.0, t0 + at - time.monotonic()))
                if time.monotonic() - t0 > args.seconds - 3 or wrk.poll() is not None:
                    outcomes["not sent (no time left)"] += 1
                    continue
                start = time.monotonic()
                done = subprocess.run(
                    [str(bin_dir / "pm2"), "reload", "all"],
                    env=env,
                    capture_output=True,
                    timeout=60,
                )
                durations.append(time.monotonic() - start)
                windows.append((start, time.monotonic()))
                outcomes["reload ok" if done.returncode == 0 else f"exit {done.returncode}"] += 1

        res = loaded_run(port, args, reloader, windows)
    res.update(reloads=outcomes, reload_s=durations)
    return res


def pm2_run(work: Path, bin_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    port = c.free_port()
    d = work / "pm2"
    d.mkdir()
    home = d / "home"
    eco = d / "ecosystem.json"
    eco.write_text(
        json.dumps(
            {
                "apps": [
                    {
                        "name": "hello",
                        "script": c.HELLO_JS,
                        "instances": 2,
                        "exec_mode": "cluster",
                        "wait_ready": True,
                        "listen_timeout": 10000,
                        "kill_timeout": 5000,
                        "env": {"PORT": str(port), "HOST": "127.0.0.1"},
                    }
                ]
            }
        )
    )
    env = dict(os.environ, PM2_HOME=str(home))
    proc = subprocess.Popen(
        [str(bin_dir / "pm2-runtime"), "start", str(eco)],
        env=env,
        cwd=d,
        stdout=(d / "pm2.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    outcomes: Counter[str] = Counter()
    durations: list[float] = []
    windows: list[tuple[float, float]] = []
    try:
        c.wait_serving(port, 30)
        time.sleep(1.0)

        def reloader(wrk: subprocess.Popen[str]) -> None:
            t0 = time.monotonic()
            for at in reload_schedule(args.seconds, args.reloads):
                time.sleep(max(0.0, t0 + at - time.monotonic()))
                if time.monotonic() - t0 > args.seconds - 3 or wrk.poll() is not None:
                    outcomes["not sent (no time left)"] += 1
                    continue
                start = time.monotonic()
                done = subprocess.run(
                    [str(bin_dir / "pm2"), "reload", "all"],
                    env=env,
                    capture_output=True,
                    timeout=60,
                )
                durations.append(time.monotonic() - start)
                windows.append((start, time.monotonic()))
                outcomes["reload ok" if done.returncode == 0 else f"exit {done.returncode}"] += 1

        res = loaded_run(port, args, reloader, windows)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    res.update(reloads=outcomes, reload_s=durations)
    return res


def loaded_run(
    port: int, args: argparse.Namespace, reloader: Any, windows: list[tuple[float, float]]
) -> dict[str, Any]:
    """wrk + probe on `port` while `reloader(wrk)` runs; probe problems split by reload window."""
    probe = Probe(port)
    probe.start()
    threads: list[threading.Thread] = []

    def on_start(wrk: subprocess.Popen[str]) -> None:
        t = threading.Thread(target=reloader, args=(wrk,), daemon=True)
        t.start()
        threads.append(t)

    res = c.run_wrk(
        f"http://127.0.0.1:{port}/",
        args.seconds,
        threads=1,
        conns=args.conns,
        close=getattr(args, "close", False),  # fresh connections (bench/reload_uvicorn.py)
        timeout_s=2,
        on_start=on_start,
    )
    for t in threads:
        t.join(120)
    time.sleep(0.2)
    probe.stop()
    res["probe"] = probe.counts
    res["probe_samples"] = probe.samples
    res["probe_sent"] = probe.sent
    # a problem "during a reload" was sent between a reload's start and 2 s after its end
    inside = sum(1 for t, _ in probe.problems if any(a <= t <= b + HANG_S for a, b in windows))
    res["probe_in_reload"] = inside
    res["probe_outside"] = len(probe.problems) - inside
    return res


def summarize(name: str, res: dict[str, Any]) -> str:
    e = res["errors"]
    p = res["probe"]
    rel = ", ".join(f"{k} {v}" for k, v in sorted(res["reloads"].items()))
    secs = res["reload_s"]
    took = f"{sum(secs) / len(secs):.2f} s avg, {max(secs):.2f} s max" if secs else "-"
    return (
        f"| {name} | {rel} | {took} | {res['requests']} ({res['rps']:.0f}/s) | "
        f"{e['connect']}/{e['read']}/{e['write']}/{e['timeout']} | {res['non2xx']} | "
        f"{res['probe_sent']} | {p['failed']} | {p['non2xx']} | {p['hanging']} | "
        f"{res['probe_in_reload']} / {res['probe_outside']} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="5 s runs, 3 reloads")
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--reloads", type=int, default=None)
    ap.add_argument("--conns", type=int, default=8)
    ap.add_argument("--apps", default="fast,node", help="comma list of fast,node")
    ap.add_argument("--modes", default="shared,reuseport")
    ap.add_argument("--no-pm2", action="store_true")
    ap.add_argument(
        "--unmodified",
        action="store_true",
        help="the unmodified hello_unmodified.js under `-i 2` and pm2-runtime -i 2 (#11)",
    )
    ap.add_argument("--max-load", type=float, default=None, help="first wait for a lower load")
    ap.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = ap.parse_args()
    args.seconds = args.seconds or (5 if args.quick else 60 if args.unmodified else 30)
    args.reloads = (3 if args.quick else 20) if args.reloads is None else args.reloads
    c.ensure_wrk()
    apps = ["node"] if args.unmodified else [a for a in args.apps.split(",") if a]
    pm2 = None if args.no_pm2 or "node" not in apps else c.ensure_pm2()
    scripts = {"fast": c.FAST_SERVER, "node": c.UNMODIFIED_JS if args.unmodified else c.HELLO_JS}
    c.wait_for_quiet(args.max_load)
    info = (
        f"{os.cpu_count()} cores, Linux {platform.release()}, node {c.node_version() or 'absent'}, "
        f"load average before the run {os.getloadavg()[0]:.1f}, "
        f"net.ipv4.tcp_migrate_req={c.sysctl('net.ipv4.tcp_migrate_req')}"
    )
    c.log(info)
    t0 = time.monotonic()
    rows: list[str] = []
    details: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-reload-") as tmp:
        work = Path(tmp)
        for app in apps:
            for sharing in args.modes.split(","):
                name = f"runtime {sharing}, {Path(scripts[app]).name}"
                c.log(f"== {name}")
                res = runtime_run(work, scripts[app], sharing, args)
                c.log("   " + summarize(name, res))
                rows.append(summarize(name, res))
                for kind, samples in res["probe_samples"].items():
                    details.append(f"- {name}: probe {kind}: " + "; ".join(samples))
        if pm2 is not None:
            name = f"pm2-runtime + `pm2 reload all`, {Path(scripts['node']).name}"
            c.log(f"== {name}")
            res = pm2_direct_run(work, pm2, args) if args.unmodified else pm2_run(work, pm2, args)
            c.log("   " + summarize(name, res))
            rows.append(summarize(name, res))
            for kind, samples in res["probe_samples"].items():
                details.append(f"- {name}: probe {kind}: " + "; ".join(samples))
    cmd = " ".join(["bench/reload_under_load.py", *(a for a in sys.argv[1:] if a != "--write")])
    apps_line = (
        "Both run the unmodified `bench/apps/hello_unmodified.js` with 2 instances and no "
        "ready message: `python -m runtime hello_unmodified.js -i 2` (a replacement is ready "
        "after min_uptime, 1 s; its old worker gets SIGINT, which the node preload turns into "
        "a drain) and `pm2-runtime start hello_unmodified.js -i 2` (ready on 'listening')."
        if args.unmodified
        else "Apps run 2 instances with `wait_ready` (READY=1 / `process.send('ready')`)."
    )
    body = [
        f"Produced by `.venv/bin/python {cmd}` ({time.monotonic() - t0:.0f} s) on {info}; "
        f"load average after it {os.getloadavg()[0]:.2f}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        f"Each row: one `wrk -t 1 -c {args.conns} -d {int(args.seconds)}s --latency --timeout 2s "
        f"http://127.0.0.1:PORT/` run (keep-alive) with {args.reloads} reloads scheduled evenly "
        "from 1 s to the last 3 s (runtime: SIGHUP to the master, next one after "
        "`reload_done`/`reload_failed`; pm2: `pm2 reload all`, which blocks until done, so "
        "fewer fit), plus a probe opening a fresh connection every 5 ms for one "
        "`Connection: close` request (no complete answer within 2 s = hanging). "
        f"{apps_line} **Caveat:** 2 cores shared by wrk, the probe, the servers, the master "
        "and other jobs.",
        "",
        "| set-up | reloads | reload took | wrk requests | wrk socket errors connect/read/write/timeout | wrk non-2xx | probes | probe failures | probe non-2xx | probe hanging | probe problems during a reload / outside |",
        "| --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |",
        *rows,
    ]
    if pm2 is None and "node" in apps and not args.no_pm2:
        body += ["", "pm2 row skipped: npm/node absent."]
    if details:
        body += [
            "",
            "Probe problems seen (first 5 of each kind, time from run start):",
            "",
            *details,
        ]
    text = "\n".join(body)
    title = (
        "Reload under load, unmodified Node app (#11)" if args.unmodified else "Reload under load"
    )
    print(f"\n## {title}\n\n" + text)
    if args.write:
        update_results(title, text)


if __name__ == "__main__":
    main()
