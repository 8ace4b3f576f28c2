"""SIGKILL chaos (#13, "Prove it"): a random worker killed every 200 ms under load, in both
sharing modes, with fresh connections and with keep-alive ones.

One run per case: a no-kill baseline, the chaos window, a recovery, a second baseline,
one load generator throughout (tests/chaos/load.py). Figures go to stdout (`-s`) as one
`chaos ...` line each, for bench/RESULTS.md.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.load import Killer, Load, children, wait_no_lingering
from tests.integration.conftest import ROOT, free_port, write_ecosystem

LEAN = str(ROOT / "tests" / "apps" / "lean_http.py")
CHAOS_S = float(os.environ.get("RUNTIME_CHAOS_SECONDS", "10"))  # the bench runs 20
# The chaos window and the no-kill baseline alternate, CYCLES times each, so the load of
# whatever else runs on the machine (pytest -n auto) weighs on both alike.
CYCLES = 5
BASELINE_S = 1.0  # per cycle
SETTLE_S = 0.3  # after a chaos window and every worker ready again: the last kill's failures
KILL_INTERVAL_S = 0.2
THREADS = 4
# Of the no-kill baseline, with Connection: close. reuseport: a connection the kernel
# hashes to the killed worker's socket before the master steers away from it (a few ms)
# waits in that socket's queue for the slot's next worker (one respawn, ~100 ms), and a
# closed loop of 4 clients at ~1,000 req/s each is often all there at once: 0.23-0.96
# measured on 2 busy cores (bench/RESULTS.md, "Chaos"), where shared holds 0.58-0.94.
# The 50 % is asserted for shared; reuseport's floor only catches a collapse.
MIN_THROUGHPUT = {"shared": 0.5, "reuseport": 0.1}
MIN_SERVED = 0.99  # with Connection: close (the bench's target is 0.999)


def chaos_app(port: int, sharing: str) -> dict[str, Any]:
    """Two lean workers that restart at once, for ever, however often they die."""
    return {
        "name": "web",
        "script": sys.executable,
        "args": [LEAN],
        "interpreter": "none",
        "exec_mode": "cluster",
        "instances": 2,
        "listen": [f"127.0.0.1:{port}"],
        "socket_sharing": sharing,
        "wait_ready": True,
        "listen_timeout": 5000,
        "restart_delay": 0,
        "max_restarts": 0,
    }


Window = tuple[int, int, float]  # answered, failed, seconds


def _windows(m: Any, load: Load) -> tuple[Window, Window, set[int]]:
    """CYCLES of (no-kill baseline, chaos until every worker is ready again): the totals of
    each kind of window, and the pids killed."""
    base, chaos = [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]
    killed: set[int] = set()
    for _ in range(CYCLES):
        for totals, kill in ((base, False), (chaos, True)):
            ok0, failed0 = load.snapshot()
            t0 = time.monotonic()
            if kill:
                with Killer(lambda: children(m.pid), KILL_INTERVAL_S, seed=len(killed)) as k:
                    time.sleep(CHAOS_S / CYCLES)
                victims = {pid for _, pid in k.killed}
                killed.update(victims)
                _wait_workers(m.pid, 2)
                m.wait_for(
                    lambda v=victims: _all_ready(m, v),
                    10,
                    "every live worker ready after the chaos",
                )
                time.sleep(SETTLE_S)
            else:
                time.sleep(BASELINE_S)
            ok1, failed1 = load.snapshot()
            totals[0] += ok1 - ok0
            totals[1] += failed1 - failed0
            totals[2] += time.monotonic() - t0
    return (
        (int(base[0]), int(base[1]), base[2]),
        (int(chaos[0]), int(chaos[1]), chaos[2]),
        killed,
    )


def _all_ready(m: Any, victims: set[int]) -> bool:
    """Two or more live workers, each ready and none of them one this window killed: the
    last SIGKILL may not have taken effect yet, and its victim was ready."""
    ready = {r["pid"] for r in m.events("worker_ready")}
    live = children(m.pid)
    return len(live) >= 2 and all(pid in ready and pid not in victims for pid in live)


def _wait_workers(master_pid: int, count: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(children(master_pid)) < count:
        if time.monotonic() > deadline:
            pytest.fail(f"fewer than {count} workers {timeout_s} s after the chaos")
        time.sleep(0.05)


@pytest.mark.parametrize("keepalive", [False, True], ids=["close", "keepalive"])
@pytest.mark.parametrize("sharing", ["reuseport", "shared"])
def test_sigkill_chaos_under_load(
    tmp_path: Path, run_master: Any, sharing: str, keepalive: bool
) -> None:
    """Workers SIGKILLed every 200 ms: throughput holds, requests are served (keep-alive:
    only those in flight on a killed worker fail), nothing hangs, nothing stays open."""
    port = free_port()
    m = run_master(str(write_ecosystem(tmp_path / "eco.json", [chaos_app(port, sharing)])))
    m.wait_event("worker_ready", count=2)
    with Load(port, threads=THREADS, keepalive=keepalive) as load:
        base, chaos, killed = _windows(m, load)
    tally = load.tally
    kills = len(killed)
    (base_ok, base_failed, base_s), (ok, failed, chaos_s) = base, chaos
    served = ok / max(1, ok + failed)
    ratio = (ok / chaos_s) / (base_ok / base_s)
    print(
        f"\nchaos sharing={sharing} keepalive={keepalive} seconds={CHAOS_S:g} kills={kills}"
        f" baseline_rps={base_ok / base_s:.0f} chaos_rps={ok / chaos_s:.0f} ratio={ratio:.2f}"
        f" served={served:.4%} failed={failed} per_kill={failed / max(1, kills):.2f}"
        f" hung={len(tally.hung)} connections={tally.connections}"
    )
    assert kills >= CHAOS_S / KILL_INTERVAL_S * 0.8
    assert base_failed == 0, [f.error for f in tally.failures][:5]
    assert tally.hung == [], tally.hung[:5]
    assert load.alive_threads() == 0
    assert load.open_sockets == 0
    assert wait_no_lingering(port) == []
    if keepalive:
        reused = [f for f in tally.failures if not f.fresh]
        assert all(f.pid in killed for f in reused), [f for f in reused if f.pid not in killed]
        per_pid: dict[int | None, int] = {}
        for f in reused:
            per_pid[f.pid] = per_pid.get(f.pid, 0) + 1
        assert max(per_pid.values(), default=0) <= THREADS  # one in flight per connection
        assert len(tally.failures) <= kills * THREADS
    else:
        assert ratio >= MIN_THROUGHPUT[sharing]
        assert served >= MIN_SERVED, tally.failures[:5]
    assert m.proc.poll() is None
