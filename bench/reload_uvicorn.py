"""Rolling reloads of `uvicorn --fd 3` under fresh-connection load (issue #13's target).

    .venv/bin/python bench/reload_uvicorn.py [--reloads 20] [--seconds 40] [--write]

The app is tests/apps/servers/asgi_app.py served by uvicorn. Three set-ups, one after the
other, each under the same load for `--seconds`: `wrk -H 'Connection: close'` (a fresh
connection for every request) plus bench/reload_under_load.py's probe (a fresh
connection every 5 ms, 2 s to answer):

- `runtime, reuseport` and `runtime, shared`: the runtime with 2 instances of
  `uvicorn --fd 3` (readiness: `health: /`), `--reloads` SIGHUPs, each waited for;
- `uvicorn --workers 2`: uvicorn's own supervisor on the port, `--reloads` SIGHUPs
  (uvicorn restarts its workers on SIGHUP), `--gap-s` apart.

Target (#13): 0 failed requests over 20 reloads in the runtime's default mode. uvicorn
itself closes connections it has accepted but not read when it gets SIGTERM
(Kludex/uvicorn#2757); the runtime avoids sending it any: it steers new connections to
the replacement and waits for the old worker's queue to empty first.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _http_common as c
import reload_under_load as r
from common import update_results

ASGI_DIR = c.ROOT / "tests" / "apps" / "servers"
UVICORN = ["-m", "uvicorn", "--app-dir", str(ASGI_DIR), "--no-access-log"]


def runtime_run(work: Path, sharing: str, args: argparse.Namespace) -> dict[str, Any]:
    port = c.free_port()
    d = work / f"runtime-{sharing}"
    d.mkdir()
    outcomes: Counter[str] = Counter()
    durations: list[float] = []
    windows: list[tuple[float, float]] = []
    extra = {
        "args": [*UVICORN, "--fd", "3", "asgi_app:app"],
        "interpreter": "none",
        "wait_ready": False,
        "health": "/",
    }
    with c.runtime_cluster(d, c.PY, port, sharing, 2, **extra) as m:
        reloader = r.sighup_reloader(m, args, outcomes, durations, windows)
        res = r.loaded_run(port, args, reloader, windows)
    res.update(reloads=outcomes, reload_s=durations)
    return res


def uvicorn_run(args: argparse.Namespace) -> dict[str, Any]:
    port = c.free_port()
    argv = [c.PY, *UVICORN, "--workers", "2", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen([*argv, "asgi_app:app"], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    outcomes: Counter[str] = Counter()
    windows: list[tuple[float, float]] = []
    try:
        c.wait_serving(port)
        time.sleep(1.0)

        def reloader(wrk: subprocess.Popen[str]) -> None:
            t0 = time.monotonic()
            for at in r.reload_schedule(args.seconds, args.reloads):
                time.sleep(max(0.0, t0 + at - time.monotonic()))
                if wrk.poll() is not None:
                    outcomes["not sent (wrk over)"] += 1
                    continue
                start = time.monotonic()
                proc.send_signal(signal.SIGHUP)
                windows.append((start, start + args.gap_s))
                outcomes["SIGHUP sent"] += 1

        res = r.loaded_run(port, args, reloader, windows)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    res.update(reloads=outcomes, reload_s=[])
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--reloads", type=int, default=20)
    ap.add_argument("--conns", type=int, default=8)
    ap.add_argument("--gap-s", type=float, default=1.5, help="uvicorn: a reload's window")
    ap.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = ap.parse_args()
    args.close = True
    c.ensure_wrk()
    info = (
        f"{os.cpu_count()} cores, Linux {platform.release()}, "
        f"load average before the run {os.getloadavg()[0]:.1f}, "
        f"net.ipv4.tcp_migrate_req={c.sysctl('net.ipv4.tcp_migrate_req')}"
    )
    c.log(info)
    t0 = time.monotonic()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-uvicorn-") as tmp:
        setups = (
            ("runtime reuseport, uvicorn --fd 3", "reuseport"),
            ("runtime shared, uvicorn --fd 3", "shared"),
            ("uvicorn --workers 2, SIGHUP", None),
        )
        for name, sharing in setups:
            c.log(f"== {name}")
            res = uvicorn_run(args) if sharing is None else runtime_run(Path(tmp), sharing, args)
            rows.append(r.summarize(name, res))
            c.log("   " + rows[-1])
    cmd = " ".join(["bench/reload_uvicorn.py", *(a for a in sys.argv[1:] if a != "--write")])
    body = [
        f"Produced by `.venv/bin/python {cmd}` ({time.monotonic() - t0:.0f} s) on {info}; "
        f"load average after it {os.getloadavg()[0]:.2f}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        f"Each row: one `wrk -t 1 -c {args.conns} -d {int(args.seconds)}s --latency "
        "--timeout 2s -H 'Connection: close'` run (a fresh connection per request) with "
        f"{args.reloads} reloads from 1 s to the last 3 s, plus the 5 ms fresh-connection "
        "probe. Runtime: SIGHUP, the next after `reload_done`. uvicorn: SIGHUP to its "
        f"supervisor; a reload's window counts as {args.gap_s} s.",
        "",
        "| set-up | reloads | reload took | wrk requests | wrk socket errors connect/read/write/timeout | wrk non-2xx | probes | probe failures | probe non-2xx | probe hanging | probe problems during a reload / outside |",
        "| --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |",
        *rows,
    ]
    text = "\n".join(body)
    print("\n## Reload under load, uvicorn --fd 3 (#13)\n\n" + text)
    if args.write:
        update_results("Reload under load, uvicorn --fd 3 (#13)", text)


if __name__ == "__main__":
    main()
