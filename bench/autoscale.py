"""Autoscaling on the accept queue: a load step from idle to saturation and back.

    .venv/bin/python bench/autoscale.py [--rounds 3] [--step-s 20] [--quiet-s 0]
        [--work-us 1000] [--conns 32] [--write]

One app, bench/apps/fast_server.py with `WORK_US` microseconds of CPU per request
(a CPU-bound handler), in cluster mode on one loopback listener, three ways:

- `instances: 1` (fixed, the smallest);
- `instances: max` (fixed, one worker per CPU of the quota);
- `instances: {min: 1, max: max}` (autoscaled by the runtime).

Each run: the master starts and its workers are ready; a light client opens a fresh
connection every 100 ms for one `Connection: close` request, from the start of the step
to the end of the run, and classifies each (served, reset, refused, EOF before an
answer, no answer in 2 s); the step is one `wrk -t 1 -c CONNS -d STEP --latency
-H 'Connection: close'` run (a fresh connection per request, so waiting connections sit
in the accept queue the master reads); then the quiet phase, long enough for the
autoscaled app to come back down to `min` (the sampler's 10 s window to empty, the
policy's 30 s of quiet, 15 s per further step, plus 30 s). Measured: wrk's requests/s and p99 during the step, the time
from the step's start to the first `autoscaled` event and to the last one of the step,
the worker-seconds used over step + quiet (workers counted every 0.1 s with psutil), and
every light-client request that failed, split into "while a scale-down was in progress"
and otherwise. The configurations are interleaved round by round (order rotated) and
reported as the median with the min-max spread, with the autoscaled one's ratios against
fixed `max`. **Caveat:** wrk, the workers and the master share the machine's cores.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _http_common as c
from common import update_results

CONFIGS: dict[str, Any] = {
    "fixed 1": 1,
    "fixed max": "max",
    "autoscaled 1..max": {"min": 1, "max": "max"},
}
PROBE_EVERY_S = 0.1
PROBE_TIMEOUT_S = 2.0
# the policy's defaults (runtime.config.spec.AutoscaleSpec): quiet for 30 s, then 15 s a step;
# quiet means no waiting connection within the load sampler's 10 s window
WINDOW_S = 10.0
DOWN_AFTER_S = 30.0
DOWN_COOLDOWN_S = 15.0


@dataclass
class Probe:
    """Fresh connections at a steady pace; each outcome with the time it started."""

    port: int
    outcomes: list[tuple[float, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _one(self) -> str:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=PROBE_TIMEOUT_S) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
        except ConnectionRefusedError:
            return "refused"
        except ConnectionResetError:
            return "reset"
        except TimeoutError:
            return "timeout"
        except OSError as exc:
            return f"error {exc.errno}"
        return "ok" if data.startswith(b"HTTP/1.1 200") else "eof"

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self.stop.is_set():
            started = time.monotonic()
            self.outcomes.append((started, self._one()))
            next_at += PROBE_EVERY_S
            self.stop.wait(max(0.0, next_at - time.monotonic()))

    def __enter__(self) -> Probe:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(PROBE_TIMEOUT_S * 3)


@dataclass
class WorkerCount:
    """The master's children counted every 0.1 s: worker-seconds, and the count over time."""

    pid: int
    samples: list[tuple[float, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.1):
            with contextlib.suppress(psutil.Error):
                self.samples.append((time.monotonic(), len(psutil.Process(self.pid).children())))

    def __enter__(self) -> WorkerCount:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(2)

    def worker_seconds(self, start: float, end: float) -> float:
        pts = [(t, n) for t, n in self.samples if start <= t <= end]
        return sum(n * (t1 - t0) for (t0, n), (t1, _) in itertools.pairwise(pts))


def eco(path: Path, port: int, instances: Any, work_us: int) -> Path:
    app = {
        "name": "web",
        "script": c.FAST_SERVER,
        "exec_mode": "cluster",
        "instances": instances,
        "listen": [f"127.0.0.1:{port}"],
        "wait_ready": True,
        "listen_timeout": 10000,
        "kill_timeout": 5000,
        "env": {"WORK_US": str(work_us)},
    }
    path.write_text(json.dumps({"apps": [app]}))
    return path


def run_one(work: Path, name: str, args: argparse.Namespace, cpus: int) -> dict[str, Any]:
    port = c.free_port()
    instances = CONFIGS[name]
    first = 1 if instances == 1 or isinstance(instances, dict) else cpus
    m = c.Master(eco(work / "eco.json", port, instances, args.work_us), work)
    quiet_s = args.quiet_s or WINDOW_S + DOWN_AFTER_S + DOWN_COOLDOWN_S * max(0, cpus - 2) + 30
    try:
        m.wait_event("worker_ready", count=first, timeout=30)
        c.wait_serving(port)
        time.sleep(1.0)  # idle before the step
        with WorkerCount(m.proc.pid) as count, Probe(port) as probe:
            t_step = time.monotonic()
            res = c.run_wrk(
                f"http://127.0.0.1:{port}/",
                args.step_s,
                threads=1,
                conns=args.conns,
                close=True,
                timeout_s=2,
            )
            t_quiet = time.monotonic()
            time.sleep(quiet_s)
            t_end = time.monotonic()
        scales = m.events("autoscaled")
        for r in scales:
            c.log(
                f"   {r['_t'] - t_step:5.1f} s: autoscaled {r['was']} -> {r['instances']}: {r['reason']}"
            )
    finally:
        m.stop()
    ups = [r for r in scales if r["instances"] > r["was"] and r["_t"] <= t_quiet]
    downs = [r for r in scales if r["instances"] < r["was"] and r["_t"] > t_quiet]
    # a scale-down is "in progress" from its decision until the worker count has dropped
    down_windows = []
    for r in downs:
        gone = next((t for t, n in count.samples if t >= r["_t"] and n <= r["instances"]), t_end)
        down_windows.append((r["_t"] - 0.2, gone + 0.5))
    fails_down: Counter[str] = Counter()
    fails_other: Counter[str] = Counter()
    for t, outcome in probe.outcomes:
        if outcome == "ok":
            continue
        during = any(a <= t <= b for a, b in down_windows)
        (fails_down if during else fails_other)[outcome] += 1
    return {
        "rps": res["rps"],
        "p99_ms": res["p99_ms"],
        "wrk_errors": sum(res["errors"].values()) + res["non2xx"],
        "up_first_s": ups[0]["_t"] - t_step if ups else None,
        "up_last_s": ups[-1]["_t"] - t_step if ups else None,
        "down_last_s": downs[-1]["_t"] - t_quiet if downs else None,
        "peak_workers": max((n for _, n in count.samples), default=0),
        "end_workers": count.samples[-1][1] if count.samples else 0,
        "downs": len(downs),
        "worker_s": count.worker_seconds(t_step, t_end),
        "probes": len(probe.outcomes),
        "fails_down": fails_down,
        "fails_other": fails_other,
        "wrk_argv": res["argv"],
        "quiet_s": quiet_s,
        "reasons": [r.get("reason", "") for r in scales],
    }


def med(values: list[float | None]) -> str:
    """The median and (min-max) of the values measured (None: not in that run)."""
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    digits = 0 if max(vals) >= 100 else 1
    return f"{statistics.median(vals):.{digits}f} ({min(vals):.{digits}f}-{max(vals):.{digits}f})"


def ratio(a: list[float], b: list[float]) -> str:
    """The median (min-max) of a/b, round by round."""
    pairs = [x / y for x, y in zip(a, b, strict=True) if x is not None and y]
    if not pairs:
        return "-"
    return f"{statistics.median(pairs):.2f} ({min(pairs):.2f}-{max(pairs):.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--step-s", type=float, default=20.0)
    ap.add_argument("--quiet-s", type=float, default=0.0, help="0: long enough to come down")
    ap.add_argument("--work-us", type=int, default=1000, help="CPU per request")
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = ap.parse_args()
    c.ensure_wrk()
    cpus = len(os.sched_getaffinity(0))
    info = (
        f"{os.cpu_count()} cores ({cpus} usable), Linux {platform.release()}, "
        f"load average before the run {os.getloadavg()[0]:.1f}"
    )
    c.log(info)
    t0 = time.monotonic()
    names = list(CONFIGS)
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory(prefix="bench-autoscale-") as tmp:
        for rnd in range(args.rounds):
            order = names[rnd % len(names) :] + names[: rnd % len(names)]
            for name in order:
                r = run_one(Path(tmp), name, args, cpus)
                runs[name].append(r)
                c.log(
                    f"round {rnd + 1} {name}: {r['rps']:.0f} req/s, p99 {r['p99_ms']:.1f} ms, "
                    f"up after {r['up_first_s']}, peak {r['peak_workers']}, "
                    f"{r['worker_s']:.0f} worker-s, downs {r['downs']}, "
                    f"failures {dict(r['fails_down'])} / {dict(r['fails_other'])}"
                )
    rows = []
    for name in names:
        rs = runs[name]
        down_fail = sum(sum(r["fails_down"].values()) for r in rs)
        other_fail = sum(sum(r["fails_other"].values()) for r in rs)
        rows.append(
            f"| {name} | {med([r['rps'] for r in rs])} | {med([r['p99_ms'] for r in rs])} | "
            f"{med([r['up_first_s'] for r in rs])} | {med([r['up_last_s'] for r in rs])} | "
            f"{'/'.join(str(r['peak_workers']) for r in rs)} | "
            f"{'/'.join(str(r['end_workers']) for r in rs)} | "
            f"{med([r['down_last_s'] for r in rs])} | "
            f"{med([r['worker_s'] for r in rs])} | {sum(r['downs'] for r in rs)} | "
            f"{down_fail} | {other_fail} | {sum(r['wrk_errors'] for r in rs)} |"
        )
    auto, fixed_max, fixed_1 = runs["autoscaled 1..max"], runs["fixed max"], runs["fixed 1"]
    reasons = sorted({why for r in auto for why in r["reasons"]})
    cmd = " ".join(["bench/autoscale.py", *sys.argv[1:]])
    body = [
        f"Produced by `.venv/bin/python {cmd}` ({time.monotonic() - t0:.0f} s) on {info}.",
        "",
        f"Each run: `{auto[0]['wrk_argv']}` against fast_server.py with "
        f"`WORK_US={args.work_us}` ({args.work_us / 1000:g} ms of CPU per request), then "
        f"{auto[0]['quiet_s']:.0f} s of quiet; a probe makes a fresh connection every "
        f"{PROBE_EVERY_S * 1000:.0f} ms throughout. {args.rounds} rounds, interleaved; median "
        "(min-max). `up first/last`: seconds from the step's start to the first and last "
        "`autoscaled` event that added workers; `back to min after`: from the step's end to "
        "the last scale-down. Worker-seconds over step + quiet.",
        "",
        "| set-up | wrk req/s | wrk p99 ms | up first s | up last s | peak workers | "
        "workers at end | back to min after s | worker-s | scale-downs | probe failures during a scale-down | "
        "other probe failures | wrk errors + non-2xx |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        "Autoscaled against fixed `max`, per round: req/s "
        f"{ratio([r['rps'] for r in auto], [r['rps'] for r in fixed_max])}, p99 "
        f"{ratio([r['p99_ms'] for r in auto], [r['p99_ms'] for r in fixed_max])}, "
        f"worker-seconds {ratio([r['worker_s'] for r in auto], [r['worker_s'] for r in fixed_max])}"
        "; against fixed 1: p99 "
        f"{ratio([r['p99_ms'] for r in auto], [r['p99_ms'] for r in fixed_1])}.",
        "",
        "Reasons the runtime logged: " + "; ".join(f"`{why}`" for why in reasons) + ".",
    ]
    text = "\n".join(body)
    print("\n## Autoscaling\n\n" + text)
    if args.write:
        update_results("Autoscaling", text)


if __name__ == "__main__":
    main()
