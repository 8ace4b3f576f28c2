"""Idle cost of the master with 4 sleeping workers: RSS and CPU over 10 s.
Targets: <= 28 MB RSS, <= 0.1 % CPU (of one core).

    .venv/bin/python bench/idle.py [--quick] [--seconds 10] [--write] [--baseline REF]

Three processes run side by side over the same window, so load hits them alike:

- baseline: a bare `python -c 'import time; time.sleep(60)'` (same interpreter);
- `plain`: `python -m runtime eco.json` with one app of 4 instances of `sleep 3600`
  (`interpreter: none`);
- `memory watch`: the same plus `max_memory_restart: 200M`, which turns on the
  master's periodic RSS sampling of its workers (what most pm2 users run with);
- with `--baseline REF`, `previous build`: `plain` run by the build of commit REF (a
  release install of `git archive REF`, bench/out/baseline-SHA) in the same window.

The masters run from a release install (`pip install .` into bench/out/release-venv,
as in a Dockerfile), like bench/startup.py.

Once every master has started its 4 workers and settled (2 s), the window opens.
CPU time is read from /proc/PID/task/*/schedstat (ns, every thread), not the 10 ms
tick counters, so 0.1 % of 10 s (10 ms) is resolved. RSS is psutil's, sampled every
second, the maximum reported (USS and thread count too). Voluntary context switches
over the window give the master's wake-ups per second.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c

RSS_TARGET_MB = 28.0
CPU_TARGET_PCT = 0.1
MB = 1024 * 1024


def ctx_switches(pid: int) -> int:
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def import_rss(env: dict[str, str]) -> str:
    """What each import adds to a bare interpreter's RSS, each in a fresh process."""
    probe = (
        "import os, sys; {code}\n"
        "print(int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE'),"
        " len(sys.modules))"
    )
    parts = []
    base_rss = None
    for label, code in [
        ("bare", "pass"),
        ("asyncio", "import asyncio"),
        ("uvloop", "import uvloop"),
        ("psutil", "import psutil"),
        ("structlog", "import structlog"),
        ("yaml", "import yaml"),
        ("all five", "import asyncio, uvloop, psutil, structlog, yaml"),
        (
            "the master's modules",
            "import runtime.cli.main, runtime.config.load, runtime.supervise.supervisor, runtime.logs.sink",
        ),
    ]:
        out = subprocess.run(
            [c.PY, "-c", probe.format(code=code)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        if len(out) != 2:
            continue
        r, mods = int(out[0]), int(out[1])
        if base_rss is None:
            base_rss = r
            parts.append(f"bare interpreter {r / MB:.1f} MB ({mods} modules)")
        else:
            parts.append(f"`{label}` +{(r - base_rss) / MB:.1f} MB ({mods} modules)")
    return ", ".join(parts)


def previous_label(baseline: str) -> str:
    """The row of the --baseline build: measured beside the others, judged against none."""
    return f"previous build ({baseline}), plain"


def start_masters(
    eco_plain: Path, eco_mem: Path, env: dict[str, str], baseline: str | None
) -> dict[str, c.Proc]:
    """The masters measured side by side, by label."""
    masters = {
        "plain": c.Proc(c.runtime_argv(str(eco_plain), "--log-format", "json"), env=env),
        "memory watch": c.Proc(c.runtime_argv(str(eco_mem), "--log-format", "json"), env=env),
    }
    if baseline:
        py = c.baseline_install(baseline)
        argv = c.runtime_argv(str(eco_plain), "--log-format", "json", py=py)
        masters[previous_label(baseline)] = c.Proc(argv, env=env)
    return masters


def wait_workers(master: c.Proc, n: int) -> None:
    idx = 0
    for _ in range(n):
        idx, _t, _l = master.wait_line(c.json_pred(event="worker_started"), timeout=30, start=idx)
        idx += 1


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    c.add_common_args(ap)
    c.add_baseline_arg(ap)
    ap.add_argument("--seconds", type=float, default=10.0)
    ns = ap.parse_args()
    seconds = 3.0 if ns.quick else ns.seconds
    c.use_release_install()  # as in a Dockerfile; and a --baseline build runs its own code
    d = c.tmpdir("idle")
    env = c.runtime_env()
    app = {
        "name": "idle",
        "script": "sleep",
        "args": ["3600"],
        "interpreter": "none",
        "instances": 4,
    }
    eco_plain = c.write_eco(d, [app], "plain.json")
    eco_mem = c.write_eco(d, [dict(app, max_memory_restart="200M")], "mem.json")

    base = c.Proc([c.PY, "-c", "import time; time.sleep(600)"], env=env)
    masters = start_masters(eco_plain, eco_mem, env, ns.baseline)
    procs = {"baseline (bare python sleep)": base, **masters}
    try:
        for m in masters.values():
            wait_workers(m, 4)
        time.sleep(2.0)
        ps = {k: psutil.Process(p.pid) for k, p in procs.items()}
        rss = dict.fromkeys(procs, 0)
        uss = dict.fromkeys(procs, 0)
        threads = dict.fromkeys(procs, 0)
        cpu0 = {k: c.cpu_ns(p.pid) for k, p in procs.items()}
        sw0 = {k: ctx_switches(p.pid) for k, p in procs.items()}
        t0 = time.monotonic_ns()
        end = time.monotonic() + seconds
        while True:
            for k, p in ps.items():
                rss[k] = max(rss[k], p.memory_info().rss)
                threads[k] = max(threads[k], p.num_threads())
            left = end - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(1.0, left))
        cpu1 = {k: c.cpu_ns(p.pid) for k, p in procs.items()}
        sw1 = {k: ctx_switches(p.pid) for k, p in procs.items()}
        wall = time.monotonic_ns() - t0
        for k, p in ps.items():
            uss[k] = p.memory_full_info().uss
        workers = {
            k: len([1 for _t, e in m.events() if e.get("event") == "worker_started"])
            for k, m in masters.items()
        }
    finally:
        for proc in procs.values():
            proc.stop()

    b = "baseline (bare python sleep)"
    reference = previous_label(ns.baseline) if ns.baseline else None
    lines = [
        f"Machine: {c.machine_line()}. Window {wall / 1e9:.1f} s, all {len(procs)} side by side.",
        "",
        "| process | RSS (max) | RSS - baseline | USS | threads | CPU | wake-ups/s "
        "| verdict (<= 28 MB, <= 0.1 %) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    ok_all = True
    for k in procs:
        cpu_pct = (cpu1[k] - cpu0[k]) / wall * 100
        wake = (sw1[k] - sw0[k]) / (wall / 1e9)
        if k == b:
            v = "baseline"
        elif k == reference:
            v = "reference"
        else:
            ok = rss[k] / MB <= RSS_TARGET_MB and cpu_pct <= CPU_TARGET_PCT
            ok_all &= ok
            rss_v = "ok" if rss[k] / MB <= RSS_TARGET_MB else "over"
            cpu_v = "ok" if cpu_pct <= CPU_TARGET_PCT else "over"
            v = f"{c.verdict(ok)} (RSS {rss_v}, CPU {cpu_v})"
        lines.append(
            f"| {k}{'' if k == b else f' ({workers[k]} workers)'} | {rss[k] / MB:.1f} MB | "
            f"{'-' if k == b else f'+{(rss[k] - rss[b]) / MB:.1f} MB'} | {uss[k] / MB:.1f} MB | "
            f"{threads[k]} | {cpu_pct:.3f} % | {wake:.1f} | {v} |"
        )
    lines += ["", "RSS added by imports alone (fresh interpreter each): " + import_rss(env) + "."]
    lines += [
        "",
        "References: pm2-runtime 56 MB and 1.1 %, gunicorn master 26.5 MB, supervisord 25 MB.",
        "",
        f"Command: `{c.command_line()}`",
    ]
    verdict = (
        f"**Verdict: {'PASS' if ok_all else 'MISS'}** (targets <= 28 MB RSS, <= 0.1 % CPU): "
        + "; ".join(
            f"{k} {rss[k] / MB:.1f} MB, {(cpu1[k] - cpu0[k]) / wall * 100:.3f} %"
            for k in masters
            if k != reference
        )
        + "."
    )
    body = "\n".join([verdict, "", *lines])
    print(body)
    if ns.write:
        c.update_results("Idle cost", body)
    return 0 if ok_all else 1


if __name__ == "__main__":
    raise SystemExit(main())
