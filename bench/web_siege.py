"""`/health` under attack on `--web` (#13): idle connections and slowloris, against the
same master unattacked.

One master (`--web 127.0.0.1:PORT`, one sleeping worker). Each round runs three phases
in a rotating order, each ATTACK_S long with `/health` asked every 50 ms over a fresh
connection (tests/chaos/probes.py), the attacker in a process of its own:

- quiet: no attacker (the baseline);
- idle: 200 connections held open, reconnected as soon as the server drops one;
- slowloris: 200 connections each sending one more header byte every 200 ms.

Printed per phase: median, p99 and max over every probe of every round (ms), the spread
of the per-round medians, non-200 answers, and each median and max as a ratio to the
quiet phase's. Target: every answer 200 and under 100 ms.

    .venv/bin/python bench/web_siege.py [--rounds 5] [--quick] [--write]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common as c

from tests.chaos.probes import probe_during

ATTACKERS = 200
ATTACK_S = 5.0
SETTLE_S = 0.3
TARGET_MS = 100.0
PHASES = ("quiet", "idle", "slowloris")
SLEEPER = "import time\nwhile True: time.sleep(1)"


# The attacker runs in a process of its own: in the probing one, its loop over 200
# sockets would hold the GIL and delay the probes, which would be timing the client.
ATTACK = """
import sys
from tests.chaos.probes import Attacker
port, count, slowloris = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "slowloris"
with Attacker(port, count, slowloris):
    print("attacking", flush=True)
    sys.stdin.read()  # until the benchmark closes it
"""


def run_phase(port: int, phase: str, seconds: float) -> list[tuple[int, float]]:
    """The /health probes of one phase: (status, seconds)."""
    if phase == "quiet":
        return probe_during(port, seconds)
    attacker = subprocess.Popen(
        [c.PY, "-c", ATTACK, str(port), str(ATTACKERS), phase],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=c.runtime_env(),
        cwd=c.ROOT,
    )
    assert attacker.stdin is not None
    assert attacker.stdout is not None
    try:
        if attacker.stdout.readline() != b"attacking\n":
            raise RuntimeError("the attacker did not start")
        probe_during(port, SETTLE_S)
        return probe_during(port, seconds)
    finally:
        attacker.stdin.close()
        try:
            attacker.wait(10)
        except subprocess.TimeoutExpired:
            attacker.kill()
            attacker.wait(5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    c.add_common_args(ap)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    rounds = 2 if args.quick else args.rounds
    seconds = 2.0 if args.quick else ATTACK_S
    work = c.tmpdir("web-siege")
    web = c.free_port()
    app = {"name": "s", "script": sys.executable, "args": ["-c", SLEEPER], "interpreter": "none"}
    eco = c.write_eco(work, [app])
    master = c.Proc(
        c.runtime_argv(str(eco), "--web", f"127.0.0.1:{web}", "--control", str(work / "c.sock")),
        env=c.runtime_env(),
    )
    samples: dict[str, list[float]] = {p: [] for p in PHASES}
    round_medians: dict[str, list[float]] = {p: [] for p in PHASES}
    bad: dict[str, int] = dict.fromkeys(PHASES, 0)
    try:
        master.wait_line(c.json_pred(event="worker_ready"), timeout=20)
        for r in range(rounds):
            order = PHASES[r % 3 :] + PHASES[: r % 3]
            for phase in order:
                probes = run_phase(web, phase, seconds)
                ms = [t * 1000 for _, t in probes]
                samples[phase] += ms
                round_medians[phase].append(c.median(ms))
                bad[phase] += sum(status != 200 for status, _ in probes)
                print(
                    f"round {r} {phase}: {len(ms)} probes, median {c.median(ms):.1f} ms,"
                    f" max {max(ms):.1f} ms, non-200 {bad[phase]}",
                    flush=True,
                )
        alive = master.popen.poll() is None
    finally:
        master.stop()
        shutil.rmtree(work, ignore_errors=True)
    report = render(samples, round_medians, bad, rounds, seconds, alive)
    print(report)
    if args.write:
        c.update_results("/health under attack", report)
    return 0


def render(
    samples: dict[str, list[float]],
    round_medians: dict[str, list[float]],
    bad: dict[str, int],
    rounds: int,
    seconds: float,
    alive: bool,
) -> str:
    quiet_median = c.median(samples["quiet"])
    quiet_max = max(samples["quiet"])
    lines = [
        f"`{c.command_line()}`",
        "",
        f"{c.machine_line()}; {rounds} rounds of {seconds:.0f} s per phase, phases in a "
        f"rotating order; {ATTACKERS} attacking connections; `/health` every 50 ms on a "
        "fresh connection. Medians of every probe, in brackets the spread of the per-round "
        "medians.",
        "",
        "| phase | probes | median ms | p99 ms | max ms | non-200 | median / quiet | max / quiet |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for phase in PHASES:
        ms = samples[phase]
        spread = f"{min(round_medians[phase]):.1f}-{max(round_medians[phase]):.1f}"
        lines.append(
            f"| {phase} | {len(ms)} | {c.median(ms):.1f} ({spread}) | {c.pct(ms, 99):.1f} "
            f"| {max(ms):.1f} | {bad[phase]} | {c.median(ms) / quiet_median:.2f} "
            f"| {max(ms) / quiet_max:.2f} |"
        )
    worst = max(max(samples[p]) for p in PHASES[1:])
    ok = worst < TARGET_MS and not any(bad.values()) and alive
    lines += [
        "",
        f"Target: every `/health` 200 and under {TARGET_MS:.0f} ms during the attacks: "
        f"slowest {worst:.1f} ms, {sum(bad.values())} non-200, master "
        f"{'alive' if alive else 'DEAD'} at the end: {c.verdict(ok)}.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
